//! Who is calling: authenticated callers, their one role and its scope.
//!
//! Every call to a `timebank.v1` service is authenticated (an API key sent as a bearer
//! token, or a client certificate under mutual TLS) before it reaches a service; the
//! authenticated [`Caller`] travels in the request's extensions. What each role may do
//! is decided per RPC in `crate::authz`.

/// An authenticated caller: a name for logs and audit, and one role with its scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's name in the access file (`city-platform`, `bank-a`, …).
    pub name: String,
    pub role: Role,
}

/// What a caller is. Exactly one per caller: a partner that needs two roles gets two
/// keys, so every call says in which capacity it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A volunteer platform: writes for volunteers of its regions (region-code
    /// prefixes, `hangzhou/xihu`) and for its organisations (account ids).
    Platform {
        regions: Vec<String>,
        organisations: Vec<String>,
    },
    /// A merchant that redeems points: only its own merchant account.
    Merchant { merchant: String },
    /// A bank that reads credit reports: only with the volunteer's consent to it.
    Bank { bank: String },
    /// Read-only, everything.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Platform { .. } => "platform",
            Self::Merchant { .. } => "merchant",
            Self::Bank { .. } => "bank",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

impl Caller {
    /// The caller of a server run without an access file (tests and embedders that
    /// put their own authentication in front): an administrator.
    pub fn unauthenticated_admin() -> Self {
        Self {
            name: "unauthenticated".to_owned(),
            role: Role::Admin,
        }
    }
}

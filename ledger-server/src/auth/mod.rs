//! Who is calling: authenticated callers, their one role and its scope.
//!
//! Every call to a `timebank.v1` service is authenticated (an API key sent as a bearer
//! token, or a client certificate under mutual TLS) before it reaches a service; the
//! authenticated [`Caller`] travels in the request's extensions. What each role may do
//! is decided per RPC in `crate::authz`.
//!
//! # Layout
//! - [`file`]: the access file (callers, credentials, scopes, `[limits]`), validated;
//! - [`key`]: API keys: generation, the SHA-256 stored in the file (and why not argon2);
//! - [`layer`]: the tower layer that authenticates and rate-limits every `timebank.v1`
//!   call and puts the [`Caller`] in its extensions;
//! - [`limits`]: the named limits and their defaults;
//! - [`tls`]: the TLS listener and optional client certificates;
//! - this file: the caller types and [`ServeOptions`], what a server runs with.

pub mod file;
pub mod key;
pub mod layer;
pub mod limits;
pub mod tls;

use std::sync::Arc;

pub use file::{Access, AccessError, CallerEntry, LoadAccessError};
pub use key::{generate_key, hash_key, KeyHash};
pub use layer::{AuthError, AuthLayer};
pub use limits::Limits;
pub use tls::{ServerTls, TlsFiles};

/// Access control, limits and TLS of a server (`crate::serve_with_options`).
///
/// The default is **open mode**: no access file, every `timebank.v1` call is
/// [`Caller::unauthenticated_admin`], no rate limit, default request and batch limits,
/// plaintext. That is what tests and embedders that authenticate in front of the
/// server use; the binary's `serve` refuses it unless told `--insecure-no-auth`.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Who may call, and the `[limits]`. `None`: open mode.
    pub access: Option<Arc<Access>>,
    /// TLS on the listener, with client certificates if it has a client CA.
    pub tls: Option<ServerTls>,
    /// Where the receipts catch-up keeps its checkpoint (`DATA_DIR/receipts.checkpoint`
    /// for `serve` and `demo`; see [`crate::receipts`]). None: each start reads the
    /// whole log for missing receipts.
    pub receipts_checkpoint: crate::receipts::ReceiptCheckpoint,
    /// Longest a shutdown waits for open connections; None: [`crate::SHUTDOWN_GRACE`].
    pub shutdown_grace: Option<std::time::Duration>,
    /// Longest a new connection may take to open (TLS handshake and first bytes);
    /// None: `CONNECTION_OPENING_MS_MAX` (10 s). Tests shorten it.
    pub connection_opening_max: Option<std::time::Duration>,
}

impl ServeOptions {
    /// Authenticate with `access`, plaintext.
    pub fn with_access(access: Access) -> Self {
        Self {
            access: Some(Arc::new(access)),
            ..Self::default()
        }
    }

    /// The access file's limits, or the defaults in open mode.
    pub fn limits(&self) -> Limits {
        self.access
            .as_ref()
            .map_or_else(Limits::default, |a| a.limits)
    }
}

/// An authenticated caller: a name for logs and audit, and one role with its scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The caller's name in the access file (`city-platform`, `bank-a`, …).
    pub name: String,
    pub role: Role,
}

/// What a caller is. Exactly one per caller: a partner that needs two roles gets two
/// keys, so every call says in which capacity it was made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

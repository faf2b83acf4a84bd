//! The access file: who may call, with which credential, in which role, and the
//! limits every caller gets. Parsed with `toml` + serde, then validated strictly: a
//! mistake in it stops the server at start-up with the caller and field it is about,
//! rather than locking a partner out (or letting one in) at run time.
//!
//! ```toml
//! [[caller]]
//! name = "city-platform"
//! role = "platform"                 # platform | merchant | bank | auditor | admin
//! regions = ["hangzhou/xihu"]       # platform: region-code prefixes
//! organisations = ["org-7"]         # platform: organisation account ids
//! key_sha256 = "…64 hex digits…"    # printed by `ledger-server keygen`
//! certificate_name = "platform.example"  # or/and: mTLS client cert CN or DNS SAN
//!
//! [limits]
//! request_bytes_max = 4194304
//! batch_commands_max = 1000
//! requests_per_second_max = 2000
//! burst_max = 4000
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::key::{KeyHash, KeyHashError};
use super::limits::Limits;
use super::{Caller, Role};

/// The access file as written, before validation. Every field the roles do not all
/// share is optional here so that validation, not serde, says which one is missing
/// for which caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    caller: Vec<RawCaller>,
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    name: String,
    role: String,
    regions: Option<Vec<String>>,
    organisations: Option<Vec<String>>,
    bank: Option<String>,
    merchant: Option<String>,
    key_sha256: Option<String>,
    certificate_name: Option<String>,
}

/// A caller of the access file with its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerEntry {
    pub caller: Caller,
    pub key: Option<KeyHash>,
    /// Lower case: certificate names are DNS names, which compare without case.
    pub certificate_name: Option<String>,
}

/// A validated access file: every caller has a unique name, at least one
/// credential, no credential shared with another caller, and the scope its role needs.
#[derive(Clone, Debug)]
pub struct Access {
    callers: Vec<CallerEntry>,
    by_key: HashMap<KeyHash, usize>,
    by_certificate: HashMap<String, usize>,
    pub limits: Limits,
}

/// What is wrong with an access file's content. Every variant names the caller (by
/// its name, or its position when the name is the problem) and what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccessError {
    #[error("not a valid access file: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("the access file names no caller: add a [[caller]] (`ledger-server keygen` prints one), or serve with --insecure-no-auth")]
    NoCallers,
    #[error("caller #{position} has an empty name: give every caller a name (it is the key of its rate limit and shows in logs)")]
    EmptyName { position: usize },
    #[error("two callers are named {name:?}: caller names must be unique")]
    DuplicateName { name: String },
    #[error("caller {caller:?}: unknown role {role:?}; use one of platform, merchant, bank, auditor, admin")]
    UnknownRole { caller: String, role: String },
    #[error("caller {caller:?}: role {role} needs {field}")]
    MissingScope {
        caller: String,
        role: &'static str,
        field: &'static str,
    },
    #[error("caller {caller:?}: `{field}` does not apply to role {role}; remove it (a caller has one role: a partner acting in two roles gets two callers)")]
    ScopeNotForRole {
        caller: String,
        role: &'static str,
        field: &'static str,
    },
    #[error("caller {caller:?}: `{field}` {problem}; such a caller would be refused everything in its scope")]
    BadScope {
        caller: String,
        field: &'static str,
        problem: String,
    },
    #[error("caller {caller:?}: `{field}` holds an empty value; remove it or write the id")]
    EmptyValue { caller: String, field: &'static str },
    #[error("caller {caller:?} has no credential: add key_sha256 (`ledger-server keygen` prints it) or certificate_name (its mTLS client certificate's CN or DNS name)")]
    NoCredential { caller: String },
    #[error("caller {caller:?}: key_sha256 {problem}")]
    BadKeyHash {
        caller: String,
        problem: KeyHashError,
    },
    #[error("callers {first:?} and {second:?} have the same key_sha256: give each caller its own key (`ledger-server keygen`)")]
    DuplicateKey { first: String, second: String },
    #[error("callers {first:?} and {second:?} have the same certificate_name {name:?}: a certificate must identify one caller")]
    DuplicateCertificateName {
        first: String,
        second: String,
        name: String,
    },
    #[error("[limits] {limit} is 0: it must be at least 1 (leave it out for the default)")]
    LimitZero { limit: &'static str },
}

/// An access file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadAccessError {
    #[error("cannot read the access file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("access file {path}: {source}")]
    Invalid { path: PathBuf, source: AccessError },
}

impl CallerEntry {
    /// The entry as a `[[caller]]` table of an access file (what `keygen` prints and
    /// the demo writes); [`Access::from_toml`] reads it back as it was.
    pub fn to_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut out = format!(
            "[[caller]]\nname = {}\nrole = {}\n",
            quote(&self.caller.name),
            quote(self.caller.role.name())
        );
        match &self.caller.role {
            Role::Platform {
                regions,
                organisations,
            } => {
                if !regions.is_empty() {
                    out.push_str(&format!("regions = {}\n", list(regions)));
                }
                if !organisations.is_empty() {
                    out.push_str(&format!("organisations = {}\n", list(organisations)));
                }
            }
            Role::Merchant { merchant } => {
                out.push_str(&format!("merchant = {}\n", quote(merchant)))
            }
            Role::Bank { bank } => out.push_str(&format!("bank = {}\n", quote(bank))),
            Role::Auditor | Role::Admin => {}
        }
        if let Some(key) = &self.key {
            out.push_str(&format!("key_sha256 = {}\n", quote(&key.to_hex())));
        }
        if let Some(name) = &self.certificate_name {
            out.push_str(&format!("certificate_name = {}\n", quote(name)));
        }
        out
    }
}

impl Access {
    /// Read and validate the access file at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadAccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadAccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| LoadAccessError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Parse and validate an access file's text.
    pub fn from_toml(text: &str) -> Result<Self, AccessError> {
        let raw: RawFile = toml::from_str(text)?;
        raw.limits.validate()?;
        if raw.caller.is_empty() {
            return Err(AccessError::NoCallers);
        }
        let mut access = Access {
            callers: Vec::with_capacity(raw.caller.len()),
            by_key: HashMap::new(),
            by_certificate: HashMap::new(),
            limits: raw.limits,
        };
        let mut names = HashMap::new();
        for (i, raw) in raw.caller.into_iter().enumerate() {
            let entry = validate(i + 1, raw)?;
            let index = access.callers.len();
            let name = entry.caller.name.clone();
            if names.insert(name.clone(), index).is_some() {
                return Err(AccessError::DuplicateName { name });
            }
            if let Some(key) = entry.key {
                if let Some(&other) = access.by_key.get(&key) {
                    return Err(AccessError::DuplicateKey {
                        first: access.callers[other].caller.name.clone(),
                        second: name,
                    });
                }
                access.by_key.insert(key, index);
            }
            if let Some(cert) = &entry.certificate_name {
                if let Some(&other) = access.by_certificate.get(cert) {
                    return Err(AccessError::DuplicateCertificateName {
                        first: access.callers[other].caller.name.clone(),
                        second: name,
                        name: cert.clone(),
                    });
                }
                access.by_certificate.insert(cert.clone(), index);
            }
            access.callers.push(entry);
        }
        Ok(access)
    }

    /// The callers, in the file's order.
    pub fn callers(&self) -> &[CallerEntry] {
        &self.callers
    }

    /// The caller whose key hashes to `key`.
    pub fn by_key(&self, key: &KeyHash) -> Option<&Caller> {
        self.by_key.get(key).map(|&i| &self.callers[i].caller)
    }

    /// The caller whose `certificate_name` is `name` (any case).
    pub fn by_certificate_name(&self, name: &str) -> Option<&Caller> {
        self.by_certificate
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.callers[i].caller)
    }
}

/// The fields each role needs and allows, checked on one raw caller.
fn validate(position: usize, raw: RawCaller) -> Result<CallerEntry, AccessError> {
    let name = raw.name.trim().to_owned();
    if name.is_empty() {
        return Err(AccessError::EmptyName { position });
    }
    let role_name: &'static str = match raw.role.as_str() {
        "platform" => "platform",
        "merchant" => "merchant",
        "bank" => "bank",
        "auditor" => "auditor",
        "admin" => "admin",
        _ => {
            return Err(AccessError::UnknownRole {
                caller: name,
                role: raw.role,
            })
        }
    };
    let not_for_role = |field: &'static str| AccessError::ScopeNotForRole {
        caller: name.clone(),
        role: role_name,
        field,
    };
    let missing = |field: &'static str| AccessError::MissingScope {
        caller: name.clone(),
        role: role_name,
        field,
    };
    // Every scope field the role does not use is refused, so a typo'd role (an
    // "auditor" with `bank = …`) cannot silently widen or narrow what a caller sees.
    let allowed: &[&str] = match role_name {
        "platform" => &["regions", "organisations"],
        "merchant" => &["merchant"],
        "bank" => &["bank"],
        _ => &[],
    };
    for (field, present) in [
        ("regions", raw.regions.is_some()),
        ("organisations", raw.organisations.is_some()),
        ("bank", raw.bank.is_some()),
        ("merchant", raw.merchant.is_some()),
    ] {
        if present && !allowed.contains(&field) {
            return Err(not_for_role(field));
        }
    }
    let id = |field: &'static str, value: Option<String>| -> Result<String, AccessError> {
        let value = value.ok_or_else(|| missing(field))?;
        if value.trim().is_empty() {
            return Err(AccessError::EmptyValue {
                caller: name.clone(),
                field,
            });
        }
        Ok(value)
    };
    let list = |field: &'static str, values: Option<Vec<String>>| {
        let values = values.unwrap_or_default();
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(AccessError::EmptyValue {
                caller: name.clone(),
                field,
            });
        }
        Ok(values)
    };
    // A scope value that is no region code or account id matches nothing: the caller
    // would be refused everything it was meant to do, with nothing said at start.
    let bad_scope = |field: &'static str, problem: String| AccessError::BadScope {
        caller: name.clone(),
        field,
        problem,
    };
    let region = |r: &String| {
        ledger_core::domain::account::RegionCode::new(r.as_str())
            .map(drop)
            .map_err(|e| bad_scope("regions", e.to_string()))
    };
    let account = |field: &'static str, a: &String| {
        ledger_core::domain::account::AccountId::new(a.as_str())
            .map(drop)
            .map_err(|e| bad_scope(field, format!("{a:?}: {e}")))
    };
    let role = match role_name {
        "platform" => {
            let regions = list("regions", raw.regions)?;
            let organisations = list("organisations", raw.organisations)?;
            regions.iter().try_for_each(region)?;
            organisations
                .iter()
                .try_for_each(|o| account("organisations", o))?;
            if regions.is_empty() && organisations.is_empty() {
                return Err(missing(
                    "regions (region-code prefixes) or organisations (account ids), or both",
                ));
            }
            Role::Platform {
                regions,
                organisations,
            }
        }
        "merchant" => {
            let merchant = id("merchant (its merchant account id)", raw.merchant)?;
            account("merchant", &merchant)?;
            Role::Merchant { merchant }
        }
        "bank" => {
            let bank = id("bank (its bank account id)", raw.bank)?;
            account("bank", &bank)?;
            Role::Bank { bank }
        }
        "auditor" => Role::Auditor,
        _ => Role::Admin,
    };
    let key = match raw.key_sha256 {
        Some(hex) => Some(
            KeyHash::from_hex(&hex).map_err(|problem| AccessError::BadKeyHash {
                caller: name.clone(),
                problem,
            })?,
        ),
        None => None,
    };
    let certificate_name = match raw.certificate_name {
        Some(c) if c.trim().is_empty() => {
            return Err(AccessError::EmptyValue {
                caller: name,
                field: "certificate_name",
            })
        }
        Some(c) => Some(c.trim().to_ascii_lowercase()),
        None => None,
    };
    if key.is_none() && certificate_name.is_none() {
        return Err(AccessError::NoCredential { caller: name });
    }
    Ok(CallerEntry {
        caller: Caller { name, role },
        key,
        certificate_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::key::hash_key;

    fn hash(key: &str) -> String {
        hash_key(key).to_hex()
    }

    fn full() -> String {
        format!(
            r#"
[[caller]]
name = "city-platform"
role = "platform"
regions = ["hangzhou/xihu"]
organisations = ["org-7"]
key_sha256 = "{}"
certificate_name = "Platform.Example"

[[caller]]
name = "bank-a"
role = "bank"
bank = "bank-a"
certificate_name = "bank-a.example"

[[caller]]
name = "shop-1"
role = "merchant"
merchant = "m-0001"
key_sha256 = "{}"

[[caller]]
name = "audit"
role = "auditor"
key_sha256 = "{}"

[[caller]]
name = "ops"
role = "admin"
key_sha256 = "{}"

[limits]
request_bytes_max = 1048576
requests_per_second_max = 50
"#,
            hash("k-platform"),
            hash("k-shop"),
            hash("k-audit"),
            hash("k-ops")
        )
    }

    #[test]
    fn a_full_file_parses_into_every_role_with_its_scope() {
        let access = Access::from_toml(&full()).unwrap();
        let roles: Vec<_> = access.callers().iter().map(|c| &c.caller.role).collect();
        assert_eq!(
            roles,
            [
                &Role::Platform {
                    regions: vec!["hangzhou/xihu".into()],
                    organisations: vec!["org-7".into()]
                },
                &Role::Bank {
                    bank: "bank-a".into()
                },
                &Role::Merchant {
                    merchant: "m-0001".into()
                },
                &Role::Auditor,
                &Role::Admin,
            ]
        );
        assert_eq!(
            access.by_key(&hash_key("k-shop")).map(|c| c.name.as_str()),
            Some("shop-1")
        );
        assert_eq!(access.by_key(&hash_key("k-nobody")), None);
        assert_eq!(
            access
                .by_certificate_name("platform.EXAMPLE")
                .map(|c| c.name.as_str()),
            Some("city-platform")
        );
        // Limits left out keep their defaults.
        assert_eq!(access.limits.request_bytes_max, 1_048_576);
        assert_eq!(access.limits.requests_per_second_max, 50);
        assert_eq!(
            access.limits.batch_commands_max,
            Limits::default().batch_commands_max
        );
        assert_eq!(access.limits.burst_max, Limits::default().burst_max);
    }

    fn one(body: &str) -> Result<Access, AccessError> {
        Access::from_toml(&format!("[[caller]]\n{body}\n"))
    }

    #[test]
    fn each_mistake_is_refused_with_what_to_fix() {
        let k = hash("k");
        let cases: Vec<(String, AccessError)> = vec![
            (
                format!("name = \"x\"\nrole = \"owner\"\nkey_sha256 = \"{k}\""),
                AccessError::UnknownRole {
                    caller: "x".into(),
                    role: "owner".into(),
                },
            ),
            (
                format!("name = \"x\"\nrole = \"bank\"\nkey_sha256 = \"{k}\""),
                AccessError::MissingScope {
                    caller: "x".into(),
                    role: "bank",
                    field: "bank (its bank account id)",
                },
            ),
            (
                format!("name = \"x\"\nrole = \"merchant\"\nkey_sha256 = \"{k}\""),
                AccessError::MissingScope {
                    caller: "x".into(),
                    role: "merchant",
                    field: "merchant (its merchant account id)",
                },
            ),
            (
                format!("name = \"x\"\nrole = \"platform\"\nkey_sha256 = \"{k}\""),
                AccessError::MissingScope {
                    caller: "x".into(),
                    role: "platform",
                    field: "regions (region-code prefixes) or organisations (account ids), or both",
                },
            ),
            (
                format!("name = \"x\"\nrole = \"auditor\"\nbank = \"b\"\nkey_sha256 = \"{k}\""),
                AccessError::ScopeNotForRole {
                    caller: "x".into(),
                    role: "auditor",
                    field: "bank",
                },
            ),
            (
                format!("name = \"x\"\nrole = \"bank\"\nbank = \" \"\nkey_sha256 = \"{k}\""),
                AccessError::EmptyValue {
                    caller: "x".into(),
                    field: "bank (its bank account id)",
                },
            ),
            (
                "name = \"x\"\nrole = \"admin\"".into(),
                AccessError::NoCredential { caller: "x".into() },
            ),
            (
                "name = \"x\"\nrole = \"admin\"\nkey_sha256 = \"zz\"".into(),
                AccessError::BadKeyHash {
                    caller: "x".into(),
                    problem: KeyHashError::Length(2),
                },
            ),
            (
                format!(
                    "name = \"x\"\nrole = \"admin\"\nkey_sha256 = \"{}\"",
                    "g".repeat(64)
                ),
                AccessError::BadKeyHash {
                    caller: "x".into(),
                    problem: KeyHashError::NotHex,
                },
            ),
            (
                format!("name = \" \"\nrole = \"admin\"\nkey_sha256 = \"{k}\""),
                AccessError::EmptyName { position: 1 },
            ),
            // Scope values that no region code or account id can match: the caller
            // would be refused everything (found in an operator's walk-through).
            (
                format!("name = \"x\"\nrole = \"platform\"\nregions = [\"Hangzhou/XiHu!\"]\nkey_sha256 = \"{k}\""),
                AccessError::BadScope {
                    caller: "x".into(),
                    field: "regions",
                    problem: ledger_core::domain::account::RegionCode::new("Hangzhou/XiHu!")
                        .expect_err("not a region code")
                        .to_string(),
                },
            ),
            (
                format!("name = \"x\"\nrole = \"bank\"\nbank = \"bank a\"\nkey_sha256 = \"{k}\""),
                AccessError::BadScope {
                    caller: "x".into(),
                    field: "bank",
                    problem: format!(
                        "{:?}: {}",
                        "bank a",
                        ledger_core::domain::account::AccountId::new("bank a")
                            .expect_err("not an account id")
                    ),
                },
            ),
        ];
        for (body, want) in cases {
            let got = one(&body).expect_err(&body);
            assert_eq!(got, want, "{body}");
            // Messages say what to do, not only what is wrong.
            assert!(!got.to_string().is_empty());
        }
    }

    #[test]
    fn entries_render_as_toml_that_reads_back_the_same() {
        let access = Access::from_toml(&full()).unwrap();
        let text: String = access
            .callers()
            .iter()
            .map(|c| c.to_toml() + "\n")
            .collect();
        let again = Access::from_toml(&text).unwrap();
        assert_eq!(again.callers(), access.callers());
    }

    #[test]
    fn duplicates_are_refused() {
        let k = hash("k");
        let two =
            |a: &str, b: &str| Access::from_toml(&format!("[[caller]]\n{a}\n[[caller]]\n{b}\n"));
        assert_eq!(
            two(
                &format!("name = \"a\"\nrole = \"admin\"\nkey_sha256 = \"{k}\""),
                &format!(
                    "name = \"a\"\nrole = \"auditor\"\nkey_sha256 = \"{}\"",
                    hash("j")
                ),
            )
            .unwrap_err(),
            AccessError::DuplicateName { name: "a".into() }
        );
        assert_eq!(
            two(
                &format!("name = \"a\"\nrole = \"admin\"\nkey_sha256 = \"{k}\""),
                // The same hash in upper case is the same key.
                &format!(
                    "name = \"b\"\nrole = \"auditor\"\nkey_sha256 = \"{}\"",
                    k.to_uppercase()
                ),
            )
            .unwrap_err(),
            AccessError::DuplicateKey {
                first: "a".into(),
                second: "b".into()
            }
        );
        assert_eq!(
            two(
                "name = \"a\"\nrole = \"admin\"\ncertificate_name = \"x.example\"",
                "name = \"b\"\nrole = \"auditor\"\ncertificate_name = \"X.example\"",
            )
            .unwrap_err(),
            AccessError::DuplicateCertificateName {
                first: "a".into(),
                second: "b".into(),
                name: "x.example".into()
            }
        );
    }

    #[test]
    fn unknown_fields_an_empty_file_and_zero_limits_are_refused() {
        assert!(matches!(
            one("name = \"x\"\nrole = \"admin\"\nkey = \"plain\""),
            Err(AccessError::Syntax(_))
        ));
        assert_eq!(Access::from_toml("").unwrap_err(), AccessError::NoCallers);
        assert!(matches!(
            Access::from_toml("[limits]\nrequests_per_second = 5\n"),
            Err(AccessError::Syntax(_))
        ));
        assert_eq!(
            Access::from_toml(&format!("{}\n", full()).replace(
                "requests_per_second_max = 50",
                "requests_per_second_max = 0"
            ))
            .unwrap_err(),
            AccessError::LimitZero {
                limit: "requests_per_second_max"
            }
        );
    }
}

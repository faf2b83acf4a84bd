//! Star levels: one to five stars from lifetime verified hours (credit + honour,
//! standing deposits), under a named, versioned policy.
//!
//! A policy is configuration, never state: levels are computed when asked, from the
//! lifetime hours and the policy named in the request. A new policy version therefore
//! never rewrites what an older one said; ask with the old version and you get the old
//! answer. Option not taken: storing each volunteer's level in the read model, which
//! would freeze one policy into the state and need a rebuild on every change.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ledger_core::domain::units::parse_plain_decimal;
use rust_decimal::Decimal;

/// The national scheme's thresholds for 1..=5 stars: 100 / 300 / 600 / 1,000 / 1,500.
pub const DEFAULT_POLICY_VERSION: &str = "national-2024";

/// Longest policy name. Names come back in every star-level answer and in logs; 64
/// bytes holds `hangzhou-county-2026-revision-2` with room to spare and turns a pasted
/// threshold list or a stray argument into an error instead of a policy.
pub const POLICY_NAME_BYTES_MAX: usize = 64;

/// Decimal places a threshold may carry: the ledger's hours have at most two
/// (`ledger_core::domain::units::UNIT_SCALE_MAX`), so a finer threshold could never be
/// told apart from the next hundredth.
pub const THRESHOLD_SCALE_MAX: u32 = 2;

/// Longest threshold text: 20 digits of hours is far past any lifetime and keeps the
/// decimal parser on short input.
const THRESHOLD_TEXT_BYTES_MAX: usize = 24;

/// Stars a policy grades: one threshold for each of 1..=5.
pub const STARS_MAX: usize = 5;

/// A named policy: the lifetime hours needed for 1..=5 stars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarPolicy {
    pub version: String,
    /// Strictly increasing, positive.
    pub thresholds: [Decimal; 5],
}

/// Thresholds as the CLI takes them: `100,300,600,1000,1500`.
struct Thresholds<'a>(&'a [Decimal; 5]);

impl fmt::Display for Thresholds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", t.normalize())?;
        }
        Ok(())
    }
}

/// Why a policy, or a set of them, is not one. Each says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("star policy {text:?} is not NAME=T1,T2,T3,T4,T5; write e.g. county-2026=50,150,300,600,1000 (lifetime hours for 1 to 5 stars)")]
    Syntax { text: String },
    #[error("star policy name {name:?} must be 1 to {POLICY_NAME_BYTES_MAX} ASCII letters, digits, '.', '_' or '-', e.g. county-2026")]
    Name { name: String },
    #[error("star policy {version}: {found} thresholds given, exactly {STARS_MAX} are needed (lifetime hours for 1 to 5 stars, comma-separated)")]
    Count { version: String, found: usize },
    #[error("star policy {version}: threshold {text:?} is not a number of hours with at most {THRESHOLD_SCALE_MAX} decimal places; write plain digits such as 100 or 250.5")]
    Threshold { version: String, text: String },
    #[error("star policy {version}: thresholds must be positive and strictly increasing, got {}", Thresholds(.thresholds))]
    Thresholds {
        version: String,
        thresholds: [Decimal; 5],
    },
    /// The thresholds as written (`100,300,600,1000,1500`): text keeps the error small.
    #[error("star policy version {version} is defined twice with different thresholds ({first} and {second}); a version never changes: give the new thresholds a new name")]
    Duplicate {
        version: String,
        first: String,
        second: String,
    },
    #[error("default star policy {version:?} is not configured; known: {known}; define it with --star-policy {version}=T1,T2,T3,T4,T5 or pick a known one")]
    UnknownDefault { version: String, known: String },
}

impl StarPolicy {
    pub fn new(version: impl Into<String>, thresholds: [Decimal; 5]) -> Result<Self, PolicyError> {
        let version = version.into();
        let ok = thresholds[0] > Decimal::ZERO && thresholds.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(PolicyError::Thresholds {
                version,
                thresholds,
            });
        }
        Ok(Self {
            version,
            thresholds,
        })
    }

    /// The national scheme (`national-2024`).
    pub fn national() -> Self {
        Self::new(
            DEFAULT_POLICY_VERSION,
            [100, 300, 600, 1000, 1500].map(Decimal::from),
        )
        .expect("the national thresholds increase")
    }

    pub fn level(&self, lifetime_hours: Decimal) -> StarLevel {
        let stars = self
            .thresholds
            .iter()
            .take_while(|t| lifetime_hours >= **t)
            .count();
        StarLevel {
            policy_version: self.version.clone(),
            stars: u8::try_from(stars).expect("at most five stars"),
            lifetime_hours,
            next_threshold: self.thresholds.get(stars).copied(),
        }
    }
}

/// A threshold: plain digits with an optional '.' and at most two places
/// (`ledger_core`'s [`parse_plain_decimal`], the amounts' parser). Signs, exponents,
/// spaces and separators are refused rather than guessed at; zero parses here and is
/// refused with the other thresholds (they must be positive and increasing).
fn threshold(version: &str, text: &str) -> Result<Decimal, PolicyError> {
    let err = || PolicyError::Threshold {
        version: version.to_owned(),
        text: text.chars().take(THRESHOLD_TEXT_BYTES_MAX).collect(),
    };
    if text.len() > THRESHOLD_TEXT_BYTES_MAX {
        return Err(err());
    }
    parse_plain_decimal(text, THRESHOLD_SCALE_MAX).map_err(|_| err())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= POLICY_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `NAME=T1,T2,T3,T4,T5`, as `ledger-server serve --star-policy` takes it: thresholds
/// in lifetime hours for 1..=5 stars, strictly increasing, at most two places.
impl FromStr for StarPolicy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let Some((name, list)) = text.split_once('=') else {
            return Err(PolicyError::Syntax {
                text: text.chars().take(POLICY_NAME_BYTES_MAX * 2).collect(),
            });
        };
        if !valid_name(name) {
            return Err(PolicyError::Name {
                name: name.chars().take(POLICY_NAME_BYTES_MAX + 8).collect(),
            });
        }
        let parts: Vec<&str> = list.split(',').collect();
        if parts.len() != STARS_MAX {
            return Err(PolicyError::Count {
                version: name.to_owned(),
                found: parts.len(),
            });
        }
        let mut thresholds = [Decimal::ZERO; STARS_MAX];
        for (slot, part) in thresholds.iter_mut().zip(parts) {
            *slot = threshold(name, part)?;
        }
        Self::new(name, thresholds)
    }
}

/// A volunteer's level under one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarLevel {
    pub policy_version: String,
    /// 0 (below the first threshold) to 5.
    pub stars: u8,
    pub lifetime_hours: Decimal,
    /// Hours needed for the next star; None at five stars.
    pub next_threshold: Option<Decimal>,
}

/// The configured policies and the default one.
#[derive(Clone, Debug)]
pub struct StarPolicies {
    policies: BTreeMap<String, StarPolicy>,
    default: String,
}

impl Default for StarPolicies {
    fn default() -> Self {
        let p = StarPolicy::national();
        Self {
            default: p.version.clone(),
            policies: BTreeMap::from([(p.version.clone(), p)]),
        }
    }
}

impl StarPolicies {
    /// The built-in `national-2024` plus `policies`, with `default` (None: keep
    /// `national-2024`) as the default: what `serve --star-policy … --default-star-policy`
    /// configures. A version given twice with the same thresholds is one version; with
    /// different thresholds (including a redefined `national-2024`) it is an error,
    /// because a version's answers never change.
    pub fn configured(
        policies: impl IntoIterator<Item = StarPolicy>,
        default: Option<&str>,
    ) -> Result<Self, PolicyError> {
        let mut out = Self::default();
        for p in policies {
            out.add(p)?;
        }
        if let Some(d) = default {
            if !out.set_default(d) {
                return Err(PolicyError::UnknownDefault {
                    version: d.to_owned(),
                    known: out.versions().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(out)
    }

    /// Add a policy version. A version is immutable: adding it again with the same
    /// thresholds changes nothing, with other thresholds it is refused.
    pub fn add(&mut self, policy: StarPolicy) -> Result<(), PolicyError> {
        if let Some(old) = self.policies.get(&policy.version) {
            if old.thresholds == policy.thresholds {
                return Ok(());
            }
            return Err(PolicyError::Duplicate {
                version: policy.version,
                first: Thresholds(&old.thresholds).to_string(),
                second: Thresholds(&policy.thresholds).to_string(),
            });
        }
        self.policies.insert(policy.version.clone(), policy);
        Ok(())
    }

    /// Make `version` (already added) the default.
    pub fn set_default(&mut self, version: &str) -> bool {
        let known = self.policies.contains_key(version);
        if known {
            self.default = version.to_owned();
        }
        known
    }

    pub fn default_policy(&self) -> &StarPolicy {
        &self.policies[&self.default]
    }

    /// The named policy; the default one for an empty name.
    pub fn get(&self, version: &str) -> Option<&StarPolicy> {
        if version.is_empty() {
            return Some(self.default_policy());
        }
        self.policies.get(version)
    }

    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: i64) -> Decimal {
        Decimal::from(n)
    }

    #[test]
    fn given_the_national_policy_then_levels_follow_100_300_600_1000_1500() {
        let p = StarPolicy::national();
        for (hours, stars, next) in [
            ("0", 0, Some(100)),
            ("99.99", 0, Some(100)),
            ("100", 1, Some(300)),
            ("299.75", 1, Some(300)),
            ("600", 3, Some(1000)),
            ("1500", 5, None),
            ("9000", 5, None),
        ] {
            let l = p.level(hours.parse().unwrap());
            assert_eq!((l.stars, l.next_threshold), (stars, next.map(d)), "{hours}");
        }
    }

    #[test]
    fn given_a_new_policy_version_then_the_old_version_still_answers_as_before() {
        let mut ps = StarPolicies::default();
        ps.add(StarPolicy::new("county-2026", [50, 150, 300, 600, 1000].map(d)).unwrap())
            .unwrap();
        assert!(ps.set_default("county-2026"));
        let h = d(160);
        assert_eq!(ps.default_policy().level(h).stars, 2);
        assert_eq!(ps.get("national-2024").unwrap().level(h).stars, 1);
        // The same version again is the same version; other thresholds are refused.
        assert_eq!(ps.add(StarPolicy::national()), Ok(()));
        assert!(matches!(
            ps.add(StarPolicy::new("national-2024", [1, 2, 3, 4, 5].map(d)).unwrap()),
            Err(PolicyError::Duplicate { .. })
        ));
        assert!(StarPolicy::new("bad", [100, 100, 600, 1000, 1500].map(d)).is_err());
    }

    #[test]
    fn given_cli_text_then_a_policy_parses_with_exact_thresholds() {
        let p: StarPolicy = "county-2026=50,150.5,300.25,600,1000".parse().unwrap();
        assert_eq!(p.version, "county-2026");
        assert_eq!(
            p.thresholds,
            ["50", "150.5", "300.25", "600", "1000"].map(|t| t.parse::<Decimal>().unwrap())
        );
        // Trailing zeros past two places are still two places.
        assert!("a.b_c-1=1.500,2,3,4,5".parse::<StarPolicy>().is_ok());
    }

    #[test]
    fn given_malformed_cli_text_then_the_error_says_what_is_wrong() {
        let err = |t: &str| t.parse::<StarPolicy>().unwrap_err();
        assert!(matches!(err("county-2026"), PolicyError::Syntax { .. }));
        assert!(matches!(err("=1,2,3,4,5"), PolicyError::Name { .. }));
        assert!(matches!(err("a b=1,2,3,4,5"), PolicyError::Name { .. }));
        let long = format!("{}=1,2,3,4,5", "x".repeat(POLICY_NAME_BYTES_MAX + 1));
        assert!(matches!(err(&long), PolicyError::Name { .. }));
        assert_eq!(
            err("p=1,2,3,4"),
            PolicyError::Count {
                version: "p".into(),
                found: 4
            }
        );
        assert!(matches!(
            err("p=1,2,3,4,5,6"),
            PolicyError::Count { found: 6, .. }
        ));
        for bad in [
            "1.001", "-1", "+1", "1e3", " 1", "1.", ".5", "", "1_000", "1,5", "NaN", "1.2.3",
        ] {
            let text = format!("p=0.5,{bad},3000,4000,5000");
            assert!(
                matches!(
                    err(&text),
                    PolicyError::Threshold { .. } | PolicyError::Count { .. }
                ),
                "{bad:?}: {:?}",
                err(&text)
            );
        }
        assert_eq!(
            err("p=0.001,2,3,4,5"),
            PolicyError::Threshold {
                version: "p".into(),
                text: "0.001".into()
            }
        );
        assert!(matches!(err("p=0,1,2,3,4"), PolicyError::Thresholds { .. }));
        assert!(matches!(err("p=1,3,2,4,5"), PolicyError::Thresholds { .. }));
        assert!(matches!(err("p=1,2,2,4,5"), PolicyError::Thresholds { .. }));
        // The message shows the thresholds as they were written.
        assert_eq!(
            err("p=1,3,2,4,5").to_string(),
            "star policy p: thresholds must be positive and strictly increasing, got 1,3,2,4,5"
        );
    }

    #[test]
    fn given_configured_policies_then_the_default_and_duplicates_are_checked() {
        let county: StarPolicy = "county-2026=50,150,300,600,1000".parse().unwrap();
        // Nothing configured: national-2024 is there and the default.
        let ps = StarPolicies::configured([], None).unwrap();
        assert_eq!(ps.default_policy().version, DEFAULT_POLICY_VERSION);
        // Added, default unchanged unless asked.
        let ps = StarPolicies::configured([county.clone()], None).unwrap();
        assert_eq!(ps.default_policy().version, DEFAULT_POLICY_VERSION);
        assert_eq!(
            ps.versions().collect::<Vec<_>>(),
            ["county-2026", "national-2024"]
        );
        let ps = StarPolicies::configured([county.clone(), county.clone()], Some("county-2026"))
            .unwrap();
        assert_eq!(ps.default_policy().version, "county-2026");
        assert_eq!(ps.get("").unwrap().version, "county-2026");
        // The built-in version can be named as the default explicitly.
        assert!(StarPolicies::configured([county.clone()], Some("national-2024")).is_ok());
        let other: StarPolicy = "county-2026=60,150,300,600,1000".parse().unwrap();
        let e = StarPolicies::configured([county.clone(), other], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "star policy version county-2026 is defined twice with different thresholds \
             (50,150,300,600,1000 and 60,150,300,600,1000); a version never changes: give the \
             new thresholds a new name"
        );
        let redefined: StarPolicy = "national-2024=1,2,3,4,5".parse().unwrap();
        assert!(matches!(
            StarPolicies::configured([redefined], None),
            Err(PolicyError::Duplicate { .. })
        ));
        assert_eq!(
            StarPolicies::configured([county], Some("city-2027")).unwrap_err(),
            PolicyError::UnknownDefault {
                version: "city-2027".into(),
                known: "county-2026, national-2024".into()
            }
        );
    }
}

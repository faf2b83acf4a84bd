//! Star levels: one to five stars from lifetime verified hours (credit + honour,
//! standing deposits), under a named, versioned policy.
//!
//! A policy is configuration, never state: levels are computed when asked, from the
//! lifetime hours and the policy named in the request. A new policy version therefore
//! never rewrites what an older one said; ask with the old version and you get the old
//! answer. Option not taken: storing each volunteer's level in the read model, which
//! would freeze one policy into the state and need a rebuild on every change.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// The national scheme's thresholds for 1..=5 stars: 100 / 300 / 600 / 1,000 / 1,500.
pub const DEFAULT_POLICY_VERSION: &str = "national-2024";

/// A named policy: the lifetime hours needed for 1..=5 stars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarPolicy {
    pub version: String,
    /// Strictly increasing, positive.
    pub thresholds: [Decimal; 5],
}

/// Why a policy is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("star policy {version}: thresholds must be positive and strictly increasing, got {thresholds:?}")]
    Thresholds {
        version: String,
        thresholds: [Decimal; 5],
    },
    #[error("star policy version {0:?} is defined twice; versions are immutable, add a new one")]
    Duplicate(String),
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
    /// Add a policy version; a version can be defined once.
    pub fn add(&mut self, policy: StarPolicy) -> Result<(), PolicyError> {
        if self.policies.contains_key(&policy.version) {
            return Err(PolicyError::Duplicate(policy.version));
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
        assert!(ps.add(StarPolicy::national()).is_err());
        assert!(StarPolicy::new("bad", [100, 100, 600, 1000, 1500].map(d)).is_err());
    }
}

//! Accounts: who holds hours and points, and the stream each one's history lives in.
//!
//! Every account that has rules (volunteers, organisations, merchants, public projects)
//! has its own stream `account-<id>`, and its state is folded from that stream only
//! (`state.rs`). System accounts (`system:hour-issuance`, …) have no stream and no rules:
//! they are the other side of issuance and redemption and appear only in postings.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::ids::{deserialize_through_new, validate_token, IdError};
use crate::log::StreamName;

/// Longest account id. Platform ids, national volunteer numbers and prefixed UUIDs fit;
/// 64 keeps stream names (`account-` + id) well under the log's limit.
pub const ACCOUNT_ID_BYTES_MAX: usize = 64;

/// Prefix reserved for the ledger's own accounts; clients cannot register ids under it.
pub const SYSTEM_PREFIX: &str = "system:";

/// Most levels of the region tree: city → district → town/street → village/community.
pub const REGION_LEVELS_MAX: usize = 4;
/// Longest single level of a region code.
pub const REGION_LEVEL_BYTES_MAX: usize = 32;

/// An account id: 1..=64 bytes of `[A-Za-z0-9._:-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(CompactString);

deserialize_through_new!(AccountId);

impl AccountId {
    pub fn new(text: impl AsRef<str>) -> Result<Self, IdError> {
        let text = text.as_ref();
        validate_token(text, ACCOUNT_ID_BYTES_MAX)?;
        Ok(Self(CompactString::new(text)))
    }

    /// A ledger account (`system:*`), implicit, with no stream.
    pub fn system(name: SystemAccount) -> Self {
        // Concatenated, not `format!`: every deposit names its issuance account.
        let name = name.as_str();
        let mut id = CompactString::with_capacity(SYSTEM_PREFIX.len() + name.len());
        id.push_str(SYSTEM_PREFIX);
        id.push_str(name);
        Self(id)
    }

    pub fn is_system(&self) -> bool {
        self.0.starts_with(SYSTEM_PREFIX)
    }

    /// Under the system prefix in any letter case (`System:`, `SYSTEM:`): refused for
    /// new accounts, so that no client account reads like one of the ledger's own in a
    /// statement or an export. Only registration asks this; [`AccountId::is_system`]
    /// (exact case) stays what folds and postings go by, so an account registered
    /// under such an id before this rule keeps the history it has.
    pub fn is_reserved(&self) -> bool {
        self.0
            .as_bytes()
            .get(..SYSTEM_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(SYSTEM_PREFIX.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream holding this account's history: `account-<id>`.
    pub fn stream(&self) -> StreamName {
        // Two copies into a buffer of the right size, not `format!` (its `core::fmt`
        // machinery and a guessed capacity): a command asks for two or three streams.
        const PREFIX: &str = "account-";
        let mut name = CompactString::with_capacity(PREFIX.len() + self.0.len());
        name.push_str(PREFIX);
        name.push_str(&self.0);
        StreamName::new(name).expect("an account id always makes a valid stream name")
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ledger's own accounts: the other side of every issuance and redemption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemAccount {
    /// Source of every deposited hour.
    HourIssuance,
    /// Source of every issued point.
    PointIssuance,
    /// Sink of expired hours and points (expiry rules are a later issue).
    Expiry,
    /// Sink of hours exchanged for points.
    HoursRedeemed,
    /// Sink of hours spent on service, fines and other purposes.
    Services,
    /// Sink of points captured by merchants (the merchant's event names the merchant;
    /// settlement statements sum captures per merchant).
    PointsRedeemed,
}

impl SystemAccount {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HourIssuance => "hour-issuance",
            Self::PointIssuance => "point-issuance",
            Self::Expiry => "expiry",
            Self::HoursRedeemed => "hours-redeemed",
            Self::Services => "services",
            Self::PointsRedeemed => "points-redeemed",
        }
    }
}

/// A node of the region tree, written as its path from the city down, levels joined by
/// '/': `hangzhou/xihu/lingyin/community-3`. Each level is 1..=32 bytes of
/// `[a-z0-9-]`; 1..=4 levels. Statistics roll up by prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RegionCode(String);

deserialize_through_new!(RegionCode, "");

/// Why a region code is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region code {0:?} must be 1 to {REGION_LEVELS_MAX} levels joined by '/', each 1 to {REGION_LEVEL_BYTES_MAX} bytes of a-z, 0-9 and '-' (city/district/town/community)")]
    Malformed(String),
}

impl RegionCode {
    pub fn new(text: impl Into<String>) -> Result<Self, RegionError> {
        let text = text.into();
        // Counted as they are checked, no list of levels: every registration read
        // from the log comes through here.
        let mut levels = 0;
        let ok = text.split('/').all(|l| {
            levels += 1;
            levels <= REGION_LEVELS_MAX
                && !l.is_empty()
                && l.len() <= REGION_LEVEL_BYTES_MAX
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if ok {
            Ok(Self(text))
        } else {
            Err(RegionError::Malformed(
                text.chars()
                    .take(REGION_LEVELS_MAX * (REGION_LEVEL_BYTES_MAX + 1))
                    .collect(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of account, with the facts each kind needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountKind {
    /// Gives service and holds hours and points.
    Volunteer {
        region: RegionCode,
        #[serde(with = "crate::domain::serde_time::date")]
        joined_on: chrono::NaiveDate,
    },
    /// Runs activities and verifies its volunteers' service.
    Organisation { region: RegionCode },
    /// Accepts points for goods and discounts.
    Merchant,
    /// Receives donated hours.
    Project,
    /// Reads credit reports of volunteers who consented to it (a partner bank).
    Bank,
}

impl AccountKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Volunteer { .. } => "volunteer",
            Self::Organisation { .. } => "organisation",
            Self::Merchant => "merchant",
            Self::Project => "project",
            Self::Bank => "bank",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_and_streams() {
        let a = AccountId::new("v-001").unwrap();
        assert_eq!(a.stream().as_str(), "account-v-001");
        assert!(!a.is_system());
        assert!(AccountId::system(SystemAccount::Expiry).is_system());
        assert!(AccountId::new("x".repeat(65)).is_err());
        assert!(AccountId::new("bad id").is_err());
    }

    #[test]
    fn region_codes() {
        assert!(RegionCode::new("hangzhou").is_ok());
        assert!(RegionCode::new("hangzhou/xihu/lingyin/community-3").is_ok());
        assert!(RegionCode::new("a/b/c/d/e").is_err());
        assert!(RegionCode::new("Hangzhou").is_err());
        assert!(RegionCode::new("a//b").is_err());
        assert!(RegionCode::new("").is_err());
    }
}

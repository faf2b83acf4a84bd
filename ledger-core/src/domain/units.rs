//! Units of the ledger: service hours and reward points, as exact decimals.
//!
//! Amounts are parsed from strings at the edge (the gRPC layer hands us the client's
//! text untouched) so that no float ever sits between the client and the ledger. A
//! parsed amount is positive, has at most [`UNIT_SCALE_MAX`] decimal places and is held
//! at exactly that scale, so `"1.5"` and `"1.50"` are the same amount with the same
//! canonical text (which matters for request digests, see `commands`).
//!
//! Option not taken: integer hundredths (`u64` centi-hours). It is as exact, but the
//! domain speaks in decimal hours everywhere (reports, bulletins) and `rust_decimal`
//! keeps the arithmetic readable without a conversion at every boundary.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Most decimal places an amount may carry. Platforms record tenths and quarter hours
/// (0.25); two places hold both, and points are priced in hundredths.
pub const UNIT_SCALE_MAX: u32 = 2;

/// Largest amount of hours in one entry (one deposit, spend, transfer…). One service
/// record is at most 24 hours; transfers and donations move a balance that a very
/// active volunteer builds over years (the leading volunteers in the brief hold 1,500+).
/// 10,000 covers every real entry and turns a slipped digit into a rejection.
pub const HOURS_PER_ENTRY_MAX: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// Largest amount of points in one entry. Points are issued by exchanging hours at a
/// rate of a few points per hour; 1,000,000 bounds a mistaken rate or a typo.
pub const POINTS_PER_ENTRY_MAX: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// Longest amount text we try to parse. Longer input is rejected before parsing so that
/// a client cannot make the parser chew on megabytes.
pub const AMOUNT_TEXT_BYTES_MAX: usize = 32;

/// Why a client's amount text is not an amount. Each says what to send instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{text:?} is not a decimal number; send plain digits with an optional '.' and up to {UNIT_SCALE_MAX} places, e.g. \"1.25\"")]
    Malformed { text: String },
    #[error("amount {text} must be greater than zero")]
    NotPositive { text: String },
    #[error("amount {text} has more than {UNIT_SCALE_MAX} decimal places; round it first")]
    ScaleExceeded { text: String },
    #[error("amount {text} exceeds the per-entry maximum {max}; split it into several entries")]
    TooLarge { text: String, max: Decimal },
}

impl AmountError {
    /// Stable machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "AMOUNT_MALFORMED",
            Self::NotPositive { .. } => "AMOUNT_NOT_POSITIVE",
            Self::ScaleExceeded { .. } => "AMOUNT_SCALE_EXCEEDED",
            Self::TooLarge { .. } => "AMOUNT_TOO_LARGE",
        }
    }
}

/// Parse a positive amount of at most [`UNIT_SCALE_MAX`] places and at most `max`.
fn parse_amount(text: &str, max: Decimal) -> Result<Decimal, AmountError> {
    let shown = || text.chars().take(AMOUNT_TEXT_BYTES_MAX).collect::<String>();
    // Only plain decimal notation: no exponent, no sign, no spaces, no '_' separators.
    let plain = !text.is_empty()
        && text.len() <= AMOUNT_TEXT_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && text.bytes().filter(|&b| b == b'.').count() <= 1
        && text.bytes().skip(1).all(|b| b != b'-')
        && text.bytes().any(|b| b.is_ascii_digit())
        && !text.ends_with('.')
        && !text.starts_with('.')
        && !text.starts_with("-.");
    if !plain {
        return Err(AmountError::Malformed { text: shown() });
    }
    let value = Decimal::from_str(text).map_err(|_| AmountError::Malformed { text: shown() })?;
    if value <= Decimal::ZERO {
        return Err(AmountError::NotPositive { text: shown() });
    }
    if value.normalize().scale() > UNIT_SCALE_MAX {
        return Err(AmountError::ScaleExceeded { text: shown() });
    }
    if value > max {
        return Err(AmountError::TooLarge { text: shown(), max });
    }
    Ok(canonical(value))
}

/// `value` at exactly [`UNIT_SCALE_MAX`] places. Callers guarantee the value has no
/// more places than that, so this never rounds.
fn canonical(value: Decimal) -> Decimal {
    let mut v = value;
    v.rescale(UNIT_SCALE_MAX);
    assert_eq!(v, value, "canonical() must not round");
    v
}

macro_rules! amount_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Decimal);

        impl $name {
            /// The per-entry maximum of this unit.
            pub const MAX: Decimal = $max;

            /// Parse client text: positive, at most two places, at most [`Self::MAX`].
            pub fn parse(text: &str) -> Result<Self, AmountError> {
                parse_amount(text, Self::MAX).map(Self)
            }

            /// From an exact decimal (tests, computed amounts); same rules as `parse`.
            pub fn new(value: Decimal) -> Result<Self, AmountError> {
                Self::parse(&value.to_string())
            }

            pub fn value(&self) -> Decimal {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = AmountError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

amount_type!(
    /// A positive number of service hours for one entry.
    Hours,
    HOURS_PER_ENTRY_MAX
);
amount_type!(
    /// A positive number of reward points (益币) for one entry.
    Points,
    POINTS_PER_ENTRY_MAX
);

/// The unit of a posting. Honour hours are a unit of their own so that "postings sum to
/// zero per unit" keeps them apart from spendable credit hours: a volunteer's `Hours`
/// balance is exactly what they can spend, and lifetime service is the sum of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Credit hours: verified at the time, spendable and exchangeable.
    Hours,
    /// Honour hours: back-filled by an administrator; on the record, not spendable.
    HonourHours,
    /// Reward points.
    Points,
}

impl Unit {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Hours => "hours",
            Self::HonourHours => "honour_hours",
            Self::Points => "points",
        }
    }
}

/// A configured, versioned exchange rate from credit hours to points.
///
/// Rounding rule: `points = hours × points_per_hour`, rounded toward zero to
/// [`UNIT_SCALE_MAX`] places. Toward zero so the ledger never issues a fraction of a
/// point it was not paid for in hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRate {
    pub version: u32,
    pub points_per_hour: Decimal,
}

impl ExchangeRate {
    /// The points `hours` buy at this rate, or `None` if that rounds to zero or exceeds
    /// the points per-entry maximum.
    pub fn points_for(&self, hours: Hours) -> Option<Points> {
        let raw = hours.value().checked_mul(self.points_per_hour)?;
        let rounded =
            raw.round_dp_with_strategy(UNIT_SCALE_MAX, rust_decimal::RoundingStrategy::ToZero);
        Points::new(rounded).ok()
    }
}

impl Default for ExchangeRate {
    /// Version 1: ten points per hour, a round figure for demos and tests.
    fn default() -> Self {
        Self {
            version: 1,
            points_per_hour: Decimal::from(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parses_canonical_two_place_amounts() {
        assert_eq!(Hours::parse("1.5").unwrap().to_string(), "1.50");
        assert_eq!(Hours::parse("1.50").unwrap(), Hours::parse("1.5").unwrap());
        assert_eq!(Hours::parse("0.25").unwrap().to_string(), "0.25");
        assert_eq!(Hours::parse("10000").unwrap().to_string(), "10000.00");
        assert_eq!(Hours::parse("2.500").unwrap().to_string(), "2.50");
    }

    #[test]
    fn rejects_bad_amounts_by_rule() {
        for (text, reason) in [
            ("", "AMOUNT_MALFORMED"),
            ("abc", "AMOUNT_MALFORMED"),
            ("1e3", "AMOUNT_MALFORMED"),
            (" 1", "AMOUNT_MALFORMED"),
            ("+1", "AMOUNT_MALFORMED"),
            ("1.", "AMOUNT_MALFORMED"),
            (".5", "AMOUNT_MALFORMED"),
            ("1.2.3", "AMOUNT_MALFORMED"),
            ("1-2", "AMOUNT_MALFORMED"),
            ("NaN", "AMOUNT_MALFORMED"),
            ("99999999999999999999999999999999999", "AMOUNT_MALFORMED"),
            ("0", "AMOUNT_NOT_POSITIVE"),
            ("0.00", "AMOUNT_NOT_POSITIVE"),
            ("-1", "AMOUNT_NOT_POSITIVE"),
            ("0.001", "AMOUNT_SCALE_EXCEEDED"),
            ("1.125", "AMOUNT_SCALE_EXCEEDED"),
            ("10000.01", "AMOUNT_TOO_LARGE"),
        ] {
            assert_eq!(Hours::parse(text).unwrap_err().reason(), reason, "{text:?}");
        }
        assert_eq!(
            Points::parse("1000000.01").unwrap_err().reason(),
            "AMOUNT_TOO_LARGE"
        );
    }

    #[test]
    fn exchange_rounds_toward_zero() {
        let rate = ExchangeRate {
            version: 2,
            points_per_hour: d("3.333"),
        };
        // 1.00 × 3.333 = 3.333 → 3.33
        assert_eq!(
            rate.points_for(Hours::parse("1").unwrap())
                .unwrap()
                .to_string(),
            "3.33"
        );
        // 0.01 × 3.333 = 0.03333 → 0.03
        assert_eq!(
            rate.points_for(Hours::parse("0.01").unwrap())
                .unwrap()
                .to_string(),
            "0.03"
        );
        let tiny = ExchangeRate {
            version: 3,
            points_per_hour: d("0.5"),
        };
        // 0.01 × 0.5 = 0.005 → 0.00: nothing to issue.
        assert_eq!(tiny.points_for(Hours::parse("0.01").unwrap()), None);
    }
}

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

/// Longest amount text we try to parse (and any plain decimal, [`parse_plain_decimal`]).
/// Longer input is rejected before parsing so that a client cannot make the parser
/// chew on megabytes.
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

/// Why a text is not a plain decimal ([`parse_plain_decimal`]). Callers turn it into
/// their own error, which says what to send instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlainDecimalError {
    #[error("not plain decimal notation (digits with an optional '.' and digits after it, at most {AMOUNT_TEXT_BYTES_MAX} bytes)")]
    Malformed,
    #[error("more than {max} decimal places")]
    ScaleExceeded { max: u32 },
    /// Plain notation, but more digits than a decimal holds (28 to 29 significant
    /// digits): a number far beyond any limit the ledger has, not a malformed one.
    #[error("more digits than a decimal holds")]
    OutOfRange,
}

/// Parse plain decimal notation: ASCII digits, optionally a '.' and more digits
/// (`"5"`, `"0.25"`, `"150.5"`), at most [`AMOUNT_TEXT_BYTES_MAX`] bytes, with at
/// most `scale_max` decimal places once trailing zeros are dropped (`"1.500"` has two).
/// Signs, exponents, spaces, separators, `"5."` and `".5"` are refused rather than
/// guessed at. The value keeps the scale it was written with; a caller that needs a
/// fixed scale rescales it.
///
/// The one parser of every decimal the ledger takes as text: amounts here, star
/// thresholds in the projections.
pub fn parse_plain_decimal(text: &str, scale_max: u32) -> Result<Decimal, PlainDecimalError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let plain = text.len() <= AMOUNT_TEXT_BYTES_MAX
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        // "5." is refused: a '.' needs digits after it.
        && frac.is_empty() != text.contains('.');
    if !plain {
        return Err(PlainDecimalError::Malformed);
    }
    // Places are counted in the text, not in the parsed value: `Decimal::from_str`
    // rounds what does not fit its 28 places ("1.000…0001" with 29 places reads as 1),
    // which would accept an amount the client did not send.
    let places = frac.trim_end_matches('0').len();
    if places > scale_max as usize {
        return Err(PlainDecimalError::ScaleExceeded { max: scale_max });
    }
    let value = Decimal::from_str(text).map_err(|_| PlainDecimalError::OutOfRange)?;
    // Rounded anyway (more significant digits than the type holds): not this number.
    if places > value.scale() as usize {
        return Err(PlainDecimalError::OutOfRange);
    }
    Ok(value)
}

/// Parse a positive amount of at most [`UNIT_SCALE_MAX`] places and at most `max`.
fn parse_amount(text: &str, max: Decimal) -> Result<Decimal, AmountError> {
    let shown = || text.chars().take(AMOUNT_TEXT_BYTES_MAX).collect::<String>();
    if text.len() > AMOUNT_TEXT_BYTES_MAX {
        return Err(AmountError::Malformed { text: shown() });
    }
    // A leading '-' is read so that "-1" is told it is not positive rather than
    // malformed; a negative amount is that whatever its places.
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let value = match parse_plain_decimal(digits, UNIT_SCALE_MAX) {
        Err(PlainDecimalError::Malformed) => return Err(AmountError::Malformed { text: shown() }),
        _ if negative => return Err(AmountError::NotPositive { text: shown() }),
        // Zero has no places, so more than two means a positive amount.
        Err(PlainDecimalError::ScaleExceeded { .. }) => {
            return Err(AmountError::ScaleExceeded { text: shown() })
        }
        // At most two places were checked first, so only a huge whole part overflows.
        Err(PlainDecimalError::OutOfRange) => {
            return Err(AmountError::TooLarge { text: shown(), max })
        }
        Ok(value) => value,
    };
    if value <= Decimal::ZERO {
        return Err(AmountError::NotPositive { text: shown() });
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

/// `value` as a whole number of hundredths (`2.50` → 250; `1.500` → 150), None if it
/// has a third place that is not zero (`1.005`) or does not fit an `i64`.
///
/// Integer arithmetic on the mantissa, not `Decimal::rescale` and comparisons: every
/// amount of every stored payload is checked with it when read (three per deposit),
/// and the projections fold amounts in hundredths; a rescale and two `Decimal`
/// comparisons cost ~250 instructions per amount, this a handful.
pub fn hundredths(value: Decimal) -> Option<i64> {
    hundredths_wide(value).and_then(|h| i64::try_from(h).ok())
}

/// [`hundredths`] without the `i64` bound: a `Decimal`'s mantissa has at most 96
/// bits, so times 100 it fits an `i128`.
fn hundredths_wide(value: Decimal) -> Option<i128> {
    let (m, scale) = (value.mantissa(), value.scale());
    // Every amount read from a binary payload has exactly two places.
    match scale {
        2 => return Some(m),
        1 => return Some(m * 10),
        0 => return Some(m * 100),
        _ => {}
    }
    const _: () = assert!(UNIT_SCALE_MAX == 2, "the arms above are the places below 2");
    // A `Decimal`'s scale is at most 28, so 10^(scale - 2) fits an `i128`; checked
    // all the same, so that this does not rest on rust_decimal's limit.
    let d = 10i128.checked_pow(scale - UNIT_SCALE_MAX)?;
    (m % d == 0).then_some(m / d)
}

/// Serde for amounts (entries and posting legs): in JSON the decimal's text, as
/// `rust_decimal` writes and reads it; in a binary payload (a serializer that is not
/// human-readable) the whole number of hundredths, as an `i64`. Amounts are whole
/// hundredths by the units' rules; the reader checks those rules on the value either
/// way. A JSON amount written with fewer places (`"2.5"`, which the ledger never
/// writes) reads back from binary at two (`2.50`): the same value.
pub mod amount_serde {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Serialize};

    use super::UNIT_SCALE_MAX;

    pub fn serialize<S: serde::Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return Serialize::serialize(value, s);
        }
        let mut v = *value;
        v.rescale(UNIT_SCALE_MAX);
        // The types that carry amounts hold whole hundredths far below 2^63.
        assert_eq!(v, *value, "an amount is whole hundredths");
        let hundredths = i64::try_from(v.mantissa()).expect("an amount fits an i64");
        s.serialize_i64(hundredths)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        if d.is_human_readable() {
            return <Decimal as Deserialize>::deserialize(d);
        }
        let hundredths = i64::deserialize(d)?;
        Ok(Decimal::new(hundredths, UNIT_SCALE_MAX))
    }
}

/// The largest amount a posting moves: the larger per-entry maximum (points).
pub const POSTING_AMOUNT_MAX: Decimal = POINTS_PER_ENTRY_MAX;

macro_rules! amount_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Decimal);

        /// The decimal's text in JSON (`"2.50"`); whole hundredths in a binary payload.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                amount_serde::serialize(&self.0, s)
            }
        }

        /// Read from a stored payload: the same rules as [`Self::parse`] (positive, at
        /// most two places, at most [`Self::MAX`]), checked on the value. A payload is
        /// not trusted to have come through `parse`: a log imported, restored or written
        /// by another writer may hold anything, and the read models fold amounts in
        /// hundredths (`projections::model::centi` asserts). Refused here, such a payload
        /// is a decode error (the worker reports `ApplyError::Decode`), not a panic.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = amount_serde::deserialize(d)?;
                // Positive, whole hundredths, at most MAX: in integers (`hundredths`).
                let max = hundredths(Self::MAX).expect("a unit's maximum is whole hundredths");
                if !hundredths(value).is_some_and(|h| h > 0 && h <= max) {
                    return Err(serde::de::Error::custom(format_args!(
                        "amount {value} is not positive with at most {UNIT_SCALE_MAX} places and at most {}",
                        Self::MAX
                    )));
                }
                Ok(Self(value))
            }
        }

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

/// Most points one hour may buy: a rate above this could not exchange even 0.01 hour
/// without passing [`POINTS_PER_ENTRY_MAX`], so no exchange would ever succeed.
pub const POINTS_PER_HOUR_MAX: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 0);

/// Most decimal places a configured rate may have. The rate is not an amount (it is
/// multiplied, then rounded toward zero), so it may be finer than a hundredth; six
/// places are finer than any rate a scheme publishes.
pub const POINTS_PER_HOUR_SCALE_MAX: u32 = 6;

/// Why some hours cannot be exchanged at a rate ([`ExchangeRate::points_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexchangeable {
    /// They buy less than a hundredth of a point.
    TooSmall,
    /// They buy more than [`POINTS_PER_ENTRY_MAX`] points; `hours_max` hours do not.
    TooLarge { hours_max: Decimal },
}

/// Why a configured points-per-hour rate is refused ([`ExchangeRate::points_per_hour`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("{text:?} is not a rate in plain decimal notation with at most {POINTS_PER_HOUR_SCALE_MAX} places (e.g. \"10\" or \"2.5\")")]
    Malformed { text: String },
    #[error("{text:?} points per hour must be greater than zero")]
    NotPositive { text: String },
    #[error("{text:?} points per hour is over {POINTS_PER_HOUR_MAX}: even 0.01 hour would buy more than the per-entry maximum of {POINTS_PER_ENTRY_MAX} points")]
    TooLarge { text: String },
}

impl ExchangeRate {
    /// A configured rate's points per hour, from its text (a server flag): plain
    /// decimal notation, as amounts are, above zero and at most
    /// [`POINTS_PER_HOUR_MAX`].
    pub fn points_per_hour(text: &str) -> Result<Decimal, RateError> {
        let value = parse_plain_decimal(text, POINTS_PER_HOUR_SCALE_MAX).map_err(|e| match e {
            PlainDecimalError::OutOfRange => RateError::TooLarge { text: text.into() },
            _ => RateError::Malformed { text: text.into() },
        })?;
        if value <= Decimal::ZERO {
            return Err(RateError::NotPositive { text: text.into() });
        }
        if value > POINTS_PER_HOUR_MAX {
            return Err(RateError::TooLarge { text: text.into() });
        }
        Ok(value.normalize())
    }

    /// The points `hours` buy at this rate, or why they buy none: less than a
    /// hundredth of a point, or more than the points per-entry maximum.
    pub fn points_for(&self, hours: Hours) -> Result<Points, Unexchangeable> {
        let too_large = || Unexchangeable::TooLarge {
            hours_max: self.hours_max(),
        };
        let raw = hours
            .value()
            .checked_mul(self.points_per_hour)
            .ok_or_else(too_large)?;
        let rounded =
            raw.round_dp_with_strategy(UNIT_SCALE_MAX, rust_decimal::RoundingStrategy::ToZero);
        if rounded > POINTS_PER_ENTRY_MAX {
            return Err(too_large());
        }
        Points::new(rounded).map_err(|_| Unexchangeable::TooSmall)
    }

    /// Hours that buy at most [`POINTS_PER_ENTRY_MAX`] points (a few hundredths more
    /// may too, when the points round down to the maximum).
    fn hours_max(&self) -> Decimal {
        let mut hours = POINTS_PER_ENTRY_MAX
            .checked_div(self.points_per_hour)
            .unwrap_or_default()
            .round_dp_with_strategy(UNIT_SCALE_MAX, rust_decimal::RoundingStrategy::ToZero);
        // Shown as an amount is: at two places.
        hours.rescale(UNIT_SCALE_MAX);
        hours
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

    /// `hundredths` in integers agrees with the definition it replaced on the decode
    /// path (rescale to two places, compare, take the mantissa), for any decimal: any
    /// mantissa, any scale, both signs, the edges of `i64` included.
    #[test]
    fn hundredths_agrees_with_rescaling() {
        use proptest::prelude::*;
        let by_rescale = |v: Decimal| {
            let mut r = v;
            r.rescale(UNIT_SCALE_MAX);
            (r == v).then(|| i64::try_from(r.mantissa()).ok()).flatten()
        };
        let edges = [
            Decimal::ZERO,
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(i64::MAX, 2),
            Decimal::new(i64::MIN, 2),
            Decimal::new(i64::MAX, 0),
            Decimal::from_i128_with_scale(i128::from(i64::MAX) + 1, 2),
            d("1.005"),
            d("1.500"),
            d("-0.01"),
        ];
        for v in edges {
            assert_eq!(hundredths(v), by_rescale(v), "{v}");
        }
        proptest!(|(lo in any::<u32>(), mid in any::<u32>(), hi in 0u32..4, neg in any::<bool>(), scale in 0u32..=28)| {
            let v = Decimal::from_parts(lo, mid, hi, neg, scale);
            prop_assert_eq!(hundredths(v), by_rescale(v), "{}", v);
        });
        // Whole hundredths written with extra zero places (`h` at scale 2 + k, e.g.
        // 1.500): random mantissas above almost never are, so these are made.
        proptest!(|(h in any::<i64>(), k in 0u32..=16)| {
            let Some(m) = i128::from(h).checked_mul(10i128.pow(k)) else { return Ok(()) };
            let Ok(v) = Decimal::try_from_i128_with_scale(m, 2 + k) else { return Ok(()) };
            prop_assert_eq!(hundredths(v), by_rescale(v), "{}", v);
            prop_assert_eq!(hundredths(v), Some(h), "{}", v);
        });
    }

    /// What a stored amount's reader accepts is what it accepted with `Decimal`
    /// comparisons (positive, at most two places, at most the maximum), at the edges.
    #[test]
    fn a_stored_amount_is_accepted_by_the_old_rules_at_the_edges() {
        let old_rule = |v: Decimal, max: Decimal| {
            let mut r = v;
            r.rescale(UNIT_SCALE_MAX);
            v > Decimal::ZERO && v <= max && r == v
        };
        let read = |v: Decimal| -> bool {
            // As a JSON payload holds it: the decimal's text.
            serde_json::from_str::<Hours>(&format!("\"{v}\"")).is_ok()
        };
        let max = Hours::MAX;
        for v in [
            Decimal::ZERO,
            -Decimal::ZERO,
            d("0.01"),
            d("-0.01"),
            d("0.001"),
            d("0.010"),
            max,
            max + d("0.01"),
            max - d("0.01"),
            d("10000.000"),
            d("10000.001"),
            Decimal::new(i64::MIN, 2),
            Decimal::new(i64::MAX, 2),
            Decimal::MAX,
            Decimal::MIN,
        ] {
            assert_eq!(read(v), old_rule(v, max), "{v}");
        }
    }

    /// In a binary payload an amount is its hundredths; it reads back as the same
    /// value at two places, and a count of hundredths the unit refuses is refused.
    #[test]
    fn an_amount_in_a_binary_payload_is_its_hundredths() {
        for (text, hundredths) in [("0.01", 1i64), ("2.5", 250), ("10000", 1_000_000)] {
            let h = Hours::parse(text).unwrap();
            let bytes = postcard::to_allocvec(&h).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&hundredths).unwrap());
            let back: Hours = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, h);
            assert_eq!(back.value().scale(), 2, "read back at two places");
        }
        let p = Points::parse("1000000").unwrap();
        let back: Points = postcard::from_bytes(&postcard::to_allocvec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        for refused in [0i64, -1, 1_000_001] {
            let bytes = postcard::to_allocvec(&refused).unwrap();
            assert!(postcard::from_bytes::<Hours>(&bytes).is_err(), "{refused}");
        }
        // JSON is unchanged: the decimal's text.
        assert_eq!(
            serde_json::to_string(&Hours::parse("2.50").unwrap()).unwrap(),
            "\"2.50\""
        );
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
            // Over the 32-byte bound: not read at all.
            ("99999999999999999999999999999999999", "AMOUNT_MALFORMED"),
            // Plain digits within the bound that overflow a decimal: too large, as
            // 28 nines (which a decimal holds) are.
            ("9999999999999999999999999999", "AMOUNT_TOO_LARGE"),
            ("99999999999999999999999999999", "AMOUNT_TOO_LARGE"),
            ("1000000000000000000000000000000", "AMOUNT_TOO_LARGE"),
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
    fn plain_decimals_parse_as_written_up_to_the_given_places() {
        let p = |t: &str, places: u32| parse_plain_decimal(t, places);
        assert_eq!(p("5", 0), Ok(d("5")));
        assert_eq!(p("0", 2), Ok(Decimal::ZERO));
        assert_eq!(p("150.5", 2), Ok(d("150.5")));
        // As written: the scale is the text's; trailing zeros are not places.
        assert_eq!(p("1.500", 2).unwrap().scale(), 3);
        assert_eq!(p("2.50", 1), Ok(d("2.5")));
        assert_eq!(
            p("1.125", 2),
            Err(PlainDecimalError::ScaleExceeded { max: 2 })
        );
        assert_eq!(
            p("1.5", 0),
            Err(PlainDecimalError::ScaleExceeded { max: 0 })
        );
        // More places than `Decimal` holds are refused, not rounded away.
        for many in [
            "1.00000000000000000000000000001",
            "0.000000000000000000000000000001",
        ] {
            assert_eq!(
                p(many, 2),
                Err(PlainDecimalError::ScaleExceeded { max: 2 }),
                "{many}"
            );
        }
        // Trailing zeros beyond what `Decimal` holds are still no places.
        assert_eq!(p("1.500000000000000000000000000000", 2), Ok(d("1.5")));
        // A fraction `Decimal` would round off (more digits than its 96 bits hold).
        assert_eq!(
            p("999999999999999999999999999.99", 2),
            Err(PlainDecimalError::OutOfRange)
        );
        for bad in [
            "", "-1", "+1", "1e3", " 1", "1 ", "1.", ".5", "1.2.3", "1_000", "1,5", "NaN",
            "١", // an Arabic-Indic digit: digits are ASCII
        ] {
            assert_eq!(p(bad, 2), Err(PlainDecimalError::Malformed), "{bad:?}");
        }
        // The length bound, exactly: leading zeros cost bytes, not value.
        let zeros = "0".repeat(AMOUNT_TEXT_BYTES_MAX);
        assert_eq!(p(&zeros, 2), Ok(Decimal::ZERO));
        assert_eq!(
            p(&format!("{zeros}0"), 2),
            Err(PlainDecimalError::Malformed)
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
        assert_eq!(
            tiny.points_for(Hours::parse("0.01").unwrap()),
            Err(Unexchangeable::TooSmall)
        );
    }

    /// A platform's probe: 5,000.01 hours at 200 points per hour were refused as
    /// "too small, exchange more hours", the opposite of what would work.
    #[test]
    fn hours_that_buy_more_than_the_per_entry_maximum_are_too_large_not_too_small() {
        let rate = ExchangeRate {
            version: 4,
            points_per_hour: d("200"),
        };
        assert_eq!(
            rate.points_for(Hours::parse("5000").unwrap())
                .unwrap()
                .to_string(),
            "1000000.00"
        );
        for hours in ["5000.01", "10000"] {
            assert_eq!(
                rate.points_for(Hours::parse(hours).unwrap()),
                Err(Unexchangeable::TooLarge {
                    hours_max: d("5000.00")
                }),
                "{hours}"
            );
        }
        let third = ExchangeRate {
            version: 5,
            points_per_hour: d("3"),
        };
        // 10,000 hours (the most one entry holds) at 3 points each are well inside
        // the points maximum.
        assert_eq!(
            third
                .points_for(Hours::parse("10000").unwrap())
                .map(|p| p.to_string()),
            Ok("30000.00".to_owned())
        );
    }

    #[test]
    fn a_configured_rate_is_plain_positive_and_can_exchange_a_hundredth_of_an_hour() {
        assert_eq!(ExchangeRate::points_per_hour("10"), Ok(d("10")));
        assert_eq!(ExchangeRate::points_per_hour("2.50"), Ok(d("2.5")));
        assert_eq!(ExchangeRate::points_per_hour("0.333"), Ok(d("0.333")));
        assert_eq!(
            ExchangeRate::points_per_hour("100000000"),
            Ok(d("100000000"))
        );
        for (text, want) in [
            ("1e2", "Malformed"),
            ("-1", "Malformed"),
            (" 10", "Malformed"),
            ("0.0000001", "Malformed"),
            ("0", "NotPositive"),
            ("0.000", "NotPositive"),
            ("100000000.01", "TooLarge"),
            ("99999999999999999999999999999999", "TooLarge"),
        ] {
            let got = ExchangeRate::points_per_hour(text).unwrap_err();
            assert!(format!("{got:?}").starts_with(want), "{text}: {got:?}");
        }
    }
}

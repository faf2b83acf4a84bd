//! Serde for the instants and dates that events and commands carry: exactly the JSON
//! text of chrono's own impls, written and read with less work.
//!
//! Why: chrono serialises a `DateTime` or a `NaiveDate` through
//! `Serializer::collect_str`, which serde_json runs through `core::fmt` and escapes
//! fragment by fragment, and it reads them back with its relaxed `FromStr`, which
//! walks a list of format items. A batched deposit writes five instants and dates
//! (three in the event, two in the command digest), and a replay reads four per
//! deposit; together they were ~8 % of the server's CPU per batched deposit and
//! ~10 % of a deposit's decode (docs/benchmarks.md, "Fifth session").
//!
//! The text must not change: it is in every stored payload, the chain hash covers it
//! and a retried command's digest is compared with the stored one. So:
//! - an instant in years 0–9999 is written into a stack buffer, step by step as
//!   chrono's RFC 3339 writer writes it (`to_rfc3339_opts(AutoSi, true)`, the very
//!   function with the very arguments its `Serialize` uses), then `serialize_str`;
//!   any other year by that chrono function itself (property-tested below against
//!   chrono's `Serialize`);
//! - an instant is read by chrono's strict RFC 3339 parser (`parse_from_rfc3339`,
//!   hand-written, no format items) and, only when that refuses the text, by the
//!   relaxed `FromStr` chrono's `Deserialize` uses: the same texts are accepted, with
//!   the same values and the same error messages (property-tested below);
//! - a date in years 0–9999 is written as its ten bytes `YYYY-MM-DD` (chrono's
//!   `Display` for those years) and read from exactly that shape; any other year or
//!   shape goes through chrono.
//!
//! Binary payloads (a serializer that is not human-readable, postcard) carry an
//! instant as `(seconds since 1970, nanoseconds)` and a date as days from CE: the
//! same values, without writing or parsing text.
//!
//! Option not taken: a newtype for instants in every event. It would have put the
//! speed-up in one place, but changed the type of ~30 public fields that every crate
//! reads, for no difference in the JSON.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// `#[serde(with = "crate::domain::serde_time::utc")]` on a `DateTime<Utc>` field.
pub mod utc {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // Binary payloads (`docs/events.md`, "Binary payloads"): whole seconds
            // since 1970 and the nanoseconds past them, exactly the value the text
            // holds (a leap second's nanoseconds run past 10^9, as in chrono).
            return serde::Serialize::serialize(&(t.timestamp(), t.timestamp_subsec_nanos()), s);
        }
        let mut text = [0u8; INSTANT_BYTES_MAX];
        match write(t, &mut text) {
            Some(len) => s.serialize_str(
                std::str::from_utf8(&text[..len]).expect("digits, signs and letters are ASCII"),
            ),
            None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }

    /// The longest text [`write`] makes: `YYYY-MM-DDTHH:MM:SS.fffffffffZ`.
    const INSTANT_BYTES_MAX: usize = 30;

    /// `t` as chrono's `to_rfc3339_opts(AutoSi, true)` writes it (chrono's
    /// `write_rfc3339`, step by step), for years 0–9999 (the rest carry a sign and are
    /// left to chrono): the length written. Into a stack buffer rather than the
    /// `String` chrono returns, and with the fraction's digits written here rather than
    /// through `write!`: a batched deposit writes five instants, which cost ~460
    /// instructions each through chrono (docs/benchmarks.md, "Seventh session").
    fn write(t: &DateTime<Utc>, out: &mut [u8; INSTANT_BYTES_MAX]) -> Option<usize> {
        // The UTC reading itself: `DateTime<Utc>`'s own accessors add the (zero) offset
        // again on every call, which cost more than writing the digits.
        let t = t.naive_utc();
        // The date part is what `date` writes; a year it leaves to chrono, so do we.
        let day = super::date::write(&t.date())?;
        let (hour, minute, mut second) = (t.hour(), t.minute(), t.second());
        let mut nano = t.nanosecond();
        // A leap second: chrono writes second 60 and the rest of the fraction.
        if nano >= 1_000_000_000 {
            second += 1;
            nano -= 1_000_000_000;
        }
        let digit = |n: u32| b'0' + (n % 10) as u8;
        const HEAD: usize = 19;
        out[..day.len()].copy_from_slice(&day);
        out[day.len()..HEAD].copy_from_slice(&[
            b'T',
            digit(hour / 10),
            digit(hour),
            b':',
            digit(minute / 10),
            digit(minute),
            b':',
            digit(second / 10),
            digit(second),
        ]);
        // AutoSi: no fraction, or the fewest of 3, 6 or 9 places that show it exactly.
        let (mut fraction, places) = if nano == 0 {
            (0, 0)
        } else if nano.is_multiple_of(1_000_000) {
            (nano / 1_000_000, 3)
        } else if nano.is_multiple_of(1_000) {
            (nano / 1_000, 6)
        } else {
            (nano, 9)
        };
        let mut len = HEAD;
        if places > 0 {
            out[len] = b'.';
            for at in (len + 1..=len + places).rev() {
                out[at] = digit(fraction);
                fraction /= 10;
            }
            len += 1 + places;
        }
        out[len] = b'Z';
        Some(len + 1)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        if !d.is_human_readable() {
            let (secs, nanos): (i64, u32) = serde::Deserialize::deserialize(d)?;
            return DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
                de::Error::custom(format_args!(
                    "instant {secs} s {nanos} ns is out of chrono's range"
                ))
            });
        }
        d.deserialize_str(InstantVisitor)
    }

    /// What chrono's `Deserialize` for `DateTime<Utc>` returns for `text`.
    pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text)
            .or_else(|_| text.parse::<DateTime<FixedOffset>>())
            .map(|t| t.with_timezone(&Utc))
    }

    struct InstantVisitor;

    impl Visitor<'_> for InstantVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // chrono's words, so that a refusal reads as it did.
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse(v).map_err(E::custom)
        }
    }
}

/// `#[serde(with = "crate::domain::serde_time::date")]` on a `NaiveDate` field.
pub mod date {
    use super::*;

    /// `YYYY-MM-DD`.
    pub(super) const DATE_LEN: usize = 10;

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // Binary payloads: days since 0001-01-01 (that day is 1), chrono's count.
            return s.serialize_i32(d.num_days_from_ce());
        }
        match write(d) {
            Some(bytes) => {
                let text = std::str::from_utf8(&bytes).expect("digits and dashes are ASCII");
                s.serialize_str(text)
            }
            None => s.serialize_str(&d.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        if !d.is_human_readable() {
            let days: i32 = serde::Deserialize::deserialize(d)?;
            return NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| {
                de::Error::custom(format_args!("date {days} days from CE is out of range"))
            });
        }
        d.deserialize_str(DateVisitor)
    }

    /// `d` as chrono's `Display` writes it, for years 0–9999 (the rest carry a sign and
    /// are left to chrono).
    pub(super) fn write(d: &NaiveDate) -> Option<[u8; DATE_LEN]> {
        let year = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
        let digit = |n: u32| b'0' + (n % 10) as u8;
        let (month, day) = (d.month(), d.day());
        Some([
            digit(year / 1000),
            digit(year / 100),
            digit(year / 10),
            digit(year),
            b'-',
            digit(month / 10),
            digit(month),
            b'-',
            digit(day / 10),
            digit(day),
        ])
    }

    /// What chrono's `Deserialize` for `NaiveDate` returns for `text`.
    pub fn parse(text: &str) -> Result<NaiveDate, chrono::ParseError> {
        match fast(text.as_bytes()) {
            Some(d) => Ok(d),
            None => text.parse(),
        }
    }

    /// Exactly `DDDD-DD-DD` naming a real day; anything else is chrono's to judge.
    fn fast(b: &[u8]) -> Option<NaiveDate> {
        if b.len() != DATE_LEN || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let n = |i: usize| -> Option<u32> {
            let c = b[i];
            c.is_ascii_digit().then(|| u32::from(c - b'0'))
        };
        let year = n(0)? * 1000 + n(1)? * 100 + n(2)? * 10 + n(3)?;
        let month = n(5)? * 10 + n(6)?;
        let day = n(8)? * 10 + n(9)?;
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
    }

    struct DateVisitor;

    impl Visitor<'_> for DateVisitor {
        type Value = NaiveDate;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // chrono's words, so that a refusal reads as it did.
            f.write_str("a formatted date string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse(v).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ours {
        #[serde(with = "utc")]
        at: DateTime<Utc>,
        #[serde(with = "date")]
        on: NaiveDate,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Chronos {
        at: DateTime<Utc>,
        on: NaiveDate,
    }

    fn both(at: DateTime<Utc>, on: NaiveDate) -> (String, String) {
        (
            serde_json::to_string(&Ours { at, on }).expect("encodes"),
            serde_json::to_string(&Chronos { at, on }).expect("encodes"),
        )
    }

    /// Reads `json` both ways: equal values, or both refused with the same message.
    fn read_alike(json: &str) {
        let ours = serde_json::from_str::<Ours>(json).map_err(|e| e.to_string());
        let chronos = serde_json::from_str::<Chronos>(json).map_err(|e| e.to_string());
        match (ours, chronos) {
            (Ok(o), Ok(c)) => assert_eq!((o.at, o.on), (c.at, c.on), "{json}"),
            (Err(o), Err(c)) => assert_eq!(o, c, "{json}"),
            (o, c) => panic!("{json}: ours {o:?}, chrono's {c:?}"),
        }
    }

    #[test]
    fn the_text_is_chronos_for_every_precision_and_odd_years() {
        let base = Utc
            .with_ymd_and_hms(2026, 3, 5, 9, 7, 3)
            .single()
            .expect("valid");
        let day = NaiveDate::from_ymd_opt(2026, 12, 5).expect("valid");
        for nanos in [0, 1, 999, 1_000, 120_000, 1_000_000, 5_000_000, 123_456_789] {
            let (o, c) = both(base + Duration::nanoseconds(nanos), day);
            assert_eq!(o, c);
        }
        // A leap second (nanos >= 1e9) is written as second 60 by both.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("valid")
            .and_utc();
        let (o, c) = both(leap, day);
        assert_eq!(o, c);
        assert!(o.contains("23:59:60.500Z"), "{o}");
        read_alike(&o);
        // Far outside years 0..=9999 on both sides.
        for secs in [-8_000_000_000_000i64, -62_200_000_000, 8_000_000_000_000] {
            let at = DateTime::from_timestamp(secs, 7).expect("in range");
            let (o, c) = both(at, at.date_naive());
            assert_eq!(o, c);
            read_alike(&o);
        }
        // A leap second, far years and the range's ends read back from binary too.
        for at in [
            leap,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::from_timestamp(-8_000_000_000_000, 7).expect("in range"),
        ] {
            let ours = Ours {
                at,
                on: at.date_naive(),
            };
            let bytes = postcard::to_allocvec(&ours).expect("encodes");
            assert_eq!(postcard::from_bytes::<Ours>(&bytes).expect("reads"), ours);
        }
        // Out of range in binary: refused, not a panic.
        let bad = postcard::to_allocvec(&(i64::MAX, 0u32, 1i32)).expect("encodes");
        assert!(postcard::from_bytes::<Ours>(&bad).is_err());
        let bad = postcard::to_allocvec(&(0i64, 0u32, i32::MAX)).expect("encodes");
        assert!(postcard::from_bytes::<Ours>(&bad).is_err());
        for (y, m, d) in [
            (0, 1, 1),
            (9999, 12, 31),
            (-1, 6, 30),
            (10_000, 1, 1),
            (1, 2, 3),
        ] {
            let on = NaiveDate::from_ymd_opt(y, m, d).expect("valid");
            let at = on.and_hms_opt(23, 59, 59).expect("valid").and_utc();
            let (o, c) = both(at, on);
            assert_eq!(o, c);
            read_alike(&o);
        }
    }

    #[test]
    fn relaxed_and_refused_texts_read_as_chrono_reads_them() {
        for json in [
            r#"{"at":"2026-03-05 09:07:03Z","on":"2026-03-05"}"#,
            r#"{"at":"2026-03-05t09:07:03+02:00","on":"2026-3-5"}"#,
            r#"{"at":"2026-03-05T09:07:03.1234567891Z","on":" 2026-03-05"}"#,
            r#"{"at":"2026-03-05T09:07:03 UTC","on":"+12345-06-07"}"#,
            r#"{"at":"2016-12-31T23:59:60Z","on":"2026-03-05"}"#,
            r#"{"at":"2026-02-30T09:07:03Z","on":"2026-03-05"}"#,
            r#"{"at":"2026-03-05T09:07:03Z","on":"2026-02-30"}"#,
            r#"{"at":"2026-03-05T25:07:03Z","on":"2026-03-05"}"#,
            r#"{"at":"yesterday","on":"2026-03-05"}"#,
            r#"{"at":"2026-03-05T09:07:03Z","on":"2026/03/05"}"#,
            r#"{"at":7,"on":"2026-03-05"}"#,
            // Leap second with a fraction, MINUS SIGN (U+2212) offset, lowercase z,
            // a dot without digits, trailing space, year 0 pushed to year -1 by its
            // offset, a seventeen-digit fraction, signed years.
            r#"{"at":"2016-12-31T23:59:60.999999999Z","on":"0000-01-01"}"#,
            r#"{"at":"2016-12-31T12:59:60.5+02:00","on":"9999-12-31"}"#,
            "{\"at\":\"2026-03-05T09:07:03\u{2212} 05:30\",\"on\":\"2026-03-05\"}",
            "{\"at\":\"2026-03-05T09:07:03\u{2212}05:30\",\"on\":\"2026-03-05\"}",
            r#"{"at":"2026-03-05T09:07:03z","on":"2026-03-05"}"#,
            r#"{"at":"2026-03-05T09:07:03.Z","on":"2026-03-05"}"#,
            r#"{"at":"2026-03-05T09:07:03Z ","on":"2026-03-05 "}"#,
            r#"{"at":"0000-01-01T00:00:00+23:59","on":"-0001-12-31"}"#,
            r#"{"at":"9999-12-31T23:59:59-23:59","on":"+10000-01-01"}"#,
            r#"{"at":"2026-03-05T09:07:03.12345678901234567Z","on":"2026-03-05"}"#,
            r#"{"at":"-0001-03-05T09:07:03Z","on":"2026-13-05"}"#,
            r#"{"at":"2026-03-05T09:07:03+24:00","on":"2026-00-05"}"#,
        ] {
            read_alike(json);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any instant and day: the same text as chrono's, read back to the same value.
        #[test]
        fn any_instant_and_day_write_and_read_as_chronos(
            secs in -62_000_000_000i64..260_000_000_000i64,
            nanos in prop_oneof![Just(0u32), 0u32..1_000, (0u32..1_000).prop_map(|n| n * 1_000_000), 0u32..1_000_000_000],
        ) {
            let at = DateTime::from_timestamp(secs, nanos).expect("in range");
            let (o, c) = both(at, at.date_naive());
            prop_assert_eq!(&o, &c);
            let back: Ours = serde_json::from_str(&o).expect("reads");
            prop_assert_eq!(back, Ours { at, on: at.date_naive() });
            // And in a binary payload (postcard: not human-readable), as integers.
            let ours = Ours { at, on: at.date_naive() };
            let bytes = postcard::to_allocvec(&ours).expect("encodes");
            prop_assert_eq!(postcard::from_bytes::<Ours>(&bytes).expect("reads"), ours);
        }

        /// Texts near the RFC 3339 shape (any separators, offsets, fractions, digits):
        /// accepted and refused exactly as chrono accepts and refuses them.
        #[test]
        fn texts_near_the_shape_read_as_chrono_reads_them(
            y in "([0-9]{4}|[0-9]{3,5})", mo in "(0[1-9]|1[0-2]|[0-9]{1,2})",
            d in "(0[1-9]|[12][0-9]|3[01]|[0-9]{1,2})", sep in "[Tt _]",
            h in "([01][0-9]|2[0-3]|[0-9]{2})", mi in "([0-5][0-9]|[0-9]{2})",
            s in "([0-5][0-9]|60|[0-9]{2})",
            frac in "(\\.[0-9]{0,11})?", off in "(Z|z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4}| UTC|)",
            day_sep in "[-/]",
        ) {
            let at = format!("{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}");
            let on = format!("{y}{day_sep}{mo}{day_sep}{d}");
            read_alike(&serde_json::json!({ "at": at, "on": on }).to_string());
        }
    }
}

//! The one place query requests are validated and read-model answers become protobuf
//! messages. Bad fields become `Rejection::InvalidInput` naming the proto field, so
//! queries report bad input exactly like commands do.

use chrono::{DateTime, NaiveDate, Utc};
use ledger_core::domain::account::{AccountId, RegionCode};
use ledger_core::domain::{InputProblem, Rejection};
use ledger_core::log::Position;
use projections::account::{AccountView, HistoryEntry};
use projections::credit::CreditReport;
use projections::index::IndexView;
use projections::rankings::Ranked;
use projections::star::StarLevel;
use projections::Period;
use rust_decimal::Decimal;

use crate::pb;

type Field<T> = Result<T, Rejection>;

/// Longest period text ("2026-03" is 7).
const PERIOD_TEXT_BYTES_MAX: usize = 7;

pub fn position(p: Position) -> pb::LogPosition {
    pb::LogPosition {
        commit: p.commit(),
        prepare: p.prepare(),
    }
}

pub fn checkpoint(p: Option<Position>) -> Option<pb::LogPosition> {
    p.map(position)
}

/// A client's min_position. Any pair of numbers is a position; whether the log ever
/// reaches it is the wait's business.
pub fn min_position(p: Option<pb::LogPosition>) -> Option<Position> {
    p.map(|p| Position::new(p.commit, p.prepare))
}

pub fn account(field: &str, text: String) -> Field<AccountId> {
    AccountId::new(text).map_err(|e| Rejection::input(field, e))
}

/// A region node path, or "" for everything.
pub fn region(field: &str, text: String) -> Field<String> {
    if text.is_empty() {
        return Ok(text);
    }
    RegionCode::new(text)
        .map(|r| r.as_str().to_owned())
        .map_err(|e| Rejection::input(field, e))
}

pub fn period(field: &str, text: &str) -> Field<Period> {
    let malformed = || {
        Rejection::input(
            field,
            InputProblem::Malformed({
                // Echoed up to a little past the longest period, and marked when cut.
                let shown: String = text.chars().take(PERIOD_TEXT_BYTES_MAX + 2).collect();
                let cut = if shown.len() < text.len() { "…" } else { "" };
                format!(
                    "{shown:?}{cut} is not a period; send \"all\", a year \"2026\" or a month \"2026-03\""
                )
            }),
        )
    };
    if text.is_empty() {
        return Err(Rejection::missing(field));
    }
    if text == "all" {
        return Ok(Period::All);
    }
    if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Period::Year).map_err(|_| malformed());
    }
    // Exactly `DDDD-DD`, checked before any number is read: chrono's `%Y` also reads a
    // sign or a space, so "-001-01" and " 2026-3" passed as months of years -1 and
    // 2026 when this went through `parse_from_str`.
    let b = text.as_bytes();
    let shaped = b.len() == PERIOD_TEXT_BYTES_MAX
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 => c == b'-',
            _ => c.is_ascii_digit(),
        });
    if shaped {
        let number = |digits: &[u8]| {
            digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        };
        let (year, month) = (number(&b[0..4]), number(&b[5..7]));
        if let (Ok(year), 1..=12) = (i32::try_from(year), month) {
            return Ok(Period::Month(year, month));
        }
    }
    Err(malformed())
}

pub fn period_text(p: Period) -> String {
    match p {
        Period::All => "all".to_owned(),
        Period::Year(y) => format!("{y:04}"),
        Period::Month(y, m) => format!("{y:04}-{m:02}"),
    }
}

pub fn timestamp(field: &str, ts: Option<prost_types::Timestamp>) -> Field<Option<DateTime<Utc>>> {
    ts.map(|ts| crate::convert::instant(field, ts)).transpose()
}

pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A non-negative decimal of at most two places (the annual minimum).
pub fn hours_or(field: &str, text: &str, default: Decimal) -> Field<Decimal> {
    if text.is_empty() {
        return Ok(default);
    }
    // Zero is a valid threshold (nobody is below it) though not an amount of hours a
    // command may move, which `Hours::parse` is for: "0", "0.0" and "0.00" all say it.
    use ledger_core::domain::units::{parse_plain_decimal, UNIT_SCALE_MAX};
    if parse_plain_decimal(text, UNIT_SCALE_MAX).is_ok_and(|v| v.is_zero()) {
        return Ok(Decimal::ZERO);
    }
    // A threshold is not an entry: "must be greater than zero" and "split it into
    // several entries" are an amount's advice, so those two say what a threshold
    // takes instead (reason `FIELD_MALFORMED`; the others keep the amount's).
    use ledger_core::domain::units::AmountError;
    ledger_core::domain::units::Hours::parse(text)
        .map(|h| h.value())
        .map_err(|e| match e {
            AmountError::NotPositive { text } => Rejection::input(
                field,
                InputProblem::Malformed(format!(
                    "{text} is below zero; a threshold of hours is 0 or more"
                )),
            ),
            AmountError::TooLarge { text, max } => Rejection::input(
                field,
                InputProblem::Malformed(format!(
                    "{text} is over the largest threshold, {max} hours (a year has at most 8784)"
                )),
            ),
            e => Rejection::input(field, e),
        })
}

fn day_text(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

pub fn star(s: &StarLevel, cp: Option<Position>) -> pb::StarLevel {
    pb::StarLevel {
        policy_version: s.policy_version.clone(),
        stars: u32::from(s.stars),
        lifetime_hours: s.lifetime_hours.to_string(),
        next_threshold: s.next_threshold.map(|t| t.to_string()).unwrap_or_default(),
        checkpoint: checkpoint(cp),
    }
}

pub fn account_view(v: &AccountView, cp: Option<Position>) -> pb::AccountView {
    pb::AccountView {
        account_id: v.account.clone(),
        kind: v.kind.to_owned(),
        closed: v.closed,
        region_code: v.region.clone().unwrap_or_default(),
        spendable_hours: v.spendable_hours.to_string(),
        honour_hours: v.honour_hours.to_string(),
        points_available: v.points_available.to_string(),
        points_held: v.points_held.to_string(),
        lifetime_credit_hours: v.lifetime_credit_hours.to_string(),
        lifetime_honour_hours: v.lifetime_honour_hours.to_string(),
        hours_this_year: v.hours_this_year.to_string(),
        year: v.year,
        activity_count: v.activity_count,
        first_service_date: day_text(v.first_service_date),
        last_service_date: day_text(v.last_service_date),
        star: Some(star(&v.star, None)),
        checkpoint: checkpoint(cp),
    }
}

pub fn entry(e: &HistoryEntry) -> pb::TransactionEntry {
    pb::TransactionEntry {
        transaction_id: e.transaction_id.clone(),
        event_type: e.event_type.clone(),
        position: Some(position(e.position)),
        stream_version: e.stream_version,
        hours: e.hours.to_string(),
        honour_hours: e.honour_hours.to_string(),
        points: e.points.to_string(),
        counterparty_id: e.counterparty.clone().unwrap_or_default(),
        refers_to: e.refers_to.clone().unwrap_or_default(),
        service_date: day_text(e.service_date),
        recorded_at: Some(to_timestamp(e.recorded_at)),
    }
}

/// The report as the bank service keeps it (`partners::banks::ReportJson`): one
/// conversion for both services, so a report read here and one served to a bank have
/// the same fields.
pub fn credit_report(r: &CreditReport, cp: Option<Position>) -> pb::CreditReport {
    let mut report = crate::partners::banks::ReportJson::of(r).to_proto();
    report.checkpoint = checkpoint(cp);
    report
}

pub fn ranking(v: Vec<Ranked>, cp: Option<Position>) -> pb::Ranking {
    pb::Ranking {
        entries: v
            .into_iter()
            .enumerate()
            .map(|(i, r)| pb::RankingEntry {
                rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
                id: r.id,
                hours: r.hours.to_string(),
                served_hours: r.served.to_string(),
            })
            .collect(),
        checkpoint: checkpoint(cp),
    }
}

pub fn service_index(i: &IndexView, cp: Option<Position>) -> pb::ServiceIndex {
    pb::ServiceIndex {
        region_code: i.region.clone(),
        period: period_text(i.period),
        registered_volunteers: i.registered_volunteers,
        active_volunteers: i.active_volunteers,
        activities: i.activities,
        participations: i.participations,
        total_hours: i.total_hours.to_string(),
        checkpoint: checkpoint(cp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print() {
        for (text, p) in [
            ("all", Period::All),
            ("2026", Period::Year(2026)),
            ("2026-03", Period::Month(2026, 3)),
        ] {
            assert_eq!(period("period", text).unwrap(), p);
            assert_eq!(period_text(p), text);
        }
        for bad in [
            "2026-13",
            "26",
            "2026-3",
            "ALL",
            "2026-03-01",
            "2026-00",
            "-001-01",
            "+026-01",
            " 2026-3",
            "2026-+3",
            "2026- 3",
            "２０２６-03",
            "-026",
            "+026",
            " 026",
            "x".repeat(100).as_str(),
        ] {
            assert_eq!(
                period("period", bad).unwrap_err().reason(),
                "FIELD_MALFORMED",
                "{bad}"
            );
        }
        assert_eq!(period("period", "").unwrap_err().reason(), "FIELD_MISSING");
        // A long text is echoed cut, and says so; a short one whole.
        let long = period("period", "2025-03-01T00").unwrap_err().to_string();
        assert!(long.contains(r#""2025-03-0"… is not a period"#), "{long}");
        let short = period("period", "2026-13").unwrap_err().to_string();
        assert!(short.contains(r#""2026-13" is not a period"#), "{short}");
    }

    /// A threshold of hours: empty is the default, zero in any plain spelling is zero,
    /// anything else is an amount of hours, refused as an amount would be.
    #[test]
    fn a_threshold_of_hours_takes_zero_in_any_plain_spelling() {
        let twenty = Decimal::from(20);
        assert_eq!(hours_or("minimum_hours", "", twenty).unwrap(), twenty);
        for zero in ["0", "0.0", "0.00", "00"] {
            assert_eq!(
                hours_or("minimum_hours", zero, twenty).unwrap(),
                Decimal::ZERO,
                "{zero}"
            );
        }
        assert_eq!(
            hours_or("minimum_hours", "12.5", twenty).unwrap(),
            Decimal::new(125, 1)
        );
        // Refused as an amount of hours is, with the field named.
        for bad in ["-0", "-1", "1e1", "1.234", " 1", "0x1", "10000.01"] {
            let e = hours_or("minimum_hours", bad, twenty).unwrap_err();
            assert!(e.to_string().contains("minimum_hours"), "{bad}: {e}");
            assert!(!e.to_string().contains("entr"), "{bad}: {e}");
        }
        let below = hours_or("minimum_hours", "-1", twenty).unwrap_err();
        assert!(below.to_string().contains("0 or more"), "{below}");
        let over = hours_or("minimum_hours", "10000.01", twenty).unwrap_err();
        assert!(over.to_string().contains("largest threshold"), "{over}");
        assert_eq!(over.reason(), "FIELD_MALFORMED");
        assert_eq!(
            hours_or("minimum_hours", "10000", twenty).unwrap(),
            Decimal::from(10_000)
        );
    }
}

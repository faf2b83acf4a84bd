//! The volunteer credit score, model `tb-credit-1` (`docs/credit-score.md`).
//!
//! Computed on demand from the volunteer's own stream, folding only the events
//! recorded at or before `as_of`. That makes a report "as of T" exactly the report
//! that was live at T by construction (the same events, the same arithmetic), keeps no
//! per-volunteer history in memory, and makes the inputs digest cheap: it hashes the
//! included events' positions, ids and content digests.
//!
//! Option not taken: keeping compact per-volunteer histories in the read model. A
//! report reads one stream (tens to hundreds of events for an active volunteer), which
//! the benchmark measures at well under a millisecond; the histories would cost memory
//! for every volunteer to speed up a query banks ask a few times per loan.
//!
//! All arithmetic is integer (hundredths of hours, whole points): scores are
//! bit-identical on every machine. Diminishing returns use an exact integer square
//! root, not a float.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};
use ledger_core::domain::account::{AccountId, AccountKind};
use ledger_core::domain::events::{DecodeError, HourKind, LedgerEvent};
use ledger_core::log::{limits::READ_EVENTS_MAX, EventLog, Position, ReadError, RecordedEvent};
use rust_decimal::Decimal;

use crate::account::recorded_at;
use crate::model::{centi, decimal, month_key, Centi};
use crate::star::{StarLevel, StarPolicy};

/// The one model version this build computes.
pub const CREDIT_MODEL_V1: &str = "tb-credit-1";
/// Every model version this build can compute (a bank may ask for the one it used).
pub const CREDIT_MODEL_VERSIONS: &[&str] = &[CREDIT_MODEL_V1];

/// Lowest and highest score.
pub const SCORE_MIN: u32 = 0;
pub const SCORE_MAX: u32 = 1000;

/// Most events of one stream a report folds. A volunteer with ten entries a day for
/// ten years has ~37,000; past this the stream is not a person's record.
pub const CREDIT_STREAM_EVENTS_MAX: usize = 200_000;

/// Most reason codes a report lists.
pub const REASON_CODES_MAX: usize = 4;

/// One factor of the score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Factor {
    Hours,
    Regularity,
    Recency,
    Tenure,
    Breadth,
    Reliability,
}

impl Factor {
    pub const ALL: [Factor; 6] = [
        Factor::Hours,
        Factor::Regularity,
        Factor::Recency,
        Factor::Tenure,
        Factor::Breadth,
        Factor::Reliability,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Hours => "hours",
            Self::Regularity => "regularity",
            Self::Recency => "recency",
            Self::Tenure => "tenure",
            Self::Breadth => "breadth",
            Self::Reliability => "reliability",
        }
    }

    /// Most points the factor contributes; the maxima sum to [`SCORE_MAX`].
    pub fn max_points(&self) -> u32 {
        match self {
            Self::Hours => 400,
            Self::Regularity => 150,
            Self::Recency => 100,
            Self::Tenure => 100,
            Self::Breadth => 100,
            Self::Reliability => 150,
        }
    }

    /// The reason code when this factor holds the score down.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Hours => "FEW_LIFETIME_HOURS",
            Self::Regularity => "IRREGULAR_SERVICE",
            Self::Recency => "NO_RECENT_SERVICE",
            Self::Tenure => "SHORT_TENURE",
            Self::Breadth => "NARROW_SERVICE",
            Self::Reliability => "RELIABILITY_ISSUES",
        }
    }
}

/// One factor's contribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    pub factor: Factor,
    pub points: u32,
    pub max: u32,
    /// The factor's input in words, for the report.
    pub detail: String,
}

/// A credit report (`GetCreditReport`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditReport {
    pub volunteer: String,
    pub model_version: &'static str,
    pub score: u32,
    pub contributions: Vec<Contribution>,
    /// The factors holding the score down most, biggest shortfall first.
    pub reason_codes: Vec<&'static str>,
    pub star: StarLevel,
    pub lifetime_hours: Decimal,
    pub last_12_months_hours: Decimal,
    pub as_of: DateTime<Utc>,
    /// The position of the last event the report includes.
    pub position: Option<Position>,
    pub events_included: u64,
    /// Hex BLAKE3 over the model version, `as_of` and each included event's position,
    /// id and content digest: the same digest means the same inputs.
    pub inputs_digest: String,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("credit model version {0:?} is not one this server computes; known: {known}", known = CREDIT_MODEL_VERSIONS.join(", "))]
    UnknownModel(String),
    #[error("{0} is not a volunteer registered by the report's as_of time")]
    NotAVolunteer(String),
    #[error(
        "the volunteer's stream has more than {CREDIT_STREAM_EVENTS_MAX} events; call an operator"
    )]
    StreamTooLong,
    #[error("reading the volunteer's stream failed: {0}")]
    Read(#[from] ReadError),
    #[error("an event of the volunteer's stream does not decode: {0}")]
    Decode(#[from] DecodeError),
}

/// Exact integer square root (largest r with r² ≤ n).
pub fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton's method from an over-estimate; exact for all u64.
    let mut x = 1u64 << (64 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// A standing deposit as the report sees it.
struct Deposit {
    day: NaiveDate,
    centi: Centi,
    honour: bool,
    organisation: AccountId,
    category: String,
    rating: Option<u8>,
}

/// The volunteer's record folded up to `as_of`.
#[derive(Default)]
struct Record {
    joined_on: Option<NaiveDate>,
    deposits: BTreeMap<u128, Deposit>,
    reversed_deposits: u32,
    no_shows: Vec<NaiveDate>,
}

/// Read all of `volunteer`'s stream.
pub async fn read_account_stream(
    log: &dyn EventLog,
    volunteer: &AccountId,
) -> Result<Vec<RecordedEvent>, CreditError> {
    let stream = volunteer.stream();
    let mut out = Vec::new();
    loop {
        let page = log
            .read_stream(&stream, out.len() as u64, READ_EVENTS_MAX)
            .await?;
        let n = page.len();
        out.extend(page);
        if out.len() > CREDIT_STREAM_EVENTS_MAX {
            return Err(CreditError::StreamTooLong);
        }
        if n < READ_EVENTS_MAX {
            return Ok(out);
        }
    }
}

/// The report of `volunteer` as of `as_of` under `model_version`, from the events of
/// the volunteer's stream (in stream order). Pure: the same inputs give the same report.
///
/// `calendar` is the ledger's (`LedgerConfig::calendar_offset`), the calendar of
/// service dates: the report's day, from which every time-based factor is measured, is
/// `as_of`'s day in it. Not the UTC day: east of UTC the ledger accepts service dated
/// the next UTC day before UTC midnight, and a report measured from the UTC day left
/// such a deposit out of every factor while counting it in the lifetime hours.
pub fn credit_report(
    volunteer: &AccountId,
    events: &[RecordedEvent],
    as_of: DateTime<Utc>,
    calendar: FixedOffset,
    model_version: &str,
    policy: &StarPolicy,
) -> Result<CreditReport, CreditError> {
    let model_version = CREDIT_MODEL_VERSIONS
        .iter()
        .find(|v| **v == model_version || model_version.is_empty())
        .copied()
        .ok_or_else(|| CreditError::UnknownModel(model_version.to_owned()))?;
    let mut digest = blake3::Hasher::new();
    digest.update(model_version.as_bytes());
    digest.update(as_of.to_rfc3339().as_bytes());
    let mut rec = Record::default();
    let mut position = None;
    let mut included = 0u64;
    for r in events {
        // Partner events (consents, inquiries, redemptions) say nothing about service:
        // leaving them out keeps a report's inputs digest unchanged when a bank looks.
        // Left out by name, undecoded: each inquiry holds a whole served report, one
        // more per report a bank asks for, and decoding them all was most of a report
        // on a volunteer banks had looked at. (A damaged partner event therefore does
        // not fail a report it is no input of; VerifyLog and the worker still see it.)
        if LedgerEvent::PARTNER_TYPE_NAMES.contains(&r.event_type.as_str()) {
            continue;
        }
        let e = LedgerEvent::decode(&r.event_type, &r.data)?;
        if recorded_at(&e) > as_of {
            continue;
        }
        debug_assert!(!e.is_partner_event());
        included += 1;
        position = Some(r.position);
        digest.update(&r.position.commit().to_le_bytes());
        digest.update(&r.position.prepare().to_le_bytes());
        digest.update(r.id.as_bytes());
        digest.update(&r.content_digest());
        match e {
            LedgerEvent::AccountRegistered(a) => {
                if let AccountKind::Volunteer { joined_on, .. } = a.kind {
                    rec.joined_on = Some(joined_on);
                }
            }
            LedgerEvent::HoursDeposited(d) => {
                rec.deposits.insert(
                    d.transaction.0.as_u128(),
                    Deposit {
                        day: d.service_date,
                        centi: centi(d.hours.value()),
                        honour: d.kind == HourKind::Honour,
                        organisation: d.organisation,
                        category: d.category.as_str().to_owned(),
                        rating: None,
                    },
                );
            }
            LedgerEvent::TransactionReversed(t)
                if rec.deposits.remove(&t.original.0.as_u128()).is_some() =>
            {
                rec.reversed_deposits += 1;
            }
            LedgerEvent::NoShowRecorded(n) => rec.no_shows.push(n.service_date),
            LedgerEvent::ServiceRated(s) => {
                if let Some(d) = rec.deposits.get_mut(&s.deposit.0.as_u128()) {
                    d.rating = Some(s.rating);
                }
            }
            _ => {}
        }
    }
    let Some(joined_on) = rec.joined_on else {
        return Err(CreditError::NotAVolunteer(volunteer.to_string()));
    };
    let today = as_of.with_timezone(&calendar).date_naive();
    let contributions = score(&rec, joined_on, today);
    let total: u32 = contributions.iter().map(|c| c.points).sum();
    assert!(
        (SCORE_MIN..=SCORE_MAX).contains(&total),
        "score {total} out of range"
    );
    let mut shortfalls: Vec<(u32, Factor)> = contributions
        .iter()
        .filter(|c| c.points < c.max)
        .map(|c| (c.max - c.points, c.factor))
        .collect();
    shortfalls.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let lifetime: Centi = rec.deposits.values().map(|d| d.centi).sum();
    let year_ago = today - chrono::Duration::days(365);
    let last_12: Centi = rec
        .deposits
        .values()
        .filter(|d| d.day > year_ago && d.day <= today)
        .map(|d| d.centi)
        .sum();
    Ok(CreditReport {
        volunteer: volunteer.to_string(),
        model_version,
        score: total,
        contributions,
        reason_codes: shortfalls
            .into_iter()
            .take(REASON_CODES_MAX)
            .map(|(_, f)| f.reason())
            .collect(),
        star: policy.level(decimal(lifetime)),
        lifetime_hours: decimal(lifetime),
        last_12_months_hours: decimal(last_12),
        as_of,
        position,
        events_included: included,
        inputs_digest: digest.finalize().to_hex().to_string(),
    })
}

/// The six factors of `tb-credit-1` (formulas in `docs/credit-score.md`).
fn score(rec: &Record, joined_on: NaiveDate, today: NaiveDate) -> Vec<Contribution> {
    let standing: Vec<&Deposit> = rec.deposits.values().filter(|d| d.day <= today).collect();
    let mut out = Vec::with_capacity(Factor::ALL.len());
    let mut push = |factor: Factor, points: u64, detail: String| {
        let points = u32::try_from(points.min(u64::from(factor.max_points()))).expect("capped");
        out.push(Contribution {
            factor,
            points,
            max: factor.max_points(),
            detail,
        });
    };

    // Hours: 400 × √(credit hours / 1500), capped at 1,500 hours:
    // the largest p with p² × 150,000 ≤ 160,000 × c, c in hundredths.
    let credit: Centi = standing.iter().filter(|d| !d.honour).map(|d| d.centi).sum();
    let c = u64::try_from(credit.clamp(0, 150_000)).expect("clamped");
    push(
        Factor::Hours,
        isqrt(16 * c / 15),
        format!("{} lifetime credit hours", decimal(credit)),
    );

    // Regularity: 150 × active months of the last 24 (this month included) / 24.
    let now_m = month_key(today);
    let months: BTreeSet<i32> = standing
        .iter()
        .map(|d| month_key(d.day))
        .filter(|&m| m + 24 > now_m && m <= now_m)
        .collect();
    let m = months.len() as u64;
    push(
        Factor::Regularity,
        150 * m / 24,
        format!("{m} of the last 24 months with service"),
    );

    // Recency: by days since the last service day.
    let last = standing.iter().map(|d| d.day).max();
    let (points, detail) = match last {
        None => (0, "no service on record".to_owned()),
        Some(l) => {
            let days = (today - l).num_days();
            let p = match days {
                ..=30 => 100,
                31..=90 => 75,
                91..=180 => 50,
                181..=365 => 25,
                _ => 0,
            };
            (p, format!("last service {days} days ago"))
        }
    };
    push(Factor::Recency, points, detail);

    // Tenure: 100 × whole months since joining / 60, capped at five years.
    let months_since = months_between(joined_on, today);
    push(
        Factor::Tenure,
        100 * months_since.min(60) / 60,
        format!("{months_since} months since joining"),
    );

    // Breadth: 12 per organisation and 8 per category, up to five of each.
    let orgs: BTreeSet<&str> = standing.iter().map(|d| d.organisation.as_str()).collect();
    let cats: BTreeSet<&str> = standing.iter().map(|d| d.category.as_str()).collect();
    push(
        Factor::Breadth,
        12 * (orgs.len().min(5) as u64) + 8 * (cats.len().min(5) as u64),
        format!("{} organisations, {} categories", orgs.len(), cats.len()),
    );

    // Reliability: with service on record, 130 − 20 per reversed deposit − 30 per
    // no-show in the last 24 months + 10 × mean(rating − 3) (toward zero), in 0..=150.
    let two_years_ago = today - chrono::Duration::days(730);
    let no_shows = rec
        .no_shows
        .iter()
        .filter(|d| **d > two_years_ago && **d <= today)
        .count() as i64;
    let ratings: Vec<i64> = standing
        .iter()
        .filter_map(|d| d.rating.map(i64::from))
        .collect();
    let rating_adj = if ratings.is_empty() {
        0
    } else {
        10 * ratings.iter().map(|r| r - 3).sum::<i64>() / ratings.len() as i64
    };
    let points = if standing.is_empty() {
        0
    } else {
        (130 - 20 * i64::from(rec.reversed_deposits) - 30 * no_shows + rating_adj).clamp(0, 150)
    };
    push(
        Factor::Reliability,
        u64::try_from(points).expect("clamped to 0..=150"),
        format!(
            "{} reversed deposits, {no_shows} no-shows in 24 months, {} ratings",
            rec.reversed_deposits,
            ratings.len()
        ),
    );
    out
}

/// Whole calendar months from `from` to `to` (0 if `to` is earlier).
fn months_between(from: NaiveDate, to: NaiveDate) -> u64 {
    if to < from {
        return 0;
    }
    let mut m = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32;
    if to.day() < from.day() {
        m -= 1;
    }
    u64::try_from(m.max(0)).expect("non-negative")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_exact() {
        for n in 0..10_000u64 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
        assert_eq!(isqrt(u64::MAX), u32::MAX as u64);
        assert_eq!(isqrt(160_000), 400);
    }

    #[test]
    fn months_between_counts_whole_months() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(months_between(d("2024-01-15"), d("2024-02-14")), 0);
        assert_eq!(months_between(d("2024-01-15"), d("2024-02-15")), 1);
        assert_eq!(months_between(d("2020-01-01"), d("2026-11-20")), 82);
        assert_eq!(months_between(d("2026-01-01"), d("2025-01-01")), 0);
    }

    #[test]
    fn factor_maxima_sum_to_the_score_range() {
        assert_eq!(
            Factor::ALL.iter().map(|f| f.max_points()).sum::<u32>(),
            SCORE_MAX
        );
    }
}

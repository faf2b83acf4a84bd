//! Batched folding ([`ReadModels::apply_all`]): a run of events is decoded first, then
//! the memory their fold will touch is asked for, then they are folded, in order.
//!
//! Why: past a few hundred thousand volunteers the fold waits on memory. A deposit
//! reads its volunteer's interned id and row, the row's service days, months and
//! organisations (three heap blocks), the activity's interned key and its
//! service-index entries, the deposit index and its node's index cells: a dozen
//! cache lines at random places, each a miss, and one event's misses mostly wait one
//! on the other (the row before its blocks, the key before the entries). Asked for a
//! batch at a time, the misses of 32 events are in flight together while the CPU
//! works through lookups it has already got. Measured: the binary replay 14–28 %
//! faster at 1 M events than `apply` one event at a time, in each of three runs of
//! the documented command (docs/benchmarks.md, "Nineteenth session").
//!
//! Two stages, because the second's addresses are in what the first fetches:
//! 1. one table at a time over the batch: every event's accounts looked up and their
//!    rows prefetched, then every deposit's activity looked up and its entry slot
//!    prefetched, then every deposit's transaction looked up in the deposit index (a
//!    lookup's own loads are read, a few dependent ones, but the lookups of different
//!    events do not depend on each other, so the CPU overlaps them);
//! 2. per deposit, read the row (in cache by now) and prefetch its three blocks, its
//!    node's index cells for the service month, and the activity's spilled entries.
//!
//! Nothing here changes state (`&self`): a prefetch is a hint, and a lookup that
//! misses (a name not yet interned, a month not yet addressed) just prefetches less.
//! The fold that follows is the one `apply` runs, so the state is the same by
//! construction; `tests::apply_all_is_apply_one_by_one` checks it, and the errors.
//!
//! Options not taken:
//! - prefetch a fixed distance ahead, event by event (decode event i + k, look it up
//!   and prefetch, fold event i; k = 8 and 16): no gain; a lookup's own misses then
//!   sit between two decodes (~3,500 instructions each), too far apart for the CPU to
//!   overlap them;
//! - prefetching the interning tables' buckets without looking them up: the hash
//!   table (`hashbrown::HashTable`) does not say where a hash's bucket is.

use std::sync::Arc;

use ledger_core::domain::events::{DecodeError, HoursDeposited, LedgerEvent};
use ledger_core::log::RecordedEvent;

use crate::model::{activity_key, ReadModels, NO_REGION};

/// Events decoded and prefetched together. Enough for the misses of many events to
/// overlap; few enough that what was fetched for the first event is still in cache
/// when its fold runs (32 events × ~12 lines × 64 bytes ≈ 24 KiB, within a core's
/// L1 data cache of 32 KiB and far within its L2). 16 and 64 measured no better
/// (docs/benchmarks.md, "Nineteenth session"). Also the decoded events held at once
/// (~32 × 230 bytes).
pub const EVENTS_PER_BATCH_MAX: usize = 32;

/// Bytes per cache line on the machines this runs on (x86_64, and 64 on the common
/// aarch64 cores too).
const CACHE_LINE_BYTES: usize = 64;

/// Ask for the cache line holding `p` and go on without waiting for it. A hint: it
/// reads nothing the program sees and never faults, whatever the address. Off x86_64
/// it does nothing (aarch64's prefetch intrinsic is not stable Rust): the fold is the
/// same, only slower.
#[inline(always)]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect and raises no fault for any
    // address (Intel SDM, "PREFETCHh"), so no pointer can make it unsound; SSE, which
    // the intrinsic requires, is part of every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetch every cache line `v` spans.
#[inline(always)]
pub(crate) fn lines_of<T>(v: &T) {
    let start = (v as *const T).cast::<u8>();
    let size = std::mem::size_of::<T>();
    for offset in (0..size).step_by(CACHE_LINE_BYTES) {
        line(start.wrapping_add(offset));
    }
    // The last byte: a value not aligned to a line spans one more than size / 64.
    line(start.wrapping_add(size.saturating_sub(1)));
}

/// Prefetch the first line of a vector's heap block, if it has one.
#[inline(always)]
pub(crate) fn block_of<T>(v: &Vec<T>) {
    if v.capacity() > 0 {
        line(v.as_ptr());
    }
}

/// What stage 1 found for one event, for stage 2.
#[derive(Clone, Copy)]
struct Found {
    /// A deposit's volunteer's row index.
    row: Option<u32>,
    /// A deposit's activity index.
    activity: Option<u32>,
}

/// An event of a batch: decoded here, or handed over already decoded by the process
/// that wrote it (`ledger_core::app::DecodedEvents`). Held in place, not boxed: the
/// batch's buffer is reused, and a box would be one allocation per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    Here(LedgerEvent),
    Handed(Arc<LedgerEvent>),
}

impl std::ops::Deref for Decoded {
    type Target = LedgerEvent;
    fn deref(&self) -> &LedgerEvent {
        match self {
            Self::Here(e) => e,
            Self::Handed(e) => e,
        }
    }
}

/// One batch of [`ReadModels::apply_all`]: its events decoded, and what stage 1 found.
/// Its buffers are reused from batch to batch.
#[derive(Default)]
pub(crate) struct Batch {
    events: Vec<Result<Decoded, DecodeError>>,
    found: Vec<Found>,
    /// Scratch for activity keys.
    key: String,
}

impl Batch {
    /// Decode `run` (at most [`EVENTS_PER_BATCH_MAX`] events), taking what `handed`
    /// gives already decoded.
    pub(crate) fn decode(
        &mut self,
        run: &[RecordedEvent],
        handed: &mut impl FnMut(&RecordedEvent) -> Option<Arc<LedgerEvent>>,
    ) {
        assert!(
            run.len() <= EVENTS_PER_BATCH_MAX,
            "a batch is at most its max"
        );
        self.events.clear();
        self.events.extend(run.iter().map(|r| match handed(r) {
            Some(event) => {
                debug_assert_eq!(
                    LedgerEvent::decode(&r.event_type, &r.data).ok().as_ref(),
                    Some(&*event),
                    "a decoded event handed over equals its stored payload"
                );
                Ok(Decoded::Handed(event))
            }
            None => LedgerEvent::decode(&r.event_type, &r.data).map(Decoded::Here),
        }));
    }

    /// The decoded events, in order, leaving the batch empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Result<Decoded, DecodeError>> + '_ {
        self.events.drain(..)
    }
}

/// The deposit `e` is, if it is one.
fn deposit(e: &Result<Decoded, DecodeError>) -> Option<&HoursDeposited> {
    match e.as_deref() {
        Ok(LedgerEvent::HoursDeposited(d)) => Some(d),
        _ => None,
    }
}

impl ReadModels {
    /// Ask for what folding `batch` will touch (the module's doc says what and why).
    pub(crate) fn prefetch(&self, batch: &mut Batch) {
        let Batch { events, found, key } = batch;
        // Stage 1, one table at a time over the batch: each pass's iterations are
        // independent, so the CPU overlaps their misses.
        found.clear();
        found.extend(events.iter().map(|e| Found {
            row: e.as_deref().ok().and_then(|e| self.rows_of(e)),
            activity: None,
        }));
        for (e, f) in events.iter().zip(found.iter_mut()) {
            if let Some(d) = deposit(e) {
                let activity = self.accounts.get(d.organisation.as_str()).and_then(|o| {
                    activity_key(o, d.activity.as_str(), key);
                    self.activities.get(key)
                });
                if let Some(a) = activity {
                    self.index.prefetch_activity(a);
                }
                f.activity = activity;
            }
        }
        for d in events.iter().filter_map(deposit) {
            // Read, not kept: the lines it reads are the ones the insert reads.
            std::hint::black_box(self.deposits.get(&d.transaction.0.as_u128()));
        }
        // Stage 2: what the rows and the activities' slots, in cache now, point to.
        for (e, f) in events.iter().zip(found.iter()) {
            if let Some(d) = deposit(e) {
                if let Some(row) = f.row.and_then(|r| self.rows.get(r as usize)) {
                    row.prefetch_blocks();
                    if row.region != NO_REGION {
                        self.index.prefetch_cells(row.region, d.service_date);
                    }
                }
                if let Some(a) = f.activity {
                    self.index.prefetch_entries(a);
                }
            }
        }
    }

    /// Stage 1's first pass for one event: prefetch the rows of the accounts it names
    /// (a deposit's volunteer, every posting's account); a deposit's volunteer's row
    /// index.
    fn rows_of(&self, event: &LedgerEvent) -> Option<u32> {
        let row = |id: &str| {
            let i = self.accounts.get(id)?;
            lines_of(self.rows.get(i as usize)?);
            Some(i)
        };
        match event {
            // Its credit posting names the volunteer: one row for both.
            LedgerEvent::HoursDeposited(d) => row(d.volunteer.as_str()),
            _ => {
                for p in event.postings().unwrap_or_default() {
                    if !p.account.is_system() {
                        row(p.account.as_str());
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, NaiveDate, Utc};
    use ledger_core::domain::account::{AccountId, AccountKind, RegionCode, SystemAccount};
    use ledger_core::domain::events::*;
    use ledger_core::domain::ids::{ActivityId, Category, Note, TransactionId, VerifierId};
    use ledger_core::domain::postings::movement;
    use ledger_core::domain::units::{Hours, Unit};
    use ledger_core::log::{EventId, Position};
    use rust_decimal::Decimal;

    use super::*;
    use crate::{ApplyError, FoldAnomaly};

    fn id(s: String) -> AccountId {
        AccountId::new(s).expect("a test id")
    }

    fn tx(i: u64) -> TransactionId {
        TransactionId(uuid::Uuid::from_u64_pair(0x7e57, i))
    }

    /// A small city's log, several batches long: volunteers registered in a region
    /// tree, deposits spread over volunteers, activities and months, a deposit
    /// recorded twice (an anomaly), spends with a project, reversals of deposits and
    /// of a spend; every kind of lookup the prefetch makes, hits and misses.
    fn log() -> Vec<LedgerEvent> {
        let at = |i: u64| -> DateTime<Utc> {
            "2026-01-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("an instant")
                + Duration::seconds(i as i64)
        };
        let issuance = AccountId::system(SystemAccount::HourIssuance);
        let services = AccountId::system(SystemAccount::Services);
        let project = id("proj-1".into());
        let mut log = vec![LedgerEvent::AccountRegistered(AccountRegistered {
            account: project.clone(),
            kind: AccountKind::Project,
            registered_at: at(0),
        })];
        for v in 0..12u64 {
            log.push(LedgerEvent::AccountRegistered(AccountRegistered {
                account: id(format!("v-{v}")),
                kind: AccountKind::Volunteer {
                    region: RegionCode::new(format!("hangzhou/d{}/c{}", v % 3, v % 2))
                        .expect("a region"),
                    joined_on: NaiveDate::from_ymd_opt(2024, 1 + (v % 12) as u32, 1)
                        .expect("a date"),
                },
                registered_at: at(v),
            }));
        }
        for i in 0..150u64 {
            let who = id(format!("v-{}", i % 13)); // v-12 never registered: no region
            let hours = Hours::new(Decimal::new(25 * (1 + (i % 8) as i64), 2)).expect("hours");
            let event = match i % 10 {
                // A deposit three events back, or (every other time) a spend.
                7 if i > 20 => LedgerEvent::TransactionReversed(TransactionReversed {
                    transaction: tx(1_000 + i),
                    original: tx(if i % 20 == 17 { i - 9 } else { i - 3 }),
                    account: id(format!("v-{}", (i - 3) % 13)),
                    reason: Note::new("entered twice").expect("a note"),
                    postings: vec![],
                    recorded_at: at(100 + i),
                }),
                8 => LedgerEvent::HoursSpent(HoursSpent {
                    transaction: tx(i),
                    volunteer: who.clone(),
                    purpose: SpendPurpose::ReceivedService,
                    counterparty: project.clone(),
                    hours,
                    memo: None,
                    postings: movement(Unit::Hours, &who, &services, hours.value()).to_vec(),
                    recorded_at: at(100 + i),
                }),
                _ => {
                    // Deposit 45 again under 46's number: recorded twice.
                    let transaction = if i == 46 { tx(45) } else { tx(i) };
                    let day =
                        NaiveDate::from_ymd_opt(2025, 1 + (i % 12) as u32, 1 + (i % 28) as u32)
                            .expect("a date");
                    let started = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
                    LedgerEvent::HoursDeposited(HoursDeposited {
                        transaction,
                        volunteer: who.clone(),
                        organisation: id(format!("org-{}", i % 4)),
                        activity: ActivityId::new(format!("act-{}", i % 7)).expect("an id"),
                        service_date: day,
                        started_at: started,
                        ended_at: started + Duration::hours(2),
                        category: Category::new("elderly-care").expect("a category"),
                        hours,
                        kind: if i % 5 == 0 {
                            HourKind::Honour
                        } else {
                            HourKind::Credit
                        },
                        verifier: VerifierId::new("staff-1").expect("an id"),
                        postings: movement(Unit::Hours, &issuance, &who, hours.value()).to_vec(),
                        recorded_at: at(100 + i),
                    })
                }
            };
            log.push(event);
        }
        log
    }

    fn recorded(log: &[LedgerEvent], encoding: PayloadEncoding) -> Vec<RecordedEvent> {
        log.iter()
            .enumerate()
            .map(|(i, e)| RecordedEvent {
                stream: id("v-0".into()).stream(),
                version: i as u64,
                position: Position::from_sequence(i as u64 + 1),
                id: EventId(uuid::Uuid::from_u64_pair(0xe7, i as u64)),
                event_type: e.event_type().to_owned(),
                data: e.encode_as(encoding),
                metadata: vec![],
            })
            .collect()
    }

    /// `apply` one by one until the first error: the state, the anomalies noted (by
    /// position), and the error.
    type Outcome = (String, Vec<(Position, FoldAnomaly)>, Option<String>);

    fn one_by_one(events: &[RecordedEvent]) -> Outcome {
        let mut m = ReadModels::new();
        let mut noted = vec![];
        for e in events {
            match m.apply(e) {
                Ok(Some(a)) => noted.push((e.position, a)),
                Ok(None) => {}
                Err(err) => return (m.digest(), noted, Some(err.to_string())),
            }
        }
        (m.digest(), noted, None)
    }

    fn all_at_once(
        events: &[RecordedEvent],
        handed: impl FnMut(&RecordedEvent) -> Option<Arc<LedgerEvent>>,
    ) -> Outcome {
        let mut m = ReadModels::new();
        let mut noted = vec![];
        let result = m.apply_all(events, handed, |e, a| noted.push((e.position, a)));
        (m.digest(), noted, result.err().map(|e| e.to_string()))
    }

    #[test]
    fn apply_all_is_apply_one_by_one() {
        let log = log();
        assert!(log.len() > 4 * EVENTS_PER_BATCH_MAX, "several batches");
        for encoding in [PayloadEncoding::Json, PayloadEncoding::Binary] {
            let events = recorded(&log, encoding);
            let expected = one_by_one(&events);
            assert!(expected.2.is_none(), "the log folds: {:?}", expected.2);
            assert_eq!(
                expected.1,
                vec![(events[13 + 46].position, FoldAnomaly::DepositSeenTwice)],
                "the twice-recorded deposit is the one anomaly"
            );
            assert_eq!(all_at_once(&events, |_| None), expected, "{encoding:?}");
            // Every split into calls gives the same state: a call's end cuts a batch.
            for cut in [1, 31, 32, 33, 100] {
                let mut m = ReadModels::new();
                let mut noted = vec![];
                for part in events.chunks(cut) {
                    m.apply_all(part, |_| None, |e, a| noted.push((e.position, a)))
                        .expect("the log folds");
                }
                assert_eq!((m.digest(), noted, None), expected, "calls of {cut}");
            }
        }
    }

    #[test]
    fn handed_events_fold_as_decoded_ones() {
        let log = log();
        let events = recorded(&log, PayloadEncoding::Binary);
        let expected = one_by_one(&events);
        // Every other event handed over decoded, as the server's handler does.
        let handed = |e: &RecordedEvent| {
            e.version
                .is_multiple_of(2)
                .then(|| Arc::new(log[e.version as usize].clone()))
        };
        assert_eq!(all_at_once(&events, handed), expected);
    }

    /// Given a payload that does not decode in the middle of a batch, when the run is
    /// applied, then the events before it are folded, it and the rest are not, and the
    /// error is `apply`'s.
    #[test]
    fn apply_all_stops_where_apply_stops() {
        let log = log();
        for bad in [0, 40, 63, 64, 150] {
            let mut events = recorded(&log, PayloadEncoding::Binary);
            events[bad].data.truncate(3);
            let expected = one_by_one(&events);
            assert!(
                expected
                    .2
                    .as_deref()
                    .is_some_and(|e| e.contains("cannot read")),
                "{expected:?}"
            );
            let mut m = ReadModels::new();
            let err = m
                .apply_all(&events, |_| None, |_, _| {})
                .expect_err("a payload that does not decode stops the fold");
            assert!(
                matches!(&err, ApplyError::Decode { position, .. } if *position == events[bad].position),
                "{err}"
            );
            assert_eq!(
                (m.digest(), Some(err.to_string())),
                (expected.0, expected.2),
                "bad event {bad}"
            );
            assert_eq!(
                m.checkpoint,
                bad.checked_sub(1).map(|b| events[b].position),
                "the checkpoint is the event before it"
            );
        }
        // An event out of order (its position not after the one before) likewise.
        let mut events = recorded(&log, PayloadEncoding::Json);
        events[50].position = events[20].position;
        let expected = one_by_one(&events);
        let outcome = all_at_once(&events, |_| None);
        assert!(
            outcome
                .2
                .as_deref()
                .is_some_and(|e| e.contains("out of order")),
            "{outcome:?}"
        );
        assert_eq!(outcome, expected);
    }
}

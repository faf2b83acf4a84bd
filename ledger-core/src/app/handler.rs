//! [`Handler`]: load, decide, append, retry. See the module documentation of `app`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::FixedOffset;
use rust_decimal::Decimal;

use super::clock::Clock;
use super::decoded::DecodedEvents;
use super::gates::Gates;
use super::lanes::Lanes;
use super::receipts::{receipts_for, Receipt, ReceiptMark, ReceiptReport};
use super::stamps::Stamps;
use crate::domain::account::AccountId;
use crate::domain::chain::{encode_metadata_as, event_hash, verify_chain, ChainError, EventHash};
use crate::domain::commands::{Command, Context};
use crate::domain::events::{HoursReceived, LedgerEvent, PayloadEncoding};
use crate::domain::ids::{event_id_for_receipt, RequestId, TransactionId};
use crate::domain::postings::{balanced, net_for};
use crate::domain::state::{AccountState, Envelope, FoldError, Outcome, TxKind};
use crate::domain::units::{ExchangeRate, Unit};
use crate::domain::Rejection;
use crate::log::limits::READ_EVENTS_MAX;
use crate::log::{
    AppendError, AppendResult, EventLog, ExpectedVersion, NewEvent, ReadError, ReadFrom, StreamName,
};

/// How many times a command is re-decided after losing an optimistic-concurrency race
/// on its account. Conflicts come from concurrent commands on the *same* account (a
/// bulk deposit racing a spend); each retry costs one stream read. Eight retries ride
/// out any realistic burst; past that the account is hot and the caller should back off
/// and retry (`CommandError::Contention`).
pub const COMMAND_RETRIES_MAX: usize = 8;

/// Most appends a command's receipt queues behind on the receiver's stream
/// (`lanes.rs`) before the command answers and leaves the receipt to the catch-up (the
/// server's, within `RECEIPT_HEAL_INTERVAL`). Receipts to one account are appended one
/// at a time, an fsync each: a thousand donations at once to one project would
/// otherwise each hold an in-flight permit until their turn came, seconds for the
/// last, and commands on other accounts would wait for a permit (a reviewer's
/// scenario). 64 are tens of milliseconds of fsyncs; a queue, not a clock, so the
/// handler needs no timer. Bursts the probes made (16 to 64 at once) still deliver
/// every receipt before answering.
pub const RECEIPT_LANE_QUEUE_MAX: usize = 64;

/// The ledger's configuration as the rules see it.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The current exchange rate; its version is recorded in every exchange.
    pub exchange_rate: ExchangeRate,
    /// The UTC offset of the ledger's calendar: "today" for the service-date rule is
    /// the day it is at this offset (UTC+8 for a Chinese time bank). Option not taken: a
    /// named time zone with daylight saving, which needs a tz database for no gain in
    /// the places the ledger serves.
    pub calendar_offset: FixedOffset,
    /// How long a merchant's redemption hold keeps a volunteer's points before it
    /// expires and they return ([`REDEMPTION_HOLD_TIMEOUT_DEFAULT`]).
    pub redemption_hold_timeout: chrono::Duration,
    /// How new events' payloads are written: JSON (the default) or binary. Reading
    /// accepts both in any mix, so this can change between restarts.
    pub payload_encoding: PayloadEncoding,
}

/// Default redemption hold timeout. A till captures within seconds to minutes of
/// authorising; fifteen minutes covers a slow checkout, and a forgotten hold gives the
/// volunteer's points back the same quarter hour.
pub const REDEMPTION_HOLD_TIMEOUT_DEFAULT: chrono::Duration = chrono::Duration::minutes(15);

impl Default for LedgerConfig {
    /// The default rate and a UTC calendar.
    fn default() -> Self {
        Self {
            exchange_rate: ExchangeRate::default(),
            calendar_offset: FixedOffset::east_opt(0).expect("zero is a valid offset"),
            redemption_hold_timeout: REDEMPTION_HOLD_TIMEOUT_DEFAULT,
            payload_encoding: PayloadEncoding::Json,
        }
    }
}

/// Why a command produced no outcome.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The rules refused the command; nothing was written. Fix the request (or the
    /// world) and send it again.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The account kept changing under the command; nothing was written. Retry later
    /// with the same request id.
    #[error("account {account} changed under the command {attempts} times in a row; retry later with the same request id")]
    Contention { account: AccountId, attempts: usize },
    /// The log could not be read or written; whether the command landed is unknown.
    /// Retry with the same request id: the retry returns the original outcome if it did.
    #[error("event log unavailable: {0}; retry with the same request id")]
    LogUnavailable(String),
    /// Stored events failed to decode or a log check; an operator must look. Nothing
    /// was written.
    #[error("event log holds data this ledger cannot read: {0}")]
    LogCorrupt(String),
}

impl From<ReadError> for CommandError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Unavailable(m) => Self::LogUnavailable(m),
            other => Self::LogCorrupt(other.to_string()),
        }
    }
}

/// True if `command` (whose digest in this server's encoding is `digest`) is the
/// request recorded with `recorded`: the same form as ours, or (the payload-encoding
/// setting changed since) the other one.
fn same_request(command: &Command, digest: &str, recorded: &str) -> bool {
    recorded == digest || command.matches_digest(recorded)
}

impl From<FoldError> for CommandError {
    fn from(e: FoldError) -> Self {
        Self::LogCorrupt(e.to_string())
    }
}

/// Why an account's history did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The stream could not be read; retry when the log is available.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The stream's hash chain is broken: its history was altered. Restore it from a
    /// backup and investigate.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Executes commands against an event log. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Handler {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    /// Set when a committed transaction's receipt could not be delivered inline; the
    /// server then runs [`Handler::deliver_receipts`].
    receipts_pending: Arc<AtomicBool>,
    states: Arc<StateCache>,
    /// Where appended events are left, decoded, for this process's projection worker
    /// ([`Handler::with_decoded_events`]); None: nobody takes them.
    decoded: Option<Arc<DecodedEvents>>,
    /// Orders a `CloseAccount` against the commands that name its account
    /// ([`super::gates`]).
    gates: Arc<Gates>,
    /// In this process, appends to one stream take turns instead of racing
    /// ([`super::lanes`]).
    lanes: Arc<Lanes>,
    /// The `recorded_at` stamps of appends still on their way ([`Stamps`]).
    stamps: Arc<Stamps>,
}

/// Default for the most account states the handler keeps folded between commands
/// ([`Handler::with_state_cache_accounts_max`]). Without the cache every command
/// re-reads and re-folds its account's whole stream, and a project that receives
/// thousands of donations (each reading the project's state) would cost more per
/// donation as it grows. 65,536 covers the accounts active in a busy hour of a city
/// (~15 k commands/s spread over many volunteers) at a few KiB per typical volunteer,
/// ~200–300 MiB; the demo seeder, which walks a whole city's year, asks for more.
pub const STATE_CACHE_ACCOUNTS_MAX: usize = 65_536;

/// Folded account states by account. Only ever a *prefix* of the truth: a cached state
/// is brought up to date by reading the stream after its version before every use, so
/// writers in other processes (or handlers) are always seen.
///
/// Eviction is `quick_cache`'s S3-FIFO: an account enters a small probation queue and
/// stays only if it is used again, so hot accounts (a project that every donation
/// credits, a busy volunteer) survive a stream of one-off accounts. Option not taken:
/// the earlier `Mutex<HashMap>` that dropped "the first key" when full. A hash map's
/// first key is the one in its lowest bucket, so whatever hashed low was evicted again
/// and again while whatever hashed high stayed forever: at city scale a project that
/// hashed low was re-folded (tens of thousands of events) on every donation, and
/// seeding a 2.68 M-volunteer city slowed to under 100 commands/s
/// (docs/benchmarks.md).
struct StateCache {
    states: quick_cache::sync::Cache<AccountId, Arc<AccountState>>,
}

/// How long [`StateCache`] waits for another thread that holds an account's slot
/// mid-update: not at all. The slot is only ever held for one in-memory fold; a
/// caller that finds it busy folds its own copy instead, which costs one clone.
const STATE_SLOT_WAIT: Option<std::time::Duration> = Some(std::time::Duration::ZERO);

impl StateCache {
    fn new(accounts_max: usize) -> Self {
        assert!(
            accounts_max > 0,
            "the state cache needs room for an account"
        );
        Self {
            states: quick_cache::sync::Cache::new(accounts_max),
        }
    }

    fn get(&self, id: &AccountId) -> Option<Arc<AccountState>> {
        self.states.get(id)
    }

    /// Fold the event just appended to `state`'s stream into `state` (the state it was
    /// decided on, so still a prefix of the stream) and cache the result, which is then
    /// up to date without a read. When the cache still holds `state` itself and nobody
    /// else does, `fold` runs in place, under the account's shard lock, so a concurrent
    /// command on the same account never finds the entry missing (which would make a
    /// hot project re-fold its whole stream). Otherwise a copy is folded outside the
    /// lock and cached unless something newer is. Option not taken: taking a state out
    /// of the cache for the whole decision, which makes a concurrent command on the
    /// same account miss and re-fold its whole stream.
    fn advance(&self, state: Arc<AccountState>, fold: impl FnOnce(&mut AccountState)) {
        use quick_cache::sync::{EntryAction, EntryResult};
        let id = state.id.clone();
        let mut mine = Some(state);
        let mut fold = Some(fold);
        let result = self.states.entry(&id, STATE_SLOT_WAIT, |_, cached| {
            let Some(ours) = mine.take_if(|ours| Arc::ptr_eq(cached, ours)) else {
                return EntryAction::Retain(());
            };
            drop(ours);
            if let Some(unique) = Arc::get_mut(cached) {
                if let Some(fold) = fold.take() {
                    fold(unique);
                }
            } else {
                // Another command holds the same state: fold a copy below.
                mine = Some(cached.clone());
            }
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(guard) = result {
            // Evicted meanwhile; the slot is ours to fill.
            if let (Some(mut state), Some(fold)) = (mine.take(), fold.take()) {
                fold(Arc::make_mut(&mut state));
                let _ = guard.insert(state);
            }
            return;
        }
        if let (Some(state), Some(fold)) = (mine, fold) {
            let mut folded = (*state).clone();
            drop(state);
            fold(&mut folded);
            self.put(Arc::new(folded));
        }
    }

    /// Cache `state` unless the cache holds the same account at its version or later.
    fn put(&self, state: Arc<AccountState>) {
        use quick_cache::sync::{EntryAction, EntryResult};
        let id = state.id.clone();
        let mut newer = Some(state);
        let result = self.states.entry(&id, STATE_SLOT_WAIT, |_, cached| {
            if let Some(state) = newer.take_if(|s| s.version > cached.version) {
                *cached = state;
            }
            EntryAction::Retain(())
        });
        if let (EntryResult::Vacant(guard), Some(state)) = (result, newer) {
            let _ = guard.insert(state);
        }
        // Timeout: another thread is filling the slot with its own, equally valid,
        // prefix; this one is dropped.
    }
}

impl Handler {
    pub fn new(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>, config: LedgerConfig) -> Self {
        Self {
            log,
            clock,
            config,
            receipts_pending: Arc::new(AtomicBool::new(false)),
            states: Arc::new(StateCache::new(STATE_CACHE_ACCOUNTS_MAX)),
            decoded: None,
            gates: Arc::default(),
            lanes: Arc::default(),
            stamps: Arc::default(),
        }
    }

    /// The stamps of this handler's appends in flight: [`Stamps::settled`] is the latest
    /// instant a report "as of now" can be asked as of without a later ask as of the
    /// same instant finding more (the query service's live credit reports).
    pub fn stamps(&self) -> &Arc<Stamps> {
        &self.stamps
    }

    /// The same handler leaving every event it appends, decoded, in `decoded` for a
    /// projection worker in this process to take instead of decoding the payload
    /// again ([`DecodedEvents`]).
    pub fn with_decoded_events(mut self, decoded: Arc<DecodedEvents>) -> Self {
        self.decoded = Some(decoded);
        self
    }

    /// Leave `event`, about to be appended as `new`, for the projection worker: before
    /// the append, because the worker usually reads the record before this task sees
    /// the append's reply ([`DecodedEvents`]).
    fn leave_decoded(&self, new: &NewEvent, event: &Arc<LedgerEvent>) {
        if let Some(decoded) = &self.decoded {
            decoded.put(new.id, &new.data, event.clone());
        }
    }

    /// The same handler keeping up to `accounts_max` folded account states (default
    /// [`STATE_CACHE_ACCOUNTS_MAX`]). A process that touches more accounts again and
    /// again than the cache holds re-folds their streams from the log; the demo seeder,
    /// which walks a whole city's year, asks for a larger cache.
    pub fn with_state_cache_accounts_max(mut self, accounts_max: usize) -> Self {
        self.states = Arc::new(StateCache::new(accounts_max));
        self
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The injected clock (queries use it for "this year" and a report's default as_of).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// True (once) if an inline receipt delivery failed since the last call: run
    /// [`Handler::deliver_receipts`] to heal.
    pub fn take_receipts_pending(&self) -> bool {
        self.receipts_pending.swap(false, Ordering::AcqRel)
    }

    /// Record that receipts may be missing (a catch-up failed and must run again).
    pub fn mark_receipts_pending(&self) {
        self.receipts_pending.store(true, Ordering::Release);
    }

    /// `account`'s state, up to date with its stream: the cached fold brought up to
    /// date by reading (paged) after its version.
    pub async fn load(&self, account: &AccountId) -> Result<Arc<AccountState>, CommandError> {
        let stream = account.stream();
        let cached = self.states.get(account);
        if let Some(cached) = &cached {
            let from = cached.version.map_or(0, |v| v + 1);
            if self.log.read_stream(&stream, from, 1).await?.is_empty() {
                return Ok(cached.clone());
            }
        }
        let mut state =
            cached.map_or_else(|| AccountState::empty(account.clone()), |s| (*s).clone());
        loop {
            let from = state.version.map_or(0, |v| v + 1);
            let page = self.log.read_stream(&stream, from, READ_EVENTS_MAX).await?;
            for e in &page {
                if e.version != state.version.map_or(0, |v| v + 1) {
                    return Err(CommandError::LogCorrupt(format!(
                        "stream {stream} returned version {} out of order",
                        e.version
                    )));
                }
                state.fold(e)?;
            }
            if page.len() < READ_EVENTS_MAX {
                let state = Arc::new(state);
                self.states.put(state.clone());
                return Ok(state);
            }
        }
    }

    /// Read `account`'s whole stream and check its hash chain: the number of events
    /// verified, or where the history was altered.
    pub async fn verify_account(&self, account: &AccountId) -> Result<u64, VerifyError> {
        let stream = account.stream();
        let mut events = Vec::new();
        loop {
            let page = self
                .log
                .read_stream(&stream, events.len() as u64, READ_EVENTS_MAX)
                .await?;
            let full = page.len() == READ_EVENTS_MAX;
            events.extend(page);
            if !full {
                break;
            }
        }
        verify_chain(&events)?;
        Ok(events.len() as u64)
    }

    /// The original outcome of an earlier request identical to `command` (same request
    /// id, same digest), without deciding anything: None if there is none. For a
    /// retry the edge can no longer turn into a command it would decide (a redemption
    /// token signed with a key replaced since), which must still get its answer.
    pub async fn recorded_outcome(
        &self,
        command: &Command,
    ) -> Result<Option<Outcome>, CommandError> {
        let target = self.load(command.target()).await?;
        let digest = command.digest_as(self.config.payload_encoding);
        Ok(target
            .requests
            .get(command.request_id())
            .filter(|seen| same_request(command, &digest, &seen.digest))
            .map(|seen| seen.outcome.clone()))
    }

    /// Execute one command: its outcome, the original outcome of an identical earlier
    /// request (`replayed`), or why not.
    pub async fn execute(&self, command: &Command) -> Result<Outcome, CommandError> {
        let digest = command.digest_as(self.config.payload_encoding);
        let event_id = command.event_id();
        let transaction = TransactionId::from(event_id);
        let target_id = command.target();
        let stream = target_id.stream();
        // Held until this returns: through the decision, the append and the receipts.
        let _gate = self.gates.hold(command).await;
        // Held through the reads, the decision and the append, let go before the
        // receipts (each takes its receiver's lane): `lanes.rs`.
        let lane = self.lanes.hold(target_id).await;
        let mut id_reused = false;
        for _ in 0..=COMMAND_RETRIES_MAX {
            let target = self.load(target_id).await?;
            if let Some(seen) = target.requests.get(command.request_id()) {
                return if same_request(command, &digest, &seen.digest) {
                    Ok(seen.outcome.clone())
                } else {
                    Err(Rejection::RequestIdReused {
                        request_id: command.request_id().clone(),
                    }
                    .into())
                };
            }
            if id_reused {
                // Re-decided on fresh state and the id is still taken elsewhere.
                return Err(Rejection::RequestIdReused {
                    request_id: command.request_id().clone(),
                }
                .into());
            }
            let mut others = BTreeMap::new();
            if let Some(id) = command.reference().filter(|&id| id != target_id) {
                let state = self.load(id).await?;
                others.insert(id.clone(), state);
            }
            // In flight until this attempt's append has answered (`Stamps`).
            let stamp = self.stamps.stamp(&*self.clock);
            let now = stamp.at();
            let ctx = Context {
                now,
                calendar: self.config.calendar_offset,
                transaction,
                target: &target,
                others: &others,
                rate: &self.config.exchange_rate,
                hold_timeout: self.config.redemption_hold_timeout,
            };
            let event = command.decide(&ctx)?;
            assert_transaction_invariants(&target, &event);
            let new = NewEvent {
                id: event_id,
                event_type: event.event_type().to_owned(),
                data: event.encode_as(self.config.payload_encoding),
                metadata: encode_metadata_as(
                    self.config.payload_encoding,
                    Some((command.request_id(), &digest)),
                    &target.last_hash,
                    None,
                ),
            };
            let event = Arc::new(event);
            self.leave_decoded(&new, &event);
            let folded = Appended::of(&stream, target.version, &new);
            let expected = ExpectedVersion::from_current(target.version);
            match self.log.append(&stream, expected, vec![new]).await {
                Ok(result) => {
                    // Durable: the stamp no longer holds `settled` back. The receipts
                    // below carry stamps of their own; a receipt racing on a busy
                    // receiver must not keep reports "as of now" waiting meanwhile.
                    drop(stamp);
                    let outcome = Outcome {
                        transaction,
                        position: result.last_position(),
                        stream_version: result.stream_version,
                        replayed: false,
                    };
                    // The referenced states are no longer needed; dropping them first
                    // lets a receipt below fold into its receiver's state in place.
                    drop(others);
                    let request = Some((command.request_id().clone(), digest));
                    folded.cache(&self.states, target, &result, request, &event);
                    drop(lane);
                    let receipts = receipts_for(target_id, transaction, &event)
                        .expect("a decided transaction credits other streams only with hours");
                    for receipt in receipts {
                        if self
                            .deliver_queued(&receipt, Some(RECEIPT_LANE_QUEUE_MAX))
                            .await
                            .is_err()
                        {
                            // The transaction stands; the receipt is healed by a catch-up.
                            self.receipts_pending.store(true, Ordering::Release);
                        }
                    }
                    return Ok(outcome);
                }
                Err(AppendError::WrongExpectedVersion { .. }) => continue,
                Err(AppendError::EventIdReused { .. }) => {
                    id_reused = true;
                    continue;
                }
                Err(AppendError::Unavailable(m)) => return Err(CommandError::LogUnavailable(m)),
                Err(e @ (AppendError::LimitExceeded(_) | AppendError::Invalid(_))) => {
                    // Commands are bounded so that their events fit every log limit.
                    panic!("a decided event broke a log limit: {e}");
                }
            }
        }
        Err(CommandError::Contention {
            account: target_id.clone(),
            attempts: COMMAND_RETRIES_MAX + 1,
        })
    }

    /// Append `receipt` to the credited account's stream unless it is there already.
    /// True if this call appended it.
    pub async fn deliver(&self, receipt: &Receipt) -> Result<bool, CommandError> {
        self.deliver_queued(receipt, None).await
    }

    /// [`Handler::deliver`], queueing behind at most `queue_max` (if given) appends
    /// held or waited for on the receiver's lane: past it, `Contention`, and nothing is
    /// appended.
    async fn deliver_queued(
        &self,
        receipt: &Receipt,
        queue_max: Option<usize>,
    ) -> Result<bool, CommandError> {
        let stream = receipt.to.stream();
        // Receipts to one account take turns with each other and with its commands
        // (`lanes.rs`): a burst of transfers to one receiver no longer runs out of
        // retries.
        let _lane = match queue_max {
            None => self.lanes.hold(&receipt.to).await,
            Some(max) => self
                .lanes
                .hold_unless_queued(&receipt.to, max)
                .await
                .ok_or_else(|| CommandError::Contention {
                    account: receipt.to.clone(),
                    attempts: 0,
                })?,
        };
        for _ in 0..=COMMAND_RETRIES_MAX {
            let state = self.load(&receipt.to).await?;
            if matches!(
                state.transactions.get(&receipt.transaction),
                Some(r) if matches!(r.kind, TxKind::Received(_))
            ) {
                return Ok(false);
            }
            // In flight until this attempt's append has answered (`Stamps`).
            let stamp = self.stamps.stamp(&*self.clock);
            let event = LedgerEvent::HoursReceived(HoursReceived {
                transaction: receipt.transaction,
                from: receipt.from.clone(),
                to: receipt.to.clone(),
                hours: receipt.hours,
                cause: receipt.cause,
                // When the receipt is written, never before its transaction. Not the
                // transaction's time: a receipt healed minutes later by the catch-up
                // would then join reports and replays as of times when the stream did
                // not yet hold it, changing what a report as of T said (credit-score.md,
                // Inputs digest).
                recorded_at: stamp.at().max(receipt.recorded_at),
            });
            let new = NewEvent {
                id: event_id_for_receipt(receipt.transaction, receipt.to.as_str()),
                event_type: event.event_type().to_owned(),
                data: event.encode_as(self.config.payload_encoding),
                metadata: encode_metadata_as(
                    self.config.payload_encoding,
                    None,
                    &state.last_hash,
                    Some(receipt.transaction),
                ),
            };
            let event = Arc::new(event);
            self.leave_decoded(&new, &event);
            let folded = Appended::of(&stream, state.version, &new);
            let expected = ExpectedVersion::from_current(state.version);
            match self.log.append(&stream, expected, vec![new]).await {
                Ok(result) => {
                    folded.cache(&self.states, state, &result, None, &event);
                    return Ok(true);
                }
                Err(AppendError::WrongExpectedVersion { .. }) => continue,
                // Delivered concurrently, on top of a different predecessor.
                Err(AppendError::EventIdReused { .. }) => return Ok(false),
                Err(AppendError::Unavailable(m)) => return Err(CommandError::LogUnavailable(m)),
                Err(e @ (AppendError::LimitExceeded(_) | AppendError::Invalid(_))) => {
                    panic!("a receipt broke a log limit: {e}");
                }
            }
        }
        Err(CommandError::Contention {
            account: receipt.to.clone(),
            attempts: COMMAND_RETRIES_MAX + 1,
        })
    }

    /// True if this log holds, at `mark`'s stream and version, the very event `mark`
    /// names (same id and position): a stored [`ReceiptMark`] is trusted only then.
    pub async fn recognises(&self, mark: &ReceiptMark) -> Result<bool, ReadError> {
        let held = mark.read_from(&*self.log).await?;
        Ok(held.is_some_and(|e| mark.names(&e)))
    }

    /// Read the log after `from` and deliver every receipt that is missing: the
    /// catch-up that heals a crash between a transaction and its receipt. Idempotent.
    pub async fn deliver_receipts(&self, from: ReadFrom) -> Result<ReceiptReport, CommandError> {
        let mut report = ReceiptReport::default();
        let mut from = from;
        loop {
            let page = self.log.read_all(from, READ_EVENTS_MAX).await?;
            for e in &page {
                report.scanned += 1;
                // Only these types owe receipts; skip decoding everything else.
                if !RECEIPT_SOURCE_TYPES.contains(&e.event_type.as_str()) {
                    if !LedgerEvent::TYPE_NAMES.contains(&e.event_type.as_str()) {
                        report.skipped += 1;
                    }
                    continue;
                }
                let event = match LedgerEvent::decode(&e.event_type, &e.data) {
                    Ok(event) => event,
                    Err(why) => {
                        report.skip(e, format!("its payload does not decode: {why}"));
                        continue;
                    }
                };
                let Some(source) = source_account(&event) else {
                    continue;
                };
                let receipts = match receipts_for(&source, TransactionId::from(e.id), &event) {
                    Ok(receipts) => receipts,
                    Err(why) => {
                        report.skip(e, why.to_string());
                        continue;
                    }
                };
                for receipt in receipts {
                    if self.deliver(&receipt).await? {
                        report.delivered += 1;
                    }
                }
            }
            if let Some(last) = page.last() {
                report.last = Some(ReceiptMark::of(last));
            }
            match page.last() {
                Some(last) if page.len() == READ_EVENTS_MAX => {
                    from = ReadFrom::After(last.position)
                }
                _ => return Ok(report),
            }
        }
    }
}

/// The event a command is appending, as its stream's fold will see it: enough to fold
/// it into the state it was decided on once the append succeeds.
struct Appended {
    version: u64,
    transaction: TransactionId,
    /// Its chain hash, computed before the append from the bytes handed to the log
    /// (which takes them by value). Option not taken: cloning the payload and metadata
    /// to hash them afterwards, which costs two allocations per command instead of a
    /// hash wasted on the rare lost race.
    hash: EventHash,
}

impl Appended {
    fn of(stream: &StreamName, current: Option<u64>, new: &NewEvent) -> Self {
        let version = current.map_or(0, |v| v + 1);
        Self {
            version,
            transaction: TransactionId::from(new.id),
            hash: event_hash(
                stream,
                version,
                &new.id,
                &new.event_type,
                &new.data,
                &new.metadata,
            ),
        }
    }

    /// Fold the appended `event` into `state` (the state it was decided on) and cache
    /// it. Skipped when the log reports the event elsewhere than right after `state`
    /// (an idempotent retry of an earlier append returns that append's result): the
    /// next load then reads the stream as before.
    fn cache(
        self,
        states: &StateCache,
        state: Arc<AccountState>,
        result: &AppendResult,
        request: Option<(RequestId, String)>,
        event: &LedgerEvent,
    ) {
        if result.stream_version != self.version || result.positions.len() != 1 {
            return;
        }
        let envelope = Envelope {
            version: self.version,
            position: result.last_position(),
            hash: self.hash,
            transaction: self.transaction,
            request,
        };
        states.advance(state, |s| s.fold_decoded(envelope, event));
    }
}

/// Event types whose transactions may credit another account's stream.
const RECEIPT_SOURCE_TYPES: [&str; 3] = [
    "HoursTransferred.v1",
    "HoursDonated.v1",
    "TransactionReversed.v1",
];

/// The account whose stream holds a receipt-producing transaction.
fn source_account(event: &LedgerEvent) -> Option<AccountId> {
    match event {
        LedgerEvent::HoursTransferred(e) => Some(e.from.clone()),
        LedgerEvent::HoursDonated(e) => Some(e.from.clone()),
        LedgerEvent::TransactionReversed(e) => Some(e.account.clone()),
        _ => None,
    }
}

/// Invariants every decided transaction keeps; a violation is a bug in a rule, so it
/// panics rather than writing a wrong event.
fn assert_transaction_invariants(target: &AccountState, event: &LedgerEvent) {
    let Some(postings) = event.postings() else {
        return;
    };
    assert!(
        balanced(postings),
        "postings must sum to zero per unit: {postings:?}"
    );
    // The check VerifyLog makes of every stored event; each command's event passes it
    // (checked in debug builds, so every test's command is).
    debug_assert_eq!(event.inconsistency(), None, "{event:?}");
    for p in postings {
        assert!(
            p.amount >= Decimal::ZERO || p.account == target.id || p.account.is_system(),
            "a transaction may debit only the account whose stream it is decided on"
        );
    }
    for unit in [Unit::Hours, Unit::HonourHours, Unit::Points] {
        let after = target.balance(unit) + net_for(postings, &target.id, unit);
        assert!(
            after >= Decimal::ZERO,
            "{unit:?} balance of {} would go negative",
            target.id
        );
    }
}

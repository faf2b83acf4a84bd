//! `timebank.v1.Audit`: the raw log with each record's hash-chain values, chain
//! verification over any range, and any account replayed to any point in time.
//!
//! Everything here reads the log itself, not the read models: an auditor checks the
//! ground truth, with the same chain rules as `ledger_core::domain::chain`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use ledger_core::domain::chain::{
    hex32, range_digest_step, recorded_hash, EventMetadata, GENESIS_HASH, RANGE_DIGEST_START,
};
use ledger_core::domain::events::{is_binary_payload, HourKind, LedgerEvent, PayloadEncoding};
use ledger_core::domain::state::AccountState;
use ledger_core::domain::units::Unit;
use ledger_core::domain::{InputProblem, Rejection};
use ledger_core::log::limits::READ_EVENTS_MAX;
use ledger_core::log::{EventLog, Position, ReadError, ReadFrom, RecordedEvent, StreamName};
use rust_decimal::Decimal;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::{internal, respond, Partners};
use crate::authz::{self, RoleKind};
use crate::convert;
use crate::pb;
use crate::queries::convert::{min_position, position};
use crate::queries::QueryError;
use crate::status::{describe_rejection, query_status_described, Described};

/// Records buffered between the log reader and a slow client of `StreamLog`: enough
/// to keep the reader a page ahead, bounded so a stalled client holds little memory.
pub const STREAM_LOG_BUFFER_RECORDS: usize = 1024;

/// `StreamLog` calls with `follow` one caller may hold open at once. A follow never
/// ends by itself and holds a reader task, a subscription and up to
/// [`STREAM_LOG_BUFFER_RECORDS`] records; an auditor tails the log with one, and a few
/// more cover reconnects that overlap the old stream's end. Per caller, not in total,
/// so that one caller's leak cannot lock another auditor out.
pub const STREAM_LOG_FOLLOWS_PER_CALLER_MAX: usize = 4;

/// `StreamLog` calls without `follow` one caller may hold open at once. Such a call
/// ends by itself, but while its client does not read it holds a reader task, a page
/// of up to `READ_EVENTS_MAX` events and [`STREAM_LOG_BUFFER_RECORDS`] records, a few
/// MiB: a security probe opened 300 and left them unread, and the server grew to
/// 1.39 GB on a log of 10,000 events. An auditor reads a range or two at a time; 16
/// leave room for exports in parallel. Per caller, as follows are.
pub const STREAM_LOG_READS_PER_CALLER_MAX: usize = 16;

/// The open `StreamLog` calls of each caller, follows and reads counted apart.
#[derive(Clone, Default)]
pub struct StreamLogCalls(Arc<std::sync::Mutex<HashMap<(String, bool), usize>>>);

/// One open `StreamLog` call, counted until dropped (when its reader task ends).
pub struct StreamLogCall {
    calls: StreamLogCalls,
    key: (String, bool),
}

impl StreamLogCalls {
    /// Count a new call of `caller` (a follow or not), or refuse it at the limit.
    fn open(&self, caller: &str, follow: bool) -> Result<StreamLogCall, Described> {
        let (max, reason, what, instead) = if follow {
            (
                STREAM_LOG_FOLLOWS_PER_CALLER_MAX,
                "STREAM_LOG_FOLLOWS_EXHAUSTED",
                "StreamLog calls with follow",
                "close one, or read without follow",
            )
        } else {
            (
                STREAM_LOG_READS_PER_CALLER_MAX,
                "STREAM_LOG_READS_EXHAUSTED",
                "StreamLog calls without follow",
                "read or close one first",
            )
        };
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (caller.to_owned(), follow);
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= max {
            let limit = if follow {
                "STREAM_LOG_FOLLOWS_PER_CALLER_MAX"
            } else {
                "STREAM_LOG_READS_PER_CALLER_MAX"
            };
            return Err(Described {
                code: Code::ResourceExhausted,
                reason,
                message: format!(
                    "{caller} already holds {n} {what} open, the most a caller may ({limit}); {instead}"
                ),
                metadata: [("max".to_owned(), max.to_string())].into(),
            });
        }
        *n += 1;
        Ok(StreamLogCall {
            calls: self.clone(),
            key,
        })
    }
}

impl Drop for StreamLogCall {
    fn drop(&mut self) {
        let mut open = self.calls.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Streams `VerifyLog` tracks at once (their last hash). A range bigger than this is
/// refused with a hint to verify it in parts; 4 M covers a city's accounts.
pub const VERIFY_STREAMS_MAX: usize = 4_000_000;

/// A `VerifyLog` gives its worker thread back after this many records: about 0.5 ms
/// of hashing and decoding, so calls queued behind a whole-log verify wait that long,
/// not for the whole verify.
pub const VERIFY_YIELD_EVERY_RECORDS: u64 = 256;

type Answer<T> = Result<Response<T>, Status>;

fn unavailable(e: impl std::fmt::Display) -> Described {
    internal(Code::Unavailable, "LOG_UNAVAILABLE", e.to_string())
}

/// A failed read of the log from the caller's `after`: a position this log never
/// handed out is the caller's to fix (retrying it cannot succeed), damage is
/// `LOG_CORRUPT`, and only the rest is worth a retry.
fn read_failed(e: ReadError) -> Described {
    position_read_failed("after", e)
}

/// [`read_failed`] for a read from the position the caller sent as `field`.
fn position_read_failed(field: &str, e: ReadError) -> Described {
    match e {
        ReadError::UnknownPosition(p) => describe_rejection(&Rejection::input(
            field,
            InputProblem::Malformed(format!(
                "position {p} is not in this log; send a position this log returned, or none to start at the beginning"
            )),
        )),
        ReadError::Corrupt(_) => internal(Code::DataLoss, "LOG_CORRUPT", e.to_string()),
        other => unavailable(other),
    }
}

/// StreamLog's `after_record`: the log still holds, at `after`, the record the client
/// names (its stream, version and hash). Looked up by stream and version, which every
/// store can read, and compared by position and hash.
async fn check_resume_point(
    log: &dyn EventLog,
    after: Option<Position>,
    named: pb::RecordRef,
) -> Result<(), Described> {
    let Some(after) = after else {
        return Err(describe_rejection(&Rejection::input(
            "after_record",
            InputProblem::Malformed(
                "names the record at `after`, but `after` is not set: send both, or neither to start at the beginning".into(),
            ),
        )));
    };
    let hash = ledger_core::domain::chain::from_hex32(&named.hash).map_err(|e| {
        describe_rejection(&Rejection::input(
            "after_record.hash",
            InputProblem::Malformed(format!(
                "{e}: send the record's `hash` as StreamLog gave it, 64 hex digits"
            )),
        ))
    })?;
    let stream = StreamName::new(&named.stream).map_err(|e| {
        describe_rejection(&Rejection::input(
            "after_record.stream",
            InputProblem::Malformed(e.to_string()),
        ))
    })?;
    let found = log
        .read_stream(&stream, named.version, 1)
        .await
        .map_err(read_failed)?
        .into_iter()
        .next()
        .filter(|e| e.version == named.version)
        .map(|e| (e.position, recorded_hash(&e)));
    if found == Some((after, hash)) {
        return Ok(());
    }
    let now = match found {
        Some((position, found_hash)) => format!(
            "{} version {} is at position {position} with hash {}",
            named.stream,
            named.version,
            hex32(&found_hash)
        ),
        None => format!("{} has no version {}", named.stream, named.version),
    };
    Err(query_status_described(&QueryError::ResumePointChanged {
        stream: named.stream,
        version: named.version,
        hash: named.hash,
        after,
        now,
    }))
}

/// The wire form of one record with its chain values.
///
/// `data` is JSON text in either payload encoding, so an auditor's tools read every
/// record the same way: a JSON payload is its stored text, a binary one is decoded and
/// rendered as the JSON a JSON-writing ledger would have stored. `stored_data` is
/// always the stored bytes, what `hash` is over. The option not taken: binary bytes
/// in `data` as base64 or hex text, which would keep `data` verbatim but make every
/// reader of `data` tell the encodings apart and decode postcard itself.
pub fn log_record(e: &RecordedEvent) -> Result<pb::LogRecord, Described> {
    let corrupt = |message: String| internal(Code::DataLoss, "LOG_CORRUPT", message);
    let text = |bytes: &[u8], what: &str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            corrupt(format!(
                "the {what} of {} version {} is not UTF-8 JSON",
                e.stream, e.version
            ))
        })
    };
    let encoding = if is_binary_payload(&e.data) {
        PayloadEncoding::Binary
    } else {
        PayloadEncoding::Json
    };
    let data = match encoding {
        PayloadEncoding::Json => text(&e.data, "payload")?,
        PayloadEncoding::Binary => {
            let event = LedgerEvent::decode(&e.event_type, &e.data).map_err(|err| {
                corrupt(format!(
                    "the binary payload of {} version {} does not decode: {err}",
                    e.stream, e.version
                ))
            })?;
            event.to_json_string()
        }
    };
    // Binary metadata (beside binary payloads) is served as its JSON rendering, like
    // the payload; JSON metadata as stored. A record whose metadata does not decode
    // keeps an empty prev_hash, as before: VerifyLog reports such a record.
    let decoded = EventMetadata::decode(&e.metadata);
    let metadata = if is_binary_payload(&e.metadata) {
        let m = decoded.as_ref().map_err(|err| {
            corrupt(format!(
                "the binary metadata of {} version {} does not decode: {err}",
                e.stream, e.version
            ))
        })?;
        m.to_json_string()
    } else {
        text(&e.metadata, "metadata")?
    };
    let prev_hash = decoded.map(|m| m.prev_hash).unwrap_or_default();
    Ok(pb::LogRecord {
        position: Some(position(e.position)),
        stream: e.stream.to_string(),
        version: e.version,
        id: e.id.0.to_string(),
        r#type: e.event_type.clone(),
        data,
        metadata,
        prev_hash,
        hash: hex32(&recorded_hash(e)),
        stored_data: e.data.clone(),
        stored_metadata: e.metadata.clone(),
        payload_encoding: encoding.name().to_owned(),
    })
}

/// A record as a stream item.
#[allow(clippy::result_large_err)] // the item type of tonic's response stream
fn send(e: &RecordedEvent) -> Result<pb::LogRecord, Status> {
    log_record(e).map_err(Described::into_status)
}

/// The Audit service.
#[derive(Clone)]
pub struct AuditService(pub Partners);

impl AuditService {
    fn allow(&self, caller: &authz::Caller, what: &str) -> Result<(), Described> {
        authz::require(caller, &[RoleKind::Auditor, RoleKind::Admin], what)
    }

    async fn verify(&self, r: pb::VerifyLogRequest) -> Result<pb::VerifyLogResponse, Described> {
        let log = self.0.log().clone();
        let up_to = min_position(r.up_to);
        if let Some(u) = up_to {
            // A bound this log never handed out (past its head, another log's) was taken
            // silently: "ok" up to the head, as if the range asked for had been verified.
            // Refused like `after` and ReplayAccount's `at_position`.
            log.read_all(ReadFrom::After(u), 1)
                .await
                .map_err(|e| position_read_failed("up_to", e))?;
        }
        let after = min_position(r.after);
        if let (Some(a), Some(u)) = (after, up_to) {
            if u < a {
                return Err(crate::status::describe_rejection(&Rejection::input(
                    "up_to",
                    InputProblem::Malformed(format!(
                        "{u} is before `after` ({a}): nothing would be verified; send an up_to at or after it"
                    )),
                )));
            }
        }
        let mut from = match after {
            Some(p) => ReadFrom::After(p),
            None => ReadFrom::Start,
        };
        let mut last: HashMap<StreamName, (u64, [u8; 32])> = HashMap::new();
        let mut digest = RANGE_DIGEST_START;
        let mut out = pb::VerifyLogResponse {
            ok: true,
            ..Default::default()
        };
        let fail = |out: &mut pb::VerifyLogResponse, e: &RecordedEvent, problem: String| {
            out.ok = false;
            out.failed_position = Some(position(e.position));
            out.failed_stream = e.stream.to_string();
            out.problem = problem;
        };
        'pages: loop {
            let page = log
                .read_all(from, READ_EVENTS_MAX)
                .await
                .map_err(read_failed)?;
            let n = page.len();
            for e in &page {
                if up_to.is_some_and(|u| e.position > u) {
                    break 'pages;
                }
                // The predecessor's hash: tracked, or (first time the range meets this
                // stream past version 0) read from the log.
                let expected = match last.get(&e.stream) {
                    Some((v, h)) if *v + 1 == e.version => Some(*h),
                    Some((v, _)) => {
                        fail(
                            &mut out,
                            e,
                            format!(
                                "version {} follows version {v}; events were removed",
                                e.version
                            ),
                        );
                        break 'pages;
                    }
                    None if e.version == 0 => Some(GENESIS_HASH),
                    None => log
                        .read_stream(&e.stream, e.version - 1, 1)
                        .await
                        .map_err(unavailable)?
                        .first()
                        .filter(|p| p.version + 1 == e.version)
                        .map(recorded_hash),
                };
                let Some(expected) = expected else {
                    fail(
                        &mut out,
                        e,
                        format!("version {} has no predecessor in the log", e.version),
                    );
                    break 'pages;
                };
                match EventMetadata::decode(&e.metadata) {
                    Ok(m) if m.prev_hash == hex32(&expected) => {}
                    Ok(_) => {
                        fail(
                            &mut out,
                            e,
                            "does not link to its predecessor: the history was altered".into(),
                        );
                        break 'pages;
                    }
                    Err(err) => {
                        fail(&mut out, e, format!("metadata does not decode: {err}"));
                        break 'pages;
                    }
                }
                // Linked is not enough: a record no reader of this build can fold (the
                // projections stop on it, a replay refuses it) is reported too. It was
                // written as it is, by a newer build or not by this ledger; its hash is
                // still over its bytes, so the chain after it is checked as before.
                // Costs one payload decode per record, ~0.5 µs binary, ~1.5 µs JSON
                // (docs/benchmarks.md, "VerifyLog with a decode per record").
                match LedgerEvent::decode(&e.event_type, &e.data) {
                    Err(err) => {
                        fail(
                            &mut out,
                            e,
                            format!("linked, but its payload does not decode: {err}; a newer build or another writer wrote it"),
                        );
                        break 'pages;
                    }
                    // Readable is not enough either: postings that do not balance, or
                    // that are not the movement the event's own fields name, would
                    // move balances no command decided (`LedgerEvent::inconsistency`).
                    Ok(event) => {
                        if let Some(why) = event.inconsistency() {
                            fail(
                                &mut out,
                                e,
                                format!("linked and readable, but {why}: this ledger did not write it as it is"),
                            );
                            break 'pages;
                        }
                    }
                }
                let hash = recorded_hash(e);
                if !last.contains_key(&e.stream) && last.len() >= VERIFY_STREAMS_MAX {
                    return Err(query_status_described(&QueryError::RangeTooLarge {
                        streams_max: VERIFY_STREAMS_MAX,
                    }));
                }
                last.insert(e.stream.clone(), (e.version, hash));
                out.records_verified += 1;
                // The embedded log answers reads without suspending, so without this a
                // whole-log verify held its worker thread for its whole run (0.3 s on
                // the demo city, minutes at a city's size), stalling the calls queued
                // behind it.
                if out
                    .records_verified
                    .is_multiple_of(VERIFY_YIELD_EVERY_RECORDS)
                {
                    tokio::task::yield_now().await;
                }
                digest = range_digest_step(&digest, &hash);
                out.head_position = Some(position(e.position));
                out.head_hash = hex32(&hash);
            }
            match page.last() {
                Some(l) if n == READ_EVENTS_MAX => from = ReadFrom::After(l.position),
                _ => break,
            }
        }
        out.streams = last.len() as u64;
        if out.records_verified > 0 {
            out.range_digest = hex32(&digest);
        }
        Ok(out)
    }

    async fn replay(&self, r: pb::ReplayAccountRequest) -> Result<pb::AccountReplay, Described> {
        use pb::replay_account_request::Point;
        let account =
            convert::account("account_id", r.account_id).map_err(|e| describe_rejection(&e))?;
        enum Cut {
            Time(DateTime<Utc>),
            At(Position),
            Now,
        }
        let cut = match r.point {
            Some(Point::AsOf(t)) => {
                Cut::Time(convert::timestamp("as_of", Some(t)).map_err(|e| describe_rejection(&e))?)
            }
            Some(Point::AtPosition(p)) => Cut::At(Position::new(p.commit, p.prepare)),
            None => Cut::Now,
        };
        if let Cut::At(p) = cut {
            // A position this log never handed out (past its head, from another log)
            // names no point of it: refused as StreamLog and VerifyLog refuse it,
            // rather than answered as if it were one. Reading after it is the log's own
            // check.
            self.0
                .log()
                .read_all(ReadFrom::After(p), 1)
                .await
                .map_err(|e| position_read_failed("at_position", e))?;
        }
        let events = projections::credit::read_account_stream(self.0.log().as_ref(), &account)
            .await
            .map_err(|e| super::stream_read_failed(&e))?;
        let mut state = AccountState::empty(account.clone());
        // Lifetime hours: standing deposits by transaction (a reversal removes one).
        let mut deposits: HashMap<uuid::Uuid, (Decimal, bool)> = HashMap::new();
        let mut applied = 0u64;
        let mut last_position = None;
        let mut last_recorded = None;
        for e in &events {
            let event = LedgerEvent::decode(&e.event_type, &e.data)
                .map_err(|err| internal(Code::DataLoss, "LOG_CORRUPT", err.to_string()))?;
            let include = match cut {
                Cut::Time(t) => event.recorded_at() <= t,
                Cut::At(p) => e.position <= p,
                Cut::Now => true,
            };
            if !include {
                break;
            }
            state
                .fold(e)
                .map_err(|err| internal(Code::DataLoss, "LOG_CORRUPT", err.to_string()))?;
            match &event {
                LedgerEvent::HoursDeposited(d) => {
                    deposits.insert(e.id.0, (d.hours.value(), d.kind == HourKind::Honour));
                }
                LedgerEvent::TransactionReversed(t) => {
                    deposits.remove(&t.original.0);
                }
                _ => {}
            }
            applied += 1;
            last_position = Some(e.position);
            last_recorded = Some(event.recorded_at());
        }
        if state.kind.is_none() {
            return Err(internal(
                Code::NotFound,
                "UNKNOWN_ACCOUNT",
                format!("account {account} was not registered at that point"),
            ));
        }
        // Holds are judged at the cut, but never after now: past now the log records
        // nothing yet, and a hold open now may still be captured before its expiry.
        // A position's moment is when the last event applied was recorded: judged at
        // now instead, a replay at a hold's own position said nothing was held once the
        // hold had expired since, a state the log never showed there. (A hold that
        // expired between that event and the position counts as held until the
        // sweeper's record, as in GetAccount.)
        let now = self.0.clock().now();
        let at = match cut {
            Cut::Time(t) => t.min(now),
            Cut::At(_) => last_recorded.unwrap_or(now).min(now),
            Cut::Now => now,
        };
        let lifetime = |honour: bool| -> Decimal {
            deposits
                .values()
                .filter(|(_, h)| *h == honour)
                .map(|(v, _)| *v)
                .sum()
        };
        let (credit, honour) = (lifetime(false), lifetime(true));
        let policy = self.0.policies.default_policy();
        let star = policy.level(credit + honour);
        let fmt = |d: Decimal| {
            let mut d = d;
            d.rescale(2);
            d.to_string()
        };
        Ok(pb::AccountReplay {
            account_id: account.to_string(),
            kind: state
                .kind
                .as_ref()
                .map(|k| k.name())
                .unwrap_or_default()
                .to_owned(),
            closed: state.closed,
            spendable_hours: fmt(state.balance(Unit::Hours)),
            honour_hours: fmt(state.balance(Unit::HonourHours)),
            points_balance: fmt(state.balance(Unit::Points)),
            points_held: fmt(state.points_held(at)),
            lifetime_credit_hours: fmt(credit),
            lifetime_honour_hours: fmt(honour),
            stars: u32::from(star.stars),
            star_policy_version: star.policy_version,
            events_applied: applied,
            last_position: last_position.map(position),
            last_hash: hex32(&state.last_hash),
            stream_version: state.version.unwrap_or(0),
        })
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    type StreamLogStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::LogRecord, Status>> + Send + 'static>>;

    async fn stream_log(&self, r: Request<pb::StreamLogRequest>) -> Answer<Self::StreamLogStream> {
        let caller = authz::caller(&r)?;
        self.allow(&caller, "stream the log")
            .map_err(Described::into_status)?;
        let r = r.into_inner();
        let from = match min_position(r.after) {
            Some(p) => ReadFrom::After(p),
            None => ReadFrom::Start,
        };
        let max = (r.max_records > 0).then_some(r.max_records);
        let log = self.0.log().clone();
        if let Some(named) = r.after_record {
            check_resume_point(log.as_ref(), min_position(r.after), named)
                .await
                .map_err(Described::into_status)?;
        }
        let counted = self
            .0
            .stream_log_calls
            .open(&caller.name, r.follow)
            .map_err(Described::into_status)?;
        let follow = r.follow;
        let mut closing = self.0.closing.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_LOG_BUFFER_RECORDS);
        let ends = tx.clone();
        let reader = async move {
            // Send one item; false once the stream must end (client gone, an error
            // sent, or `max_records` reached).
            let mut sent = 0u64;
            let mut emit = async |item: Result<pb::LogRecord, Status>| {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return false;
                }
                sent += 1;
                max.is_none_or(|m| sent < m)
            };
            if follow {
                // Catch-up then live, as the projections read it.
                let mut events = log.subscribe_all(from);
                while let Some(item) = events.next().await {
                    let record = match item {
                        Ok(e) => send(&e),
                        Err(e) => Err(read_failed(e).into_status()),
                    };
                    if !emit(record).await {
                        return;
                    }
                }
                return;
            }
            let mut from = from;
            loop {
                let page = match log.read_all(from, READ_EVENTS_MAX).await {
                    Ok(p) => p,
                    Err(e) => {
                        emit(Err(read_failed(e).into_status())).await;
                        return;
                    }
                };
                for e in &page {
                    if !emit(send(e)).await {
                        return;
                    }
                }
                match page.last() {
                    Some(l) if page.len() == READ_EVENTS_MAX => from = ReadFrom::After(l.position),
                    _ => return,
                }
            }
        };
        // Set when the reader ended by itself (its range read, `max_records` sent, an
        // error sent, or the client gone): an answer that ends without it was cut by
        // the shutdown and must say so, or a client would take a cut range for all.
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished_by_reader = finished.clone();
        tokio::spawn(async move {
            // The reader ends by itself, except a follow on a quiet log, which waits
            // for the next event forever: also end it when the client is gone (its
            // sends would fail, but none is tried while nothing happens) and when the
            // server shuts down (a graceful shutdown waits for every open answer).
            tokio::select! {
                () = reader => finished_by_reader.store(true, Ordering::Release),
                () = ends.closed() => {}
                // Err: every `Partners` is gone, which only a server past its
                // shutdown sees.
                _ = closing.wait_for(|closing| *closing) => {}
            }
        });
        // The status goes after the records already buffered, when the client has read
        // them. Option not taken: sending it into the buffer at shutdown, which found
        // the buffer full whenever the client read slower than the log was read, and
        // then ended the answer as if complete.
        let end = futures::stream::once(async move {
            // The call counts against its caller's limit for as long as its answer
            // lives: until the client has read it to the end or gone. Option not taken:
            // the reader task holding the count, which let go of it as soon as the
            // last records were buffered, though they stayed buffered for a client
            // that never read them (a reviewer: `max_records: 1024`, unread, went
            // uncounted).
            let _counted = counted;
            (!finished.load(Ordering::Acquire)).then(|| {
                crate::status::shutting_down(
                    "call StreamLog again later (or on another instance) with after set to the last record you received",
                )
                .into_status()
            })
        })
        .filter_map(|cut| std::future::ready(cut.map(Err)));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).chain(end))))
    }

    async fn verify_log(&self, r: Request<pb::VerifyLogRequest>) -> Answer<pb::VerifyLogResponse> {
        let caller = authz::caller(&r)?;
        self.allow(&caller, "verify the log")
            .map_err(Described::into_status)?;
        respond(self.verify(r.into_inner()).await)
    }

    async fn replay_account(
        &self,
        r: Request<pb::ReplayAccountRequest>,
    ) -> Answer<pb::AccountReplay> {
        let caller = authz::caller(&r)?;
        self.allow(&caller, "replay accounts")
            .map_err(Described::into_status)?;
        respond(self.replay(r.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use ledger_core::domain::account::AccountId;
    use ledger_core::domain::chain::encode_metadata;
    use ledger_core::domain::events::{AccountClosed, BINARY_PAYLOAD_TAG};
    use ledger_core::domain::ids::Note;
    use ledger_core::log::EventId;

    use super::*;

    /// A security probe held 300 `StreamLog` reads unread (1.39 GB): reads are bounded
    /// per caller as follows are, apart from them, and a finished call frees its place.
    #[test]
    fn stream_log_reads_and_follows_are_bounded_per_caller_apart() {
        let calls = StreamLogCalls::default();
        let reads: Vec<StreamLogCall> = (0..STREAM_LOG_READS_PER_CALLER_MAX)
            .map(|_| calls.open("auditor", false).expect("within the limit"))
            .collect();
        let over = calls
            .open("auditor", false)
            .err()
            .expect("one over the limit");
        assert_eq!(
            (over.code, over.reason),
            (Code::ResourceExhausted, "STREAM_LOG_READS_EXHAUSTED")
        );
        assert!(
            over.message.contains("STREAM_LOG_READS_PER_CALLER_MAX"),
            "{}",
            over.message
        );
        // Follows and other callers are counted apart.
        let follow = calls
            .open("auditor", true)
            .expect("a follow is counted apart");
        let other = calls.open("admin", false).expect("another caller reads");
        drop(reads);
        calls
            .open("auditor", false)
            .expect("finished reads free their places");
        drop((follow, other));
    }

    fn closed() -> LedgerEvent {
        LedgerEvent::AccountClosed(AccountClosed {
            account: AccountId::new("v-1").unwrap(),
            reason: Note::new("moved away").unwrap(),
            closed_at: "2026-11-20T12:00:00Z".parse().unwrap(),
        })
    }

    fn recorded(data: Vec<u8>) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("account-v-1").unwrap(),
            version: 3,
            position: Position::from_sequence(7),
            id: EventId::from_bytes([1; 16]),
            event_type: "AccountClosed.v1".into(),
            data,
            metadata: encode_metadata(None, &GENESIS_HASH, None),
        }
    }

    #[test]
    fn a_json_payload_is_served_as_stored() {
        // Given a record whose payload is JSON
        let e = recorded(closed().encode());
        // When it is served
        let r = log_record(&e).unwrap();
        // Then data is the stored text, stored_data the same bytes, hash over them
        assert_eq!(r.data.as_bytes(), &e.data[..]);
        assert_eq!(r.stored_data, e.data);
        assert_eq!(r.payload_encoding, "json");
        assert_eq!(r.hash, hex32(&recorded_hash(&e)));
    }

    #[test]
    fn a_binary_payload_is_served_as_its_json_rendering_beside_the_stored_bytes() {
        // Given a record whose payload is binary
        let e = recorded(closed().encode_as(PayloadEncoding::Binary));
        // When it is served
        let r = log_record(&e).unwrap();
        // Then data is what a JSON-writing ledger would have stored, stored_data the
        // binary bytes, and hash is over those (not over data)
        assert_eq!(r.data.as_bytes(), &closed().encode()[..]);
        assert_eq!(r.stored_data, e.data);
        assert_eq!(r.payload_encoding, "binary");
        assert_eq!(r.hash, hex32(&recorded_hash(&e)));
        assert_ne!(r.hash, hex32(&recorded_hash(&recorded(closed().encode()))));
    }

    #[test]
    fn binary_metadata_is_served_as_its_json_beside_its_stored_bytes() {
        use ledger_core::domain::chain::encode_metadata_as;
        // Given a record written by a ledger with binary payloads (binary metadata)
        let mut e = recorded(closed().encode_as(PayloadEncoding::Binary));
        e.metadata = encode_metadata_as(PayloadEncoding::Binary, None, &GENESIS_HASH, None);
        // When it is served
        let r = log_record(&e).unwrap();
        // Then metadata is the JSON twin, stored_metadata the bytes, hash over them
        assert_eq!(
            r.metadata.as_bytes(),
            &ledger_core::domain::chain::encode_metadata(None, &GENESIS_HASH, None)[..]
        );
        assert_eq!(r.stored_metadata, e.metadata);
        assert_eq!(r.hash, hex32(&recorded_hash(&e)));
        // And spoiled binary metadata is DATA_LOSS naming the record
        e.metadata = vec![BINARY_PAYLOAD_TAG, 0xff];
        let err = log_record(&e).unwrap_err();
        assert_eq!((err.code, err.reason), (Code::DataLoss, "LOG_CORRUPT"));
        assert!(
            err.message
                .starts_with("the binary metadata of account-v-1 version 3 does not decode: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_binary_payload_that_does_not_decode_is_log_corrupt_by_name() {
        // Given a record with the binary tag followed by garbage
        let e = recorded(vec![BINARY_PAYLOAD_TAG, 0xff, 0xff, 0xff]);
        // When it is served
        let err = log_record(&e).unwrap_err();
        // Then it is DATA_LOSS naming stream, version and the decode error
        assert_eq!((err.code, err.reason), (Code::DataLoss, "LOG_CORRUPT"));
        assert!(
            err.message.starts_with(
                "the binary payload of account-v-1 version 3 does not decode: event of type AccountClosed.v1 has a binary payload that does not decode: "
            ),
            "{}",
            err.message
        );
    }
}

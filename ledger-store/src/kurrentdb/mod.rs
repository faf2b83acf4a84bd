//! The event log on a KurrentDB (formerly EventStoreDB) cluster, through the official
//! `kurrentdb` client.
//!
//! Files: `convert.rs` (pure value mappings, unit-tested without a server),
//! `claims.rs` (log-wide event-id uniqueness), `subscription.rs` (the resubscribing
//! `$all` follower), this file (the trait). `docs/operations.md` says what the ledger
//! needs from the cluster.
//!
//! How the contract maps:
//! - streams, versions and event ids are KurrentDB's own: stream revision = version,
//!   event id = KurrentDB event id, so its de-duplication and ours agree;
//! - positions are `$all` (commit, prepare) positions;
//! - payloads are stored with `content-type: application/json` when they are JSON (all
//!   ledger events are), so KurrentDB's UI and projections show them as JSON; the
//!   metadata (request id, request digest, `prev_hash`) is the event's JSON metadata;
//! - an append first claims its ids (`claims.rs`), then appends with the caller's
//!   expected version, then reads its events back for their `$all` positions (the
//!   server's answer holds one position per write, the contract wants one per event);
//! - a retry — including one whose first attempt landed just before a leader failover
//!   and whose version check therefore fails — is recognised by reading the stream
//!   back by event id and answered with the original result.

pub mod claims;
pub mod convert;
mod subscription;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, ReadAllOptions, ReadStreamOptions,
    StreamPosition, SubscriptionFilter,
};
use ledger_core::log::{
    validate_append, validate_read, AppendError, AppendResult, EventId, EventLog, EventStream,
    ExpectedVersion, InvalidEvent, NewEvent, Position, ReadError, ReadFrom, RecordedEvent,
    StreamName,
};

use claims::ClaimOutcome;
use convert::{append_error, describe, is_transient, read_error, WireRecorded};

/// How deep (in events from the stream's end) a retry is looked for. A retry comes
/// seconds or minutes after its first attempt, when only a few events can have been
/// appended to the same account since; 10,000 events (about 3 MB read) covers hours of
/// a busy account and bounds the cost of the rare append that needs the look-up.
/// Deeper, a retry with expected version `Any` is not recognised (see
/// docs/operations.md); exact-version retries are still caught by the version check.
pub const READ_BACK_DEPTH: usize = 10_000;

/// Page size of the read-back and of internal `$all` paging: the contract's read limit,
/// so one page is bounded the same way as a caller's read.
const PAGE_EVENTS: usize = ledger_core::log::limits::READ_EVENTS_MAX;

/// Attempts of one request when the cluster is briefly away (connection drop, leader
/// election). An election takes a few seconds; 5 attempts with the delays below span
/// about 5 s (0.5 + 1 + 1.5 + 2) before the caller is told `Unavailable`.
pub const ATTEMPTS_MAX: u32 = 5;

/// Pause before the n-th retry is n times this: long enough for the client to
/// rediscover the leader, short enough that a caller is not kept waiting long.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Claims written concurrently for one append: enough to hide round-trip latency for a
/// bulk batch, few enough not to flood the leader's queue.
pub const CLAIM_CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "invalid KurrentDB connection string {given}: {reason}; expected e.g. \
         kurrentdb://host:2113?tls=false or kurrentdb+discover://host:2113"
    )]
    InvalidConnectionString { given: String, reason: String },
    #[error("the KurrentDB client needs a tokio runtime: connect from inside one")]
    NoRuntime,
    #[error("could not create the KurrentDB client for {given}: {reason}")]
    Client { given: String, reason: String },
}

/// The event log on KurrentDB. Cheap to clone; clones share one client (one connection
/// to the leader, rediscovered after a failover).
#[derive(Clone)]
pub struct KurrentLog {
    client: Arc<Client>,
    runtime: tokio::runtime::Handle,
}

/// A connection string with any password replaced, fit for logs and error messages.
pub fn redact(conn: &str) -> String {
    match (conn.find("://"), conn.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let userinfo = &conn[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &conn[..s + 3], &conn[at..])
        }
        _ => conn.to_owned(),
    }
}

impl KurrentLog {
    /// Parse `conn` with the client's own parser (every string it accepts: single node,
    /// `host1,host2,host3` gossip seeds, `+discover` DNS clusters, `tls`, credentials,
    /// node preference...) and create the client. Nothing is sent until the first
    /// request; the client connects to the leader and follows it after a failover.
    /// Must be called from inside a tokio runtime, which the client's tasks run on.
    pub fn connect(conn: &str) -> Result<Self, ConnectError> {
        let settings: ClientSettings =
            conn.parse()
                .map_err(|e: kurrentdb::ClientSettingsParseError| {
                    ConnectError::InvalidConnectionString {
                        given: redact(conn),
                        reason: e.error().map_or_else(
                            || "not a connection string".to_owned(),
                            |u| u.to_string(),
                        ),
                    }
                })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let client = Client::with_runtime_handle(runtime.clone(), settings).map_err(|e| {
            ConnectError::Client {
                given: redact(conn),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            client: Arc::new(client),
            runtime,
        })
    }

    /// Run an idempotent request, retrying transient failures.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, kurrentdb::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kurrentdb::Error>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if is_transient(&e) && attempt < ATTEMPTS_MAX => {
                    tracing::warn!(attempt, error = %e, "KurrentDB request failed; retrying");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Raw stream read. A missing stream reads as empty.
    async fn read_stream_raw(
        &self,
        stream: &str,
        from: StreamPosition<u64>,
        backwards: bool,
        max: usize,
    ) -> Result<Vec<WireRecorded>, kurrentdb::Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.retrying(|| async {
            let options = ReadStreamOptions::default().position(from).max_count(max);
            let options = if backwards {
                options.backwards()
            } else {
                options.forwards()
            };
            let mut read = match self.client.read_stream(stream, &options).await {
                Ok(r) => r,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            loop {
                match read.next().await {
                    Ok(Some(e)) => {
                        if let Some(r) = e.event.as_ref().or(e.link.as_ref()) {
                            out.push(convert::wire_recorded(r));
                        }
                    }
                    Ok(None) => return Ok(out),
                    Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// Raw `$all` read without system events (filtered on the server). Claim events
    /// are still in it; callers drop them.
    async fn read_all_raw(
        &self,
        from: StreamPosition<kurrentdb::Position>,
        backwards: bool,
        max: usize,
    ) -> Result<Vec<WireRecorded>, kurrentdb::Error> {
        self.retrying(|| async {
            let options = ReadAllOptions::default()
                .position(from)
                .filter(SubscriptionFilter::on_event_type().exclude_system_events())
                .max_count(max);
            let options = if backwards {
                options.backwards()
            } else {
                options.forwards()
            };
            let mut read = self.client.read_all(&options).await?;
            let mut out = Vec::new();
            while let Some(e) = read.next().await? {
                if let Some(r) = e.event.as_ref().or(e.link.as_ref()) {
                    out.push(convert::wire_recorded(r));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Claim one event id for `stream` (see `claims.rs`).
    async fn claim(&self, stream: &StreamName, id: EventId) -> Result<ClaimOutcome, AppendError> {
        let claim_stream = claims::claim_stream(&id);
        let body = claims::claim_data(stream);
        let written = self
            .retrying(|| async {
                // A fresh claim id per attempt: an existing claim then always answers
                // "wrong expected version" instead of being taken as an idempotent
                // repeat, so Fresh really means this call created it.
                let data = kurrentdb::EventData::json(claims::CLAIM_EVENT_TYPE, &body)
                    .map_err(|e| kurrentdb::Error::InternalParsingError(e.to_string()))?
                    .id(uuid::Uuid::new_v4());
                let options =
                    AppendToStreamOptions::default().stream_state(kurrentdb::StreamState::NoStream);
                self.client
                    .append_to_stream(claim_stream.as_str(), &options, data)
                    .await
            })
            .await;
        match written {
            Ok(_) => Ok(ClaimOutcome::Fresh),
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {
                let existing = self
                    .read_stream_raw(&claim_stream, StreamPosition::Start, false, 1)
                    .await
                    .map_err(|e| AppendError::Unavailable(describe(&e)))?;
                match existing.first() {
                    Some(c) => Ok(claims::classify(&c.data, stream)),
                    None => Err(AppendError::Unavailable(format!(
                        "claim stream {claim_stream} exists but holds no claim; it must not \
                         be truncated or deleted (see docs/operations.md)"
                    ))),
                }
            }
            Err(e) => Err(AppendError::Unavailable(describe(&e))),
        }
    }

    /// Claim every id of an append; `EventIdReused` if another stream owns one.
    async fn claim_all(
        &self,
        stream: &StreamName,
        events: &[NewEvent],
    ) -> Result<Vec<ClaimOutcome>, AppendError> {
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let claims: Vec<_> = ids.into_iter().map(|id| self.claim(stream, id)).collect();
        let outcomes: Vec<ClaimOutcome> = futures::stream::iter(claims)
            .buffered(CLAIM_CONCURRENCY)
            .try_collect()
            .await?;
        for (e, o) in events.iter().zip(&outcomes) {
            if let ClaimOutcome::Elsewhere(owner) = o {
                tracing::debug!(id = %e.id, owner, "event id already used on another stream");
                return Err(AppendError::EventIdReused { id: e.id });
            }
        }
        Ok(outcomes)
    }

    /// Look for this append's ids in the last [`READ_BACK_DEPTH`] events of `stream`.
    async fn find_previous(
        &self,
        stream: &StreamName,
        events: &[NewEvent],
    ) -> Result<Previous, AppendError> {
        let wanted: HashMap<EventId, usize> =
            events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
        let mut found: HashMap<EventId, RecordedEvent> = HashMap::new();
        let mut from = StreamPosition::End;
        let mut depth = 0;
        while depth < READ_BACK_DEPTH && found.len() < wanted.len() {
            let page = self
                .read_stream_raw(
                    stream.as_str(),
                    from,
                    true,
                    PAGE_EVENTS.min(READ_BACK_DEPTH - depth),
                )
                .await
                .map_err(|e| AppendError::Unavailable(describe(&e)))?;
            let Some(oldest) = page.last().map(|e| e.revision) else {
                break;
            };
            depth += page.len();
            for w in page {
                if wanted.contains_key(&EventId(w.id)) {
                    let r = convert::recorded_event(w)
                        .map_err(|e| AppendError::Unavailable(e.to_string()))?;
                    found.insert(r.id, r);
                }
            }
            match oldest.checked_sub(1) {
                Some(v) => from = StreamPosition::Position(v),
                None => break,
            }
        }
        Ok(previous_from_found(stream, events, &found))
    }

    /// Read back the events an append just wrote (for their positions) and check they
    /// are ours. `last` is the stream version the server reported.
    async fn confirm(
        &self,
        stream: &StreamName,
        events: &[NewEvent],
        last: u64,
    ) -> Result<Option<AppendResult>, AppendError> {
        let Some(first) = (last + 1).checked_sub(events.len() as u64) else {
            return Ok(None);
        };
        let read = self
            .read_stream_raw(
                stream.as_str(),
                StreamPosition::Position(first),
                false,
                events.len(),
            )
            .await
            .map_err(|e| AppendError::Unavailable(describe(&e)))?;
        let found: HashMap<EventId, RecordedEvent> = read
            .into_iter()
            .map(convert::recorded_event)
            .map(|r| r.map(|r| (r.id, r)))
            .collect::<Result<_, _>>()
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        Ok(match previous_from_found(stream, events, &found) {
            Previous::Original(r) if r.stream_version == last => Some(r),
            // The server matched the ids (its de-duplication looks at ids only) but the
            // content differs: the caller reused ids for new events.
            Previous::Reused(id) => return Err(AppendError::EventIdReused { id }),
            _ => None,
        })
    }

    async fn append_checked(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let outcomes = self.claim_all(stream, &events).await?;
        // Fresh claims prove no earlier attempt got as far as appending, so the
        // (costly) look-up is only for retries and reuses.
        let maybe_retry = outcomes.contains(&ClaimOutcome::Ours);
        if maybe_retry {
            match self.find_previous(stream, &events).await? {
                Previous::Original(r) => return Ok(r),
                Previous::Reused(id) => return Err(AppendError::EventIdReused { id }),
                Previous::Absent => {}
            }
        }
        let options =
            AppendToStreamOptions::default().stream_state(convert::stream_state(expected));
        let mut attempt = 1;
        loop {
            let data: Vec<kurrentdb::EventData> = events
                .iter()
                .map(|e| convert::to_event_data(convert::wire_event(e)))
                .collect();
            match self
                .client
                .append_to_stream(stream.as_str(), &options, data)
                .await
            {
                Ok(w) => {
                    if let Some(r) = self
                        .confirm(stream, &events, w.next_expected_version)
                        .await?
                    {
                        return Ok(r);
                    }
                    // The server's answer did not point at our events (an idempotent
                    // answer for an old append): find them.
                    return match self.find_previous(stream, &events).await? {
                        Previous::Original(r) => Ok(r),
                        Previous::Reused(id) => Err(AppendError::EventIdReused { id }),
                        Previous::Absent => Err(AppendError::Unavailable(format!(
                            "KurrentDB acknowledged the append to {stream} at version {} but \
                             its events are not there; check the cluster's health and retry",
                            w.next_expected_version
                        ))),
                    };
                }
                Err(e @ kurrentdb::Error::WrongExpectedVersion { .. }) => {
                    // A retry whose first attempt landed (e.g. just before a leader
                    // failover, or concurrently) fails its version check: answer it
                    // with the original result.
                    if maybe_retry || attempt > 1 {
                        match self.find_previous(stream, &events).await? {
                            Previous::Original(r) => return Ok(r),
                            Previous::Reused(id) => return Err(AppendError::EventIdReused { id }),
                            Previous::Absent => {}
                        }
                    }
                    return Err(append_error(stream, expected, e));
                }
                Err(e) if is_transient(&e) && attempt < ATTEMPTS_MAX => {
                    // Ambiguous: the append may have been committed before the
                    // connection or the leader went away. Look before resending.
                    tracing::warn!(%stream, attempt, error = %e, "append failed; checking whether it landed");
                    tokio::time::sleep(RETRY_DELAY * attempt).await;
                    attempt += 1;
                    match self.find_previous(stream, &events).await {
                        Ok(Previous::Original(r)) => return Ok(r),
                        Ok(Previous::Reused(id)) => return Err(AppendError::EventIdReused { id }),
                        Ok(Previous::Absent) | Err(AppendError::Unavailable(_)) => continue,
                        Err(other) => return Err(other),
                    }
                }
                Err(e) => return Err(append_error(stream, expected, e)),
            }
        }
    }
}

/// What the stream says about an append's ids.
#[derive(Debug, PartialEq, Eq)]
enum Previous {
    /// None of the ids is in the stream.
    Absent,
    /// The whole append is there, unchanged and contiguous: its original result.
    Original(AppendResult),
    /// Some id is there with other content, out of place, or mixed with new ids.
    Reused(EventId),
}

/// Decide from the recorded events found for an append's ids (pure, unit-tested).
fn previous_from_found(
    stream: &StreamName,
    events: &[NewEvent],
    found: &HashMap<EventId, RecordedEvent>,
) -> Previous {
    let Some(first) = events.first() else {
        return Previous::Absent;
    };
    let Some(base) = found.get(&first.id).map(|r| r.version) else {
        return match events.iter().find(|e| found.contains_key(&e.id)) {
            Some(e) => Previous::Reused(e.id),
            None => Previous::Absent,
        };
    };
    let mut positions = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        match found.get(&e.id) {
            Some(r)
                if r.stream == *stream
                    && r.version == base + i as u64
                    && r.content_digest() == e.content_digest(stream) =>
            {
                positions.push(r.position)
            }
            _ => return Previous::Reused(e.id),
        }
    }
    Previous::Original(AppendResult {
        stream_version: base + events.len() as u64 - 1,
        positions,
    })
}

#[async_trait::async_trait]
impl EventLog for KurrentLog {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        validate_append(stream, &events)?;
        if convert::is_hidden_stream(stream.as_str()) {
            // Claim streams are this backend's own bookkeeping.
            return Err(InvalidEvent::StreamNameCharacters {
                name: stream.as_str().to_owned(),
            }
            .into());
        }
        self.append_checked(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        validate_read(max)?;
        self.read_stream_raw(
            stream.as_str(),
            StreamPosition::Position(from_version),
            false,
            max,
        )
        .await
        .map_err(read_error)?
        .into_iter()
        .map(convert::recorded_event)
        .collect()
    }

    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        validate_read(max)?;
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // Reading `$all` from a position includes the event at it; the contract wants
        // the events strictly after a checkpoint, so everything up to `after` is
        // skipped. Pages are refilled because claim events are dropped here.
        let (mut start, mut after) = match from {
            ReadFrom::Start => (StreamPosition::Start, None),
            ReadFrom::After(p) => (
                StreamPosition::Position(convert::client_position(p)),
                Some(p),
            ),
        };
        loop {
            let want = (max - out.len() + 1).min(PAGE_EVENTS + 1);
            let page = self
                .read_all_raw(start, false, want)
                .await
                .map_err(read_error)?;
            let short = page.len() < want;
            let Some(last) = page.last().map(|e| e.position) else {
                return Ok(out);
            };
            for w in page {
                let p = convert::position(w.position);
                if after.is_some_and(|a| p <= a) || !convert::is_ledger_event(&w) {
                    continue;
                }
                out.push(convert::recorded_event(w)?);
                if out.len() == max {
                    return Ok(out);
                }
            }
            if short {
                return Ok(out);
            }
            after = Some(convert::position(last));
            start = StreamPosition::Position(last);
        }
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        // The newest non-system event that is not a claim. Claims precede their
        // events, so the first page almost always answers.
        let mut start = StreamPosition::End;
        let mut before: Option<kurrentdb::Position> = None;
        loop {
            let page = self
                .read_all_raw(start, true, HEAD_PAGE)
                .await
                .map_err(read_error)?;
            let short = page.len() < HEAD_PAGE;
            let Some(oldest) = page.last().map(|e| e.position) else {
                return Ok(None);
            };
            if let Some(e) = page
                .iter()
                .filter(|e| before.is_none_or(|b| e.position < b))
                .find(|e| convert::is_ledger_event(e))
            {
                return Ok(Some(convert::position(e.position)));
            }
            if short {
                return Ok(None);
            }
            before = Some(oldest);
            start = StreamPosition::Position(oldest);
        }
    }

    fn subscribe_all(&self, from: ReadFrom) -> EventStream {
        subscription::follow(self.client.clone(), &self.runtime, from)
    }
}

/// Page of the backwards `head` scan: a few events, since the newest non-claim event
/// is almost always among the last ones.
const HEAD_PAGE: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamName {
        StreamName::new("account-1").expect("name")
    }

    fn ev(data: &str) -> NewEvent {
        NewEvent {
            id: EventId::new_random(),
            event_type: "E.v1".into(),
            data: data.as_bytes().to_vec(),
            metadata: b"{}".to_vec(),
        }
    }

    fn recorded(s: &StreamName, version: u64, e: &NewEvent) -> RecordedEvent {
        RecordedEvent {
            stream: s.clone(),
            version,
            position: Position::new(100 + version, 100 + version),
            id: e.id,
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        }
    }

    fn found(list: &[RecordedEvent]) -> HashMap<EventId, RecordedEvent> {
        list.iter().map(|r| (r.id, r.clone())).collect()
    }

    #[test]
    fn an_unchanged_contiguous_append_is_the_original() {
        let s = stream();
        let batch = [ev("a"), ev("b")];
        let rec = [recorded(&s, 4, &batch[0]), recorded(&s, 5, &batch[1])];
        assert_eq!(
            previous_from_found(&s, &batch, &found(&rec)),
            Previous::Original(AppendResult {
                stream_version: 5,
                positions: vec![rec[0].position, rec[1].position],
            })
        );
        assert_eq!(
            previous_from_found(&s, &batch, &HashMap::new()),
            Previous::Absent
        );
    }

    #[test]
    fn changed_reordered_partial_or_mixed_appends_are_reuses() {
        let s = stream();
        let (a, b) = (ev("a"), ev("b"));
        let mut changed = a.clone();
        changed.data = b"changed".to_vec();
        let rec = found(&[recorded(&s, 0, &a), recorded(&s, 1, &b)]);
        assert_eq!(
            previous_from_found(&s, &[changed], &rec),
            Previous::Reused(a.id)
        );
        assert_eq!(
            previous_from_found(&s, &[b.clone(), a.clone()], &rec),
            Previous::Reused(a.id),
            "out of order"
        );
        let new = ev("new");
        assert_eq!(
            previous_from_found(&s, &[new.clone(), a.clone()], &rec),
            Previous::Reused(a.id),
            "new id then old id"
        );
        assert_eq!(
            previous_from_found(&s, &[a.clone(), new.clone()], &rec),
            Previous::Reused(new.id),
            "old id then new id"
        );
        let gap = found(&[recorded(&s, 0, &a), recorded(&s, 2, &b)]);
        assert_eq!(
            previous_from_found(&s, &[a, b.clone()], &gap),
            Previous::Reused(b.id),
            "not contiguous"
        );
    }

    #[test]
    fn passwords_are_redacted_from_connection_strings() {
        assert_eq!(
            redact("kurrentdb://admin:changeit@node1:2113?tls=true"),
            "kurrentdb://admin:***@node1:2113?tls=true"
        );
        assert_eq!(
            redact("kurrentdb://node1:2113?tls=false"),
            "kurrentdb://node1:2113?tls=false"
        );
        assert_eq!(
            redact("esdb+discover://ops:p%40ss@cluster.example:2113"),
            "esdb+discover://ops:***@cluster.example:2113"
        );
    }

    #[test]
    fn connection_strings_are_parsed_by_the_client() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for ok in [
                "kurrentdb://localhost:2113?tls=false",
                "esdb://localhost:2113?tls=false",
                "kurrentdb+discover://cluster.example:2113",
                "esdb://node1:2113,node2:2113,node3:2113?tls=true&tlsVerifyCert=false",
                "kurrentdb://admin:changeit@localhost:2113?tls=false&nodePreference=leader",
            ] {
                assert!(KurrentLog::connect(ok).is_ok(), "{ok}");
            }
            for bad in [
                "not a url",
                "http://localhost:2113",
                "kurrentdb://localhost:2113?tls=maybe",
            ] {
                let err = KurrentLog::connect(bad).err().expect(bad);
                assert!(
                    matches!(err, ConnectError::InvalidConnectionString { .. }),
                    "{bad}: {err}"
                );
            }
            let err = KurrentLog::connect("kurrentdb://u:secret@@host:2113?tls=maybe")
                .err()
                .expect("invalid");
            assert!(!err.to_string().contains("secret"), "{err}");
        });
        assert!(matches!(
            KurrentLog::connect("kurrentdb://localhost:2113?tls=false"),
            Err(ConnectError::NoRuntime)
        ));
    }
}

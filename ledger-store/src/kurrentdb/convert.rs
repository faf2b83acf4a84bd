//! Pure conversions between the log contract's values and the KurrentDB client's.
//!
//! Nothing here talks to a server, so every mapping is unit-tested without one. The
//! client's `RecordedEvent` and `EventData` cannot be built or inspected outside the
//! client crate, so the conversions go through two small plain structs,
//! [`WireEvent`] (what we send) and [`WireRecorded`] (what we read); the remaining
//! step to and from the client types is a field copy in [`to_event_data`] and
//! [`wire_recorded`].

use bytes::Bytes;
use kurrentdb::{CurrentRevision, StreamState};
use ledger_core::log::{
    AppendError, CurrentVersion, EventId, ExpectedVersion, NewEvent, Position, ReadError,
    RecordedEvent, StreamName,
};

/// Content type of events whose payload is JSON: KurrentDB's UI and projections show
/// and parse these as JSON.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of any other payload; shown as raw bytes.
pub const CONTENT_TYPE_BINARY: &str = "application/octet-stream";

/// Expected version → the client's stream state. Versions are 0-based revisions on
/// both sides, so `Exact(v)` is `StreamRevision(v)` with no offset.
pub fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::Exact(v) => StreamState::StreamRevision(v),
    }
}

/// The client's stream state → expected version. `StreamExists` has no counterpart
/// (the ledger never asks for "any version but the stream must exist"), so it is None.
pub fn expected_version(state: StreamState) -> Option<ExpectedVersion> {
    match state {
        StreamState::Any => Some(ExpectedVersion::Any),
        StreamState::NoStream => Some(ExpectedVersion::NoStream),
        StreamState::StreamRevision(v) => Some(ExpectedVersion::Exact(v)),
        StreamState::StreamExists => None,
    }
}

/// The server's current revision → the contract's current version.
pub fn current_version(current: CurrentRevision) -> CurrentVersion {
    match current {
        CurrentRevision::Current(v) => CurrentVersion(Some(v)),
        CurrentRevision::NoStream => CurrentVersion(None),
    }
}

/// A contract version → the server's current revision.
pub fn current_revision(current: CurrentVersion) -> CurrentRevision {
    match current.0 {
        Some(v) => CurrentRevision::Current(v),
        None => CurrentRevision::NoStream,
    }
}

/// `$all` position → ours. Both are (commit, prepare) ordered lexicographically, so the
/// mapping is the identity and preserves order.
pub fn position(p: kurrentdb::Position) -> Position {
    Position::new(p.commit, p.prepare)
}

/// Ours → `$all` position, to resume a read or a subscription at a checkpoint.
pub fn client_position(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit(),
        prepare: p.prepare(),
    }
}

/// An event as it goes over the wire: the plain fields of the client's `EventData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireEvent {
    pub id: uuid::Uuid,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    /// JSON when the payload parses as JSON and re-serialises byte for byte (always the
    /// case for ledger events); the bytes are stored unchanged either way.
    pub json: bool,
}

impl WireEvent {
    pub fn content_type(&self) -> &'static str {
        if self.json {
            CONTENT_TYPE_JSON
        } else {
            CONTENT_TYPE_BINARY
        }
    }
}

/// The payload as a JSON value that serialises to exactly these bytes, if it is JSON.
///
/// The client only sets `content-type: application/json` through `EventData::json`,
/// which serialises a value; a `RawValue` serialises verbatim, and the byte-for-byte
/// check makes sure nothing (whitespace, escapes) is normalised on the way.
pub fn json_payload(data: &[u8]) -> Option<Box<serde_json::value::RawValue>> {
    let text = std::str::from_utf8(data).ok()?;
    let raw = serde_json::value::RawValue::from_string(text.to_owned()).ok()?;
    let again = serde_json::to_vec(&raw).ok()?;
    (again == data).then_some(raw)
}

/// Our event → the wire form. The event id becomes KurrentDB's event id unchanged, so
/// the server's de-duplication works on the same ids as ours.
pub fn wire_event(e: &NewEvent) -> WireEvent {
    WireEvent {
        id: e.id.0,
        event_type: e.event_type.clone(),
        data: Bytes::copy_from_slice(&e.data),
        metadata: Bytes::copy_from_slice(&e.metadata),
        json: json_payload(&e.data).is_some(),
    }
}

/// The wire form → the client's `EventData`.
pub fn to_event_data(w: WireEvent) -> kurrentdb::EventData {
    let base = if w.json {
        match json_payload(&w.data).map(|raw| kurrentdb::EventData::json(&w.event_type, &raw)) {
            Some(Ok(d)) => d,
            // Unreachable in practice (`json` was computed from these bytes); falling
            // back to binary keeps the bytes intact rather than failing the append.
            _ => kurrentdb::EventData::binary(&w.event_type, w.data.clone()),
        }
    } else {
        kurrentdb::EventData::binary(&w.event_type, w.data.clone())
    };
    base.id(w.id).metadata(w.metadata)
}

/// An event as read: the plain fields of the client's `RecordedEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRecorded {
    pub stream: String,
    pub revision: u64,
    pub id: uuid::Uuid,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    pub position: kurrentdb::Position,
}

/// The client's recorded event → the wire form (a field copy).
pub fn wire_recorded(e: &kurrentdb::RecordedEvent) -> WireRecorded {
    WireRecorded {
        stream: e.stream_id().to_owned(),
        revision: e.revision,
        id: e.id,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.custom_metadata.clone(),
        position: e.position,
    }
}

/// A stream the ledger never sees: KurrentDB's own (`$`-prefixed), or one that only
/// holds this backend's event-id claims.
pub fn is_hidden_stream(stream: &str) -> bool {
    stream.starts_with('$') || stream.starts_with(super::claims::CLAIM_STREAM_PREFIX)
}

/// A system event type (`$metadata`, `$>` links, `$streamDeleted`, ...). Ledger types
/// cannot start with `$` (the contract's type check forbids it).
pub fn is_system_type(event_type: &str) -> bool {
    event_type.starts_with('$')
}

/// Whether an event read from `$all` belongs to the ledger's view of the log.
pub fn is_ledger_event(e: &WireRecorded) -> bool {
    !is_hidden_stream(&e.stream) && !is_system_type(&e.event_type)
}

/// The wire form → our recorded event. Fails only for a stream name the contract
/// cannot represent (another application's data in the same database).
pub fn recorded_event(e: WireRecorded) -> Result<RecordedEvent, ReadError> {
    let stream = StreamName::new(&e.stream).map_err(|err| {
        ReadError::Corrupt(format!(
            "event {} at {} in stream {:?} is not a ledger event ({err}); \
             keep other applications' streams out of the ledger's database",
            e.id,
            position(e.position),
            e.stream
        ))
    })?;
    Ok(RecordedEvent {
        stream,
        version: e.revision,
        position: position(e.position),
        id: EventId(e.id),
        event_type: e.event_type,
        data: e.data.to_vec(),
        metadata: e.metadata.to_vec(),
    })
}

/// Our recorded event → the wire form (used to test round trips and by fakes).
pub fn wire_from_recorded(e: &RecordedEvent) -> WireRecorded {
    WireRecorded {
        stream: e.stream.as_str().to_owned(),
        revision: e.version,
        id: e.id.0,
        event_type: e.event_type.clone(),
        data: Bytes::copy_from_slice(&e.data),
        metadata: Bytes::copy_from_slice(&e.metadata),
        position: client_position(e.position),
    }
}

/// A client error during an append. `WrongExpectedVersion` is handled by the caller
/// (it may be a retry that already landed); everything here is "unavailable": whether
/// the append landed is unknown, and the caller retries with the same ids.
pub fn append_error(
    stream: &StreamName,
    expected: ExpectedVersion,
    e: kurrentdb::Error,
) -> AppendError {
    match e {
        kurrentdb::Error::WrongExpectedVersion { current, .. } => {
            AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                current: current_version(current),
            }
        }
        other => AppendError::Unavailable(describe(&other)),
    }
}

/// A client error during a read. A missing stream is not an error for the contract
/// (it reads as empty) and is handled before this.
pub fn read_error(e: kurrentdb::Error) -> ReadError {
    ReadError::Unavailable(describe(&e))
}

/// Errors after which retrying the same request (after a pause) can succeed: the
/// connection, the leader or the server is temporarily away.
pub fn is_transient(e: &kurrentdb::Error) -> bool {
    use kurrentdb::Error as E;
    match e {
        E::ServerError(_)
        | E::NotLeaderException(_)
        | E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded => true,
        E::Grpc { code, .. } => matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
                | tonic::Code::ResourceExhausted
                | tonic::Code::Unknown
        ),
        _ => false,
    }
}

/// One line saying what went wrong with the cluster and what the operator can do.
pub fn describe(e: &kurrentdb::Error) -> String {
    use kurrentdb::Error as E;
    match e {
        E::AccessDenied => "KurrentDB denied access: the connection string's user needs read and \
                            write on the ledger's streams and read on $all (see docs/operations.md)"
            .to_owned(),
        E::NotLeaderException(leader) => format!(
            "KurrentDB node is not the leader (leader is {}:{}); the client reconnects to it, retry",
            leader.host, leader.port
        ),
        E::ResourceDeleted => "a ledger stream was deleted or tombstoned in KurrentDB; \
                               ledger streams must never be deleted — restore from a backup"
            .to_owned(),
        E::UnsupportedFeature => "the KurrentDB server does not support this operation; \
                                  upgrade the cluster (see docs/operations.md)"
            .to_owned(),
        E::DeadlineExceeded => "KurrentDB did not answer in time; retry with the same event ids".to_owned(),
        other => format!("KurrentDB: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("valid name")
    }

    fn new_event(data: &[u8]) -> NewEvent {
        NewEvent {
            id: EventId::new_random(),
            event_type: "HoursDeposited.v1".into(),
            data: data.to_vec(),
            metadata: br#"{"schema":1,"prev_hash":"00"}"#.to_vec(),
        }
    }

    #[test]
    fn expected_versions_map_to_stream_states_and_back() {
        let cases = [
            (ExpectedVersion::Any, StreamState::Any),
            (ExpectedVersion::NoStream, StreamState::NoStream),
            (ExpectedVersion::Exact(0), StreamState::StreamRevision(0)),
            (ExpectedVersion::Exact(41), StreamState::StreamRevision(41)),
            (
                ExpectedVersion::Exact(u64::MAX - 1),
                StreamState::StreamRevision(u64::MAX - 1),
            ),
        ];
        for (ours, theirs) in cases {
            assert_eq!(stream_state(ours), theirs);
            assert_eq!(expected_version(theirs), Some(ours));
        }
        assert_eq!(expected_version(StreamState::StreamExists), None);
    }

    #[test]
    fn current_revisions_map_both_ways() {
        for (theirs, ours) in [
            (CurrentRevision::NoStream, CurrentVersion(None)),
            (CurrentRevision::Current(0), CurrentVersion(Some(0))),
            (CurrentRevision::Current(7), CurrentVersion(Some(7))),
        ] {
            assert_eq!(current_version(theirs), ours);
            assert_eq!(current_revision(ours), theirs);
        }
    }

    #[test]
    fn positions_map_both_ways_and_keep_order() {
        let raw = [
            (0, 0),
            (0, 5),
            (10, 3),
            (10, 10),
            (11, 0),
            (u64::MAX, u64::MAX),
        ];
        let theirs: Vec<kurrentdb::Position> = raw
            .iter()
            .map(|&(commit, prepare)| kurrentdb::Position { commit, prepare })
            .collect();
        let ours: Vec<Position> = theirs.iter().copied().map(position).collect();
        for (t, o) in theirs.iter().zip(&ours) {
            assert_eq!((o.commit(), o.prepare()), (t.commit, t.prepare));
            assert_eq!(client_position(*o), *t);
        }
        for i in 0..theirs.len() {
            for j in 0..theirs.len() {
                assert_eq!(
                    theirs[i].cmp(&theirs[j]),
                    ours[i].cmp(&ours[j]),
                    "{i} vs {j}"
                );
            }
        }
    }

    #[test]
    fn json_payloads_are_stored_as_json_byte_for_byte() {
        for data in [
            &br#"{"account":"acc-1","hours":"1.5"}"#[..],
            br#"{ "spaced" : [1, 2.50, "\u00e9"] }"#,
            b"0",
            b"\"text\"",
            br#"{"nested":{"a":null,"b":true}}"#,
        ] {
            let w = wire_event(&new_event(data));
            assert!(w.json, "{:?} is JSON", String::from_utf8_lossy(data));
            assert_eq!(w.content_type(), CONTENT_TYPE_JSON);
            assert_eq!(&w.data[..], data, "bytes unchanged");
            let raw = json_payload(data).expect("json");
            assert_eq!(serde_json::to_vec(&raw).expect("serialise"), data);
        }
    }

    #[test]
    fn other_payloads_are_stored_as_binary_unchanged() {
        for data in [
            &b"a"[..],
            b"",
            b"not json",
            b"{\"open\":",
            b" 1",
            b"1 ",
            &[0xff, 0x00],
        ] {
            let w = wire_event(&new_event(data));
            assert!(!w.json, "{:?} is not stored as JSON", data);
            assert_eq!(w.content_type(), CONTENT_TYPE_BINARY);
            assert_eq!(&w.data[..], data);
        }
    }

    /// A ledger writing binary payloads (`PayloadEncoding::Binary`) stores them on
    /// KurrentDB as binary content, bytes untouched, and reads them back as written:
    /// the per-stream hash is over those bytes.
    #[test]
    fn a_binary_ledger_payload_goes_over_as_binary_and_comes_back_unchanged() {
        use ledger_core::domain::account::AccountId;
        use ledger_core::domain::events::{
            is_binary_payload, AccountClosed, LedgerEvent, PayloadEncoding,
        };
        use ledger_core::domain::ids::Note;
        // Given a ledger event encoded as a binary payload
        let event = LedgerEvent::AccountClosed(AccountClosed {
            account: AccountId::new("v-1").expect("valid id"),
            reason: Note::new("moved away").expect("valid note"),
            closed_at: "2026-11-20T12:00:00Z".parse().expect("an RFC 3339 instant"),
        });
        let data = event.encode_as(PayloadEncoding::Binary);
        assert!(is_binary_payload(&data));
        let mut e = new_event(&data);
        e.event_type = event.event_type().into();
        // When it goes over the wire
        let w = wire_event(&e);
        // Then it is binary content with the bytes unchanged
        assert!(!w.json);
        assert_eq!(w.content_type(), CONTENT_TYPE_BINARY);
        assert_eq!(&w.data[..], &data[..]);
        let shown = format!("{:?}", to_event_data(w.clone()));
        assert!(shown.contains(CONTENT_TYPE_BINARY), "{shown}");
        // And read back, it is the same bytes, which decode to the same event
        let ours = RecordedEvent {
            stream: name("account-v-1"),
            version: 0,
            position: Position::new(10, 10),
            id: e.id,
            event_type: e.event_type.clone(),
            data: w.data.to_vec(),
            metadata: w.metadata.to_vec(),
        };
        let back = recorded_event(wire_from_recorded(&ours)).expect("convert");
        assert_eq!(back.data, data);
        assert_eq!(
            LedgerEvent::decode(&back.event_type, &back.data).expect("decodes"),
            event
        );
    }

    #[test]
    fn event_ids_types_and_metadata_go_over_unchanged() {
        let e = new_event(br#"{"x":1}"#);
        let w = wire_event(&e);
        assert_eq!(w.id, e.id.0);
        assert_eq!(w.event_type, e.event_type);
        assert_eq!(&w.metadata[..], &e.metadata[..]);
        // The client's EventData is opaque; its Debug form shows what it will send.
        let shown = format!("{:?}", to_event_data(w.clone()));
        assert!(shown.contains(&e.id.0.to_string()), "{shown}");
        assert!(shown.contains(CONTENT_TYPE_JSON), "{shown}");
        assert!(shown.contains("HoursDeposited.v1"), "{shown}");
        let binary = wire_event(&new_event(b"raw"));
        let shown = format!("{:?}", to_event_data(binary));
        assert!(shown.contains(CONTENT_TYPE_BINARY), "{shown}");
    }

    #[test]
    fn recorded_events_map_both_ways() {
        let ours = RecordedEvent {
            stream: name("account-42"),
            version: 3,
            position: Position::new(1_000, 990),
            id: EventId::new_random(),
            event_type: "HoursSpent.v1".into(),
            data: br#"{"hours":"2"}"#.to_vec(),
            metadata: br#"{"prev_hash":"ab"}"#.to_vec(),
        };
        let wire = wire_from_recorded(&ours);
        assert_eq!(wire.stream, "account-42");
        assert_eq!(wire.revision, 3);
        assert_eq!(
            wire.position,
            kurrentdb::Position {
                commit: 1_000,
                prepare: 990
            }
        );
        assert_eq!(recorded_event(wire).expect("convert"), ours);
    }

    #[test]
    fn a_foreign_stream_name_reads_as_corrupt_with_a_reason() {
        let wire = WireRecorded {
            stream: "x".repeat(ledger_core::log::limits::STREAM_NAME_BYTES_MAX + 1),
            revision: 0,
            id: uuid::Uuid::new_v4(),
            event_type: "E".into(),
            data: Bytes::new(),
            metadata: Bytes::new(),
            position: kurrentdb::Position {
                commit: 1,
                prepare: 1,
            },
        };
        let err = recorded_event(wire).expect_err("too long");
        assert!(
            matches!(&err, ReadError::Corrupt(m) if m.contains("not a ledger event")),
            "{err}"
        );
    }

    #[test]
    fn system_and_claim_events_are_hidden() {
        let mut w = WireRecorded {
            stream: "account-1".into(),
            revision: 0,
            id: uuid::Uuid::new_v4(),
            event_type: "HoursDeposited.v1".into(),
            data: Bytes::new(),
            metadata: Bytes::new(),
            position: kurrentdb::Position {
                commit: 1,
                prepare: 1,
            },
        };
        assert!(is_ledger_event(&w));
        w.stream = "$stats-127.0.0.1:2113".into();
        assert!(!is_ledger_event(&w));
        w.stream = format!("{}abc", super::super::claims::CLAIM_STREAM_PREFIX);
        assert!(!is_ledger_event(&w));
        w.stream = "account-1".into();
        w.event_type = "$metadata".into();
        assert!(!is_ledger_event(&w));
    }

    #[test]
    fn wrong_expected_version_maps_with_the_current_version() {
        let s = name("account-9");
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(5),
            current: CurrentRevision::Current(0),
        };
        match append_error(&s, ExpectedVersion::Exact(5), e) {
            AppendError::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => {
                assert_eq!(stream, s);
                assert_eq!(expected, ExpectedVersion::Exact(5));
                assert_eq!(current, CurrentVersion(Some(0)));
            }
            other => panic!("{other:?}"),
        }
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(0),
            current: CurrentRevision::NoStream,
        };
        assert!(matches!(
            append_error(&s, ExpectedVersion::Exact(0), e),
            AppendError::WrongExpectedVersion {
                current: CurrentVersion(None),
                ..
            }
        ));
    }

    #[test]
    fn other_errors_are_unavailable_and_say_what_to_do() {
        let s = name("account-9");
        let cases = [
            (kurrentdb::Error::AccessDenied, "denied"),
            (kurrentdb::Error::ConnectionClosed, "KurrentDB"),
            (kurrentdb::Error::DeadlineExceeded, "retry"),
            (kurrentdb::Error::ResourceDeleted, "never be deleted"),
            (
                kurrentdb::Error::NotLeaderException(kurrentdb::Endpoint {
                    host: "node2".into(),
                    port: 2113,
                }),
                "node2:2113",
            ),
        ];
        for (e, says) in cases {
            let read = read_error(e.clone());
            assert!(
                matches!(&read, ReadError::Unavailable(m) if m.contains(says)),
                "{read}"
            );
            let append = append_error(&s, ExpectedVersion::Any, e);
            assert!(
                matches!(&append, AppendError::Unavailable(m) if m.contains(says)),
                "{append}"
            );
        }
    }

    #[test]
    fn transient_errors_are_told_apart_from_permanent_ones() {
        assert!(is_transient(&kurrentdb::Error::ConnectionClosed));
        assert!(is_transient(&kurrentdb::Error::DeadlineExceeded));
        assert!(is_transient(&kurrentdb::Error::ServerError(
            "unavailable".into()
        )));
        assert!(is_transient(&kurrentdb::Error::NotLeaderException(
            kurrentdb::Endpoint {
                host: "n".into(),
                port: 1
            }
        )));
        assert!(is_transient(&kurrentdb::Error::Grpc {
            code: tonic::Code::Unavailable,
            message: String::new()
        }));
        assert!(!is_transient(&kurrentdb::Error::AccessDenied));
        assert!(!is_transient(&kurrentdb::Error::ResourceDeleted));
        assert!(!is_transient(&kurrentdb::Error::Grpc {
            code: tonic::Code::InvalidArgument,
            message: String::new()
        }));
    }
}

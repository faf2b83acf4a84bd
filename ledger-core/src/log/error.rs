//! Errors of the event-log contract. Every variant says what happened and what the
//! caller can do about it.

use super::{CurrentVersion, EventId, ExpectedVersion, StreamName};

/// An append or read went over one of the named limits in [`super::limits`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{limit} exceeded: {value} > {max}; split the request or shrink the payload")]
pub struct LimitExceeded {
    /// The name of the limit, as in `ledger_core::log::limits` (lower case).
    pub limit: &'static str,
    pub value: u64,
    pub max: u64,
}

impl LimitExceeded {
    /// Check `value <= max`, naming the limit on failure.
    pub fn check(limit: &'static str, value: usize, max: usize) -> Result<(), LimitExceeded> {
        if value > max {
            Err(LimitExceeded {
                limit,
                value: value as u64,
                max: max as u64,
            })
        } else {
            Ok(())
        }
    }
}

/// The request is malformed in a way no retry can fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("stream name is empty")]
    StreamNameEmpty,
    #[error("stream name is {bytes} bytes; at most {max} are allowed")]
    StreamNameTooLong { bytes: usize, max: usize },
    #[error("stream name {name:?} starts with '$' or holds a control character")]
    StreamNameCharacters { name: String },
    #[error("event type is {bytes} bytes; it must be 1 to {max}")]
    EventTypeLength { bytes: usize, max: usize },
    #[error("event type {event_type:?} may hold only ASCII letters, digits, '.', '-' and '_'")]
    EventTypeCharacters { event_type: String },
    #[error("an append must hold at least one event")]
    NoEvents,
    #[error("event id {id} appears twice in one append; every event needs its own id")]
    DuplicateIdInAppend { id: EventId },
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Optimistic concurrency: someone else appended first. Re-read the stream,
    /// decide again, and append with the new version.
    #[error("wrong expected version for stream {stream}: expected {expected}, current {current}")]
    WrongExpectedVersion {
        stream: StreamName,
        expected: ExpectedVersion,
        current: CurrentVersion,
    },
    /// An event id is already in the log with different content, or the append mixes
    /// ids already written with new ones. Retries must resend exactly the original
    /// append; a new event needs a new id.
    #[error("event id {id} is already in the log with different content or in a different append; use a new id for a new event")]
    EventIdReused { id: EventId },
    #[error(transparent)]
    LimitExceeded(#[from] LimitExceeded),
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The log could not make the append durable (I/O failure, closed, unreachable).
    /// Whether the append landed is unknown: retry it with the same event ids.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    LimitExceeded(#[from] LimitExceeded),
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// The read position is not one this log handed out.
    #[error("position {0} is not in this log")]
    UnknownPosition(String),
    /// Stored data failed a check; the operator must restore or repair. Nothing was
    /// returned past the damage.
    #[error("event log corrupt: {0}")]
    Corrupt(String),
    #[error("event log unavailable: {0}")]
    Unavailable(String),
}

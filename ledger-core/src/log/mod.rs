//! The event log: the only ground truth of the ledger.
//!
//! [`EventLog`] is the contract every backend implements. It is shaped after what a
//! single-stream-atomic event store (KurrentDB) offers, so the embedded log and a
//! cluster are interchangeable:
//! - `append` is atomic per call and per stream, guarded by an [`ExpectedVersion`];
//! - every event carries a client-chosen [`EventId`]; re-appending the same ids with
//!   the same content returns the original [`AppendResult`] and never writes twice;
//! - `read_all` / `subscribe_all` deliver the whole log in one global order, by
//!   opaque, ordered [`Position`]s.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dense;
mod error;
#[cfg(feature = "conformance")]
pub mod faulty;
pub mod limits;
mod mark;
pub mod memory;
mod types;

use std::pin::Pin;

use futures::Stream;

pub use error::{AppendError, InvalidEvent, LimitExceeded, ReadError};
pub use mark::EventMark;
pub use types::{
    content_digest, AppendResult, ContentDigest, CurrentVersion, EventId, ExpectedVersion,
    NewEvent, Position, ReadFrom, RecordedEvent, StreamName,
};

/// A live subscription: the events after the start point, then every event appended
/// later, in global order, with no gap and no duplicate.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RecordedEvent, ReadError>> + Send>>;

#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Append `events` to `stream` atomically if the stream is at `expected`.
    ///
    /// If the first event's id is already in the log, this is a retry: when every event
    /// matches the original append (same stream, ids, types, data and metadata, in the
    /// same order) the original result is returned and nothing is written; otherwise
    /// [`AppendError::EventIdReused`].
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError>;

    /// Up to `max` events of `stream` with version >= `from_version`, oldest first.
    /// A stream that does not exist reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError>;

    /// Up to `max` events of the whole log after `from`, in global order.
    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError>;

    /// The position of the last event in the log, or None while it is empty.
    async fn head(&self) -> Result<Option<Position>, ReadError>;

    /// Catch up from `from`, then follow live appends.
    fn subscribe_all(&self, from: ReadFrom) -> EventStream;
}

/// Checks every backend makes before an append touches storage.
pub fn validate_append(stream: &StreamName, events: &[NewEvent]) -> Result<(), AppendError> {
    let _ = stream; // names are validated when a StreamName is built
    if events.is_empty() {
        return Err(InvalidEvent::NoEvents.into());
    }
    LimitExceeded::check(
        "events_per_append_max",
        events.len(),
        limits::EVENTS_PER_APPEND_MAX,
    )?;
    let mut bytes = 0usize;
    for e in events {
        e.validate_type()?;
        LimitExceeded::check(
            "event_data_bytes_max",
            e.data.len(),
            limits::EVENT_DATA_BYTES_MAX,
        )?;
        LimitExceeded::check(
            "event_metadata_bytes_max",
            e.metadata.len(),
            limits::EVENT_METADATA_BYTES_MAX,
        )?;
        bytes += e.data.len() + e.metadata.len() + e.event_type.len() + stream.as_str().len();
    }
    LimitExceeded::check("append_bytes_max", bytes, limits::APPEND_BYTES_MAX)?;
    if events.len() > 1 {
        let mut ids: Vec<&EventId> = events.iter().map(|e| &e.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(InvalidEvent::DuplicateIdInAppend { id: *w[0] }.into());
        }
    }
    Ok(())
}

/// Check a page size against [`limits::READ_EVENTS_MAX`].
pub fn validate_read(max: usize) -> Result<(), ReadError> {
    Ok(LimitExceeded::check(
        "read_events_max",
        max,
        limits::READ_EVENTS_MAX,
    )?)
}

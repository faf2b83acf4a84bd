//! [`EventMark`]: one event named by what identifies it in any log.

use super::{EventId, EventLog, Position, ReadError, RecordedEvent, StreamName};

/// One event, named by its position and by what names it in any log: its id, stream
/// and version. A position alone is a store's own coordinate: a log restored from a
/// backup of another history, or another backend, can hold some other event there. So
/// a mark kept on disk (the receipts catch-up's, the projection snapshot's checkpoint)
/// is trusted only after [`EventMark::read_from`] finds the very event it names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventMark {
    pub position: Position,
    pub id: EventId,
    pub stream: StreamName,
    pub version: u64,
}

impl EventMark {
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            position: event.position,
            id: event.id,
            stream: event.stream.clone(),
            version: event.version,
        }
    }

    /// True if `event` is the event this mark names (same position, id, stream and
    /// version).
    pub fn names(&self, event: &RecordedEvent) -> bool {
        event.position == self.position
            && event.id == self.id
            && event.stream == self.stream
            && event.version == self.version
    }

    /// What `log` holds at this mark's stream and version, if anything: a read every
    /// backend answers, and a stream read reports the event's global position (the
    /// conformance suite checks it), so the log holds the marked event at the marked
    /// position exactly when [`EventMark::names`] the result. Option not taken: reading
    /// at the position itself, which `EventLog` cannot do on logs whose positions are
    /// not dense (KurrentDB's are byte offsets).
    pub async fn read_from(&self, log: &dyn EventLog) -> Result<Option<RecordedEvent>, ReadError> {
        Ok(log
            .read_stream(&self.stream, self.version, 1)
            .await?
            .into_iter()
            .next())
    }
}

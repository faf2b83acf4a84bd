//! A [`MemoryLog`] with faults a test turns on: the failures the ledger must survive
//! without a crash to stage (a receipt lost between its transaction and its append, a
//! subscription that stops delivering). Test support, behind the `conformance` feature.

use futures::StreamExt;

use super::memory::MemoryLog;
use super::{
    AppendError, AppendResult, EventLog, EventStream, ExpectedVersion, NewEvent, Position,
    ReadError, ReadFrom, RecordedEvent, StreamName,
};

/// [`MemoryLog`] `log`, but for the faults set.
#[derive(Clone, Default)]
pub struct FaultyLog {
    pub log: MemoryLog,
    /// An append holding an event of this type fails with `Unavailable`, as a crash
    /// between a transaction and its receipt would (`"HoursReceived.v1"`).
    pub loses_appends_of: Option<&'static str>,
    /// A subscription delivers this many events, then nothing more: read models stuck
    /// behind the head, as behind a stalled worker.
    pub delivers_at_most: Option<usize>,
}

#[async_trait::async_trait]
impl EventLog for FaultyLog {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        if let Some(lost) = self.loses_appends_of {
            if events.iter().any(|e| e.event_type == lost) {
                return Err(AppendError::Unavailable(format!(
                    "simulated crash before a {lost} append"
                )));
            }
        }
        self.log.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.log.read_stream(stream, from_version, max).await
    }

    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        self.log.read_all(from, max).await
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        self.log.head().await
    }

    fn subscribe_all(&self, from: ReadFrom) -> EventStream {
        let live = self.log.subscribe_all(from);
        match self.delivers_at_most {
            Some(n) => Box::pin(live.take(n).chain(futures::stream::pending())),
            None => live,
        }
    }
}

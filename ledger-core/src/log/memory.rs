//! `MemoryLog`: the event-log contract in the fewest lines, held in memory.
//!
//! It is the reference the other backends are measured against (the proptest model of
//! the embedded log) and a fast log for domain tests. It is not durable and not meant
//! for production: nothing survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::dense::{follow, retry_result, start_sequence};

use super::{
    validate_append, validate_read, AppendError, AppendResult, CurrentVersion, EventId, EventLog,
    EventStream, ExpectedVersion, NewEvent, Position, ReadError, ReadFrom, RecordedEvent,
    StreamName,
};

#[derive(Default)]
struct Inner {
    events: Vec<RecordedEvent>,
    streams: HashMap<StreamName, Vec<u64>>,
    ids: HashMap<EventId, u64>,
}

/// An in-memory event log. Cheap to clone: clones share the same log.
#[derive(Clone)]
pub struct MemoryLog {
    inner: Arc<Mutex<Inner>>,
    head_tx: Arc<watch::Sender<u64>>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    pub fn new() -> Self {
        let (head_tx, _) = watch::channel(0);
        Self {
            inner: Arc::default(),
            head_tx: Arc::new(head_tx),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock already failed a test; keep going for the rest.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Synchronous append, the body of [`EventLog::append`].
    pub fn append_now(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        validate_append(stream, &events)?;
        let mut inner = self.lock();
        if let Some(result) = retry_result(&inner.ids, &inner.events, stream, &events)? {
            return Ok(result);
        }
        let current = inner.streams.get(stream).map(|v| v.len() as u64 - 1);
        if !expected.is_satisfied_by(current) {
            return Err(AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                current: CurrentVersion(current),
            });
        }
        let mut version = current.map_or(0, |v| v + 1);
        let mut positions = Vec::with_capacity(events.len());
        for e in events {
            let seq = inner.events.len() as u64;
            inner.ids.insert(e.id, seq);
            inner.streams.entry(stream.clone()).or_default().push(seq);
            inner.events.push(RecordedEvent {
                stream: stream.clone(),
                version,
                position: Position::from_sequence(seq),
                id: e.id,
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
            });
            positions.push(Position::from_sequence(seq));
            version += 1;
        }
        let head = inner.events.len() as u64;
        drop(inner);
        self.head_tx.send_replace(head);
        Ok(AppendResult {
            stream_version: version - 1,
            positions,
        })
    }

    fn read_all_now(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        validate_read(max)?;
        let inner = self.lock();
        let start = start_sequence(from, inner.events.len() as u64)?;
        Ok(inner
            .events
            .iter()
            .skip(start as usize)
            .take(max)
            .cloned()
            .collect())
    }
}

#[async_trait::async_trait]
impl EventLog for MemoryLog {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        self.append_now(stream, expected, events)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        validate_read(max)?;
        let inner = self.lock();
        let Some(seqs) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(seqs
            .iter()
            .skip(from_version.min(usize::MAX as u64) as usize)
            .take(max)
            .map(|&s| inner.events[s as usize].clone())
            .collect())
    }

    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        self.read_all_now(from, max)
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        let n = self.lock().events.len() as u64;
        Ok(n.checked_sub(1).map(Position::from_sequence))
    }

    fn subscribe_all(&self, from: ReadFrom) -> EventStream {
        let log = self.clone();
        let rx = self.head_tx.subscribe();
        follow(from, rx, move |from, max| log.read_all_now(from, max))
    }
}

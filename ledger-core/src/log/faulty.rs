//! A log with faults a test turns on: the failures the ledger must survive without a
//! crash to stage (a receipt lost between its transaction and its append, a
//! subscription that stops delivering, a log briefly away or hanging), and a record of
//! where each subscription started. Test support, behind the `conformance` feature.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::{
    AppendError, AppendResult, EventLog, EventStream, ExpectedVersion, NewEvent, Position,
    ReadError, ReadFrom, RecordedEvent, StreamName,
};

/// `inner`, but for the faults set. Clones share the counters and the record.
#[derive(Clone)]
pub struct FaultyLog {
    inner: Arc<dyn EventLog>,
    /// An append holding an event of this type fails with `Unavailable`, as a crash
    /// between a transaction and its receipt would (`"HoursReceived.v1"`).
    loses_appends_of: Option<&'static str>,
    /// A subscription delivers this many events, then nothing more: read models stuck
    /// behind the head, as behind a stalled worker.
    delivers_at_most: Option<usize>,
    /// Every append waits this long before it reaches `inner` (a slow store: the
    /// window between a decision and its append).
    delays_appends: Option<std::time::Duration>,
    /// An append holding an event of this type panics: a bug in the path of one
    /// command, which must not take other commands down with it.
    panics_on_appends_of: Option<&'static str>,
    /// The next this many stream reads answer `Unavailable` (a log briefly away).
    pub failing_stream_reads: Arc<AtomicUsize>,
    /// The next this many stream reads never answer (a remote log that hangs).
    pub hanging_stream_reads: Arc<AtomicUsize>,
    subscribed: Arc<Mutex<Vec<ReadFrom>>>,
}

impl FaultyLog {
    /// `inner` with no fault on yet.
    pub fn over(inner: impl EventLog) -> Self {
        Self {
            inner: Arc::new(inner),
            loses_appends_of: None,
            delivers_at_most: None,
            delays_appends: None,
            panics_on_appends_of: None,
            failing_stream_reads: Arc::default(),
            hanging_stream_reads: Arc::default(),
            subscribed: Arc::default(),
        }
    }

    /// Appends holding an event of `event_type` fail with `Unavailable`.
    pub fn losing_appends_of(mut self, event_type: &'static str) -> Self {
        self.loses_appends_of = Some(event_type);
        self
    }

    /// Appends holding an event of `event_type` panic.
    pub fn panicking_on_appends_of(mut self, event_type: &'static str) -> Self {
        self.panics_on_appends_of = Some(event_type);
        self
    }

    /// Every append waits `delay` first.
    pub fn delaying_appends(mut self, delay: std::time::Duration) -> Self {
        self.delays_appends = Some(delay);
        self
    }

    /// Subscriptions deliver `n` events, then nothing more.
    pub fn delivering_at_most(mut self, n: usize) -> Self {
        self.delivers_at_most = Some(n);
        self
    }

    /// Where each subscription so far started, in order.
    pub fn subscriptions(&self) -> Vec<ReadFrom> {
        self.subscribed
            .lock()
            .expect("a test thread panicked while recording")
            .clone()
    }
}

/// Take one from `counter` if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
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
        if let Some(panics) = self.panics_on_appends_of {
            assert!(
                !events.iter().any(|e| e.event_type == panics),
                "played by the test: a {panics} append panics"
            );
        }
        if let Some(delay) = self.delays_appends {
            tokio::time::sleep(delay).await;
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        if take_one(&self.failing_stream_reads) {
            return Err(ReadError::Unavailable("played by the test".into()));
        }
        if take_one(&self.hanging_stream_reads) {
            std::future::pending::<()>().await;
        }
        self.inner.read_stream(stream, from_version, max).await
    }

    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        self.inner.read_all(from, max).await
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        self.inner.head().await
    }

    fn subscribe_all(&self, from: ReadFrom) -> EventStream {
        self.subscribed
            .lock()
            .expect("a test thread panicked while recording")
            .push(from);
        let live = self.inner.subscribe_all(from);
        match self.delivers_at_most {
            Some(n) => Box::pin(live.take(n).chain(futures::stream::pending())),
            None => live,
        }
    }
}

//! A staging log: the seeder's handler appends here and gets its answer at once; the
//! appends are forwarded to the durable log in exactly the order they were made, many
//! at a time, so the log's group commit shares one fsync among hundreds of them.
//!
//! Why: the seeder decides one command at a time (the order is what makes the log
//! deterministic), and one durable append at a time runs at one fsync per command
//! (0.1–4 ms depending on the disk and its load). Staging keeps the order and the
//! rules (the handler decides against staged state) while the disk works in groups.
//!
//! # Order
//! Each staged append is handed to the durable log by polling its `append` future once,
//! in staging order, before the next one is created. The embedded log enqueues an
//! append for its writer on that first poll (its queue holds `append_queue_depth_max`
//! = 4,096 requests, and at most [`INFLIGHT_APPENDS_MAX`] are outstanding, so the
//! enqueue never waits; the forwarder runs outside tokio's cooperative budget, which
//! could otherwise defer a ready enqueue), and its writer commits its queue in order. Each append's
//! positions are then checked against the ones staging handed out: a log that
//! reordered appends fails the seeding instead of producing a different log.
//!
//! # Reads
//! A stream reads as its durable events followed by its staged ones. Staged events are
//! dropped only after they are durable, and a read takes its snapshot of the staged
//! events *before* reading the durable log, so an event moving from one to the other
//! during a read is seen (once) in either place.
//!
//! # Memory
//! At most [`STAGED_EVENTS_MAX`] events wait in memory: appends beyond it wait for the
//! disk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::Either;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use ledger_core::log::{
    AppendError, AppendResult, CurrentVersion, EventLog, EventStream, ExpectedVersion, NewEvent,
    Position, ReadError, ReadFrom, RecordedEvent, StreamName,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Most appends forwarded and not yet acknowledged: well below the embedded log's
/// queue depth (4,096), so forwarding never waits for room in the queue.
pub const INFLIGHT_APPENDS_MAX: usize = 1024;
/// Most events staged and not yet durable: bounds memory (a ledger event is under a
/// kilobyte) however far the handler runs ahead of the disk.
pub const STAGED_EVENTS_MAX: usize = 50_000;

struct Staged {
    stream: StreamName,
    expected: ExpectedVersion,
    positions: Vec<Position>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct State {
    /// Staged, not yet durable events per stream, oldest first.
    pending: HashMap<StreamName, VecDeque<RecordedEvent>>,
    /// Last version of every stream written through staging or found durable.
    versions: HashMap<StreamName, u64>,
    /// The position the next staged event gets.
    next_sequence: u64,
    /// Set when forwarding failed: every later call fails with it.
    failed: Option<String>,
}

/// See the module documentation.
pub struct StagingLog {
    durable: Arc<dyn EventLog>,
    state: Arc<Mutex<State>>,
    room: Arc<Semaphore>,
    forward: mpsc::UnboundedSender<(Staged, Vec<NewEvent>)>,
    forwarder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StagingLog {
    /// Stage appends for `durable`, whose next position is `next_sequence`.
    pub fn new(durable: Arc<dyn EventLog>, next_sequence: u64) -> Self {
        let state = Arc::new(Mutex::new(State {
            next_sequence,
            ..State::default()
        }));
        let (forward, rx) = mpsc::unbounded_channel();
        // Unconstrained: tokio's cooperative budget would otherwise make a ready enqueue
        // return Pending now and then, and a later append could overtake it.
        let forwarder = tokio::spawn(tokio::task::unconstrained(forward_in_order(
            durable.clone(),
            state.clone(),
            rx,
        )));
        Self {
            durable,
            state,
            room: Arc::new(Semaphore::new(STAGED_EVENTS_MAX)),
            forward,
            forwarder: Mutex::new(Some(forwarder)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Wait until every staged append is durable (or forwarding failed).
    pub async fn flush(&self) -> Result<(), AppendError> {
        // Every permit back means nothing is staged.
        let all = self
            .room
            .acquire_many(STAGED_EVENTS_MAX as u32)
            .await
            .map_err(|_| AppendError::Unavailable("staging closed".into()))?;
        drop(all);
        match &self.lock().failed {
            Some(why) => Err(AppendError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    /// Flush, then stop forwarding.
    pub async fn finish(&self) -> Result<(), AppendError> {
        let flushed = self.flush().await;
        let task = self
            .forwarder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        flushed
    }

    async fn current_version(&self, stream: &StreamName) -> Result<Option<u64>, ReadError> {
        if let Some(v) = self.lock().versions.get(stream) {
            return Ok(Some(*v));
        }
        // Not written through staging: whatever the durable log holds.
        let mut from = 0;
        let mut last = None;
        loop {
            let page = self
                .durable
                .read_stream(stream, from, ledger_core::log::limits::READ_EVENTS_MAX)
                .await?;
            let Some(e) = page.last() else { break };
            last = Some(e.version);
            from = e.version + 1;
        }
        Ok(last)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // No code path panics while holding the lock with the state half changed.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

type Done = (Staged, Result<AppendResult, AppendError>);

/// Forward staged appends to `durable` in order, up to [`INFLIGHT_APPENDS_MAX`] at once.
async fn forward_in_order(
    durable: Arc<dyn EventLog>,
    state: Arc<Mutex<State>>,
    mut rx: mpsc::UnboundedReceiver<(Staged, Vec<NewEvent>)>,
) {
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    loop {
        let next = if !open {
            None
        } else if inflight.is_empty() {
            rx.recv().await.map(Some)
        } else if inflight.len() < INFLIGHT_APPENDS_MAX {
            tokio::select! {
                biased;
                s = rx.recv() => s.map(Some),
                done = inflight.next() => {
                    if let Some(done) = done {
                        settle(&state, done);
                    }
                    Some(None)
                }
            }
        } else {
            Some(None)
        };
        match next {
            Some(Some((staged, events))) => {
                let durable = durable.clone();
                let mut append = Box::pin(async move {
                    let result = durable
                        .append(&staged.stream, staged.expected, events)
                        .await;
                    (staged, result)
                });
                // The first poll hands the append to the log's writer queue, here, in
                // staging order (see the module documentation).
                match futures::poll!(append.as_mut()) {
                    std::task::Poll::Ready(done) => {
                        inflight.push_back(Either::Left(futures::future::ready(done)))
                    }
                    std::task::Poll::Pending => inflight.push_back(Either::Right(append)),
                }
            }
            Some(None) => {
                if inflight.len() >= INFLIGHT_APPENDS_MAX {
                    if let Some(done) = inflight.next().await {
                        settle(&state, done);
                    }
                }
            }
            None => {
                open = false;
                match inflight.next().await {
                    Some(done) => settle(&state, done),
                    None => return,
                }
            }
        }
    }
}

/// Record an acknowledged append: drop its staged events, or fail staging.
fn settle(state: &Mutex<State>, (staged, result): Done) {
    let mut st = lock(state);
    match result {
        Ok(r) if r.positions == staged.positions => {
            if let Some(q) = st.pending.get_mut(&staged.stream) {
                for _ in 0..staged.positions.len() {
                    q.pop_front();
                }
                if q.is_empty() {
                    st.pending.remove(&staged.stream);
                }
            }
        }
        Ok(r) => {
            st.failed.get_or_insert_with(|| {
                format!(
                    "the log put an append to {} at {:?}, staging expected {:?}: it reordered appends",
                    staged.stream, r.positions, staged.positions
                )
            });
        }
        Err(e) => {
            st.failed
                .get_or_insert_with(|| format!("forwarding to the durable log failed: {e}"));
        }
    }
    // The permit travels with `staged` and is released here.
}

#[async_trait::async_trait]
impl EventLog for StagingLog {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        ledger_core::log::validate_append(stream, &events)?;
        let permit = self
            .room
            .clone()
            .acquire_many_owned(events.len().min(STAGED_EVENTS_MAX) as u32)
            .await
            .map_err(|_| AppendError::Unavailable("staging closed".into()))?;
        let current = self
            .current_version(stream)
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        let mut st = self.lock();
        if let Some(why) = &st.failed {
            return Err(AppendError::Unavailable(why.clone()));
        }
        if !expected.is_satisfied_by(current) {
            return Err(AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                current: CurrentVersion(current),
            });
        }
        let first_version = current.map_or(0, |v| v + 1);
        let mut positions = Vec::with_capacity(events.len());
        let mut recorded = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let position = Position::from_sequence(st.next_sequence);
            st.next_sequence += 1;
            positions.push(position);
            recorded.push(RecordedEvent {
                stream: stream.clone(),
                version: first_version + i as u64,
                position,
                id: e.id,
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                metadata: e.metadata.clone(),
            });
        }
        let stream_version = first_version + events.len() as u64 - 1;
        st.versions.insert(stream.clone(), stream_version);
        st.pending
            .entry(stream.clone())
            .or_default()
            .extend(recorded);
        // Sent under the lock, so the forwarder sees appends in staging order.
        self.forward
            .send((
                Staged {
                    stream: stream.clone(),
                    expected,
                    positions: positions.clone(),
                    _permit: permit,
                },
                events,
            ))
            .map_err(|_| AppendError::Unavailable("staging stopped".into()))?;
        Ok(AppendResult {
            stream_version,
            positions,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        // Staged events first (see "Reads" in the module documentation).
        let staged: Vec<RecordedEvent> = self
            .lock()
            .pending
            .get(stream)
            .map(|q| {
                q.iter()
                    .filter(|e| e.version >= from_version)
                    .take(max)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut out = self.durable.read_stream(stream, from_version, max).await?;
        let next = out.last().map_or(from_version, |e| e.version + 1);
        out.extend(staged.into_iter().filter(|e| e.version >= next));
        out.truncate(max);
        Ok(out)
    }

    async fn read_all(&self, from: ReadFrom, max: usize) -> Result<Vec<RecordedEvent>, ReadError> {
        self.flush()
            .await
            .map_err(|e| ReadError::Unavailable(e.to_string()))?;
        self.durable.read_all(from, max).await
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        Ok(self
            .lock()
            .next_sequence
            .checked_sub(1)
            .map(Position::from_sequence))
    }

    fn subscribe_all(&self, from: ReadFrom) -> EventStream {
        self.durable.subscribe_all(from)
    }
}

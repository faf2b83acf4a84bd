//! The projection worker: load the snapshot, catch up from its checkpoint, follow the
//! live log, publish the applied checkpoint, snapshot every so many events or seconds.
//!
//! One worker applies events in global order under a write lock, a chunk at a time
//! ([`APPLY_CHUNK_EVENTS`]), so queries (read locks) interleave with catch-up.
//!
//! Snapshots do not stop applying. When one is due the worker clones the read models
//! (under a read lock, between two chunks, so state and checkpoint are one consistent
//! cut) and hands the copy to a blocking thread, which encodes, hashes, writes, fsyncs
//! and renames it while the worker goes on applying. At most one snapshot is in flight:
//! a due snapshot waits for the previous one, so files are renamed in checkpoint order
//! and never share the temporary file. The worker is held only for the clone
//! (`docs/benchmarks.md`: 0.64 s instead of 3.2 s at 3 M events, 15.8 s instead of
//! 40.8 s at a city's 30 M, on a busy 2-vCPU VM).
//!
//! Options not taken: encoding to bytes under the lock (a quarter to half the
//! transient memory of a clone, but 15–60 % slower, so a longer pause; measured in the
//! same bench); persistent (structurally shared) maps, which would make the copy free
//! but slow every fold and grow every entry; a second read model folded by a snapshot
//! thread, which would double the CPU of every event for a once-in-a-million-events
//! need. The price of the clone is memory: while a snapshot is written the state
//! exists twice.
//!
//! Failure policy: a read error of the subscription is retried (the log may be briefly
//! unavailable) from the checkpoint, after [`RESUBSCRIBE_DELAY`]; an event that does not
//! decode stops the worker (a newer writer's event; applying past it would make every
//! read model wrong), and queries then answer `NOT_CAUGHT_UP`. A snapshot that cannot
//! be read is ignored and the models are rebuilt from the log. A periodic snapshot
//! that cannot be written (a full disk) is logged at ERROR and tried again after
//! `snapshot_every`; the worker goes on ([`snapshot_failed`]). Only the final
//! snapshot's failure is returned by [`WorkerHandle::stop`].
//!
//! A snapshot that reads back is still only a claim about *some* log: before the worker
//! resumes on it (and before queries see it) [`check_restored`] asks the log whether it
//! holds, at the snapshot's checkpoint, the event the snapshot folded last. A log
//! restored from a backup of another history (docs/operations.md, "Restore") does not,
//! whether its head is before the checkpoint or beyond it; the snapshot is then
//! dropped and the models rebuilt from the start, with a WARN naming both events. If
//! the log is unavailable at start, or does not answer within
//! [`RESTORE_CHECK_WAIT_MAX`], the snapshot is held back (queries see empty models, as
//! during a rebuild) and the worker asks again every [`RESUBSCRIBE_DELAY`] before
//! resuming: dropping it instead would cost a full rebuild (minutes for a city) for a
//! log that is only briefly away. Any other read error drops it (asking again would
//! not cure corrupt data), and the rebuild's reads report the error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledger_core::app::DecodedEvents;
use ledger_core::log::{
    limits::READ_EVENTS_MAX, EventLog, Position, ReadError, ReadFrom, RecordedEvent,
};
use tokio::sync::{oneshot, watch};

use crate::anomaly::AnomalyNotes;
use crate::model::{ApplyError, CheckpointEvent, ReadModels};
use crate::snapshot::{self, SnapshotError};
use crate::stats::WorkerStats;
use crate::wait::Freshness;

/// Events applied per write-lock acquisition: large enough to amortise the lock and the
/// checkpoint broadcast, small enough that a query waits at most about a millisecond.
pub const APPLY_CHUNK_EVENTS: usize = 1024;
/// Default snapshot cadence in events: a restart then replays at most this many
/// (about a second of replay).
pub const SNAPSHOT_EVERY_EVENTS: u64 = 1_000_000;
/// Default snapshot cadence in time, for a quiet log.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(300);
/// Wait before resubscribing after a read error.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for the log to answer the check of a restored snapshot
/// ([`check_restored`]) before the snapshot is held back and asked about again: a
/// remote log that hangs instead of failing must not hang the server's start.
pub const RESTORE_CHECK_WAIT_MAX: Duration = Duration::from_secs(5);
/// Directory under the server's data directory that holds the snapshot.
pub const PROJECTIONS_DIR: &str = "projections";

#[derive(Clone, Debug)]
pub struct ProjectionConfig {
    /// Where snapshots live; None: no snapshots (tests, benchmarks).
    pub dir: Option<PathBuf>,
    pub snapshot_every_events: u64,
    pub snapshot_every: Duration,
    /// Called on the snapshot's writing thread before each periodic write: a test seam
    /// that plays a slow disk (None in production).
    pub before_snapshot_write: Option<SnapshotHook>,
    /// Events this process's handler appended, still decoded: the worker takes the one
    /// left for a record with the same id and payload bytes instead of decoding the
    /// payload again ([`DecodedEvents`]). None: every payload is decoded.
    pub decoded: Option<Arc<DecodedEvents>>,
}

/// See [`ProjectionConfig::before_snapshot_write`].
#[derive(Clone)]
pub struct SnapshotHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for SnapshotHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotHook")
    }
}

impl ProjectionConfig {
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            ..Self::default()
        }
    }
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            dir: None,
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
            snapshot_every: SNAPSHOT_EVERY,
            before_snapshot_write: None,
            decoded: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("projection stopped: {0}")]
    Apply(#[from] ApplyError),
    #[error("reading the log failed: {0}")]
    Read(#[from] ReadError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("a projection task failed: {0}")]
    Task(String),
}

/// The read models as queries see them, and their freshness.
#[derive(Clone, Debug)]
pub struct Projections {
    models: Arc<RwLock<ReadModels>>,
    freshness: Freshness,
    stats: Arc<WorkerStats>,
    /// Why the worker stopped, once it has stopped on an error.
    failed: watch::Receiver<Option<String>>,
}

impl Projections {
    /// Read access. A panic while applying (a broken invariant) poisons the lock; the
    /// state is still the last fully applied chunk's or a partial one, and the worker
    /// has stopped, so queries keep answering what is there with its checkpoint.
    pub fn read(&self) -> RwLockReadGuard<'_, ReadModels> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// Time since the worker last wrote a snapshot, or since it started if it has not
    /// (see [`crate::stats`]).
    pub fn snapshot_age(&self) -> Duration {
        self.stats.snapshot_age()
    }

    /// Resolves with the worker's error once it has stopped on one (an event it cannot
    /// fold): from then on the read models stay at their checkpoint, so a server can
    /// tell health checks that queries are not being served fresh. Never resolves
    /// while the worker runs, nor after a clean stop.
    pub async fn failure(&self) -> String {
        let mut failed = self.failed.clone();
        loop {
            if let Some(why) = failed.borrow_and_update().clone() {
                return why;
            }
            if failed.changed().await.is_err() {
                // The worker ended without an error: nothing will be reported.
                return std::future::pending().await;
            }
        }
    }

    /// Events of the log folded with a [`crate::FoldAnomaly`] up to the checkpoint
    /// (kept in the read models, so a snapshot carries it).
    pub fn fold_anomalies(&self) -> u64 {
        self.read().fold_anomalies
    }
}

/// The running worker.
pub struct WorkerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl WorkerHandle {
    /// Stop the worker, write a final snapshot if configured, and wait for it.
    pub async fn stop(mut self) -> Result<(), RuntimeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))?
    }
}

/// What a snapshot's writing thread reports: the file's size and the checkpoint it holds.
type Written = Result<(u64, Option<Position>), SnapshotError>;

/// The one snapshot being written off the worker, if any.
struct InFlight {
    task: tokio::task::JoinHandle<Written>,
    started: Instant,
}

/// Start a snapshot of `models` off the worker: clone under a read lock (the only time
/// the worker is held), write the copy on a blocking thread.
fn begin_snapshot(dir: &Path, models: &RwLock<ReadModels>, hook: Option<SnapshotHook>) -> InFlight {
    let started = Instant::now();
    let clone = || {
        models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };
    // The clone holds this thread for seconds at a city's size (15.8 s measured at 30 M
    // events): on a multi-thread runtime tell tokio, so the tasks queued behind the
    // worker on this thread move to another one. `block_in_place` panics on a
    // current-thread runtime (tests, embedders), where there is no other thread anyway.
    let copy = if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(clone)
    } else {
        clone()
    };
    let held = started.elapsed();
    let dir = dir.to_owned();
    let task = tokio::task::spawn_blocking(move || {
        if let Some(h) = hook {
            (h.0)();
        }
        let bytes = snapshot::write(&dir, &copy)?;
        Ok((bytes, copy.checkpoint))
    });
    tracing::debug!(
        held_ms = held.as_millis() as u64,
        "projection snapshot copied; writing it off the worker"
    );
    InFlight { task, started }
}

impl InFlight {
    /// Wait for the write to end and account for it: the one place a snapshot's task
    /// is joined, whether periodic (in flight beside the worker, or the last one at
    /// stop) or final. The caller decides what a failure means: a periodic one is
    /// logged, a final one returned. Cancel-safe: dropped before the task ends, it
    /// leaves the task running, to be waited for again.
    async fn finish(&mut self, stats: &WorkerStats) -> Result<(), RuntimeError> {
        let (bytes, cp) = (&mut self.task)
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))??;
        stats.snapshot_written();
        tracing::info!(bytes, checkpoint = ?cp, ms = self.started.elapsed().as_millis() as u64, "projection snapshot written");
        Ok(())
    }
}

/// Finish the snapshot in flight, if any (never completes without one): for
/// `select!`, where the worker goes on applying meanwhile.
async fn finish_in_flight(
    in_flight: &mut Option<InFlight>,
    stats: &WorkerStats,
) -> Result<(), RuntimeError> {
    match in_flight {
        Some(f) => f.finish(stats).await,
        None => std::future::pending().await,
    }
}

/// Say that a periodic snapshot failed, and that nothing else did. A snapshot only
/// shortens the next start's replay; the log is the truth and the read models in
/// memory are whole, so the worker goes on applying and tries again later. Stopping
/// the worker instead (what a failed snapshot did until the fifteenth session) froze
/// every query at that checkpoint for the rest of the process's life, for a full
/// disk that the operator may free a minute later.
fn snapshot_failed(e: &RuntimeError, every: Duration) {
    tracing::error!(
        "projection snapshot failed: {e}; the read models go on from the log and the next snapshot is tried in {every:?} (the previous snapshot file, if any, is kept; a restart replays the events after it)"
    );
}

/// Write a snapshot and wait for it, under a read lock: for the final snapshot, when
/// nothing is left to apply (no copy needed).
async fn write_snapshot(
    dir: &Path,
    models: &Arc<RwLock<ReadModels>>,
    stats: &WorkerStats,
) -> Result<(), RuntimeError> {
    let (dir, models) = (dir.to_owned(), models.clone());
    let started = Instant::now();
    let task = tokio::task::spawn_blocking(move || {
        let g = models.read().unwrap_or_else(PoisonError::into_inner);
        snapshot::write(&dir, &g).map(|b| (b, g.checkpoint))
    });
    InFlight { task, started }.finish(stats).await
}

/// A restored snapshot whose checkpoint the log does not hold: the snapshot's last
/// event, and what the log holds at that event's stream and version (None: nothing).
#[derive(Debug)]
struct Foreign {
    checkpoint: Position,
    snapshot: CheckpointEvent,
    found: Option<RecordedEvent>,
}

impl Foreign {
    fn warn(&self) {
        let (found, found_at) = match &self.found {
            Some(e) => (e.id.to_string(), e.position.to_string()),
            None => ("none".to_owned(), "none".to_owned()),
        };
        tracing::warn!(
            checkpoint = %self.checkpoint,
            snapshot_event = %self.snapshot.id,
            stream = %self.snapshot.stream,
            version = self.snapshot.version,
            log_event = %found,
            log_event_position = %found_at,
            "the event log does not hold the read models' last event at their checkpoint (restored from a backup of another history?); rebuilding them from the start"
        );
    }
}

/// Whether `log` holds, at the checkpoint of `models` (a snapshot just read), the very
/// event the snapshot folded last: Ok(None) if it does or there is no checkpoint. The
/// same check as the receipts catch-up's
/// ([`ledger_core::log::EventMark::read_from`] says why it reads by stream and
/// version).
///
/// What it does not prove: that every event *before* the checkpoint is the same. A log
/// with this very event at this very position and some other history before it would
/// pass; the embedded log's record hash chain could tell, but no backend-neutral read
/// exposes one.
async fn check_restored(
    log: &dyn EventLog,
    models: &ReadModels,
) -> Result<Option<Foreign>, ReadError> {
    let (Some(checkpoint), Some(snapshot)) = (models.checkpoint, &models.checkpoint_event) else {
        // `snapshot::read` refuses one without the other: nothing applied, nothing to check.
        assert!(
            models.checkpoint.is_none(),
            "a snapshot with a checkpoint names the event at it"
        );
        return Ok(None);
    };
    // No mark: a stream name no log holds (a payload this build did not write).
    let mark = snapshot.mark(checkpoint);
    let found = match &mark {
        Some(mark) => mark.read_from(log).await?,
        None => None,
    };
    if let (Some(mark), Some(event)) = (&mark, &found) {
        if mark.names(event) {
            return Ok(None);
        }
    }
    Ok(Some(Foreign {
        checkpoint,
        snapshot: snapshot.clone(),
        found,
    }))
}

/// What to do with a restored snapshot, from [`check_restored`] bounded by
/// [`RESTORE_CHECK_WAIT_MAX`].
enum Restore {
    /// The log holds its checkpoint event: resume from it.
    Resume,
    /// The log holds another event there: rebuild from the start.
    Foreign(Foreign),
    /// The log did not answer (unavailable, or no answer in time): ask again later.
    AskAgain(String),
    /// The log answered with an error asking again will not cure (corrupt data, a
    /// refused read): rebuild from the start, whose reads will meet the same error and
    /// report it the way the worker reports any read error.
    Drop(ReadError),
}

async fn restore_check(log: &dyn EventLog, models: &ReadModels) -> Restore {
    match tokio::time::timeout(RESTORE_CHECK_WAIT_MAX, check_restored(log, models)).await {
        Ok(Ok(None)) => Restore::Resume,
        Ok(Ok(Some(foreign))) => Restore::Foreign(foreign),
        Ok(Err(ReadError::Unavailable(m))) => Restore::AskAgain(m),
        Ok(Err(e)) => Restore::Drop(e),
        Err(_) => Restore::AskAgain(format!("no answer within {RESTORE_CHECK_WAIT_MAX:?}")),
    }
}

/// Load the snapshot (if any), check it against the log, start the worker, and return
/// the query handle.
pub async fn start(
    log: Arc<dyn EventLog>,
    config: ProjectionConfig,
) -> (Projections, WorkerHandle) {
    let loaded = match &config.dir {
        None => None,
        Some(dir) => {
            let dir = dir.clone();
            let shown = dir.clone();
            match tokio::task::spawn_blocking(move || snapshot::read(&dir)).await {
                Ok(Ok(None)) => {
                    // Said, as a corrupt one is: a snapshot deleted by hand otherwise
                    // turned into a full replay without a word (operator's probe).
                    tracing::info!(dir = %shown.display(), "no projection snapshot; the read models are folded from the start of the log");
                    None
                }
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!("{e}");
                    None
                }
                Err(e) => {
                    tracing::warn!(
                        "loading the projection snapshot failed: {e}; rebuilding from the log"
                    );
                    None
                }
            }
        }
    };
    // Checked here, before queries can see it. A foreign snapshot is dropped as the
    // worker drops models whose checkpoint is past the log's head: empty models, a
    // subscription from the start, the old file replaced by the next snapshot.
    // `unchecked` is one the log could not be asked about yet, held back for the
    // worker (module doc).
    let (models, unchecked) = match loaded {
        None => (ReadModels::new(), None),
        Some(m) => match restore_check(&*log, &m).await {
            Restore::Resume => (m, None),
            Restore::Foreign(foreign) => {
                foreign.warn();
                (ReadModels::new(), None)
            }
            Restore::AskAgain(why) => {
                tracing::warn!(checkpoint = ?m.checkpoint, "cannot check the projection snapshot against the event log ({why}); holding it back until the log answers");
                (ReadModels::new(), Some(m))
            }
            Restore::Drop(e) => {
                tracing::warn!(checkpoint = ?m.checkpoint, "the event log refused the check of the projection snapshot: {e}; rebuilding the read models from the start");
                (ReadModels::new(), None)
            }
        },
    };
    tracing::info!(checkpoint = ?models.checkpoint, events = models.events, "projections start");
    // The snapshot resumed from is as old as its file (none: the age counts from now).
    let resumed_age = match (&config.dir, models.checkpoint) {
        (Some(dir), Some(_)) => snapshot::age(dir).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let (tx, rx) = watch::channel(models.checkpoint);
    let models = Arc::new(RwLock::new(models));
    let stats = Arc::new(WorkerStats::new(resumed_age));
    let (stop_tx, stop_rx) = oneshot::channel();
    let worker = run(
        log,
        config,
        models.clone(),
        stats.clone(),
        tx,
        stop_rx,
        unchecked,
    );
    let (failed_tx, failed) = watch::channel(None);
    let task = tokio::spawn(async move {
        let result = worker.await;
        // Say so at once: queries with a min_position past the checkpoint now answer
        // NOT_CAUGHT_UP, and the operator needs to know why.
        if let Err(e) = &result {
            tracing::error!("projection worker stopped: {e}");
            failed_tx.send_replace(Some(e.to_string()));
        }
        result
    });
    (
        Projections {
            models,
            freshness: Freshness::new(rx),
            stats,
            failed,
        },
        WorkerHandle {
            stop: Some(stop_tx),
            task,
        },
    )
}

async fn run(
    log: Arc<dyn EventLog>,
    config: ProjectionConfig,
    models: Arc<RwLock<ReadModels>>,
    stats: Arc<WorkerStats>,
    tx: watch::Sender<Option<ledger_core::log::Position>>,
    mut stop: oneshot::Receiver<()>,
    unchecked: Option<ReadModels>,
) -> Result<(), RuntimeError> {
    if let Some(snapshot) = unchecked {
        // The snapshot `start` could not check: ask until the log answers. The models
        // are empty meanwhile; a stop now writes nothing, leaving the file for the next
        // start to check.
        loop {
            let checked = tokio::select! {
                _ = &mut stop => return Ok(()),
                checked = restore_check(&*log, &snapshot) => checked,
            };
            match checked {
                Restore::Resume => {
                    let checkpoint = snapshot.checkpoint;
                    *models.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
                    tx.send_replace(checkpoint);
                    tracing::info!(checkpoint = ?checkpoint, "projection snapshot checked against the event log; resuming from it");
                    break;
                }
                Restore::Foreign(foreign) => {
                    // The models are already empty: the worker starts from the beginning.
                    foreign.warn();
                    break;
                }
                Restore::Drop(e) => {
                    tracing::warn!("the event log refused the check of the projection snapshot: {e}; rebuilding the read models from the start");
                    break;
                }
                Restore::AskAgain(why) => {
                    tracing::warn!("cannot check the projection snapshot against the event log ({why}); asking again in {RESUBSCRIBE_DELAY:?}");
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                    }
                }
            }
        }
    }
    let mut since_snapshot = 0u64;
    let mut anomalies = AnomalyNotes::default();
    let mut last_snapshot = Instant::now();
    let mut in_flight: Option<InFlight> = None;
    let mut tick = tokio::time::interval(config.snapshot_every.max(Duration::from_millis(10)));
    // Start a snapshot if one is due and none is in flight; a due one that has to wait
    // is started after the next chunk or tick once the previous one is done.
    let maybe_snapshot =
        |due: bool, since: &mut u64, last: &mut Instant, in_flight: &mut Option<InFlight>| {
            if !due || in_flight.is_some() {
                return;
            }
            if let Some(dir) = &config.dir {
                *in_flight = Some(begin_snapshot(
                    dir,
                    &models,
                    config.before_snapshot_write.clone(),
                ));
            }
            *since = 0;
            *last = Instant::now();
        };
    'subscribe: loop {
        let from = ReadFrom::after(
            models
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .checkpoint,
        );
        let mut stream = log.subscribe_all(from).ready_chunks(APPLY_CHUNK_EVENTS);
        loop {
            tokio::select! {
                _ = &mut stop => break 'subscribe,
                done = finish_in_flight(&mut in_flight, &stats), if in_flight.is_some() => {
                    in_flight = None;
                    if let Err(e) = done {
                        snapshot_failed(&e, config.snapshot_every);
                        // Due again once `snapshot_every` has passed, even on a quiet log.
                        since_snapshot = since_snapshot.max(1);
                    }
                }
                _ = tick.tick() => {
                    let due = since_snapshot > 0 && last_snapshot.elapsed() >= config.snapshot_every;
                    maybe_snapshot(due, &mut since_snapshot, &mut last_snapshot, &mut in_flight);
                }
                chunk = stream.next() => {
                    let Some(chunk) = chunk else {
                        tracing::info!("the log ended the subscription; projection worker stops");
                        break 'subscribe;
                    };
                    let mut failed = None;
                    // The events before the first read error, applied in one call
                    // (`ReadModels::apply_all`: decoded and prefetched in batches).
                    let mut events = Vec::with_capacity(chunk.len());
                    for item in chunk {
                        match item {
                            Ok(e) => events.push(e),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let checkpoint = {
                        let mut g = models.write().unwrap_or_else(PoisonError::into_inner);
                        let before = g.events;
                        let applied = g.apply_all(
                            &events,
                            |e| config.decoded.as_ref().and_then(|d| d.take(e.id, &e.data)),
                            |e, a| anomalies.note(e.id, e.position, a),
                        );
                        since_snapshot += g.events - before;
                        applied?;
                        g.checkpoint
                    };
                    tx.send_replace(checkpoint);
                    if let Some(ReadError::UnknownPosition(at)) = &failed {
                        // The checkpoint is not in this log: read models past its head
                        // describe events it does not hold. A restored snapshot is
                        // checked before the worker resumes on it (`check_restored`), so
                        // this is a backstop, kept so that a checkpoint missing for any
                        // other reason also ends in a rebuild from the start rather than
                        // in resubscribing forever. The next snapshot replaces the old one.
                        tracing::warn!(
                            checkpoint = %at,
                            "the read models' checkpoint is not in the event log (restored from an older backup?); rebuilding them from the start"
                        );
                        *models.write().unwrap_or_else(PoisonError::into_inner) = ReadModels::new();
                        tx.send_replace(None);
                        since_snapshot = 0;
                        continue 'subscribe;
                    }
                    if let Some(e) = failed {
                        tracing::warn!("projection subscription failed: {e}; resubscribing from {checkpoint:?}");
                        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                        continue 'subscribe;
                    }
                    let due = since_snapshot >= config.snapshot_every_events;
                    maybe_snapshot(due, &mut since_snapshot, &mut last_snapshot, &mut in_flight);
                }
            }
        }
    }
    // The one in flight first: the final snapshot must be renamed after it.
    if let Some(mut f) = in_flight.take() {
        if let Err(e) = f.finish(&stats).await {
            // The final snapshot below covers it, or says why it cannot either.
            tracing::warn!("projection snapshot failed: {e}; writing the final one instead");
            since_snapshot = since_snapshot.max(1);
        }
    }
    if since_snapshot > 0 {
        if let Some(dir) = &config.dir {
            write_snapshot(dir, &models, &stats).await?;
        }
    }
    Ok(())
}

/// Fold the whole log from position zero (no snapshot read) and, if `dir` is given,
/// write a fresh snapshot there. The state equals what any incremental run reaches at
/// the same checkpoint ([`ReadModels::digest`]).
pub async fn rebuild(log: &dyn EventLog, dir: Option<&Path>) -> Result<ReadModels, RuntimeError> {
    let mut models = ReadModels::new();
    let mut anomalies = AnomalyNotes::default();
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, READ_EVENTS_MAX).await?;
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        models.apply_all(&page, |_| None, |e, a| anomalies.note(e.id, e.position, a))?;
    }
    if models.fold_anomalies > 0 {
        tracing::warn!(
            anomalies = models.fold_anomalies,
            "the rebuild folded events this ledger's handler would not have written (docs/operations.md, fold anomalies)"
        );
    }
    if let Some(dir) = dir {
        let dir = dir.to_owned();
        models =
            tokio::task::spawn_blocking(move || snapshot::write(&dir, &models).map(|_| models))
                .await
                .map_err(|e| RuntimeError::Task(e.to_string()))??;
    }
    Ok(models)
}

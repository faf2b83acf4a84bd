//! The projection worker: load the snapshot, catch up from its checkpoint, follow the
//! live log, publish the applied checkpoint, snapshot every so many events or seconds.
//!
//! One worker applies events in global order under a write lock, a chunk at a time
//! ([`APPLY_CHUNK_EVENTS`]), so queries (read locks) interleave with catch-up. A
//! snapshot is written by the worker itself under a read lock: queries go on, only
//! applying pauses.
//!
//! Failure policy: a read error of the subscription is retried (the log may be briefly
//! unavailable) from the checkpoint, after [`RESUBSCRIBE_DELAY`]; an event that does not
//! decode stops the worker (a newer writer's event; applying past it would make every
//! read model wrong), and queries then answer `NOT_CAUGHT_UP`. A snapshot that cannot
//! be read is ignored and the models are rebuilt from the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledger_core::log::{limits::READ_EVENTS_MAX, EventLog, ReadError, ReadFrom};
use tokio::sync::{oneshot, watch};

use crate::model::{ApplyError, ReadModels};
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
/// Directory under the server's data directory that holds the snapshot.
pub const PROJECTIONS_DIR: &str = "projections";

#[derive(Clone, Debug)]
pub struct ProjectionConfig {
    /// Where snapshots live; None: no snapshots (tests, benchmarks).
    pub dir: Option<PathBuf>,
    pub snapshot_every_events: u64,
    pub snapshot_every: Duration,
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

async fn write_snapshot(
    dir: &Path,
    models: &Arc<RwLock<ReadModels>>,
    stats: &WorkerStats,
) -> Result<(), RuntimeError> {
    let (dir, models) = (dir.to_owned(), models.clone());
    let started = Instant::now();
    let (bytes, cp) = tokio::task::spawn_blocking(move || {
        let g = models.read().unwrap_or_else(PoisonError::into_inner);
        snapshot::write(&dir, &g).map(|b| (b, g.checkpoint))
    })
    .await
    .map_err(|e| RuntimeError::Task(e.to_string()))??;
    stats.snapshot_written();
    tracing::info!(bytes, checkpoint = ?cp, ms = started.elapsed().as_millis() as u64, "projection snapshot written");
    Ok(())
}

/// Load the snapshot (if any), start the worker, and return the query handle.
pub async fn start(
    log: Arc<dyn EventLog>,
    config: ProjectionConfig,
) -> (Projections, WorkerHandle) {
    let loaded = match &config.dir {
        None => None,
        Some(dir) => {
            let dir = dir.clone();
            match tokio::task::spawn_blocking(move || snapshot::read(&dir)).await {
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
    let models = loaded.unwrap_or_default();
    tracing::info!(checkpoint = ?models.checkpoint, events = models.events, "projections start");
    let (tx, rx) = watch::channel(models.checkpoint);
    let models = Arc::new(RwLock::new(models));
    let stats = Arc::new(WorkerStats::new());
    let (stop_tx, stop_rx) = oneshot::channel();
    let worker = run(log, config, models.clone(), stats.clone(), tx, stop_rx);
    let task = tokio::spawn(async move {
        let result = worker.await;
        // Say so at once: queries with a min_position past the checkpoint now answer
        // NOT_CAUGHT_UP, and the operator needs to know why.
        if let Err(e) = &result {
            tracing::error!("projection worker stopped: {e}");
        }
        result
    });
    (
        Projections {
            models,
            freshness: Freshness::new(rx),
            stats,
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
) -> Result<(), RuntimeError> {
    let mut since_snapshot = 0u64;
    let mut last_snapshot = Instant::now();
    let mut tick = tokio::time::interval(config.snapshot_every.max(Duration::from_millis(10)));
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
                _ = tick.tick() => {
                    if since_snapshot > 0 && last_snapshot.elapsed() >= config.snapshot_every {
                        if let Some(dir) = &config.dir {
                            write_snapshot(dir, &models, &stats).await?;
                        }
                        since_snapshot = 0;
                        last_snapshot = Instant::now();
                    }
                }
                chunk = stream.next() => {
                    let Some(chunk) = chunk else {
                        tracing::info!("the log ended the subscription; projection worker stops");
                        break 'subscribe;
                    };
                    let mut failed = None;
                    let checkpoint = {
                        let mut g = models.write().unwrap_or_else(PoisonError::into_inner);
                        for item in chunk {
                            match item {
                                Ok(e) => {
                                    g.apply(&e)?;
                                    since_snapshot += 1;
                                }
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        g.checkpoint
                    };
                    tx.send_replace(checkpoint);
                    if let Some(e) = failed {
                        tracing::warn!("projection subscription failed: {e}; resubscribing from {checkpoint:?}");
                        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                        continue 'subscribe;
                    }
                    if since_snapshot >= config.snapshot_every_events {
                        if let Some(dir) = &config.dir {
                            write_snapshot(dir, &models, &stats).await?;
                        }
                        since_snapshot = 0;
                        last_snapshot = Instant::now();
                    }
                }
            }
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
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, READ_EVENTS_MAX).await?;
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        for e in &page {
            models.apply(e)?;
        }
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

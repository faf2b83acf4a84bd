//! What the worker exposes for monitoring: how far behind the log it is, and how old
//! its snapshot is. Plain numbers, no exporter: `ledger-server` samples them (about
//! once a second) into its Prometheus gauges.
//!
//! - **Lag in events**: the log head minus the applied checkpoint, counted as
//!   [`LagCounting`] says (positions are opaque; only a densely numbered log turns a
//!   position difference into an event count).
//! - **Lag in seconds**: the log does not say when an event was appended, so this is
//!   the age of the oldest *observed* log head the worker has not applied yet: each
//!   sample that finds the head past the checkpoint notes (head, now); the lag is the
//!   time since the oldest such note that the checkpoint has not reached, and 0 when
//!   there is none (caught up at the last sample, or only behind since it). A lower
//!   bound on the true lag, within one sampling interval; a worker that keeps up
//!   under steady load stays near 0 (unlike "time since last fully caught up", which
//!   would grow whenever a sample lands between an append and its apply).
//! - **Snapshot age**: time since the worker last wrote a snapshot; before its first,
//!   the age of the snapshot file it resumed from (by the file's modification time),
//!   or the time since it started if it resumed from none. (A snapshot loaded at
//!   start counted as new until the fifteenth session, which hid, after a crash, how
//!   old the snapshot on disk really was.)
//! - **Fold anomalies**: events of the log folded so far that break a rule of the
//!   handler's logs (`anomaly.rs`, kept in the read models and their snapshot);
//!   nonzero only on a log something else wrote.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_core::log::{limits::READ_EVENTS_MAX, EventLog, Position, ReadError, ReadFrom};

use crate::runtime::Projections;

/// Most head observations kept while behind (about an hour at one sample a second);
/// past it new ones are not noted, so the lag in seconds may read low once the
/// worker has worked through all of them.
pub const LAG_OBSERVATIONS_MAX: usize = 4096;

/// How the lag in events is counted from the log head and the checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LagCounting {
    /// The log numbers events densely (`Position::commit` is the sequence number: the
    /// embedded and in-memory logs): `head.commit() - checkpoint.commit()`, exact
    /// and free.
    Sequence,
    /// Any backend (KurrentDB: positions are byte offsets in its transaction log, so
    /// their difference is not an event count): read the events after the checkpoint
    /// and count them, at most [`READ_EVENTS_MAX`] (the gauge saturates there).
    #[default]
    ReadAhead,
}

/// Shared between the worker and its [`Projections`] handle.
#[derive(Debug)]
pub(crate) struct WorkerStats {
    started: Instant,
    /// Age at `started` of the snapshot resumed from (zero if none).
    resumed_age: Duration,
    /// Nanoseconds after `started` of the last snapshot written; 0: none yet.
    last_snapshot_nanos: AtomicU64,
}

impl WorkerStats {
    /// `resumed_age`: how old the snapshot the worker resumes from was at start.
    pub(crate) fn new(resumed_age: Duration) -> Self {
        Self {
            started: Instant::now(),
            resumed_age,
            last_snapshot_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot_written(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_snapshot_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_age(&self) -> Duration {
        match self.last_snapshot_nanos.load(Ordering::Relaxed) {
            0 => self.started.elapsed() + self.resumed_age,
            nanos => (self.started + Duration::from_nanos(nanos)).elapsed(),
        }
    }
}

/// One sample of the worker's state against the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerSample {
    pub head: Option<Position>,
    pub checkpoint: Option<Position>,
    pub lag_events: u64,
    pub lag: Duration,
    pub snapshot_age: Duration,
    /// Events of the log folded with a [`crate::FoldAnomaly`] up to the checkpoint.
    pub fold_anomalies: u64,
}

/// Samples a worker's lag; keep one per worker and call [`LagSampler::sample`]
/// periodically (the lag in seconds is built from successive samples).
#[derive(Debug)]
pub struct LagSampler {
    counting: LagCounting,
    /// Heads seen past the checkpoint, oldest first, with when they were seen.
    unapplied: VecDeque<(Position, Instant)>,
}

impl LagSampler {
    pub fn new(counting: LagCounting) -> Self {
        Self {
            counting,
            unapplied: VecDeque::new(),
        }
    }

    pub async fn sample(
        &mut self,
        log: &dyn EventLog,
        projections: &Projections,
    ) -> Result<WorkerSample, ReadError> {
        // Head first: a checkpoint read after it can only be further on, so a worker
        // that keeps up never shows a spurious lag.
        let head = log.head().await?;
        let checkpoint = projections.freshness().checkpoint();
        let lag_events = if head <= checkpoint {
            0
        } else {
            match self.counting {
                LagCounting::Sequence => {
                    let head = head.map_or(0, |h| h.commit() + 1);
                    let applied = checkpoint.map_or(0, |c| c.commit() + 1);
                    head.saturating_sub(applied)
                }
                LagCounting::ReadAhead => log
                    .read_all(ReadFrom::after(checkpoint), READ_EVENTS_MAX)
                    .await?
                    .len() as u64,
            }
        };
        let lag = self.observe(head, checkpoint, Instant::now());
        Ok(WorkerSample {
            head,
            checkpoint,
            lag_events,
            lag,
            snapshot_age: projections.snapshot_age(),
            fold_anomalies: projections.fold_anomalies(),
        })
    }

    /// Note `head` if the worker is behind it, forget what it has applied, and
    /// return the age of the oldest head still unapplied.
    pub(crate) fn observe(
        &mut self,
        head: Option<Position>,
        checkpoint: Option<Position>,
        now: Instant,
    ) -> Duration {
        while self
            .unapplied
            .front()
            .is_some_and(|(p, _)| Some(*p) <= checkpoint)
        {
            self.unapplied.pop_front();
        }
        if let Some(h) = head.filter(|h| Some(*h) > checkpoint) {
            let newer = self.unapplied.back().is_none_or(|(p, _)| h > *p);
            if newer && self.unapplied.len() < LAG_OBSERVATIONS_MAX {
                self.unapplied.push_back((h, now));
            }
        }
        self.unapplied.front().map_or(Duration::ZERO, |(_, seen)| {
            now.saturating_duration_since(*seen)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: u64) -> Option<Position> {
        Some(Position::from_sequence(p))
    }

    #[test]
    fn the_lag_is_the_age_of_the_oldest_unapplied_head_seen() {
        let mut s = LagSampler::new(LagCounting::Sequence);
        let t0 = Instant::now();
        let sec = |n| t0 + Duration::from_secs(n);
        // Caught up (empty log, then an applied head): no lag.
        assert_eq!(s.observe(None, None, sec(0)), Duration::ZERO);
        assert_eq!(s.observe(at(4), at(4), sec(1)), Duration::ZERO);
        // Behind from t=2: 0 at first sight, then growing while the head moves on.
        assert_eq!(s.observe(at(9), at(5), sec(2)), Duration::ZERO);
        assert_eq!(s.observe(at(12), at(6), sec(3)), Duration::from_secs(1));
        assert_eq!(s.observe(at(12), at(8), sec(5)), Duration::from_secs(3));
        // Past the head seen at t=2, not the one at t=3: age from t=3.
        assert_eq!(s.observe(at(15), at(10), sec(6)), Duration::from_secs(3));
        // Caught up: 0, and nothing kept.
        assert_eq!(s.observe(at(15), at(15), sec(7)), Duration::ZERO);
        assert!(s.unapplied.is_empty());
        // Steady load, each sample a little behind but past the previous head: ~0.
        assert_eq!(s.observe(at(20), at(18), sec(8)), Duration::ZERO);
        assert_eq!(s.observe(at(30), at(28), sec(9)), Duration::ZERO);
    }
}

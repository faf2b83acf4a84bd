//! Read-your-writes: a query names the log position a command returned and waits until
//! the read models have applied it, up to a bound.
//!
//! The worker publishes its applied checkpoint on a `tokio::sync::watch`; a waiting
//! query holds a receiver and sleeps until the checkpoint reaches its position or the
//! bound passes. Past the bound the caller gets [`NotCaughtUp`] (the server answers
//! `UNAVAILABLE`, reason `NOT_CAUGHT_UP`) instead of stale data.

use std::time::Duration;

use ledger_core::log::Position;
use tokio::sync::watch;

/// Longest a query waits for the read models to reach its `min_position`. The worker
/// applies a fresh command within milliseconds; two seconds covers a snapshot write or
/// a burst, and stays below typical client deadlines so the answer is "retry" rather
/// than a timeout with no reason.
pub const QUERY_FRESHNESS_WAIT_MS_MAX: u64 = 2_000;

/// The read models are behind the position a query asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the read models have applied the log up to {checkpoint} but the query asked for at least {wanted}; retry shortly", checkpoint = checkpoint.map_or_else(|| "nothing".to_owned(), |p| p.to_string()))]
pub struct NotCaughtUp {
    pub wanted: Position,
    pub checkpoint: Option<Position>,
}

/// A handle on the applied checkpoint.
#[derive(Clone, Debug)]
pub struct Freshness {
    rx: watch::Receiver<Option<Position>>,
}

impl Freshness {
    pub fn new(rx: watch::Receiver<Option<Position>>) -> Self {
        Self { rx }
    }

    /// The position of the last event applied.
    pub fn checkpoint(&self) -> Option<Position> {
        *self.rx.borrow()
    }

    /// Wait until the checkpoint is at least `min`, at most `timeout` (clamped to
    /// [`QUERY_FRESHNESS_WAIT_MS_MAX`]). Returns the checkpoint reached.
    pub async fn wait_for(
        &self,
        min: Position,
        timeout: Duration,
    ) -> Result<Position, NotCaughtUp> {
        let timeout = timeout.min(Duration::from_millis(QUERY_FRESHNESS_WAIT_MS_MAX));
        let mut rx = self.rx.clone();
        let reached =
            tokio::time::timeout(timeout, rx.wait_for(|cp| cp.is_some_and(|p| p >= min))).await;
        match reached {
            Ok(Ok(cp)) => Ok(cp.expect("the predicate saw a checkpoint")),
            // Timed out, or the worker is gone (sender dropped): not caught up.
            _ => Err(NotCaughtUp {
                wanted: min,
                checkpoint: *self.rx.borrow(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_until_the_position_or_the_bound() {
        let (tx, rx) = watch::channel(None);
        let f = Freshness::new(rx);
        let p = |n| Position::from_sequence(n);
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.wait_for(p(5), Duration::from_secs(1)).await })
        };
        tx.send_replace(Some(p(4)));
        tokio::task::yield_now().await;
        tx.send_replace(Some(p(6)));
        assert_eq!(waiter.await.unwrap(), Ok(p(6)));
        let e = f.wait_for(p(9), Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(
            e,
            NotCaughtUp {
                wanted: p(9),
                checkpoint: Some(p(6))
            }
        );
        assert!(e.to_string().contains("up to 6"), "{e}");
    }
}

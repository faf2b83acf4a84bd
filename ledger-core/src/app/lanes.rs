//! Write lanes: in one process, the appends to one account's stream take turns.
//!
//! Why: every append names the version it was decided on, and the log refuses it if
//! another append got there first; the loser reads again, decides again and retries,
//! at most [`super::COMMAND_RETRIES_MAX`] times. That is right between processes, but
//! inside one it turned ordinary bursts into failures. Sixteen transfers to one
//! receiver at once all succeeded, and then their sixteen receipts raced for the
//! receiver's stream: some lost nine times in a row and were left to the catch-up
//! five seconds later. Meanwhile the read model already counted the hours (it reads the
//! sender's posting) while the receiver's own stream, which its commands are decided
//! on, did not: a spend of the shown balance was refused `INSUFFICIENT_HOURS`, and a
//! donation's reversal `UNKNOWN_TRANSACTION` (a platform's probe: 43 of 64
//! concurrent donations to one project). Commands on one account raced the same way
//! (32 concurrent spends, 13 `ABORTED`).
//!
//! Here a command holds its target's lane from before it reads the stream until its
//! append has answered, and a receipt its receiver's lane likewise, so in one process
//! they queue instead of racing. Throughput on one stream is what it was (one append
//! per version either way); the version check stays, for writers in other processes
//! (KurrentDB served by several instances).
//!
//! A receipt queues behind at most `RECEIPT_LANE_QUEUE_MAX` (64) appends: past that
//! the receiver is hot, the command answers, and the receipt is left to the catch-up,
//! so that a thousand donations to one project do not hold a thousand in-flight
//! permits while their receipts wait their turn.
//!
//! No cycle: a lane's holder waits on nothing but the log. Closing gates
//! ([`super::gates`]) are taken before a lane, never while one is held, and a command
//! lets go of its target's lane before it delivers its receipts (each of which takes
//! its receiver's lane).
//!
//! Options not taken: more retries, which only moves the point where a burst fails;
//! and one task per account that appends for it (an actor), which would add a channel
//! hop to every command for a queue that is empty nearly always.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::keyed::KeyedLocks;
use crate::domain::account::AccountId;

/// The lanes of accounts some append holds or waits on right now.
#[derive(Default)]
pub struct Lanes {
    open: KeyedLocks<Mutex<()>>,
}

/// An account's lane, held: dropping it lets the next append to the account in.
pub struct Lane {
    account: AccountId,
    lock: Option<Arc<Mutex<()>>>,
    guard: Option<OwnedMutexGuard<()>>,
    lanes: Arc<Lanes>,
}

impl Lanes {
    /// Wait for `account`'s lane and hold it.
    pub async fn hold(self: &Arc<Self>, account: &AccountId) -> Lane {
        let lock = self.open.get(account);
        // Built before the wait, so that a caller dropping this future while it waits
        // still gives its reference back.
        let mut lane = Lane {
            account: account.clone(),
            lock: Some(lock.clone()),
            guard: None,
            lanes: self.clone(),
        };
        lane.guard = Some(lock.lock_owned().await);
        lane
    }

    /// [`Lanes::hold`], unless `queue_max` or more appends already hold or wait for
    /// `account`'s lane: then None, at once, and nothing is held.
    pub async fn hold_unless_queued(
        self: &Arc<Self>,
        account: &AccountId,
        queue_max: usize,
    ) -> Option<Lane> {
        let lock = self.open.get(account);
        // A count, not a reservation: a few more may join before this one does, which
        // only moves the bound by as many.
        let queued = holders_and_waiters(&lock);
        self.open.release(account, lock);
        if queued >= queue_max {
            return None;
        }
        Some(self.hold(account).await)
    }

    /// Appends holding or waiting for `account`'s lane.
    #[cfg(test)]
    fn queued(&self, account: &AccountId) -> usize {
        let lock = self.open.get(account);
        let n = holders_and_waiters(&lock);
        self.open.release(account, lock);
        n
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Appends holding or waiting for `lock`, from its references: the map's, the
/// caller's, and two for each holder or waiter (its [`Lane`]'s and its guard's, or the
/// guard-to-be's while it waits).
fn holders_and_waiters(lock: &Arc<Mutex<()>>) -> usize {
    Arc::strong_count(lock).saturating_sub(2) / 2
}

impl Drop for Lane {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(lock) = self.lock.take() {
            self.lanes.open.release(&self.account, lock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(s: &str) -> AccountId {
        AccountId::new(s).expect("id")
    }

    #[tokio::test]
    async fn appends_to_one_account_take_turns_and_other_accounts_do_not_wait() {
        let lanes = Arc::new(Lanes::default());
        let first = lanes.hold(&id("r")).await;
        let second = {
            let lanes = lanes.clone();
            tokio::spawn(async move { lanes.hold(&id("r")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second append to r waits");
        let other = tokio::time::timeout(Duration::from_secs(1), lanes.hold(&id("s")))
            .await
            .expect("another account's lane is free");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("the second append goes once the first lets go")
            .expect("join");
        drop((second, other));
        assert!(lanes.is_empty(), "every lane is forgotten once unused");
    }

    /// A receipt does not queue behind a crowded lane: it is left to the catch-up.
    #[tokio::test]
    async fn a_crowded_lane_is_not_joined_and_a_short_queue_is() {
        let lanes = Arc::new(Lanes::default());
        let held = lanes.hold(&id("r")).await;
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let lanes = lanes.clone();
                tokio::spawn(async move { lanes.hold(&id("r")).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Three hold or wait: a queue of at most 3 is full, one of 4 is not.
        assert!(lanes.hold_unless_queued(&id("r"), 3).await.is_none());
        let joined = {
            let lanes = lanes.clone();
            tokio::spawn(async move { lanes.hold_unless_queued(&id("r"), 4).await })
        };
        drop(held);
        for w in waiters {
            drop(w.await.expect("join"));
        }
        assert!(joined.await.expect("join").is_some(), "it got its turn");
        assert!(lanes.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_dropped_while_waiting_leaves_no_lane_behind() {
        let lanes = Arc::new(Lanes::default());
        let held = lanes.hold(&id("r")).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), lanes.hold(&id("r")))
                .await
                .is_err(),
            "r is held"
        );
        // The waiter gave its reference back although the holder still holds: the
        // entry counts the map's and the holder's only.
        assert_eq!(lanes.hold_unless_queued(&id("r"), 1).await.map(drop), None);
        assert_eq!(
            lanes.queued(&id("r")),
            1,
            "only the holder is counted once the waiter is gone"
        );
        drop(held);
        assert!(lanes.is_empty(), "the waiter's reference was given back");
    }
}

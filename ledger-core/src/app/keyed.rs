//! A lock per account, created when first asked for and forgotten when the last
//! holder or waiter lets go: what both the closing gates ([`super::gates`]) and the
//! write lanes ([`super::lanes`]) are made of.
//!
//! Why a map of short-lived entries rather than one lock per account kept for good:
//! the map is then as large as the commands in flight (at most the server's in-flight
//! bound times the accounts one command names), not as large as the ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::account::AccountId;

pub(crate) struct KeyedLocks<L> {
    open: Mutex<HashMap<AccountId, Arc<L>>>,
}

impl<L> Default for KeyedLocks<L> {
    fn default() -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl<L: Default> KeyedLocks<L> {
    /// `account`'s lock, created if nobody holds or waits on it. The caller gives its
    /// reference back with [`KeyedLocks::release`] once its guard is dropped.
    pub(crate) fn get(&self, account: &AccountId) -> Arc<L> {
        // A panic while the map is held cannot leave it half-changed.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.entry(account.clone()).or_default().clone()
    }

    /// Give back the caller's reference to `account`'s lock (its guard already
    /// dropped) and forget the lock if nobody else holds or waits on it. The reference
    /// is dropped under the map's lock, where every holder's last reference goes: two
    /// holders releasing at once cannot each see the other's and both keep the entry
    /// (a reviewer's test leaked 7 entries in 20,000 such races when the count was
    /// read before the caller's own reference was gone).
    pub(crate) fn release(&self, account: &AccountId, lock: Arc<L>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        drop(lock);
        if open.get(account).is_some_and(|l| Arc::strong_count(l) == 1) {
            open.remove(account);
        }
    }

    /// No account has a lock held or waited on (the map empties when unused).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

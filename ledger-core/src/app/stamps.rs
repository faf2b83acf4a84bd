//! The instants the handler stamps on events whose appends are still on their way, and
//! the latest instant before all of them: how far a report "as of now" can look
//! without being contradicted later.
//!
//! Why: a command stamps its event's `recorded_at` when it is decided, and the event is
//! in the log only once its append is durable, milliseconds later (more under load or
//! on a slow store). A credit report as of now read before that append misses the
//! event, while a later ask as of the same instant finds it: two answers for one
//! `as_of` (found by a probe: 725 of 813 live reports during writes). Each stamp is
//! registered here, under one lock with the clock read, until its append has
//! answered; [`Stamps::settled`] is then an instant at or before which nothing is on
//! its way in this process: every event recorded by then is in the log already, or
//! will be decided again (a lost version race) with a later stamp.
//!
//! Option not taken: stamping events at their append instead, which the log (the
//! embedded writer thread, KurrentDB) does not offer and which would take the time
//! out of the decision the event records.
//!
//! Scope: this process's handler, like the closing gates (`gates.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::clock::Clock;

/// The stamps of decisions whose appends have not answered yet. A multiset: two
/// commands may read the same instant.
#[derive(Default)]
pub struct Stamps {
    in_flight: Mutex<BTreeMap<DateTime<Utc>, usize>>,
}

/// A stamp in flight; dropping it (once the append answered) takes it out.
pub struct Stamp {
    at: DateTime<Utc>,
    stamps: Arc<Stamps>,
}

impl Stamp {
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

impl Stamps {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<DateTime<Utc>, usize>> {
        // A panic while holding it cannot leave a count half-changed.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the clock and register the instant as in flight, in one step: a
    /// [`Stamps::settled`] computed before it is earlier than the instant or sees it.
    pub fn stamp(self: &Arc<Self>, clock: &dyn Clock) -> Stamp {
        let mut in_flight = self.lock();
        let at = clock.now();
        *in_flight.entry(at).or_default() += 1;
        Stamp {
            at,
            stamps: self.clone(),
        }
    }

    /// The latest instant nothing in flight was stamped at or before: the clock's now
    /// when nothing is in flight, else a nanosecond before the oldest stamp in flight.
    pub fn settled(&self, clock: &dyn Clock) -> DateTime<Utc> {
        let in_flight = self.lock();
        let now = clock.now();
        match in_flight.keys().next() {
            Some(&oldest) if oldest <= now => oldest - Duration::nanoseconds(1),
            _ => now,
        }
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        let mut in_flight = self.stamps.lock();
        let count = in_flight
            .get_mut(&self.at)
            .expect("a stamp in flight is registered until dropped");
        *count -= 1;
        if *count == 0 {
            in_flight.remove(&self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::FixedClock;

    fn ts(s: &str) -> DateTime<Utc> {
        s.parse().expect("instant")
    }

    #[test]
    fn settled_is_now_or_just_before_the_oldest_stamp_in_flight() {
        let stamps = Arc::new(Stamps::default());
        let clock = FixedClock::new(ts("2026-11-20T12:00:00Z"));
        assert_eq!(stamps.settled(&clock), ts("2026-11-20T12:00:00Z"));
        let first = stamps.stamp(&clock);
        let same = stamps.stamp(&clock);
        clock.set(ts("2026-11-20T12:00:01Z"));
        let later = stamps.stamp(&clock);
        clock.set(ts("2026-11-20T12:00:02Z"));
        let before_first = ts("2026-11-20T11:59:59.999999999Z");
        assert_eq!(stamps.settled(&clock), before_first);
        drop(first);
        assert_eq!(
            stamps.settled(&clock),
            before_first,
            "one stamp of that instant left"
        );
        drop(same);
        assert_eq!(stamps.settled(&clock), ts("2026-11-20T12:00:00.999999999Z"));
        assert_eq!(later.at(), ts("2026-11-20T12:00:01Z"));
        drop(later);
        assert_eq!(stamps.settled(&clock), ts("2026-11-20T12:00:02Z"));
    }
}

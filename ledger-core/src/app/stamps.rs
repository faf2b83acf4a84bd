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
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_flight: BTreeMap<DateTime<Utc>, usize>,
    /// The latest instant [`Stamps::settled`] has answered: every later stamp is after
    /// it, even when the clock reads the same instant again (a coarse clock, a fixed
    /// clock in tests) or steps back (NTP, a VM resumed). Option not taken: trusting
    /// the wall clock to move forward, which a reviewer's two tests refuted.
    floor: Option<DateTime<Utc>>,
    /// The latest stamp handed out. Stamps can run ahead of a clock that repeats or
    /// steps back (they follow `floor`); with nothing in flight, `settled` is at least
    /// this, so that a report as of now includes every event already appended.
    latest: Option<DateTime<Utc>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave a count half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the clock and register the instant as in flight, in one step, after every
    /// instant [`Stamps::settled`] has answered: a report as of a settled instant can
    /// never be joined later by an event stamped at or before it.
    pub fn stamp(self: &Arc<Self>, clock: &dyn Clock) -> Stamp {
        let mut state = self.lock();
        let now = clock.now();
        let at = match state.floor {
            Some(floor) if now <= floor => floor + Duration::nanoseconds(1),
            _ => now,
        };
        *state.in_flight.entry(at).or_default() += 1;
        state.latest = Some(state.latest.map_or(at, |l| l.max(at)));
        Stamp {
            at,
            stamps: self.clone(),
        }
    }

    /// The ledger's now: the clock's, or the latest stamp if stamps ran ahead of a
    /// clock that repeats or stepped back. An `as_of` after it has not been yet.
    pub fn now(&self, clock: &dyn Clock) -> DateTime<Utc> {
        let state = self.lock();
        let now = clock.now();
        state.latest.map_or(now, |l| now.max(l))
    }

    /// The latest instant nothing in flight was stamped at or before: the clock's now
    /// (or the latest stamp, if stamps ran ahead of the clock) when nothing is in
    /// flight, else a nanosecond before the oldest stamp in flight.
    pub fn settled(&self, clock: &dyn Clock) -> DateTime<Utc> {
        let mut state = self.lock();
        let now = clock.now();
        let settled = match state.in_flight.keys().next() {
            Some(&oldest) => oldest - Duration::nanoseconds(1),
            None => state.latest.map_or(now, |l| now.max(l)),
        };
        // Never earlier than an instant already answered (the clock stepped back).
        let settled = state.floor.map_or(settled, |floor| settled.max(floor));
        state.floor = Some(settled);
        settled
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        let mut state = self.stamps.lock();
        let count = state
            .in_flight
            .get_mut(&self.at)
            .expect("a stamp in flight is registered until dropped");
        *count -= 1;
        if *count == 0 {
            state.in_flight.remove(&self.at);
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

    /// A stamp taken after `settled` answered is after it, whatever the clock reads:
    /// the same instant again, or an earlier one (found by a review of this module).
    #[test]
    fn a_stamp_taken_after_settled_is_later_than_it_even_if_the_clock_repeats_or_steps_back() {
        let stamps = Arc::new(Stamps::default());
        let clock = FixedClock::new(ts("2026-11-20T12:00:01Z"));
        let settled = stamps.settled(&clock);
        let same = stamps.stamp(&clock);
        assert!(same.at() > settled, "{} vs {settled}", same.at());
        clock.set(ts("2026-11-20T12:00:00Z"));
        assert!(stamps.settled(&clock) >= settled, "settled never goes back");
        let back = stamps.stamp(&clock);
        assert!(back.at() > settled, "{} vs {settled}", back.at());
        // A clock that moves on is used as it reads.
        clock.set(ts("2026-11-20T12:00:05Z"));
        assert_eq!(stamps.stamp(&clock).at(), ts("2026-11-20T12:00:05Z"));
    }
}

//! Redemptions read model: every merchant's holds and captures, for the merchant's
//! redemption list and settlement statement, the points each volunteer has on hold,
//! and the open holds the server's sweeper must expire.
//!
//! Folded from `RedemptionAuthorized`, `RedemptionCaptured`, `RedemptionVoided` and
//! `RedemptionHoldExpired` (all on volunteers' streams). Times are kept as Unix
//! seconds: statements are by instant, not by calendar day.
//!
//! Memory: ~80 bytes per redemption. A city's merchants redeem far fewer times than
//! volunteers serve (a few per volunteer per year), so this is tens of MiB at most.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::anomaly::FoldAnomaly;
use crate::model::Centi;

/// Where a redemption stands.
/// Most lapsed holds (past their expiry, not yet recorded as expired) one account
/// view walks ([`Redemptions::held_by_at`]): the sweeper records expiries every few
/// seconds, so only a backlog after downtime comes near it, and a walk of this many
/// set entries is about a millisecond.
pub const EXPIRED_HOLDS_SCANNED_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionStatus {
    Held,
    Captured,
    Voided,
    Expired,
}

impl RedemptionStatus {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Expired => "expired",
        }
    }
}

/// One redemption (a hold and how it ended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub hold: u128,
    /// Account indices.
    pub merchant: u32,
    pub volunteer: u32,
    pub authorized: Centi,
    pub captured: Centi,
    pub status: RedemptionStatus,
    pub authorized_at: i64,
    pub expires_at: i64,
    /// When it was captured, voided or recorded as expired (0 while held).
    pub ended_at: i64,
}

/// What [`Redemptions::captures_between`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Captures<'a> {
    pub captures: u64,
    pub total: Centi,
    /// The oldest captures, oldest first.
    pub lines: Vec<&'a Redemption>,
    /// True if there were more captures than lines.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemptions {
    /// Every redemption, in authorisation (log) order.
    pub all: Vec<Redemption>,
    /// Hold id → index in `all`.
    #[serde(with = "crate::snapshot::pairs")]
    pub by_hold: FxHashMap<u128, u32>,
    /// Merchant account index → indices in `all`, in log order.
    #[serde(with = "crate::snapshot::pairs")]
    pub by_merchant: FxHashMap<u32, Vec<u32>>,
    /// Volunteer account index → points on open holds (hundredths).
    #[serde(with = "crate::snapshot::pairs")]
    pub held: FxHashMap<u32, Centi>,
    /// Open holds by (expiry, hold): what the sweeper walks.
    pub open: BTreeSet<(i64, u128)>,
}

impl Redemptions {
    pub fn authorized(
        &mut self,
        hold: u128,
        merchant: u32,
        volunteer: u32,
        points: Centi,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Option<FoldAnomaly> {
        if self.by_hold.contains_key(&hold) {
            return Some(FoldAnomaly::HoldAuthorisedTwice);
        }
        let i = u32::try_from(self.all.len()).expect("fewer than 2^32 redemptions");
        let expires_at = expires_at.timestamp();
        self.all.push(Redemption {
            hold,
            merchant,
            volunteer,
            authorized: points,
            captured: 0,
            status: RedemptionStatus::Held,
            authorized_at: at.timestamp(),
            expires_at,
            ended_at: 0,
        });
        self.by_hold.insert(hold, i);
        self.by_merchant.entry(merchant).or_default().push(i);
        *self.held.entry(volunteer).or_default() += points;
        self.open.insert((expires_at, hold));
        None
    }

    /// A hold ended: captured (`captured` > 0), voided or expired.
    pub fn ended(
        &mut self,
        hold: u128,
        status: RedemptionStatus,
        captured: Centi,
        at: DateTime<Utc>,
    ) -> Option<FoldAnomaly> {
        let Some(&i) = self.by_hold.get(&hold) else {
            return Some(FoldAnomaly::HoldEndedUnauthorised);
        };
        let r = &mut self.all[i as usize];
        if r.status != RedemptionStatus::Held {
            return Some(FoldAnomaly::HoldEndedTwice);
        }
        r.status = status;
        r.captured = captured;
        r.ended_at = at.timestamp();
        let held = self.held.entry(r.volunteer).or_default();
        *held -= r.authorized;
        if *held == 0 {
            self.held.remove(&r.volunteer);
        }
        self.open.remove(&(r.expires_at, hold));
        None
    }

    /// Points on `volunteer`'s open holds as recorded: a hold counts until its end is
    /// in the log, its expiry included (the sweeper records that seconds after the
    /// instant).
    pub fn held_by(&self, volunteer: u32) -> Centi {
        self.held.get(&volunteer).copied().unwrap_or(0)
    }

    /// Points on `volunteer`'s holds that still hold at `now`: [`Self::held_by`] less
    /// the open holds already past their expiry whose expiry the sweeper has not
    /// recorded yet. Commands free those points from the expiry instant on, so a view
    /// that still counted them showed more points held than the balance, and points
    /// available below zero, once a new hold took the freed points (merchant probe,
    /// fourteenth session).
    ///
    /// Expiries are kept to the second (`Redemption::expires_at`), so a hold counts
    /// until the second after the one it expires in: up to a second longer than the
    /// command rule, never shorter. Walks the holds past their expiry, which the
    /// sweeper keeps to a few seconds' worth; past [`EXPIRED_HOLDS_SCANNED_MAX`] the
    /// rest count as held, which understates what is available, never overstates it.
    pub fn held_by_at(&self, volunteer: u32, now: DateTime<Utc>) -> Centi {
        let held = self.held_by(volunteer);
        if held == 0 {
            return 0;
        }
        let now = now.timestamp();
        let lapsed: Centi = self
            .open
            .iter()
            .take_while(|(expires_at, _)| *expires_at < now)
            .take(EXPIRED_HOLDS_SCANNED_MAX)
            .map(|(_, hold)| &self.all[self.by_hold[hold] as usize])
            .filter(|r| r.volunteer == volunteer)
            .map(|r| r.authorized)
            .sum();
        assert!(lapsed <= held, "lapsed holds are among the open ones");
        held - lapsed
    }

    /// Open holds whose expiry is at or before `now`, oldest first, at most `limit`.
    pub fn expired_open(&self, now: DateTime<Utc>, limit: usize) -> Vec<&Redemption> {
        let now = now.timestamp();
        self.open
            .iter()
            .take_while(|(exp, _)| *exp <= now)
            .take(limit)
            .map(|(_, hold)| &self.all[self.by_hold[hold] as usize])
            .collect()
    }

    /// A merchant's redemptions, in log order.
    pub fn of_merchant(&self, merchant: u32) -> impl Iterator<Item = &Redemption> {
        self.by_merchant
            .get(&merchant)
            .into_iter()
            .flatten()
            .map(|i| &self.all[*i as usize])
    }

    /// A merchant's captures with capture time in `[from, to)` (Unix seconds): how
    /// many, their total, and the oldest `lines_max` of them, oldest first (the
    /// settlement statement).
    pub fn captures_between(
        &self,
        merchant: u32,
        from: i64,
        to: i64,
        lines_max: usize,
    ) -> Captures<'_> {
        let mut lines: Vec<&Redemption> = self
            .of_merchant(merchant)
            .filter(|x| {
                x.status == RedemptionStatus::Captured && x.ended_at >= from && x.ended_at < to
            })
            .collect();
        let captures = lines.len() as u64;
        let total = lines.iter().map(|x| x.captured).sum();
        // Sorted before the cut: `of_merchant` is in authorisation order, and a hold
        // may be captured up to its timeout after it was authorised, so cutting first
        // kept early holds captured late in place of older captures. Stable: captures
        // of one second stay in authorisation order.
        lines.sort_by_key(|x| x.ended_at);
        let truncated = lines.len() > lines_max;
        lines.truncate(lines_max);
        Captures {
            captures,
            total,
            lines,
            truncated,
        }
    }

    /// For the state digest: everything in a canonical order.
    pub fn canonical(&self) -> (&Vec<Redemption>, Vec<(u32, Centi)>) {
        let mut held: Vec<(u32, Centi)> = self.held.iter().map(|(k, v)| (*k, *v)).collect();
        held.sort_unstable();
        (&self.all, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn ms(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    /// Given a hold past its expiry that the sweeper has not recorded yet, and a new
    /// hold on the points it freed, the view counts only the new one: not both (which
    /// showed more held than the balance and a negative available), and the lapsed
    /// one again once its expiry is recorded.
    #[test]
    fn a_hold_past_its_expiry_no_longer_counts_as_held() {
        let (volunteer, other) = (9, 10);
        let mut r = Redemptions::default();
        // Expires at 20.5 s, kept as 20 s.
        r.authorized(1, 7, volunteer, 9_000, t(0), ms(20_500));
        r.authorized(2, 7, other, 500, t(0), t(5));
        assert_eq!(r.held_by_at(volunteer, ms(20_400)), 9_000);
        assert_eq!(
            r.held_by_at(volunteer, ms(20_999)),
            9_000,
            "to the second, late"
        );
        assert_eq!(r.held_by_at(volunteer, t(21)), 0);
        r.authorized(3, 7, volunteer, 9_000, t(21), t(41));
        assert_eq!(r.held_by(volunteer), 18_000, "as recorded");
        assert_eq!(r.held_by_at(volunteer, t(22)), 9_000);
        assert_eq!(r.held_by_at(other, t(22)), 0);
        r.ended(1, RedemptionStatus::Expired, 0, t(23));
        assert_eq!(r.held_by_at(volunteer, t(23)), 9_000);
        assert_eq!(r.held_by_at(volunteer, t(41)), 9_000);
        assert_eq!(r.held_by_at(volunteer, t(42)), 0);
    }

    /// Merchant 7's holds 1, 2, 3 authorised in that order, at 0, 1, 2 s, each for
    /// 100 hundredths; captured at `captured_at` (hold 1's last).
    fn three_captures(captured_at: [i64; 3]) -> Redemptions {
        let mut r = Redemptions::default();
        for (i, at) in captured_at.into_iter().enumerate() {
            let hold = i as u128 + 1;
            r.authorized(hold, 7, 9, 100, t(i as i64), t(i as i64 + 900));
            r.ended(hold, RedemptionStatus::Captured, 100, t(at));
        }
        r
    }

    #[test]
    fn given_more_captures_than_lines_when_settling_then_the_lines_are_the_oldest_captures() {
        // Hold 1 was authorised first but captured last: the oldest captures are 2, 3.
        let r = three_captures([600, 10, 20]);
        let got = r.captures_between(7, 0, 1000, 2);
        assert_eq!((got.captures, got.total, got.truncated), (3, 300, true));
        let holds: Vec<u128> = got.lines.iter().map(|x| x.hold).collect();
        assert_eq!(
            holds,
            [2, 3],
            "oldest captures first, not the first holds authorised"
        );
    }

    /// A foreign log's holds (`anomaly.rs`): each case stopped the fold with a panic
    /// before; now it changes nothing and says which rule it breaks.
    #[test]
    fn a_hold_authorised_twice_or_ended_unauthorised_or_twice_changes_nothing() {
        let mut r = Redemptions::default();
        assert_eq!(r.authorized(1, 7, 9, 100, t(0), t(900)), None);
        let before = r.clone();
        // Given hold 1 authorised, when it is authorised again (another merchant,
        // volunteer and amount), then nothing changes.
        assert_eq!(
            r.authorized(1, 8, 10, 500, t(1), t(901)),
            Some(FoldAnomaly::HoldAuthorisedTwice)
        );
        assert_eq!(r, before);
        assert_eq!(
            r.ended(2, RedemptionStatus::Captured, 100, t(5)),
            Some(FoldAnomaly::HoldEndedUnauthorised)
        );
        assert_eq!(r, before);
        assert_eq!(r.ended(1, RedemptionStatus::Captured, 60, t(5)), None);
        let captured = r.clone();
        assert_eq!(
            r.ended(1, RedemptionStatus::Voided, 0, t(6)),
            Some(FoldAnomaly::HoldEndedTwice)
        );
        assert_eq!(r, captured);
        assert_eq!(
            (r.all[0].status, r.all[0].captured),
            (RedemptionStatus::Captured, 60)
        );
        assert_eq!(r.held_by(9), 0);
    }

    #[test]
    fn captures_outside_the_period_are_left_out() {
        let r = three_captures([600, 10, 20]);
        let got = r.captures_between(7, 10, 600, 10);
        assert_eq!((got.captures, got.total, got.truncated), (2, 200, false));
        let holds: Vec<u128> = got.lines.iter().map(|x| x.hold).collect();
        assert_eq!(holds, [2, 3]);
    }
}

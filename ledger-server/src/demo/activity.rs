//! A volunteer's year: when they serve, for whom, how long, and what they do with the
//! hours afterwards.
//!
//! # Shape of the year (why these numbers)
//! - **Who serves how much**: Hangzhou recorded 3.27 M participations of 2.68 M
//!   registered volunteers in a year, ~3 hours each, and many registered volunteers do
//!   not serve at all. Participations per active volunteer follow a Pareto tail
//!   ([`PARTICIPATION_TAIL`]): most serve once or twice, one in a thousand serves a
//!   hundred times or more (hundreds of hours). Party and league members aim for the
//!   20-hour annual minimum, and some fall short.
//! - **When**: a seasonal day weight ([`day_weight`]) with peaks around 5 March (Lei
//!   Feng day) and 5 December (International Volunteer Day), more on weekends.
//! - **How long**: quarter-hour intervals of one to eight hours; some organisations
//!   record tenths below the interval (hours may be less than the interval, never more).
//! - **Corrections**: a few deposits are reversed a day or so later (recorded twice, or
//!   a no-show recorded as present); a few spends, exchanges, transfers and donations
//!   are reversed too. A few hours are back-filled as honour hours at month end.
//! - **Reliability**: a few sign-ups end in a no-show (recorded that evening, no
//!   hours); residents rate the service behind some deposits, mostly four or five.
//! - **Partners**: a few percent of volunteers consent to a bank for a volunteer loan
//!   (some for a few weeks, some withdrawn), and the bank makes inquiries under it;
//!   some volunteers with points redeem them at merchants (holds mostly captured, some
//!   partly, some voided, a few left to expire).
//!
//! # Rules kept by construction
//! Every step is valid when it runs, so a rejection is a generator bug:
//! - intervals of one volunteer never overlap and stay within their service day (so
//!   no day exceeds 24 hours); service days exclude the last day of the year so that
//!   every check-out is recorded within the year;
//! - a deposit runs after its interval ended (check-out plus verification delay);
//! - outflows (spend, exchange, transfer, donation) take at most the credit hours the
//!   volunteer holds at that moment, counting only deposits that are never reversed and
//!   ignoring refunds and received hours (so a later reversal can never overdraw);
//! - family transfers go to a neighbour (`v±1`) registered since the start of the year;
//! - redemptions draw only on points of exchanges that are never reversed, less what
//!   earlier captures took, and one hold ends before the next (so an exchange's
//!   reversal always finds its points);
//! - inquiries fall strictly inside their consent (after the grant, before its
//!   expiry and its withdrawal); a withdrawal comes before the expiry;
//! - closures are the last steps of the year.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ledger_core::domain::commands::CONSENT_DAYS_MAX;
use ledger_core::domain::events::{FamilyRelation, SpendPurpose};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::city::{City, Volunteer};
use super::scenario::{
    Action, Counterparty, DepositStep, Part, ReverseOn, Scenario, Step, RANK_CLOSURE,
    RANK_EARLY_VOLUNTEER, RANK_YEAR, TOKEN_TTL_SECS,
};
use super::{rng, STREAM_ACTIVITY_BASE};

/// Pareto shape of participations per active volunteer: with 1.6, half serve once, one
/// in ~40 ten times or more, one in ~1,600 a hundred times or more.
const PARTICIPATION_TAIL: f64 = 1.6;
/// Most participations of one volunteer in a year (about one a day, the most the
/// bulletins' "leading volunteers" report).
const PARTICIPATIONS_MAX: u32 = 330;
/// Registered volunteers who do not serve in the year, in percent.
const INACTIVE_PERCENT: u32 = 30;
/// Members who do not serve at all, in percent (fewer than others).
const MEMBER_INACTIVE_PERCENT: u32 = 8;
/// Participations members aim for: seven of ~3 hours reach the 20-hour minimum.
const MEMBER_PARTICIPATIONS: (u32, u32) = (4, 9);
/// Days of the year service can fall on: all but the last, so that every check-out
/// (and its verification delay) is recorded within the year.
const SERVICE_DAYS: u32 = 364;
/// Quarter hours in a day.
const QUARTERS: u32 = 96;
/// Earliest and latest local start hours of an activity.
const START_HOURS: (u32, u32) = (7, 19);
/// Interval lengths in quarter hours and their weights: mostly two to four hours.
const DURATIONS_Q: [(u32, f64); 8] = [
    (4, 10.0),
    (6, 10.0),
    (8, 25.0),
    (10, 10.0),
    (12, 20.0),
    (16, 15.0),
    (24, 5.0),
    (32, 5.0),
];
/// Deposits recorded in tenths below the interval (organisations that deduct breaks).
const TENTHS_PERCENT: u32 = 15;
/// Deposits back-filled by an administrator as honour hours at month end.
const HONOUR_PERCENT: u32 = 6;
/// Credit deposits reversed later (recorded twice, or a no-show recorded as present).
const DEPOSIT_REVERSAL_PER_MILLE: u32 = 20;
/// Delay between check-out and the organisation's verification, in minutes.
const VERIFY_DELAY_MIN: (i64, i64) = (10, 180);
/// Share of volunteers with service who do each kind of outflow, in percent.
const SPENDERS_PERCENT: u32 = 20;
const EXCHANGERS_PERCENT: u32 = 25;
const FAMILY_TRANSFER_PERCENT: u32 = 3;
const DONORS_PERCENT: u32 = 5;
/// Outflows reversed later, per mille.
const OUTFLOW_REVERSAL_PER_MILLE: u32 = 30;
/// Volunteers who close their account at the end of the year (moved away), per mille.
const CLOSURE_PER_MILLE: u32 = 10;
/// Sign-ups where the volunteer did not come, per mille of participations.
const NO_SHOW_PER_MILLE: u32 = 30;
/// Credit deposits whose service a resident rates, in percent.
const RATED_PERCENT: u32 = 30;
/// Ratings 1 to 5 and their weights: most residents are pleased.
const RATINGS: [(u8, f64); 5] = [(1, 2.0), (2, 3.0), (3, 10.0), (4, 30.0), (5, 55.0)];
/// Points an hour buys at the demo's exchange rate (`ExchangeRate::default`, which
/// `demo::ledger_config` keeps; a test checks they agree). Integer so the points
/// budget stays in exact hundredths.
const DEMO_POINTS_PER_HOUR: u32 = 10;
/// Volunteers who consent to a bank during the year, per mille (a few percent: those
/// applying for a volunteer loan).
const CONSENT_PER_MILLE: u32 = 40;
/// Consents to the demo access file's bank (`bank-demo`), in percent; the rest go to
/// the other bank.
const CONSENT_TO_DEMO_BANK_PERCENT: u32 = 70;
/// Consents for a few weeks (a single loan decision), in percent; most of them have
/// expired by the end of the year.
const CONSENT_SHORT_PERCENT: u32 = 25;
const CONSENT_SHORT_DAYS: (i64, i64) = (30, 90);
/// The other consents last most of a year, up to the ledger's maximum.
const CONSENT_LONG_DAYS: (i64, i64) = (180, CONSENT_DAYS_MAX);
/// Consents the volunteer withdraws before they expire, in percent.
const CONSENT_WITHDRAWN_PERCENT: u32 = 20;
/// Earliest withdrawal after the grant, in days (below `CONSENT_SHORT_DAYS.0`).
const CONSENT_WITHDRAW_AFTER_DAYS: i64 = 7;
/// Consents under which the bank makes inquiries, in percent, and at most how many.
const INQUIRED_PERCENT: u32 = 60;
const INQUIRIES_MAX: u32 = 3;
/// Volunteers with points who redeem some at merchants, in percent, and how often.
const REDEEMERS_PERCENT: u32 = 40;
const REDEMPTIONS: (u32, u32) = (1, 3);
/// Whole points a volunteer wants to redeem at once (before the budget caps it).
const REDEMPTION_POINTS: (u32, u32) = (2, 30);
/// Least time between two holds of one volunteer: longer than a hold can stay open
/// (timeout plus `EXPIRY_RECORDED_SECS_MAX`), so each hold has ended before the next
/// and the points budget only needs to count captures.
const REDEMPTION_SPACING_SECS: i64 = 3600;
/// Longest a till takes to capture or void, in seconds: well within the hold timeout.
const REDEMPTION_TILL_SECS_MAX: i64 = 600;
/// Longest after a hold's expiry until the sweeper records it, in seconds.
const EXPIRY_RECORDED_SECS_MAX: i64 = 1800;

/// Step numbers of the sample volunteer's consent steps: far above any volunteer's own
/// (a year has at most a few thousand steps per volunteer), so request ids stay unique.
const SAMPLE_CONSENT_SEQ: u16 = u16::MAX - 16;

/// How a hold ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Captured,
    PartlyCaptured,
    Voided,
    Expired,
}

/// Most holds are captured in full; some partly (the basket cost less), some voided
/// (the customer changed their mind), a few forgotten until they expire.
const REDEMPTION_OUTCOMES: [(Outcome, f64); 4] = [
    (Outcome::Captured, 60.0),
    (Outcome::PartlyCaptured, 15.0),
    (Outcome::Voided, 15.0),
    (Outcome::Expired, 10.0),
];
/// Smallest outflow worth recording: a tenth of an hour (in hundredths).
const OUTFLOW_MIN: u32 = 10;
/// Local hour after which nothing but closures runs on the last day.
const CUTOFF_HOUR: u32 = 21;
/// Local hour of closures on the last day.
const CLOSURE_HOUR: u32 = 22;

/// The seasonal weight of day `d` (0-based) of the year: peaks around 5 March and 5
/// December, a weekend lift.
pub fn day_weight(year: i32, d: u32) -> f64 {
    let date = NaiveDate::from_yo_opt(year, d + 1).expect("a day of the year");
    let weekend = matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
    let bump = |month: u32, day: u32, height: f64| {
        let peak = NaiveDate::from_ymd_opt(year, month, day).expect("a valid date");
        let x = (date - peak).num_days() as f64 / 5.0;
        height * (-x * x / 2.0).exp()
    };
    let base = if weekend { 1.6 } else { 1.0 };
    base + bump(3, 5, 5.0) + bump(12, 5, 4.0)
}

/// Cumulative day weights, for sampling a service day by binary search.
pub struct Season {
    cumulative: Vec<f64>,
}

impl Season {
    pub fn new(year: i32) -> Self {
        let mut total = 0.0;
        let cumulative = (0..SERVICE_DAYS)
            .map(|d| {
                total += day_weight(year, d);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, r: &mut ChaCha8Rng) -> u32 {
        let total = *self.cumulative.last().expect("a year has days");
        let x = r.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c <= x) as u32
    }
}

/// Instants of the demo year in the ledger's calendar.
pub struct Calendar {
    /// The first instant of the year in the ledger's calendar, as UTC seconds.
    year_start: i64,
}

impl Calendar {
    pub fn new(year: i32, offset_secs: i32) -> Self {
        let local = NaiveDate::from_ymd_opt(year, 1, 1)
            .expect("a valid year")
            .and_hms_opt(0, 0, 0)
            .expect("midnight");
        Self {
            year_start: local.and_utc().timestamp() - i64::from(offset_secs),
        }
    }

    /// UTC seconds of local day `d`, quarter hour `q`.
    pub fn at(&self, d: u32, q: u32) -> i64 {
        self.year_start + i64::from(d) * 86_400 + i64::from(q) * 900
    }

    pub fn instant(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("demo instants are in range")
    }

    /// The last moment ordinary steps may run.
    pub fn cutoff(&self, days_in_year: u32) -> i64 {
        self.at(days_in_year - 1, CUTOFF_HOUR * 4)
    }

    pub fn closing(&self, days_in_year: u32) -> i64 {
        self.at(days_in_year - 1, CLOSURE_HOUR * 4)
    }

    /// Local 09:00 of `date`.
    pub fn morning(&self, year: i32, date: NaiveDate) -> i64 {
        debug_assert_eq!(date.year(), year);
        self.at(date.ordinal0(), 9 * 4)
    }
}

fn weighted<T: Copy>(r: &mut ChaCha8Rng, table: &[(T, f64)]) -> T {
    let total: f64 = table.iter().map(|(_, w)| w).sum();
    let mut x = r.random::<f64>() * total;
    for (v, w) in table {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

fn percent(r: &mut ChaCha8Rng, p: u32) -> bool {
    r.random_range(0..100) < p
}

fn per_mille(r: &mut ChaCha8Rng, p: u32) -> bool {
    r.random_range(0..1000) < p
}

/// The generator's view of the year, shared by every volunteer.
pub struct Year<'a> {
    pub city: &'a City,
    pub scenario: &'a Scenario,
    pub season: Season,
    pub calendar: Calendar,
    pub days: u32,
}

impl<'a> Year<'a> {
    pub fn new(city: &'a City, scenario: &'a Scenario, offset_secs: i32) -> Self {
        let days = if NaiveDate::from_ymd_opt(city.year, 2, 29).is_some() {
            366
        } else {
            365
        };
        Self {
            city,
            scenario,
            season: Season::new(city.year),
            calendar: Calendar::new(city.year, offset_secs),
            days,
        }
    }

    /// Every step of volunteer `v`'s year, appended to `out` (unsorted).
    pub fn volunteer_steps(&self, v: &Volunteer, out: &mut Vec<Step>) {
        let mut r = rng(self.city.seed, STREAM_ACTIVITY_BASE + u64::from(v.index));
        let cutoff = self.calendar.cutoff(self.days);
        let mut steps: Vec<Step> = Vec::new();
        let mut seq: u16 = 0;
        let mut push = |steps: &mut Vec<Step>, at: i64, action: Action| {
            steps.push(Step {
                at: at.min(cutoff),
                rank: RANK_YEAR,
                owner: v.index,
                seq,
                action,
            });
            seq += 1;
            seq - 1
        };

        let first_day = if v.joins_during_year {
            let at = self.calendar.morning(self.city.year, v.joined_on);
            push(&mut steps, at, Action::RegisterVolunteer);
            v.joined_on.ordinal0() + 1
        } else {
            // Registered before the year: the ledger holds them from its first instant.
            push(
                &mut steps,
                self.calendar.at(0, 0),
                Action::RegisterVolunteer,
            );
            if let Some(s) = steps.last_mut() {
                s.rank = RANK_EARLY_VOLUNTEER;
            }
            0
        };

        // Exchanges that stand (never reversed): (instant, hundredths of a point).
        let mut exchanges: Vec<(i64, u32)> = Vec::new();
        if self.scenario.has(Part::Service) {
            let n = self.participations(&mut r, v);
            // Occupied quarter-hour ranges per service day.
            let mut taken: std::collections::HashMap<u32, Vec<(u32, u32)>> =
                std::collections::HashMap::new();
            let mut deposits: Vec<(u16, i64, u32)> = Vec::new();
            for _ in 0..n {
                let Some(day) = (0..20)
                    .map(|_| self.season.sample(&mut r))
                    .find(|&d| d >= first_day)
                else {
                    continue;
                };
                let dur = weighted(&mut r, &DURATIONS_Q);
                let mut start = r.random_range(START_HOURS.0 * 4..=START_HOURS.1 * 4);
                let day_taken = taken.entry(day).or_default();
                if day_taken.iter().any(|&(s, e)| start < e && s < start + dur) {
                    // Serve again later that day, after the last activity and a break.
                    start = day_taken.iter().map(|&(_, e)| e).max().unwrap_or(0) + 2;
                }
                if start + dur > QUARTERS {
                    continue;
                }
                day_taken.push((start, start + dur));
                let mut hundredths = dur * 25;
                if percent(&mut r, TENTHS_PERCENT) {
                    hundredths -= 10 * r.random_range(1..=3);
                }
                let honour =
                    self.scenario.has(Part::HonourHours) && percent(&mut r, HONOUR_PERCENT);
                let org = self.organisation_for(&mut r, v);
                let ended = self.calendar.at(day, start + dur);
                if self.scenario.has(Part::NoShows) && per_mille(&mut r, NO_SHOW_PER_MILLE) {
                    // Signed up, did not come: the organisation records it that evening.
                    let step = DepositStep {
                        organisation: org,
                        day: day as u16,
                        start_q: start as u8,
                        duration_q: dur as u8,
                        hundredths,
                        honour: false,
                    };
                    push(&mut steps, ended + 3600, Action::NoShow(step));
                    continue;
                }
                let at = if honour {
                    // Back-filled by an administrator in the first days of next month.
                    let date = NaiveDate::from_yo_opt(self.city.year, day + 1).expect("a day");
                    let next = if date.month() == 12 {
                        cutoff
                    } else {
                        let first = NaiveDate::from_ymd_opt(self.city.year, date.month() + 1, 1)
                            .expect("a month");
                        self.calendar.morning(self.city.year, first) + 86_400 * r.random_range(0..5)
                    };
                    next.max(ended + 3600)
                } else {
                    ended + 60 * r.random_range(VERIFY_DELAY_MIN.0..=VERIFY_DELAY_MIN.1)
                };
                let s = push(
                    &mut steps,
                    at,
                    Action::Deposit(DepositStep {
                        organisation: org,
                        day: day as u16,
                        start_q: start as u8,
                        duration_q: dur as u8,
                        hundredths,
                        honour,
                    }),
                );
                let reversed = !honour
                    && self.scenario.has(Part::Corrections)
                    && per_mille(&mut r, DEPOSIT_REVERSAL_PER_MILLE);
                if reversed {
                    let reason = if r.random_bool(0.5) {
                        "recorded twice"
                    } else {
                        "no-show: recorded as present by mistake"
                    };
                    push(
                        &mut steps,
                        at + 3600 * r.random_range(2..72),
                        Action::Reverse {
                            original: s,
                            on: ReverseOn::Owner,
                            reason,
                        },
                    );
                } else if !honour {
                    deposits.push((s, at, hundredths));
                    if self.scenario.has(Part::Ratings) && percent(&mut r, RATED_PERCENT) {
                        let rating = weighted(&mut r, &RATINGS);
                        push(
                            &mut steps,
                            at + 3600 * r.random_range(1..48),
                            Action::Rate { deposit: s, rating },
                        );
                    }
                }
            }
            if !deposits.is_empty() {
                exchanges = self.outflows(&mut r, v, &deposits, &mut steps, &mut push);
            }
        }

        if self.scenario.has(Part::Closures) && per_mille(&mut r, CLOSURE_PER_MILLE) {
            push(&mut steps, 0, Action::Close);
            if let Some(s) = steps.last_mut() {
                // After every other step of the year.
                s.at = self.calendar.closing(self.days);
                s.rank = RANK_CLOSURE;
            }
        }
        // Drawn after everything above, so adding these parts left the rest of each
        // volunteer's year as it was.
        if self.scenario.has(Part::Consents) && per_mille(&mut r, CONSENT_PER_MILLE) {
            self.consents(&mut r, first_day, &mut steps, &mut push);
        }
        if self.scenario.has(Part::Redemptions)
            && !exchanges.is_empty()
            && percent(&mut r, REDEEMERS_PERCENT)
        {
            self.redemptions(&mut r, &exchanges, &mut steps, &mut push);
        }
        out.extend(steps);
    }

    /// The sample volunteer's consent: to the demo access file's bank, granted on the
    /// year's second-to-last day for as long as the ledger allows, with two inquiries
    /// that day, so the documentation's bank calls find a current consent and a
    /// history. Replaces whatever consent steps the volunteer drew (the caller drops
    /// them), so nothing withdraws it.
    pub fn sample_consent(&self, volunteer: u32) -> Vec<Step> {
        let day = self.days - 2;
        let granted = self.calendar.at(day, 10 * 4);
        let step = |seq: u16, at: i64, action: Action| Step {
            at,
            rank: RANK_YEAR,
            owner: volunteer,
            seq,
            action,
        };
        vec![
            step(
                SAMPLE_CONSENT_SEQ,
                granted,
                Action::GrantConsent {
                    bank: 0,
                    expires_at: granted + 86_400 * CONSENT_DAYS_MAX,
                },
            ),
            step(
                SAMPLE_CONSENT_SEQ + 1,
                self.calendar.at(day, 11 * 4),
                Action::Inquiry { bank: 0 },
            ),
            step(
                SAMPLE_CONSENT_SEQ + 2,
                self.calendar.at(day, 15 * 4),
                Action::Inquiry { bank: 0 },
            ),
        ]
    }

    /// One consent to a bank, from a day after registration: most for the better part
    /// of a year, some for a few weeks (expired by the year's end), some withdrawn
    /// before their expiry; while current, the bank may make a few inquiries.
    fn consents(
        &self,
        r: &mut ChaCha8Rng,
        first_day: u32,
        steps: &mut Vec<Step>,
        push: &mut impl FnMut(&mut Vec<Step>, i64, Action) -> u16,
    ) {
        let cutoff = self.calendar.cutoff(self.days);
        if first_day + 1 >= SERVICE_DAYS {
            return;
        }
        let day = r.random_range(first_day..SERVICE_DAYS);
        // Office hours, local 10:00 to 16:45.
        let granted = self.calendar.at(day, r.random_range(40..68));
        let bank = if percent(r, CONSENT_TO_DEMO_BANK_PERCENT) {
            0
        } else {
            r.random_range(1..self.city.banks.len() as u8)
        };
        let days = if percent(r, CONSENT_SHORT_PERCENT) {
            r.random_range(CONSENT_SHORT_DAYS.0..=CONSENT_SHORT_DAYS.1)
        } else {
            r.random_range(CONSENT_LONG_DAYS.0..=CONSENT_LONG_DAYS.1)
        };
        let expires_at = granted + 86_400 * days;
        push(steps, granted, Action::GrantConsent { bank, expires_at });
        // The consent ends (for inquiries) at its expiry, its withdrawal or the year's
        // cutoff, whichever comes first.
        let mut ends = expires_at.min(cutoff);
        if percent(r, CONSENT_WITHDRAWN_PERCENT) {
            let at = granted + 86_400 * r.random_range(CONSENT_WITHDRAW_AFTER_DAYS..days);
            if at < ends {
                push(steps, at, Action::WithdrawConsent { bank });
                ends = at;
            }
        }
        if percent(r, INQUIRED_PERCENT) {
            let (from, to) = (granted + 3600, ends - 60);
            let mut times: Vec<i64> = (0..r.random_range(1..=INQUIRIES_MAX))
                .filter(|_| from < to)
                .map(|_| r.random_range(from..to))
                .collect();
            times.sort_unstable();
            for at in times {
                push(steps, at, Action::Inquiry { bank });
            }
        }
    }

    /// Points redeemed at merchants, each within what the volunteer's standing
    /// exchanges gave them before it (less what earlier redemptions captured), one
    /// at a time: every hold ends (captured, voided or expired) before the next.
    fn redemptions(
        &self,
        r: &mut ChaCha8Rng,
        exchanges: &[(i64, u32)],
        steps: &mut Vec<Step>,
        push: &mut impl FnMut(&mut Vec<Step>, i64, Action) -> u16,
    ) {
        let hold_secs = super::ledger_config().redemption_hold_timeout.num_seconds();
        let first = exchanges.iter().map(|e| e.0).min().expect("exchanges");
        // The last hold and everything after it end before the cutoff.
        let last = self.calendar.cutoff(self.days) - REDEMPTION_SPACING_SECS;
        if first + 3600 >= last {
            return;
        }
        let mut times: Vec<i64> = (0..r.random_range(REDEMPTIONS.0..=REDEMPTIONS.1))
            .map(|_| r.random_range(first + 3600..last))
            .collect();
        times.sort_unstable();
        let mut credits = exchanges.to_vec();
        credits.sort_unstable();
        let (mut budget, mut next_credit, mut previous) = (0u32, 0usize, i64::MIN);
        for at in times {
            if at < previous.saturating_add(REDEMPTION_SPACING_SECS) {
                continue;
            }
            while next_credit < credits.len() && credits[next_credit].0 < at {
                budget += credits[next_credit].1;
                next_credit += 1;
            }
            let want = 100 * r.random_range(REDEMPTION_POINTS.0..=REDEMPTION_POINTS.1);
            // Whole points, at most what is available.
            let points = want.min(budget) / 100 * 100;
            if points < 100 {
                continue;
            }
            previous = at;
            let merchant = r.random_range(0..self.city.merchants.len() as u32);
            // A token for a round maximum at or above the amount, as an app offers.
            let points_max = points.div_ceil(1000) * 1000;
            let hold = push(
                steps,
                at,
                Action::Authorize {
                    merchant,
                    points,
                    points_max,
                    token_expires_at: at + TOKEN_TTL_SECS,
                },
            );
            let ended = at + r.random_range(30..REDEMPTION_TILL_SECS_MAX);
            match weighted(r, &REDEMPTION_OUTCOMES) {
                outcome @ (Outcome::Captured | Outcome::PartlyCaptured) => {
                    // A partial capture takes at least a point less, at least a point.
                    let taken = if outcome == Outcome::PartlyCaptured && points >= 200 {
                        100 * r.random_range(1..points / 100)
                    } else {
                        points
                    };
                    budget -= taken;
                    push(
                        steps,
                        ended,
                        Action::Capture {
                            hold,
                            merchant,
                            points: taken,
                        },
                    );
                }
                Outcome::Voided => {
                    push(steps, ended, Action::Void { hold, merchant });
                }
                Outcome::Expired => {
                    // Recorded by the sweeper a little after the expiry.
                    let at = at + hold_secs + r.random_range(5..EXPIRY_RECORDED_SECS_MAX);
                    push(steps, at, Action::ExpireHold { hold });
                }
            }
        }
    }

    fn participations(&self, r: &mut ChaCha8Rng, v: &Volunteer) -> u32 {
        let inactive = if v.member {
            MEMBER_INACTIVE_PERCENT
        } else {
            INACTIVE_PERCENT
        };
        if percent(r, inactive) {
            return 0;
        }
        let u: f64 = 1.0 - r.random::<f64>(); // (0, 1]
        let tail = (u.powf(-1.0 / PARTICIPATION_TAIL)).floor() as u32;
        let n = tail.clamp(1, PARTICIPATIONS_MAX);
        if v.member {
            n.max(r.random_range(MEMBER_PARTICIPATIONS.0..=MEMBER_PARTICIPATIONS.1))
        } else {
            n
        }
    }

    /// Mostly an organisation of the volunteer's own district.
    fn organisation_for(&self, r: &mut ChaCha8Rng, v: &Volunteer) -> u32 {
        let local = &self.city.organisations_by_district[v.district];
        if !local.is_empty() && r.random_range(0..10) < 8 {
            local[r.random_range(0..local.len())]
        } else {
            r.random_range(0..self.city.organisations.len() as u32)
        }
    }

    /// A family member: a neighbour registered since the start of the year.
    fn family_member(&self, v: &Volunteer) -> Option<u32> {
        [v.index.checked_add(1), v.index.checked_sub(1)]
            .into_iter()
            .flatten()
            .filter(|&i| i < self.city.volunteers)
            .find(|&i| !self.city.volunteer(i).joins_during_year)
    }

    /// Spends, exchanges, family transfers and donations, each sized to what the
    /// volunteer holds when it runs (see the module documentation).
    ///
    /// Returns the exchanges that stand (never reversed), as (instant, hundredths of a
    /// point): what redemptions may draw on.
    fn outflows(
        &self,
        r: &mut ChaCha8Rng,
        v: &Volunteer,
        deposits: &[(u16, i64, u32)],
        steps: &mut Vec<Step>,
        push: &mut impl FnMut(&mut Vec<Step>, i64, Action) -> u16,
    ) -> Vec<(i64, u32)> {
        let first = deposits.iter().map(|d| d.1).min().expect("deposits");
        let cutoff = self.calendar.cutoff(self.days);
        let mut wanted: Vec<(i64, Action)> = Vec::new();
        let when = |r: &mut ChaCha8Rng| r.random_range(first + 3600..cutoff.max(first + 7200));
        let n = self.city.organisations.len() as u32;
        if self.scenario.has(Part::Spending) && percent(r, SPENDERS_PERCENT) {
            for _ in 0..r.random_range(1..=3) {
                let (purpose, counterparty) = match r.random_range(0..10) {
                    0..=6 => (
                        SpendPurpose::ReceivedService,
                        Counterparty::Organisation(r.random_range(0..n)),
                    ),
                    7 => (
                        SpendPurpose::FineOffset,
                        Counterparty::Organisation(r.random_range(0..n)),
                    ),
                    _ => (
                        SpendPurpose::Other,
                        Counterparty::Merchant(r.random_range(0..self.city.merchants.len() as u32)),
                    ),
                };
                let hundredths = 100 * r.random_range(1..=4);
                wanted.push((
                    when(r),
                    Action::Spend {
                        purpose,
                        counterparty,
                        hundredths,
                    },
                ));
            }
        }
        if self.scenario.has(Part::Exchanges) && percent(r, EXCHANGERS_PERCENT) {
            for _ in 0..r.random_range(1..=2) {
                let hundredths = 50 * r.random_range(2..=20);
                wanted.push((when(r), Action::Exchange { hundredths }));
            }
        }
        if self.scenario.has(Part::FamilyTransfers) && percent(r, FAMILY_TRANSFER_PERCENT) {
            if let Some(to) = self.family_member(v) {
                let relation = [
                    FamilyRelation::Spouse,
                    FamilyRelation::Parent,
                    FamilyRelation::Child,
                    FamilyRelation::Sibling,
                    FamilyRelation::Grandparent,
                    FamilyRelation::Grandchild,
                ][r.random_range(0..6)];
                let hundredths = 100 * r.random_range(1..=5);
                wanted.push((
                    when(r),
                    Action::Transfer {
                        to,
                        relation,
                        hundredths,
                    },
                ));
            }
        }
        if self.scenario.has(Part::Donations) && percent(r, DONORS_PERCENT) {
            let project = r.random_range(0..self.city.projects.len() as u32);
            let hundredths = 100 * r.random_range(1..=5);
            // Many donate around International Volunteer Day.
            let at = if r.random_bool(0.4) {
                let dec5 = NaiveDate::from_ymd_opt(self.city.year, 12, 5).expect("a date");
                self.calendar
                    .morning(self.city.year, dec5)
                    .max(first + 3600)
            } else {
                when(r)
            };
            wanted.push((
                at,
                Action::Donate {
                    project,
                    hundredths,
                },
            ));
        }
        let mut exchanges = Vec::new();
        if wanted.is_empty() {
            return exchanges;
        }
        wanted.sort_by_key(|w| w.0);

        // Walk deposits and outflows in time order with the spendable budget.
        let mut credits: Vec<(i64, u32)> = deposits.iter().map(|d| (d.1, d.2)).collect();
        credits.sort_unstable();
        let mut budget: u32 = 0;
        let mut next_credit = 0;
        for (at, mut action) in wanted {
            let at = at.min(cutoff);
            while next_credit < credits.len() && credits[next_credit].0 < at {
                budget += credits[next_credit].1;
                next_credit += 1;
            }
            let want = match &mut action {
                Action::Spend { hundredths, .. }
                | Action::Exchange { hundredths }
                | Action::Transfer { hundredths, .. }
                | Action::Donate { hundredths, .. } => hundredths,
                _ => unreachable!("only outflows are wanted"),
            };
            // Whole tenths of an hour, at most what is held.
            let take = (*want).min(budget) / 10 * 10;
            if take < OUTFLOW_MIN {
                continue;
            }
            *want = take;
            budget -= take;
            let on = match &action {
                Action::Transfer { to, .. } => ReverseOn::Volunteer(*to),
                Action::Donate { project, .. } => ReverseOn::Project(*project),
                _ => ReverseOn::Owner,
            };
            let s = push(steps, at, action);
            let reversed =
                self.scenario.has(Part::Corrections) && per_mille(r, OUTFLOW_REVERSAL_PER_MILLE);
            if let Action::Exchange { hundredths } = action {
                if !reversed {
                    // Ten points an hour (the demo's rate): hundredths of an hour × 10
                    // are hundredths of a point.
                    exchanges.push((at, hundredths * DEMO_POINTS_PER_HOUR));
                }
            }
            if reversed {
                push(
                    steps,
                    at + 3600 * r.random_range(1..48),
                    Action::Reverse {
                        original: s,
                        on,
                        reason: "entered against the wrong volunteer",
                    },
                );
            }
        }
        exchanges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_points_budget_uses_the_demo_ledgers_rate() {
        assert_eq!(
            rust_decimal::Decimal::from(DEMO_POINTS_PER_HOUR),
            super::super::ledger_config().exchange_rate.points_per_hour
        );
    }

    #[test]
    fn a_hold_has_ended_before_the_next_one() {
        let timeout = super::super::ledger_config()
            .redemption_hold_timeout
            .num_seconds();
        assert!(REDEMPTION_TILL_SECS_MAX < timeout);
        assert!(timeout + EXPIRY_RECORDED_SECS_MAX < REDEMPTION_SPACING_SECS);
        assert!(CONSENT_WITHDRAW_AFTER_DAYS < CONSENT_SHORT_DAYS.0);
    }
}

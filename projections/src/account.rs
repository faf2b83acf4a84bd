//! The account read model: balances, lifetime hours, activity count, service dates,
//! hours per month (for "this year", rankings and annual minimums), and the account
//! view; plus transaction-history entries read from an account's stream.
//!
//! "Lifetime" and every count here are over *standing* deposits: a reversed deposit
//! leaves them as if it had never been recorded (its reversal is the correction), so a
//! star level or a ranking never counts service the ledger has taken back.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::events::{DecodeError, LedgerEvent};
use ledger_core::domain::postings::net_for;
use ledger_core::domain::units::Unit;
use ledger_core::log::{Position, RecordedEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::{day_from_number, decimal, month_key, Centi, DepositRef, ReadModels};
use crate::star::{StarLevel, StarPolicy};

/// What kind of account a row is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Seen in a posting or a reference before (or without) its registration.
    #[default]
    Unregistered,
    Volunteer,
    Organisation,
    Merchant,
    Project,
    Bank,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unregistered => "unregistered",
            Self::Volunteer => "volunteer",
            Self::Organisation => "organisation",
            Self::Merchant => "merchant",
            Self::Project => "project",
            Self::Bank => "bank",
        }
    }
}

/// Standing service in one month.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthTotal {
    /// `year * 12 + month0` ([`crate::model::month_key`]).
    pub month: i32,
    pub centi: Centi,
    /// Standing deposits (participations).
    pub count: u32,
}

/// One account's row. Vectors are kept sorted by key (they are part of the digest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub kind: Kind,
    pub closed: bool,
    /// When the account was closed, Unix seconds of its `closed_at` (0 while open). An
    /// instant, not a day: the read models know no calendar, and which year a closure
    /// falls in is a question of the ledger's (`--calendar-offset`), so the query that
    /// asks it applies the calendar (`annual.rs`). A UTC day here put a closure at
    /// 01:00 on 1 January in a UTC+8 ledger into the year before.
    pub closed_at: i64,
    /// Region node (volunteers, organisations) or `NO_REGION`.
    pub region: u32,
    /// Day number of the join date (volunteers).
    pub joined_on: i32,
    /// Balances in hundredths: credit hours, honour hours, points.
    pub balances: [Centi; 3],
    /// Standing deposited hours: credit, honour.
    pub lifetime: [Centi; 2],
    /// Standing deposits.
    pub activities: u32,
    /// Standing service days (day number, deposits that day).
    pub days: Vec<(i32, u32)>,
    pub months: Vec<MonthTotal>,
    /// Organisations that verified standing deposits (account index, deposits).
    pub orgs: Vec<(u32, u32)>,
    /// Projects: hours donated to it, and hours spent with it as counterparty.
    pub donated: Centi,
    pub served: Centi,
}

/// Bump a count in a sorted `(key, count)` vector by `sign`; returns the count before.
fn bump<K: Ord + Copy>(v: &mut Vec<(K, u32)>, key: K, sign: i64) -> u32 {
    match v.binary_search_by(|e| e.0.cmp(&key)) {
        Ok(i) => {
            let before = v[i].1;
            let after = if sign > 0 { before + 1 } else { before - 1 };
            if after == 0 {
                v.remove(i);
            } else {
                v[i].1 = after;
            }
            before
        }
        Err(i) => {
            assert!(sign > 0, "removing a deposit that was never added");
            v.insert(i, (key, 1));
            0
        }
    }
}

/// How a deposit changed a volunteer's activity in its (all-time, year, month)
/// periods: +1 became active, -1 became inactive, 0 no change.
pub type Transitions = [i8; 3];

fn transition(before: u32, sign: i64) -> i8 {
    match (before, sign > 0) {
        (0, true) => 1,
        (1, false) => -1,
        _ => 0,
    }
}

impl AccountRow {
    pub(crate) fn deposit_effect(
        &mut self,
        dep: &DepositRef,
        organisation: u32,
        day: NaiveDate,
        c: Centi,
        sign: i64,
    ) -> Transitions {
        self.lifetime[usize::from(dep.honour())] += c;
        let all_before = self.activities;
        self.activities = if sign > 0 {
            self.activities + 1
        } else {
            self.activities - 1
        };
        bump(&mut self.days, dep.day, sign);
        bump(&mut self.orgs, organisation, sign);
        let year_before = self.year_count(day.year());
        let m = month_key(day);
        let month_before = match self.months.binary_search_by(|e| e.month.cmp(&m)) {
            Ok(i) => {
                let before = self.months[i].count;
                let e = &mut self.months[i];
                e.centi += c;
                e.count = if sign > 0 { e.count + 1 } else { e.count - 1 };
                if e.count == 0 {
                    assert_eq!(e.centi, 0, "a month with no deposits has no hours");
                    self.months.remove(i);
                }
                before
            }
            Err(i) => {
                assert!(sign > 0, "removing a deposit from an empty month");
                self.months.insert(
                    i,
                    MonthTotal {
                        month: m,
                        centi: c,
                        count: 1,
                    },
                );
                0
            }
        };
        [
            transition(all_before, sign),
            transition(year_before, sign),
            transition(month_before, sign),
        ]
    }

    /// Prefetch the heap blocks a deposit's effect reads (`prefetch.rs`).
    pub(crate) fn prefetch_blocks(&self) {
        crate::prefetch::block_of(&self.days);
        crate::prefetch::block_of(&self.months);
        crate::prefetch::block_of(&self.orgs);
    }

    fn year_months(&self, year: i32) -> &[MonthTotal] {
        let from = year.saturating_mul(12);
        let lo = self.months.partition_point(|e| e.month < from);
        let hi = self
            .months
            .partition_point(|e| e.month < from.saturating_add(12));
        &self.months[lo..hi]
    }

    fn year_count(&self, year: i32) -> u32 {
        self.year_months(year).iter().map(|e| e.count).sum()
    }

    /// Standing hours (credit and honour) with service dates in `year`.
    pub fn year_centi(&self, year: i32) -> Centi {
        self.year_months(year).iter().map(|e| e.centi).sum()
    }

    /// Standing hours in the months `[from, to]` (month keys), or all time.
    pub fn period_centi(&self, range: Option<(i32, i32)>) -> Centi {
        match range {
            None => self.lifetime[0] + self.lifetime[1],
            Some((from, to)) => {
                let lo = self.months.partition_point(|e| e.month < from);
                let hi = self.months.partition_point(|e| e.month <= to);
                self.months[lo..hi].iter().map(|e| e.centi).sum()
            }
        }
    }

    /// Lifetime verified hours (credit + honour, standing).
    pub fn lifetime_centi(&self) -> Centi {
        self.lifetime[0] + self.lifetime[1]
    }
}

/// The account view (`GetAccount`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub account: String,
    pub kind: &'static str,
    pub closed: bool,
    pub region: Option<String>,
    pub spendable_hours: Decimal,
    pub honour_hours: Decimal,
    pub points_available: Decimal,
    /// Points on merchants' open redemption holds (`redemptions.rs`): held from the
    /// hold until its capture, void or recorded expiry.
    pub points_held: Decimal,
    pub lifetime_credit_hours: Decimal,
    pub lifetime_honour_hours: Decimal,
    pub hours_this_year: Decimal,
    pub year: i32,
    pub activity_count: u32,
    pub first_service_date: Option<NaiveDate>,
    pub last_service_date: Option<NaiveDate>,
    pub star: StarLevel,
}

impl ReadModels {
    /// The view of `account` at `now`, "this year" being `year` (the caller's calendar
    /// year: the fold has no clock), star level under `policy`. None if never
    /// registered. `now` decides which holds still hold ([`crate::redemptions::Redemptions::held_by_at`]).
    pub fn account_view(
        &self,
        account: &str,
        year: i32,
        policy: &StarPolicy,
        now: DateTime<Utc>,
    ) -> Option<AccountView> {
        let i = self.account_index(account)?;
        let row = self.row(i);
        if row.kind == Kind::Unregistered {
            return None;
        }
        let held = self.redemptions.held_by_at(i, now);
        Some(AccountView {
            account: account.to_owned(),
            kind: row.kind.name(),
            closed: row.closed,
            region: (row.region != crate::model::NO_REGION)
                .then(|| self.regions.path(row.region).to_owned()),
            spendable_hours: decimal(row.balances[0]),
            honour_hours: decimal(row.balances[1]),
            // Holds past their expiry free their points at once, as in commands, not
            // when the sweeper records the expiry.
            points_available: decimal(row.balances[2] - held),
            points_held: decimal(held),
            lifetime_credit_hours: decimal(row.lifetime[0]),
            lifetime_honour_hours: decimal(row.lifetime[1]),
            hours_this_year: decimal(row.year_centi(year)),
            year,
            activity_count: row.activities,
            first_service_date: row.days.first().map(|d| day_from_number(d.0)),
            last_service_date: row.days.last().map(|d| day_from_number(d.0)),
            star: policy.level(decimal(row.lifetime_centi())),
        })
    }
}

/// One line of an account's transaction history (`ListTransactions`), read from the
/// account's own stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub position: Position,
    pub stream_version: u64,
    pub transaction_id: String,
    /// `HoursDeposited.v1`, …
    pub event_type: String,
    /// What the entry did to this account, per unit (zero when nothing).
    pub hours: Decimal,
    pub honour_hours: Decimal,
    pub points: Decimal,
    /// The other party (organisation, counterparty, receiver, sender), if any.
    pub counterparty: Option<String>,
    /// For a reversal: the transaction it reverses; for a rating: the deposit.
    pub refers_to: Option<String>,
    pub service_date: Option<NaiveDate>,
    pub recorded_at: DateTime<Utc>,
}

/// When an event was recorded (registration and closure carry their own instants).
pub fn recorded_at(e: &LedgerEvent) -> DateTime<Utc> {
    e.recorded_at()
}

/// The history line of an event of `account`'s stream.
pub fn history_entry(account: &AccountId, r: &RecordedEvent) -> Result<HistoryEntry, DecodeError> {
    let e = LedgerEvent::decode(&r.event_type, &r.data)?;
    // At two places always: a line with no movement in a unit says "0.00", as the
    // proto documents, not "0" (a zero Decimal from nothing has scale 0).
    let net = |unit| {
        let mut d = e
            .postings()
            .map_or(Decimal::ZERO, |p| net_for(p, account, unit));
        d.rescale(2);
        d
    };
    let (mut hours, honour_hours, points) =
        (net(Unit::Hours), net(Unit::HonourHours), net(Unit::Points));
    let mut transaction_id = r.id.to_string();
    let (counterparty, refers_to, service_date) = match &e {
        LedgerEvent::HoursDeposited(d) => {
            (Some(d.organisation.to_string()), None, Some(d.service_date))
        }
        LedgerEvent::HoursSpent(s) => (Some(s.counterparty.to_string()), None, None),
        LedgerEvent::HoursTransferred(t) => (Some(t.to.to_string()), None, None),
        LedgerEvent::HoursDonated(d) => (Some(d.project.to_string()), None, None),
        LedgerEvent::TransactionReversed(t) => (None, Some(t.original.to_string()), None),
        LedgerEvent::HoursReceived(rc) => {
            // Receipts carry no postings; the credit is the receipt's amount, and the
            // line is filed under the originating transaction (what a reversal names).
            hours = rc.hours.value();
            transaction_id = rc.transaction.to_string();
            (Some(rc.from.to_string()), None, None)
        }
        LedgerEvent::NoShowRecorded(n) => {
            (Some(n.organisation.to_string()), None, Some(n.service_date))
        }
        LedgerEvent::ServiceRated(s) => (None, Some(s.deposit.to_string()), None),
        LedgerEvent::ConsentGranted(c) => (Some(c.bank.to_string()), None, None),
        LedgerEvent::ConsentWithdrawn(c) => {
            (Some(c.bank.to_string()), Some(c.consent.to_string()), None)
        }
        LedgerEvent::CreditReportServed(c) => {
            (Some(c.bank.to_string()), Some(c.consent.to_string()), None)
        }
        // Holds move nothing; captures carry their postings (points leave).
        LedgerEvent::RedemptionAuthorized(h) => (Some(h.merchant.to_string()), None, None),
        LedgerEvent::RedemptionCaptured(c) => {
            (Some(c.merchant.to_string()), Some(c.hold.to_string()), None)
        }
        LedgerEvent::RedemptionVoided(v) => {
            (Some(v.merchant.to_string()), Some(v.hold.to_string()), None)
        }
        LedgerEvent::RedemptionHoldExpired(x) => {
            (Some(x.merchant.to_string()), Some(x.hold.to_string()), None)
        }
        LedgerEvent::AccountRegistered(_)
        | LedgerEvent::AccountClosed(_)
        | LedgerEvent::HoursExchanged(_) => (None, None, None),
    };
    Ok(HistoryEntry {
        position: r.position,
        stream_version: r.version,
        transaction_id,
        event_type: r.event_type.clone(),
        hours,
        honour_hours,
        points,
        counterparty,
        refers_to,
        service_date,
        recorded_at: recorded_at(&e),
    })
}

//! `DepositHours`: record verified service as hours in a volunteer's account.
//! Event: `HoursDeposited.v1`, postings `system:hour-issuance → volunteer` in credit
//! hours or honour hours.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{require_open, Context, Kind};
use crate::domain::account::{AccountId, SystemAccount};
use crate::domain::events::{HourKind, HoursDeposited, LedgerEvent};
use crate::domain::ids::{ActivityId, Category, RequestId, VerifierId};
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::units::{Hours, Unit};

/// Most hours one volunteer's recorded service may add up to on one calendar day:
/// a day has 24 of them. Counts credit and honour hours alike (both are service).
pub const HOURS_PER_DAY_MAX: Decimal = Decimal::from_parts(24, 0, 0, false, 0);

/// Longest single service interval. A record longer than a day is a data-entry error
/// (or several records that belong apart).
pub const SERVICE_INTERVAL_MAX: Duration = Duration::hours(24);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DepositHours {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    /// The organisation that ran the activity and verified the service.
    pub organisation: AccountId,
    pub activity: ActivityId,
    /// The calendar day of the service, as the platform records it.
    #[serde(with = "crate::domain::serde_time::date")]
    pub service_date: NaiveDate,
    /// The service interval `[started_at, ended_at)`.
    #[serde(with = "crate::domain::serde_time::utc")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub ended_at: DateTime<Utc>,
    pub category: Category,
    pub hours: Hours,
    pub kind: HourKind,
    pub verifier: VerifierId,
}

impl DepositHours {
    /// Rules, in the order they are checked:
    /// 1. the volunteer is a registered, open volunteer; the organisation a registered,
    ///    open organisation (`UnknownAccount`, `AccountClosed`, `WrongAccountKind`);
    /// 2. the service date is not after today in the ledger's calendar
    ///    (`ServiceDateInFuture`), and the interval has ended
    ///    (`ServiceIntervalInFuture`);
    /// 3. the interval is non-empty and at most [`SERVICE_INTERVAL_MAX`]
    ///    (`InvalidServiceInterval`), starts on the service date in the ledger's
    ///    calendar (`ServiceDateMismatch`: otherwise the per-day rule could be dodged
    ///    by naming another day), and the hours fit in it (`HoursExceedInterval`);
    /// 4. the volunteer's standing service on that day plus these hours is at most
    ///    [`HOURS_PER_DAY_MAX`] (`HoursPerDayExceeded`); a service that runs past
    ///    midnight counts toward the day it started;
    /// 5. the interval overlaps no standing interval of the volunteer
    ///    (`OverlappingService`; a reversed deposit no longer stands).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        require_open(&ctx.other(&self.organisation), Kind::Organisation)?;

        let today = ctx.today();
        if self.service_date > today {
            return Err(Rejection::ServiceDateInFuture {
                service_date: self.service_date,
                today,
            });
        }
        if self.ended_at > ctx.now {
            return Err(Rejection::ServiceIntervalInFuture {
                ended_at: self.ended_at,
                now: ctx.now,
            });
        }
        let length = self.ended_at - self.started_at;
        if length <= Duration::zero() || length > SERVICE_INTERVAL_MAX {
            return Err(Rejection::InvalidServiceInterval {
                started_at: self.started_at,
                ended_at: self.ended_at,
            });
        }
        let started_on = ctx.day_of(self.started_at);
        if started_on != self.service_date {
            return Err(Rejection::ServiceDateMismatch {
                service_date: self.service_date,
                started_on,
            });
        }
        let interval_hours = Decimal::from(length.num_seconds()) / Decimal::from(3600);
        if self.hours.value() > interval_hours {
            return Err(Rejection::HoursExceedInterval {
                hours: self.hours.value(),
                // Toward zero: hours have at most two places, so the shown interval
                // is then below them too (35 s rounded to nearest read "0.01 hours
                // do not fit in … 0.01 hours").
                interval_hours: interval_hours
                    .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero),
            });
        }
        let recorded = ctx.target.hours_on(self.service_date);
        if recorded + self.hours.value() > HOURS_PER_DAY_MAX {
            return Err(Rejection::HoursPerDayExceeded {
                account: self.volunteer.clone(),
                service_date: self.service_date,
                recorded,
                requested: self.hours.value(),
                max: HOURS_PER_DAY_MAX,
            });
        }
        if let Some(slot) = ctx
            .target
            .overlapping_service(self.started_at, self.ended_at)
        {
            return Err(Rejection::OverlappingService {
                account: self.volunteer.clone(),
                started_at: self.started_at,
                ended_at: self.ended_at,
                existing: slot.transaction,
            });
        }

        let unit = match self.kind {
            HourKind::Credit => Unit::Hours,
            HourKind::Honour => Unit::HonourHours,
        };
        let postings = movement(
            unit,
            &AccountId::system(SystemAccount::HourIssuance),
            &self.volunteer,
            self.hours.value(),
        )
        .to_vec();
        Ok(LedgerEvent::HoursDeposited(HoursDeposited {
            transaction: ctx.transaction,
            volunteer: self.volunteer.clone(),
            organisation: self.organisation.clone(),
            activity: self.activity.clone(),
            service_date: self.service_date,
            started_at: self.started_at,
            ended_at: self.ended_at,
            category: self.category.clone(),
            hours: self.hours,
            kind: self.kind,
            verifier: self.verifier.clone(),
            postings,
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use crate::domain::events::{HourKind, LedgerEvent};
    use crate::domain::units::Unit;

    fn at(w: &World, cmd: super::DepositHours) -> Result<LedgerEvent, crate::domain::Rejection> {
        w.when(&Command::DepositHours(cmd))
    }

    #[test]
    fn given_a_volunteer_when_depositing_credit_hours_then_spendable_and_balanced() {
        let mut w = World::standard();
        let d = deposit(
            "v1",
            "2.5",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T12:00:00Z"),
        );
        let e = at(&w, d.clone()).unwrap();
        let LedgerEvent::HoursDeposited(ref dep) = e else {
            panic!()
        };
        assert_eq!(dep.hours.to_string(), "2.50");
        assert!(crate::domain::postings::balanced(&dep.postings));
        w.given(Command::DepositHours(d));
        assert_eq!(w.balance("v1", Unit::Hours), dec("2.5"));
        assert_eq!(w.balance("v1", Unit::HonourHours), dec("0"));
    }

    #[test]
    fn given_a_volunteer_when_depositing_honour_hours_then_not_spendable() {
        let mut w = World::standard();
        let mut d = deposit(
            "v1",
            "3",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T12:00:00Z"),
        );
        d.kind = HourKind::Honour;
        w.given(Command::DepositHours(d));
        assert_eq!(w.balance("v1", Unit::Hours), dec("0"));
        assert_eq!(w.balance("v1", Unit::HonourHours), dec("3"));
        assert_eq!(reason(w.when(&spend("v1", "1"))), "INSUFFICIENT_HOURS");
    }

    #[test]
    fn when_the_service_date_is_in_the_future_then_rejected() {
        let w = World::standard();
        let mut d = deposit(
            "v1",
            "1",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T10:00:00Z"),
        );
        d.service_date = day("2026-11-21");
        assert_eq!(reason(at(&w, d)), "SERVICE_DATE_IN_FUTURE");
        // Today is fine.
        let d = deposit(
            "v1",
            "1",
            ts("2026-11-20T09:00:00Z"),
            ts("2026-11-20T10:00:00Z"),
        );
        assert!(at(&w, d).is_ok());
    }

    #[test]
    fn when_the_interval_has_not_ended_then_rejected() {
        let w = World::standard();
        let d = deposit(
            "v1",
            "1",
            ts("2026-11-20T11:30:00Z"),
            ts("2026-11-20T12:30:00Z"),
        );
        assert_eq!(reason(at(&w, d)), "SERVICE_INTERVAL_IN_FUTURE");
    }

    #[test]
    fn when_the_interval_is_empty_inverted_or_too_long_then_rejected() {
        let w = World::standard();
        for (s, e) in [
            ("2026-11-19T10:00:00Z", "2026-11-19T10:00:00Z"),
            ("2026-11-19T10:00:00Z", "2026-11-19T09:00:00Z"),
            ("2026-11-17T10:00:00Z", "2026-11-18T10:00:01Z"),
        ] {
            assert_eq!(
                reason(at(&w, deposit("v1", "1", ts(s), ts(e)))),
                "INVALID_SERVICE_INTERVAL"
            );
        }
    }

    #[test]
    fn when_hours_exceed_the_interval_then_rejected() {
        let w = World::standard();
        let d = deposit(
            "v1",
            "1.01",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T10:00:00Z"),
        );
        assert_eq!(reason(at(&w, d)), "HOURS_EXCEED_INTERVAL");
        // 0.01 hours in 35 seconds: the message shows the interval rounded toward
        // zero, so it never reads as if the hours fit.
        let d = deposit(
            "v1",
            "0.01",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T09:00:35Z"),
        );
        let e = at(&w, d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0.01 hours do not fit in a service interval of 0.00 hours"
        );
    }

    #[test]
    fn given_20_hours_on_a_day_when_depositing_5_more_then_hours_per_day_exceeded() {
        let mut w = World::standard();
        w.given(Command::DepositHours(deposit(
            "v1",
            "20",
            ts("2026-11-18T00:00:00Z"),
            ts("2026-11-18T20:00:00Z"),
        )));
        let d = deposit(
            "v1",
            "4.5",
            ts("2026-11-18T20:00:00Z"),
            ts("2026-11-19T00:00:00Z"),
        );
        // The interval is 4 hours: 4.5 do not fit in it, whatever the day holds.
        assert_eq!(reason(at(&w, d)), "HOURS_EXCEED_INTERVAL");
        // A service that starts on the 18th and runs past midnight counts toward the
        // 18th.
        let mut d = deposit(
            "v1",
            "5",
            ts("2026-11-18T20:00:00Z"),
            ts("2026-11-19T02:00:00Z"),
        );
        assert_eq!(reason(at(&w, d.clone())), "HOURS_PER_DAY_EXCEEDED");
        d.hours = h("4");
        assert!(at(&w, d).is_ok(), "exactly 24 hours on a day is allowed");
    }

    #[test]
    fn when_the_interval_starts_on_another_day_than_the_service_date_then_mismatch() {
        let mut w = World::standard();
        let mut d = deposit(
            "v1",
            "1",
            ts("2026-11-19T00:30:00Z"),
            ts("2026-11-19T01:30:00Z"),
        );
        d.service_date = day("2026-11-18");
        assert_eq!(reason(at(&w, d.clone())), "SERVICE_DATE_MISMATCH");
        // In a UTC+8 calendar 2026-11-18T17:00Z is already the 19th, 01:00.
        w.calendar = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        let mut local = deposit(
            "v1",
            "1",
            ts("2026-11-18T17:00:00Z"),
            ts("2026-11-18T18:00:00Z"),
        );
        assert_eq!(reason(at(&w, local.clone())), "SERVICE_DATE_MISMATCH");
        local.service_date = day("2026-11-19");
        assert!(at(&w, local).is_ok());
    }

    #[test]
    fn given_recorded_service_when_depositing_an_overlapping_interval_then_rejected() {
        let mut w = World::standard();
        let first = w.given(Command::DepositHours(deposit(
            "v1",
            "2",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T11:00:00Z"),
        )));
        for (s, e) in [
            ("2026-11-19T10:00:00Z", "2026-11-19T12:00:00Z"),
            ("2026-11-19T08:00:00Z", "2026-11-19T09:00:01Z"),
            ("2026-11-19T09:30:00Z", "2026-11-19T10:00:00Z"),
            ("2026-11-19T08:00:00Z", "2026-11-19T12:00:00Z"),
        ] {
            let r = at(&w, deposit("v1", "0.5", ts(s), ts(e)));
            assert!(
                matches!(r, Err(crate::domain::Rejection::OverlappingService { existing, .. }) if existing == first),
                "{s}..{e}"
            );
        }
        // Touching intervals do not overlap ([start, end) is half-open).
        assert!(at(
            &w,
            deposit(
                "v1",
                "1",
                ts("2026-11-19T11:00:00Z"),
                ts("2026-11-19T12:00:00Z")
            )
        )
        .is_ok());
        assert!(at(
            &w,
            deposit(
                "v1",
                "1",
                ts("2026-11-19T08:00:00Z"),
                ts("2026-11-19T09:00:00Z")
            )
        )
        .is_ok());
        // Another volunteer's service is theirs.
        assert!(at(
            &w,
            deposit(
                "v2",
                "1",
                ts("2026-11-19T09:00:00Z"),
                ts("2026-11-19T10:00:00Z")
            )
        )
        .is_ok());
    }

    #[test]
    fn given_a_reversed_deposit_when_depositing_its_interval_again_then_accepted() {
        let mut w = World::standard();
        let d = deposit(
            "v1",
            "2",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T11:00:00Z"),
        );
        let tx = w.given(Command::DepositHours(d));
        w.given(reverse("v1", tx));
        assert_eq!(w.state("v1").hours_on(day("2026-11-19")), dec("0"));
        let again = deposit(
            "v1",
            "2",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T11:00:00Z"),
        );
        assert!(at(&w, again).is_ok());
    }

    #[test]
    fn when_the_volunteer_or_organisation_is_unknown_closed_or_of_the_wrong_kind_then_rejected() {
        let mut w = World::standard();
        let ok = || {
            deposit(
                "v1",
                "1",
                ts("2026-11-19T09:00:00Z"),
                ts("2026-11-19T10:00:00Z"),
            )
        };
        let mut d = ok();
        d.volunteer = acc("ghost");
        assert_eq!(reason(at(&w, d)), "UNKNOWN_ACCOUNT");
        let mut d = ok();
        d.organisation = acc("ghost-org");
        assert_eq!(reason(at(&w, d)), "UNKNOWN_ACCOUNT");
        let mut d = ok();
        d.organisation = acc("m");
        assert_eq!(reason(at(&w, d)), "WRONG_ACCOUNT_KIND");
        let mut d = ok();
        d.volunteer = acc("org");
        assert_eq!(reason(at(&w, d)), "WRONG_ACCOUNT_KIND");
        w.given(close("org"));
        assert_eq!(reason(at(&w, ok())), "ACCOUNT_CLOSED");
    }
}

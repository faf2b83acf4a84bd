//! `ExchangeHours`: the reward exchange, credit hours for points at the configured,
//! versioned rate. Event: `HoursExchanged.v1` recording the rate version and rate;
//! postings `volunteer → system:hours-redeemed` (hours) and
//! `system:point-issuance → volunteer` (points).

use serde::Serialize;

use super::{require_hours, require_open, Context, Kind};
use crate::domain::account::{AccountId, SystemAccount};
use crate::domain::events::{HoursExchanged, LedgerEvent};
use crate::domain::ids::RequestId;
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::units::{Hours, Unexchangeable, Unit};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExchangeHours {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub hours: Hours,
    /// The rate version the client quoted to the volunteer, if any: the exchange is
    /// refused if the rate changed since (the volunteer agreed to a price).
    pub expected_rate_version: Option<u32>,
}

impl ExchangeHours {
    /// Rules: open volunteer; the quoted rate version (if given) is current
    /// (`ExchangeRateChanged`); the hours buy at least 0.01 point, rounding toward zero
    /// (`ExchangeTooSmall`), and at most the points per-entry maximum
    /// (`ExchangeTooLarge`); the volunteer holds the credit hours (`InsufficientHours`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        if let Some(expected) = self.expected_rate_version {
            if expected != ctx.rate.version {
                return Err(Rejection::ExchangeRateChanged {
                    expected,
                    current: ctx.rate.version,
                });
            }
        }
        let points = ctx.rate.points_for(self.hours).map_err(|why| match why {
            Unexchangeable::TooSmall => Rejection::ExchangeTooSmall {
                hours: self.hours.value(),
                rate_version: ctx.rate.version,
            },
            Unexchangeable::TooLarge { hours_max } => Rejection::ExchangeTooLarge {
                hours: self.hours.value(),
                rate_version: ctx.rate.version,
                hours_max,
            },
        })?;
        require_hours(ctx.target, self.hours.value())?;
        let mut postings = movement(
            Unit::Hours,
            &self.volunteer,
            &AccountId::system(SystemAccount::HoursRedeemed),
            self.hours.value(),
        )
        .to_vec();
        postings.extend(movement(
            Unit::Points,
            &AccountId::system(SystemAccount::PointIssuance),
            &self.volunteer,
            points.value(),
        ));
        Ok(LedgerEvent::HoursExchanged(HoursExchanged {
            transaction: ctx.transaction,
            volunteer: self.volunteer.clone(),
            hours: self.hours,
            points,
            rate: *ctx.rate,
            postings,
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use crate::domain::events::LedgerEvent;
    use crate::domain::units::{ExchangeRate, Unit};

    #[test]
    fn given_5_hours_when_exchanging_2_at_10_per_hour_then_20_points() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let c = exchange("v1", "2");
        let LedgerEvent::HoursExchanged(e) = w.when(&c).unwrap() else {
            panic!()
        };
        assert_eq!(e.points.to_string(), "20.00");
        assert_eq!(e.rate, ExchangeRate::default());
        w.given(c);
        assert_eq!(w.balance("v1", Unit::Hours), dec("3"));
        assert_eq!(w.balance("v1", Unit::Points), dec("20"));
    }

    #[test]
    fn given_an_odd_rate_when_exchanging_then_points_round_toward_zero() {
        let mut w = World::standard();
        w.rate = ExchangeRate {
            version: 7,
            points_per_hour: dec("1.337"),
        };
        w.credit("v1", "5", 0);
        let LedgerEvent::HoursExchanged(e) = w.when(&exchange("v1", "1.5")).unwrap() else {
            panic!()
        };
        // 1.5 × 1.337 = 2.0055 → 2.00
        assert_eq!(e.points.to_string(), "2.00");
        assert_eq!(e.rate.version, 7);
    }

    /// A platform's probe: this was refused as `EXCHANGE_TOO_SMALL`, "exchange more
    /// hours", and checked before the balance.
    #[test]
    fn when_the_hours_buy_more_than_the_per_entry_maximum_then_exchange_too_large() {
        let mut w = World::standard();
        w.rate = ExchangeRate {
            version: 3,
            points_per_hour: dec("2000"),
        };
        for day in 0..21 {
            w.credit("v1", "24", day);
        }
        let refused = w.when(&exchange("v1", "500.01")).unwrap_err();
        assert_eq!(refused.reason(), "EXCHANGE_TOO_LARGE");
        assert!(
            refused
                .to_string()
                .contains("exchange at most 500.00 hours"),
            "{refused}"
        );
        let LedgerEvent::HoursExchanged(e) = w.when(&exchange("v1", "500")).unwrap() else {
            panic!()
        };
        assert_eq!(e.points.to_string(), "1000000.00");
    }

    #[test]
    fn when_exchanging_too_few_hours_for_a_hundredth_then_exchange_too_small() {
        let mut w = World::standard();
        w.rate = ExchangeRate {
            version: 2,
            points_per_hour: dec("0.5"),
        };
        w.credit("v1", "5", 0);
        assert_eq!(
            reason(w.when(&exchange("v1", "0.01"))),
            "EXCHANGE_TOO_SMALL"
        );
    }

    #[test]
    fn when_the_quoted_rate_is_stale_then_exchange_rate_changed() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let mut c = exchange("v1", "1");
        if let Command::ExchangeHours(x) = &mut c {
            x.expected_rate_version = Some(99);
        }
        assert_eq!(reason(w.when(&c)), "EXCHANGE_RATE_CHANGED");
    }

    #[test]
    fn given_1_hour_when_exchanging_2_then_insufficient_hours() {
        let mut w = World::standard();
        w.credit("v1", "1", 0);
        assert_eq!(reason(w.when(&exchange("v1", "2"))), "INSUFFICIENT_HOURS");
    }
}

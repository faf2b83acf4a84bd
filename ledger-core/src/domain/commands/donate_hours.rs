//! `DonateHours`: give credit hours to a public project. Event: `HoursDonated.v1` on
//! the donor's stream, postings `from → project`; the project's stream gets a receipt
//! (`HoursReceived.v1`), as for transfers.

use serde::Serialize;

use super::{require_hours, require_open, Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{HoursDonated, LedgerEvent};
use crate::domain::ids::RequestId;
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::units::{Hours, Unit};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DonateHours {
    pub request_id: RequestId,
    pub from: AccountId,
    pub project: AccountId,
    pub hours: Hours,
}

impl DonateHours {
    /// Rules: the donor is an open volunteer, the project an open project; the donor
    /// holds the credit hours (`InsufficientHours`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        require_open(&ctx.other(&self.project), Kind::Project)?;
        require_hours(ctx.target, self.hours.value())?;
        Ok(LedgerEvent::HoursDonated(HoursDonated {
            transaction: ctx.transaction,
            from: self.from.clone(),
            project: self.project.clone(),
            hours: self.hours,
            postings: movement(Unit::Hours, &self.from, &self.project, self.hours.value()).to_vec(),
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::domain::units::Unit;

    #[test]
    fn given_5_hours_when_donating_3_then_the_project_holds_them() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        w.given(donate("v1", "p", "3"));
        assert_eq!(w.balance("v1", Unit::Hours), dec("2"));
        assert_eq!(w.balance("p", Unit::Hours), dec("3"));
    }

    #[test]
    fn when_donating_to_a_non_project_or_more_than_held_then_rejected() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        assert_eq!(
            reason(w.when(&donate("v1", "v2", "1"))),
            "WRONG_ACCOUNT_KIND"
        );
        assert_eq!(
            reason(w.when(&donate("v1", "ghost", "1"))),
            "UNKNOWN_ACCOUNT"
        );
        assert_eq!(
            reason(w.when(&donate("v1", "p", "6"))),
            "INSUFFICIENT_HOURS"
        );
        w.given(close("p"));
        assert_eq!(reason(w.when(&donate("v1", "p", "1"))), "ACCOUNT_CLOSED");
    }
}

//! `TransferHours`: give credit hours to a family member's account. Event:
//! `HoursTransferred.v1` on the *sender's* stream, postings `from → to`; the receiver's
//! stream gets a receipt (`HoursReceived.v1`) from the handler once it commits.
//!
//! Option not taken: appending to both streams. The log is atomic per stream only; one
//! event on the stream whose rule (the sender's balance) is checked, plus an idempotent
//! receipt, keeps every transaction a single atomic append.

use serde::Serialize;

use super::{require_hours, require_open, Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{FamilyRelation, HoursTransferred, LedgerEvent};
use crate::domain::ids::RequestId;
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::units::{Hours, Unit};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransferHours {
    pub request_id: RequestId,
    pub from: AccountId,
    pub to: AccountId,
    /// How the receiver is related to the sender, as declared by the platform.
    pub relation: FamilyRelation,
    pub hours: Hours,
}

impl TransferHours {
    /// Rules: sender and receiver are distinct, open volunteers (`SelfTransfer`,
    /// `UnknownAccount`, `AccountClosed`, `WrongAccountKind`); the sender holds the
    /// credit hours (`InsufficientHours`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        if self.to == self.from {
            return Err(Rejection::SelfTransfer);
        }
        require_open(&ctx.other(&self.to), Kind::Volunteer)?;
        require_hours(ctx.target, self.hours.value())?;
        Ok(LedgerEvent::HoursTransferred(HoursTransferred {
            transaction: ctx.transaction,
            from: self.from.clone(),
            to: self.to.clone(),
            relation: self.relation,
            hours: self.hours,
            postings: movement(Unit::Hours, &self.from, &self.to, self.hours.value()).to_vec(),
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::domain::units::Unit;

    #[test]
    fn given_5_hours_when_transferring_2_then_both_balances_move() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        w.given(transfer("v1", "v2", "2"));
        assert_eq!(w.balance("v1", Unit::Hours), dec("3"));
        assert_eq!(w.balance("v2", Unit::Hours), dec("2"));
        // The receiver can spend what it received.
        w.given(spend("v2", "2"));
        assert_eq!(w.balance("v2", Unit::Hours), dec("0"));
    }

    #[test]
    fn when_transferring_more_than_held_then_insufficient_hours() {
        let mut w = World::standard();
        w.credit("v1", "1", 0);
        assert_eq!(
            reason(w.when(&transfer("v1", "v2", "1.01"))),
            "INSUFFICIENT_HOURS"
        );
    }

    #[test]
    fn when_the_receiver_is_self_unknown_or_not_a_volunteer_then_rejected() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        assert_eq!(reason(w.when(&transfer("v1", "v1", "1"))), "SELF_TRANSFER");
        assert_eq!(
            reason(w.when(&transfer("v1", "ghost", "1"))),
            "UNKNOWN_ACCOUNT"
        );
        assert_eq!(
            reason(w.when(&transfer("v1", "p", "1"))),
            "WRONG_ACCOUNT_KIND"
        );
    }
}

//! `SpendHours`: use credit hours for received service, a fine offset or another
//! purpose, with a counterparty. Event: `HoursSpent.v1`, postings
//! `volunteer → system:services`.
//!
//! The counterparty (who provided the service, which office accepted the offset) is
//! recorded, not credited: hours are a claim on the time bank, not money paid to the
//! provider. Option not taken: crediting the counterparty, which would let an
//! organisation accumulate and re-spend volunteers' hours.

use serde::Serialize;

use super::{require_hours, require_open, Context, Kind};
use crate::domain::account::{AccountId, SystemAccount};
use crate::domain::events::{HoursSpent, LedgerEvent, SpendPurpose};
use crate::domain::ids::{Note, RequestId};
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::units::{Hours, Unit};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpendHours {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub purpose: SpendPurpose,
    pub counterparty: AccountId,
    pub hours: Hours,
    pub memo: Option<Note>,
}

impl SpendHours {
    /// Rules: the volunteer is an open volunteer; the counterparty a registered, open
    /// account other than the volunteer; the volunteer holds the hours as credit hours
    /// (`InsufficientHours`: spendable hours never go below zero).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        if self.counterparty == self.volunteer {
            return Err(Rejection::SelfTransfer);
        }
        require_open(&ctx.other(&self.counterparty), Kind::Any)?;
        require_hours(ctx.target, self.hours.value())?;
        let postings = movement(
            Unit::Hours,
            &self.volunteer,
            &AccountId::system(SystemAccount::Services),
            self.hours.value(),
        )
        .to_vec();
        Ok(LedgerEvent::HoursSpent(HoursSpent {
            transaction: ctx.transaction,
            volunteer: self.volunteer.clone(),
            purpose: self.purpose,
            counterparty: self.counterparty.clone(),
            hours: self.hours,
            memo: self.memo.clone(),
            postings,
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::domain::units::Unit;

    #[test]
    fn given_5_hours_when_spending_5_then_balance_is_zero() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        w.given(spend("v1", "5"));
        assert_eq!(w.balance("v1", Unit::Hours), dec("0"));
    }

    #[test]
    fn given_5_hours_when_spending_5_01_then_insufficient_hours() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        assert_eq!(reason(w.when(&spend("v1", "5.01"))), "INSUFFICIENT_HOURS");
    }

    #[test]
    fn when_the_counterparty_is_unknown_or_the_spender_then_rejected() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let mut c = spend("v1", "1");
        if let super::super::Command::SpendHours(s) = &mut c {
            s.counterparty = acc("nobody");
        }
        assert_eq!(reason(w.when(&c)), "UNKNOWN_ACCOUNT");
        if let super::super::Command::SpendHours(s) = &mut c {
            s.counterparty = acc("v1");
        }
        assert_eq!(reason(w.when(&c)), "SELF_TRANSFER");
    }

    #[test]
    fn when_a_non_volunteer_spends_then_wrong_account_kind() {
        let w = World::standard();
        assert_eq!(reason(w.when(&spend("p", "1"))), "WRONG_ACCOUNT_KIND");
    }
}

//! `CloseAccount`: stop an account taking new movements. Closing is an event
//! (`AccountClosed.v1`); the history and balances stay on record.
//!
//! Option not taken: requiring a zero balance. Honour hours can never be spent, so a
//! volunteer holding any could never close; the balance simply freezes. Reversals
//! (corrections) and receipts of transactions already committed still apply to a closed
//! account, because refusing them would leave the books wrong.

use serde::Serialize;

use super::{require_open, Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{AccountClosed, LedgerEvent};
use crate::domain::ids::{Note, RequestId};
use crate::domain::rejection::Rejection;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CloseAccount {
    pub request_id: RequestId,
    pub account: AccountId,
    pub reason: Note,
}

impl CloseAccount {
    /// Rules: the account is registered and open.
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Any)?;
        Ok(LedgerEvent::AccountClosed(AccountClosed {
            account: self.account.clone(),
            reason: self.reason.clone(),
            closed_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::domain::events::LedgerEvent;

    #[test]
    fn given_an_open_account_when_closing_then_account_closed() {
        let w = World::standard();
        let e = w.when(&close("m")).unwrap();
        assert!(matches!(e, LedgerEvent::AccountClosed(ref c) if c.account.as_str() == "m"));
    }

    #[test]
    fn given_no_account_when_closing_then_unknown_account() {
        let w = World::new();
        assert_eq!(reason(w.when(&close("ghost"))), "UNKNOWN_ACCOUNT");
    }

    #[test]
    fn given_a_closed_account_when_closing_again_then_account_closed() {
        let mut w = World::standard();
        w.given(close("v1"));
        assert_eq!(reason(w.when(&close("v1"))), "ACCOUNT_CLOSED");
    }

    #[test]
    fn given_a_closed_volunteer_when_moving_hours_then_account_closed() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        w.given(close("v1"));
        assert_eq!(reason(w.when(&spend("v1", "1"))), "ACCOUNT_CLOSED");
        w.credit("v2", "5", 1);
        assert_eq!(reason(w.when(&transfer("v2", "v1", "1"))), "ACCOUNT_CLOSED");
    }
}

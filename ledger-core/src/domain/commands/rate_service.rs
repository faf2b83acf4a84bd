//! `RateService`: the served party rates the service a deposit records, 1 to 5. Event:
//! `ServiceRated.v1` on the volunteer's stream (the stream that holds the deposit), an
//! input to the credit score's reliability factor (`docs/credit-score.md`).
//!
//! A deposit is rated at most once, and only while it stands: a rating of a reversed
//! record would score service that, on the books, never happened. Option not taken:
//! letting a later rating replace an earlier one; a bank must be able to re-derive the
//! score it saw, and "last rating wins" would make ratings an editable field.

use serde::Serialize;

use super::{Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{LedgerEvent, ServiceRated};
use crate::domain::ids::{RequestId, TransactionId, VerifierId};
use crate::domain::rejection::{InputProblem, Rejection};
use crate::domain::state::TxKind;

/// Lowest and highest rating.
pub const RATING_MIN: u8 = 1;
pub const RATING_MAX: u8 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateService {
    pub request_id: RequestId,
    /// The volunteer whose deposit is rated (the stream that holds it).
    pub volunteer: AccountId,
    pub deposit: TransactionId,
    /// 1..=5; checked at the edge and again here.
    pub rating: u8,
    /// Who rated (the resident or the dispatching centre's staff id).
    pub rater: VerifierId,
}

impl RateService {
    /// Rules: the rating is 1..=5 (`FIELD_MALFORMED`); the account is a registered
    /// volunteer (closed is fine: the service was given before); it holds the
    /// transaction (`UnknownTransaction`), which is a deposit (`NotADeposit`), not
    /// reversed (`DepositReversed`) and not rated yet (`AlreadyRated`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        if !(RATING_MIN..=RATING_MAX).contains(&self.rating) {
            return Err(Rejection::input(
                "rating",
                InputProblem::Malformed(format!(
                    "is {}; a rating is {RATING_MIN} to {RATING_MAX}",
                    self.rating
                )),
            ));
        }
        let state = ctx.target;
        match &state.kind {
            None => {
                return Err(Rejection::UnknownAccount {
                    account: self.volunteer.clone(),
                })
            }
            Some(k) if k.name() != Kind::Volunteer.name() => {
                return Err(Rejection::WrongAccountKind {
                    account: self.volunteer.clone(),
                    expected: Kind::Volunteer.name(),
                    actual: k.name(),
                })
            }
            Some(_) => {}
        }
        let Some(tx) = state.transactions.get(&self.deposit) else {
            return Err(Rejection::UnknownTransaction {
                account: self.volunteer.clone(),
                transaction: self.deposit,
            });
        };
        if tx.kind != TxKind::Deposit {
            return Err(Rejection::NotADeposit {
                transaction: self.deposit,
                kind: tx.kind.name(),
            });
        }
        if tx.reversed_by.is_some() {
            return Err(Rejection::DepositReversed {
                transaction: self.deposit,
            });
        }
        if state.rated.contains(&self.deposit) {
            return Err(Rejection::AlreadyRated {
                transaction: self.deposit,
            });
        }
        Ok(LedgerEvent::ServiceRated(ServiceRated {
            deposit: self.deposit,
            volunteer: self.volunteer.clone(),
            rating: self.rating,
            rater: self.rater.clone(),
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use super::RateService;
    use crate::domain::events::LedgerEvent;
    use crate::domain::ids::{TransactionId, VerifierId};

    fn rate(who: &str, deposit: TransactionId, rating: u8) -> Command {
        Command::RateService(RateService {
            request_id: rid(),
            volunteer: acc(who),
            deposit,
            rating,
            rater: VerifierId::new("resident-42").unwrap(),
        })
    }

    #[test]
    fn given_a_deposit_when_rating_it_then_service_rated() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        let e = w.when(&rate("v1", d, 5)).unwrap();
        assert!(matches!(e, LedgerEvent::ServiceRated(ref r) if r.deposit == d && r.rating == 5));
    }

    #[test]
    fn given_a_rated_deposit_when_rating_again_then_already_rated() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        w.given(rate("v1", d, 4));
        assert_eq!(reason(w.when(&rate("v1", d, 5))), "ALREADY_RATED");
    }

    #[test]
    fn given_a_reversed_deposit_when_rating_then_deposit_reversed() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        w.given(reverse("v1", d));
        assert_eq!(reason(w.when(&rate("v1", d, 3))), "DEPOSIT_REVERSED");
    }

    #[test]
    fn when_the_transaction_is_not_a_deposit_of_the_volunteer_then_rejected() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        let s = w.given(spend("v1", "1"));
        assert_eq!(reason(w.when(&rate("v1", s, 3))), "NOT_A_DEPOSIT");
        assert_eq!(reason(w.when(&rate("v2", d, 3))), "UNKNOWN_TRANSACTION");
        assert_eq!(reason(w.when(&rate("ghost", d, 3))), "UNKNOWN_ACCOUNT");
        assert_eq!(reason(w.when(&rate("org", d, 3))), "WRONG_ACCOUNT_KIND");
    }

    #[test]
    fn when_the_rating_is_out_of_range_then_field_malformed() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        assert_eq!(reason(w.when(&rate("v1", d, 0))), "FIELD_MALFORMED");
        assert_eq!(reason(w.when(&rate("v1", d, 6))), "FIELD_MALFORMED");
    }

    #[test]
    fn given_a_rating_when_reversing_it_then_not_reversible() {
        let mut w = World::standard();
        let d = w.credit("v1", "2", 0);
        let r = w.given(rate("v1", d, 2));
        assert_eq!(reason(w.when(&reverse("v1", r))), "NOT_REVERSIBLE");
    }
}

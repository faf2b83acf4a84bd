//! `ReverseTransaction`: correct a transaction with a compensating one that points at
//! it (`TransactionReversed.v1`, the original's postings negated). The original is never
//! edited or deleted.
//!
//! A reversal is decided on the stream of the account it *debits*, because that is
//! whose balance may not go negative:
//! - a deposit, spend or exchange: the volunteer's stream (which holds the original);
//! - a transfer or donation: the receiver's stream, which holds the receipt; the
//!   sender is credited back through a receipt of its own.
//!
//! A transaction is reversed at most once, even by two racing reversals with
//! different request ids: the one stream that may reverse it checks `reversed_by` on
//! state read at the version the append expects, so the second loses the version race
//! and is re-decided into `AlreadyReversed`. (The reversal's event id, like every
//! command's, is derived from its request id: `Command::event_id`.)

use rust_decimal::Decimal;
use serde::Serialize;

use super::Context;
use crate::domain::account::AccountId;
use crate::domain::events::{LedgerEvent, ReceiptCause, TransactionReversed};
use crate::domain::ids::{Note, RequestId, TransactionId};
use crate::domain::postings::{compensate, net_for};
use crate::domain::rejection::Rejection;
use crate::domain::state::TxKind;
use crate::domain::units::Unit;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReverseTransaction {
    pub request_id: RequestId,
    /// The account the reversal debits (see the module documentation).
    pub account: AccountId,
    pub transaction: TransactionId,
    pub reason: Note,
}

impl ReverseTransaction {
    /// Rules: the account is registered (`UnknownAccount`; a closed account can still
    /// be corrected) and holds the transaction (`UnknownTransaction`); the transaction
    /// is a movement (`NotReversible`), not itself a reversal (`ReversalOfReversal`),
    /// not reversed yet (`AlreadyReversed`), and one this account is debited by on
    /// reversal (`ReversalOnWrongAccount`); after the reversal no balance of the account
    /// is negative (`InsufficientBalanceForReversal`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        let state = ctx.target;
        if !state.is_registered() {
            return Err(Rejection::UnknownAccount {
                account: self.account.clone(),
            });
        }
        let Some(original) = state.transactions.get(&self.transaction) else {
            return Err(Rejection::UnknownTransaction {
                account: self.account.clone(),
                transaction: self.transaction,
            });
        };
        match original.kind {
            TxKind::Registration
            | TxKind::Closure
            | TxKind::NoShow
            | TxKind::Rating
            | TxKind::Consent
            | TxKind::Inquiry
            | TxKind::Hold
            | TxKind::HoldEnd
            // A refund of a capture is a merchant refund, a later feature; not an undo.
            | TxKind::Capture => {
                return Err(Rejection::NotReversible {
                    transaction: self.transaction,
                    kind: original.kind.name(),
                })
            }
            TxKind::Reversal | TxKind::Received(ReceiptCause::Reversal) => {
                return Err(Rejection::ReversalOfReversal {
                    transaction: self.transaction,
                })
            }
            TxKind::TransferOut { .. } => {
                let debited = original
                    .counterparty
                    .clone()
                    .expect("an outgoing transfer records its receiver");
                return Err(Rejection::ReversalOnWrongAccount {
                    transaction: self.transaction,
                    debited,
                });
            }
            TxKind::Deposit
            | TxKind::Spend
            | TxKind::Exchange
            | TxKind::Received(ReceiptCause::Transfer | ReceiptCause::Donation) => {}
        }
        if original.reversed_by.is_some() {
            return Err(Rejection::AlreadyReversed {
                transaction: self.transaction,
            });
        }
        let postings = compensate(&original.postings);
        for unit in [Unit::Hours, Unit::HonourHours, Unit::Points] {
            // Points kept by open redemption holds are promised to a merchant: a
            // reversal may not take them (the capture would then overdraw).
            let available = match unit {
                Unit::Points => state.points_available(ctx.now),
                _ => state.balance(unit),
            };
            let net = net_for(&postings, &self.account, unit);
            if available + net < Decimal::ZERO {
                return Err(Rejection::InsufficientBalanceForReversal {
                    account: self.account.clone(),
                    unit: unit.as_str(),
                    available,
                    requested: -net,
                });
            }
        }
        Ok(LedgerEvent::TransactionReversed(TransactionReversed {
            transaction: ctx.transaction,
            original: self.transaction,
            account: self.account.clone(),
            reason: self.reason.clone(),
            postings,
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use crate::domain::events::HourKind;
    use crate::domain::units::Unit;

    #[test]
    fn given_a_deposit_when_reversing_it_then_the_hours_are_gone() {
        let mut w = World::standard();
        let tx = w.credit("v1", "5", 0);
        w.given(reverse("v1", tx));
        assert_eq!(w.balance("v1", Unit::Hours), dec("0"));
    }

    #[test]
    fn given_an_honour_deposit_when_reversing_it_then_honour_hours_are_gone() {
        let mut w = World::standard();
        let mut d = deposit(
            "v1",
            "3",
            ts("2026-11-19T09:00:00Z"),
            ts("2026-11-19T12:00:00Z"),
        );
        d.kind = HourKind::Honour;
        let tx = w.given(Command::DepositHours(d));
        w.given(reverse("v1", tx));
        assert_eq!(w.balance("v1", Unit::HonourHours), dec("0"));
    }

    #[test]
    fn given_a_spent_deposit_when_reversing_the_deposit_then_insufficient_balance() {
        let mut w = World::standard();
        let tx = w.credit("v1", "5", 0);
        w.given(spend("v1", "4"));
        let refused = w.when(&reverse("v1", tx)).unwrap_err();
        assert_eq!(refused.reason(), "INSUFFICIENT_BALANCE_FOR_REVERSAL");
        // Amounts at two places, and no word of redemption holds for hours (a
        // platform's probe found both).
        assert_eq!(
            refused.to_string(),
            "account v1 has 1.00 hours available to take back; the reversal needs 5.00"
        );
    }

    #[test]
    fn given_a_spend_when_reversing_it_then_the_hours_come_back() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(spend("v1", "4"));
        w.given(reverse("v1", tx));
        assert_eq!(w.balance("v1", Unit::Hours), dec("5"));
    }

    #[test]
    fn given_an_exchange_when_reversing_it_then_hours_return_and_points_go() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(exchange("v1", "2"));
        w.given(reverse("v1", tx));
        assert_eq!(w.balance("v1", Unit::Hours), dec("5"));
        assert_eq!(w.balance("v1", Unit::Points), dec("0"));
    }

    #[test]
    fn given_a_reversed_transaction_when_reversing_again_then_already_reversed() {
        let mut w = World::standard();
        let tx = w.credit("v1", "5", 0);
        w.given(reverse("v1", tx));
        assert_eq!(reason(w.when(&reverse("v1", tx))), "ALREADY_REVERSED");
    }

    #[test]
    fn given_a_reversal_when_reversing_it_then_reversal_of_reversal() {
        let mut w = World::standard();
        let tx = w.credit("v1", "5", 0);
        let rev = w.given(reverse("v1", tx));
        assert_eq!(reason(w.when(&reverse("v1", rev))), "REVERSAL_OF_REVERSAL");
    }

    #[test]
    fn given_a_transfer_when_reversing_on_the_sender_then_wrong_account() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(transfer("v1", "v2", "2"));
        let r = w.when(&reverse("v1", tx));
        assert!(
            matches!(r, Err(crate::domain::Rejection::ReversalOnWrongAccount { ref debited, .. }) if debited.as_str() == "v2")
        );
    }

    #[test]
    fn given_a_transfer_when_reversing_on_the_receiver_then_hours_return_once() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(transfer("v1", "v2", "2"));
        let rev = w.given(reverse("v2", tx));
        assert_eq!(w.balance("v1", Unit::Hours), dec("5"));
        assert_eq!(w.balance("v2", Unit::Hours), dec("0"));
        assert_eq!(reason(w.when(&reverse("v2", tx))), "ALREADY_REVERSED");
        // The sender's receipt of the reversal is not itself reversible.
        assert_eq!(reason(w.when(&reverse("v1", rev))), "REVERSAL_OF_REVERSAL");
    }

    #[test]
    fn given_received_hours_spent_when_reversing_the_transfer_then_insufficient_balance() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(transfer("v1", "v2", "2"));
        w.given(spend("v2", "1"));
        assert_eq!(
            reason(w.when(&reverse("v2", tx))),
            "INSUFFICIENT_BALANCE_FOR_REVERSAL"
        );
    }

    #[test]
    fn given_a_donation_when_reversing_on_the_project_then_hours_return() {
        let mut w = World::standard();
        w.credit("v1", "5", 0);
        let tx = w.given(donate("v1", "p", "3"));
        w.given(reverse("p", tx));
        assert_eq!(w.balance("v1", Unit::Hours), dec("5"));
        assert_eq!(w.balance("p", Unit::Hours), dec("0"));
    }

    #[test]
    fn when_reversing_unknown_or_registration_then_rejected() {
        let mut w = World::standard();
        let tx = w.credit("v1", "5", 0);
        assert_eq!(reason(w.when(&reverse("v2", tx))), "UNKNOWN_TRANSACTION");
        assert_eq!(reason(w.when(&reverse("ghost", tx))), "UNKNOWN_ACCOUNT");
        let reg = w.given(register("v9", volunteer_kind()));
        assert_eq!(reason(w.when(&reverse("v9", reg))), "NOT_REVERSIBLE");
    }
}

//! Receipts: how a transaction decided on one stream tells another account's stream
//! about hours it credited there.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::account::AccountId;
use crate::domain::events::{LedgerEvent, ReceiptCause};
use crate::domain::ids::TransactionId;
use crate::domain::units::{Hours, Unit};

/// A receipt to deliver: `hours` moved by `transaction` from `from` into `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub transaction: TransactionId,
    pub from: AccountId,
    pub to: AccountId,
    pub hours: Hours,
    pub cause: ReceiptCause,
    /// The transaction's `recorded_at`: the receipt records when it is written, never
    /// earlier than this (`Handler::deliver`).
    pub recorded_at: DateTime<Utc>,
}

/// What a [`super::Handler::deliver_receipts`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptReport {
    /// Events read.
    pub scanned: u64,
    /// Receipts that were missing and are now appended.
    pub delivered: u64,
    /// Events of types this build does not know (left alone).
    pub skipped: u64,
    /// The last event read: the next run may start after it.
    pub last: Option<ReceiptMark>,
}

/// A point in the log up to which every receipt is known to be delivered: a catch-up
/// that read up to and including this event delivered (or found) every receipt the
/// events before it owe. Besides the position it names the event there, so a mark
/// kept on disk can be checked against the log before it is trusted: positions are a
/// store's own coordinates, and a mark from another log (a data directory restored
/// from elsewhere, a different KurrentDB) must not make a catch-up skip anything.
pub type ReceiptMark = crate::log::EventMark;

/// The receipts a transaction decided on `source`'s stream owes: one per posting that
/// credits an account with a stream other than `source`. Only transfers, donations and
/// reversals move value into another account's stream, and always credit hours.
pub fn receipts_for(
    source: &AccountId,
    transaction: TransactionId,
    event: &LedgerEvent,
) -> Vec<Receipt> {
    let (cause, recorded_at) = match event {
        LedgerEvent::HoursTransferred(e) => (ReceiptCause::Transfer, e.recorded_at),
        LedgerEvent::HoursDonated(e) => (ReceiptCause::Donation, e.recorded_at),
        LedgerEvent::TransactionReversed(e) => (ReceiptCause::Reversal, e.recorded_at),
        _ => return Vec::new(),
    };
    let postings = event.postings().unwrap_or_default();
    postings
        .iter()
        .filter(|p| p.amount > Decimal::ZERO && !p.account.is_system() && &p.account != source)
        .map(|p| {
            assert_eq!(
                p.unit,
                Unit::Hours,
                "only hours are credited across streams"
            );
            Receipt {
                transaction,
                from: source.clone(),
                to: p.account.clone(),
                hours: Hours::new(p.amount).expect("a posted amount is a valid amount"),
                cause,
                recorded_at,
            }
        })
        .collect()
}

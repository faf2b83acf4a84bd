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
    /// Events of types this build does not know, and transactions whose payload does
    /// not decode or credits another stream with what a receipt cannot carry
    /// ([`UnreceiptablePosting`]): left alone, their receipts not delivered.
    pub skipped: u64,
    /// The first [`SKIPPED_NOTED_MAX`] of the transactions skipped, with why: what an
    /// operator needs to find them in the log.
    pub skipped_noted: Vec<SkippedTransaction>,
    /// The last event read: the next run may start after it.
    pub last: Option<ReceiptMark>,
}

/// How many skipped transactions one catch-up names in its report: a log written by
/// something else could hold millions, and the report is logged and kept in memory.
pub const SKIPPED_NOTED_MAX: usize = 16;

/// A transaction owing receipts that a catch-up left alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTransaction {
    pub position: crate::log::Position,
    pub stream: crate::log::StreamName,
    pub reason: String,
}

impl ReceiptReport {
    /// Count `event` as skipped, and name it while fewer than [`SKIPPED_NOTED_MAX`] are.
    pub(crate) fn skip(&mut self, event: &crate::log::RecordedEvent, reason: String) {
        self.skipped += 1;
        if self.skipped_noted.len() < SKIPPED_NOTED_MAX {
            self.skipped_noted.push(SkippedTransaction {
                position: event.position,
                stream: event.stream.clone(),
                reason,
            });
        }
    }
}

/// A point in the log up to which every receipt is known to be delivered: a catch-up
/// that read up to and including this event delivered (or found) every receipt the
/// events before it owe. Besides the position it names the event there, so a mark
/// kept on disk can be checked against the log before it is trusted: positions are a
/// store's own coordinates, and a mark from another log (a data directory restored
/// from elsewhere, a different KurrentDB) must not make a catch-up skip anything.
pub type ReceiptMark = crate::log::EventMark;

/// A transaction whose postings credit another account's stream with something a
/// receipt cannot carry. The ledger never decides one (its commands credit other
/// streams only with hours, within an amount's range); a log holds one only if
/// something else wrote it (an import, a restored or foreign log), and it decodes,
/// since each posting alone is valid. Its receipts are not delivered: the caller skips
/// the event and says so, rather than crash on data it did not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a posting credits {account} with {amount} {}: only hours, at most an amount's \
     maximum, are credited to another account's stream",
    .unit.as_str()
)]
pub struct UnreceiptablePosting {
    pub account: AccountId,
    pub unit: Unit,
    pub amount: Decimal,
}

/// The receipts a transaction decided on `source`'s stream owes: one per posting that
/// credits an account with a stream other than `source`. Only transfers, donations and
/// reversals move value into another account's stream, and always credit hours; an
/// event that credits anything else is refused ([`UnreceiptablePosting`]).
pub fn receipts_for(
    source: &AccountId,
    transaction: TransactionId,
    event: &LedgerEvent,
) -> Result<Vec<Receipt>, UnreceiptablePosting> {
    let (cause, recorded_at) = match event {
        LedgerEvent::HoursTransferred(e) => (ReceiptCause::Transfer, e.recorded_at),
        LedgerEvent::HoursDonated(e) => (ReceiptCause::Donation, e.recorded_at),
        LedgerEvent::TransactionReversed(e) => (ReceiptCause::Reversal, e.recorded_at),
        _ => return Ok(Vec::new()),
    };
    let postings = event.postings().unwrap_or_default();
    postings
        .iter()
        .filter(|p| p.amount > Decimal::ZERO && !p.account.is_system() && &p.account != source)
        .map(|p| {
            let hours = Some(p.amount)
                .filter(|_| p.unit == Unit::Hours)
                .and_then(|amount| Hours::new(amount).ok())
                .ok_or_else(|| UnreceiptablePosting {
                    account: p.account.clone(),
                    unit: p.unit,
                    amount: p.amount,
                })?;
            Ok(Receipt {
                transaction,
                from: source.clone(),
                to: p.account.clone(),
                hours,
                cause,
                recorded_at,
            })
        })
        .collect()
}

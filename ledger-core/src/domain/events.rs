//! The ledger's events: one enum, JSON payloads, stable type names with a schema
//! version (`HoursDeposited.v1`).
//!
//! Names are past tense: an event is a fact the ledger accepted. The type name is the
//! contract with every reader of the log (projections, auditors, a future KurrentDB
//! deployment), so a change of payload shape gets a new version (`.v2`) and readers
//! keep decoding the old one; names are never reused.
//!
//! Every event that moves value carries its `postings` (see `postings.rs`);
//! [`HoursReceived`] is a receipt that tells the receiving account's stream about a
//! credit and carries none, so summing postings over the log counts each transaction
//! exactly once.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::account::{AccountId, AccountKind};
use super::ids::{ActivityId, Category, Note, TransactionId, VerifierId};
use super::postings::Posting;
use super::units::{ExchangeRate, Hours, Points};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegistered {
    pub account: AccountId,
    #[serde(flatten)]
    pub kind: AccountKind,
    pub registered_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClosed {
    pub account: AccountId,
    pub reason: Note,
    pub closed_at: DateTime<Utc>,
}

/// Which kind of deposited hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HourKind {
    /// Verified by the organisation at the time: spendable and exchangeable.
    Credit,
    /// Added later by an administrator (back-filled): on the record, not spendable.
    Honour,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursDeposited {
    pub transaction: TransactionId,
    pub volunteer: AccountId,
    pub organisation: AccountId,
    pub activity: ActivityId,
    pub service_date: NaiveDate,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub category: Category,
    pub hours: Hours,
    pub kind: HourKind,
    pub verifier: VerifierId,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

/// What spent hours paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendPurpose {
    /// Service received back ("circular service").
    ReceivedService,
    /// Offsetting a small penalty, e.g. a traffic fine.
    FineOffset,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursSpent {
    pub transaction: TransactionId,
    pub volunteer: AccountId,
    pub purpose: SpendPurpose,
    pub counterparty: AccountId,
    pub hours: Hours,
    pub memo: Option<Note>,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursExchanged {
    pub transaction: TransactionId,
    pub volunteer: AccountId,
    pub hours: Hours,
    pub points: Points,
    pub rate: ExchangeRate,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

/// How the receiver of a family transfer is related to the giver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyRelation {
    Spouse,
    Parent,
    Child,
    Sibling,
    Grandparent,
    Grandchild,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursTransferred {
    pub transaction: TransactionId,
    pub from: AccountId,
    pub to: AccountId,
    pub relation: FamilyRelation,
    pub hours: Hours,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursDonated {
    pub transaction: TransactionId,
    pub from: AccountId,
    pub project: AccountId,
    pub hours: Hours,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

/// A compensating transaction: the original's postings negated. Recorded on the stream
/// of the account it debits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionReversed {
    pub transaction: TransactionId,
    pub original: TransactionId,
    /// The account whose stream the reversal was decided on (the one it debits).
    pub account: AccountId,
    pub reason: Note,
    pub postings: Vec<Posting>,
    pub recorded_at: DateTime<Utc>,
}

/// A receipt on the credited account's stream for hours a transaction on another
/// stream moved into it (a transfer, a donation, the reversal of either). No postings:
/// the transaction carries them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursReceived {
    /// The transaction that moved the hours.
    pub transaction: TransactionId,
    pub from: AccountId,
    pub to: AccountId,
    pub hours: Hours,
    pub cause: ReceiptCause,
    pub recorded_at: DateTime<Utc>,
}

/// What kind of transaction a receipt is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptCause {
    Transfer,
    Donation,
    /// The reversal of a transfer or donation, crediting the original sender.
    Reversal,
}

/// A volunteer who signed up for an activity did not turn up. Recorded on the
/// volunteer's stream by the organisation; an input to the credit score's reliability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoShowRecorded {
    pub volunteer: AccountId,
    pub organisation: AccountId,
    pub activity: ActivityId,
    pub service_date: NaiveDate,
    pub recorded_at: DateTime<Utc>,
}

/// A rating (1..=5) of the service a deposit records, given by the served party
/// (the work-order loop's "residents rate"). Recorded on the volunteer's stream, at
/// most once per deposit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRated {
    /// The rated deposit.
    pub deposit: TransactionId,
    pub volunteer: AccountId,
    pub rating: u8,
    pub rater: VerifierId,
    pub recorded_at: DateTime<Utc>,
}

/// Every event of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerEvent {
    AccountRegistered(AccountRegistered),
    AccountClosed(AccountClosed),
    HoursDeposited(HoursDeposited),
    HoursSpent(HoursSpent),
    HoursExchanged(HoursExchanged),
    HoursTransferred(HoursTransferred),
    HoursDonated(HoursDonated),
    TransactionReversed(TransactionReversed),
    HoursReceived(HoursReceived),
    NoShowRecorded(NoShowRecorded),
    ServiceRated(ServiceRated),
}

/// A stored event the ledger cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}; this build of the ledger is older than the log")]
    UnknownType(String),
    #[error("event of type {event_type} has a payload that does not decode: {source}")]
    Payload {
        event_type: String,
        source: serde_json::Error,
    },
}

macro_rules! ledger_event_codec {
    ($($variant:ident => $name:literal),* $(,)?) => {
        impl LedgerEvent {
            /// Every type name this build writes and reads.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($name),*];

            /// The stable type name with its schema version.
            pub fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name),* }
            }

            /// The JSON payload.
            pub fn encode(&self) -> Vec<u8> {
                let bytes = match self {
                    $(Self::$variant(e) => serde_json::to_vec(e)),*
                };
                bytes.expect("ledger events always serialise")
            }

            pub fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError> {
                let payload = |source| DecodeError::Payload { event_type: event_type.to_owned(), source };
                match event_type {
                    $($name => serde_json::from_slice(data).map(Self::$variant).map_err(payload),)*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}

ledger_event_codec! {
    AccountRegistered => "AccountRegistered.v1",
    AccountClosed => "AccountClosed.v1",
    HoursDeposited => "HoursDeposited.v1",
    HoursSpent => "HoursSpent.v1",
    HoursExchanged => "HoursExchanged.v1",
    HoursTransferred => "HoursTransferred.v1",
    HoursDonated => "HoursDonated.v1",
    TransactionReversed => "TransactionReversed.v1",
    HoursReceived => "HoursReceived.v1",
    NoShowRecorded => "NoShowRecorded.v1",
    ServiceRated => "ServiceRated.v1",
}

impl LedgerEvent {
    /// The transaction's postings, for events that are transactions.
    pub fn postings(&self) -> Option<&[Posting]> {
        match self {
            Self::HoursDeposited(e) => Some(&e.postings),
            Self::HoursSpent(e) => Some(&e.postings),
            Self::HoursExchanged(e) => Some(&e.postings),
            Self::HoursTransferred(e) => Some(&e.postings),
            Self::HoursDonated(e) => Some(&e.postings),
            Self::TransactionReversed(e) => Some(&e.postings),
            Self::AccountRegistered(_)
            | Self::AccountClosed(_)
            | Self::HoursReceived(_)
            | Self::NoShowRecorded(_)
            | Self::ServiceRated(_) => None,
        }
    }
}

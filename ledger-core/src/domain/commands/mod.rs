//! Commands: what a client asks the ledger to do, imperative (`DepositHours`).
//!
//! One file per command, each with its `decide` function and its given/when/then
//! tests. `decide` is pure: it takes the state of the account whose rules the command
//! checks (the *target*, whose stream the resulting event is appended to), the states of
//! any accounts it refers to, the clock reading and the configured exchange rate, and
//! returns exactly one event or a [`Rejection`]. Loading states and appending is the
//! handler's job (`crate::app`), so the rules can be tested without a log.
//!
//! Commands are built from validated values only (`AccountId`, `Hours`, …): malformed
//! input is refused while the command is being built, at the edge.

mod close_account;
mod consents;
mod deposit_hours;
mod donate_hours;
mod exchange_hours;
mod rate_service;
mod record_no_show;
mod redemptions;
mod register_account;
mod reverse_transaction;
mod serve_credit_report;
mod spend_hours;
/// Given/when/then helpers for tests: this crate's unit tests and, with the `testkit`
/// feature, its integration tests (`tests/common`). Not part of the ledger's API.
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
mod transfer_hours;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Serialize;

pub use close_account::CloseAccount;
pub use consents::{GrantConsent, WithdrawConsent, CONSENT_DAYS_MAX};
pub use deposit_hours::{DepositHours, HOURS_PER_DAY_MAX, SERVICE_INTERVAL_MAX};
pub use donate_hours::DonateHours;
pub use exchange_hours::ExchangeHours;
pub use rate_service::{RateService, RATING_MAX, RATING_MIN};
pub use record_no_show::RecordNoShow;
pub use redemptions::{
    AuthorizeRedemption, CaptureRedemption, ExpireRedemptionHold, VoidRedemption,
};
pub use register_account::RegisterAccount;
pub use reverse_transaction::ReverseTransaction;
pub use serve_credit_report::{
    report_digest, ComputedFrom, ServeCreditReport, ServedReport, REPORT_BYTES_MAX,
};
pub use spend_hours::SpendHours;
pub use transfer_hours::TransferHours;

use super::account::AccountId;
use super::events::{LedgerEvent, PayloadEncoding};
use super::ids::{event_id_for_request, RequestId, TransactionId};
use super::rejection::Rejection;
use super::state::AccountState;
use super::units::ExchangeRate;
use crate::log::EventId;

/// Everything `decide` may look at.
pub struct Context<'a> {
    /// The clock reading the decision is made at (injected: tests pin it).
    pub now: DateTime<Utc>,
    /// The ledger's calendar: the UTC offset at which instants become calendar days.
    pub calendar: FixedOffset,
    /// The id the resulting transaction will have (the event's id).
    pub transaction: TransactionId,
    /// The account whose stream the event is appended to.
    pub target: &'a AccountState,
    /// The other accounts the command refers to, as loaded by the handler.
    pub others: &'a BTreeMap<AccountId, Arc<AccountState>>,
    pub rate: &'a ExchangeRate,
    /// How long a redemption hold keeps points before it expires.
    pub hold_timeout: chrono::Duration,
}

impl Context<'_> {
    /// The calendar day `at` falls on in the ledger's calendar.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.calendar).date_naive()
    }

    /// Today in the ledger's calendar.
    pub fn today(&self) -> NaiveDate {
        self.day_of(self.now)
    }

    /// A referenced account's state. The handler loads every account in
    /// [`Command::references`] but the target, which is [`Context::target`] (a command
    /// may name its own account, e.g. a volunteer's id as the organisation: that
    /// account is then judged by its kind, not reported unregistered); one it did not
    /// load reads as unregistered.
    pub fn other(&self, id: &AccountId) -> Cow<'_, AccountState> {
        if id == &self.target.id {
            return Cow::Borrowed(self.target);
        }
        match self.others.get(id) {
            Some(state) => Cow::Borrowed(state),
            None => Cow::Owned(AccountState::empty(id.clone())),
        }
    }
}

/// Room reserved for a command's JSON when its digest is computed: a deposit's is
/// ~450 bytes. Not a limit: a longer command (a note of 500 characters) grows it.
const COMMAND_JSON_BYTES_TYPICAL: usize = 1024;

/// Room for a command's postcard bytes (a deposit is ~150), so they are written
/// without growing the buffer.
const COMMAND_BINARY_BYTES_TYPICAL: usize = 256;

/// How a request digest over a command's binary form starts: `bin:` then 64 hex
/// digits. A digest over its JSON is the 64 hex digits alone, as it always was.
pub const BINARY_DIGEST_PREFIX: &str = "bin:";

/// Every command of the write API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "command")]
pub enum Command {
    RegisterAccount(RegisterAccount),
    CloseAccount(CloseAccount),
    DepositHours(DepositHours),
    SpendHours(SpendHours),
    ExchangeHours(ExchangeHours),
    TransferHours(TransferHours),
    DonateHours(DonateHours),
    ReverseTransaction(ReverseTransaction),
    RecordNoShow(RecordNoShow),
    RateService(RateService),
    GrantConsent(GrantConsent),
    WithdrawConsent(WithdrawConsent),
    ServeCreditReport(ServeCreditReport),
    AuthorizeRedemption(AuthorizeRedemption),
    CaptureRedemption(CaptureRedemption),
    VoidRedemption(VoidRedemption),
    ExpireRedemptionHold(ExpireRedemptionHold),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::RegisterAccount(_) => "RegisterAccount",
            Self::CloseAccount(_) => "CloseAccount",
            Self::DepositHours(_) => "DepositHours",
            Self::SpendHours(_) => "SpendHours",
            Self::ExchangeHours(_) => "ExchangeHours",
            Self::TransferHours(_) => "TransferHours",
            Self::DonateHours(_) => "DonateHours",
            Self::ReverseTransaction(_) => "ReverseTransaction",
            Self::RecordNoShow(_) => "RecordNoShow",
            Self::RateService(_) => "RateService",
            Self::GrantConsent(_) => "GrantConsent",
            Self::WithdrawConsent(_) => "WithdrawConsent",
            Self::ServeCreditReport(_) => "ServeCreditReport",
            Self::AuthorizeRedemption(_) => "AuthorizeRedemption",
            Self::CaptureRedemption(_) => "CaptureRedemption",
            Self::VoidRedemption(_) => "VoidRedemption",
            Self::ExpireRedemptionHold(_) => "ExpireRedemptionHold",
        }
    }

    pub fn request_id(&self) -> &RequestId {
        match self {
            Self::RegisterAccount(c) => &c.request_id,
            Self::CloseAccount(c) => &c.request_id,
            Self::DepositHours(c) => &c.request_id,
            Self::SpendHours(c) => &c.request_id,
            Self::ExchangeHours(c) => &c.request_id,
            Self::TransferHours(c) => &c.request_id,
            Self::DonateHours(c) => &c.request_id,
            Self::ReverseTransaction(c) => &c.request_id,
            Self::RecordNoShow(c) => &c.request_id,
            Self::RateService(c) => &c.request_id,
            Self::GrantConsent(c) => &c.request_id,
            Self::WithdrawConsent(c) => &c.request_id,
            Self::ServeCreditReport(c) => &c.request_id,
            Self::AuthorizeRedemption(c) => &c.request_id,
            Self::CaptureRedemption(c) => &c.request_id,
            Self::VoidRedemption(c) => &c.request_id,
            Self::ExpireRedemptionHold(c) => &c.request_id,
        }
    }

    /// For the test kit: the same command under another request id.
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn request_id_mut(&mut self) -> &mut RequestId {
        match self {
            Self::RegisterAccount(c) => &mut c.request_id,
            Self::CloseAccount(c) => &mut c.request_id,
            Self::DepositHours(c) => &mut c.request_id,
            Self::SpendHours(c) => &mut c.request_id,
            Self::ExchangeHours(c) => &mut c.request_id,
            Self::TransferHours(c) => &mut c.request_id,
            Self::DonateHours(c) => &mut c.request_id,
            Self::ReverseTransaction(c) => &mut c.request_id,
            Self::RecordNoShow(c) => &mut c.request_id,
            Self::RateService(c) => &mut c.request_id,
            Self::GrantConsent(c) => &mut c.request_id,
            Self::WithdrawConsent(c) => &mut c.request_id,
            Self::ServeCreditReport(c) => &mut c.request_id,
            Self::AuthorizeRedemption(c) => &mut c.request_id,
            Self::CaptureRedemption(c) => &mut c.request_id,
            Self::VoidRedemption(c) => &mut c.request_id,
            Self::ExpireRedemptionHold(c) => &mut c.request_id,
        }
    }

    /// The account whose rules the command checks and whose stream takes its event.
    pub fn target(&self) -> &AccountId {
        match self {
            Self::RegisterAccount(c) => &c.account,
            Self::CloseAccount(c) => &c.account,
            Self::DepositHours(c) => &c.volunteer,
            Self::SpendHours(c) => &c.volunteer,
            Self::ExchangeHours(c) => &c.volunteer,
            Self::TransferHours(c) => &c.from,
            Self::DonateHours(c) => &c.from,
            Self::ReverseTransaction(c) => &c.account,
            Self::RecordNoShow(c) => &c.volunteer,
            Self::RateService(c) => &c.volunteer,
            Self::GrantConsent(c) => &c.volunteer,
            Self::WithdrawConsent(c) => &c.volunteer,
            Self::ServeCreditReport(c) => &c.volunteer,
            Self::AuthorizeRedemption(c) => &c.token.volunteer,
            Self::CaptureRedemption(c) => &c.volunteer,
            Self::VoidRedemption(c) => &c.volunteer,
            Self::ExpireRedemptionHold(c) => &c.volunteer,
        }
    }

    /// The other account whose state `decide` reads (read, never written), if any:
    /// at most one for every command. Borrowed, not a `Vec` of clones: the handler,
    /// the gates and a batch's dependency keys each ask it once per command.
    pub fn reference(&self) -> Option<&AccountId> {
        match self {
            Self::DepositHours(c) => Some(&c.organisation),
            Self::SpendHours(c) => Some(&c.counterparty),
            Self::TransferHours(c) => Some(&c.to),
            Self::DonateHours(c) => Some(&c.project),
            Self::RegisterAccount(_) | Self::CloseAccount(_) | Self::ExchangeHours(_) => None,
            Self::RecordNoShow(c) => Some(&c.organisation),
            Self::ReverseTransaction(_) | Self::RateService(_) => None,
            Self::GrantConsent(c) => Some(&c.bank),
            Self::ServeCreditReport(c) => Some(&c.bank),
            Self::AuthorizeRedemption(c) => Some(&c.merchant),
            Self::WithdrawConsent(_)
            | Self::CaptureRedemption(_)
            | Self::VoidRedemption(_)
            | Self::ExpireRedemptionHold(_) => None,
        }
    }

    /// The id of the event the command appends. Derived from the request id, for every
    /// command, so a retry cannot create a second event and the log refuses a request id
    /// taken by any other command on any stream.
    ///
    /// Reversals too. Until the seventh session a reversal's id was derived from the
    /// original transaction instead, as a second guard against two reversals of one
    /// transaction; but then no check ever saw a reversal's request id, so a reversal
    /// could take a request id a deposit on another account had used (and the other
    /// way round). That guard was redundant: a transaction is reversed only on the one
    /// stream it debits (`ReverseTransaction::decide`), which checks `reversed_by` on
    /// state read at the version the append expects, so of two racing reversals the
    /// second loses the version race and is re-decided into `AlreadyReversed`.
    pub fn event_id(&self) -> EventId {
        event_id_for_request(self.request_id())
    }

    /// Hex BLAKE3 of the canonical encoding of the command: its JSON with fields in
    /// declaration order and amounts at their canonical two-place scale. Two requests
    /// with the same id are "the same request" exactly when their digests match.
    pub fn digest(&self) -> String {
        // Written into a buffer sized for a command, not `to_vec`'s 128 bytes that a
        // deposit's ~450 outgrow twice (each time copying what is written). Option not
        // taken: `to_writer` straight into a `blake3::Hasher`, which pays the hasher's
        // bookkeeping on each of the JSON's ~60 small writes (docs/benchmarks.md,
        // "Seventh session").
        let mut json = Vec::with_capacity(COMMAND_JSON_BYTES_TYPICAL);
        serde_json::to_writer(&mut json, self).expect("commands always serialise");
        super::chain::hex32(blake3::hash(&json).as_bytes())
    }

    /// The digest a ledger writing `encoding` payloads stores for this command. With
    /// JSON payloads, [`Command::digest`]. With binary payloads, [`BINARY_DIGEST_PREFIX`]
    /// then the hex BLAKE3 of the command's postcard bytes: ~4 times fewer bytes to
    /// write and hash than its JSON, which was ~9,000 of a batched deposit's
    /// instructions (docs/benchmarks.md, "Eighth session"). The prefix says which
    /// form a stored digest is of, so a retry compares like with like whichever
    /// setting wrote the original ([`Command::matches_digest`]).
    pub fn digest_as(&self, encoding: PayloadEncoding) -> String {
        match encoding {
            PayloadEncoding::Json => self.digest(),
            PayloadEncoding::Binary => {
                let mut bytes = Vec::with_capacity(COMMAND_BINARY_BYTES_TYPICAL);
                bytes =
                    super::events::postcard_after(bytes, self).expect("commands always serialise");
                let mut digest = String::with_capacity(BINARY_DIGEST_PREFIX.len() + 64);
                digest.push_str(BINARY_DIGEST_PREFIX);
                digest.push_str(&super::chain::hex32(blake3::hash(&bytes).as_bytes()));
                digest
            }
        }
    }

    /// True if `stored` (a request digest from an event's metadata) is this command's
    /// digest in the form it was stored in: the retry of the same request, whichever
    /// payload encoding the ledger wrote then or writes now.
    pub fn matches_digest(&self, stored: &str) -> bool {
        let encoding = if stored.starts_with(BINARY_DIGEST_PREFIX) {
            PayloadEncoding::Binary
        } else {
            PayloadEncoding::Json
        };
        self.digest_as(encoding) == stored
    }

    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        match self {
            Self::RegisterAccount(c) => c.decide(ctx),
            Self::CloseAccount(c) => c.decide(ctx),
            Self::DepositHours(c) => c.decide(ctx),
            Self::SpendHours(c) => c.decide(ctx),
            Self::ExchangeHours(c) => c.decide(ctx),
            Self::TransferHours(c) => c.decide(ctx),
            Self::DonateHours(c) => c.decide(ctx),
            Self::ReverseTransaction(c) => c.decide(ctx),
            Self::RecordNoShow(c) => c.decide(ctx),
            Self::RateService(c) => c.decide(ctx),
            Self::GrantConsent(c) => c.decide(ctx),
            Self::WithdrawConsent(c) => c.decide(ctx),
            Self::ServeCreditReport(c) => c.decide(ctx),
            Self::AuthorizeRedemption(c) => c.decide(ctx),
            Self::CaptureRedemption(c) => c.decide(ctx),
            Self::VoidRedemption(c) => c.decide(ctx),
            Self::ExpireRedemptionHold(c) => c.decide(ctx),
        }
    }
}

/// The account kinds rules ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Volunteer,
    Organisation,
    Project,
    Merchant,
    Bank,
    /// Any registered kind.
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Volunteer => "volunteer",
            Self::Organisation => "organisation",
            Self::Project => "project",
            Self::Merchant => "merchant",
            Self::Bank => "bank",
            Self::Any => "registered account",
        }
    }
}

/// The common rule of every movement: the account is registered, open and of `kind`.
pub(crate) fn require_open(state: &AccountState, kind: Kind) -> Result<(), Rejection> {
    let Some(actual) = &state.kind else {
        return Err(Rejection::UnknownAccount {
            account: state.id.clone(),
        });
    };
    if state.closed {
        return Err(Rejection::AccountClosed {
            account: state.id.clone(),
        });
    }
    if kind != Kind::Any && actual.name() != kind.name() {
        return Err(Rejection::WrongAccountKind {
            account: state.id.clone(),
            expected: kind.name(),
            actual: actual.name(),
        });
    }
    Ok(())
}

/// The spendable-balance rule: `hours` may leave `state` only if it holds them.
pub(crate) fn require_hours(
    state: &AccountState,
    hours: rust_decimal::Decimal,
) -> Result<(), Rejection> {
    let available = state.balance(super::units::Unit::Hours);
    if available < hours {
        return Err(Rejection::InsufficientHours {
            account: state.id.clone(),
            available,
            requested: hours,
        });
    }
    Ok(())
}

//! Business rejections: values, named after the rule that refused the command.
//!
//! A rejection is an answer, not a failure: the command was understood and the ledger
//! said no. It writes nothing. Each variant has a stable machine-readable
//! [`Rejection::reason`] (`INSUFFICIENT_HOURS`, …) that clients switch on; the message
//! is for people and may be reworded. The gRPC layer maps these to status codes in one
//! function (`ledger-server/src/status.rs`).

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::account::{AccountId, RegionError};
use super::ids::{ActivityId, IdError, RequestId, TransactionId};
use super::units::AmountError;

/// What is wrong with one field of a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputProblem {
    #[error("is missing")]
    Missing,
    #[error("{0}")]
    Id(#[from] IdError),
    #[error("{0}")]
    Amount(#[from] AmountError),
    #[error("{0}")]
    Region(#[from] RegionError),
    /// Not in the expected format (a date, a timestamp, an enum value): says which.
    #[error("{0}")]
    Malformed(String),
    /// A redemption token this ledger did not sign (forged, altered or malformed).
    #[error("{0}")]
    Token(String),
    /// Set, but meaningless for this request (a region for a bank): refused rather
    /// than dropped, so a client's mistake is not silently lost. Says why.
    #[error("{0}")]
    NotApplicable(String),
}

impl InputProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "FIELD_MISSING",
            Self::Id(e) => e.reason(),
            Self::Amount(e) => e.reason(),
            Self::Region(_) => "REGION_MALFORMED",
            Self::Malformed(_) => "FIELD_MALFORMED",
            Self::Token(_) => "TOKEN_INVALID",
            Self::NotApplicable(_) => "FIELD_NOT_APPLICABLE",
        }
    }
}

/// An amount as the API shows amounts, at two places ("0.00", not "0").
fn two_places(amount: &Decimal) -> Decimal {
    let mut shown = *amount;
    shown.rescale(super::units::UNIT_SCALE_MAX);
    shown
}

/// Why points may be available below their balance; nothing for the other units.
fn held_points_note(unit: &str) -> &'static str {
    if unit == super::units::Unit::Points.as_str() {
        " (points on open redemption holds are kept for the merchant)"
    } else {
        ""
    }
}

/// Why the ledger refused a command. Every variant says what rule was hit and, in its
/// message, what the caller can do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("field `{field}` {problem}")]
    InvalidInput {
        field: String,
        problem: InputProblem,
    },

    #[error("account id {account} is reserved for the ledger's own accounts; choose another id")]
    ReservedAccountId { account: AccountId },

    #[error("account {account} is not registered; register it first")]
    UnknownAccount { account: AccountId },

    #[error("account {account} is already registered; use a new id, or resend the original request id to get the original outcome")]
    AccountAlreadyExists { account: AccountId },

    #[error("account {account} is closed and takes no new movements")]
    AccountClosed { account: AccountId },

    #[error("account {account} is of kind {actual}, but this command needs kind {expected}")]
    WrongAccountKind {
        account: AccountId,
        expected: &'static str,
        actual: &'static str,
    },

    #[error("account {account} has {available} spendable hours; {requested} were requested")]
    InsufficientHours {
        account: AccountId,
        available: Decimal,
        requested: Decimal,
    },

    /// Points on open redemption holds are not available to a reversal (a capture would
    /// overdraw), so `available` may be below the balance; the message says so.
    #[error(
        "account {account} has {} {unit} available to take back{}; the reversal needs {}",
        two_places(available),
        held_points_note(unit),
        two_places(requested)
    )]
    InsufficientBalanceForReversal {
        account: AccountId,
        unit: &'static str,
        available: Decimal,
        requested: Decimal,
    },

    #[error("join date {joined_on} is after today ({today} in the ledger's calendar); register the volunteer with the day they joined, today at the latest")]
    JoinDateInFuture {
        joined_on: NaiveDate,
        today: NaiveDate,
    },

    #[error("service date {service_date} is after today ({today} in the ledger's calendar); hours and no-shows are recorded after the service")]
    ServiceDateInFuture {
        service_date: NaiveDate,
        today: NaiveDate,
    },

    #[error(
        "the service interval ends at {ended_at}, after now ({now}); deposit it once it is over"
    )]
    ServiceIntervalInFuture {
        ended_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },

    #[error(
        "service interval [{started_at}, {ended_at}) is empty, inverted or longer than 24 hours"
    )]
    InvalidServiceInterval {
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
    },

    #[error("the service interval starts on {started_on} in the ledger's calendar, not on the service date {service_date}; send the day the service started")]
    ServiceDateMismatch {
        service_date: NaiveDate,
        started_on: NaiveDate,
    },

    #[error("{hours} hours do not fit in a service interval of {interval_hours} hours")]
    HoursExceedInterval {
        hours: Decimal,
        interval_hours: Decimal,
    },

    #[error("volunteer {account} already has {recorded} hours on {service_date}; {requested} more would exceed {max} in one day")]
    HoursPerDayExceeded {
        account: AccountId,
        service_date: NaiveDate,
        recorded: Decimal,
        requested: Decimal,
        max: Decimal,
    },

    #[error("service [{started_at}, {ended_at}) overlaps service already recorded for {account} in transaction {existing}")]
    OverlappingService {
        account: AccountId,
        started_at: DateTime<Utc>,
        ended_at: DateTime<Utc>,
        existing: TransactionId,
    },

    #[error("an account cannot send hours to itself")]
    SelfTransfer,

    #[error("the exchange rate is now version {current}; the request expected version {expected}. Re-quote and resend")]
    ExchangeRateChanged { expected: u32, current: u32 },

    #[error("{hours} hours buy no whole hundredth of a point at rate version {rate_version}; exchange more hours")]
    ExchangeTooSmall { hours: Decimal, rate_version: u32 },

    #[error("{hours} hours buy more than the per-entry maximum of {max} points at rate version {rate_version}; exchange at most {hours_max} hours at a time", max = super::units::POINTS_PER_ENTRY_MAX)]
    ExchangeTooLarge {
        hours: Decimal,
        rate_version: u32,
        hours_max: Decimal,
    },

    #[error("account {account} holds no transaction {transaction}")]
    UnknownTransaction {
        account: AccountId,
        transaction: TransactionId,
    },

    #[error(
        "transaction {transaction} was already reversed; a transaction is reversed at most once"
    )]
    AlreadyReversed { transaction: TransactionId },

    #[error(
        "transaction {transaction} is itself a reversal; correct it with a new transaction instead"
    )]
    ReversalOfReversal { transaction: TransactionId },

    #[error("transaction {transaction} ({kind}) cannot be reversed")]
    NotReversible {
        transaction: TransactionId,
        kind: &'static str,
    },

    #[error("transaction {transaction} debits account {debited} on reversal; send the reversal for account {debited}")]
    ReversalOnWrongAccount {
        transaction: TransactionId,
        debited: AccountId,
    },

    #[error("transaction {transaction} is a {kind}, not a deposit; only deposits (service records) can be rated")]
    NotADeposit {
        transaction: TransactionId,
        kind: &'static str,
    },

    #[error("deposit {transaction} was reversed; a reversed service record cannot be rated")]
    DepositReversed { transaction: TransactionId },

    #[error("deposit {transaction} was already rated; a deposit is rated at most once")]
    AlreadyRated { transaction: TransactionId },

    #[error("a no-show of {volunteer} at {organisation}'s activity {activity} on {date} is already recorded (transaction {transaction}); a volunteer misses an activity on a day once, so it is not recorded again")]
    NoShowAlreadyRecorded {
        volunteer: AccountId,
        organisation: AccountId,
        activity: ActivityId,
        date: NaiveDate,
        transaction: TransactionId,
    },

    #[error("request id {request_id} was already used for a different command; use a new request id for a new command")]
    RequestIdReused { request_id: RequestId },

    #[error("a consent must expire in the future; it would expire at {expires_at}, not after now ({now})")]
    ConsentExpiryInPast {
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },

    #[error("a consent may last at most {max_days} days; ask the volunteer to renew it instead")]
    ConsentTooLong { max_days: i64 },

    #[error("volunteer {volunteer} has no current consent to bank {bank} to withdraw")]
    NoCurrentConsent {
        volunteer: AccountId,
        bank: AccountId,
    },

    /// Deliberately the same answer for an unknown volunteer, a missing, expired or
    /// withdrawn consent, another bank's consent and another purpose: a bank learns
    /// nothing about a volunteer who did not authorise it.
    #[error("no current consent of this volunteer to your bank for purpose {purpose:?}; the volunteer must grant one through their platform")]
    ConsentRequired { purpose: String },

    /// `INQUIRIES_PER_CONSENT_PER_DAY_MAX` inquiries under this consent in the 24 hours
    /// before now (`ServeCreditReport`).
    #[error("your bank already made {max} inquiries under this consent in the last 24 hours, the most allowed; the next is possible after {next_at}, or fetch a report already served with GetServedReport")]
    InquiriesPerDayExceeded { max: usize, next_at: DateTime<Utc> },

    /// The volunteer's stream moved between the report's read and the inquiry's
    /// append (`ServeCreditReport`, `ComputedFrom`). The server computes the report
    /// again; a caller sees it only after several attempts in a row.
    #[error("the volunteer's record changed while the credit report was being computed; retry with the same request id")]
    ReportOutdated,

    #[error("the redemption token expired at {expires_at}; ask the volunteer to show a fresh one")]
    TokenExpired { expires_at: DateTime<Utc> },

    #[error("the redemption token was already used for a hold; a token is good for one redemption, ask the volunteer to show a fresh one")]
    TokenAlreadyUsed,

    #[error("the redemption token allows at most {max} points; {requested} were asked")]
    TokenMaximumExceeded { max: Decimal, requested: Decimal },

    /// Says how many points were asked, not how many the volunteer has: a merchant
    /// (the only caller of these commands besides administrators) may see nothing of a
    /// volunteer's record but its star level (docs/partners.md), and a till holding a
    /// token of a large maximum could otherwise read the balance off this message
    /// (merchant probe, fourteenth session).
    #[error("the volunteer does not have {requested} points available; ask for fewer, or the volunteer can check their balance with their platform")]
    InsufficientPoints { requested: Decimal },

    /// Also the answer for another merchant's hold, which a merchant must not learn of.
    #[error("no hold {hold} of your merchant on this volunteer's points")]
    UnknownHold { hold: TransactionId },

    #[error("hold {hold} was already captured; a captured hold can be neither captured again nor voided")]
    HoldAlreadyCaptured { hold: TransactionId },

    #[error("hold {hold} was voided; authorise a new redemption")]
    HoldVoided { hold: TransactionId },

    #[error(
        "hold {hold} expired at {expires_at} and its points returned; authorise a new redemption"
    )]
    HoldExpired {
        hold: TransactionId,
        expires_at: DateTime<Utc>,
    },

    #[error("hold {hold} holds {held} points; {requested} cannot be captured from it")]
    CaptureExceedsHold {
        hold: TransactionId,
        held: Decimal,
        requested: Decimal,
    },

    #[error("hold {hold} is open until {expires_at}; it cannot be expired before then")]
    HoldNotExpired {
        hold: TransactionId,
        expires_at: DateTime<Utc>,
    },
}

impl Rejection {
    /// Shorthand for an [`Rejection::InvalidInput`].
    pub fn input(field: &str, problem: impl Into<InputProblem>) -> Self {
        Self::InvalidInput {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::input(field, InputProblem::Missing)
    }

    /// Stable, machine-readable reason, as sent in gRPC error details.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidInput { problem, .. } => problem.reason(),
            Self::ReservedAccountId { .. } => "ACCOUNT_ID_RESERVED",
            Self::UnknownAccount { .. } => "UNKNOWN_ACCOUNT",
            Self::AccountAlreadyExists { .. } => "ACCOUNT_ALREADY_EXISTS",
            Self::AccountClosed { .. } => "ACCOUNT_CLOSED",
            Self::WrongAccountKind { .. } => "WRONG_ACCOUNT_KIND",
            Self::InsufficientHours { .. } => "INSUFFICIENT_HOURS",
            Self::InsufficientBalanceForReversal { .. } => "INSUFFICIENT_BALANCE_FOR_REVERSAL",
            Self::ServiceDateInFuture { .. } => "SERVICE_DATE_IN_FUTURE",
            Self::ServiceIntervalInFuture { .. } => "SERVICE_INTERVAL_IN_FUTURE",
            Self::InvalidServiceInterval { .. } => "INVALID_SERVICE_INTERVAL",
            Self::ServiceDateMismatch { .. } => "SERVICE_DATE_MISMATCH",
            Self::HoursExceedInterval { .. } => "HOURS_EXCEED_INTERVAL",
            Self::HoursPerDayExceeded { .. } => "HOURS_PER_DAY_EXCEEDED",
            Self::OverlappingService { .. } => "OVERLAPPING_SERVICE",
            Self::SelfTransfer => "SELF_TRANSFER",
            Self::ExchangeRateChanged { .. } => "EXCHANGE_RATE_CHANGED",
            Self::ExchangeTooSmall { .. } => "EXCHANGE_TOO_SMALL",
            Self::ExchangeTooLarge { .. } => "EXCHANGE_TOO_LARGE",
            Self::UnknownTransaction { .. } => "UNKNOWN_TRANSACTION",
            Self::AlreadyReversed { .. } => "ALREADY_REVERSED",
            Self::ReversalOfReversal { .. } => "REVERSAL_OF_REVERSAL",
            Self::NotReversible { .. } => "NOT_REVERSIBLE",
            Self::ReversalOnWrongAccount { .. } => "REVERSAL_ON_WRONG_ACCOUNT",
            Self::RequestIdReused { .. } => "REQUEST_ID_REUSED",
            Self::NotADeposit { .. } => "NOT_A_DEPOSIT",
            Self::DepositReversed { .. } => "DEPOSIT_REVERSED",
            Self::AlreadyRated { .. } => "ALREADY_RATED",
            Self::NoShowAlreadyRecorded { .. } => "NO_SHOW_ALREADY_RECORDED",
            Self::ConsentExpiryInPast { .. } => "CONSENT_EXPIRY_IN_PAST",
            Self::ConsentTooLong { .. } => "CONSENT_TOO_LONG",
            Self::NoCurrentConsent { .. } => "NO_CURRENT_CONSENT",
            Self::ConsentRequired { .. } => "CONSENT_REQUIRED",
            Self::InquiriesPerDayExceeded { .. } => "INQUIRIES_PER_DAY_EXCEEDED",
            Self::JoinDateInFuture { .. } => "JOIN_DATE_IN_FUTURE",
            Self::ReportOutdated => "REPORT_OUTDATED",
            Self::TokenExpired { .. } => "TOKEN_EXPIRED",
            Self::TokenAlreadyUsed => "TOKEN_ALREADY_USED",
            Self::TokenMaximumExceeded { .. } => "TOKEN_MAXIMUM_EXCEEDED",
            Self::InsufficientPoints { .. } => "INSUFFICIENT_POINTS",
            Self::UnknownHold { .. } => "UNKNOWN_HOLD",
            Self::HoldAlreadyCaptured { .. } => "HOLD_ALREADY_CAPTURED",
            Self::HoldVoided { .. } => "HOLD_VOIDED",
            Self::HoldExpired { .. } => "HOLD_EXPIRED",
            Self::CaptureExceedsHold { .. } => "CAPTURE_EXCEEDS_HOLD",
            Self::HoldNotExpired { .. } => "HOLD_NOT_EXPIRED",
        }
    }

    /// The field a rejection is about, for clients that highlight a form field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidInput { field, .. } => Some(field),
            _ => None,
        }
    }
}

//! The one place where protobuf messages become domain commands and outcomes become
//! protobuf results. Every field is validated here, at the edge, into the domain's
//! validated types; a bad field becomes `Rejection::InvalidInput` naming the field (its
//! proto name), so the status says exactly what to fix. Nothing here can panic on input.

use chrono::{DateTime, NaiveDate, Utc};
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode, SYSTEM_PREFIX};
use ledger_core::domain::commands::{
    AuthorizeRedemption, CaptureRedemption, CloseAccount, Command, DepositHours, DonateHours,
    ExchangeHours, GrantConsent, RateService, RecordNoShow, RegisterAccount, ReverseTransaction,
    SpendHours, TransferHours, VoidRedemption, WithdrawConsent, RATING_MAX, RATING_MIN,
};
use ledger_core::domain::events::{FamilyRelation, HourKind, SpendPurpose};
use ledger_core::domain::ids::{
    ActivityId, Category, IdError, Note, Purpose, RequestId, TransactionId, VerifierId,
    REQUEST_ID_BYTES_MAX,
};
use ledger_core::domain::state::Outcome;
use ledger_core::domain::token::{RedemptionClaims, TokenKey};
use ledger_core::domain::units::{Hours, Points};
use ledger_core::domain::{InputProblem, Rejection};

use crate::pb;

/// Longest date text accepted ("YYYY-MM-DD" is 10).
const DATE_TEXT_BYTES_MAX: usize = 10;

/// Largest `nanos` of a `google.protobuf.Timestamp`.
const TIMESTAMP_NANOS_MAX: u32 = 999_999_999;

/// The range of a `google.protobuf.Timestamp`'s `seconds` as its definition states
/// it: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. chrono reads far wider
/// (±262,000 years), and an instant near its ends cannot be moved into a calendar
/// west of UTC (`Context::day_of` would panic); inside this range every offset the
/// ledger accepts is fine, and every instant writes as RFC 3339.
const TIMESTAMP_SECONDS_MIN: i64 = -62_135_596_800;
const TIMESTAMP_SECONDS_MAX: i64 = 253_402_300_799;

type Field<T> = Result<T, Rejection>;

/// A client's request id, as sent: without ':'. The ledger scopes ids with it, and an
/// id sent with one could take a scoped id first:
/// - the hold sweeper's `system:expire-hold:<hold>`: its append would then be
///   `REQUEST_ID_REUSED` on every sweep (refused with its own message);
/// - a partner's `<account>:<id>` ([`scoped_request_id`]): a platform sending
///   `m-1:till-7` would take merchant m-1's request `till-7`, and a merchant `m` sending
///   `x:1` would take merchant `m:x`'s request `1` (account ids may hold ':').
///
/// Without ':' in what clients send, a scoped id splits at its last ':' one way only.
/// Option not taken: scoping platforms' ids too (`platform:<id>`), which would change
/// the ids their existing retries map to, so a retry of a request made before the
/// change would be written a second time; a refused ':' fails safe instead.
pub(crate) fn request_id(text: String) -> Field<RequestId> {
    if text.starts_with(SYSTEM_PREFIX) {
        return Err(Rejection::input(
            "request_id",
            IdError::Reserved {
                prefix: SYSTEM_PREFIX,
            },
        ));
    }
    let id = RequestId::new(text).map_err(|e| {
        let e = match e {
            IdError::Characters => IdError::RequestCharacters,
            other => other,
        };
        Rejection::input("request_id", e)
    })?;
    if id.as_str().contains(':') {
        return Err(Rejection::input("request_id", IdError::ScopeSeparator));
    }
    Ok(id)
}

/// Length of a partner's request id in its hashed form's tail: `h` and 40 hex digits
/// (160 bits of BLAKE3).
const HASHED_REQUEST_ID_BYTES: usize = 41;

/// True for `h` followed by 40 lowercase hex digits: what [`scoped_request_id`] puts
/// after `<account>:` for an id too long to prefix.
fn is_hashed_form(id: &str) -> bool {
    id.len() == HASHED_REQUEST_ID_BYTES
        && id.starts_with('h')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn account(field: &str, text: String) -> Field<AccountId> {
    AccountId::new(text).map_err(|e| Rejection::input(field, e))
}

fn hours(field: &str, text: &str) -> Field<Hours> {
    if text.is_empty() {
        return Err(Rejection::missing(field));
    }
    Hours::parse(text).map_err(|e| Rejection::input(field, e))
}

pub(crate) fn token<T>(
    field: &str,
    text: String,
    make: fn(String) -> Result<T, IdError>,
) -> Field<T> {
    make(text).map_err(|e| Rejection::input(field, e))
}

fn note(field: &str, text: String) -> Field<Note> {
    Note::new(text).map_err(|e| Rejection::input(field, e))
}

fn optional_note(field: &str, text: String) -> Field<Option<Note>> {
    if text.is_empty() {
        Ok(None)
    } else {
        note(field, text).map(Some)
    }
}

fn date(field: &str, text: &str) -> Field<NaiveDate> {
    if text.is_empty() {
        return Err(Rejection::missing(field));
    }
    let malformed = || {
        Rejection::input(
            field,
            InputProblem::Malformed(format!(
                "{:?} is not a calendar day; send \"YYYY-MM-DD\"",
                text.chars()
                    .take(DATE_TEXT_BYTES_MAX + 2)
                    .collect::<String>()
            )),
        )
    };
    // Exactly `DDDD-DD-DD`: chrono's `%Y` alone also reads a sign or a space, so
    // "-001-01-01", "+002-01-01" and " 2026-1-01" would pass as years -1, 2 and 2026.
    let shaped = text.len() == DATE_TEXT_BYTES_MAX
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(malformed());
    }
    // Read from the digits just checked: on exactly this shape chrono's
    // `parse_from_str(text, "%Y-%m-%d")` reads the same three numbers and refuses
    // the same days (unit-tested below), after walking its format items, ~1,300
    // instructions per deposit.
    let b = text.as_bytes();
    let number = |digits: &[u8]| {
        digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (number(&b[0..4]), number(&b[5..7]), number(&b[8..10]));
    i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(malformed)
}

pub(crate) fn timestamp(field: &str, ts: Option<prost_types::Timestamp>) -> Field<DateTime<Utc>> {
    instant(field, ts.ok_or_else(|| Rejection::missing(field))?)
}

/// A `google.protobuf.Timestamp` inside its defined range, as an instant.
pub(crate) fn instant(field: &str, ts: prost_types::Timestamp) -> Field<DateTime<Utc>> {
    u32::try_from(ts.nanos)
        .ok()
        // A Timestamp's nanos are 0..=999,999,999; chrono would read more at a :59
        // second as a leap second.
        .filter(|n| *n <= TIMESTAMP_NANOS_MAX)
        .filter(|_| (TIMESTAMP_SECONDS_MIN..=TIMESTAMP_SECONDS_MAX).contains(&ts.seconds))
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| {
            Rejection::input(
                field,
                InputProblem::Malformed(format!(
                    "timestamp {}s {}ns is out of range: a Timestamp is 0001-01-01T00:00:00Z to \
                     9999-12-31T23:59:59.999999999Z, nanos 0 to 999,999,999",
                    ts.seconds, ts.nanos
                )),
            )
        })
}

/// A proto enum value: unspecified is missing, an unknown number is malformed.
fn enum_value<P, T>(field: &str, raw: i32, map: impl Fn(P) -> Option<T>) -> Field<T>
where
    P: TryFrom<i32>,
{
    let value = P::try_from(raw).map_err(|_| {
        Rejection::input(
            field,
            InputProblem::Malformed(format!("{raw} is not a known value")),
        )
    })?;
    map(value).ok_or_else(|| Rejection::missing(field))
}

fn region(text: String) -> Field<RegionCode> {
    if text.is_empty() {
        return Err(Rejection::missing("region_code"));
    }
    RegionCode::new(text).map_err(|e| Rejection::input("region_code", e))
}

pub fn register_account(r: pb::RegisterAccountRequest) -> Field<Command> {
    let request_id = request_id(r.request_id)?;
    let account = account("account_id", r.account_id)?;
    let kind = enum_value("kind", r.kind, |k: pb::AccountKind| {
        (k != pb::AccountKind::Unspecified).then_some(k)
    })?;
    // A field the kind does not use is refused, not dropped: a bank registered with a
    // region would otherwise read back without it, the client's mistake lost.
    let unused = |field: &str, text: &str, kind: &str| -> Field<()> {
        if text.is_empty() {
            return Ok(());
        }
        Err(Rejection::input(
            field,
            InputProblem::NotApplicable(format!(
                "is not recorded for {kind} account; leave it empty"
            )),
        ))
    };
    let kind = match kind {
        pb::AccountKind::Volunteer => AccountKind::Volunteer {
            region: region(r.region_code)?,
            joined_on: date("join_date", &r.join_date)?,
        },
        pb::AccountKind::Organisation => {
            unused("join_date", &r.join_date, "an organisation")?;
            AccountKind::Organisation {
                region: region(r.region_code)?,
            }
        }
        other => {
            let (kind, name) = match other {
                pb::AccountKind::Merchant => (AccountKind::Merchant, "a merchant"),
                pb::AccountKind::Project => (AccountKind::Project, "a project"),
                pb::AccountKind::Bank => (AccountKind::Bank, "a bank"),
                _ => return Err(Rejection::missing("kind")),
            };
            unused("region_code", &r.region_code, name)?;
            unused("join_date", &r.join_date, name)?;
            kind
        }
    };
    Ok(Command::RegisterAccount(RegisterAccount {
        request_id,
        account,
        kind,
    }))
}

pub fn close_account(r: pb::CloseAccountRequest) -> Field<Command> {
    Ok(Command::CloseAccount(CloseAccount {
        request_id: request_id(r.request_id)?,
        account: account("account_id", r.account_id)?,
        reason: note("reason", r.reason)?,
    }))
}

pub fn deposit_hours(r: pb::DepositHoursRequest) -> Field<Command> {
    Ok(Command::DepositHours(DepositHours {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        organisation: account("organisation_id", r.organisation_id)?,
        activity: token("activity_id", r.activity_id, ActivityId::new)?,
        service_date: date("service_date", &r.service_date)?,
        started_at: timestamp("started_at", r.started_at)?,
        ended_at: timestamp("ended_at", r.ended_at)?,
        category: token("category", r.category, Category::new)?,
        hours: hours("hours", &r.hours)?,
        kind: enum_value("kind", r.kind, |k: pb::HourKind| match k {
            pb::HourKind::Unspecified => None,
            pb::HourKind::Credit => Some(HourKind::Credit),
            pb::HourKind::Honour => Some(HourKind::Honour),
        })?,
        verifier: token("verifier_id", r.verifier_id, VerifierId::new)?,
    }))
}

pub fn spend_hours(r: pb::SpendHoursRequest) -> Field<Command> {
    Ok(Command::SpendHours(SpendHours {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        purpose: enum_value("purpose", r.purpose, |p: pb::SpendPurpose| match p {
            pb::SpendPurpose::Unspecified => None,
            pb::SpendPurpose::ReceivedService => Some(SpendPurpose::ReceivedService),
            pb::SpendPurpose::FineOffset => Some(SpendPurpose::FineOffset),
            pb::SpendPurpose::Other => Some(SpendPurpose::Other),
        })?,
        counterparty: account("counterparty_id", r.counterparty_id)?,
        hours: hours("hours", &r.hours)?,
        memo: optional_note("memo", r.memo)?,
    }))
}

pub fn exchange_hours(r: pb::ExchangeHoursRequest) -> Field<Command> {
    Ok(Command::ExchangeHours(ExchangeHours {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        hours: hours("hours", &r.hours)?,
        expected_rate_version: (r.expected_rate_version != 0).then_some(r.expected_rate_version),
    }))
}

pub fn transfer_hours(r: pb::TransferHoursRequest) -> Field<Command> {
    Ok(Command::TransferHours(TransferHours {
        request_id: request_id(r.request_id)?,
        from: account("from_volunteer_id", r.from_volunteer_id)?,
        to: account("to_volunteer_id", r.to_volunteer_id)?,
        relation: enum_value("relation", r.relation, |f: pb::FamilyRelation| match f {
            pb::FamilyRelation::Unspecified => None,
            pb::FamilyRelation::Spouse => Some(FamilyRelation::Spouse),
            pb::FamilyRelation::Parent => Some(FamilyRelation::Parent),
            pb::FamilyRelation::Child => Some(FamilyRelation::Child),
            pb::FamilyRelation::Sibling => Some(FamilyRelation::Sibling),
            pb::FamilyRelation::Grandparent => Some(FamilyRelation::Grandparent),
            pb::FamilyRelation::Grandchild => Some(FamilyRelation::Grandchild),
        })?,
        hours: hours("hours", &r.hours)?,
    }))
}

pub fn donate_hours(r: pb::DonateHoursRequest) -> Field<Command> {
    Ok(Command::DonateHours(DonateHours {
        request_id: request_id(r.request_id)?,
        from: account("volunteer_id", r.volunteer_id)?,
        project: account("project_id", r.project_id)?,
        hours: hours("hours", &r.hours)?,
    }))
}

pub fn reverse_transaction(r: pb::ReverseTransactionRequest) -> Field<Command> {
    Ok(Command::ReverseTransaction(ReverseTransaction {
        request_id: request_id(r.request_id)?,
        account: account("account_id", r.account_id)?,
        transaction: TransactionId::parse(&r.transaction_id)
            .map_err(|e| Rejection::input("transaction_id", e))?,
        reason: note("reason", r.reason)?,
    }))
}

pub fn record_no_show(r: pb::RecordNoShowRequest) -> Field<Command> {
    Ok(Command::RecordNoShow(RecordNoShow {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        organisation: account("organisation_id", r.organisation_id)?,
        activity: token("activity_id", r.activity_id, ActivityId::new)?,
        date: date("date", &r.date)?,
    }))
}

pub fn rate_service(r: pb::RateServiceRequest) -> Field<Command> {
    let request_id = request_id(r.request_id)?;
    let volunteer = account("volunteer_id", r.volunteer_id)?;
    let deposit = TransactionId::parse(&r.deposit_transaction_id)
        .map_err(|e| Rejection::input("deposit_transaction_id", e))?;
    if r.rating == 0 {
        return Err(Rejection::missing("rating"));
    }
    let rating = u8::try_from(r.rating)
        .ok()
        .filter(|v| (RATING_MIN..=RATING_MAX).contains(v))
        .ok_or_else(|| {
            Rejection::input(
                "rating",
                InputProblem::Malformed(format!(
                    "is {}; a rating is {RATING_MIN} to {RATING_MAX}",
                    r.rating
                )),
            )
        })?;
    Ok(Command::RateService(RateService {
        request_id,
        volunteer,
        deposit,
        rating,
        rater: token("rater_id", r.rater_id, VerifierId::new)?,
    }))
}

// ---- Partner commands (partners.proto) ----

/// A partner's request id, scoped to the partner's account (`merchant-7:1042`).
///
/// Request ids are unique ledger-wide (the event id derives from them), and tills and
/// bank systems number their requests independently: two merchants both sending
/// request `1` must not collide, nor learn of each other through `REQUEST_ID_REUSED`.
/// Too long to prefix within `REQUEST_ID_BYTES_MAX`, the client's id is replaced by a
/// hash of it (still the same id for a retry). Option not taken: scoping every
/// caller's ids, which would change the ids platforms' existing retries rely on.
///
/// A partner's own id of the hashed form is refused (`ID_RESERVED`): `<account>:h<hex>`
/// of a 41-byte id would be the scoped form of some long id, and a retry of either
/// answered the other's outcome (merchant probe, fourteenth session). Option not
/// taken: a hashed form no client id can take (with a second ':'), which would change
/// the scoped ids of long requests already in logs, so that their retries across an
/// upgrade were no longer recognised and could take effect twice.
pub(crate) fn scoped_request_id(owner: &AccountId, text: String) -> Field<RequestId> {
    let id = request_id(text)?;
    if is_hashed_form(id.as_str()) {
        return Err(Rejection::input("request_id", IdError::HashedForm));
    }
    let scoped = format!("{owner}:{id}");
    let scoped = if scoped.len() <= ledger_core::domain::ids::REQUEST_ID_BYTES_MAX {
        scoped
    } else {
        format!(
            "{owner}:h{}",
            &blake3::hash(id.as_str().as_bytes()).to_hex()[..40]
        )
    };
    RequestId::new(scoped).map_err(|e| Rejection::input("request_id", e))
}

/// A page token: the number the next page starts at (0 for none). Digits only:
/// `u64`'s parser also takes a `+`, which this server never writes.
pub(crate) fn page_token(token: &str) -> Field<u64> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| token.parse().ok())
        .flatten()
        .ok_or_else(page_token_not_issued)
}

/// `page_token` malformed, or past the end of a list that only grows (a token is
/// issued only when a next page exists), so not one this server issued. A token past
/// the end used to read as an empty last page, which a client took for the end.
pub(crate) fn page_token_not_issued() -> Rejection {
    Rejection::input(
        "page_token",
        InputProblem::Malformed(
            "is not a token this server issued; send the next_page_token of the previous page"
                .to_owned(),
        ),
    )
}

pub(crate) fn points(field: &str, text: &str) -> Field<Points> {
    if text.is_empty() {
        return Err(Rejection::missing(field));
    }
    Points::parse(text).map_err(|e| Rejection::input(field, e))
}

pub(crate) fn purpose(text: String) -> Field<Purpose> {
    token("purpose", text, Purpose::new)
}

pub(crate) fn transaction_id(field: &str, text: &str) -> Field<TransactionId> {
    TransactionId::parse(text).map_err(|e| Rejection::input(field, e))
}

/// A redemption token's claims, if this server signed it (`TOKEN_INVALID` otherwise).
pub(crate) fn redemption_token(text: &str, key: &TokenKey) -> Field<RedemptionClaims> {
    if text.is_empty() {
        return Err(Rejection::missing("token"));
    }
    RedemptionClaims::verify(text, key)
        .map_err(|e| Rejection::input("token", InputProblem::Token(e.to_string())))
}

pub fn grant_consent(r: pb::GrantConsentRequest) -> Field<Command> {
    Ok(Command::GrantConsent(GrantConsent {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        bank: account("bank_id", r.bank_id)?,
        purpose: purpose(r.purpose)?,
        expires_at: timestamp("expires_at", r.expires_at)?,
    }))
}

pub fn withdraw_consent(r: pb::WithdrawConsentRequest) -> Field<Command> {
    Ok(Command::WithdrawConsent(WithdrawConsent {
        request_id: request_id(r.request_id)?,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        bank: account("bank_id", r.bank_id)?,
    }))
}

pub fn authorize_redemption(r: pb::AuthorizeRedemptionRequest, key: &TokenKey) -> Field<Command> {
    let merchant = account("merchant_id", r.merchant_id)?;
    Ok(Command::AuthorizeRedemption(AuthorizeRedemption {
        request_id: scoped_request_id(&merchant, r.request_id)?,
        merchant,
        token: redemption_token(&r.token, key)?,
        points: points("points", &r.points)?,
    }))
}

/// [`authorize_redemption`] with the token's claims read without its signature: only
/// to find a retry's recorded answer (`Handler::recorded_outcome`), never to decide.
pub fn authorize_redemption_unverified(r: pb::AuthorizeRedemptionRequest) -> Option<Command> {
    let merchant = account("merchant_id", r.merchant_id).ok()?;
    Some(Command::AuthorizeRedemption(AuthorizeRedemption {
        request_id: scoped_request_id(&merchant, r.request_id).ok()?,
        merchant,
        token: RedemptionClaims::claims_unverified(&r.token)?,
        points: points("points", &r.points).ok()?,
    }))
}

pub fn capture_redemption(r: pb::CaptureRedemptionRequest) -> Field<Command> {
    let merchant = account("merchant_id", r.merchant_id)?;
    Ok(Command::CaptureRedemption(CaptureRedemption {
        request_id: scoped_request_id(&merchant, r.request_id)?,
        merchant,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        hold: transaction_id("hold_id", &r.hold_id)?,
        points: points("points", &r.points)?,
    }))
}

pub fn void_redemption(r: pb::VoidRedemptionRequest) -> Field<Command> {
    let merchant = account("merchant_id", r.merchant_id)?;
    Ok(Command::VoidRedemption(VoidRedemption {
        request_id: scoped_request_id(&merchant, r.request_id)?,
        merchant,
        volunteer: account("volunteer_id", r.volunteer_id)?,
        hold: transaction_id("hold_id", &r.hold_id)?,
    }))
}

/// A batch line: whichever command it holds.
pub fn batch_command(c: pb::Command) -> Field<Command> {
    use pb::command::Command as C;
    match c.command {
        None => Err(Rejection::missing("command")),
        Some(C::RegisterAccount(r)) => register_account(r),
        Some(C::CloseAccount(r)) => close_account(r),
        Some(C::DepositHours(r)) => deposit_hours(r),
        Some(C::SpendHours(r)) => spend_hours(r),
        Some(C::ExchangeHours(r)) => exchange_hours(r),
        Some(C::TransferHours(r)) => transfer_hours(r),
        Some(C::DonateHours(r)) => donate_hours(r),
        Some(C::ReverseTransaction(r)) => reverse_transaction(r),
        Some(C::RecordNoShow(r)) => record_no_show(r),
        Some(C::RateService(r)) => rate_service(r),
    }
}

/// A command request's `request_id` as the client sent it, before any check: what a
/// refusal at the edge is logged with, so that every line of a command's handling
/// carries its request id (docs/quickstart.md), a refused one's too.
pub trait RawRequestId {
    fn raw_request_id(&self) -> &str;
}

macro_rules! raw_request_id {
    ($($t:ty),* $(,)?) => {
        $(impl RawRequestId for $t {
            fn raw_request_id(&self) -> &str {
                &self.request_id
            }
        })*
    };
}

raw_request_id!(
    pb::RegisterAccountRequest,
    pb::CloseAccountRequest,
    pb::DepositHoursRequest,
    pb::SpendHoursRequest,
    pb::ExchangeHoursRequest,
    pb::TransferHoursRequest,
    pb::DonateHoursRequest,
    pb::ReverseTransactionRequest,
    pb::RecordNoShowRequest,
    pb::RateServiceRequest,
);

impl RawRequestId for pb::Command {
    fn raw_request_id(&self) -> &str {
        use pb::command::Command as C;
        match &self.command {
            None => "",
            Some(C::RegisterAccount(r)) => r.raw_request_id(),
            Some(C::CloseAccount(r)) => r.raw_request_id(),
            Some(C::DepositHours(r)) => r.raw_request_id(),
            Some(C::SpendHours(r)) => r.raw_request_id(),
            Some(C::ExchangeHours(r)) => r.raw_request_id(),
            Some(C::TransferHours(r)) => r.raw_request_id(),
            Some(C::DonateHours(r)) => r.raw_request_id(),
            Some(C::ReverseTransaction(r)) => r.raw_request_id(),
            Some(C::RecordNoShow(r)) => r.raw_request_id(),
            Some(C::RateService(r)) => r.raw_request_id(),
        }
    }
}

/// An unchecked request id as a log field: at most [`REQUEST_ID_BYTES_MAX`] characters
/// (one refused for its length can be as long as the message limit allows), control
/// characters escaped (a line break in it must not forge a log line). Displays as the
/// id itself for every id the ledger accepts.
pub fn logged_request_id(raw: &str) -> impl std::fmt::Display + '_ {
    let cut = raw
        .char_indices()
        .nth(REQUEST_ID_BYTES_MAX)
        .map_or(raw, |(i, _)| &raw[..i]);
    cut.escape_debug()
}

pub fn command_result(o: &Outcome) -> pb::CommandResult {
    pb::CommandResult {
        transaction_id: o.transaction.to_string(),
        position: Some(pb::LogPosition {
            commit: o.position.commit(),
            prepare: o.position.prepare(),
        }),
        stream_version: o.stream_version,
        replayed: o.replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long id is replaced by its hash; a short id of the hash's form is refused, so
    /// no two ids a merchant sends share a scoped id (merchant probe: `h<hash of a long
    /// id>` was answered the long id's hold as a replay).
    #[test]
    fn a_partner_id_of_the_hashed_form_is_reserved() {
        let merchant = AccountId::new("merchant-001").unwrap();
        let long = format!("till-7-{}", "x".repeat(112));
        let scoped = scoped_request_id(&merchant, long.clone()).unwrap();
        let tail = scoped.as_str().strip_prefix("merchant-001:").unwrap();
        assert!(is_hashed_form(tail), "{scoped}");
        assert_eq!(
            scoped_request_id(&merchant, long).unwrap(),
            scoped,
            "a retry"
        );
        let e = scoped_request_id(&merchant, tail.to_owned()).unwrap_err();
        assert_eq!((e.reason(), e.field()), ("ID_RESERVED", Some("request_id")));
        // Near misses are ordinary ids.
        for other in [
            tail.to_ascii_uppercase(),
            tail[..40].to_owned(),
            format!("{tail}0"),
            format!("g{}", &tail[1..]),
        ] {
            let id = scoped_request_id(&merchant, other.clone()).unwrap();
            assert_eq!(id.as_str(), format!("merchant-001:{other}"));
        }
    }

    /// A platform's probe: a bank registered with a region (even "NOT VALID") and an
    /// organisation with a join date were accepted and the field dropped; they are
    /// refused, and the kinds that use the fields still take them.
    #[test]
    fn a_registration_field_its_kind_does_not_record_is_refused_not_dropped() {
        let reg = |kind: pb::AccountKind, region: &str, joined: &str| {
            register_account(pb::RegisterAccountRequest {
                request_id: "r-1".into(),
                account_id: "a-1".into(),
                kind: kind as i32,
                region_code: region.into(),
                join_date: joined.into(),
            })
        };
        use pb::AccountKind as K;
        for (kind, region, joined, field) in [
            (K::Bank, "NOT VALID", "", "region_code"),
            (K::Merchant, "hangzhou", "", "region_code"),
            (K::Project, "../../x", "", "region_code"),
            (K::Project, "", "2024-01-01", "join_date"),
            (K::Organisation, "hangzhou", "2024-01-01", "join_date"),
        ] {
            let e = reg(kind, region, joined).unwrap_err();
            assert_eq!(
                (e.reason(), e.field()),
                ("FIELD_NOT_APPLICABLE", Some(field)),
                "{kind:?}: {e}"
            );
            assert!(e.to_string().contains("leave it empty"), "{e}");
        }
        assert!(reg(K::Bank, "", "").is_ok());
        assert!(reg(K::Organisation, "hangzhou", "").is_ok());
        assert!(reg(K::Volunteer, "hangzhou", "2024-01-01").is_ok());
    }

    /// A Timestamp's defined range, to the second and nanosecond, and nothing past it:
    /// an instant near chrono's own ends panicked when moved into a calendar west of
    /// UTC (`Context::day_of`), so none may reach a command.
    #[test]
    fn an_instant_is_read_inside_the_timestamp_range_only() {
        let at = |seconds, nanos| instant("at", prost_types::Timestamp { seconds, nanos });
        let first = at(TIMESTAMP_SECONDS_MIN, 0).expect("0001-01-01T00:00:00Z");
        assert_eq!(first.to_rfc3339(), "0001-01-01T00:00:00+00:00");
        let last = at(TIMESTAMP_SECONDS_MAX, 999_999_999).expect("9999-12-31T23:59:59.999999999Z");
        assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999999+00:00");
        let west = chrono::FixedOffset::west_opt(12 * 3600).expect("an offset");
        assert_eq!(
            first.with_timezone(&west).date_naive().to_string(),
            "0000-12-31"
        );
        for (seconds, nanos) in [
            (TIMESTAMP_SECONDS_MIN - 1, 999_999_999),
            (TIMESTAMP_SECONDS_MAX + 1, 0),
            (-8_334_601_228_800, 0),
            (i64::MIN, 0),
            (i64::MAX, 0),
            (0, -1),
            (0, 1_000_000_000),
        ] {
            let e = at(seconds, nanos).expect_err("outside the range");
            assert!(
                e.to_string().contains("out of range"),
                "{seconds} {nanos}: {e}"
            );
        }
    }

    #[test]
    fn a_shaped_date_reads_as_chronos_format_reads_it() {
        for year in ["0000", "0001", "1999", "2024", "2026", "2100", "9999"] {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year}-{month:02}-{day:02}");
                    assert_eq!(
                        date("service_date", &text).ok(),
                        NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok(),
                        "{text}"
                    );
                }
            }
        }
    }

    fn reason(r: Field<Command>) -> &'static str {
        r.err().map(|e| e.reason()).unwrap_or("OK")
    }

    #[test]
    fn bad_fields_name_the_field_and_rule() {
        let ok = pb::DonateHoursRequest {
            request_id: "r1".into(),
            volunteer_id: "v1".into(),
            project_id: "p".into(),
            hours: "1.5".into(),
        };
        assert_eq!(reason(donate_hours(ok.clone())), "OK");
        let with = |f: fn(&mut pb::DonateHoursRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            donate_hours(r).unwrap_err()
        };
        let e = with(|r| r.hours = "-1".into());
        assert_eq!(
            (e.reason(), e.field()),
            ("AMOUNT_NOT_POSITIVE", Some("hours"))
        );
        assert_eq!(
            with(|r| r.hours = "1.001".into()).reason(),
            "AMOUNT_SCALE_EXCEEDED"
        );
        assert_eq!(
            with(|r| r.hours = "1,5".into()).reason(),
            "AMOUNT_MALFORMED"
        );
        assert_eq!(with(|r| r.hours = String::new()).reason(), "FIELD_MISSING");
        assert_eq!(with(|r| r.request_id = String::new()).reason(), "ID_EMPTY");
        assert_eq!(
            with(|r| r.request_id = "x".repeat(129)).reason(),
            "ID_TOO_LONG"
        );
        assert_eq!(
            with(|r| r.project_id = "a/b".into()).reason(),
            "ID_CHARACTERS"
        );
        let e = with(|r| r.request_id = "till 7".into());
        assert_eq!(e.reason(), "ID_CHARACTERS");
        assert!(!e.to_string().contains("':'"), "{e}");
        let e = with(|r| r.request_id = "system:expire-hold:x".into());
        assert_eq!((e.reason(), e.field()), ("ID_RESERVED", Some("request_id")));
        for e in [
            with(|r| r.request_id = "m-1:till-7".into()),
            with(|r| r.request_id = ":x".into()),
            with(|r| r.request_id = "x:".into()),
        ] {
            assert_eq!((e.reason(), e.field()), ("ID_RESERVED", Some("request_id")));
            assert!(e.to_string().contains("without ':'"), "{e}");
        }
    }

    #[test]
    fn dates_timestamps_and_enums() {
        assert!(date("d", "2026-11-20").is_ok());
        for bad in [
            "2026-13-01",
            "20261120",
            "2026-11-20T00:00",
            "tomorrow",
            "-001-01-01",
            "+002-01-01",
            " 2026-1-01",
        ] {
            assert_eq!(
                date("d", bad).unwrap_err().reason(),
                "FIELD_MALFORMED",
                "{bad}"
            );
        }
        let t = |seconds, nanos| timestamp("t", Some(prost_types::Timestamp { seconds, nanos }));
        assert!(t(0, 0).is_ok());
        assert_eq!(t(0, -1).unwrap_err().reason(), "FIELD_MALFORMED");
        assert!(t(59, 999_999_999).is_ok());
        assert_eq!(
            t(59, 1_500_000_000).unwrap_err().reason(),
            "FIELD_MALFORMED"
        );
        assert_eq!(t(i64::MAX, 0).unwrap_err().reason(), "FIELD_MALFORMED");
        assert_eq!(timestamp("t", None).unwrap_err().reason(), "FIELD_MISSING");
        let r = pb::RegisterAccountRequest {
            request_id: "r".into(),
            account_id: "a".into(),
            kind: 99,
            ..Default::default()
        };
        assert_eq!(reason(register_account(r.clone())), "FIELD_MALFORMED");
        assert_eq!(
            reason(register_account(pb::RegisterAccountRequest {
                kind: 0,
                ..r.clone()
            })),
            "FIELD_MISSING"
        );
        assert_eq!(
            reason(register_account(pb::RegisterAccountRequest {
                kind: 1,
                ..r
            })),
            "FIELD_MISSING"
        );
    }
}

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
use super::ids::{ActivityId, Category, Note, Purpose, TransactionId, VerifierId};
use super::postings::Posting;

/// `account unit amount` legs, for messages.
fn legs(postings: &[Posting]) -> String {
    postings
        .iter()
        .map(|p| format!("{} {} {}", p.account, p.unit.as_str(), p.amount))
        .collect::<Vec<_>>()
        .join(", ")
}
use super::units::{ExchangeRate, Hours, Points};

/// Serialised by hand (below): in JSON the kind's fields sit beside the account's
/// (`"kind":"volunteer","region":…`), a shape only self-describing formats can read
/// back, so a binary payload carries the kind as a tagged value instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRegistered {
    pub account: AccountId,
    pub kind: AccountKind,
    pub registered_at: DateTime<Utc>,
}

/// [`AccountRegistered`] as JSON: the kind flattened into the object.
#[derive(Serialize, Deserialize)]
struct AccountRegisteredJson {
    account: AccountId,
    #[serde(flatten)]
    kind: AccountKind,
    #[serde(with = "crate::domain::serde_time::utc")]
    registered_at: DateTime<Utc>,
}

/// [`AccountRegistered`] in a binary payload: the kind as an enum value (its variant
/// index, then its fields). The variants' order is the wire format: append only.
#[derive(Serialize, Deserialize)]
struct AccountRegisteredBinary {
    account: AccountId,
    kind: AccountKindBinary,
    #[serde(with = "crate::domain::serde_time::utc")]
    registered_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
enum AccountKindBinary {
    Volunteer {
        region: super::account::RegionCode,
        #[serde(with = "crate::domain::serde_time::date")]
        joined_on: NaiveDate,
    },
    Organisation {
        region: super::account::RegionCode,
    },
    Merchant,
    Project,
    Bank,
}

impl From<AccountKind> for AccountKindBinary {
    fn from(k: AccountKind) -> Self {
        match k {
            AccountKind::Volunteer { region, joined_on } => Self::Volunteer { region, joined_on },
            AccountKind::Organisation { region } => Self::Organisation { region },
            AccountKind::Merchant => Self::Merchant,
            AccountKind::Project => Self::Project,
            AccountKind::Bank => Self::Bank,
        }
    }
}

impl From<AccountKindBinary> for AccountKind {
    fn from(k: AccountKindBinary) -> Self {
        match k {
            AccountKindBinary::Volunteer { region, joined_on } => {
                Self::Volunteer { region, joined_on }
            }
            AccountKindBinary::Organisation { region } => Self::Organisation { region },
            AccountKindBinary::Merchant => Self::Merchant,
            AccountKindBinary::Project => Self::Project,
            AccountKindBinary::Bank => Self::Bank,
        }
    }
}

// Registrations are rare (one per account): the copies into the mirrors cost nothing
// that shows, and keep one definition of each shape.
impl Serialize for AccountRegistered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            AccountRegisteredJson {
                account: self.account.clone(),
                kind: self.kind.clone(),
                registered_at: self.registered_at,
            }
            .serialize(s)
        } else {
            AccountRegisteredBinary {
                account: self.account.clone(),
                kind: self.kind.clone().into(),
                registered_at: self.registered_at,
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for AccountRegistered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let r = AccountRegisteredJson::deserialize(d)?;
            Ok(Self {
                account: r.account,
                kind: r.kind,
                registered_at: r.registered_at,
            })
        } else {
            let r = AccountRegisteredBinary::deserialize(d)?;
            Ok(Self {
                account: r.account,
                kind: r.kind.into(),
                registered_at: r.registered_at,
            })
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClosed {
    pub account: AccountId,
    pub reason: Note,
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::date")]
    pub service_date: NaiveDate,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub ended_at: DateTime<Utc>,
    pub category: Category,
    pub hours: Hours,
    pub kind: HourKind,
    pub verifier: VerifierId,
    pub postings: Vec<Posting>,
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursDonated {
    pub transaction: TransactionId,
    pub from: AccountId,
    pub project: AccountId,
    pub hours: Hours,
    pub postings: Vec<Posting>,
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::date")]
    pub service_date: NaiveDate,
    #[serde(with = "crate::domain::serde_time::utc")]
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
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A volunteer authorised a bank to read their credit report for one purpose until an
/// expiry, recorded by their platform. On the volunteer's stream; moves nothing. A new
/// consent to the same bank replaces the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentGranted {
    /// This consent's id (the event's id): inquiries name it.
    pub consent: TransactionId,
    pub volunteer: AccountId,
    pub bank: AccountId,
    pub purpose: Purpose,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// The volunteer withdrew their consent to a bank. On the volunteer's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentWithdrawn {
    /// The consent withdrawn.
    pub consent: TransactionId,
    pub volunteer: AccountId,
    pub bank: AccountId,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A bank was served the volunteer's credit report (an *inquiry*). On the volunteer's
/// stream, appended only while the volunteer's consent to that bank for that purpose
/// was current. It keeps the report exactly as served, so the bank can later show a
/// regulator what its decision was based on, and the volunteer can see who looked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditReportServed {
    /// The inquiry's id (the event's id).
    pub inquiry: TransactionId,
    pub volunteer: AccountId,
    pub bank: AccountId,
    /// The consent the inquiry was made under.
    pub consent: TransactionId,
    pub purpose: Purpose,
    /// The authenticated caller that asked (a name from the server's access file).
    pub caller: String,
    /// The credit model version and score, for listings without parsing the report.
    pub model_version: String,
    pub score: u32,
    /// The report as served: JSON text, kept byte for byte (`docs/events.md`).
    pub report: String,
    /// Hex BLAKE3 of `report`'s bytes.
    pub report_digest: String,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A merchant put a hold on a volunteer's points against a redemption token. On the
/// volunteer's stream; moves nothing (the points stay the volunteer's but are not
/// available) until it is captured, voided or expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionAuthorized {
    /// The hold's id (the event's id).
    pub hold: TransactionId,
    pub volunteer: AccountId,
    pub merchant: AccountId,
    /// The redemption token's id: a token authorises at most one hold.
    pub token: uuid::Uuid,
    pub points: Points,
    /// An uncaptured hold expires at this instant and its points return.
    #[serde(with = "crate::domain::serde_time::utc")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A merchant captured a hold, for all of its points or fewer; the rest return to the
/// volunteer. Postings: `volunteer → system:points-redeemed` (points captured).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionCaptured {
    pub transaction: TransactionId,
    pub hold: TransactionId,
    pub volunteer: AccountId,
    pub merchant: AccountId,
    pub points: Points,
    /// Held points returned to the volunteer ("0.00" for a full capture).
    pub released: rust_decimal::Decimal,
    pub postings: Vec<Posting>,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A merchant voided a hold; all its points return to the volunteer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionVoided {
    pub hold: TransactionId,
    pub volunteer: AccountId,
    pub merchant: AccountId,
    pub released: Points,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub recorded_at: DateTime<Utc>,
}

/// A hold reached its expiry uncaptured; its points returned to the volunteer.
/// Appended by the server's hold sweeper. The points are available again from
/// `expires_at` on, whether or not this event has been written yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionHoldExpired {
    pub hold: TransactionId,
    pub volunteer: AccountId,
    pub merchant: AccountId,
    pub released: Points,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub expired_at: DateTime<Utc>,
    #[serde(with = "crate::domain::serde_time::utc")]
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
    ConsentGranted(ConsentGranted),
    ConsentWithdrawn(ConsentWithdrawn),
    CreditReportServed(CreditReportServed),
    RedemptionAuthorized(RedemptionAuthorized),
    RedemptionCaptured(RedemptionCaptured),
    RedemptionVoided(RedemptionVoided),
    RedemptionHoldExpired(RedemptionHoldExpired),
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
    #[error("event of type {event_type} has a binary payload that does not decode: {what}")]
    BinaryPayload { event_type: String, what: String },
}

/// How the handler writes event payloads (`LedgerConfig::payload_encoding`). Reading
/// accepts both, event by event, so a log may hold either or a mix: a payload whose
/// first byte is [`BINARY_PAYLOAD_TAG`] is binary, any other is JSON (JSON text never
/// starts with that byte). The event type names do not change with the encoding: the
/// fields, their meaning and their checks are the same (`docs/events.md`, "Binary
/// payloads").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// Readable JSON text: what any JSON tool reads, and what the log held before
    /// binary payloads existed. The default, because the log is what auditors read.
    #[default]
    Json,
    /// [`BINARY_PAYLOAD_TAG`] then the event's fields in postcard 1.0's wire format,
    /// and binary metadata likewise: less than half the bytes, cheaper to write, hash
    /// and read than JSON (docs/benchmarks.md, "Eighth session").
    Binary,
}

impl PayloadEncoding {
    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Binary => "binary",
        }
    }
}

/// First byte of a binary payload: a control character, which JSON text (RFC 8259)
/// never starts with, so one byte tells the two encodings apart without a field in
/// the log's record (the option not taken: a content-type flag in every backend's
/// record, which the embedded log's format and its readers would all have to carry).
/// A later binary layout would take another control character.
pub const BINARY_PAYLOAD_TAG: u8 = 0x01;

/// True if `data` is a binary payload ([`BINARY_PAYLOAD_TAG`]).
pub fn is_binary_payload(data: &[u8]) -> bool {
    data.first() == Some(&BINARY_PAYLOAD_TAG)
}

/// `value` in postcard, after the bytes already in `bytes` (a tag, or nothing).
///
/// Why not `postcard::to_extend`: it writes through `Extend<u8>`, one byte at a time
/// for every string and byte slice; a batched deposit's three postcard writes (its
/// command for the request digest, its event, its metadata) spent ~1,300 instructions
/// there (callgrind, docs/benchmarks.md "Seventeenth session"). This flavor copies
/// each slice at once. Option not taken: `postcard::to_allocvec`, which cannot start
/// from a buffer with room reserved and a tag in it.
pub(crate) fn postcard_after<T: Serialize + ?Sized>(
    bytes: Vec<u8>,
    value: &T,
) -> postcard::Result<Vec<u8>> {
    postcard::serialize_with_flavor(value, AppendToVec(bytes))
}

/// A postcard output that appends to a `Vec<u8>` slice by slice ([`postcard_after`]).
struct AppendToVec(Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendToVec {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Room reserved for an event's binary payload: a deposit is ~120 bytes; an
/// inquiry, which keeps its ~2 KiB report, grows the buffer as JSON's would.
const EVENT_BINARY_BYTES_TYPICAL: usize = 256;

/// Decode the postcard bytes after the tag, refusing bytes left over (as serde_json
/// refuses text after the value): a payload is one event and nothing else.
///
/// Not refused: another spelling of the same values, such as a varint with redundant
/// continuation bytes (`85 00` for 5), as a JSON reader takes `"A"` and `"\u0041"`,
/// or any spacing, for the same text. The hash chain is
/// over the stored bytes, and the audit service and the export hand those out beside
/// the JSON rendering, so two spellings never pass for one record. Option not taken:
/// encoding every decoded event again and comparing with the stored bytes, which
/// roughly doubles a binary decode for every reader of the log to enforce a property
/// the JSON payloads never had.
fn from_binary<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} bytes after the last field", rest.len())),
        Err(_) => Err(binary_error::<T>(body)),
    }
}

/// Why `body` does not decode, naming the field: postcard's errors carry no text of
/// their own (a rule's refusal, e.g. "amount 0 is not positive …", reaches it as a bare
/// "custom" error), so the bytes are read again, on this error path only, through
/// `serde_path_to_error`, which records where the decoder was when it failed.
fn binary_error<T: serde::de::DeserializeOwned>(body: &[u8]) -> String {
    let mut de = postcard::Deserializer::from_bytes(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => "it decodes when read again".to_owned(),
        Err(e) => {
            let what = match e.inner() {
                postcard::Error::SerdeDeCustom => {
                    "its value breaks its rule (an id, amount, instant or date the ledger refuses)"
                        .to_owned()
                }
                other => other.to_string(),
            };
            // postcard reads a struct as a sequence, so the path counts fields from 0
            // in their order (docs/events.md lists them in that order): `[11].[0].[2]`
            // is the amount of a deposit's first posting.
            format!("field {} (fields counted from 0): {what}", e.path())
        }
    }
}

/// `data` as text, checked to be UTF-8 once, as a whole, for `serde_json::from_str`.
///
/// Why not `serde_json::from_slice`: reading bytes, serde_json checks the UTF-8 of
/// every string it reads, one call per string (a deposit has ~40, keys included);
/// that was ~17 % of a replay's instructions inside `ReadModels::apply`. From a
/// `str` it checks nothing more. JSON is UTF-8 (RFC 8259) and every payload the ledger
/// writes is. The differences: a payload with invalid UTF-8 inside a field the
/// decoder skips used to decode, and is now refused like any other invalid payload
/// (what the audit API, serving payloads as text, already did); the same holds for
/// metadata (`EventMetadata::decode`, so the chain check refuses such an event); and
/// the refusal's text names the byte offset instead of a line and column.
pub(crate) fn json_text(data: &[u8]) -> Result<&str, serde_json::Error> {
    std::str::from_utf8(data).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("the JSON is not UTF-8: {e}"))
    })
}

/// Room reserved for an event's JSON before it is written: a deposit is ~400–600
/// bytes, so it is written without growing the buffer. (`serde_json::to_vec` starts
/// at 128 bytes and grows three times for a deposit, copying what it has each time.)
/// Not a limit: a larger event grows the buffer as before.
const EVENT_JSON_BYTES_TYPICAL: usize = 1024;

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
                let mut bytes = Vec::with_capacity(EVENT_JSON_BYTES_TYPICAL);
                let written = match self {
                    $(Self::$variant(e) => serde_json::to_writer(&mut bytes, e)),*
                };
                written.expect("ledger events always serialise");
                bytes
            }

            /// The JSON payload as text: the bytes of [`LedgerEvent::encode`], for
            /// readers that show a binary payload as the JSON a JSON-writing ledger
            /// would have stored (the audit API, the export).
            pub fn to_json_string(&self) -> String {
                let text = match self {
                    $(Self::$variant(e) => serde_json::to_string(e)),*
                };
                text.expect("ledger events always serialise")
            }

            /// The payload in `encoding`.
            pub fn encode_as(&self, encoding: PayloadEncoding) -> Vec<u8> {
                match encoding {
                    PayloadEncoding::Json => self.encode(),
                    PayloadEncoding::Binary => {
                        let mut bytes = Vec::with_capacity(EVENT_BINARY_BYTES_TYPICAL);
                        bytes.push(BINARY_PAYLOAD_TAG);
                        let written = match self {
                            $(Self::$variant(e) => postcard_after(bytes, e)),*
                        };
                        written.expect("ledger events always serialise")
                    }
                }
            }

            /// Decode a stored payload of either encoding ([`PayloadEncoding`]).
            pub fn decode(event_type: &str, data: &[u8]) -> Result<Self, DecodeError> {
                if let Some(body) = data.strip_prefix(&[BINARY_PAYLOAD_TAG]) {
                    let payload = |what| DecodeError::BinaryPayload { event_type: event_type.to_owned(), what };
                    return match event_type {
                        $($name => from_binary(body).map(Self::$variant).map_err(payload),)*
                        other => Err(DecodeError::UnknownType(other.to_owned())),
                    };
                }
                let payload = |source| DecodeError::Payload { event_type: event_type.to_owned(), source };
                match event_type {
                    $($name => serde_json::from_str(json_text(data).map_err(payload)?).map(Self::$variant).map_err(payload),)*
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
    ConsentGranted => "ConsentGranted.v1",
    ConsentWithdrawn => "ConsentWithdrawn.v1",
    CreditReportServed => "CreditReportServed.v1",
    RedemptionAuthorized => "RedemptionAuthorized.v1",
    RedemptionCaptured => "RedemptionCaptured.v1",
    RedemptionVoided => "RedemptionVoided.v1",
    RedemptionHoldExpired => "RedemptionHoldExpired.v1",
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
            Self::RedemptionCaptured(e) => Some(&e.postings),
            Self::AccountRegistered(_)
            | Self::AccountClosed(_)
            | Self::HoursReceived(_)
            | Self::NoShowRecorded(_)
            | Self::ServiceRated(_)
            | Self::ConsentGranted(_)
            | Self::ConsentWithdrawn(_)
            | Self::CreditReportServed(_)
            | Self::RedemptionAuthorized(_)
            | Self::RedemptionVoided(_)
            | Self::RedemptionHoldExpired(_) => None,
        }
    }

    /// What a stored event contradicts about itself, if anything: postings that do
    /// not sum to zero per unit, or that are not the movement its own fields name (a
    /// deposit's hours from `system:hour-issuance` to its volunteer, an exchange's
    /// hours and points, ...; `docs/ledger-rules.md`, "Double entry"). The handler never
    /// writes such an event (it builds the postings from those fields and asserts the
    /// balance), so one read back from a log was written or altered by something
    /// else. A reversal's postings negate its original's, which only the original's
    /// stream can tell: here it is checked for balance only. Legs are compared as a
    /// set (any order) and amounts by value (`1.0` is `1.00`).
    pub fn inconsistency(&self) -> Option<String> {
        use super::account::SystemAccount as S;
        use super::postings::{balanced, two_legs, Posting};
        use super::units::Unit;
        let postings = self.postings()?;
        if !balanced(postings) {
            return Some(format!(
                "its postings do not sum to zero per unit: {}",
                legs(postings)
            ));
        }
        let expected: Vec<Posting> = match self {
            Self::HoursDeposited(e) => {
                let unit = match e.kind {
                    HourKind::Credit => Unit::Hours,
                    HourKind::Honour => Unit::HonourHours,
                };
                let issuance = AccountId::system(S::HourIssuance);
                two_legs(unit, &issuance, &e.volunteer, e.hours.value()).to_vec()
            }
            Self::HoursSpent(e) => {
                let services = AccountId::system(S::Services);
                two_legs(Unit::Hours, &e.volunteer, &services, e.hours.value()).to_vec()
            }
            Self::HoursExchanged(e) => {
                let redeemed = AccountId::system(S::HoursRedeemed);
                let issuance = AccountId::system(S::PointIssuance);
                let mut v =
                    two_legs(Unit::Hours, &e.volunteer, &redeemed, e.hours.value()).to_vec();
                v.extend(two_legs(
                    Unit::Points,
                    &issuance,
                    &e.volunteer,
                    e.points.value(),
                ));
                v
            }
            Self::HoursTransferred(e) => {
                two_legs(Unit::Hours, &e.from, &e.to, e.hours.value()).to_vec()
            }
            Self::HoursDonated(e) => {
                two_legs(Unit::Hours, &e.from, &e.project, e.hours.value()).to_vec()
            }
            Self::RedemptionCaptured(e) => {
                let redeemed = AccountId::system(S::PointsRedeemed);
                two_legs(Unit::Points, &e.volunteer, &redeemed, e.points.value()).to_vec()
            }
            _ => return None,
        };
        let key = |p: &Posting| (p.account.clone(), p.unit, p.amount.normalize());
        let mut have: Vec<_> = postings.iter().map(key).collect();
        let mut want: Vec<_> = expected.iter().map(key).collect();
        have.sort();
        want.sort();
        (have != want).then(|| {
            format!(
                "its postings ({}) are not the movement its own fields name ({})",
                legs(postings),
                legs(&expected)
            )
        })
    }

    /// When the ledger recorded the event.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        match self {
            Self::AccountRegistered(e) => e.registered_at,
            Self::AccountClosed(e) => e.closed_at,
            Self::HoursDeposited(e) => e.recorded_at,
            Self::HoursSpent(e) => e.recorded_at,
            Self::HoursExchanged(e) => e.recorded_at,
            Self::HoursTransferred(e) => e.recorded_at,
            Self::HoursDonated(e) => e.recorded_at,
            Self::TransactionReversed(e) => e.recorded_at,
            Self::HoursReceived(e) => e.recorded_at,
            Self::NoShowRecorded(e) => e.recorded_at,
            Self::ServiceRated(e) => e.recorded_at,
            Self::ConsentGranted(e) => e.recorded_at,
            Self::ConsentWithdrawn(e) => e.recorded_at,
            Self::CreditReportServed(e) => e.recorded_at,
            Self::RedemptionAuthorized(e) => e.recorded_at,
            Self::RedemptionCaptured(e) => e.recorded_at,
            Self::RedemptionVoided(e) => e.recorded_at,
            Self::RedemptionHoldExpired(e) => e.recorded_at,
        }
    }

    /// The type names of the partner events ([`Self::is_partner_event`]), so a reader
    /// that leaves them out can do so without decoding them: an inquiry holds the whole
    /// report served (~2 KiB of JSON), and a volunteer's stream gains one per report a
    /// bank asks for.
    pub const PARTNER_TYPE_NAMES: &'static [&'static str] = &[
        "ConsentGranted.v1",
        "ConsentWithdrawn.v1",
        "CreditReportServed.v1",
        "RedemptionAuthorized.v1",
        "RedemptionCaptured.v1",
        "RedemptionVoided.v1",
        "RedemptionHoldExpired.v1",
    ];

    /// True for the partner events (consents, inquiries, redemption holds): facts about
    /// access and points, not about service. The credit model leaves them out of its
    /// inputs, so a report's inputs digest does not change because a bank looked.
    pub fn is_partner_event(&self) -> bool {
        // One list, so a reader skipping by name and one asking the event agree.
        Self::PARTNER_TYPE_NAMES.contains(&self.event_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::EventMetadata;

    const DEPOSIT: &str = r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","volunteer":"vol-1","organisation":"org-1","activity":"act-1","service_date":"2026-03-05","started_at":"2026-03-05T09:00:00Z","ended_at":"2026-03-05T11:30:00Z","category":"elderly-care","hours":"2.50","kind":"credit","verifier":"ver-1","postings":[],"recorded_at":"2026-03-05T12:00:00.123Z"}"#;

    /// A stored deposit whose postings are `postings` (JSON array text).
    fn deposit_with(postings: &str) -> LedgerEvent {
        let text = DEPOSIT.replace(r#""postings":[]"#, &format!(r#""postings":{postings}"#));
        LedgerEvent::decode("HoursDeposited.v1", text.as_bytes()).expect("decodes")
    }

    #[test]
    fn given_a_deposit_as_decided_then_it_contradicts_nothing() {
        let e = deposit_with(
            r#"[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"vol-1","unit":"hours","amount":"2.50"}]"#,
        );
        assert_eq!(e.inconsistency(), None);
        // The legs in the other order, amounts at another scale: the same movement.
        let e = deposit_with(
            r#"[{"account":"vol-1","unit":"hours","amount":"2.5"},{"account":"system:hour-issuance","unit":"hours","amount":"-2.500"}]"#,
        );
        assert_eq!(e.inconsistency(), None);
    }

    #[test]
    fn given_a_deposit_altered_on_disk_then_its_inconsistency_is_named() {
        // One leg changed: 8 hours from nothing.
        let e = deposit_with(
            r#"[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"vol-1","unit":"hours","amount":"10.50"}]"#,
        );
        let why = e.inconsistency().expect("unbalanced");
        assert!(
            why.starts_with("its postings do not sum to zero per unit"),
            "{why}"
        );
        // Both legs changed, the hours field not: balanced, but not this deposit.
        let e = deposit_with(
            r#"[{"account":"system:hour-issuance","unit":"hours","amount":"-9.00"},{"account":"vol-1","unit":"hours","amount":"9.00"}]"#,
        );
        let why = e.inconsistency().expect("not its movement");
        assert!(
            why.contains("are not the movement its own fields name"),
            "{why}"
        );
        // Credited to someone else, or in the wrong unit.
        for legs in [
            r#"[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"vol-2","unit":"hours","amount":"2.50"}]"#,
            r#"[{"account":"system:hour-issuance","unit":"honour_hours","amount":"-2.50"},{"account":"vol-1","unit":"honour_hours","amount":"2.50"}]"#,
            r#"[]"#,
        ] {
            assert!(deposit_with(legs).inconsistency().is_some(), "{legs}");
        }
    }

    #[test]
    fn a_payload_round_trips_through_its_text() {
        let event = LedgerEvent::decode("HoursDeposited.v1", DEPOSIT.as_bytes()).expect("decodes");
        assert_eq!(event.encode(), DEPOSIT.as_bytes(), "the same bytes back");
        assert_eq!(event.to_json_string(), DEPOSIT, "and as text, the same");
        let metadata = crate::domain::chain::EventMetadata::decode(
            &crate::domain::chain::encode_metadata(None, &[7; 32], None),
        )
        .expect("decodes");
        assert_eq!(metadata.to_json_string().as_bytes(), metadata.encode());
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_refused_even_in_a_field_no_reader_reads() {
        // Given a deposit with an extra field holding a byte that is not UTF-8, which
        // `from_slice` skipped without looking at (the reason `json_text` says)
        let mut bytes = DEPOSIT.as_bytes()[..DEPOSIT.len() - 1].to_vec();
        bytes.extend_from_slice(b",\"note\":\"caf\xE9\"}");
        // When it is decoded; then it is refused as a payload that does not decode
        match LedgerEvent::decode("HoursDeposited.v1", &bytes) {
            Err(DecodeError::Payload { event_type, source }) => {
                assert_eq!(event_type, "HoursDeposited.v1");
                assert!(source.to_string().contains("not UTF-8"), "{source}");
            }
            other => panic!("expected a payload error, got {other:?}"),
        }
        // And metadata likewise
        assert!(EventMetadata::decode(b"{\"schema\":1,\"prev_hash\":\"\xE9\"}").is_err());
    }

    /// Amounts are checked when read, not only when a client sends them: a stored
    /// payload is not trusted to have come through the handler, and the read models
    /// fold amounts in hundredths (they asserted, and a worker panicked, on `2.505`).
    #[test]
    fn a_stored_amount_outside_the_units_rules_does_not_decode() {
        let posting = |amount: &str| {
            DEPOSIT.replace(
                r#""postings":[]"#,
                &format!(
                    r#""postings":[{{"account":"vol-1","unit":"hours","amount":"{amount}"}}]"#
                ),
            )
        };
        let refused = [
            DEPOSIT.replace(r#""hours":"2.50""#, r#""hours":"2.505""#),
            DEPOSIT.replace(r#""hours":"2.50""#, r#""hours":"0.00""#),
            DEPOSIT.replace(r#""hours":"2.50""#, r#""hours":"-2.50""#),
            DEPOSIT.replace(r#""hours":"2.50""#, r#""hours":"10000.01""#),
            posting("2.505"),
            posting("0"),
            posting("-1000000.01"),
        ];
        for payload in refused {
            match LedgerEvent::decode("HoursDeposited.v1", payload.as_bytes()) {
                Err(DecodeError::Payload { source, .. }) => {
                    assert!(source.to_string().contains("amount"), "{source}")
                }
                other => panic!("{payload}: expected a payload error, got {other:?}"),
            }
        }
        // Trailing zeros are not places; either sign is a leg.
        for payload in [
            DEPOSIT.replace(r#""hours":"2.50""#, r#""hours":"2.500""#),
            posting("-2.50"),
            posting("1000000"),
        ] {
            assert!(
                LedgerEvent::decode("HoursDeposited.v1", payload.as_bytes()).is_ok(),
                "{payload}"
            );
        }
    }

    /// Ids and region codes are checked when read, like amounts: a payload whose id
    /// breaks the id rules, or a registration whose region has five levels (the read
    /// models' region tree has at most four and asserted it, a worker panic), was not
    /// written by this ledger and does not decode; the refusal names the rule.
    #[test]
    fn a_stored_id_or_region_outside_the_rules_does_not_decode() {
        let refused = [
            (
                "HoursDeposited.v1",
                DEPOSIT.replace(r#""volunteer":"vol-1""#, r#""volunteer":"vol 1""#),
                "AccountId may hold only ASCII letters",
            ),
            (
                "HoursDeposited.v1",
                DEPOSIT.replace(r#""activity":"act-1""#, r#""activity":"""#),
                "ActivityId is empty",
            ),
            (
                "HoursDeposited.v1",
                DEPOSIT.replace(
                    r#""organisation":"org-1""#,
                    &format!(r#""organisation":"{}""#, "o".repeat(65)),
                ),
                "AccountId is 65 bytes; at most 64",
            ),
            (
                "AccountRegistered.v1",
                r#"{"account":"v-1","kind":"volunteer","region":"a/b/c/d/e","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#.to_owned(),
                "region code \"a/b/c/d/e\" must be 1 to 4 levels",
            ),
        ];
        for (event_type, payload, rule) in refused {
            match LedgerEvent::decode(event_type, payload.as_bytes()) {
                Err(DecodeError::Payload { source, .. }) => {
                    assert!(source.to_string().contains(rule), "{rule}: {source}")
                }
                other => panic!("{payload}: expected a payload error, got {other:?}"),
            }
        }
        assert!(LedgerEvent::decode("HoursDeposited.v1", DEPOSIT.as_bytes()).is_ok());
    }

    /// Every partner type name is a type this build reads, and the list is the one
    /// the credit model's exclusion documents (docs/credit-score.md).
    #[test]
    fn the_partner_type_names_are_the_consent_inquiry_and_redemption_types() {
        for name in LedgerEvent::PARTNER_TYPE_NAMES {
            assert!(LedgerEvent::TYPE_NAMES.contains(name), "{name}");
        }
        let partner: Vec<&str> = LedgerEvent::TYPE_NAMES
            .iter()
            .copied()
            .filter(|n| {
                n.starts_with("Consent")
                    || n.starts_with("CreditReport")
                    || n.starts_with("Redemption")
            })
            .collect();
        assert_eq!(partner, LedgerEvent::PARTNER_TYPE_NAMES);
    }

    #[test]
    fn an_unknown_type_is_reported_before_its_payload_is_read() {
        assert!(matches!(
            LedgerEvent::decode("HoursDeposited.v9", b"\xFF"),
            Err(DecodeError::UnknownType(t)) if t == "HoursDeposited.v9"
        ));
        assert!(matches!(
            LedgerEvent::decode("HoursDeposited.v9", &[BINARY_PAYLOAD_TAG, 0xFF]),
            Err(DecodeError::UnknownType(t)) if t == "HoursDeposited.v9"
        ));
    }

    fn deposit_with_postings() -> LedgerEvent {
        let json = DEPOSIT.replace(
            r#""postings":[]"#,
            r#""postings":[{"account":"vol-1","unit":"hours","amount":"2.50"},{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"}]"#,
        );
        LedgerEvent::decode("HoursDeposited.v1", json.as_bytes()).expect("decodes")
    }

    /// Given a deposit read from JSON; when it is written as a binary payload and read
    /// back; then it is the same event, and written as JSON again it is the very bytes
    /// it was read from: the encodings are two spellings of one value.
    #[test]
    fn a_binary_payload_reads_back_as_the_event_it_was_written_from() {
        let event = deposit_with_postings();
        let binary = event.encode_as(PayloadEncoding::Binary);
        assert!(is_binary_payload(&binary));
        assert!(!is_binary_payload(&event.encode()));
        let back = LedgerEvent::decode("HoursDeposited.v1", &binary).expect("decodes");
        assert_eq!(back, event);
        assert_eq!(back.encode(), event.encode());
        assert_eq!(event.encode_as(PayloadEncoding::Json), event.encode());
        assert!(
            binary.len() * 2 < event.encode().len(),
            "{} binary bytes against {} of JSON",
            binary.len(),
            event.encode().len()
        );
    }

    /// The binary layout is a stored format: these bytes must read the same in every
    /// later build (docs/events.md, "Binary payloads", walks through them).
    #[test]
    fn a_binary_deposit_has_the_documented_bytes() {
        let binary = deposit_with_postings().encode_as(PayloadEncoding::Binary);
        assert_eq!(hex::encode(&binary), PINNED_DEPOSIT_HEX);
        let back = LedgerEvent::decode(
            "HoursDeposited.v1",
            &hex::decode(PINNED_DEPOSIT_HEX).expect("hex"),
        )
        .expect("decodes");
        assert_eq!(back, deposit_with_postings());
    }

    /// The slice-at-a-time output writes postcard's own bytes: the request digests of
    /// commands already in logs, and every stored payload, depend on it.
    #[test]
    fn postcard_after_writes_what_postcard_writes() {
        let LedgerEvent::HoursDeposited(e) = deposit_with_postings() else {
            unreachable!("a deposit")
        };
        let ours = postcard_after(vec![BINARY_PAYLOAD_TAG], &e).expect("serialises");
        let theirs = postcard::to_extend(&e, vec![BINARY_PAYLOAD_TAG]).expect("serialises");
        assert_eq!(ours, theirs);
    }

    const PINNED_DEPOSIT_HEX: &str = "01107d5f3c3e6a554f0e9d0b2f2f6b1e9a0105766f6c2d31056f72672d31056163742d31c0a55aa098ca9a0d00f0a4cb9a0d000c656c6465726c792d63617265f40300057665722d310205766f6c2d3100f4031473797374656d3a686f75722d69737375616e636500f30380c1cb9a0dc0a9d33a";

    #[test]
    fn every_account_kind_registers_alike_in_both_encodings() {
        let kinds = [
            r#""kind":"volunteer","region":"330102-01","joined_on":"2024-02-29""#,
            r#""kind":"organisation","region":"330102""#,
            r#""kind":"merchant""#,
            r#""kind":"project""#,
            r#""kind":"bank""#,
        ];
        for kind in kinds {
            let json =
                format!(r#"{{"account":"a-1",{kind},"registered_at":"2026-01-02T03:04:05Z"}}"#);
            let event =
                LedgerEvent::decode("AccountRegistered.v1", json.as_bytes()).expect("decodes");
            assert_eq!(
                event.encode(),
                json.as_bytes(),
                "the JSON shape is unchanged"
            );
            let binary = event.encode_as(PayloadEncoding::Binary);
            let back = LedgerEvent::decode("AccountRegistered.v1", &binary).expect("decodes");
            assert_eq!(back, event, "{kind}");
        }
    }

    /// A binary payload is held to the same rules as a JSON one, and to its own
    /// length: truncated, padded, or holding an amount the units refuse, it does not
    /// decode, and the refusal names the field (and a JSON payload never reads as
    /// binary).
    #[test]
    fn a_spoiled_binary_payload_does_not_decode() {
        let binary = deposit_with_postings().encode_as(PayloadEncoding::Binary);
        let refused =
            |bytes: &[u8], why: &str| match LedgerEvent::decode("HoursDeposited.v1", bytes) {
                Err(DecodeError::BinaryPayload { event_type, what }) => {
                    assert_eq!(event_type, "HoursDeposited.v1");
                    what
                }
                other => panic!("{why}: expected a binary payload error, got {other:?}"),
            };
        for cut in [1, 2, binary.len() / 2, binary.len() - 1] {
            refused(&binary[..cut], "truncated");
        }
        let mut padded = binary.clone();
        padded.push(0);
        assert!(refused(&padded, "padded").contains("1 bytes after"));
        // The hours are 250 hundredths (zigzag varint f4 03, after the category);
        // zero hours break the units' rule.
        let at = binary
            .windows(13)
            .position(|w| w == b"\x0celderly-care")
            .expect("the category")
            + 13;
        assert_eq!(binary[at..at + 2], [0xf4, 0x03]);
        let mut bad = binary[..at].to_vec();
        bad.push(0x00);
        bad.extend_from_slice(&binary[at + 2..]);
        let why = refused(&bad, "zero hours");
        // `hours` is a deposit's ninth field.
        assert!(
            why.starts_with("field [8] ") && why.contains("rule"),
            "{why}"
        );
        // A JSON payload is JSON whatever it holds.
        assert!(matches!(
            LedgerEvent::decode("HoursDeposited.v1", b"\x02"),
            Err(DecodeError::Payload { .. })
        ));
    }
}

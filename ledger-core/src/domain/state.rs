//! The state of one account, folded from its own stream only.
//!
//! Everything a command needs to decide about an account is here: its registration,
//! whether it is closed, its balances, its recorded service intervals (for the overlap
//! and per-day rules), the transactions it holds (for reversals) and the request ids
//! seen on it (for idempotent retries). Folding only the account's own stream is what
//! makes each decision a single-stream read plus a single-stream append; credits that
//! other streams' transactions make to this account arrive as receipts
//! ([`HoursReceived`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use foldhash::fast::RandomState;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::account::{AccountId, AccountKind};
use super::chain::{recorded_hash, EventHash, EventMetadata, GENESIS_HASH};
use super::events::{DecodeError, LedgerEvent, ReceiptCause};
use super::ids::{ActivityId, Purpose, RequestId, TransactionId};
use super::postings::{movement, net_for, Posting};
use super::units::Unit;
use crate::log::{Position, RecordedEvent};

/// What a command produced: returned on success and again, with `replayed`, on retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub transaction: TransactionId,
    /// Where the transaction's event sits in the log: a query that is at least this
    /// fresh has seen it.
    pub position: Position,
    pub stream_version: u64,
    /// True when this is the original outcome of an earlier identical request.
    pub replayed: bool,
}

/// A request seen on this stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub digest: String,
    pub outcome: Outcome,
}

/// What kind of entry a transaction is on this account's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxKind {
    Registration,
    Closure,
    Deposit,
    Spend,
    Exchange,
    /// A transfer this account sent: reversed on the receiver's stream.
    TransferOut {
        to_project: bool,
    },
    Reversal,
    /// A receipt for hours another stream's transaction credited here.
    Received(ReceiptCause),
    /// A no-show (`NoShowRecorded`): a fact about reliability, moves nothing.
    NoShow,
    /// A rating of a deposit (`ServiceRated`): moves nothing.
    Rating,
    /// A consent given or withdrawn, or a credit report served: moves nothing.
    Consent,
    Inquiry,
    /// A redemption hold and its end (capture, void, expiry).
    Hold,
    Capture,
    HoldEnd,
}

impl TxKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Closure => "closure",
            Self::Deposit => "deposit",
            Self::Spend => "spend",
            Self::Exchange => "exchange",
            Self::TransferOut { to_project: false } => "transfer",
            Self::TransferOut { to_project: true } => "donation",
            Self::Reversal => "reversal",
            Self::Received(_) => "receipt",
            Self::NoShow => "no-show",
            Self::Rating => "rating",
            Self::Consent => "consent",
            Self::Inquiry => "inquiry",
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::HoldEnd => "hold end",
        }
    }
}

/// A transaction this stream holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord {
    pub kind: TxKind,
    /// The transaction's postings (for receipts: the two legs of the movement).
    pub postings: Vec<Posting>,
    /// The other party: for outgoing transfers and donations the receiver, where a
    /// reversal belongs; for receipts the sender; for deposits the organisation (whose
    /// platform may correct the deposit, `ledger-server/src/authz.rs`).
    pub counterparty: Option<AccountId>,
    pub reversed_by: Option<TransactionId>,
}

/// A deposit's service interval, kept while the deposit stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSlot {
    pub ended_at: DateTime<Utc>,
    pub service_date: NaiveDate,
    pub hours: Decimal,
    pub transaction: TransactionId,
}

/// A volunteer's current consent to one bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub consent: TransactionId,
    pub purpose: Purpose,
    pub expires_at: DateTime<Utc>,
    /// When the latest inquiries under this consent were served, oldest first, at most
    /// [`INQUIRIES_PER_CONSENT_PER_DAY_MAX`]: enough to tell whether one more would
    /// exceed the limit in the 24 hours before it.
    pub recent_inquiries: std::collections::VecDeque<DateTime<Utc>>,
}

impl ConsentRecord {
    /// When one more inquiry under this consent is allowed, if not at `now`: 24 hours
    /// after the oldest of the last [`INQUIRIES_PER_CONSENT_PER_DAY_MAX`].
    pub fn next_inquiry_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.recent_inquiries.len() < INQUIRIES_PER_CONSENT_PER_DAY_MAX {
            return None;
        }
        let next_at = *self.recent_inquiries.front()? + chrono::TimeDelta::hours(24);
        (now < next_at).then_some(next_at)
    }

    /// Count an inquiry served at `at`, keeping only the last
    /// [`INQUIRIES_PER_CONSENT_PER_DAY_MAX`].
    fn note_inquiry(&mut self, at: DateTime<Utc>) {
        if self.recent_inquiries.len() == INQUIRIES_PER_CONSENT_PER_DAY_MAX {
            self.recent_inquiries.pop_front();
        }
        self.recent_inquiries.push_back(at);
    }
}

/// Inquiries one bank may make under one consent in any 24 hours. Each inquiry is an
/// event on the volunteer's own stream, which every credit report and replay reads
/// whole (`CREDIT_STREAM_EVENTS_MAX`): without a limit a bank holding one consent
/// could append enough of them to make the volunteer's reports unreadable for every
/// bank. A lender checks a volunteer's record a few times around one application;
/// 20 a day leaves room for retries under new request ids and several products, and
/// keeps one consent's inquiries to ~7,300 a year.
pub const INQUIRIES_PER_CONSENT_PER_DAY_MAX: usize = 20;

/// Where a redemption hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldStatus {
    /// Holding points until captured, voided or `expires_at`.
    Open,
    Captured,
    Voided,
    /// Its expiry was recorded (`RedemptionHoldExpired`).
    Expired,
}

/// A redemption hold on this volunteer's points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRecord {
    pub merchant: AccountId,
    pub points: Decimal,
    pub expires_at: DateTime<Utc>,
    pub status: HoldStatus,
}

impl HoldRecord {
    /// True while the hold keeps its points from the volunteer: open and not past its
    /// expiry. An open hold past its expiry holds nothing even before the sweeper
    /// records `RedemptionHoldExpired`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.status == HoldStatus::Open && now < self.expires_at
    }
}

/// A map of one account's state. Hashed with foldhash, seeded (per map and per
/// process), not std's SipHash: every command looks up and inserts request ids, transaction ids and days
/// here (a deposit inserts three entries), and SipHash on a 36-byte id costs several
/// times foldhash's. The keys come from callers (request ids), so the hasher stays
/// seeded, which the unseeded FxHash of the read models is not; the embedded log's
/// id maps made the same choice.
pub type StateMap<K, V> = HashMap<K, V, RandomState>;
/// A set of one account's state, hashed as [`StateMap`].
pub type StateSet<T> = HashSet<T, RandomState>;

/// An account's state folded from its own stream. `PartialEq` lets tests check that a
/// state the handler folded from decided events equals a fold of the stored ones.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountState {
    pub id: AccountId,
    /// Version of the last event, None while the stream does not exist.
    pub version: Option<u64>,
    /// Hash of the last event ([`GENESIS_HASH`] for an empty stream).
    pub last_hash: EventHash,
    /// Version of the last event that is not a partner event
    /// ([`LedgerEvent::is_partner_event`]): the last input of a credit report, which
    /// a bank's inquiry is checked against (`ComputedFrom`), so that another bank's
    /// inquiry or a consent appended meanwhile does not outdate it.
    pub report_input_version: Option<u64>,
    pub kind: Option<AccountKind>,
    pub closed: bool,
    balances: BTreeMap<Unit, Decimal>,
    /// Standing service intervals by start; disjoint by the overlap rule.
    pub service: BTreeMap<DateTime<Utc>, ServiceSlot>,
    /// Standing deposited hours per service day.
    pub day_hours: StateMap<NaiveDate, Decimal>,
    pub transactions: StateMap<TransactionId, TxRecord>,
    pub requests: StateMap<RequestId, SeenRequest>,
    /// Deposits that have been rated (`ServiceRated`): each at most once.
    pub rated: StateSet<TransactionId>,
    /// The no-shows recorded (`NoShowRecorded`), by what they are about, with the
    /// transaction that recorded each: one per organisation, activity and day.
    pub no_shows: StateMap<NoShowKey, TransactionId>,
    /// Current consents by bank (a later consent to the same bank replaces it; a
    /// withdrawal removes it). Expired ones stay until replaced: expiry is a rule
    /// checked against the clock.
    pub consents: StateMap<AccountId, ConsentRecord>,
    /// Redemption holds by hold id, in every status (captures and voids name them).
    pub holds: StateMap<TransactionId, HoldRecord>,
    /// Redemption token ids already spent on a hold: each token is used at most once.
    pub tokens_used: StateSet<uuid::Uuid>,
    /// The inquiries served on this stream, by bank, in stream order: where a bank's
    /// report is found again (`GetServedReport`) without reading the stream whole, and
    /// without reading it at all for a bank never served one (a security probe: any
    /// bank could make the server read any account's 200,000 events per call).
    pub served: StateMap<AccountId, Vec<ServedInquiry>>,
}

/// An inquiry served to a bank, and where it sits on the volunteer's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedInquiry {
    pub inquiry: TransactionId,
    /// Hex BLAKE3 of the report as served (`CreditReportServed::report_digest`).
    pub report_digest: String,
    /// The stream version of its `CreditReportServed` event.
    pub version: u64,
}

/// What a no-show is about, on its volunteer's stream: the same volunteer misses the
/// same organisation's activity on one day at most once (`NoShowAlreadyRecorded`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoShowKey {
    pub organisation: AccountId,
    pub activity: ActivityId,
    pub date: NaiveDate,
}

/// What [`AccountState::fold`] reads from a stored event besides its payload.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub version: u64,
    pub position: Position,
    /// The event's chain hash ([`recorded_hash`]).
    pub hash: EventHash,
    /// The event's id as a transaction id.
    pub transaction: TransactionId,
    /// The request id and digest of its metadata, for idempotent retries (none for
    /// receipts).
    pub request: Option<(RequestId, String)>,
}

/// A stored event this build cannot fold.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("event {version} of {stream} has metadata that does not decode: {source}")]
    Metadata {
        stream: String,
        version: u64,
        source: crate::domain::chain::MetadataError,
    },
    /// A stored event that decodes but breaks a rule the handler keeps for the stream
    /// it is in (another writer's event): the account's state cannot be decided on.
    #[error("event {version} of {stream} breaks a rule of the ledger's streams ({rule}): this ledger did not write it; find what did")]
    Foreign {
        stream: String,
        version: u64,
        rule: &'static str,
    },
}

impl AccountState {
    /// The state of an account whose stream is empty.
    pub fn empty(id: AccountId) -> Self {
        Self {
            id,
            version: None,
            last_hash: GENESIS_HASH,
            report_input_version: None,
            kind: None,
            closed: false,
            balances: BTreeMap::new(),
            service: BTreeMap::new(),
            day_hours: StateMap::default(),
            transactions: StateMap::default(),
            requests: StateMap::default(),
            rated: StateSet::default(),
            no_shows: StateMap::default(),
            consents: StateMap::default(),
            holds: StateMap::default(),
            tokens_used: StateSet::default(),
            served: StateMap::default(),
        }
    }

    /// Points held by open, unexpired holds at `now`.
    pub fn points_held(&self, now: DateTime<Utc>) -> Decimal {
        self.holds
            .values()
            .filter(|h| h.holds_at(now))
            .map(|h| h.points)
            .sum()
    }

    /// Points the volunteer may spend at `now`: the balance less what holds keep.
    pub fn points_available(&self, now: DateTime<Utc>) -> Decimal {
        self.balance(Unit::Points) - self.points_held(now)
    }

    /// The consent to `bank` for `purpose` that is current at `now`, if any.
    pub fn current_consent(
        &self,
        bank: &AccountId,
        purpose: &Purpose,
        now: DateTime<Utc>,
    ) -> Option<&ConsentRecord> {
        self.consents
            .get(bank)
            .filter(|c| &c.purpose == purpose && now < c.expires_at)
    }

    pub fn is_registered(&self) -> bool {
        self.kind.is_some()
    }

    /// Balance in `unit` (spendable hours for [`Unit::Hours`]).
    pub fn balance(&self, unit: Unit) -> Decimal {
        self.balances.get(&unit).copied().unwrap_or(Decimal::ZERO)
    }

    /// Fold one recorded event of this account's stream.
    pub fn fold(&mut self, recorded: &RecordedEvent) -> Result<(), FoldError> {
        let event = LedgerEvent::decode(&recorded.event_type, &recorded.data)?;
        let meta =
            EventMetadata::decode(&recorded.metadata).map_err(|source| FoldError::Metadata {
                stream: recorded.stream.to_string(),
                version: recorded.version,
                source,
            })?;
        let request = match (meta.request_id, meta.request_digest) {
            (Some(request_id), Some(digest)) => Some((request_id, digest)),
            _ => None,
        };
        let envelope = Envelope {
            version: recorded.version,
            position: recorded.position,
            hash: recorded_hash(recorded),
            transaction: TransactionId::from(recorded.id),
            request,
        };
        if let Some(rule) = self.broken_by(&event) {
            return Err(FoldError::Foreign {
                stream: recorded.stream.to_string(),
                version: recorded.version,
                rule,
            });
        }
        self.fold_decoded(envelope, &event);
        Ok(())
    }

    /// The rule a stored `event` breaks on this stream that [`AccountState::apply`]
    /// asserts (it holds for every event the handler decides, so it is an invariant
    /// there), checked here for events read back from a log another writer may have
    /// touched.
    fn broken_by(&self, event: &LedgerEvent) -> Option<&'static str> {
        let hold_end = match event {
            LedgerEvent::HoursReceived(e) if e.to != self.id => {
                return Some("a receipt belongs to the receiver's stream")
            }
            LedgerEvent::RedemptionCaptured(e) => e.hold,
            LedgerEvent::RedemptionVoided(e) => e.hold,
            LedgerEvent::RedemptionHoldExpired(e) => e.hold,
            _ => return None,
        };
        match self.holds.get(&hold_end) {
            None => Some("a hold ends on the stream that holds it"),
            Some(h) if h.status != HoldStatus::Open => Some("a hold ends at most once"),
            Some(_) => None,
        }
    }

    /// Fold an event whose decoded form and envelope are already known: what
    /// [`AccountState::fold`] does after decoding. The handler folds the event it has
    /// just appended this way, from the event it decided, so that the next command on
    /// the account neither reads it back nor decodes its JSON. `envelope` must be the
    /// stored event's (its hash [`recorded_hash`] of the stored bytes), or the state
    /// would differ from a fold of the stream.
    pub fn fold_decoded(&mut self, envelope: Envelope, event: &LedgerEvent) {
        assert_eq!(
            Some(envelope.version),
            self.version.map_or(Some(0), |v| v.checked_add(1)),
            "events must be folded in stream order"
        );
        if let Some((request_id, digest)) = envelope.request {
            self.requests.insert(
                request_id,
                SeenRequest {
                    digest,
                    outcome: Outcome {
                        transaction: envelope.transaction,
                        position: envelope.position,
                        stream_version: envelope.version,
                        replayed: true,
                    },
                },
            );
        }
        self.apply(envelope.transaction, event);
        if let LedgerEvent::CreditReportServed(e) = event {
            self.served
                .entry(e.bank.clone())
                .or_default()
                .push(ServedInquiry {
                    inquiry: e.inquiry,
                    report_digest: e.report_digest.clone(),
                    version: envelope.version,
                });
        }
        self.version = Some(envelope.version);
        if !event.is_partner_event() {
            self.report_input_version = Some(envelope.version);
        }
        self.last_hash = envelope.hash;
    }

    /// Apply a decoded event whose transaction id is `transaction`.
    pub fn apply(&mut self, transaction: TransactionId, event: &LedgerEvent) {
        if let Some(postings) = event.postings() {
            self.apply_postings(postings);
        }
        let record = |kind, postings: &[Posting], counterparty| TxRecord {
            kind,
            postings: postings.to_vec(),
            counterparty,
            reversed_by: None,
        };
        let rec = match event {
            LedgerEvent::AccountRegistered(e) => {
                // The first registration stands, as in the read models and for
                // authorisation (both read a stream's first event): the handler
                // refuses a second, and a log another writer put one in must not give
                // an account a kind that only the command side sees.
                if self.kind.is_none() {
                    self.kind = Some(e.kind.clone());
                }
                record(TxKind::Registration, &[], None)
            }
            LedgerEvent::AccountClosed(_) => {
                self.closed = true;
                record(TxKind::Closure, &[], None)
            }
            LedgerEvent::HoursDeposited(e) => {
                self.service.insert(
                    e.started_at,
                    ServiceSlot {
                        ended_at: e.ended_at,
                        service_date: e.service_date,
                        hours: e.hours.value(),
                        transaction,
                    },
                );
                *self.day_hours.entry(e.service_date).or_default() += e.hours.value();
                record(TxKind::Deposit, &e.postings, Some(e.organisation.clone()))
            }
            LedgerEvent::HoursSpent(e) => record(TxKind::Spend, &e.postings, None),
            LedgerEvent::HoursExchanged(e) => record(TxKind::Exchange, &e.postings, None),
            LedgerEvent::HoursTransferred(e) => record(
                TxKind::TransferOut { to_project: false },
                &e.postings,
                Some(e.to.clone()),
            ),
            LedgerEvent::HoursDonated(e) => record(
                TxKind::TransferOut { to_project: true },
                &e.postings,
                Some(e.project.clone()),
            ),
            LedgerEvent::TransactionReversed(e) => {
                if let Some(original) = self.transactions.get_mut(&e.original) {
                    original.reversed_by = Some(transaction);
                    if original.kind == TxKind::Deposit {
                        self.free_service(e.original);
                    }
                }
                record(TxKind::Reversal, &e.postings, None)
            }
            LedgerEvent::NoShowRecorded(e) => {
                // The first one stands: a log imported from elsewhere may hold the
                // same no-show twice (the credit model counts both, as recorded).
                self.no_shows
                    .entry(NoShowKey {
                        organisation: e.organisation.clone(),
                        activity: e.activity.clone(),
                        date: e.service_date,
                    })
                    .or_insert(transaction);
                record(TxKind::NoShow, &[], None)
            }
            LedgerEvent::ServiceRated(e) => {
                self.rated.insert(e.deposit);
                record(TxKind::Rating, &[], None)
            }
            LedgerEvent::ConsentGranted(e) => {
                self.consents.insert(
                    e.bank.clone(),
                    ConsentRecord {
                        consent: e.consent,
                        purpose: e.purpose.clone(),
                        expires_at: e.expires_at,
                        recent_inquiries: Default::default(),
                    },
                );
                record(TxKind::Consent, &[], None)
            }
            LedgerEvent::ConsentWithdrawn(e) => {
                if self.consents.get(&e.bank).map(|c| c.consent) == Some(e.consent) {
                    self.consents.remove(&e.bank);
                }
                record(TxKind::Consent, &[], None)
            }
            LedgerEvent::CreditReportServed(e) => {
                if let Some(c) = self
                    .consents
                    .get_mut(&e.bank)
                    .filter(|c| c.consent == e.consent)
                {
                    c.note_inquiry(e.recorded_at);
                }
                record(TxKind::Inquiry, &[], None)
            }
            LedgerEvent::RedemptionAuthorized(e) => {
                self.tokens_used.insert(e.token);
                self.holds.insert(
                    e.hold,
                    HoldRecord {
                        merchant: e.merchant.clone(),
                        points: e.points.value(),
                        expires_at: e.expires_at,
                        status: HoldStatus::Open,
                    },
                );
                record(TxKind::Hold, &[], None)
            }
            LedgerEvent::RedemptionCaptured(e) => {
                self.end_hold(e.hold, HoldStatus::Captured);
                record(TxKind::Capture, &e.postings, None)
            }
            LedgerEvent::RedemptionVoided(e) => {
                self.end_hold(e.hold, HoldStatus::Voided);
                record(TxKind::HoldEnd, &[], None)
            }
            LedgerEvent::RedemptionHoldExpired(e) => {
                self.end_hold(e.hold, HoldStatus::Expired);
                record(TxKind::HoldEnd, &[], None)
            }
            LedgerEvent::HoursReceived(e) => {
                assert!(
                    e.to == self.id,
                    "a receipt belongs to the receiver's stream"
                );
                *self.balances.entry(Unit::Hours).or_default() += e.hours.value();
                let legs = movement(Unit::Hours, &e.from, &e.to, e.hours.value());
                // A receipt is filed under the originating transaction's id (the one a
                // reversal names), not under the receipt event's own id.
                self.transactions.insert(
                    e.transaction,
                    record(TxKind::Received(e.cause), &legs, Some(e.from.clone())),
                );
                return;
            }
        };
        self.transactions.insert(transaction, rec);
    }

    fn end_hold(&mut self, hold: TransactionId, status: HoldStatus) {
        let record = self
            .holds
            .get_mut(&hold)
            .expect("a hold ends on the stream that holds it");
        assert_eq!(record.status, HoldStatus::Open, "a hold ends at most once");
        record.status = status;
    }

    fn apply_postings(&mut self, postings: &[Posting]) {
        for unit in [Unit::Hours, Unit::HonourHours, Unit::Points] {
            let net = net_for(postings, &self.id, unit);
            if !net.is_zero() {
                *self.balances.entry(unit).or_default() += net;
            }
        }
    }

    fn free_service(&mut self, deposit: TransactionId) {
        let start = self
            .service
            .iter()
            .find(|(_, slot)| slot.transaction == deposit)
            .map(|(start, _)| *start);
        if let Some(start) = start {
            if let Some(slot) = self.service.remove(&start) {
                if let Some(day) = self.day_hours.get_mut(&slot.service_date) {
                    *day -= slot.hours;
                }
            }
        }
    }

    /// The standing service interval overlapping `[start, end)`, if any.
    pub fn overlapping_service(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Option<&ServiceSlot> {
        // Slots are disjoint, so only the last one starting before `end` can reach
        // past `start`.
        self.service
            .range(..end)
            .next_back()
            .map(|(_, slot)| slot)
            .filter(|slot| slot.ended_at > start)
    }

    /// Standing hours deposited for `day`.
    pub fn hours_on(&self, day: NaiveDate) -> Decimal {
        self.day_hours.get(&day).copied().unwrap_or(Decimal::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(region: &str) -> LedgerEvent {
        LedgerEvent::decode(
            "AccountRegistered.v1",
            format!(
                r#"{{"account":"v1","kind":"volunteer","region":"{region}","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}}"#
            )
            .as_bytes(),
        )
        .expect("a test payload decodes")
    }

    fn stored(version: u64, event_type: &str, json: &str) -> RecordedEvent {
        RecordedEvent {
            stream: AccountId::new("v1").expect("an id").stream(),
            version,
            position: crate::log::Position::from_sequence(version),
            id: crate::log::EventId(uuid::Uuid::from_u128(0x7d5f_0000 + u128::from(version))),
            event_type: event_type.to_owned(),
            data: json.as_bytes().to_vec(),
            metadata: br#"{"schema":1,"request_id":null,"request_digest":null,"prev_hash":"","causation":null}"#.to_vec(),
        }
    }

    /// Given a stored event that breaks a rule `apply` asserts (another writer's),
    /// when the stream is folded, then the fold says which rule, and does not panic.
    #[test]
    fn given_a_foreign_receipt_or_hold_end_then_the_fold_names_the_rule() {
        let registration = stored(
            0,
            "AccountRegistered.v1",
            r#"{"account":"v1","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#,
        );
        let receipt = stored(
            1,
            "HoursReceived.v1",
            r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","from":"v2","to":"v3","hours":"1.00","cause":"transfer","recorded_at":"2026-03-06T12:00:00Z"}"#,
        );
        let void = stored(
            1,
            "RedemptionVoided.v1",
            r#"{"hold":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a09","volunteer":"v1","merchant":"shop","released":"1.00","recorded_at":"2026-03-07T12:00:00Z"}"#,
        );
        for (e, rule) in [
            (receipt, "a receipt belongs to the receiver's stream"),
            (void, "a hold ends on the stream that holds it"),
        ] {
            let mut s = AccountState::empty(AccountId::new("v1").expect("an id"));
            s.fold(&registration).expect("a registration folds");
            match s.fold(&e) {
                Err(FoldError::Foreign {
                    rule: r,
                    version: 1,
                    ..
                }) => assert_eq!(r, rule),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Given inquiries served to two banks, then each bank's are indexed with the
    /// version where they sit, in stream order (`GetServedReport` reads that one event,
    /// and nothing for a bank never served one).
    #[test]
    fn given_served_inquiries_then_each_banks_are_indexed_by_version() {
        let inquiry = |version: u64, inquiry: &str, bank: &str, digest: &str| {
            stored(
                version,
                "CreditReportServed.v1",
                &format!(
                    r#"{{"inquiry":"{inquiry}","volunteer":"v1","bank":"{bank}","consent":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a0c","purpose":"volunteer-loan","caller":"bank","model_version":"tb-credit-1","score":500,"report":"{{}}","report_digest":"{digest}","recorded_at":"2026-03-06T12:00:00Z"}}"#
                ),
            )
        };
        let mut s = AccountState::empty(AccountId::new("v1").expect("an id"));
        s.fold(&stored(
            0,
            "AccountRegistered.v1",
            r#"{"account":"v1","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#,
        ))
        .expect("a registration folds");
        let (a1, a2, b1) = (
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01",
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a02",
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a03",
        );
        for e in [
            inquiry(1, a1, "bank-a", &"a".repeat(64)),
            inquiry(2, b1, "bank-b", &"b".repeat(64)),
            inquiry(3, a2, "bank-a", &"c".repeat(64)),
        ] {
            s.fold(&e).expect("an inquiry folds");
        }
        let of = |bank: &str| -> Vec<(String, u64)> {
            s.served
                .get(&AccountId::new(bank).expect("an id"))
                .map(|v| {
                    v.iter()
                        .map(|i| (i.inquiry.to_string(), i.version))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(of("bank-a"), [(a1.to_owned(), 1), (a2.to_owned(), 3)]);
        assert_eq!(of("bank-b"), [(b1.to_owned(), 2)]);
        assert_eq!(of("bank-c"), []);
        assert_eq!(
            s.served[&AccountId::new("bank-b").expect("an id")][0].report_digest,
            "b".repeat(64)
        );
    }

    /// Given a stream with two registrations (another writer's: the handler refuses
    /// the second), the first stands, as in the read models and for authorisation.
    #[test]
    fn given_two_registrations_then_the_first_stands() {
        let mut s = AccountState::empty(AccountId::new("v1").expect("an id"));
        let first = TransactionId::parse("7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01").expect("an id");
        let second = TransactionId::parse("7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a02").expect("an id");
        s.apply(first, &registered("hangzhou/xihu"));
        let kind = s.kind.clone();
        s.apply(second, &registered("hangzhou/binjiang"));
        assert_eq!(s.kind, kind);
        assert!(
            format!("{:?}", s.kind).contains("hangzhou/xihu"),
            "{:?}",
            s.kind
        );
    }
}

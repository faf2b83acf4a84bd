//! `timebank.v1.Banks`: credit reports for banks, each one an inquiry on the log.
//!
//! A report is served only under a current consent of the volunteer to the calling bank
//! for the asked purpose. The flow: check the consent on the volunteer's state (so a
//! bank without consent costs nothing and learns nothing), compute the report as of
//! now, then execute `ServeCreditReport`, which checks the consent again on the
//! volunteer's stream and appends the inquiry with the report in it. The answer is
//! always read back from the inquiry event, so the bank gets exactly what the log
//! keeps, and a retry with the same request id gets the original report.

use chrono::{DateTime, FixedOffset, Utc};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::commands::{Command, ComputedFrom, ServeCreditReport, ServedReport};
use ledger_core::domain::events::{CreditReportServed, LedgerEvent};
use ledger_core::domain::{InputProblem, Rejection};
use ledger_core::log::EventLog;
use ledger_core::log::Position;
use projections::credit::{self, CreditError, CreditReport};
use projections::StarPolicy;
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Response, Status};

use super::{internal, Partners};
use crate::authz;
use crate::convert;
use crate::pb;
use crate::queries::convert::{position, to_timestamp};
use crate::status::{describe_rejection, Described};

/// The report kept in an inquiry (`CreditReportServed.v1`'s `report`), as JSON: the
/// fields of `timebank.v1.CreditReport`, so an auditor reads it without the proto.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportJson {
    pub volunteer_id: String,
    pub model_version: String,
    pub score: u32,
    pub factors: Vec<FactorJson>,
    pub reason_codes: Vec<String>,
    pub star: StarJson,
    pub lifetime_hours: String,
    pub last_12_months_hours: String,
    pub as_of: DateTime<Utc>,
    pub position: Option<PositionJson>,
    pub events_included: u64,
    pub inputs_digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorJson {
    pub factor: String,
    pub points: u32,
    pub max_points: u32,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarJson {
    pub policy_version: String,
    pub stars: u32,
    pub lifetime_hours: String,
    pub next_threshold: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionJson {
    pub commit: u64,
    pub prepare: u64,
}

impl ReportJson {
    pub fn of(r: &CreditReport) -> Self {
        Self {
            volunteer_id: r.volunteer.clone(),
            model_version: r.model_version.to_owned(),
            score: r.score,
            factors: r
                .contributions
                .iter()
                .map(|c| FactorJson {
                    factor: c.factor.name().to_owned(),
                    points: c.points,
                    max_points: c.max,
                    detail: c.detail.clone(),
                })
                .collect(),
            reason_codes: r.reason_codes.iter().map(|s| (*s).to_owned()).collect(),
            star: StarJson {
                policy_version: r.star.policy_version.clone(),
                stars: u32::from(r.star.stars),
                lifetime_hours: r.star.lifetime_hours.to_string(),
                next_threshold: r.star.next_threshold.map(|t| t.to_string()),
            },
            lifetime_hours: r.lifetime_hours.to_string(),
            last_12_months_hours: r.last_12_months_hours.to_string(),
            as_of: r.as_of,
            position: r.position.map(|p| PositionJson {
                commit: p.commit(),
                prepare: p.prepare(),
            }),
            events_included: r.events_included,
            inputs_digest: r.inputs_digest.clone(),
        }
    }

    pub fn to_proto(&self) -> pb::CreditReport {
        pb::CreditReport {
            volunteer_id: self.volunteer_id.clone(),
            model_version: self.model_version.clone(),
            score: self.score,
            factors: self
                .factors
                .iter()
                .map(|f| pb::FactorContribution {
                    factor: f.factor.clone(),
                    points: f.points,
                    max_points: f.max_points,
                    detail: f.detail.clone(),
                })
                .collect(),
            reason_codes: self.reason_codes.clone(),
            star: Some(pb::StarLevel {
                policy_version: self.star.policy_version.clone(),
                stars: self.star.stars,
                lifetime_hours: self.star.lifetime_hours.clone(),
                next_threshold: self.star.next_threshold.clone().unwrap_or_default(),
                checkpoint: None,
            }),
            lifetime_hours: self.lifetime_hours.clone(),
            last_12_months_hours: self.last_12_months_hours.clone(),
            as_of: Some(to_timestamp(self.as_of)),
            position: self
                .position
                .map(|p| position(Position::new(p.commit, p.prepare))),
            events_included: self.events_included,
            inputs_digest: self.inputs_digest.clone(),
            checkpoint: None,
        }
    }
}

/// The answer for an inquiry event.
pub fn served(
    e: &CreditReportServed,
    at: Position,
    replayed: bool,
) -> Result<pb::ServedCreditReport, Described> {
    let report: ReportJson = serde_json::from_str(&e.report).map_err(|err| {
        internal(
            Code::DataLoss,
            "LOG_CORRUPT",
            format!(
                "inquiry {} holds a report that does not decode: {err}",
                e.inquiry
            ),
        )
    })?;
    Ok(pb::ServedCreditReport {
        inquiry_id: e.inquiry.to_string(),
        report_digest: e.report_digest.clone(),
        served_at: Some(to_timestamp(e.recorded_at)),
        position: Some(position(at)),
        report: Some(report.to_proto()),
        report_json: e.report.clone(),
        replayed,
    })
}

/// Why the report for an inquiry could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareReportError {
    #[error("reading the volunteer's stream failed: {0}")]
    Read(#[source] CreditError),
    #[error("computing the credit report failed: {0}")]
    Compute(#[source] CreditError),
    #[error("the credit report does not serialise: {0}")]
    Serialise(#[from] serde_json::Error),
}

impl PrepareReportError {
    /// The status a bank gets: a read failure as any stream read's
    /// ([`super::stream_read_failed`]: only an unavailable log is worth a retry), the
    /// rest is ours.
    pub fn describe(&self) -> Described {
        match self {
            Self::Read(e) => super::stream_read_failed(e),
            Self::Compute(_) | Self::Serialise(_) => {
                internal(Code::Internal, "INTERNAL", self.to_string())
            }
        }
    }
}

/// The report an inquiry into `volunteer` at `now` serves: the default credit model
/// over the volunteer's own stream in `log` up to `now`, in the ledger's `calendar`,
/// as the JSON an inquiry keeps.
///
/// Shared by the Banks service and the demo generator (which writes its inquiries
/// through the handler at each step's instant), so a seeded inquiry holds exactly what
/// the service would have served then. Option not taken: letting the demo write a
/// placeholder report, which would make the demo's inquiries unlike real ones.
pub async fn prepare_report(
    log: &dyn EventLog,
    volunteer: &AccountId,
    now: DateTime<Utc>,
    calendar: FixedOffset,
    policy: &StarPolicy,
    caller: &str,
) -> Result<ServedReport, PrepareReportError> {
    let events = credit::read_account_stream(log, volunteer)
        .await
        .map_err(PrepareReportError::Read)?;
    let report = credit::credit_report(volunteer, &events, now, calendar, "", policy)
        .map_err(PrepareReportError::Compute)?;
    Ok(ServedReport {
        caller: caller.to_owned(),
        model_version: report.model_version.to_owned(),
        score: report.score,
        report: serde_json::to_string(&ReportJson::of(&report))?,
        computed_from: ComputedFrom::Version(
            events
                .iter()
                .rev()
                .find(|e| !LedgerEvent::PARTNER_TYPE_NAMES.contains(&e.event_type.as_str()))
                .map(|e| e.version),
        ),
    })
}

type Answer<T> = Result<Response<T>, Status>;

/// Most times a bank's report is computed for one request when the volunteer's stream
/// keeps moving under it (`ComputedFrom`): each attempt reads the stream once; past
/// this the bank gets `ABORTED REPORT_OUTDATED` and retries with the same request id.
/// A stream that moves five times within a report's few milliseconds is an account
/// under a burst of writes, which ends.
const REPORT_ATTEMPTS_MAX: u32 = 5;

/// Length of a report digest: hex BLAKE3 (`serve_credit_report::report_digest`).
const REPORT_DIGEST_HEX_LEN: usize = 64;

impl Partners {
    async fn bank_report(
        &self,
        caller: &authz::Caller,
        r: pb::BankCreditReportRequest,
    ) -> Result<pb::ServedCreditReport, Described> {
        let bank = authz::require_bank(caller, "request credit reports")?;
        let request_id =
            convert::scoped_request_id(&bank, r.request_id).map_err(|e| describe_rejection(&e))?;
        let volunteer =
            convert::account("volunteer_id", r.volunteer_id).map_err(|e| describe_rejection(&e))?;
        let purpose = convert::purpose(r.purpose).map_err(|e| describe_rejection(&e))?;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            // As of the settled instant, not the raw clock: every event stamped at or
            // before it is in the log already, and every later one is stamped after
            // it (`Stamps`), so the report read below is the report as of `now` for
            // good; `ComputedFrom` also covers appends this process did not stamp.
            let now = self.handler.stamps().settled(self.clock().as_ref());
            let state = self
                .handler
                .load(&volunteer)
                .await
                .map_err(|e| crate::status::describe(&e))?;
            let mut report_to_serve = ServedReport {
                caller: caller.name.clone(),
                ..ServedReport::default()
            };
            // A retry skips the consent check and the computation: the handler returns
            // the original inquiry.
            if !state.requests.contains_key(&request_id) {
                if state.current_consent(&bank, &purpose, now).is_none() {
                    return Err(describe_rejection(&Rejection::ConsentRequired {
                        purpose: purpose.to_string(),
                    }));
                }
                report_to_serve = prepare_report(
                    self.log().as_ref(),
                    &volunteer,
                    now,
                    self.handler.config().calendar_offset,
                    self.policies.default_policy(),
                    &caller.name,
                )
                .await
                .map_err(|e| e.describe())?;
            }
            let served = self
                .commands
                .execute_authorized(Command::ServeCreditReport(ServeCreditReport {
                    request_id: request_id.clone(),
                    volunteer: volunteer.clone(),
                    bank: bank.clone(),
                    purpose: purpose.clone(),
                    served: report_to_serve,
                }))
                .await;
            match served {
                // The volunteer's stream moved after the report read it: compute it
                // again, as of a new now (`ComputedFrom`).
                Err(d)
                    if d.reason == Rejection::ReportOutdated.reason()
                        && attempt < REPORT_ATTEMPTS_MAX => {}
                other => break other?,
            }
        };
        let (recorded, event) = self.event_at(&volunteer, outcome.stream_version).await?;
        match event {
            LedgerEvent::CreditReportServed(e) => served(&e, recorded.position, outcome.replayed),
            other => Err(internal(
                Code::Internal,
                "INTERNAL",
                format!("expected an inquiry, found {}", other.event_type()),
            )),
        }
    }

    async fn served_report(
        &self,
        caller: &authz::Caller,
        r: pb::GetServedReportRequest,
    ) -> Result<pb::ServedCreditReport, Described> {
        use pb::get_served_report_request::Key;
        /// The report asked for, parsed once.
        enum Wanted {
            Inquiry(ledger_core::domain::ids::TransactionId),
            Digest(String),
        }
        let bank = authz::require_bank(caller, "fetch served reports")?;
        let volunteer =
            convert::account("volunteer_id", r.volunteer_id).map_err(|e| describe_rejection(&e))?;
        let key = match r.key {
            // As an empty digest below: an empty id is no key (not an id of the wrong
            // length, which is what the id parser would call it).
            Some(Key::InquiryId(id)) if id.is_empty() => {
                return Err(describe_rejection(&Rejection::missing("key")))
            }
            Some(Key::InquiryId(id)) => Wanted::Inquiry(
                convert::transaction_id("inquiry_id", &id).map_err(|e| describe_rejection(&e))?,
            ),
            // An empty digest is no key; one that is not 64 hex digits names no report.
            Some(Key::ReportDigest(d)) if d.is_empty() => {
                return Err(describe_rejection(&Rejection::missing("key")))
            }
            Some(Key::ReportDigest(d)) => {
                if d.len() != REPORT_DIGEST_HEX_LEN || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(describe_rejection(&Rejection::input(
                        "report_digest",
                        InputProblem::Malformed(format!(
                            "is not a report digest: send the {REPORT_DIGEST_HEX_LEN} hex digits of report_digest"
                        )),
                    )));
                }
                Wanted::Digest(d.to_ascii_lowercase())
            }
            None => return Err(describe_rejection(&Rejection::missing("key"))),
        };
        // The volunteer's state (cached) says where this bank's inquiries sit: one
        // event is read, and none for a bank that was never served one. Another bank's
        // inquiry reads as "none": a bank learns nothing of others. A made-up id is
        // answered from its missing registration (one cached read), without a fold or
        // an entry in the state cache.
        let registered = self
            .commands
            .registrations()
            .facts(&volunteer)
            .await
            .kind
            .is_some();
        let state = if registered {
            Some(
                self.handler
                    .load(&volunteer)
                    .await
                    .map_err(|e| crate::status::describe(&e))?,
            )
        } else {
            None
        };
        let found = state
            .as_ref()
            .and_then(|state| state.served.get(&bank))
            .and_then(|served| {
                served.iter().rev().find(|s| match &key {
                    Wanted::Inquiry(id) => s.inquiry == *id,
                    Wanted::Digest(d) => s.report_digest == *d,
                })
            });
        if let Some(at) = found {
            let (recorded, event) = self.event_at(&volunteer, at.version).await?;
            match event {
                LedgerEvent::CreditReportServed(e) if e.bank == bank && e.inquiry == at.inquiry => {
                    return served(&e, recorded.position, false)
                }
                other => {
                    return Err(internal(
                        Code::Internal,
                        "INTERNAL",
                        format!(
                            "expected {bank}'s inquiry {} at version {} of {volunteer}, found {}",
                            at.inquiry,
                            at.version,
                            other.event_type()
                        ),
                    ))
                }
            }
        }
        Err(internal(
            Code::NotFound,
            "UNKNOWN_INQUIRY",
            "no report served to your bank matches; check the volunteer id and the inquiry id or digest".into(),
        ))
    }
}

/// The Banks service.
#[derive(Clone)]
pub struct BankService(pub Partners);

#[tonic::async_trait]
impl pb::banks_server::Banks for BankService {
    async fn get_credit_report(
        &self,
        r: Request<pb::BankCreditReportRequest>,
    ) -> Answer<pb::ServedCreditReport> {
        let caller = authz::caller(&r)?;
        self.0
            .bank_report(&caller, r.into_inner())
            .await
            .map(Response::new)
            .map_err(Described::into_status)
    }

    async fn get_served_report(
        &self,
        r: Request<pb::GetServedReportRequest>,
    ) -> Answer<pb::ServedCreditReport> {
        let caller = authz::caller(&r)?;
        self.0
            .served_report(&caller, r.into_inner())
            .await
            .map(Response::new)
            .map_err(Described::into_status)
    }
}

/// Parse a volunteer id for the account-scoped partner RPCs.
pub(crate) fn volunteer_field(text: String) -> Result<AccountId, Described> {
    convert::account("volunteer_id", text).map_err(|e| describe_rejection(&e))
}

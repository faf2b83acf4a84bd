//! `timebank.v1.Consents`: platforms record consents and list who looked.

use ledger_core::domain::events::LedgerEvent;
use ledger_core::log::limits::READ_EVENTS_MAX;
use tonic::{Code, Request, Response, Status};

use super::banks::volunteer_field;
use super::{internal, page_size, page_start, respond, Partners};
use crate::authz::{self, RoleKind};
use crate::convert;
use crate::pb;
use crate::queries::convert::{position, to_timestamp};
use crate::status::Described;

type Answer<T> = Result<Response<T>, Status>;

/// Most events of a volunteer's stream one `ListInquiries` call reads while it fills a
/// page. Inquiries are a few of a volunteer's events among their deposits, spends and
/// consents, so filling a page could otherwise read the whole stream in one call: a
/// long-serving volunteer's tens of thousands of events, for every page. Four reads of
/// [`READ_EVENTS_MAX`]: a stream shorter than that (every volunteer's but those with
/// decades of daily service) is still listed in one call. A call that reaches it
/// answers with the inquiries it found, possibly none, and a next page token where it
/// stopped; a short page with a token is not the end of the list (docs/partners.md).
/// Option not taken: an index of inquiries per volunteer in the read models, which
/// would answer without a scan but hold memory for every volunteer ever inquired
/// about, for a list a platform asks for rarely.
pub const INQUIRY_SCAN_EVENTS_MAX: usize = 4 * READ_EVENTS_MAX;

/// The Consents service.
#[derive(Clone)]
pub struct ConsentService(pub Partners);

impl ConsentService {
    async fn write(
        &self,
        caller: &authz::Caller,
        command: Result<ledger_core::domain::commands::Command, ledger_core::domain::Rejection>,
    ) -> Result<pb::CommandResult, Described> {
        authz::require(
            caller,
            &[RoleKind::Platform, RoleKind::Admin],
            "record consents",
        )?;
        let command = command.map_err(|r| crate::status::describe_rejection(&r))?;
        let commands = &self.0.commands;
        authz::require_command(
            commands.registrations(),
            commands.handler(),
            caller,
            &command,
        )
        .await?;
        let outcome = self.0.commands.execute_authorized(command).await?;
        Ok(convert::command_result(&outcome))
    }

    /// `volunteer` is registered, as a volunteer: an empty list would otherwise read
    /// as "nobody looked" for a mistyped id or an organisation's. Read from the
    /// command side's registrations (current as soon as a registration is appended,
    /// no read model to wait for); a stream that cannot be read says so rather than
    /// "unknown".
    async fn require_volunteer(
        &self,
        volunteer: &ledger_core::domain::account::AccountId,
        stream: &ledger_core::log::StreamName,
    ) -> Result<(), Described> {
        use crate::queries::{QueryError, Wanted};
        use ledger_core::domain::account::AccountKind;
        let refused = |e: QueryError| crate::status::query_status_described(&e);
        let kind = match self.0.commands.registrations().facts(volunteer).await.kind {
            Some(kind) => kind,
            None => {
                let first =
                    self.0.log().read_stream(stream, 0, 1).await.map_err(|e| {
                        internal(Code::Unavailable, "LOG_UNAVAILABLE", e.to_string())
                    })?;
                let Some(e) = first.first() else {
                    return Err(refused(QueryError::UnknownInLog(volunteer.to_string())));
                };
                // Registered since `facts` looked, or a stream that does not begin
                // with a registration (no ledger writes one: not this ledger's log).
                match LedgerEvent::decode(&e.event_type, &e.data) {
                    Ok(LedgerEvent::AccountRegistered(r)) => r.kind,
                    _ => {
                        return Err(internal(
                            Code::DataLoss,
                            "LOG_CORRUPT",
                            format!("{stream} does not begin with its registration"),
                        ))
                    }
                }
            }
        };
        match kind {
            AccountKind::Volunteer { .. } => Ok(()),
            other => Err(refused(QueryError::WrongKind {
                account: volunteer.to_string(),
                is: other.name(),
                wanted: Wanted::Volunteer,
            })),
        }
    }

    async fn inquiries(
        &self,
        caller: &authz::Caller,
        r: pb::ListInquiriesRequest,
    ) -> Result<pb::ListInquiriesResponse, Described> {
        authz::require(
            caller,
            &[RoleKind::Platform, RoleKind::Auditor, RoleKind::Admin],
            "list inquiries",
        )?;
        let volunteer = volunteer_field(r.volunteer_id)?;
        authz::require_account(
            self.0.commands.registrations(),
            caller,
            &volunteer,
            "list this volunteer's inquiries",
            false,
        )
        .await?;
        let stream = volunteer.stream();
        self.require_volunteer(&volunteer, &stream).await?;
        let size = page_size(r.page_size);
        let mut from = page_start(&r.page_token)?;
        let mut inquiries = Vec::new();
        // A token is a version at most the stream's length (it may point just past the
        // last event, when a page ended on it); one beyond that was never issued.
        if from > 0
            && self
                .0
                .log()
                .read_stream(&stream, from - 1, 1)
                .await
                .map_err(|e| internal(Code::Unavailable, "LOG_UNAVAILABLE", e.to_string()))?
                .is_empty()
        {
            return Err(super::page_token_not_issued());
        }
        // Scan the stream a read at a time until a page of inquiries is full, the
        // stream ends, or the call has read `INQUIRY_SCAN_EVENTS_MAX` events.
        let mut scanned = 0;
        loop {
            let want = READ_EVENTS_MAX.min(INQUIRY_SCAN_EVENTS_MAX - scanned);
            let page = self
                .0
                .log()
                .read_stream(&stream, from, want)
                .await
                .map_err(|e| internal(Code::Unavailable, "LOG_UNAVAILABLE", e.to_string()))?;
            let n = page.len();
            scanned += n;
            for e in page {
                from = e.version + 1;
                if e.event_type != "CreditReportServed.v1" {
                    continue;
                }
                let Ok(LedgerEvent::CreditReportServed(i)) =
                    LedgerEvent::decode(&e.event_type, &e.data)
                else {
                    return Err(internal(
                        Code::DataLoss,
                        "LOG_CORRUPT",
                        format!(
                            "inquiry at version {} of {stream} does not decode",
                            e.version
                        ),
                    ));
                };
                inquiries.push(pb::Inquiry {
                    inquiry_id: i.inquiry.to_string(),
                    bank_id: i.bank.to_string(),
                    purpose: i.purpose.to_string(),
                    caller: i.caller,
                    consent_id: i.consent.to_string(),
                    model_version: i.model_version,
                    score: i.score,
                    report_digest: i.report_digest,
                    served_at: Some(to_timestamp(i.recorded_at)),
                    position: Some(position(e.position)),
                });
                if inquiries.len() == size {
                    return Ok(pb::ListInquiriesResponse {
                        inquiries,
                        next_page_token: from.to_string(),
                    });
                }
            }
            if n < want {
                return Ok(pb::ListInquiriesResponse {
                    inquiries,
                    next_page_token: String::new(),
                });
            }
            if scanned >= INQUIRY_SCAN_EVENTS_MAX {
                // Fewer inquiries than asked (maybe none), and a token where the scan
                // stopped: the caller pages on as for a full page.
                return Ok(pb::ListInquiriesResponse {
                    inquiries,
                    next_page_token: from.to_string(),
                });
            }
        }
    }
}

#[tonic::async_trait]
impl pb::consents_server::Consents for ConsentService {
    async fn grant_consent(
        &self,
        r: Request<pb::GrantConsentRequest>,
    ) -> Answer<pb::CommandResult> {
        let caller = authz::caller(&r)?;
        respond(
            self.write(&caller, convert::grant_consent(r.into_inner()))
                .await,
        )
    }

    async fn withdraw_consent(
        &self,
        r: Request<pb::WithdrawConsentRequest>,
    ) -> Answer<pb::CommandResult> {
        let caller = authz::caller(&r)?;
        respond(
            self.write(&caller, convert::withdraw_consent(r.into_inner()))
                .await,
        )
    }

    async fn list_inquiries(
        &self,
        r: Request<pb::ListInquiriesRequest>,
    ) -> Answer<pb::ListInquiriesResponse> {
        let caller = authz::caller(&r)?;
        respond(self.inquiries(&caller, r.into_inner()).await)
    }
}

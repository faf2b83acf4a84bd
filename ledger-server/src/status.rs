//! The one place where a command's failure becomes a gRPC status.
//!
//! Every status carries a `google.rpc.ErrorInfo` detail (via `tonic-types`) with the
//! stable machine-readable `reason` (`INSUFFICIENT_HOURS`, …), the domain
//! [`ERROR_DOMAIN`] and, for bad input, the offending `field` in its metadata. Clients
//! switch on the reason, never on the message.
//!
//! | code | rejections |
//! |---|---|
//! | `INVALID_ARGUMENT` | a request that is not valid protobuf (`MESSAGE_MALFORMED`, `codec.rs`), bad input (`FIELD_MISSING`, `AMOUNT_*`, `ID_*`, `TOKEN_INVALID`, …), `CONSENT_EXPIRY_IN_PAST`, `CONSENT_TOO_LONG`, `ACCOUNT_ID_RESERVED`, `SELF_TRANSFER`, `SERVICE_DATE_IN_FUTURE`, `SERVICE_INTERVAL_IN_FUTURE`, `INVALID_SERVICE_INTERVAL`, `SERVICE_DATE_MISMATCH`, `HOURS_EXCEED_INTERVAL`, `BATCH_TOO_LARGE`, `BATCH_EMPTY` |
//! | `NOT_FOUND` | `UNKNOWN_ACCOUNT`, `UNKNOWN_TRANSACTION`, `UNKNOWN_HOLD` |
//! | `PERMISSION_DENIED` | `CONSENT_REQUIRED` (no current consent of the volunteer to the calling bank for the purpose; also for an unknown volunteer), `NOT_IN_SCOPE` (the call is outside the caller's role or scope; also for an unknown account) |
//! | `UNAUTHENTICATED` | `UNAUTHENTICATED`: no or a wrong credential |
//! | `ALREADY_EXISTS` | `ACCOUNT_ALREADY_EXISTS`, `REQUEST_ID_REUSED` |
//! | `FAILED_PRECONDITION` | every other business rule (`INSUFFICIENT_HOURS`, `INSUFFICIENT_POINTS`, `NO_CURRENT_CONSENT`, `TOKEN_EXPIRED`, `TOKEN_ALREADY_USED`, `TOKEN_MAXIMUM_EXCEEDED`, `HOLD_ALREADY_CAPTURED`, `HOLD_VOIDED`, `HOLD_EXPIRED`, `CAPTURE_EXCEEDS_HOLD`, `HOURS_PER_DAY_EXCEEDED`, `OVERLAPPING_SERVICE`, `ALREADY_REVERSED`, `REVERSAL_OF_REVERSAL`, …) |
//! | `ABORTED` | `CONTENTION`: the account changed under the command too often; retry |
//! | `UNAVAILABLE` | `LOG_UNAVAILABLE`: retry with the same request id; queries: `NOT_CAUGHT_UP` (the read models have not reached `min_position` within the wait bound; retry), `NOT_SETTLED` (a credit report as of an instant whose commands are still being appended; retry) |
//! | `NOT_FOUND` (queries) | `UNKNOWN_ACCOUNT`, `NOT_A_VOLUNTEER`, `NOT_AN_ORGANISATION`, `NOT_A_MERCHANT`, `UNKNOWN_REGION` |
//! | `INVALID_ARGUMENT` (queries) | bad fields as for commands, `UNKNOWN_POLICY_VERSION`, `UNKNOWN_MODEL_VERSION` |
//! | `FAILED_PRECONDITION` (queries) | `STREAM_TOO_LONG`: a report or replay reads the account's whole stream, and it holds more than `CREDIT_STREAM_EVENTS_MAX` events; retrying cannot help, call an operator |
//! | `DATA_LOSS` | `LOG_CORRUPT`: stored data failed a check; call an operator |
//! | `UNAUTHENTICATED` | `UNAUTHENTICATED`: no, a malformed or an unknown credential (the message says what to send) |
//! | `RESOURCE_EXHAUSTED` | `RATE_LIMITED`: the caller is over its `requests_per_second_max`; a `RetryInfo` says when to retry |

use std::collections::HashMap;
use std::time::Duration;

use ledger_core::app::CommandError;
use ledger_core::domain::Rejection;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `ErrorInfo` this server sends.
pub const ERROR_DOMAIN: &str = "timebank.v1";

/// A failure, described once for both a single RPC's status and a batch line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    pub metadata: HashMap<String, String>,
}

impl Described {
    pub fn into_status(self) -> Status {
        Status::with_error_details(
            self.code,
            self.message,
            ErrorDetails::with_error_info(self.reason, ERROR_DOMAIN, self.metadata),
        )
    }
}

/// The gRPC code of a business rejection.
pub fn rejection_code(r: &Rejection) -> Code {
    use Rejection as R;
    match r {
        R::InvalidInput { .. }
        | R::ReservedAccountId { .. }
        | R::SelfTransfer
        | R::ServiceDateInFuture { .. }
        | R::JoinDateInFuture { .. }
        | R::ServiceIntervalInFuture { .. }
        | R::InvalidServiceInterval { .. }
        | R::ServiceDateMismatch { .. }
        | R::HoursExceedInterval { .. }
        | R::ConsentExpiryInPast { .. }
        | R::ConsentTooLong { .. } => Code::InvalidArgument,
        R::ConsentRequired { .. } => Code::PermissionDenied,
        // As CONTENTION: the same request again may succeed.
        R::ReportOutdated => Code::Aborted,
        R::UnknownHold { .. } => Code::NotFound,
        R::UnknownAccount { .. } | R::UnknownTransaction { .. } => Code::NotFound,
        R::AccountAlreadyExists { .. }
        | R::RequestIdReused { .. }
        | R::NoShowAlreadyRecorded { .. } => Code::AlreadyExists,
        R::AccountClosed { .. }
        | R::WrongAccountKind { .. }
        | R::InsufficientHours { .. }
        | R::InsufficientBalanceForReversal { .. }
        | R::HoursPerDayExceeded { .. }
        | R::InquiriesPerDayExceeded { .. }
        | R::OverlappingService { .. }
        | R::ExchangeRateChanged { .. }
        | R::ExchangeTooSmall { .. }
        | R::ExchangeTooLarge { .. }
        | R::AlreadyReversed { .. }
        | R::ReversalOfReversal { .. }
        | R::NotReversible { .. }
        | R::ReversalOnWrongAccount { .. }
        | R::NotADeposit { .. }
        | R::DepositReversed { .. }
        | R::AlreadyRated { .. }
        | R::NoCurrentConsent { .. }
        | R::TokenExpired { .. }
        | R::TokenAlreadyUsed
        | R::TokenMaximumExceeded { .. }
        | R::InsufficientPoints { .. }
        | R::HoldAlreadyCaptured { .. }
        | R::HoldVoided { .. }
        | R::HoldExpired { .. }
        | R::CaptureExceedsHold { .. }
        | R::HoldNotExpired { .. } => Code::FailedPrecondition,
    }
}

pub fn describe_rejection(r: &Rejection) -> Described {
    let mut metadata = HashMap::new();
    if let Some(field) = r.field() {
        metadata.insert("field".to_owned(), field.to_owned());
    }
    Described {
        code: rejection_code(r),
        reason: r.reason(),
        message: r.to_string(),
        metadata,
    }
}

pub fn describe(e: &CommandError) -> Described {
    let (code, reason) = match e {
        CommandError::Rejected(r) => return describe_rejection(r),
        CommandError::Contention { .. } => (Code::Aborted, "CONTENTION"),
        CommandError::LogUnavailable(_) => (Code::Unavailable, "LOG_UNAVAILABLE"),
        CommandError::LogCorrupt(_) => (Code::DataLoss, "LOG_CORRUPT"),
    };
    Described {
        code,
        reason,
        message: e.to_string(),
        metadata: HashMap::new(),
    }
}

/// The status of a failed command: the one mapping every RPC uses.
pub fn command_status(e: &CommandError) -> Status {
    describe(e).into_status()
}

/// The status of a failed query (`timebank.v1.LedgerQueries`), the one mapping every
/// query RPC uses. `NOT_CAUGHT_UP` is UNAVAILABLE: the same request succeeds once the
/// read models reach the asked position; the checkpoint reached is in the metadata.
pub fn query_status(e: &crate::queries::QueryError) -> Status {
    query_status_described(e).into_status()
}

/// [`query_status`] as a [`Described`], for services that build on queries.
pub fn query_status_described(e: &crate::queries::QueryError) -> Described {
    use crate::queries::QueryError as Q;
    let mut metadata = HashMap::new();
    let (code, reason) = match e {
        Q::Input(r) => return describe_rejection(r),
        Q::Denied(d) => return d.clone(),
        Q::NotCaughtUp(n) => {
            metadata.insert("wanted".to_owned(), n.wanted.to_string());
            if let Some(cp) = n.checkpoint {
                metadata.insert("checkpoint".to_owned(), cp.to_string());
            }
            (Code::Unavailable, "NOT_CAUGHT_UP")
        }
        Q::NotSettled(_) => (Code::Unavailable, "NOT_SETTLED"),
        Q::UnknownAccount(_) | Q::UnknownInLog(_) => (Code::NotFound, "UNKNOWN_ACCOUNT"),
        Q::NotAVolunteer(_) => (Code::NotFound, "NOT_A_VOLUNTEER"),
        Q::WrongKind { wanted, .. } => (
            Code::NotFound,
            match wanted {
                crate::queries::Wanted::Volunteer => "NOT_A_VOLUNTEER",
                crate::queries::Wanted::Organisation => "NOT_AN_ORGANISATION",
                crate::queries::Wanted::Merchant => "NOT_A_MERCHANT",
            },
        ),
        Q::UnknownRegion(_) => (Code::NotFound, "UNKNOWN_REGION"),
        Q::UnknownPolicy { .. } => (Code::InvalidArgument, "UNKNOWN_POLICY_VERSION"),
        Q::UnknownModel(_) => (Code::InvalidArgument, "UNKNOWN_MODEL_VERSION"),
        Q::LogUnavailable(_) => (Code::Unavailable, "LOG_UNAVAILABLE"),
        Q::LogCorrupt(_) => (Code::DataLoss, "LOG_CORRUPT"),
        Q::StreamTooLong(_) => (Code::FailedPrecondition, "STREAM_TOO_LONG"),
        Q::Internal(_) => (Code::Internal, "INTERNAL"),
        Q::ResumePointChanged { after, .. } => {
            metadata.insert("after".to_owned(), after.to_string());
            (Code::FailedPrecondition, "RESUME_POINT_CHANGED")
        }
        Q::RangeTooLarge { .. } => (Code::ResourceExhausted, "RANGE_TOO_LARGE"),
    };
    Described {
        code,
        reason,
        message: e.to_string(),
        metadata,
    }
}

/// `UNAVAILABLE` `SHUTTING_DOWN`: the server stops; `then` says what the caller does
/// (retry a command with the same request id, resume a stream after its last record).
pub fn shutting_down(then: &str) -> Described {
    Described {
        code: Code::Unavailable,
        reason: "SHUTTING_DOWN",
        message: format!("the server is shutting down; {then}"),
        metadata: Default::default(),
    }
}

/// The status of a request that is not a valid protobuf message of its type
/// (`codec.rs`): bad input, never retried as it is, so not tonic's `INTERNAL`.
pub fn malformed_message_status(e: &prost::DecodeError) -> Status {
    Described {
        code: Code::InvalidArgument,
        reason: "MESSAGE_MALFORMED",
        message: format!(
            "the request is not a valid protobuf message of its type ({e}); encode it as the .proto in proto/timebank/v1 defines it (strings must be UTF-8)"
        ),
        metadata: HashMap::new(),
    }
    .into_status()
}

/// The status of a call that was not authenticated. The message is fixed text per
/// [`crate::auth::AuthError`] (what to send), never derived from what was sent.
pub fn unauthenticated_status(e: &crate::auth::AuthError) -> Status {
    Described {
        code: Code::Unauthenticated,
        reason: "UNAUTHENTICATED",
        message: e.to_string(),
        metadata: HashMap::new(),
    }
    .into_status()
}

/// The status of a call over its caller's rate: `RESOURCE_EXHAUSTED`, reason
/// `RATE_LIMITED`, the limit in the metadata and a `RetryInfo` with the wait until the
/// caller's next request would be admitted.
pub fn rate_limited_status(requests_per_second_max: u32, retry_after: Duration) -> Status {
    let mut details = ErrorDetails::with_error_info(
        "RATE_LIMITED",
        ERROR_DOMAIN,
        [(
            "requests_per_second_max".to_owned(),
            requests_per_second_max.to_string(),
        )],
    );
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "over this caller's requests_per_second_max ({requests_per_second_max}): retry after {} ms, and send at a lower rate",
            retry_after.as_millis().max(1)
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::domain::account::AccountId;

    #[test]
    fn statuses_carry_the_reason_in_error_info() {
        let s = command_status(&CommandError::Rejected(Rejection::UnknownAccount {
            account: AccountId::new("x").unwrap(),
        }));
        assert_eq!(s.code(), Code::NotFound);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("UNKNOWN_ACCOUNT", ERROR_DOMAIN)
        );
        let s = command_status(&CommandError::Rejected(Rejection::missing("hours")));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.get_details_error_info().unwrap().metadata["field"],
            "hours"
        );
    }

    /// The auditors' two refusals are mapped here like every other (they were built
    /// where they happen, in `partners/audit.rs`, before).
    #[test]
    fn the_audit_refusals_map_to_their_codes_and_reasons() {
        use crate::queries::QueryError;
        let after = ledger_core::log::Position::from_sequence(41);
        let s = query_status(&QueryError::ResumePointChanged {
            stream: "account-v-1".into(),
            version: 3,
            hash: "ab".repeat(32),
            after,
            now: "account-v-1 has no version 3".into(),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, "RESUME_POINT_CHANGED");
        assert_eq!(info.metadata["after"], after.to_string());
        assert!(s.message().contains("account-v-1 has no version 3"));
        let s = query_status(&QueryError::RangeTooLarge { streams_max: 7 });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            "RANGE_TOO_LARGE"
        );
        assert!(s.message().contains("verify_streams_max (7)"));
    }
}

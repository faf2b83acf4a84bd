//! End-to-end through gRPC with an access file: banks, merchants and auditors each do
//! their job and nothing more.
//!
//! - consents: none, expired, withdrawn, other bank, other purpose; inquiries on the
//!   log, listed for the platform and fetched back by the bank;
//! - redemption tokens: expired, reused, forged, over the maximum; holds: capture,
//!   partial capture, void, expiry (recorded by the sweeper), double capture;
//!   settlement;
//! - the audit service: the raw log with its hash chain, verification, replay to a
//!   point in time, on a log of JSON payloads and on one of binary payloads;
//! - the authorisation matrix: every role against every RPC.

// Every helper here returns tonic's `Status`, the error of every RPC.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger_core::domain::chain::{encode_metadata, event_hash, hex32, EventMetadata, GENESIS_HASH};
use ledger_core::domain::events::{LedgerEvent, PayloadEncoding, BINARY_PAYLOAD_TAG};
use ledger_core::log::{
    EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, RecordedEvent, StreamName,
};
use ledger_server::auth::Access;
use ledger_server::demo::{self, DemoConfig};
use ledger_server::pb;
use timebank_tests::{at, caller_entry as entry, reason, registration, with, Guarded};
use tonic::{Code, Status};
use tonic_types::StatusExt;

const NOW: &str = "2026-11-20T12:00:00Z";

const ADMIN: &str = "tbk_admin";
const PLATFORM: &str = "tbk_platform";
const OTHER_PLATFORM: &str = "tbk_other_platform";
const BANK_A: &str = "tbk_bank_a";
const BANK_B: &str = "tbk_bank_b";
const MERCHANT: &str = "tbk_merchant_1";
const OTHER_MERCHANT: &str = "tbk_merchant_2";
const AUDITOR: &str = "tbk_auditor";

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn access() -> Access {
    let text = [
        entry("admin", "admin", "", ADMIN),
        entry(
            "xihu-platform",
            "platform",
            "regions = [\"hangzhou/xihu\"]\norganisations = [\"org-1\"]",
            PLATFORM,
        ),
        entry(
            "ningbo-platform",
            "platform",
            "regions = [\"ningbo\"]",
            OTHER_PLATFORM,
        ),
        entry("bank-a", "bank", "bank = \"bank-a\"", BANK_A),
        entry("bank-b", "bank", "bank = \"bank-b\"", BANK_B),
        entry("shop-1", "merchant", "merchant = \"m-1\"", MERCHANT),
        entry("shop-2", "merchant", "merchant = \"m-2\"", OTHER_MERCHANT),
        entry("auditor", "auditor", "", AUDITOR),
    ]
    .concat();
    Access::from_toml(&text).unwrap()
}

/// [`Guarded`] with this file's accounts (`Server::seed`).
struct Server(Guarded);

impl std::ops::Deref for Server {
    type Target = Guarded;
    fn deref(&self) -> &Guarded {
        &self.0
    }
}

impl Server {
    async fn start() -> Self {
        let mut s = Self(Guarded::start(access(), NOW).await);
        s.seed().await;
        s
    }

    async fn stop(self) {
        self.0.stop().await
    }

    async fn register(&self, id: &str, kind: pb::AccountKind, region: &str) -> pb::CommandResult {
        self.commands()
            .register_account(with(
                ADMIN,
                registration(&format!("reg-{id}"), id, kind, region, "2024-11-20"),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Organisation org-1 and volunteers v1, v2 in the platform's region, v-far outside
    /// it, banks bank-a and bank-b, merchants m-1 and m-2; v1 holds 50 points and 3
    /// spendable hours.
    async fn seed(&mut self) {
        use pb::AccountKind as K;
        self.register("org-1", K::Organisation, "hangzhou/xihu")
            .await;
        self.register("v1", K::Volunteer, "hangzhou/xihu/lingyin/c3")
            .await;
        self.register("v2", K::Volunteer, "hangzhou/xihu/lingyin/c3")
            .await;
        self.register("v-far", K::Volunteer, "ningbo/haishu").await;
        for (id, kind) in [
            ("bank-a", K::Bank),
            ("bank-b", K::Bank),
            ("m-1", K::Merchant),
            ("m-2", K::Merchant),
        ] {
            self.register(id, kind, "").await;
        }
        self.commands()
            .deposit_hours(with(
                PLATFORM,
                pb::DepositHoursRequest {
                    request_id: "dep-1".into(),
                    volunteer_id: "v1".into(),
                    organisation_id: "org-1".into(),
                    activity_id: "act-1".into(),
                    service_date: "2026-11-19".into(),
                    started_at: Some(ts(at("2026-11-19T01:00:00Z"))),
                    ended_at: Some(ts(at("2026-11-19T09:00:00Z"))),
                    category: "elderly-care".into(),
                    hours: "8".into(),
                    kind: pb::HourKind::Credit as i32,
                    verifier_id: "staff-1".into(),
                },
            ))
            .await
            .unwrap();
        self.commands()
            .exchange_hours(with(
                PLATFORM,
                pb::ExchangeHoursRequest {
                    request_id: "ex-1".into(),
                    volunteer_id: "v1".into(),
                    hours: "5".into(),
                    expected_rate_version: 0,
                },
            ))
            .await
            .unwrap();
    }

    async fn grant(
        &self,
        req: &str,
        volunteer: &str,
        bank: &str,
        expires: &str,
    ) -> Result<pb::CommandResult, Status> {
        self.consents()
            .grant_consent(with(
                PLATFORM,
                pb::GrantConsentRequest {
                    request_id: req.into(),
                    volunteer_id: volunteer.into(),
                    bank_id: bank.into(),
                    purpose: "volunteer-loan".into(),
                    expires_at: Some(ts(at(expires))),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn report(
        &self,
        key: &str,
        req: &str,
        volunteer: &str,
        purpose: &str,
    ) -> Result<pb::ServedCreditReport, Status> {
        self.banks()
            .get_credit_report(with(
                key,
                pb::BankCreditReportRequest {
                    request_id: req.into(),
                    volunteer_id: volunteer.into(),
                    purpose: purpose.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn token(&self, volunteer: &str, max: &str) -> pb::RedemptionToken {
        self.redemptions()
            .issue_redemption_token(with(
                PLATFORM,
                pb::IssueRedemptionTokenRequest {
                    volunteer_id: volunteer.into(),
                    points_max: max.into(),
                    ttl_seconds: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    async fn authorize(
        &self,
        key: &str,
        req: &str,
        merchant: &str,
        token: &str,
        points: &str,
    ) -> Result<pb::RedemptionHold, Status> {
        self.redemptions()
            .authorize_redemption(with(
                key,
                pb::AuthorizeRedemptionRequest {
                    request_id: req.into(),
                    merchant_id: merchant.into(),
                    token: token.into(),
                    points: points.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn capture(
        &self,
        key: &str,
        req: &str,
        merchant: &str,
        hold: &str,
        points: &str,
    ) -> Result<pb::CommandResult, Status> {
        self.redemptions()
            .capture_redemption(with(
                key,
                pb::CaptureRedemptionRequest {
                    request_id: req.into(),
                    merchant_id: merchant.into(),
                    volunteer_id: "v1".into(),
                    hold_id: hold.into(),
                    points: points.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn void(&self, req: &str, hold: &str) -> Result<pb::CommandResult, Status> {
        self.redemptions()
            .void_redemption(with(
                MERCHANT,
                pb::VoidRedemptionRequest {
                    request_id: req.into(),
                    merchant_id: "m-1".into(),
                    volunteer_id: "v1".into(),
                    hold_id: hold.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn account(&self, id: &str, min: Option<pb::LogPosition>) -> pb::AccountView {
        self.queries()
            .get_account(with(
                ADMIN,
                pb::GetAccountRequest {
                    min_position: min,
                    account_id: id.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }
}

fn assert_refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, why: &str) -> Status {
    let s = r.expect_err(why);
    assert_eq!((s.code(), reason(&s).as_str()), (code, why), "{s:?}");
    s
}

#[tokio::test]
async fn consents_gate_credit_reports_and_every_report_served_is_an_inquiry() {
    let s = Server::start().await;
    // None.
    let none = assert_refused(
        s.report(BANK_A, "q-0", "v1", "volunteer-loan").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );
    // An unknown volunteer reads exactly the same.
    let ghost = assert_refused(
        s.report(BANK_A, "q-0", "ghost", "volunteer-loan").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );
    assert_eq!(none.message(), ghost.message());

    s.grant("c-1", "v1", "bank-a", "2026-12-20T00:00:00Z")
        .await
        .unwrap();
    let served = s
        .report(BANK_A, "q-1", "v1", "volunteer-loan")
        .await
        .unwrap();
    let report = served.report.clone().unwrap();
    assert_eq!(report.volunteer_id, "v1");
    assert!(!served.replayed);
    assert_eq!(
        served.report_digest,
        blake3::hash(served.report_json.as_bytes())
            .to_hex()
            .to_string()
    );
    // A retry returns the original inquiry, not a second one.
    let again = s
        .report(BANK_A, "q-1", "v1", "volunteer-loan")
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.inquiry_id.as_str(), again.report_json.as_str()),
        (served.inquiry_id.as_str(), served.report_json.as_str())
    );

    // Other bank, other purpose.
    assert_refused(
        s.report(BANK_B, "q-2", "v1", "volunteer-loan").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );
    assert_refused(
        s.report(BANK_A, "q-3", "v1", "mortgage").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );

    // The bank fetches the exact report later, by inquiry id or digest; another bank
    // cannot.
    for key in [
        pb::get_served_report_request::Key::InquiryId(served.inquiry_id.clone()),
        pb::get_served_report_request::Key::ReportDigest(served.report_digest.clone()),
    ] {
        let req = pb::GetServedReportRequest {
            volunteer_id: "v1".into(),
            key: Some(key),
        };
        let fetched = s
            .banks()
            .get_served_report(with(BANK_A, req.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(fetched.report_json, served.report_json);
        assert_eq!(fetched.report, served.report);
        assert_refused(
            s.banks().get_served_report(with(BANK_B, req)).await,
            Code::NotFound,
            "UNKNOWN_INQUIRY",
        );
    }

    // The platform lists who looked.
    let inquiries = s
        .consents()
        .list_inquiries(with(
            PLATFORM,
            pb::ListInquiriesRequest {
                volunteer_id: "v1".into(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .inquiries;
    assert_eq!(inquiries.len(), 1);
    let i = &inquiries[0];
    assert_eq!(
        (i.bank_id.as_str(), i.purpose.as_str(), i.caller.as_str()),
        ("bank-a", "volunteer-loan", "bank-a")
    );
    assert_eq!(i.report_digest, served.report_digest);

    // An id that names no volunteer is not "nobody looked": an administrator (who may
    // see any account) is told the id is unknown, or registered as something else.
    let consents = s.consents();
    let list = |id: &str| {
        let mut consents = consents.clone();
        let request = with(
            ADMIN,
            pb::ListInquiriesRequest {
                volunteer_id: id.into(),
                page_size: 0,
                page_token: String::new(),
            },
        );
        async move { consents.list_inquiries(request).await }
    };
    let ghost = assert_refused(list("ghost").await, Code::NotFound, "UNKNOWN_ACCOUNT");
    // Found from the log, which no min_position changes (nor does the request have one).
    assert!(
        ghost.message().contains("ghost") && !ghost.message().contains("min_position"),
        "{}",
        ghost.message()
    );
    let bank = assert_refused(list("bank-a").await, Code::NotFound, "NOT_A_VOLUNTEER");
    assert!(bank.message().contains("bank"), "{}", bank.message());
    assert_eq!(list("v1").await.unwrap().into_inner().inquiries.len(), 1);

    // Withdrawn.
    s.consents()
        .withdraw_consent(with(
            PLATFORM,
            pb::WithdrawConsentRequest {
                request_id: "w-1".into(),
                volunteer_id: "v1".into(),
                bank_id: "bank-a".into(),
            },
        ))
        .await
        .unwrap();
    assert_refused(
        s.report(BANK_A, "q-4", "v1", "volunteer-loan").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );

    // Expired.
    s.grant("c-2", "v1", "bank-a", "2026-11-21T00:00:00Z")
        .await
        .unwrap();
    s.report(BANK_A, "q-5", "v1", "volunteer-loan")
        .await
        .unwrap();
    s.clock.set(at("2026-11-21T00:00:00Z"));
    assert_refused(
        s.report(BANK_A, "q-6", "v1", "volunteer-loan").await,
        Code::PermissionDenied,
        "CONSENT_REQUIRED",
    );

    // A consent for a bank that is not one.
    assert_refused(
        s.grant("c-3", "v1", "m-1", "2026-12-01T00:00:00Z").await,
        Code::FailedPrecondition,
        "WRONG_ACCOUNT_KIND",
    );
    s.stop().await;
}

/// ledger-rules.md, inquiries: a bank makes at most `INQUIRIES_PER_CONSENT_PER_DAY_MAX`
/// inquiries under one consent in any 24 hours (each is an event on the volunteer's
/// stream, which every report reads whole); the next is `INQUIRIES_PER_DAY_EXCEEDED`
/// and writes nothing, a retry of one already served is still its original, and the
/// oldest one's place is free 24 hours after it.
#[tokio::test]
async fn a_bank_makes_a_bounded_number_of_inquiries_a_day_under_one_consent() {
    use ledger_core::domain::state::INQUIRIES_PER_CONSENT_PER_DAY_MAX as MAX;
    let s = Server::start().await;
    s.grant("c-1", "v1", "bank-a", "2026-12-20T00:00:00Z")
        .await
        .unwrap();
    for i in 0..MAX {
        s.report(BANK_A, &format!("q-{i}"), "v1", "volunteer-loan")
            .await
            .unwrap();
    }
    let head = s.head().await;
    let refused = assert_refused(
        s.report(BANK_A, "q-over", "v1", "volunteer-loan").await,
        Code::FailedPrecondition,
        "INQUIRIES_PER_DAY_EXCEEDED",
    );
    assert!(refused.message().contains("GetServedReport"), "{refused:?}");
    assert_eq!(s.head().await, head, "a refused inquiry writes nothing");
    let again = s
        .report(BANK_A, "q-0", "v1", "volunteer-loan")
        .await
        .unwrap();
    assert!(again.replayed, "a retry is its original, limit or not");
    s.clock.set(at("2026-11-21T12:00:00Z"));
    s.report(BANK_A, "q-next-day", "v1", "volunteer-loan")
        .await
        .expect("a day later the oldest inquiry's place is free");
    s.stop().await;
}

#[tokio::test]
async fn redemption_tokens_and_holds_follow_their_rules() {
    let s = Server::start().await;
    let t = s.token("v1", "30").await;

    // The merchant sees the presenter's star level and nothing else.
    let star = s
        .redemptions()
        .get_presenter_star_level(with(
            MERCHANT,
            pb::GetPresenterStarLevelRequest {
                token: t.token.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(star.stars, 0);

    // Over the maximum, forged.
    assert_refused(
        s.authorize(MERCHANT, "a-0", "m-1", &t.token, "30.01").await,
        Code::FailedPrecondition,
        "TOKEN_MAXIMUM_EXCEEDED",
    );
    let forged = format!("{}x", &t.token[..t.token.len() - 1]);
    assert_refused(
        s.authorize(MERCHANT, "a-f", "m-1", &forged, "1").await,
        Code::InvalidArgument,
        "TOKEN_INVALID",
    );

    // A hold keeps the points; the token is spent.
    let hold = s
        .authorize(MERCHANT, "a-1", "m-1", &t.token, "20")
        .await
        .unwrap();
    assert_eq!(hold.volunteer_id, "v1");
    let view = s.account("v1", hold.position).await;
    assert_eq!(
        (view.points_available.as_str(), view.points_held.as_str()),
        ("30.00", "20.00")
    );
    assert_refused(
        s.authorize(MERCHANT, "a-2", "m-1", &t.token, "1").await,
        Code::FailedPrecondition,
        "TOKEN_ALREADY_USED",
    );
    // The retry of the same request is the same hold.
    let again = s
        .authorize(MERCHANT, "a-1", "m-1", &t.token, "20")
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.hold_id, hold.hold_id);

    // Request ids are the merchant's own: another till numbering its requests the same
    // way gets its own hold, not REQUEST_ID_REUSED.
    let t_other = s.token("v1", "1").await;
    let other = s
        .authorize(OTHER_MERCHANT, "a-1", "m-2", &t_other.token, "1")
        .await
        .unwrap();
    assert!(!other.replayed && other.hold_id != hold.hold_id);
    s.redemptions()
        .void_redemption(with(
            OTHER_MERCHANT,
            pb::VoidRedemptionRequest {
                request_id: "v-0".into(),
                merchant_id: "m-2".into(),
                volunteer_id: "v1".into(),
                hold_id: other.hold_id.clone(),
            },
        ))
        .await
        .unwrap();

    // Another merchant cannot touch it, not even by naming itself.
    assert_refused(
        s.capture(OTHER_MERCHANT, "k-x", "m-1", &hold.hold_id, "1")
            .await,
        Code::PermissionDenied,
        "NOT_IN_SCOPE",
    );
    assert_refused(
        s.capture(OTHER_MERCHANT, "k-y", "m-2", &hold.hold_id, "1")
            .await,
        Code::NotFound,
        "UNKNOWN_HOLD",
    );

    // Partial capture, then double capture and void after capture.
    assert_refused(
        s.capture(MERCHANT, "k-0", "m-1", &hold.hold_id, "20.01")
            .await,
        Code::FailedPrecondition,
        "CAPTURE_EXCEEDS_HOLD",
    );
    let captured = s
        .capture(MERCHANT, "k-1", "m-1", &hold.hold_id, "12.5")
        .await
        .unwrap();
    let view = s.account("v1", captured.position).await;
    assert_eq!(
        (view.points_available.as_str(), view.points_held.as_str()),
        ("37.50", "0.00")
    );
    assert_refused(
        s.capture(MERCHANT, "k-2", "m-1", &hold.hold_id, "1").await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_CAPTURED",
    );
    assert_refused(
        s.void("v-0", &hold.hold_id).await,
        Code::FailedPrecondition,
        "HOLD_ALREADY_CAPTURED",
    );

    // Void, then capture after void.
    let t2 = s.token("v1", "10").await;
    let h2 = s
        .authorize(MERCHANT, "a-3", "m-1", &t2.token, "10")
        .await
        .unwrap();
    s.void("v-1", &h2.hold_id).await.unwrap();
    assert_refused(
        s.capture(MERCHANT, "k-3", "m-1", &h2.hold_id, "1").await,
        Code::FailedPrecondition,
        "HOLD_VOIDED",
    );

    // Expiry: the points return at the expiry instant, the sweeper records it.
    let t3 = s.token("v1", "5").await;
    let h3 = s
        .authorize(MERCHANT, "a-4", "m-1", &t3.token, "5")
        .await
        .unwrap();
    s.clock.set(at("2026-11-20T12:15:00Z"));
    assert_refused(
        s.capture(MERCHANT, "k-4", "m-1", &h3.hold_id, "5").await,
        Code::FailedPrecondition,
        "HOLD_EXPIRED",
    );
    // An expired token.
    let old = s.token("v1", "1").await;
    s.clock.set(at("2026-11-20T12:25:00Z"));
    assert_refused(
        s.authorize(MERCHANT, "a-6", "m-1", &old.token, "1").await,
        Code::FailedPrecondition,
        "TOKEN_EXPIRED",
    );
    let mut expired = false;
    for _ in 0..40 {
        let list = s
            .redemptions()
            .list_redemptions(with(
                MERCHANT,
                pb::ListRedemptionsRequest {
                    min_position: None,
                    merchant_id: "m-1".into(),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let statuses: Vec<&str> = list.redemptions.iter().map(|r| r.status.as_str()).collect();
        if statuses.contains(&"expired") {
            assert_eq!(statuses, ["captured", "voided", "expired"]);
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(expired, "the sweeper recorded the expired hold");

    // Settlement: the captures of the period.
    let st = s
        .redemptions()
        .get_settlement_statement(with(
            MERCHANT,
            pb::GetSettlementStatementRequest {
                min_position: None,
                merchant_id: "m-1".into(),
                from: Some(ts(at("2026-11-20T00:00:00Z"))),
                to: Some(ts(at("2026-11-21T00:00:00Z"))),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((st.captures, st.total_points.as_str()), (1, "12.50"));
    assert_eq!(st.lines.len(), 1);
    let other = s
        .redemptions()
        .get_settlement_statement(with(
            OTHER_MERCHANT,
            pb::GetSettlementStatementRequest {
                min_position: None,
                merchant_id: "m-2".into(),
                from: Some(ts(at("2026-11-20T00:00:00Z"))),
                to: Some(ts(at("2026-11-21T00:00:00Z"))),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((other.captures, other.total_points.as_str()), (0, "0.00"));
    s.stop().await;
}

/// The auditor's StreamLog from the start of the log.
async fn whole_log(s: &Guarded) -> tonic::Streaming<pb::LogRecord> {
    s.audit()
        .stream_log(with(AUDITOR, pb::StreamLogRequest::default()))
        .await
        .unwrap()
        .into_inner()
}

/// Every record of the whole log, each streamed without error.
async fn whole_log_records(s: &Guarded) -> Vec<pb::LogRecord> {
    let mut records = Vec::new();
    let mut stream = whole_log(s).await;
    while let Some(r) = stream.next().await {
        records.push(r.unwrap());
    }
    records
}

/// The auditor's `VerifyLog` over the whole log.
async fn verify_whole_log(s: &Guarded) -> pb::VerifyLogResponse {
    s.audit()
        .verify_log(with(AUDITOR, pb::VerifyLogRequest::default()))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn auditors_stream_verify_and_replay_the_log() {
    let s = Server::start().await;
    let records = whole_log_records(&s).await;
    // 8 registrations, a deposit and an exchange.
    assert_eq!(records.len(), 10);
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for r in &records {
        let expected = last
            .get(&r.stream)
            .cloned()
            .unwrap_or_else(|| "0".repeat(64));
        assert_eq!(r.prev_hash, expected, "{} v{}", r.stream, r.version);
        last.insert(r.stream.clone(), r.hash.clone());
        serde_json::from_str::<serde_json::Value>(&r.data).unwrap();
        // A JSON payload: data is the stored text, and stored_data the same bytes.
        assert_eq!(r.payload_encoding, "json");
        assert_eq!(r.stored_data, r.data.as_bytes());
        assert_eq!(r.stored_metadata, r.metadata.as_bytes());
    }
    let verified = verify_whole_log(&s).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.records_verified, 10);
    assert_eq!(verified.head_hash, records[9].hash);
    assert_eq!(verified.head_position, records[9].position);
    // A range that starts mid-stream links to the predecessor read from the log.
    let tail = s
        .audit()
        .verify_log(with(
            AUDITOR,
            pb::VerifyLogRequest {
                after: records[8].position,
                up_to: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(tail.ok && tail.records_verified == 1, "{tail:?}");

    // Replay: before the exchange, and now.
    let replay = |p: Option<pb::replay_account_request::Point>| {
        let mut a = s.audit();
        async move {
            a.replay_account(with(
                AUDITOR,
                pb::ReplayAccountRequest {
                    account_id: "v1".into(),
                    point: p,
                },
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let now = replay(None).await;
    assert_eq!(
        (
            now.spendable_hours.as_str(),
            now.points_balance.as_str(),
            now.lifetime_credit_hours.as_str()
        ),
        ("3.00", "50.00", "8.00")
    );
    let deposit = records
        .iter()
        .find(|r| r.r#type == "HoursDeposited.v1")
        .unwrap();
    let then = replay(Some(pb::replay_account_request::Point::AtPosition(
        deposit.position.unwrap(),
    )))
    .await;
    assert_eq!(
        (
            then.spendable_hours.as_str(),
            then.points_balance.as_str(),
            then.events_applied
        ),
        ("8.00", "0.00", 2)
    );
    assert_eq!(then.last_hash, deposit.hash);
    let before = s
        .audit()
        .replay_account(with(
            AUDITOR,
            pb::ReplayAccountRequest {
                account_id: "v1".into(),
                point: Some(pb::replay_account_request::Point::AsOf(ts(at(
                    "2026-01-01T00:00:00Z",
                )))),
            },
        ))
        .await;
    assert_refused(before, Code::NotFound, "UNKNOWN_ACCOUNT");

    // Following the log: a record appended after the stream opened arrives on it.
    let mut live = s
        .audit()
        .stream_log(with(
            AUDITOR,
            pb::StreamLogRequest {
                after: records[9].position,
                max_records: 1,
                follow: true,
                after_record: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    s.grant("c-live", "v1", "bank-a", "2026-12-20T00:00:00Z")
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("the appended record arrives")
        .expect("one record")
        .unwrap();
    assert_eq!(
        (next.r#type.as_str(), next.prev_hash.as_str()),
        ("ConsentGranted.v1", records[9].hash.as_str())
    );
    assert!(live.next().await.is_none(), "max_records ends the stream");
    s.stop().await;
}

/// Every record of `log`, in log order.
async fn stored_records(log: &dyn EventLog) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        all.extend(page);
    }
    all
}

/// A city written with binary payloads, as an auditor reads it over the API: each
/// record's `data` is JSON that decodes to the stored event, `stored_data` is the log's
/// bytes and `hash` is over them, VerifyLog finds every chain whole, and ReplayAccount
/// folds a binary stream to what the read models answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_read_a_binary_log_as_json_beside_its_stored_bytes() {
    let s = Guarded::start(access(), NOW).await;
    let config = DemoConfig {
        payload_encoding: PayloadEncoding::Binary,
        volunteers: 300,
        progress: false,
        ..DemoConfig::default()
    };
    let report = demo::seed(Arc::new(s.log.clone()) as Arc<dyn EventLog>, &config)
        .await
        .unwrap();
    assert_eq!(report.rejected(), 0, "{}", report.render());
    // What the city wrote; anything the server writes later (it writes JSON) is
    // outside the ranges asked for below.
    let stored = stored_records(&s.log).await;
    let head = stored.last().expect("the city is not empty").position;

    let mut records = Vec::new();
    let mut stream = s
        .audit()
        .stream_log(with(
            AUDITOR,
            pb::StreamLogRequest {
                max_records: stored.len() as u64,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    while let Some(r) = stream.next().await {
        records.push(r.unwrap());
    }
    assert_eq!(records.len(), stored.len());
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for (r, e) in records.iter().zip(&stored) {
        let at = format!("{} v{}", r.stream, r.version);
        assert_eq!(
            (r.stream.as_str(), r.version, r.r#type.as_str()),
            (e.stream.as_str(), e.version, e.event_type.as_str())
        );
        assert_eq!(r.payload_encoding, "binary", "{at}");
        assert_eq!(
            r.stored_data, e.data,
            "{at}: stored_data is the log's bytes"
        );
        assert_eq!(
            LedgerEvent::decode(&r.r#type, r.data.as_bytes()).unwrap(),
            LedgerEvent::decode(&r.r#type, &r.stored_data).unwrap(),
            "{at}: data is the stored event"
        );
        assert_eq!(r.stored_metadata, e.metadata, "{at}: the metadata's bytes");
        assert_eq!(
            EventMetadata::decode(r.metadata.as_bytes()).unwrap(),
            EventMetadata::decode(&r.stored_metadata).unwrap(),
            "{at}: metadata is the stored metadata, rendered"
        );
        // One rule for the verifier: hash over stored_data and stored_metadata.
        let hash = event_hash(
            &StreamName::new(r.stream.clone()).unwrap(),
            r.version,
            &EventId(r.id.parse().unwrap()),
            &r.r#type,
            &r.stored_data,
            &r.stored_metadata,
        );
        assert_eq!(r.hash, hex32(&hash), "{at}");
        let expected = last
            .get(&r.stream)
            .cloned()
            .unwrap_or_else(|| "0".repeat(64));
        assert_eq!(r.prev_hash, expected, "{at}");
        last.insert(r.stream.clone(), r.hash.clone());
    }

    let up_to = pb::LogPosition {
        commit: head.commit(),
        prepare: head.prepare(),
    };
    let verified = s
        .audit()
        .verify_log(with(
            AUDITOR,
            pb::VerifyLogRequest {
                after: None,
                up_to: Some(up_to),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.records_verified, stored.len() as u64);
    assert_eq!(verified.head_hash, records.last().unwrap().hash);

    // Replay folds the binary stream to what the read models answer.
    let volunteer = report.sample.volunteer;
    let stream_name = format!("account-{volunteer}");
    let replay = s
        .audit()
        .replay_account(with(
            AUDITOR,
            pb::ReplayAccountRequest {
                account_id: volunteer.clone(),
                point: Some(pb::replay_account_request::Point::AtPosition(up_to)),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let own: Vec<&pb::LogRecord> = records.iter().filter(|r| r.stream == stream_name).collect();
    assert_eq!(replay.events_applied, own.len() as u64);
    assert_eq!(replay.last_hash, own.last().unwrap().hash);
    let view = s
        .queries()
        .get_account(with(
            AUDITOR,
            pb::GetAccountRequest {
                min_position: Some(up_to),
                account_id: volunteer.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            replay.spendable_hours.as_str(),
            replay.lifetime_credit_hours.as_str()
        ),
        (
            view.spendable_hours.as_str(),
            view.lifetime_credit_hours.as_str()
        ),
        "{volunteer}"
    );
    s.stop().await;
}

/// A binary payload that does not decode cannot be rendered as JSON: the audit API
/// refuses it as a damaged log, naming the record and why, rather than serve a record
/// without its `data`.
#[tokio::test]
async fn a_binary_payload_that_does_not_decode_is_data_loss_in_the_audit_api() {
    let s = Guarded::start(access(), NOW).await;
    s.log
        .append(
            &StreamName::new("account-v-1").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                id: EventId::from_bytes([9; 16]),
                event_type: "AccountClosed.v1".into(),
                data: vec![BINARY_PAYLOAD_TAG, 0xff, 0xfe, 0x00],
                metadata: encode_metadata(None, &GENESIS_HASH, None),
            }],
        )
        .await
        .unwrap();
    let mut stream = whole_log(&s).await;
    let refused = stream
        .next()
        .await
        .expect("an item")
        .expect_err("the record is refused");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::DataLoss, "LOG_CORRUPT"),
        "{refused:?}"
    );
    assert!(
        refused.message().starts_with(
            "the binary payload of account-v-1 version 0 does not decode: event of type AccountClosed.v1 has a binary payload that does not decode: "
        ),
        "{}",
        refused.message()
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends at the error"
    );
    let replay = s
        .audit()
        .replay_account(with(
            AUDITOR,
            pb::ReplayAccountRequest {
                account_id: "v-1".into(),
                point: None,
            },
        ))
        .await;
    assert_refused(replay, Code::DataLoss, "LOG_CORRUPT");
    // The record links to its stream's genesis, but no reader can fold it: VerifyLog
    // says so, an answer and not an error, naming the record.
    let verified = verify_whole_log(&s).await;
    assert!(!verified.ok, "{verified:?}");
    assert_eq!(verified.records_verified, 0);
    assert_eq!(verified.failed_stream, "account-v-1");
    assert_eq!(verified.failed_position.map(|p| p.commit), Some(0));
    assert!(
        verified
            .problem
            .starts_with("linked, but its payload does not decode: "),
        "{}",
        verified.problem
    );
    stopped_on_undecodable(s.stop_result().await);
}

/// partners.md, Auditor: VerifyLog checks that each record is readable, not only
/// linked. A JSON payload that names a field wrongly, appended after a good history
/// with a correct link, ends the verification there; the records before it verified.
#[tokio::test]
async fn a_linked_json_record_that_does_not_decode_fails_verification_at_it() {
    let s = Server::start().await;
    let before = s
        .log
        .read_all(ReadFrom::Start, ledger_core::log::limits::READ_EVENTS_MAX)
        .await
        .unwrap()
        .len() as u64;
    append_linked(
        &s,
        "account-v1",
        "AccountClosed.v1",
        7,
        r#"{"account":"v1","closed_at":"yesterday"}"#,
    )
    .await;
    let verified = verify_whole_log(&s).await;
    assert!(!verified.ok, "{verified:?}");
    assert_eq!(verified.records_verified, before);
    assert_eq!(verified.failed_stream, "account-v1");
    assert!(
        verified
            .problem
            .starts_with("linked, but its payload does not decode: event of type AccountClosed.v1")
            && verified.problem.contains("column 39"),
        "{}",
        verified.problem
    );
    // The projection worker stopped at that record, so the queries' health says
    // NOT_SERVING (it read SERVING: operator's probe); the commands' stays SERVING.
    let status = |service: &'static str| {
        let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status("timebank.v1.LedgerQueries").await != ServingStatus::NotServing as i32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queries still SERVING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status("timebank.v1.LedgerCommands").await,
        ServingStatus::Serving as i32
    );
    stopped_on_undecodable(s.0.stop_result().await);
}

/// partners.md, Auditor: a resume names the record it resumes after. A log restored
/// from a backup (or one that lost an acknowledged tail) hands the same positions to
/// other records, which a resume by position alone skips unseen (an auditor's probe
/// found this); naming the record makes the server check it first.
#[tokio::test]
async fn a_resume_that_names_its_record_is_checked_against_the_log() {
    let s = Server::start().await;
    let records = whole_log_records(&s).await;
    let resume = |after: Option<pb::LogPosition>, named: Option<pb::RecordRef>| {
        let mut a = s.audit();
        async move {
            let mut out = Vec::new();
            let mut st = a
                .stream_log(with(
                    AUDITOR,
                    pb::StreamLogRequest {
                        after,
                        max_records: 0,
                        follow: false,
                        after_record: named,
                    },
                ))
                .await?
                .into_inner();
            while let Some(r) = st.next().await {
                out.push(r?);
            }
            Ok::<_, Status>(out)
        }
    };
    let name = |r: &pb::LogRecord| pb::RecordRef {
        stream: r.stream.clone(),
        version: r.version,
        hash: r.hash.clone(),
    };
    let k = records.len() / 2;
    // The record the client holds at `after`: the rest of the log, as without it.
    let rest = resume(records[k].position, Some(name(&records[k])))
        .await
        .unwrap();
    assert_eq!(rest, records[k + 1..].to_vec());
    // Hex digits in either case name the same hash.
    let upper = pb::RecordRef {
        hash: records[k].hash.to_uppercase(),
        ..name(&records[k])
    };
    assert_eq!(
        resume(records[k].position, Some(upper)).await.unwrap(),
        records[k + 1..].to_vec()
    );
    // A hash that is no hash is bad input, not a changed log.
    let e = resume(
        records[k].position,
        Some(pb::RecordRef {
            hash: "xyz".into(),
            ..name(&records[k])
        }),
    )
    .await
    .expect_err("refused");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "FIELD_MALFORMED")
    );
    // Another record's name, or the right one with another hash: refused.
    for named in [
        name(&records[k + 1]),
        pb::RecordRef {
            hash: "0".repeat(64),
            ..name(&records[k])
        },
        pb::RecordRef {
            version: 99,
            ..name(&records[k])
        },
    ] {
        let e = resume(records[k].position, Some(named.clone()))
            .await
            .expect_err("refused");
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::FailedPrecondition, "RESUME_POINT_CHANGED"),
            "{named:?}: {e:?}"
        );
        assert!(
            e.message().contains("the log no longer holds"),
            "{}",
            e.message()
        );
    }
    // A record named without `after`: bad input.
    let e = resume(None, Some(name(&records[k])))
        .await
        .expect_err("refused");
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::InvalidArgument, "FIELD_MALFORMED")
    );
    s.stop().await;
}

/// One `ListInquiries` call reads at most `INQUIRY_SCAN_EVENTS_MAX` events of the
/// volunteer's stream: with more events than that between two inquiries, the first
/// call answers the first inquiry and a token where it stopped (a short page that is
/// not the end), and the next call answers the second one and ends the list.
#[tokio::test]
async fn listing_inquiries_reads_a_bounded_part_of_a_long_stream_per_call() {
    use ledger_server::partners::consents::INQUIRY_SCAN_EVENTS_MAX;
    let s = Server::start().await;
    s.grant("c-1", "v1", "bank-a", "2026-12-20T00:00:00Z")
        .await
        .unwrap();
    let first = s
        .report(BANK_A, "q-1", "v1", "volunteer-loan")
        .await
        .unwrap();
    let log = s.log.clone();
    s.stop().await;
    // Consents to another bank, written straight into v1's stream while the server is
    // down (as many as a platform could record over years), each linked to the last.
    let name = StreamName::new("account-v1").unwrap();
    let mut last = log
        .read_stream(&name, 0, 1000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    for i in 0..INQUIRY_SCAN_EVENTS_MAX + 10 {
        let id = uuid::Uuid::from_u128(0xC0 << 64 | i as u128);
        let data = format!(
            r#"{{"consent":"{id}","volunteer":"v1","bank":"bank-b","purpose":"volunteer-loan","expires_at":"2026-12-20T00:00:00Z","recorded_at":"2026-11-20T11:00:00Z"}}"#
        );
        last = append_after(&log, &last, "ConsentGranted.v1", EventId(id), &data).await;
    }
    let s = Server(
        Guarded::start_on(log, ledger_server::ServeOptions::with_access(access()), NOW).await,
    );
    let second = s
        .report(BANK_A, "q-2", "v1", "volunteer-loan")
        .await
        .unwrap();
    let page = |token: String| {
        let mut consents = s.consents();
        let request = with(
            PLATFORM,
            pb::ListInquiriesRequest {
                volunteer_id: "v1".into(),
                page_size: 10,
                page_token: token,
            },
        );
        async move { consents.list_inquiries(request).await.unwrap().into_inner() }
    };
    let one = page(String::new()).await;
    let digests = |p: &pb::ListInquiriesResponse| -> Vec<String> {
        p.inquiries
            .iter()
            .map(|i| i.report_digest.clone())
            .collect()
    };
    assert_eq!(digests(&one), [first.report_digest]);
    assert!(
        !one.next_page_token.is_empty(),
        "the scan stopped, the list did not end"
    );
    let two = page(one.next_page_token.clone()).await;
    assert_eq!(digests(&two), [second.report_digest]);
    assert_eq!(two.next_page_token, "", "the end of the list");
    s.stop().await;
}

/// The stop's result after a record the projection worker cannot decode was put in
/// the log: the worker stopped there (queries answer NOT_CAUGHT_UP past it), so there
/// is no final snapshot, and the server's stop reports it rather than a clean exit.
fn stopped_on_undecodable(stopped: Result<(), ledger_server::ServeError>) {
    match stopped {
        Err(ledger_server::ServeError::FinalSnapshot(e)) => {
            assert!(e.to_string().contains("does not decode"), "{e}")
        }
        other => panic!("expected the stopped worker to be reported: {other:?}"),
    }
}

/// Append `data` as a linked `event_type` record at the end of `stream` in `s`'s log,
/// as a writer other than the ledger (or an edit of the disk) could.
async fn append_linked(s: &Guarded, stream: &str, event_type: &str, id: u8, data: &str) {
    let name = StreamName::new(stream).unwrap();
    let history = s.log.read_stream(&name, 0, 1000).await.unwrap();
    let last = history.last().expect("the stream has a history");
    append_after(
        &s.log,
        last,
        event_type,
        EventId::from_bytes([id; 16]),
        data,
    )
    .await;
}

/// Append `data` as `event_type` with id `id` right after `last` in its stream,
/// linked to it; the record as the log now holds it.
async fn append_after(
    log: &ledger_core::log::memory::MemoryLog,
    last: &RecordedEvent,
    event_type: &str,
    id: EventId,
    data: &str,
) -> RecordedEvent {
    log.append(
        &last.stream,
        ExpectedVersion::Exact(last.version),
        vec![NewEvent {
            id,
            event_type: event_type.into(),
            data: data.as_bytes().to_vec(),
            metadata: encode_metadata(None, &ledger_core::domain::chain::recorded_hash(last), None),
        }],
    )
    .await
    .unwrap();
    log.read_stream(&last.stream, last.version + 1, 1)
        .await
        .unwrap()
        .pop()
        .expect("the event just appended")
}

/// A deposit of `hours` to v1 whose two legs move `debit` and `credit`.
fn deposit_json(hours: &str, debit: &str, credit: &str) -> String {
    format!(
        r#"{{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a77","volunteer":"v1","organisation":"org-1","activity":"act-1","service_date":"2026-11-19","started_at":"2026-11-19T09:00:00Z","ended_at":"2026-11-19T18:00:00Z","category":"elderly-care","hours":"{hours}","kind":"credit","verifier":"ver-1","postings":[{{"account":"system:hour-issuance","unit":"hours","amount":"-{debit}"}},{{"account":"v1","unit":"hours","amount":"{credit}"}}],"recorded_at":"2026-11-20T11:00:00Z"}}"#
    )
}

/// partners.md, Auditor: a record that links and decodes but whose postings do not
/// balance (8 hours from nothing, found by an auditor's probe of a tampered log) or
/// are not the movement its own fields name fails verification at it, saying which.
#[tokio::test]
async fn a_linked_readable_record_whose_postings_contradict_it_fails_verification() {
    for (json, problem) in [
        (
            deposit_json("1.00", "1.00", "9.00"),
            "its postings do not sum to zero per unit",
        ),
        (
            deposit_json("1.00", "9.00", "9.00"),
            "are not the movement its own fields name",
        ),
    ] {
        let s = Server::start().await;
        let before = verify_whole_log(&s).await;
        assert!(before.ok, "{before:?}");
        append_linked(&s, "account-v1", "HoursDeposited.v1", 7, &json).await;
        let verified = verify_whole_log(&s).await;
        assert!(!verified.ok, "{verified:?}");
        assert_eq!(verified.records_verified, before.records_verified);
        assert_eq!(verified.failed_stream, "account-v1");
        assert!(
            verified.problem.starts_with("linked and readable, but ")
                && verified.problem.contains(problem),
            "{}",
            verified.problem
        );
        s.stop().await;
    }
}

/// partners.md, Auditor: nothing links to the last event of a stream, so an edit of
/// it (a deposit's hours and both legs, consistently: an auditor's probe did this on
/// disk) keeps every link and the head; `range_digest` commits to every record and
/// their order, so the same range verified on the two logs differs there. The digest
/// is the documented chain over StreamLog's hashes, recomputed here with BLAKE3.
#[tokio::test]
async fn the_range_digest_tells_logs_apart_that_differ_in_a_streams_last_event() {
    let mut answers = Vec::new();
    for hours in ["1.00", "9.00"] {
        let s = Server::start().await;
        append_linked(
            &s,
            "account-v1",
            "HoursDeposited.v1",
            7,
            &deposit_json(hours, hours, hours),
        )
        .await;
        // The edited deposit is not the log's last record.
        append_linked(
            &s,
            "account-v2",
            "AccountClosed.v1",
            8,
            r#"{"account":"v2","reason":"moved away","closed_at":"2026-11-20T11:30:00Z"}"#,
        )
        .await;
        let verified = verify_whole_log(&s).await;
        assert!(verified.ok, "{verified:?}");
        let mut digest = [0u8; 32];
        let mut stream = whole_log(&s).await;
        while let Some(r) = stream.next().await {
            let mut both = digest.to_vec();
            both.extend(hex::decode(r.unwrap().hash).unwrap());
            digest = *blake3::hash(&both).as_bytes();
        }
        assert_eq!(verified.range_digest, hex::encode(digest));
        answers.push(verified);
        s.stop().await;
    }
    let (one, nine) = (&answers[0], &answers[1]);
    assert_eq!(
        (one.records_verified, &one.head_position, &one.head_hash),
        (nine.records_verified, &nine.head_position, &nine.head_hash),
        "links and head cannot tell the two logs apart"
    );
    assert_ne!(one.range_digest, nine.range_digest);
}

/// The roles of the matrix, by key.
const ROLES: [(&str, &str); 7] = [
    ("admin", ADMIN),
    ("platform", PLATFORM),
    ("other-platform", OTHER_PLATFORM),
    ("bank", BANK_A),
    ("merchant", MERCHANT),
    ("other-merchant", OTHER_MERCHANT),
    ("auditor", AUDITOR),
];

/// Every RPC and the roles allowed to make it, on accounts of the platform's region
/// (v1, org-1), merchant m-1 and bank-a.
const MATRIX: &[(&str, &[&str])] = &[
    ("RegisterAccount", &["admin", "platform"]),
    ("CloseAccount", &["admin", "platform"]),
    ("DepositHours", &["admin", "platform"]),
    ("SpendHours", &["admin", "platform"]),
    ("ExchangeHours", &["admin", "platform"]),
    ("TransferHours", &["admin", "platform"]),
    ("DonateHours", &["admin", "platform"]),
    ("ReverseTransaction", &["admin", "platform"]),
    ("RecordNoShow", &["admin", "platform"]),
    ("RateService", &["admin", "platform"]),
    ("SubmitBatch", &["admin", "platform"]),
    ("GetAccount", &["admin", "platform", "auditor"]),
    ("ListTransactions", &["admin", "platform", "auditor"]),
    ("GetStarLevel", &["admin", "platform", "auditor"]),
    ("GetCreditReport", &["admin", "platform", "auditor"]),
    ("TopVolunteers", &["admin", "platform", "auditor"]),
    (
        "TopProjects",
        &["admin", "platform", "other-platform", "auditor"],
    ),
    ("TopRegions", &["admin", "platform", "auditor"]),
    ("GetServiceIndex", &["admin", "platform", "auditor"]),
    ("ListBelowAnnualMinimum", &["admin", "platform", "auditor"]),
    ("GrantConsent", &["admin", "platform"]),
    ("WithdrawConsent", &["admin", "platform"]),
    ("ListInquiries", &["admin", "platform", "auditor"]),
    ("BankGetCreditReport", &["bank"]),
    ("GetServedReport", &["bank"]),
    ("IssueRedemptionToken", &["admin", "platform"]),
    (
        "GetPresenterStarLevel",
        &["admin", "merchant", "other-merchant"],
    ),
    ("AuthorizeRedemption", &["admin", "merchant"]),
    ("CaptureRedemption", &["admin", "merchant"]),
    ("VoidRedemption", &["admin", "merchant"]),
    ("ListRedemptions", &["admin", "merchant", "auditor"]),
    ("GetSettlementStatement", &["admin", "merchant", "auditor"]),
    ("StreamLog", &["admin", "auditor"]),
    ("VerifyLog", &["admin", "auditor"]),
    ("ReplayAccount", &["admin", "auditor"]),
];

/// Make `rpc` as the holder of `key` (None: no credential). Only whether the call was
/// let through matters here, so each request is valid in shape.
async fn call(s: &Server, rpc: &str, key: Option<&str>, token: &str) -> Result<(), Status> {
    fn req<T>(key: Option<&str>, m: T) -> tonic::Request<T> {
        match key {
            Some(k) => with(k, m),
            None => tonic::Request::new(m),
        }
    }
    fn ok<T>(r: Result<tonic::Response<T>, Status>) -> Result<(), Status> {
        r.map(|_| ())
    }
    let deposit = pb::DepositHoursRequest {
        request_id: "mx-dep".into(),
        volunteer_id: "v1".into(),
        organisation_id: "org-1".into(),
        activity_id: "act-9".into(),
        service_date: "2026-11-18".into(),
        started_at: Some(ts(at("2026-11-18T01:00:00Z"))),
        ended_at: Some(ts(at("2026-11-18T02:00:00Z"))),
        category: "elderly-care".into(),
        hours: "1".into(),
        kind: pb::HourKind::Credit as i32,
        verifier_id: "staff-1".into(),
    };
    let tx = uuid::Uuid::nil().to_string();
    let (mut c, mut q) = (s.commands(), s.queries());
    let (mut con, mut b, mut r, mut a) = (s.consents(), s.banks(), s.redemptions(), s.audit());
    let region = "hangzhou/xihu".to_owned();
    match rpc {
        "RegisterAccount" => ok(c
            .register_account(req(
                key,
                pb::RegisterAccountRequest {
                    request_id: "mx-reg".into(),
                    account_id: "v-new".into(),
                    kind: pb::AccountKind::Volunteer as i32,
                    region_code: "hangzhou/xihu/lingyin".into(),
                    join_date: "2026-01-01".into(),
                },
            ))
            .await),
        "CloseAccount" => ok(c
            .close_account(req(
                key,
                pb::CloseAccountRequest {
                    request_id: "mx-close".into(),
                    account_id: "v2".into(),
                    reason: "moved away".into(),
                },
            ))
            .await),
        "DepositHours" => ok(c.deposit_hours(req(key, deposit)).await),
        "SpendHours" => ok(c
            .spend_hours(req(
                key,
                pb::SpendHoursRequest {
                    request_id: "mx-spend".into(),
                    volunteer_id: "v1".into(),
                    purpose: pb::SpendPurpose::ReceivedService as i32,
                    counterparty_id: "org-1".into(),
                    hours: "0.5".into(),
                    memo: String::new(),
                },
            ))
            .await),
        "ExchangeHours" => ok(c
            .exchange_hours(req(
                key,
                pb::ExchangeHoursRequest {
                    request_id: "mx-ex".into(),
                    volunteer_id: "v1".into(),
                    hours: "0.5".into(),
                    expected_rate_version: 0,
                },
            ))
            .await),
        "TransferHours" => ok(c
            .transfer_hours(req(
                key,
                pb::TransferHoursRequest {
                    request_id: "mx-tr".into(),
                    from_volunteer_id: "v1".into(),
                    to_volunteer_id: "v2".into(),
                    relation: pb::FamilyRelation::Spouse as i32,
                    hours: "0.5".into(),
                },
            ))
            .await),
        "DonateHours" => ok(c
            .donate_hours(req(
                key,
                pb::DonateHoursRequest {
                    request_id: "mx-don".into(),
                    volunteer_id: "v1".into(),
                    project_id: "p-1".into(),
                    hours: "0.5".into(),
                },
            ))
            .await),
        "ReverseTransaction" => ok(c
            .reverse_transaction(req(
                key,
                pb::ReverseTransactionRequest {
                    request_id: "mx-rev".into(),
                    account_id: "v1".into(),
                    transaction_id: tx,
                    reason: "error".into(),
                },
            ))
            .await),
        "RecordNoShow" => ok(c
            .record_no_show(req(
                key,
                pb::RecordNoShowRequest {
                    request_id: "mx-ns".into(),
                    volunteer_id: "v1".into(),
                    organisation_id: "org-1".into(),
                    activity_id: "act-3".into(),
                    date: "2026-11-18".into(),
                },
            ))
            .await),
        "RateService" => ok(c
            .rate_service(req(
                key,
                pb::RateServiceRequest {
                    request_id: "mx-rate".into(),
                    volunteer_id: "v1".into(),
                    deposit_transaction_id: tx,
                    rating: 5,
                    rater_id: "resident-1".into(),
                },
            ))
            .await),
        "SubmitBatch" => {
            let out = c
                .submit_batch(req(
                    key,
                    pb::SubmitBatchRequest {
                        commands: vec![pb::Command {
                            command: Some(pb::command::Command::DepositHours(deposit)),
                        }],
                    },
                ))
                .await?
                .into_inner();
            // A line outside the caller's scope is refused in its slot.
            match &out.results[0].result {
                Some(pb::batch_result::Result::Error(e)) if e.reason == "NOT_IN_SCOPE" => {
                    Err(Status::with_error_details(
                        Code::PermissionDenied,
                        e.message.clone(),
                        tonic_types::ErrorDetails::with_error_info(
                            e.reason.clone(),
                            "timebank.v1",
                            std::collections::HashMap::<String, String>::new(),
                        ),
                    ))
                }
                _ => Ok(()),
            }
        }
        "GetAccount" => ok(q
            .get_account(req(
                key,
                pb::GetAccountRequest {
                    min_position: None,
                    account_id: "v1".into(),
                },
            ))
            .await),
        "ListTransactions" => ok(q
            .list_transactions(req(
                key,
                pb::ListTransactionsRequest {
                    min_position: None,
                    account_id: "v1".into(),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await),
        "GetStarLevel" => ok(q
            .get_star_level(req(
                key,
                pb::GetStarLevelRequest {
                    min_position: None,
                    volunteer_id: "v1".into(),
                    policy_version: String::new(),
                },
            ))
            .await),
        "GetCreditReport" => ok(q
            .get_credit_report(req(
                key,
                pb::GetCreditReportRequest {
                    min_position: None,
                    volunteer_id: "v1".into(),
                    as_of: None,
                    model_version: String::new(),
                },
            ))
            .await),
        "TopVolunteers" => ok(q
            .top_volunteers(req(
                key,
                pb::TopVolunteersRequest {
                    min_position: None,
                    region_code: region,
                    period: "all".into(),
                    limit: 0,
                },
            ))
            .await),
        "TopProjects" => ok(q
            .top_projects(req(
                key,
                pb::TopProjectsRequest {
                    min_position: None,
                    limit: 0,
                },
            ))
            .await),
        "TopRegions" => ok(q
            .top_regions(req(
                key,
                pb::TopRegionsRequest {
                    min_position: None,
                    parent_region_code: region,
                    period: "all".into(),
                    limit: 0,
                },
            ))
            .await),
        "GetServiceIndex" => ok(q
            .get_service_index(req(
                key,
                pb::GetServiceIndexRequest {
                    min_position: None,
                    region_code: region,
                    period: "all".into(),
                },
            ))
            .await),
        "ListBelowAnnualMinimum" => ok(q
            .list_below_annual_minimum(req(
                key,
                pb::ListBelowAnnualMinimumRequest {
                    min_position: None,
                    scope: Some(pb::list_below_annual_minimum_request::Scope::RegionCode(
                        region,
                    )),
                    year: 2026,
                    minimum_hours: String::new(),
                    limit: 0,
                },
            ))
            .await),
        "GrantConsent" => ok(con
            .grant_consent(req(
                key,
                pb::GrantConsentRequest {
                    request_id: "mx-grant".into(),
                    volunteer_id: "v1".into(),
                    bank_id: "bank-a".into(),
                    purpose: "volunteer-loan".into(),
                    expires_at: Some(ts(at("2026-12-20T00:00:00Z"))),
                },
            ))
            .await),
        "WithdrawConsent" => ok(con
            .withdraw_consent(req(
                key,
                pb::WithdrawConsentRequest {
                    request_id: "mx-withdraw".into(),
                    volunteer_id: "v1".into(),
                    bank_id: "bank-a".into(),
                },
            ))
            .await),
        "ListInquiries" => ok(con
            .list_inquiries(req(
                key,
                pb::ListInquiriesRequest {
                    volunteer_id: "v1".into(),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await),
        "BankGetCreditReport" => ok(b
            .get_credit_report(req(
                key,
                pb::BankCreditReportRequest {
                    request_id: "mx-q".into(),
                    volunteer_id: "v1".into(),
                    purpose: "volunteer-loan".into(),
                },
            ))
            .await),
        "GetServedReport" => ok(b
            .get_served_report(req(
                key,
                pb::GetServedReportRequest {
                    volunteer_id: "v1".into(),
                    key: Some(pb::get_served_report_request::Key::InquiryId(tx)),
                },
            ))
            .await),
        "IssueRedemptionToken" => ok(r
            .issue_redemption_token(req(
                key,
                pb::IssueRedemptionTokenRequest {
                    volunteer_id: "v1".into(),
                    points_max: "1".into(),
                    ttl_seconds: 0,
                },
            ))
            .await),
        "GetPresenterStarLevel" => ok(r
            .get_presenter_star_level(req(
                key,
                pb::GetPresenterStarLevelRequest {
                    token: token.into(),
                },
            ))
            .await),
        "AuthorizeRedemption" => ok(r
            .authorize_redemption(req(
                key,
                pb::AuthorizeRedemptionRequest {
                    request_id: "mx-auth".into(),
                    merchant_id: "m-1".into(),
                    token: token.into(),
                    points: "1".into(),
                },
            ))
            .await),
        "CaptureRedemption" => ok(r
            .capture_redemption(req(
                key,
                pb::CaptureRedemptionRequest {
                    request_id: "mx-cap".into(),
                    merchant_id: "m-1".into(),
                    volunteer_id: "v1".into(),
                    hold_id: tx,
                    points: "1".into(),
                },
            ))
            .await),
        "VoidRedemption" => ok(r
            .void_redemption(req(
                key,
                pb::VoidRedemptionRequest {
                    request_id: "mx-void".into(),
                    merchant_id: "m-1".into(),
                    volunteer_id: "v1".into(),
                    hold_id: tx,
                },
            ))
            .await),
        "ListRedemptions" => ok(r
            .list_redemptions(req(
                key,
                pb::ListRedemptionsRequest {
                    min_position: None,
                    merchant_id: "m-1".into(),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await),
        "GetSettlementStatement" => ok(r
            .get_settlement_statement(req(
                key,
                pb::GetSettlementStatementRequest {
                    min_position: None,
                    merchant_id: "m-1".into(),
                    from: Some(ts(at("2026-11-01T00:00:00Z"))),
                    to: Some(ts(at("2026-12-01T00:00:00Z"))),
                },
            ))
            .await),
        "StreamLog" => ok(a
            .stream_log(req(
                key,
                pb::StreamLogRequest {
                    after: None,
                    max_records: 1,
                    follow: false,
                    after_record: None,
                },
            ))
            .await),
        "VerifyLog" => ok(a
            .verify_log(req(key, pb::VerifyLogRequest::default()))
            .await),
        "ReplayAccount" => ok(a
            .replay_account(req(
                key,
                pb::ReplayAccountRequest {
                    account_id: "v1".into(),
                    point: None,
                },
            ))
            .await),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test]
async fn authorisation_matrix_every_role_against_every_rpc() {
    let s = Server::start().await;
    let token = s.token("v1", "5").await.token;
    let mut wrong = Vec::new();
    for (rpc, allowed) in MATRIX {
        for key in [None, Some("tbk_not_a_key")] {
            let r = call(&s, rpc, key, &token).await;
            if !matches!(&r, Err(st) if st.code() == Code::Unauthenticated) {
                wrong.push(format!("{rpc} with {key:?}: {r:?}, not UNAUTHENTICATED"));
            }
        }
        for (role, key) in ROLES {
            let r = call(&s, rpc, Some(key), &token).await;
            let denied = matches!(&r, Err(st) if st.code() == Code::PermissionDenied && reason(st) == "NOT_IN_SCOPE");
            let unauthenticated = matches!(&r, Err(st) if st.code() == Code::Unauthenticated);
            let expected_allowed = allowed.contains(&role);
            if unauthenticated || denied == expected_allowed {
                wrong.push(format!(
                    "{rpc} as {role}: expected {}, got {r:?}",
                    if expected_allowed {
                        "allowed"
                    } else {
                        "NOT_IN_SCOPE"
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    s.stop().await;
}

/// A deposit for a volunteer outside the platform's regions, through its own
/// organisation, at 02:00–03:00 on `day` of November 2026.
fn far_deposit(
    req: &str,
    volunteer: &str,
    organisation: &str,
    day: u32,
) -> pb::DepositHoursRequest {
    pb::DepositHoursRequest {
        request_id: req.into(),
        volunteer_id: volunteer.into(),
        organisation_id: organisation.into(),
        activity_id: "act-far".into(),
        service_date: format!("2026-11-{day:02}"),
        started_at: Some(ts(at(&format!("2026-11-{day:02}T02:00:00Z")))),
        ended_at: Some(ts(at(&format!("2026-11-{day:02}T03:00:00Z")))),
        category: "elderly-care".into(),
        hours: "1".into(),
        kind: pb::HourKind::Credit as i32,
        verifier_id: "staff-1".into(),
    }
}

fn reversal(req: &str, account: &str, transaction: &str) -> pb::ReverseTransactionRequest {
    pb::ReverseTransactionRequest {
        request_id: req.into(),
        account_id: account.into(),
        transaction_id: transaction.into(),
        reason: "entered by mistake".into(),
    }
}

/// The platform's donation of one of v1's hours to project p-1.
async fn donate(
    c: &mut pb::ledger_commands_client::LedgerCommandsClient<tonic::transport::Channel>,
    req: &str,
) -> pb::CommandResult {
    c.donate_hours(with(
        PLATFORM,
        pb::DonateHoursRequest {
            request_id: req.into(),
            volunteer_id: "v1".into(),
            project_id: "p-1".into(),
            hours: "1".into(),
        },
    ))
    .await
    .unwrap()
    .into_inner()
}

/// A platform's probe: a platform could deposit for a volunteer of another city
/// through its own organisation, transfer to a family member there and donate to a
/// project, but not reverse any of them (nor rate that deposit): every correction was
/// NOT_IN_SCOPE. It may now correct what it could have made, and nothing else.
#[tokio::test]
async fn a_platform_corrects_the_transactions_it_could_make_outside_its_regions() {
    let s = Server::start().await;
    let mut c = s.commands();
    // Through its own organisation, for a volunteer of another city.
    let dep = c
        .deposit_hours(with(PLATFORM, far_deposit("far-1", "v-far", "org-1", 17)))
        .await
        .unwrap()
        .into_inner();
    c.rate_service(with(
        PLATFORM,
        pb::RateServiceRequest {
            request_id: "far-rate".into(),
            volunteer_id: "v-far".into(),
            deposit_transaction_id: dep.transaction_id.clone(),
            rating: 4,
            rater_id: "resident-1".into(),
        },
    ))
    .await
    .expect("it rates a deposit its organisation made");
    c.reverse_transaction(with(
        PLATFORM,
        reversal("far-rev", "v-far", &dep.transaction_id),
    ))
    .await
    .expect("it reverses a deposit its organisation made");
    // A deposit of another city's organisation stays out of its reach.
    s.register("org-n", pb::AccountKind::Organisation, "ningbo/haishu")
        .await;
    let theirs = c
        .deposit_hours(with(ADMIN, far_deposit("far-2", "v-far", "org-n", 18)))
        .await
        .unwrap()
        .into_inner();
    for refused in [
        c.reverse_transaction(with(
            PLATFORM,
            reversal("far-rev-2", "v-far", &theirs.transaction_id),
        ))
        .await
        .map(drop),
        c.rate_service(with(
            PLATFORM,
            pb::RateServiceRequest {
                request_id: "far-rate-2".into(),
                volunteer_id: "v-far".into(),
                deposit_transaction_id: theirs.transaction_id.clone(),
                rating: 1,
                rater_id: "resident-1".into(),
            },
        ))
        .await
        .map(drop),
        // Nor an unknown transaction on that account: the same answer.
        c.reverse_transaction(with(
            PLATFORM,
            reversal("far-rev-3", "v-far", "00000000-0000-8000-8000-000000000000"),
        ))
        .await
        .map(drop),
    ] {
        assert_refused(refused, Code::PermissionDenied, "NOT_IN_SCOPE");
    }
    // A transfer its volunteer sent to another city, and a donation to a project:
    // both reversed on the receiver's stream.
    let transfer = c
        .transfer_hours(with(
            PLATFORM,
            pb::TransferHoursRequest {
                request_id: "tr-far".into(),
                from_volunteer_id: "v1".into(),
                to_volunteer_id: "v-far".into(),
                relation: pb::FamilyRelation::Child as i32,
                hours: "1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    c.reverse_transaction(with(
        PLATFORM,
        reversal("tr-far-rev", "v-far", &transfer.transaction_id),
    ))
    .await
    .expect("it reverses its volunteer's transfer on the receiver's stream");
    s.register("p-1", pb::AccountKind::Project, "").await;
    let donation = donate(&mut c, "don-1").await;
    c.reverse_transaction(with(
        PLATFORM,
        reversal("don-1-rev", "p-1", &donation.transaction_id),
    ))
    .await
    .expect("it reverses its volunteer's donation on the project's stream");
    // The other city's platform cannot reverse the xihu volunteer's donation.
    let donation = donate(&mut c, "don-2").await;
    assert_refused(
        c.reverse_transaction(with(
            OTHER_PLATFORM,
            reversal("don-2-rev", "p-1", &donation.transaction_id),
        ))
        .await,
        Code::PermissionDenied,
        "NOT_IN_SCOPE",
    );
    s.stop().await;
}

/// A security probe: a platform deposited an hour for another city's volunteer
/// through its own organisation, then listed that organisation's volunteers below the
/// annual minimum and read the volunteer's yearly hours (all of them, other
/// platforms' included), which GetAccount refuses it. It now sees the volunteers of
/// its own regions only; an administrator sees them all.
#[tokio::test]
async fn a_platform_lists_its_organisations_volunteers_of_its_own_regions_only() {
    let s = Server::start().await;
    let dep = s
        .commands()
        .deposit_hours(with(PLATFORM, far_deposit("far-1", "v-far", "org-1", 17)))
        .await
        .unwrap()
        .into_inner();
    let below = |key: &'static str| {
        let mut q = s.queries();
        let position = dep.position;
        async move {
            q.list_below_annual_minimum(with(
                key,
                pb::ListBelowAnnualMinimumRequest {
                    min_position: position,
                    scope: Some(
                        pb::list_below_annual_minimum_request::Scope::OrganisationId(
                            "org-1".into(),
                        ),
                    ),
                    year: 2026,
                    minimum_hours: "100".into(),
                    limit: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .volunteers
            .into_iter()
            .map(|v| v.volunteer_id)
            .collect::<Vec<_>>()
        }
    };
    let seen = below(PLATFORM).await;
    assert!(seen.contains(&"v1".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"v-far".to_owned()), "{seen:?}");
    assert!(below(ADMIN).await.contains(&"v-far".to_owned()));
    s.stop().await;
}

/// A security probe: a platform depositing through its own organisation for another
/// city's volunteer was told, on an overlap, the transaction already recorded there
/// (another platform's), and by moving the interval could map that volunteer's
/// service. The refusal still names the rule, without the transaction; the
/// volunteer's own platform is told which.
#[tokio::test]
async fn an_overlap_outside_the_platforms_regions_does_not_name_the_other_transaction() {
    let s = Server::start().await;
    let mut c = s.commands();
    s.register("org-n", pb::AccountKind::Organisation, "ningbo/haishu")
        .await;
    let theirs = c
        .deposit_hours(with(
            OTHER_PLATFORM,
            far_deposit("n-1", "v-far", "org-n", 18),
        ))
        .await
        .unwrap()
        .into_inner();
    let refused = assert_refused(
        c.deposit_hours(with(PLATFORM, far_deposit("x-1", "v-far", "org-1", 18)))
            .await,
        Code::FailedPrecondition,
        "OVERLAPPING_SERVICE",
    );
    assert!(
        !refused.message().contains(&theirs.transaction_id),
        "{}",
        refused.message()
    );
    assert!(refused.message().contains("v-far"), "{}", refused.message());
    // The volunteer's own platform sees which transaction it is.
    let own = assert_refused(
        c.deposit_hours(with(
            OTHER_PLATFORM,
            far_deposit("n-2", "v-far", "org-n", 18),
        ))
        .await,
        Code::FailedPrecondition,
        "OVERLAPPING_SERVICE",
    );
    assert!(
        own.message().contains(&theirs.transaction_id),
        "{}",
        own.message()
    );
    // Nor the hours already recorded that day: a whole day's deposit beside the hour
    // recorded on the 18th is over the daily limit, and says only that.
    let mut whole_day = far_deposit("x-2", "v-far", "org-1", 18);
    whole_day.started_at = Some(ts(at("2026-11-18T04:00:00Z")));
    whole_day.ended_at = Some(ts(at("2026-11-19T04:00:00Z")));
    whole_day.hours = "24".into();
    let over = assert_refused(
        c.deposit_hours(with(PLATFORM, whole_day)).await,
        Code::FailedPrecondition,
        "HOURS_PER_DAY_EXCEEDED",
    );
    assert!(
        !over.message().contains("already has"),
        "{}",
        over.message()
    );
    assert!(
        over.message().contains("outside your regions"),
        "{}",
        over.message()
    );
    s.stop().await;
}

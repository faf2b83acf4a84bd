//! End-to-end, as a careless or hostile client: edge validation of amounts, instants and
//! dates; request-id reuse across commands and services; partner calls with bad
//! arguments. Each test states the rule of `docs/ledger-rules.md` or `docs/partners.md`
//! it holds the server to.

// Every helper here returns tonic's `Status`, the error of every RPC.
#![allow(clippy::result_large_err)]

use ledger_server::auth::Access;
use ledger_server::pb;
use timebank_tests::{at, caller_entry as entry, refused, registration, why, with, Guarded};
use tonic::{Code, Status};
use tonic_types::StatusExt;

const NOW: &str = "2026-11-20T12:00:00Z";

const ADMIN: &str = "tbk_admin";
const PLATFORM: &str = "tbk_platform";
const MERCHANT: &str = "tbk_merchant_1";
const BANK: &str = "tbk_bank_a";
const AUDITOR: &str = "tbk_auditor";

use timebank_tests::timestamp as ts;

fn access() -> Access {
    let text = [
        entry("admin", "admin", "", ADMIN),
        entry(
            "xihu-platform",
            "platform",
            "regions = [\"hangzhou/xihu\"]\norganisations = [\"org\"]",
            PLATFORM,
        ),
        entry("shop-1", "merchant", "merchant = \"m-1\"", MERCHANT),
        entry("bank-a", "bank", "bank = \"bank-a\"", BANK),
        entry("auditor", "auditor", "", AUDITOR),
    ]
    .concat();
    Access::from_toml(&text).unwrap()
}

/// [`Guarded`] with this file's accounts (`Server::start`).
struct Server(Guarded);

impl std::ops::Deref for Server {
    type Target = Guarded;
    fn deref(&self) -> &Guarded {
        &self.0
    }
}

impl Server {
    /// The server with the access file above, on an empty memory log, the clock at NOW;
    /// then org (organisation, xihu), v1, v2 (volunteers, xihu), p (project), m-1
    /// (merchant), registered by the admin.
    async fn start() -> Self {
        let s = Self(Guarded::start(access(), NOW).await);
        use pb::AccountKind as K;
        for (id, kind, region) in [
            ("org", K::Organisation, "hangzhou/xihu"),
            ("v1", K::Volunteer, "hangzhou/xihu/lingyin/c3"),
            ("v2", K::Volunteer, "hangzhou/xihu/lingyin/c3"),
            ("p", K::Project, ""),
            ("m-1", K::Merchant, ""),
            ("bank-a", K::Bank, ""),
        ] {
            s.commands()
                .register_account(with(
                    ADMIN,
                    register(&format!("reg-{id}"), id, kind, region),
                ))
                .await
                .unwrap();
        }
        s
    }

    async fn stop(self) {
        self.0.stop().await
    }

    /// v1 earns 50 points (8 hours deposited, 5 exchanged at 10 points an hour).
    async fn points_for_v1(&self) {
        self.deposit(deposit(
            "dep-1",
            "v1",
            "8",
            "2026-11-19T01:00:00Z",
            "2026-11-19T09:00:00Z",
        ))
        .await
        .unwrap();
        self.commands()
            .exchange_hours(with(
                ADMIN,
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

    /// A token for up to `max` of v1's points, issued by the platform.
    async fn token_for_v1(&self, max: &str) -> String {
        self.redemptions()
            .issue_redemption_token(with(
                PLATFORM,
                pb::IssueRedemptionTokenRequest {
                    volunteer_id: "v1".into(),
                    points_max: max.into(),
                    ttl_seconds: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// Merchant m-1 holds `points` of v1's points with a fresh token.
    async fn hold_on_v1(&self, request_id: &str, points: &str) -> pb::RedemptionHold {
        let token = self.token_for_v1(points).await;
        self.redemptions()
            .authorize_redemption(with(
                MERCHANT,
                pb::AuthorizeRedemptionRequest {
                    request_id: request_id.into(),
                    merchant_id: "m-1".into(),
                    token,
                    points: points.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// m-1's redemptions: (hold id, status), oldest first.
    async fn redemption_statuses(&self) -> Vec<(String, String)> {
        self.redemptions()
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
            .into_inner()
            .redemptions
            .into_iter()
            .map(|r| (r.hold_id, r.status))
            .collect()
    }

    async fn deposit(&self, r: pb::DepositHoursRequest) -> Result<pb::CommandResult, Status> {
        self.commands()
            .deposit_hours(with(ADMIN, r))
            .await
            .map(|r| r.into_inner())
    }
}

fn register(
    req: &str,
    id: &str,
    kind: pb::AccountKind,
    region: &str,
) -> pb::RegisterAccountRequest {
    registration(req, id, kind, region, "2021-03-01")
}

fn deposit(req: &str, who: &str, hours: &str, start: &str, end: &str) -> pb::DepositHoursRequest {
    pb::DepositHoursRequest {
        request_id: req.into(),
        volunteer_id: who.into(),
        organisation_id: "org".into(),
        activity_id: "act-1".into(),
        service_date: start[..10].into(),
        started_at: Some(ts(start)),
        ended_at: Some(ts(end)),
        category: "river-patrol".into(),
        hours: hours.into(),
        kind: pb::HourKind::Credit as i32,
        verifier_id: "staff-9".into(),
    }
}

/// ledger-rules.md, Units: amounts carry at most two decimal places; more is
/// `AMOUNT_SCALE_EXCEEDED` and nothing is written. A text of up to 32 characters with
/// thirty places must be refused, not rounded to an amount the client did not send.
#[tokio::test]
async fn an_amount_with_more_places_than_the_decimal_type_holds_is_refused_not_rounded() {
    let s = Server::start().await;
    let head = s.head().await;
    for hours in [
        // 1 followed by 29 decimal places: within AMOUNT_TEXT_BYTES_MAX (32 bytes).
        "1.00000000000000000000000000001",
        "1.000000000000000000000000000001",
        "2.999999999999999999999999999999",
    ] {
        let r = s
            .deposit(deposit(
                &format!("dep-{}", hours.len()),
                "v1",
                hours,
                "2026-11-19T08:00:00Z",
                "2026-11-19T11:00:00Z",
            ))
            .await;
        assert_eq!(
            why(&r.expect_err(hours)),
            (Code::InvalidArgument, "AMOUNT_SCALE_EXCEEDED".into()),
            "{hours}"
        );
    }
    assert_eq!(s.head().await, head, "a refused amount writes nothing");
    s.stop().await;
}

/// ledger-rules.md, "Bad input": a timestamp that is not one is `FIELD_MALFORMED`
/// and nothing is written. A `google.protobuf.Timestamp` has `nanos` in
/// 0..=999,999,999; 1.5e9 nanoseconds at a second ending in :59 is not a timestamp
/// (chrono reads it as a leap second).
#[tokio::test]
async fn a_timestamp_with_a_second_or_more_of_nanos_is_malformed() {
    let s = Server::start().await;
    let head = s.head().await;
    let mut d = deposit(
        "dep-leap",
        "v1",
        "1",
        "2026-11-19T08:00:00Z",
        "2026-11-19T10:00:00Z",
    );
    let mut started = ts("2026-11-19T08:00:59Z");
    started.nanos = 1_500_000_000;
    d.started_at = Some(started);
    let (code, reason) = why(&s.deposit(d).await.expect_err("nanos over a second"));
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "FIELD_MALFORMED")
    );
    assert_eq!(s.head().await, head, "a refused command writes nothing");
    s.stop().await;
}

/// ledger-rules.md, "Bad input": an instant outside a `google.protobuf.Timestamp`'s
/// defined range (0001-01-01 to 9999-12-31) is `FIELD_MALFORMED` and nothing is
/// written. chrono reads far wider, and such an instant panicked the command's task
/// (INTERNAL) in a calendar west of UTC.
#[tokio::test]
async fn an_instant_outside_the_timestamp_range_is_malformed() {
    let s = Server::start().await;
    let head = s.head().await;
    for (i, seconds) in [-62_135_596_801, -8_334_601_228_800, 253_402_300_800]
        .into_iter()
        .enumerate()
    {
        let mut d = deposit(
            &format!("dep-far-{i}"),
            "v1",
            "1",
            "2026-11-19T08:00:00Z",
            "2026-11-19T09:00:00Z",
        );
        d.started_at = Some(prost_types::Timestamp { seconds, nanos: 0 });
        d.ended_at = Some(prost_types::Timestamp {
            seconds: seconds.saturating_add(3600),
            nanos: 0,
        });
        let (code, reason) = why(&s.deposit(d).await.expect_err("out of range"));
        assert_eq!(
            (code, reason.as_str()),
            (Code::InvalidArgument, "FIELD_MALFORMED"),
            "{seconds}"
        );
    }
    assert_eq!(s.head().await, head, "a refused command writes nothing");
    s.stop().await;
}

/// ledger-rules.md: calendar days are `"YYYY-MM-DD"` strings; a date that is not one
/// is `FIELD_MALFORMED` and nothing is written. Signed, short or space-padded years are
/// not that shape (chrono's `%Y` reads them as years -1, 2 and 2026).
#[tokio::test]
async fn a_date_not_in_yyyy_mm_dd_shape_is_malformed() {
    let s = Server::start().await;
    let mut c = s.commands();
    let head = s.head().await;
    for (i, date) in ["-001-01-01", "+002-01-01", "+2026-1-01", " 2026-1-01"]
        .into_iter()
        .enumerate()
    {
        let r = c
            .register_account(with(
                ADMIN,
                pb::RegisterAccountRequest {
                    request_id: format!("reg-odd-{i}"),
                    account_id: format!("v-odd-{i}"),
                    kind: pb::AccountKind::Volunteer as i32,
                    region_code: "hangzhou/xihu".into(),
                    join_date: date.into(),
                },
            ))
            .await;
        assert_eq!(
            refused(r),
            (Code::InvalidArgument, "FIELD_MALFORMED".into()),
            "join_date {date:?}"
        );
        let mut d = deposit(
            &format!("dep-odd-{i}"),
            "v1",
            "1",
            "2026-11-19T08:00:00Z",
            "2026-11-19T10:00:00Z",
        );
        d.service_date = date.into();
        assert_eq!(
            why(&s.deposit(d).await.expect_err(date)),
            (Code::InvalidArgument, "FIELD_MALFORMED".into()),
            "service_date {date:?}"
        );
    }
    assert_eq!(s.head().await, head, "refused commands write nothing");
    s.stop().await;
}

/// ledger-rules.md, Idempotency: the same request id with different content is
/// `REQUEST_ID_REUSED` (ALREADY_EXISTS), on any stream, reversals included. Here the id
/// is first used by a deposit on v1, then sent with a reversal on v2. (Found in review:
/// a reversal's event id was derived from the original transaction, so no check saw
/// its request id; fixed in the seventh session.)
#[tokio::test]
async fn a_request_id_of_a_command_is_not_taken_again_by_a_reversal_on_another_account() {
    let s = Server::start().await;
    let mut c = s.commands();
    let on_v2 = s
        .deposit(deposit(
            "dep-v2",
            "v2",
            "2",
            "2026-11-19T08:00:00Z",
            "2026-11-19T10:00:00Z",
        ))
        .await
        .unwrap();
    s.deposit(deposit(
        "shared-id",
        "v1",
        "2",
        "2026-11-19T08:00:00Z",
        "2026-11-19T10:00:00Z",
    ))
    .await
    .unwrap();
    let head = s.head().await;
    let r = c
        .reverse_transaction(with(
            ADMIN,
            pb::ReverseTransactionRequest {
                request_id: "shared-id".into(),
                account_id: "v2".into(),
                transaction_id: on_v2.transaction_id,
                reason: "recorded twice".into(),
            },
        ))
        .await;
    assert_eq!(
        refused(r),
        (Code::AlreadyExists, "REQUEST_ID_REUSED".into())
    );
    assert_eq!(s.head().await, head, "a refused command writes nothing");
    s.stop().await;
}

/// ledger-rules.md, Partner commands: "Request ids of merchants and banks are their
/// own: the server scopes them to the partner's account (`m-7:1042`)". Found in review:
/// a platform that sent `m-1:till-7` took the id the merchant m-1's till-7 request maps
/// to, and the merchant's first use of `till-7` was refused as `REQUEST_ID_REUSED`.
/// Request ids sent with ':' are now refused (`ID_RESERVED`), from platforms and from
/// partners alike, and change nothing.
#[tokio::test]
async fn a_platform_cannot_take_a_merchants_scoped_request_id() {
    let s = Server::start().await;
    s.points_for_v1().await;
    let head = s.head().await;
    // The platform tries to write something of its own under the merchant's scoped id.
    let squat = s
        .commands()
        .register_account(with(
            PLATFORM,
            register(
                "m-1:till-7",
                "v-squat",
                pb::AccountKind::Volunteer,
                "hangzhou/xihu",
            ),
        ))
        .await;
    assert_eq!(
        refused(squat),
        (Code::InvalidArgument, "ID_RESERVED".into())
    );
    assert_eq!(s.head().await, head, "a refused request writes nothing");
    let token = s
        .redemptions()
        .issue_redemption_token(with(
            PLATFORM,
            pb::IssueRedemptionTokenRequest {
                volunteer_id: "v1".into(),
                points_max: "20".into(),
                ttl_seconds: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // A partner's own id may not hold ':' either: merchant `m` sending `x:1` would
    // otherwise take merchant `m:x`'s request `1`.
    let colon = s
        .redemptions()
        .authorize_redemption(with(
            MERCHANT,
            pb::AuthorizeRedemptionRequest {
                request_id: "till:7".into(),
                merchant_id: "m-1".into(),
                token: token.token.clone(),
                points: "10".into(),
            },
        ))
        .await;
    assert_eq!(
        refused(colon),
        (Code::InvalidArgument, "ID_RESERVED".into())
    );
    // The merchant's till sends its request `till-7` for the first time.
    let hold = s
        .redemptions()
        .authorize_redemption(with(
            MERCHANT,
            pb::AuthorizeRedemptionRequest {
                request_id: "till-7".into(),
                merchant_id: "m-1".into(),
                token: token.token,
                points: "10".into(),
            },
        ))
        .await
        .map(|r| r.into_inner());
    let hold = hold.unwrap_or_else(|e| panic!("the merchant's own request id: {:?}", why(&e)));
    assert!(!hold.replayed);
    s.stop().await;
}

/// `n` StreamLog calls of the auditor, each asking `request()`, all within the
/// per-caller limits: their answer streams.
async fn stream_logs(
    s: &Server,
    request: impl Fn() -> pb::StreamLogRequest,
    n: usize,
) -> Vec<tonic::Streaming<pb::LogRecord>> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(
            s.audit()
                .stream_log(with(AUDITOR, request()))
                .await
                .expect("within the limit")
                .into_inner(),
        );
    }
    open
}

/// partners.md, StreamLog: a caller holds at most `STREAM_LOG_FOLLOWS_PER_CALLER_MAX`
/// follows open (the next is `RESOURCE_EXHAUSTED`), a follow whose client hung up
/// frees its place, and a graceful shutdown ends the open follows with `UNAVAILABLE`
/// `SHUTTING_DOWN` instead of waiting for their clients: one auditor tailing a quiet
/// log held the server's shutdown until it hung up (~58 s in the review that found it).
#[tokio::test]
async fn follows_are_bounded_per_caller_freed_by_hanging_up_and_ended_by_shutdown() {
    use ledger_server::partners::audit::STREAM_LOG_FOLLOWS_PER_CALLER_MAX as MAX;
    let s = Server::start().await;
    let follow = || pb::StreamLogRequest {
        after: None,
        max_records: 0,
        follow: true,
        after_record: None,
    };
    let mut open = stream_logs(&s, follow, MAX).await;
    let over = s
        .audit()
        .stream_log(with(AUDITOR, follow()))
        .await
        .expect_err("one more than the limit");
    let (code, reason) = why(&over);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "STREAM_LOG_FOLLOWS_EXHAUSTED")
    );
    // Without follow, a caller at the limit still reads.
    let (records, status) = stream_log_outcome(
        &s,
        pb::StreamLogRequest {
            after: None,
            max_records: 0,
            follow: false,
            after_record: None,
        },
    )
    .await;
    assert!(records > 0 && status.is_none(), "{records} {status:?}");
    // Hanging up frees a place, once the server has seen it (the log is quiet: only
    // the hang-up can end that reader).
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match s.audit().stream_log(with(AUDITOR, follow())).await {
            Ok(r) => {
                open.push(r.into_inner());
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a hung-up follow still counted after 10 s: {e:?}"),
        }
    }
    // Shutdown with every follow open finishes, and each follow ends retryably.
    let mut first = open.remove(0);
    tokio::time::timeout(std::time::Duration::from_secs(10), s.stop())
        .await
        .expect("a graceful shutdown does not wait for follows");
    let end = loop {
        match first.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let end = end.expect("the follow ends with a status, not as if complete");
    let (code, reason) = why(&end);
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unavailable, "SHUTTING_DOWN")
    );
}

/// `n` events of 8 KiB in a stream no account owns (`other-stream`): enough bytes
/// that a `StreamLog` answer cannot be taken by HTTP/2's windows at once. Their type
/// is no ledger event's, so the projection worker stops at the first of them, and the
/// server's stop says so ([`stopped_on_padding`]).
async fn append_padding(log: &ledger_core::log::memory::MemoryLog, n: usize) {
    use ledger_core::log::{EventLog, ExpectedVersion, NewEvent, StreamName};
    let stream = StreamName::new("other-stream").unwrap();
    let data = format!(r#"{{"padding":"{}"}}"#, "x".repeat(8 * 1024)).into_bytes();
    for _ in 0..n {
        log.append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent {
                id: ledger_core::log::EventId::new_random(),
                event_type: "SomethingElse.v1".into(),
                data: data.clone(),
                metadata: b"{}".to_vec(),
            }],
        )
        .await
        .unwrap();
    }
}

/// The stop's result on a log holding [`append_padding`]'s events: everything was
/// served and stopped, and the exit status reports that the projection worker had
/// stopped at an event it cannot fold (so no final snapshot was written).
fn stopped_on_padding(stopped: Result<(), ledger_server::ServeError>) {
    match stopped {
        Err(ledger_server::ServeError::FinalSnapshot(e)) => {
            assert!(e.to_string().contains("SomethingElse.v1"), "{e}")
        }
        other => panic!("expected the stopped worker to be reported: {other:?}"),
    }
}

/// A shutdown waits for open connections at most its grace (`SHUTDOWN_GRACE`,
/// 500 ms here): an auditor that asked for a long `StreamLog` and stopped reading
/// held a graceful shutdown for as long as it kept the connection open (HTTP/2 flow
/// control keeps the answer's last records waiting for it). A command sent before the
/// shutdown is still durable after it.
#[tokio::test]
async fn a_client_that_stops_reading_holds_a_shutdown_no_longer_than_its_grace() {
    use ledger_core::log::{EventLog, StreamName};
    use std::time::{Duration, Instant};
    let grace = Duration::from_millis(500);
    let options = ledger_server::ServeOptions {
        shutdown_grace: Some(grace),
        ..ledger_server::ServeOptions::with_access(access())
    };
    let s = Guarded::start_with(options, NOW).await;
    let log = s.log.clone();
    append_padding(&log, 2_000).await;
    let registered = s
        .commands()
        .register_account(with(
            ADMIN,
            register("reg-v9", "v9", pb::AccountKind::Volunteer, "hangzhou/xihu"),
        ))
        .await
        .unwrap()
        .into_inner();
    // Asked for, never read.
    let unread = s
        .audit()
        .stream_log(with(
            AUDITOR,
            pb::StreamLogRequest {
                after: None,
                max_records: 0,
                follow: false,
                after_record: None,
            },
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    stopped_on_padding(
        tokio::time::timeout(Duration::from_secs(10), s.stop_result())
            .await
            .expect("the shutdown ends within its grace, not when the client hangs up"),
    );
    assert!(asked.elapsed() < grace * 6, "{:?}", asked.elapsed());
    let stream = StreamName::new("account-v9").unwrap();
    let v9 = log.read_stream(&stream, 0, 10).await.unwrap();
    assert_eq!(
        v9.len(),
        1,
        "the registration acknowledged before ({registered:?}) stays"
    );
    drop(unread);
}

/// Found by probing the read API as a careless client: a star level asked of an
/// organisation said "not registered … pass the registration's position as
/// min_position" (which can never help); a 4,000-character policy version was quoted
/// whole, over clients' 8 KiB header limit, so the refusal arrived as a transport
/// error; a VerifyLog range ending before it starts answered `ok` having checked
/// nothing.
#[tokio::test]
async fn read_refusals_say_what_is_wrong_and_fit_in_a_status() {
    let s = Server::start().await;
    let star = |volunteer: &str, policy: String| pb::GetStarLevelRequest {
        min_position: None,
        volunteer_id: volunteer.into(),
        policy_version: policy,
    };
    let e = s
        .queries()
        .get_star_level(with(ADMIN, star("org", String::new())))
        .await
        .expect_err("an organisation has no star level");
    assert_eq!(why(&e), (Code::NotFound, "NOT_A_VOLUNTEER".to_owned()));
    assert!(
        e.message()
            .contains("is not a volunteer (it is registered as: organisation)"),
        "{}",
        e.message()
    );
    let e = s
        .queries()
        .get_star_level(with(ADMIN, star("v1", "p".repeat(4_000))))
        .await
        .expect_err("no such policy");
    assert_eq!(
        why(&e),
        (Code::InvalidArgument, "UNKNOWN_POLICY_VERSION".to_owned())
    );
    assert!(e.message().len() < 400, "{}", e.message().len());
    let at = |commit: u64| pb::LogPosition {
        commit,
        prepare: commit,
    };
    let e = s
        .audit()
        .verify_log(with(
            AUDITOR,
            pb::VerifyLogRequest {
                after: Some(at(4)),
                up_to: Some(at(2)),
            },
        ))
        .await
        .expect_err("a range that ends before it starts");
    assert_eq!(
        why(&e),
        (Code::InvalidArgument, "FIELD_MALFORMED".to_owned())
    );
    s.stop().await;
}

/// Page tokens past the end of a list (or with a sign) and merchant lists for an
/// account that is not a merchant used to answer OK and empty: read as "end of list"
/// or "no redemptions" by a client. Found by probing the read API.
#[tokio::test]
async fn tokens_never_issued_and_non_merchants_are_refused_not_answered_empty() {
    let s = Server::start().await;
    s.points_for_v1().await;
    s.hold_on_v1("till-1", "5").await;
    let list = |merchant: &str, token: &str| pb::ListRedemptionsRequest {
        min_position: None,
        merchant_id: merchant.into(),
        page_size: 0,
        page_token: token.into(),
    };
    let malformed = (Code::InvalidArgument, "FIELD_MALFORMED".to_owned());
    for token in ["999999", "+1", "1"] {
        assert_eq!(
            refused(
                s.redemptions()
                    .list_redemptions(with(ADMIN, list("m-1", token)))
                    .await
            ),
            malformed,
            "{token}"
        );
    }
    assert_eq!(
        refused(
            s.redemptions()
                .list_redemptions(with(ADMIN, list("v1", "")))
                .await
        ),
        (Code::NotFound, "NOT_A_MERCHANT".to_owned())
    );
    assert_eq!(
        refused(
            s.redemptions()
                .list_redemptions(with(ADMIN, list("nobody", "")))
                .await
        ),
        (Code::NotFound, "UNKNOWN_ACCOUNT".to_owned())
    );
    let settle = pb::GetSettlementStatementRequest {
        min_position: None,
        merchant_id: "org".into(),
        from: Some(ts("2026-01-01T00:00:00Z")),
        to: Some(ts("2027-01-01T00:00:00Z")),
    };
    assert_eq!(
        refused(
            s.redemptions()
                .get_settlement_statement(with(ADMIN, settle))
                .await
        ),
        (Code::NotFound, "NOT_A_MERCHANT".to_owned())
    );
    // Amounts are at two places, zeros too ("0.00", as the proto says; it was "0").
    let entries = s
        .queries()
        .list_transactions(with(
            ADMIN,
            pb::ListTransactionsRequest {
                min_position: None,
                account_id: "v1".into(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(!entries.is_empty());
    for e in &entries {
        for amount in [&e.hours, &e.honour_hours, &e.points] {
            assert!(
                amount
                    .split_once('.')
                    .is_some_and(|(_, places)| places.len() == 2),
                "{amount:?} in {e:?}"
            );
        }
    }
    let transactions = |token: &str| pb::ListTransactionsRequest {
        min_position: None,
        account_id: "v1".into(),
        page_size: 0,
        page_token: token.into(),
    };
    for token in ["999", "+1"] {
        assert_eq!(
            refused(
                s.queries()
                    .list_transactions(with(ADMIN, transactions(token)))
                    .await
            ),
            malformed,
            "{token}"
        );
    }
    s.stop().await;
}

/// A retry of an authorisation after the redemption-token key was replaced (the
/// server restarted with another `redemption-token.key`): the original hold, as for
/// any retry, not `TOKEN_INVALID`. A new request with the old token is still refused.
#[tokio::test]
async fn an_authorisation_retried_after_the_token_key_changed_gets_its_original_hold() {
    let s = Server::start().await;
    s.points_for_v1().await;
    let request = pb::AuthorizeRedemptionRequest {
        request_id: "till-7-0042".into(),
        merchant_id: "m-1".into(),
        token: s.token_for_v1("20").await,
        points: "20".into(),
    };
    let first = s
        .redemptions()
        .authorize_redemption(with(MERCHANT, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let log = s.log.clone();
    s.stop().await;
    // Each start without a key file draws a new key (`PartnerConfig::default`).
    let s = Server(
        Guarded::start_on(log, ledger_server::ServeOptions::with_access(access()), NOW).await,
    );
    let retried = s
        .redemptions()
        .authorize_redemption(with(MERCHANT, request.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            retried.hold_id.as_str(),
            retried.points.as_str(),
            retried.replayed
        ),
        (first.hold_id.as_str(), first.points.as_str(), true)
    );
    let fresh = pb::AuthorizeRedemptionRequest {
        request_id: "till-7-0043".into(),
        ..request
    };
    assert_eq!(
        refused(
            s.redemptions()
                .authorize_redemption(with(MERCHANT, fresh))
                .await
        ),
        (Code::InvalidArgument, "TOKEN_INVALID".to_owned())
    );
    s.stop().await;
}

/// operations.md, Limits: a caller far over its rate gets `RATE_LIMITED` for every
/// call it is refused, on a connection that stays up. The refusal used to be sent
/// before the call's message was read; h2 then reset each such stream, counted the
/// client's message arriving after it against the connection, and at 1,024 closed
/// it: every call in flight on it failed with `UNKNOWN` or a `RESOURCE_EXHAUSTED`
/// without a reason (seen under `ledger-server load` at the default limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_far_over_its_rate_is_refused_call_by_call_on_a_connection_that_stays_up() {
    let mut text = [entry("auditor", "auditor", "", AUDITOR)].concat();
    text.push_str("[limits]\nrequests_per_second_max = 1\nburst_max = 1\n");
    let log = std::sync::Arc::new(ledger_core::log::memory::MemoryLog::new());
    let clock = std::sync::Arc::new(ledger_core::app::FixedClock::new(at(NOW)));
    let (addr, stop, task) = timebank_tests::listen(
        log,
        clock,
        ledger_server::ServeOptions::with_access(Access::from_toml(&text).unwrap()),
    )
    .await;
    // As `ledger-server load` connects: TCP_NODELAY, so a call's headers and its
    // message can reach the server in separate segments.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let calls = 20_000usize;
    let concurrency = 64usize;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut audit = pb::audit_client::AuditClient::new(channel.clone());
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut other = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                let r = audit
                    .verify_log(with(AUDITOR, pb::VerifyLogRequest::default()))
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if why(&e).1 == "RATE_LIMITED" => {}
                    Err(e) => other.push(format!("{:?} {:?}", e.code(), e.message())),
                }
            }
            other
        }));
    }
    let mut other = Vec::new();
    for t in tasks {
        other.extend(t.await.unwrap());
    }
    other.truncate(5);
    assert!(
        other.is_empty(),
        "refusals other than RATE_LIMITED: {other:?}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// partners.md, StreamLog: an answer cut by a shutdown ends with `UNAVAILABLE`
/// `SHUTTING_DOWN` after the records already buffered, also when the client read
/// slower than the log was read. The status used to be put into the buffer at
/// shutdown; with the buffer full it was dropped and the answer ended `OK`, as if
/// the whole range had been sent (seen with a Python client on the demo city).
#[tokio::test]
async fn a_stream_cut_by_shutdown_says_so_even_behind_a_full_buffer() {
    use ledger_server::partners::audit::STREAM_LOG_BUFFER_RECORDS;
    let s = Server::start().await;
    // Enough bytes that HTTP/2's windows and tonic's encoder cannot take the whole
    // range before the shutdown: the rest waits in the buffer, which is full.
    let extra = 4 * STREAM_LOG_BUFFER_RECORDS;
    append_padding(&s.0.log, extra).await;
    let mut answer = s
        .audit()
        .stream_log(with(
            AUDITOR,
            pb::StreamLogRequest {
                after: None,
                max_records: 0,
                follow: false,
                after_record: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // Unread until the buffer is full, then the shutdown.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = tokio::spawn(s.0.stop_result());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut records = 0;
    let end = loop {
        match answer.message().await {
            Ok(Some(_)) => records += 1,
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let end = end.unwrap_or_else(|| panic!("ended OK after {records} records, as if complete"));
    assert_eq!(
        (end.code(), why(&end).1.as_str()),
        (Code::Unavailable, "SHUTTING_DOWN")
    );
    assert!(records < extra, "cut, not complete: {records}");
    stopped_on_padding(
        tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
            .await
            .expect("the shutdown finishes")
            .unwrap(),
    );
}

/// The first status a `StreamLog` call ends with (the call's own, or the first failed
/// item of its stream), if any, and how many records came before it.
async fn stream_log_outcome(s: &Server, request: pb::StreamLogRequest) -> (usize, Option<Status>) {
    let mut stream = match s.audit().stream_log(with(AUDITOR, request)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return (0, Some(e)),
    };
    let mut records = 0;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(_))) => records += 1,
            Ok(Ok(None)) => return (records, None),
            Ok(Err(e)) => return (records, Some(e)),
            Err(_) => panic!("StreamLog neither answered nor failed within 5 s"),
        }
    }
}

/// partners.md, Auditor: `UNAVAILABLE` (`LOG_UNAVAILABLE`) means "retry"; the house rule
/// is that bad input gets a precise status. A position this log never handed out (past
/// its head, or with `commit` != `prepare`, e.g. from another log or a restored backup)
/// is the auditor's mistake: retrying it can never succeed, so it must not be
/// `UNAVAILABLE`.
#[tokio::test]
async fn an_audit_position_that_is_not_in_the_log_is_bad_input_not_unavailable() {
    let s = Server::start().await;
    let head = s.head().await.expect("the seed wrote events");
    let beyond = pb::LogPosition {
        commit: head.commit() + 1000,
        prepare: head.prepare() + 1000,
    };
    let skewed = pb::LogPosition {
        commit: 1,
        prepare: 2,
    };
    for after in [beyond, skewed] {
        for follow in [false, true] {
            let (records, status) = stream_log_outcome(
                &s,
                pb::StreamLogRequest {
                    after: Some(after),
                    max_records: 0,
                    follow,
                    after_record: None,
                },
            )
            .await;
            let status = status.expect("a position not in the log is refused");
            assert_eq!(records, 0);
            assert_eq!(
                why(&status),
                (Code::InvalidArgument, "FIELD_MALFORMED".into()),
                "StreamLog after {after:?} follow {follow}: {status:?}"
            );
        }
        let r = s
            .audit()
            .verify_log(with(
                AUDITOR,
                pb::VerifyLogRequest {
                    after: Some(after),
                    up_to: None,
                },
            ))
            .await;
        assert_eq!(
            refused(r),
            (Code::InvalidArgument, "FIELD_MALFORMED".into()),
            "VerifyLog after {after:?}"
        );
    }
    // The head itself is a position of the log: nothing after it, and no error.
    let at_head = pb::LogPosition {
        commit: head.commit(),
        prepare: head.prepare(),
    };
    let (records, status) = stream_log_outcome(
        &s,
        pb::StreamLogRequest {
            after: Some(at_head),
            max_records: 0,
            follow: false,
            after_record: None,
        },
    )
    .await;
    assert_eq!((records, status.map(|e| why(&e))), (0, None));
    s.stop().await;
}

/// ledger-rules.md, Expiry: "The server's sweeper (every `HOLD_SWEEP_INTERVAL`, 5 s)
/// records every open hold past its expiry", with a request id derived from the hold
/// under the `system:` prefix (`system:expire-hold:<hold>`), which the code says no
/// client id can start with. A platform's request ids are not scoped, so a platform
/// that sends `system:expire-hold:<hold>` first takes the sweeper's id: the sweeper's
/// append is then `REQUEST_ID_REUSED` on every sweep, the hold is never recorded as
/// expired (`held` in ListRedemptions and GetAccount forever), and enough such holds
/// fill `HOLDS_PER_SWEEP_MAX` so that no other hold is ever recorded either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_take_the_request_id_the_hold_sweeper_uses() {
    let s = Server::start().await;
    s.points_for_v1().await;
    let squatted = s.hold_on_v1("till-1", "5").await;
    let other = s.hold_on_v1("till-2", "5").await;
    // The platform sends a command of its own under the sweeper's request id.
    let r = s
        .commands()
        .register_account(with(
            PLATFORM,
            register(
                &format!("system:expire-hold:{}", squatted.hold_id),
                "v-squat",
                pb::AccountKind::Volunteer,
                "hangzhou/xihu",
            ),
        ))
        .await;
    if let Err(e) = &r {
        // Refusing the reserved prefix at the edge is one way to keep the sweeper's ids.
        assert_eq!(why(e).0, Code::InvalidArgument, "{e:?}");
    }
    // Both holds expire (15 minutes after NOW); the sweeper runs every 5 s.
    s.clock.set(at("2026-11-20T12:16:00Z"));
    let want = vec![
        (squatted.hold_id.clone(), "expired".to_owned()),
        (other.hold_id.clone(), "expired".to_owned()),
    ];
    let mut seen = Vec::new();
    for _ in 0..60 {
        seen = s.redemption_statuses().await;
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(seen, want, "the sweeper records every expired hold");
    s.stop().await;
}

/// ledger-rules.md, Status codes: "Every failure carries a `google.rpc.ErrorInfo`
/// detail", bad input is INVALID_ARGUMENT, and INTERNAL means "a bug; ... retry with the
/// same request id". A request whose string field is not UTF-8 (here `account_id`, sent
/// as raw bytes on the same tag) is refused by tonic's protobuf decoder with INTERNAL
/// and no ErrorInfo, so a client was told to retry a message that can never decode.
/// Found in review; fixed with a codec of the server's own (`ledger-server/src/codec.rs`):
/// `INVALID_ARGUMENT`, reason `MESSAGE_MALFORMED`.
#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_bad_input_with_error_info() {
    let s = Server::start().await;
    let head = s.head().await;
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/timebank.v1.LedgerCommands/RegisterAccount",
    );
    // `Any` is {1: string, 2: bytes}; RegisterAccountRequest is {1: request_id,
    // 2: account_id}: the same wire bytes with an account id that is not UTF-8.
    let codec = tonic::codec::ProstCodec::<prost_types::Any, pb::CommandResult>::default();
    let not_utf8 = prost_types::Any {
        type_url: "reg-not-utf8".into(),
        value: vec![0xff, 0xfe, b'v'],
    };
    let status = grpc
        .unary(with(ADMIN, not_utf8), path, codec)
        .await
        .expect_err("an account id that is not UTF-8 is refused");
    assert_eq!(s.head().await, head, "a refused request writes nothing");
    let info = status.get_details_error_info();
    assert_eq!(
        (status.code(), info.map(|i| i.domain)),
        (Code::InvalidArgument, Some("timebank.v1".to_owned())),
        "{status:?}"
    );
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("MESSAGE_MALFORMED".to_owned())
    );
    s.stop().await;
}

/// partners.md, Auditor: `ReplayAccount` replays an account "as it stood at a moment
/// (`as_of`: the events recorded at or before it)". For a moment after now the log
/// holds nothing more than now, so the answer must be the account as it stands now.
/// It was not: balances came from every event up to now, but points held were judged at
/// the future instant, where the open hold had already expired, a state no record shows
/// (the merchant may still capture the hold before then).
#[tokio::test]
async fn replaying_an_account_as_of_a_future_moment_is_the_account_as_it_stands() {
    let s = Server::start().await;
    s.points_for_v1().await;
    s.hold_on_v1("till-1", "5").await;
    let replay = |point| {
        let mut audit = s.audit();
        async move {
            audit
                .replay_account(with(
                    AUDITOR,
                    pb::ReplayAccountRequest {
                        account_id: "v1".into(),
                        point,
                    },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let now = replay(None).await;
    assert_eq!(
        (now.points_balance.as_str(), now.points_held.as_str()),
        ("50.00", "5.00")
    );
    let later = replay(Some(pb::replay_account_request::Point::AsOf(ts(
        "2026-11-20T13:00:00Z",
    ))))
    .await;
    assert_eq!(later, now, "nothing is recorded after now");
    s.stop().await;
}

/// partners.md, Bank: `GetServedReport` answers `INVALID_ARGUMENT` (`FIELD_MISSING` for
/// `key`) when no key is sent, and a report is named by its digest, "hex BLAKE3 of the
/// JSON". An empty digest (or inquiry id) is no key at all, and a text that is not 64 hex digits can
/// never name a report: both are the bank's mistake, not `NOT_FOUND` (`UNKNOWN_INQUIRY`,
/// "none served to your bank matches", which sends the bank looking for a report).
#[tokio::test]
async fn a_served_report_asked_by_an_empty_or_malformed_digest_is_bad_input() {
    use pb::get_served_report_request::Key;
    let s = Server::start().await;
    let ask = |key: Option<Key>| {
        let mut banks = s.banks();
        async move {
            banks
                .get_served_report(with(
                    BANK,
                    pb::GetServedReportRequest {
                        volunteer_id: "v1".into(),
                        key,
                    },
                ))
                .await
        }
    };
    assert_eq!(
        refused(ask(None).await),
        (Code::InvalidArgument, "FIELD_MISSING".into())
    );
    assert_eq!(
        refused(ask(Some(Key::ReportDigest(String::new()))).await),
        (Code::InvalidArgument, "FIELD_MISSING".into())
    );
    // An empty inquiry id likewise: no key, not an id of the wrong length.
    assert_eq!(
        refused(ask(Some(Key::InquiryId(String::new()))).await),
        (Code::InvalidArgument, "FIELD_MISSING".into())
    );
    for digest in ["abc", &"g".repeat(64), &"a".repeat(65)] {
        assert_eq!(
            refused(ask(Some(Key::ReportDigest(digest.to_owned()))).await),
            (Code::InvalidArgument, "FIELD_MALFORMED".into()),
            "{digest}"
        );
    }
    // A well-formed digest of no report served to this bank is not found.
    assert_eq!(
        refused(ask(Some(Key::ReportDigest("a".repeat(64)))).await),
        (Code::NotFound, "UNKNOWN_INQUIRY".into())
    );
    s.stop().await;
}

/// ledger-rules.md, Idempotency and `SubmitBatch`: a retry returns the original outcome
/// (`replayed`) whichever way it travels. A command first sent alone replays as a batch
/// line and the other way round; the same request twice in one batch is written once
/// (the second line replays the first); the same id with other content in a batch is
/// `REQUEST_ID_REUSED`, in its slot.
#[tokio::test]
async fn retries_replay_across_unary_calls_and_batch_lines() {
    use pb::batch_result::Result as R;
    use pb::command::Command as C;
    let s = Server::start().await;
    let mut c = s.commands();
    s.deposit(deposit(
        "dep-1",
        "v1",
        "3",
        "2026-11-19T08:00:00Z",
        "2026-11-19T11:00:00Z",
    ))
    .await
    .unwrap();
    let spend = |hours: &str| pb::SpendHoursRequest {
        request_id: "sp-1".into(),
        volunteer_id: "v1".into(),
        purpose: pb::SpendPurpose::Other as i32,
        counterparty_id: "org".into(),
        hours: hours.into(),
        memo: String::new(),
    };
    let alone = c
        .spend_hours(with(ADMIN, spend("0.5")))
        .await
        .unwrap()
        .into_inner();
    let twice = || {
        C::DepositHours(deposit(
            "dep-2",
            "v2",
            "1",
            "2026-11-19T08:00:00Z",
            "2026-11-19T09:00:00Z",
        ))
    };
    let lines = [
        C::SpendHours(spend("0.50")),
        C::SpendHours(spend("0.25")),
        twice(),
        twice(),
    ];
    let head = s.head().await.unwrap();
    let results = c
        .submit_batch(with(
            ADMIN,
            pb::SubmitBatchRequest {
                commands: lines
                    .into_iter()
                    .map(|command| pb::Command {
                        command: Some(command),
                    })
                    .collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    let results: Vec<R> = results.into_iter().map(|r| r.result.unwrap()).collect();
    let ok = |r: &R| match r {
        R::Ok(o) => o.clone(),
        R::Error(e) => panic!("expected a result, got {e:?}"),
    };
    let replayed = ok(&results[0]);
    assert!(replayed.replayed);
    assert_eq!(
        (replayed.transaction_id, replayed.position),
        (alone.transaction_id, alone.position)
    );
    match &results[1] {
        R::Error(e) => assert_eq!(
            (e.code, e.reason.as_str()),
            (Code::AlreadyExists as i32, "REQUEST_ID_REUSED")
        ),
        other => panic!("expected REQUEST_ID_REUSED, got {other:?}"),
    }
    let (first, second) = (ok(&results[2]), ok(&results[3]));
    assert!(!first.replayed && second.replayed);
    assert_eq!(
        (&first.transaction_id, &first.position),
        (&second.transaction_id, &second.position)
    );
    // One event for the whole batch: the deposit.
    assert_eq!(s.head().await.map(|p| p.commit()), Some(head.commit() + 1));
    // The batch line's request, resent alone, replays too.
    let C::DepositHours(d) = twice() else {
        unreachable!()
    };
    let again = s.deposit(d).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction_id, first.transaction_id);
    s.stop().await;
}

/// partners.md, StreamLog: a caller holds at most `STREAM_LOG_READS_PER_CALLER_MAX`
/// calls without follow that the server has not finished sending. A reviewer found the
/// count let go as soon as the reader had buffered its last records, so calls of up to
/// 1,024 records that a client left unread went uncounted; the answer now holds it.
/// Each answer here is 1,024 records of ~2 KiB (closures with a long reason), more than
/// a client's flow-control window takes unread, so none can finish.
#[tokio::test]
async fn unread_stream_log_answers_count_against_their_caller() {
    use ledger_server::partners::audit::STREAM_LOG_READS_PER_CALLER_MAX as MAX;
    let s = Server::start().await;
    let accounts = 1_024;
    let registrations = (0..accounts).map(|i| pb::Command {
        command: Some(pb::command::Command::RegisterAccount(registration(
            &format!("reg-many-{i}"),
            &format!("many-{i}"),
            pb::AccountKind::Volunteer,
            "hangzhou/xihu/lingyin/c3",
            "2024-11-20",
        ))),
    });
    // 500 characters of 4 bytes each: the longest reason a closure takes.
    let reason = "\u{1d11e}".repeat(500);
    let closures = (0..accounts).map(|i| pb::Command {
        command: Some(pb::command::Command::CloseAccount(
            pb::CloseAccountRequest {
                request_id: format!("close-many-{i}"),
                account_id: format!("many-{i}"),
                reason: reason.clone(),
            },
        )),
    });
    let commands: Vec<pb::Command> = registrations.chain(closures).collect();
    for chunk in commands.chunks(1_000) {
        let out = s
            .commands()
            .submit_batch(with(
                ADMIN,
                pb::SubmitBatchRequest {
                    commands: chunk.to_vec(),
                },
            ))
            .await
            .expect("a batch")
            .into_inner();
        assert!(out
            .results
            .iter()
            .all(|r| matches!(r.result, Some(pb::batch_result::Result::Ok(_)))));
    }
    let after = s.head().await.map(|h| pb::LogPosition {
        commit: h.commit() - accounts as u64,
        prepare: h.prepare() - accounts as u64,
    });
    let read = || pb::StreamLogRequest {
        after,
        max_records: 1_024,
        follow: false,
        after_record: None,
    };
    let mut unread = stream_logs(&s, read, MAX).await;
    // Long enough for every reader to buffer its last record (the old count's end).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let over = s
        .audit()
        .stream_log(with(AUDITOR, read()))
        .await
        .expect_err("one more than the limit");
    let (code, reason) = why(&over);
    assert_eq!(
        (code, reason.as_str()),
        (Code::ResourceExhausted, "STREAM_LOG_READS_EXHAUSTED")
    );
    // A client that hangs up frees its answer's place (reading one to its end here
    // could wait on the window the other unread answers hold on the one connection).
    drop(unread.remove(0));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match s.audit().stream_log(with(AUDITOR, read())).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(why(&e).1, "STREAM_LOG_READS_EXHAUSTED");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the finished answer's place was not freed: {e:?}"),
        }
    }
    drop(unread);
    s.stop().await;
}

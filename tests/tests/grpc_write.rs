//! End-to-end: the real server on a loopback port, driven through the generated gRPC
//! client. Every RPC, every rejection, idempotent retries, batches, health, reflection,
//! and a restart on the durable embedded log.

use std::sync::Arc;

use ledger_core::app::LedgerConfig;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::EventLog;
use ledger_server::pb;
use ledger_server::pb::ledger_commands_client::LedgerCommandsClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const NOW: &str = "2026-11-20T12:00:00Z";

use timebank_tests::timestamp as ts;

struct Server {
    log: MemoryLog,
    client: LedgerCommandsClient<Channel>,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
}

impl Server {
    async fn start() -> Self {
        Self::start_over(MemoryLog::new()).await
    }

    /// A server over `log` as it is (a restart).
    async fn start_over(log: MemoryLog) -> Self {
        let s = timebank_tests::spawn_server(Arc::new(log.clone()) as Arc<dyn EventLog>, NOW).await;
        Self {
            log,
            client: LedgerCommandsClient::new(s.channel.clone()),
            channel: s.channel,
            stop: Some(s.stop),
            task: s.task,
        }
    }

    async fn stop(mut self) {
        drop(self.client);
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    async fn head(&self) -> Option<ledger_core::log::Position> {
        self.log.head().await.unwrap()
    }
}

fn register(req: &str, id: &str, kind: pb::AccountKind) -> pb::RegisterAccountRequest {
    let (region, join) = match kind {
        pb::AccountKind::Volunteer => ("hangzhou/xihu/lingyin/c3", "2021-03-01"),
        pb::AccountKind::Organisation => ("hangzhou/xihu", ""),
        _ => ("", ""),
    };
    pb::RegisterAccountRequest {
        request_id: req.into(),
        account_id: id.into(),
        kind: kind as i32,
        region_code: region.into(),
        join_date: join.into(),
    }
}

fn deposit(req: &str, who: &str, hours: &str, start: &str, end: &str) -> pb::DepositHoursRequest {
    pb::DepositHoursRequest {
        request_id: req.into(),
        volunteer_id: who.into(),
        organisation_id: "org".into(),
        activity_id: "act-2026-river".into(),
        service_date: start[..10].into(),
        started_at: Some(ts(start)),
        ended_at: Some(ts(end)),
        category: "river-patrol".into(),
        hours: hours.into(),
        kind: pb::HourKind::Credit as i32,
        verifier_id: "staff-9".into(),
    }
}

fn spend(req: &str, who: &str, hours: &str) -> pb::SpendHoursRequest {
    pb::SpendHoursRequest {
        request_id: req.into(),
        volunteer_id: who.into(),
        purpose: pb::SpendPurpose::FineOffset as i32,
        counterparty_id: "org".into(),
        hours: hours.into(),
        memo: "traffic civility duty offset".into(),
    }
}

fn reverse(req: &str, account: &str, tx: &str) -> pb::ReverseTransactionRequest {
    pb::ReverseTransactionRequest {
        request_id: req.into(),
        account_id: account.into(),
        transaction_id: tx.into(),
        reason: "recorded twice".into(),
    }
}

/// Register v1, v2 (volunteers), org, p (project), m (merchant).
async fn setup(c: &mut LedgerCommandsClient<Channel>) {
    for (req, id, kind) in [
        ("reg-v1", "v1", pb::AccountKind::Volunteer),
        ("reg-v2", "v2", pb::AccountKind::Volunteer),
        ("reg-org", "org", pb::AccountKind::Organisation),
        ("reg-p", "p", pb::AccountKind::Project),
        ("reg-m", "m", pb::AccountKind::Merchant),
    ] {
        c.register_account(register(req, id, kind)).await.unwrap();
    }
}

/// The code and machine-readable reason of a failed call.
fn why<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected the call to fail");
    let info = s
        .get_details_error_info()
        .expect("every failure carries ErrorInfo");
    assert_eq!(info.domain, "timebank.v1");
    assert!(!s.message().is_empty());
    (s.code(), info.reason)
}

#[tokio::test]
async fn every_rpc_writes_and_returns_its_transaction_and_position() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    let d = c
        .deposit_hours(deposit(
            "dep-1",
            "v1",
            "6.5",
            "2026-11-19T08:00:00Z",
            "2026-11-19T15:00:00Z",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!d.replayed);
    assert_eq!(d.stream_version, 1);
    let pos = |r: &pb::CommandResult| r.position.unwrap().commit;
    let s = c
        .spend_hours(spend("sp-1", "v1", "0.5"))
        .await
        .unwrap()
        .into_inner();
    assert!(pos(&s) > pos(&d));
    let x = c
        .exchange_hours(pb::ExchangeHoursRequest {
            request_id: "ex-1".into(),
            volunteer_id: "v1".into(),
            hours: "1".into(),
            expected_rate_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pos(&x) > pos(&s));
    let t = c
        .transfer_hours(pb::TransferHoursRequest {
            request_id: "tr-1".into(),
            from_volunteer_id: "v1".into(),
            to_volunteer_id: "v2".into(),
            relation: pb::FamilyRelation::Parent as i32,
            hours: "2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The receiver can spend what it received: its receipt is on its stream.
    c.spend_hours(spend("sp-2", "v2", "0.25")).await.unwrap();
    let g = c
        .donate_hours(pb::DonateHoursRequest {
            request_id: "do-1".into(),
            volunteer_id: "v1".into(),
            project_id: "p".into(),
            hours: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let r = c
        .reverse_transaction(reverse("rv-1", "p", &g.transaction_id))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(r.transaction_id, g.transaction_id);
    c.reverse_transaction(reverse("rv-2", "v1", &x.transaction_id))
        .await
        .unwrap();
    // v1: 6.5 - 0.5 - 1 (exchanged, reversed back) - 2 - 1 (donated, reversed back) = 4
    // so spending 4 works and 0.01 more does not.
    c.spend_hours(spend("sp-3", "v1", "4")).await.unwrap();
    assert_eq!(
        why(c.spend_hours(spend("sp-4", "v1", "0.01")).await).1,
        "INSUFFICIENT_HOURS"
    );
    // v2 holds 1.75 of the transfer; the whole transfer can no longer be reversed.
    assert_eq!(
        why(c
            .reverse_transaction(reverse("rv-3", "v2", &t.transaction_id))
            .await)
        .1,
        "INSUFFICIENT_BALANCE_FOR_REVERSAL"
    );
    c.close_account(pb::CloseAccountRequest {
        request_id: "cl-1".into(),
        account_id: "m".into(),
        reason: "shop closed".into(),
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn retries_replay_the_first_outcome_and_a_reused_id_is_refused() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    let req = deposit(
        "dep-1",
        "v1",
        "2",
        "2026-11-19T08:00:00Z",
        "2026-11-19T10:00:00Z",
    );
    let first = c.deposit_hours(req.clone()).await.unwrap().into_inner();
    let head = server.head().await;
    let mut same = req.clone();
    same.hours = "2.00".into(); // the same amount, written differently
    let again = c.deposit_hours(same).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(
        (again.transaction_id.as_str(), again.position.as_ref()),
        (first.transaction_id.as_str(), first.position.as_ref())
    );
    assert_eq!(server.head().await, head, "a retry writes nothing");
    let mut other = req.clone();
    other.hours = "1".into();
    assert_eq!(
        why(c.deposit_hours(other).await),
        (Code::AlreadyExists, "REQUEST_ID_REUSED".into())
    );
    // The same id for a command on another account (caught by the log's event-id
    // check when the command would otherwise be written).
    let elsewhere = deposit(
        "dep-1",
        "v2",
        "2",
        "2026-11-19T08:00:00Z",
        "2026-11-19T10:00:00Z",
    );
    assert_eq!(
        why(c.deposit_hours(elsewhere).await),
        (Code::AlreadyExists, "REQUEST_ID_REUSED".into())
    );
    // Registration retries too.
    let reg = c
        .register_account(register("reg-v1", "v1", pb::AccountKind::Volunteer))
        .await
        .unwrap()
        .into_inner();
    assert!(reg.replayed);
    assert_eq!(server.head().await, head);
    server.stop().await;
}

#[tokio::test]
async fn every_rejection_has_its_code_and_reason_and_writes_nothing() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    let dep = c
        .deposit_hours(deposit(
            "dep-1",
            "v1",
            "8",
            "2026-11-18T08:00:00Z",
            "2026-11-18T16:00:00Z",
        ))
        .await
        .unwrap()
        .into_inner();
    let rev = c
        .reverse_transaction(reverse("rv-1", "v1", &dep.transaction_id))
        .await
        .unwrap()
        .into_inner();
    c.deposit_hours(deposit(
        "dep-2",
        "v1",
        "20",
        "2026-11-17T00:00:00Z",
        "2026-11-17T20:00:00Z",
    ))
    .await
    .unwrap();
    let reg_v1 = c
        .register_account(register("reg-v1", "v1", pb::AccountKind::Volunteer))
        .await
        .unwrap()
        .into_inner();
    assert!(reg_v1.replayed);
    let sent = c
        .transfer_hours(pb::TransferHoursRequest {
            request_id: "tr-1".into(),
            from_volunteer_id: "v1".into(),
            to_volunteer_id: "v2".into(),
            relation: pb::FamilyRelation::Sibling as i32,
            hours: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    c.register_account(register("reg-v3", "v3", pb::AccountKind::Volunteer))
        .await
        .unwrap();
    c.close_account(pb::CloseAccountRequest {
        request_id: "cl-v3".into(),
        account_id: "v3".into(),
        reason: "moved away".into(),
    })
    .await
    .unwrap();
    c.close_account(pb::CloseAccountRequest {
        request_id: "cl-m".into(),
        account_id: "m".into(),
        reason: "closed".into(),
    })
    .await
    .unwrap();
    let head = server.head().await;

    let ok = || {
        deposit(
            "bad",
            "v1",
            "1",
            "2026-11-19T08:00:00Z",
            "2026-11-19T09:00:00Z",
        )
    };
    let with = |f: &dyn Fn(&mut pb::DepositHoursRequest)| {
        let mut r = ok();
        f(&mut r);
        r
    };
    let cases: Vec<(pb::DepositHoursRequest, Code, &str)> = vec![
        (
            with(&|r| r.hours = "abc".into()),
            Code::InvalidArgument,
            "AMOUNT_MALFORMED",
        ),
        (
            with(&|r| r.hours = "1e2".into()),
            Code::InvalidArgument,
            "AMOUNT_MALFORMED",
        ),
        (
            with(&|r| r.hours = "-1".into()),
            Code::InvalidArgument,
            "AMOUNT_NOT_POSITIVE",
        ),
        (
            with(&|r| r.hours = "0".into()),
            Code::InvalidArgument,
            "AMOUNT_NOT_POSITIVE",
        ),
        (
            with(&|r| r.hours = "0.125".into()),
            Code::InvalidArgument,
            "AMOUNT_SCALE_EXCEEDED",
        ),
        (
            with(&|r| r.hours = "10000.01".into()),
            Code::InvalidArgument,
            "AMOUNT_TOO_LARGE",
        ),
        (
            with(&|r| r.hours = String::new()),
            Code::InvalidArgument,
            "FIELD_MISSING",
        ),
        (
            with(&|r| r.request_id = String::new()),
            Code::InvalidArgument,
            "ID_EMPTY",
        ),
        (
            with(&|r| r.request_id = "r".repeat(129)),
            Code::InvalidArgument,
            "ID_TOO_LONG",
        ),
        (
            with(&|r| r.volunteer_id = "v".repeat(65)),
            Code::InvalidArgument,
            "ID_TOO_LONG",
        ),
        (
            with(&|r| r.volunteer_id = "v 1".into()),
            Code::InvalidArgument,
            "ID_CHARACTERS",
        ),
        (
            with(&|r| r.started_at = None),
            Code::InvalidArgument,
            "FIELD_MISSING",
        ),
        (
            with(&|r| r.kind = 0),
            Code::InvalidArgument,
            "FIELD_MISSING",
        ),
        (
            with(&|r| r.kind = 42),
            Code::InvalidArgument,
            "FIELD_MALFORMED",
        ),
        (
            with(&|r| r.service_date = "19/11/2026".into()),
            Code::InvalidArgument,
            "FIELD_MALFORMED",
        ),
        (
            with(&|r| r.service_date = "2026-11-21".into()),
            Code::InvalidArgument,
            "SERVICE_DATE_IN_FUTURE",
        ),
        (
            with(&|r| {
                r.started_at = Some(ts("2026-11-20T11:00:00Z"));
                r.ended_at = Some(ts("2026-11-20T13:00:00Z"));
            }),
            Code::InvalidArgument,
            "SERVICE_INTERVAL_IN_FUTURE",
        ),
        (
            with(&|r| r.ended_at = Some(ts("2026-11-19T07:00:00Z"))),
            Code::InvalidArgument,
            "INVALID_SERVICE_INTERVAL",
        ),
        (
            with(&|r| r.hours = "1.5".into()),
            Code::InvalidArgument,
            "HOURS_EXCEED_INTERVAL",
        ),
        (
            with(&|r| r.volunteer_id = "ghost".into()),
            Code::NotFound,
            "UNKNOWN_ACCOUNT",
        ),
        (
            with(&|r| r.organisation_id = "ghost-org".into()),
            Code::NotFound,
            "UNKNOWN_ACCOUNT",
        ),
        (
            with(&|r| r.organisation_id = "p".into()),
            Code::FailedPrecondition,
            "WRONG_ACCOUNT_KIND",
        ),
        (
            with(&|r| {
                r.service_date = "2026-11-17".into();
                r.started_at = Some(ts("2026-11-17T21:00:00Z"));
                r.ended_at = Some(ts("2026-11-17T23:00:00Z"));
                r.hours = "4.5".into();
            }),
            Code::InvalidArgument,
            "HOURS_EXCEED_INTERVAL",
        ),
        (
            with(&|r| {
                r.service_date = "2026-11-17".into();
                r.started_at = Some(ts("2026-11-17T20:00:00Z"));
                r.ended_at = Some(ts("2026-11-18T01:00:00Z"));
                r.hours = "4.5".into();
            }),
            Code::FailedPrecondition,
            "HOURS_PER_DAY_EXCEEDED",
        ),
        (
            with(&|r| {
                r.service_date = "2026-11-16".into();
                r.started_at = Some(ts("2026-11-17T19:00:00Z"));
                r.ended_at = Some(ts("2026-11-17T21:00:00Z"));
            }),
            Code::InvalidArgument,
            "SERVICE_DATE_MISMATCH",
        ),
        (
            with(&|r| {
                r.service_date = "2026-11-17".into();
                r.started_at = Some(ts("2026-11-17T19:00:00Z"));
                r.ended_at = Some(ts("2026-11-17T21:00:00Z"));
            }),
            Code::FailedPrecondition,
            "OVERLAPPING_SERVICE",
        ),
    ];
    for (req, code, reason) in cases {
        let desc = format!("{req:?}");
        assert_eq!(
            why(c.deposit_hours(req).await),
            (code, reason.to_owned()),
            "{desc}"
        );
    }

    let unknown_tx = "00000000-0000-8000-8000-000000000000";
    assert_eq!(
        why(c.spend_hours(spend("s1", "v2", "1.5")).await),
        (Code::FailedPrecondition, "INSUFFICIENT_HOURS".into())
    );
    assert_eq!(
        why(c.spend_hours(spend("s1", "v1", "1.001")).await),
        (Code::InvalidArgument, "AMOUNT_SCALE_EXCEEDED".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(reverse("r1", "v1", &rev.transaction_id))
            .await),
        (Code::FailedPrecondition, "REVERSAL_OF_REVERSAL".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(reverse("r2", "v1", &dep.transaction_id))
            .await),
        (Code::FailedPrecondition, "ALREADY_REVERSED".into())
    );
    assert_eq!(
        why(c.reverse_transaction(reverse("r3", "v1", unknown_tx)).await),
        (Code::NotFound, "UNKNOWN_TRANSACTION".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(reverse("r4", "v1", "not-a-uuid"))
            .await),
        (Code::InvalidArgument, "FIELD_MALFORMED".into())
    );
    assert_eq!(
        why(c
            .register_account(register("g1", "v1", pb::AccountKind::Volunteer))
            .await),
        (Code::AlreadyExists, "ACCOUNT_ALREADY_EXISTS".into())
    );
    assert_eq!(
        why(c
            .register_account(register("g2", "system:expiry", pb::AccountKind::Project))
            .await),
        (Code::InvalidArgument, "ACCOUNT_ID_RESERVED".into())
    );
    assert_eq!(
        why(c
            .register_account(register("g3", "v9", pb::AccountKind::Unspecified))
            .await),
        (Code::InvalidArgument, "FIELD_MISSING".into())
    );
    let mut no_region = register("g4", "v9", pb::AccountKind::Volunteer);
    no_region.region_code = "Hangzhou!".into();
    assert_eq!(
        why(c.register_account(no_region).await),
        (Code::InvalidArgument, "REGION_MALFORMED".into())
    );
    assert_eq!(
        why(c
            .close_account(pb::CloseAccountRequest {
                request_id: "c2".into(),
                account_id: "m".into(),
                reason: "again".into()
            })
            .await),
        (Code::FailedPrecondition, "ACCOUNT_CLOSED".into())
    );
    assert_eq!(
        why(c
            .close_account(pb::CloseAccountRequest {
                request_id: "c3".into(),
                account_id: "v2".into(),
                reason: String::new()
            })
            .await),
        (Code::InvalidArgument, "ID_EMPTY".into())
    );
    assert_eq!(
        why(c
            .transfer_hours(pb::TransferHoursRequest {
                request_id: "t1".into(),
                from_volunteer_id: "v1".into(),
                to_volunteer_id: "v1".into(),
                relation: pb::FamilyRelation::Spouse as i32,
                hours: "1".into(),
            })
            .await),
        (Code::InvalidArgument, "SELF_TRANSFER".into())
    );
    assert_eq!(
        why(c
            .donate_hours(pb::DonateHoursRequest {
                request_id: "d1".into(),
                volunteer_id: "v1".into(),
                project_id: "v2".into(),
                hours: "1".into()
            })
            .await),
        (Code::FailedPrecondition, "WRONG_ACCOUNT_KIND".into())
    );
    assert_eq!(
        why(c
            .exchange_hours(pb::ExchangeHoursRequest {
                request_id: "x1".into(),
                volunteer_id: "v1".into(),
                hours: "1".into(),
                expected_rate_version: 7
            })
            .await),
        (Code::FailedPrecondition, "EXCHANGE_RATE_CHANGED".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(reverse("r5", "v1", &reg_v1.transaction_id))
            .await),
        (Code::FailedPrecondition, "NOT_REVERSIBLE".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(reverse("r6", "v1", &sent.transaction_id))
            .await),
        (Code::FailedPrecondition, "REVERSAL_ON_WRONG_ACCOUNT".into())
    );
    assert_eq!(
        why(c
            .reverse_transaction(pb::ReverseTransactionRequest {
                reason: "two\nlines".into(),
                ..reverse("r7", "v2", &sent.transaction_id)
            })
            .await),
        (Code::InvalidArgument, "TEXT_CONTROL_CHARACTER".into())
    );
    assert_eq!(
        why(c
            .deposit_hours(deposit(
                "d-closed",
                "v3",
                "1",
                "2026-11-19T08:00:00Z",
                "2026-11-19T09:00:00Z"
            ))
            .await),
        (Code::FailedPrecondition, "ACCOUNT_CLOSED".into())
    );
    assert_eq!(server.head().await, head, "no rejection wrote anything");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_runs_every_line_and_one_bad_line_fails_alone() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    use pb::command::Command as C;
    let line = |c: C| pb::Command { command: Some(c) };
    let batch = pb::SubmitBatchRequest {
        commands: vec![
            line(C::RegisterAccount(register(
                "b-reg",
                "v3",
                pb::AccountKind::Volunteer,
            ))),
            line(C::DepositHours(deposit(
                "b-dep",
                "v3",
                "3",
                "2026-11-19T08:00:00Z",
                "2026-11-19T11:00:00Z",
            ))),
            line(C::SpendHours(spend("b-sp1", "v3", "5"))),
            pb::Command { command: None },
            line(C::SpendHours(spend("b-sp2", "v3", "2.5"))),
        ],
    };
    let results = c
        .submit_batch(batch.clone())
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 5);
    let kind = |r: &pb::BatchResult| match r.result.as_ref().unwrap() {
        pb::batch_result::Result::Ok(ok) => format!("ok replayed={}", ok.replayed),
        pb::batch_result::Result::Error(e) => {
            format!("{} {}", Code::from_i32(e.code) as i32, e.reason)
        }
    };
    let got: Vec<String> = results.iter().map(kind).collect();
    let fp = Code::FailedPrecondition as i32;
    let ia = Code::InvalidArgument as i32;
    assert_eq!(
        got,
        vec![
            "ok replayed=false".to_owned(),
            "ok replayed=false".to_owned(),
            format!("{fp} INSUFFICIENT_HOURS"),
            format!("{ia} FIELD_MISSING"),
            "ok replayed=false".to_owned(),
        ]
    );
    // Resending the whole file is safe: successes replay, refusals are decided again.
    let again: Vec<String> = c
        .submit_batch(batch)
        .await
        .unwrap()
        .into_inner()
        .results
        .iter()
        .map(kind)
        .collect();
    assert_eq!(again[0], "ok replayed=true");
    assert_eq!(again[4], "ok replayed=true");
    assert_eq!(again[2], format!("{fp} INSUFFICIENT_HOURS"));

    let head = server.head().await;
    let big = pb::SubmitBatchRequest {
        commands: vec![
            line(C::SpendHours(spend("x", "v3", "0.01")));
            ledger_server::BATCH_COMMANDS_MAX + 1
        ],
    };
    let s = c.submit_batch(big).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("batch_commands_max is 1000"),
        "{}",
        s.message()
    );
    assert_eq!(
        s.get_details_error_info().unwrap().reason,
        "BATCH_TOO_LARGE"
    );
    assert_eq!(
        why(c
            .submit_batch(pb::SubmitBatchRequest { commands: vec![] })
            .await)
        .1,
        "BATCH_EMPTY"
    );
    assert_eq!(server.head().await, head);
    server.stop().await;
}

/// Each line's outcome as "ok v<stream version>" or its refusal's reason.
fn outcomes(results: &[pb::BatchResult]) -> Vec<String> {
    results
        .iter()
        .map(
            |r| match r.result.as_ref().expect("every line has a result") {
                pb::batch_result::Result::Ok(ok) => format!("ok v{}", ok.stream_version),
                pb::batch_result::Result::Error(e) => e.reason.clone(),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_the_order_of_lines_that_depend_on_each_other() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    use pb::command::Command as C;
    let line = |c: C| pb::Command { command: Some(c) };
    // Lines run concurrently where they touch no common account, so repeat the file
    // with fresh accounts to give a wrong order a chance to show.
    for round in 0..20 {
        let (a, b) = (format!("r{round}a"), format!("r{round}b"));
        let r = |name: &str| format!("r{round}-{name}");
        let batch = pb::SubmitBatchRequest {
            commands: vec![
                line(C::RegisterAccount(register(
                    &r("reg-a"),
                    &a,
                    pb::AccountKind::Volunteer,
                ))),
                line(C::RegisterAccount(register(
                    &r("reg-b"),
                    &b,
                    pb::AccountKind::Volunteer,
                ))),
                // Needs a's registration.
                line(C::DepositHours(deposit(
                    &r("dep"),
                    &a,
                    "3",
                    "2026-11-19T08:00:00Z",
                    "2026-11-19T11:00:00Z",
                ))),
                // Needs the deposit; credits b by receipt.
                line(C::TransferHours(pb::TransferHoursRequest {
                    request_id: r("tr"),
                    from_volunteer_id: a.clone(),
                    to_volunteer_id: b.clone(),
                    relation: pb::FamilyRelation::Sibling as i32,
                    hours: "2".into(),
                })),
                // b spends exactly what it received, then a hundredth too much.
                line(C::SpendHours(spend(&r("b-sp1"), &b, "2"))),
                line(C::SpendHours(spend(&r("b-sp2"), &b, "0.01"))),
                // Refused at the edge and by the rules in the middle: the rest still run.
                pb::Command { command: None },
                line(C::SpendHours(spend(&r("a-sp1"), &a, "1.01"))),
                line(C::SpendHours(spend(&r("a-sp2"), &a, "1"))),
                // The deposit's request id with other content (a deposit the rules would
                // take), on another account: the earlier line keeps it.
                line(C::DepositHours(deposit(
                    &r("dep"),
                    &b,
                    "1",
                    "2026-11-18T08:00:00Z",
                    "2026-11-18T09:00:00Z",
                ))),
            ],
        };
        let results = c.submit_batch(batch).await.unwrap().into_inner().results;
        assert_eq!(
            outcomes(&results),
            [
                "ok v0",
                "ok v0",
                "ok v1",
                "ok v2",
                "ok v2",
                "INSUFFICIENT_HOURS",
                "FIELD_MISSING",
                "INSUFFICIENT_HOURS",
                "ok v3",
                "REQUEST_ID_REUSED",
            ],
            "round {round}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_independent_lines_of_a_batch_all_land_in_their_slots() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    use pb::command::Command as C;
    let line = |c: C| pb::Command { command: Some(c) };
    let volunteers = 200;
    let mut commands = Vec::new();
    for k in 0..volunteers {
        let v = format!("many-{k}");
        commands.push(line(C::RegisterAccount(register(
            &format!("reg-{v}"),
            &v,
            pb::AccountKind::Volunteer,
        ))));
        // Two deposits per volunteer: the second waits for the first.
        for (n, (start, end)) in [
            ("2026-11-18T08:00:00Z", "2026-11-18T09:00:00Z"),
            ("2026-11-19T08:00:00Z", "2026-11-19T09:30:00Z"),
        ]
        .into_iter()
        .enumerate()
        {
            let hours = if n == 0 { "1" } else { "1.5" };
            commands.push(line(C::DepositHours(deposit(
                &format!("dep{n}-{v}"),
                &v,
                hours,
                start,
                end,
            ))));
        }
        if k == volunteers / 2 {
            // A line for an account nobody registered, in the middle.
            commands.push(line(C::DepositHours(deposit(
                "dep-nobody",
                "nobody",
                "1",
                "2026-11-18T08:00:00Z",
                "2026-11-18T09:00:00Z",
            ))));
        }
    }
    let results = c
        .submit_batch(pb::SubmitBatchRequest { commands })
        .await
        .unwrap()
        .into_inner()
        .results;
    let got = outcomes(&results);
    let mut want = Vec::new();
    for k in 0..volunteers {
        want.extend(["ok v0", "ok v1", "ok v2"]);
        if k == volunteers / 2 {
            want.push("UNKNOWN_ACCOUNT");
        }
    }
    assert_eq!(got, want);
    // Every volunteer holds both deposits: spending 2.5 works, a hundredth more not.
    let spends = (0..volunteers)
        .flat_map(|k| {
            let v = format!("many-{k}");
            [
                line(C::SpendHours(spend(&format!("sp-{v}"), &v, "2.5"))),
                line(C::SpendHours(spend(&format!("sp2-{v}"), &v, "0.01"))),
            ]
        })
        .collect();
    let results = c
        .submit_batch(pb::SubmitBatchRequest { commands: spends })
        .await
        .unwrap()
        .into_inner()
        .results;
    let got = outcomes(&results);
    let want: Vec<&str> = (0..volunteers)
        .flat_map(|_| ["ok v3", "INSUFFICIENT_HOURS"])
        .collect();
    assert_eq!(got, want);
    server.stop().await;
}

/// A batch runs to its end even when its client hangs up: its lines run in one task
/// of the batch's own (`submit_batch`), not in the RPC's future, which a hang-up
/// drops. Here every append takes 400 ms and the client gives up after 200 ms, in the
/// batch's first wave (registrations); the second wave (deposits that need them)
/// still lands, so the client's retry with the same request ids only replays.
#[tokio::test]
async fn a_batch_whose_client_hangs_up_still_runs_every_line() {
    let memory = MemoryLog::new();
    let slow = ledger_core::log::faulty::FaultyLog::over(memory.clone())
        .delaying_appends(std::time::Duration::from_millis(400));
    let s = timebank_tests::spawn_server(Arc::new(slow) as Arc<dyn EventLog>, NOW).await;
    let mut c = LedgerCommandsClient::new(s.channel.clone());
    use pb::command::Command as C;
    let line = |c: C| pb::Command { command: Some(c) };
    let volunteers: Vec<String> = (0..8).map(|k| format!("hang-{k}")).collect();
    let mut commands = vec![line(C::RegisterAccount(register(
        "reg-org",
        "org",
        pb::AccountKind::Organisation,
    )))];
    for v in &volunteers {
        commands.push(line(C::RegisterAccount(register(
            &format!("reg-{v}"),
            v,
            pb::AccountKind::Volunteer,
        ))));
        commands.push(line(C::DepositHours(deposit(
            &format!("dep-{v}"),
            v,
            "1",
            "2026-11-18T08:00:00Z",
            "2026-11-18T09:00:00Z",
        ))));
    }
    let batch = pb::SubmitBatchRequest { commands };
    let hung_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        c.submit_batch(batch.clone()),
    )
    .await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    // Wait (up to 20 s) for the second wave: every volunteer's deposit in the log.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for v in &volunteers {
        let stream = ledger_core::domain::account::AccountId::new(v.clone())
            .unwrap()
            .stream();
        loop {
            let events = memory.read_stream(&stream, 0, 16).await.unwrap();
            if events.iter().any(|e| e.event_type == "HoursDeposited.v1") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{v}'s deposit never landed after the hang-up: {:?}",
                events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let again = c.submit_batch(batch).await.unwrap().into_inner().results;
    let replayed = |r: &pb::BatchResult| matches!(r.result, Some(pb::batch_result::Result::Ok(ref ok)) if ok.replayed);
    assert_eq!(again.len(), 1 + 2 * volunteers.len());
    assert!(again.iter().all(replayed), "{:?}", outcomes(&again));
    drop(c);
    let _ = s.stop.send(());
    s.task.await.unwrap().unwrap();
}

/// A line whose command panics (a broken invariant asserts, it is not a value) is that
/// line's INTERNAL; the batch's other lines run and answer as ever. Here every spend's
/// append panics.
#[tokio::test]
async fn a_line_that_panics_fails_alone() {
    let memory = MemoryLog::new();
    let log = ledger_core::log::faulty::FaultyLog::over(memory.clone())
        .panicking_on_appends_of("HoursSpent.v1");
    let s = timebank_tests::spawn_server(Arc::new(log) as Arc<dyn EventLog>, NOW).await;
    let mut c = LedgerCommandsClient::new(s.channel.clone());
    setup(&mut c).await;
    use pb::command::Command as C;
    let line = |c: C| pb::Command { command: Some(c) };
    let dep = |req: &str, who: &str| {
        line(C::DepositHours(deposit(
            req,
            who,
            "2",
            "2026-11-18T08:00:00Z",
            "2026-11-18T10:00:00Z",
        )))
    };
    let batch = pb::SubmitBatchRequest {
        commands: vec![
            dep("p-d1", "v1"),
            line(C::SpendHours(spend("p-s1", "v1", "1"))),
            dep("p-d2", "v2"),
            line(C::SpendHours(spend("p-s2", "v2", "1"))),
        ],
    };
    let results = c.submit_batch(batch).await.unwrap().into_inner().results;
    assert_eq!(
        outcomes(&results),
        vec!["ok v1", "INTERNAL", "ok v1", "INTERNAL"]
    );
    // The other lines' events are in the log, and the server goes on serving.
    let v2 = ledger_core::domain::account::AccountId::new("v2")
        .unwrap()
        .stream();
    let events = memory.read_stream(&v2, 0, 16).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["AccountRegistered.v1", "HoursDeposited.v1"]
    );
    c.register_account(register("p-reg", "v9", pb::AccountKind::Volunteer))
        .await
        .unwrap();
    drop(c);
    let _ = s.stop.send(());
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_on() {
    let server = Server::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "timebank.v1.LedgerCommands".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let reflection = ServerReflectionClient::new(server.channel.clone());
    // One request on the reflection stream, its one answer.
    let ask = |request: MessageRequest| {
        let mut reflection = reflection.clone();
        async move {
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            };
            reflection
                .server_reflection_info(tokio_stream::iter(vec![request]))
                .await
                .unwrap()
                .into_inner()
                .message()
                .await
                .unwrap()
                .unwrap()
                .message_response
        }
    };
    let Some(MessageResponse::ListServicesResponse(list)) =
        ask(MessageRequest::ListServices(String::new())).await
    else {
        panic!("no list of services")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"timebank.v1.LedgerCommands".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    // The error details every refusal carries are described too, so a reflection
    // client (grpcurl) prints an ErrorInfo's reason instead of base64; and their
    // files' imports can be fetched.
    for request in [
        MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into()),
        MessageRequest::FileContainingSymbol("google.rpc.RetryInfo".into()),
        MessageRequest::FileByFilename("google/protobuf/duration.proto".into()),
    ] {
        let answer = ask(request.clone()).await;
        assert!(
            matches!(&answer, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()),
            "{request:?}: {answer:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_entry_point_serves_the_embedded_log_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = |addr: std::net::SocketAddr| {
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ledger_server::RunConfig {
            data_dir: dir.path().to_owned(),
            listen: addr,
            ledger: LedgerConfig::default(),
            store: None,
            serve: Default::default(),
            star_policies: Default::default(),
            commit_delay: None,
        };
        let task = tokio::spawn(ledger_server::run(config, async move {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    // Find a free port, then let `run` bind it.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    async fn connect(
        addr: std::net::SocketAddr,
        task: &mut tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
    ) -> LedgerCommandsClient<Channel> {
        for _ in 0..250 {
            if task.is_finished() {
                panic!("server stopped: {:?}", task.await);
            }
            if let Ok(c) = LedgerCommandsClient::connect(format!("http://{addr}")).await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("server did not come up");
    }
    let (stop, mut task) = start(addr);
    let mut c = connect(addr, &mut task).await;
    let reg = c
        .register_account(register("reg-v1", "v1", pb::AccountKind::Volunteer))
        .await
        .unwrap()
        .into_inner();
    drop(c);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    let (stop, mut task) = start(addr);
    let mut c = connect(addr, &mut task).await;
    let again = c
        .register_account(register("reg-v1", "v1", pb::AccountKind::Volunteer))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.transaction_id, reg.transaction_id);
    assert_eq!(again.position, reg.position);
    drop(c);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_commands_finish() {
    let server = Server::start().await;
    let mut c = server.client.clone();
    setup(&mut c).await;
    let request = |i: u32| {
        let start = format!("2026-11-{:02}T{:02}:00:00Z", 10 + i / 20, i % 20);
        let end = format!("2026-11-{:02}T{:02}:30:00Z", 10 + i / 20, i % 20);
        deposit(&format!("d{i}"), "v1", "0.5", &start, &end)
    };
    let mut calls = Vec::new();
    for i in 0..40u32 {
        let mut c = server.client.clone();
        let r = request(i);
        calls.push(tokio::spawn(async move { c.deposit_hours(r).await }));
    }
    tokio::task::yield_now().await;
    let log = server.log.clone();
    server.stop().await;
    // Every call ends: a success is in the log; a failure is a clean status, an
    // unknown outcome to the client.
    let mut acknowledged = Vec::new();
    let mut unknown = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(r) => {
                let p = r.into_inner().position.unwrap();
                let page = log
                    .read_all(
                        ledger_core::log::ReadFrom::Start,
                        ledger_core::log::limits::READ_EVENTS_MAX,
                    )
                    .await
                    .unwrap();
                assert!(page.iter().any(|e| e.position.commit() == p.commit));
                acknowledged.push(i as u32);
            }
            // Refused before it was accepted (connection closed, GOAWAY), or a
            // response lost at shutdown for a command that was written (seen once in
            // a few hundred runs under load before connections closed by lingering,
            // `ledger-server/src/linger.rs`: a TCP reset can overtake the last
            // response): either way the client does not know, and its retry with the
            // same request id settles it (below).
            Err(s) => {
                eprintln!("not acknowledged: {:?} {}", s.code(), s.message());
                unknown.push(i as u32);
            }
        }
    }
    eprintln!("acknowledged {} of 40", acknowledged.len());
    let v1 = ledger_core::domain::account::AccountId::new("v1")
        .unwrap()
        .stream();
    let written = log.read_stream(&v1, 0, 100).await.unwrap().len() - 1;
    assert!(
        written >= acknowledged.len(),
        "every acknowledged deposit was written"
    );
    // A restart over the same log; each unacknowledged call retried: a deposit that
    // was written comes back as the original (replayed), one that was not is
    // written now, and no request is written twice.
    let again = Server::start_over(log.clone()).await;
    let mut c = again.client.clone();
    let mut replayed = 0;
    for i in &unknown {
        let r = c.deposit_hours(request(*i)).await.unwrap().into_inner();
        replayed += usize::from(r.replayed);
    }
    again.stop().await;
    eprintln!("written without an acknowledgement: {replayed}");
    assert_eq!(
        replayed,
        written - acknowledged.len(),
        "the retries replay exactly the deposits written without an acknowledgement"
    );
    assert_eq!(
        log.read_stream(&v1, 0, 100).await.unwrap().len(),
        41,
        "each of the 40 deposits once (plus the registration)"
    );
}

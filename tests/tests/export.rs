//! `ledger-server export` as an auditor uses it: seed a small demo city, export it to a
//! file the way the binary does, and recompute every account's balances, lifetime
//! hours and star level **from the JSON lines alone** (`serde_json::Value` and
//! `rust_decimal`, no ledger types), then compare them with what the server answers
//! over gRPC. Also: the export is deterministic, resumes after a position, and every
//! line's `hash` is recomputable from the line and chains per stream, on a log of JSON
//! payloads and on one of binary payloads (whose lines carry `stored_data`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use ledger_core::app::{FixedClock, Handler, LedgerConfig};
use ledger_core::domain::account::{AccountId, AccountKind};
use ledger_core::domain::commands::{
    AuthorizeRedemption, CaptureRedemption, Command, DepositHours, ExchangeHours,
    ExpireRedemptionHold, GrantConsent, RegisterAccount, ServeCreditReport, ServedReport,
    VoidRedemption, WithdrawConsent,
};
use ledger_core::domain::events::{HourKind, LedgerEvent, PayloadEncoding};
use ledger_core::domain::ids::{
    ActivityId, Category, Purpose, RequestId, TransactionId, VerifierId,
};
use ledger_core::domain::token::RedemptionClaims;
use ledger_core::domain::units::{Hours, Points};
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, StreamName};
use ledger_server::demo::{self, DemoConfig};
use ledger_server::export::{self, ExportArgs, ExportSummary};
use ledger_server::partners::banks::ReportJson;
use ledger_server::pb;
use ledger_server::pb::ledger_queries_client::LedgerQueriesClient;
use projections::credit;
use projections::star::StarPolicy;
use rust_decimal::Decimal;
use serde_json::Value;

/// Small enough to seed and export in a few seconds in a debug build, big enough for
/// every kind of step (see tests/demo.rs).
const VOLUNTEERS: u32 = 300;
const SEED: u64 = 2018;
/// The query server's clock; it only decides "this year", which is not compared.
const NOW: &str = "2026-11-20T12:00:00Z";
/// Days of 10 hours the top-up deposits (every sixth as honour hours): 350 hours.
const TOP_UP_DAYS: u64 = 35;
/// Star thresholds of policy `national-2024`, the server's default (docs/events.md).
const NATIONAL_2024: [u32; 5] = [100, 300, 600, 1000, 1500];

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn handler_at(log: &Arc<dyn EventLog>, now: DateTime<Utc>) -> Handler {
    Handler::new(
        log.clone(),
        Arc::new(FixedClock::new(now)),
        LedgerConfig::default(),
    )
}

async fn exec(handler: &Handler, command: Command) -> TransactionId {
    let name = command.name();
    handler
        .execute(&command)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .transaction
}

fn id(text: &str) -> AccountId {
    AccountId::new(text).unwrap()
}

fn req(text: &str) -> RequestId {
    RequestId::new(text).unwrap()
}

/// Nobody in a small city serves 100 hours in its one year: top one volunteer up to
/// two stars, honour hours included, so star levels are audited too.
async fn top_up(log: &Arc<dyn EventLog>, volunteer: &str, organisation: &str) {
    let handler = handler_at(log, instant(NOW));
    for d in 0..TOP_UP_DAYS {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Days::new(d);
        let start = day.and_hms_opt(1, 0, 0).unwrap().and_utc();
        let kind = if d % 6 == 5 {
            HourKind::Honour
        } else {
            HourKind::Credit
        };
        let deposit = DepositHours {
            request_id: req(&format!("top-up-{d}")),
            volunteer: id(volunteer),
            organisation: id(organisation),
            activity: ActivityId::new(format!("top-up-{day}")).unwrap(),
            service_date: day,
            started_at: start,
            ended_at: start + Duration::hours(10),
            category: Category::new("elderly-care").unwrap(),
            hours: Hours::parse("10").unwrap(),
            kind,
            verifier: VerifierId::new("staff-audit").unwrap(),
        };
        exec(&handler, Command::DepositHours(deposit)).await;
    }
}

/// The partner events the demo city does not generate: a bank with a consent, an
/// inquiry holding a real credit report, a withdrawal; redemption holds captured in
/// part, voided, expired and left open (so points are held at the export's head).
async fn partner_activity(log: &Arc<dyn EventLog>, volunteer: &str, merchant: &str) {
    let now = instant(NOW);
    let handler = handler_at(log, now);
    let (v, m, bank) = (id(volunteer), id(merchant), id("bank-001"));
    let purpose = Purpose::new("volunteer-loan").unwrap();
    let register = RegisterAccount {
        request_id: req("audit-bank"),
        account: bank.clone(),
        kind: AccountKind::Bank,
    };
    exec(&handler, Command::RegisterAccount(register)).await;
    let exchange = ExchangeHours {
        request_id: req("audit-exchange"),
        volunteer: v.clone(),
        hours: Hours::parse("20").unwrap(),
        expected_rate_version: None,
    };
    exec(&handler, Command::ExchangeHours(exchange)).await;
    let consent = GrantConsent {
        request_id: req("audit-consent"),
        volunteer: v.clone(),
        bank: bank.clone(),
        purpose: purpose.clone(),
        expires_at: now + Duration::days(30),
    };
    exec(&handler, Command::GrantConsent(consent)).await;
    // A real report, computed as the Banks service computes it.
    let events = credit::read_account_stream(log.as_ref(), &v).await.unwrap();
    let report = credit::credit_report(
        &v,
        &events,
        now,
        chrono::FixedOffset::east_opt(0).expect("zero offset"),
        "",
        &StarPolicy::national(),
    )
    .unwrap();
    let inquiry = ServeCreditReport {
        request_id: req("audit-inquiry"),
        volunteer: v.clone(),
        bank: bank.clone(),
        purpose,
        served: ServedReport {
            caller: "bank-001-loans".into(),
            model_version: report.model_version.to_owned(),
            score: report.score,
            report: serde_json::to_string(&ReportJson::of(&report)).unwrap(),
            computed_from: Default::default(),
        },
    };
    exec(&handler, Command::ServeCreditReport(inquiry)).await;
    let withdraw = WithdrawConsent {
        request_id: req("audit-withdraw"),
        volunteer: v.clone(),
        bank,
    };
    exec(&handler, Command::WithdrawConsent(withdraw)).await;

    let hold = |n: u8, points: &str| {
        Command::AuthorizeRedemption(AuthorizeRedemption {
            request_id: req(&format!("audit-hold-{n}")),
            merchant: m.clone(),
            token: RedemptionClaims {
                id: uuid::Uuid::from_bytes([n; 16]),
                volunteer: v.clone(),
                points_max: Points::parse("100").unwrap(),
                expires_at: now + Duration::hours(1),
            },
            points: Points::parse(points).unwrap(),
        })
    };
    let captured = exec(&handler, hold(1, "50")).await;
    let capture = CaptureRedemption {
        request_id: req("audit-capture"),
        merchant: m.clone(),
        volunteer: v.clone(),
        hold: captured,
        points: Points::parse("30.5").unwrap(),
    };
    exec(&handler, Command::CaptureRedemption(capture)).await;
    let voided = exec(&handler, hold(2, "40")).await;
    let void = VoidRedemption {
        request_id: req("audit-void"),
        merchant: m.clone(),
        volunteer: v.clone(),
        hold: voided,
    };
    exec(&handler, Command::VoidRedemption(void)).await;
    let expiring = exec(&handler, hold(3, "10")).await;
    exec(&handler, hold(4, "25")).await; // left open: held at the head
    let later = handler_at(log, now + Duration::minutes(20));
    let expire = ExpireRedemptionHold::new(v.clone(), expiring);
    exec(&later, Command::ExpireRedemptionHold(expire)).await;
}

/// The demo city, its payloads in `encoding`, seeded into an embedded log in `dir`
/// (left open).
async fn seed_city(
    dir: &Path,
    encoding: PayloadEncoding,
) -> (ledger_store::EmbeddedLog, demo::SeedReport) {
    let log = ledger_server::open_log(dir).unwrap();
    let config = DemoConfig {
        seed: SEED,
        volunteers: VOLUNTEERS,
        progress: false,
        payload_encoding: encoding,
        ..DemoConfig::default()
    };
    let report = demo::seed(Arc::new(log.clone()) as Arc<dyn EventLog>, &config)
        .await
        .unwrap();
    assert_eq!(report.rejected(), 0, "{}", report.render());
    (log, report)
}

/// Seed the demo city into a fresh data directory and close its log.
async fn seeded_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = seed_city(dir.path(), PayloadEncoding::Json).await;
    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    top_up(
        &shared,
        &report.sample.volunteer,
        &report.sample.organisation,
    )
    .await;
    partner_activity(&shared, &report.sample.volunteer, &report.sample.merchant).await;
    log.close();
    dir
}

/// The arguments of `ledger-server export --data-dir DIR --out FILE`: the whole log.
fn whole_log_to(dir: &Path, out: &Path) -> ExportArgs {
    ExportArgs {
        data_dir: dir.to_path_buf(),
        store: "embedded".into(),
        out: out.display().to_string(),
        from_position: None,
    }
}

/// `ledger-server export --data-dir DIR --out FILE [--from-position P]`, as the binary
/// runs it.
async fn export_file(
    dir: &Path,
    name: &str,
    from: Option<&str>,
) -> (PathBuf, ExportSummary, String) {
    let out = dir.join(name);
    let args = ExportArgs {
        data_dir: dir.to_path_buf(),
        store: "embedded".into(),
        out: out.display().to_string(),
        from_position: from.map(|p| export::parse_position(p).unwrap()),
    };
    let summary = export::run(&args).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !dir.join(format!("{name}.partial")).exists(),
        "the partial file is renamed into place"
    );
    (out, summary, text)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(
        v.as_str()
            .unwrap_or_else(|| panic!("amount {v} is a string")),
    )
    .unwrap()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is a string"))
        .to_owned()
}

/// What an auditor derives for one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Audited {
    kind: String,
    closed: bool,
    spendable_hours: Decimal,
    honour_hours: Decimal,
    /// The balance: available plus held.
    points: Decimal,
    /// Points kept by open redemption holds (authorised, not yet captured, voided or
    /// recorded as expired).
    points_held: Decimal,
    lifetime_credit_hours: Decimal,
    lifetime_honour_hours: Decimal,
}

impl Audited {
    fn stars(&self) -> u32 {
        let lifetime = self.lifetime_credit_hours + self.lifetime_honour_hours;
        NATIONAL_2024
            .iter()
            .take_while(|t| lifetime >= Decimal::from(**t))
            .count() as u32
    }
}

/// The auditor's program: balances from postings, lifetime hours from standing
/// deposits, using nothing but the lines.
fn recompute(lines: &[Value]) -> BTreeMap<String, Audited> {
    let mut accounts: BTreeMap<String, Audited> = BTreeMap::new();
    // Deposits by transaction id: (volunteer, kind, hours), to take reversed ones back.
    let mut deposits: BTreeMap<String, (String, String, Decimal)> = BTreeMap::new();
    // Open redemption holds by hold id: (volunteer, points).
    let mut holds: BTreeMap<String, (String, Decimal)> = BTreeMap::new();
    for line in lines {
        let data = &line["data"];
        match line["type"].as_str().unwrap() {
            "AccountRegistered.v1" => {
                let a = accounts.entry(text(&data["account"])).or_default();
                a.kind = text(&data["kind"]);
            }
            "AccountClosed.v1" => {
                accounts.entry(text(&data["account"])).or_default().closed = true;
            }
            "HoursDeposited.v1" => {
                let (volunteer, kind, hours) = (
                    text(&data["volunteer"]),
                    text(&data["kind"]),
                    dec(&data["hours"]),
                );
                let a = accounts.entry(volunteer.clone()).or_default();
                match kind.as_str() {
                    "credit" => a.lifetime_credit_hours += hours,
                    "honour" => a.lifetime_honour_hours += hours,
                    other => panic!("deposit kind {other}"),
                }
                deposits.insert(text(&data["transaction"]), (volunteer, kind, hours));
            }
            "TransactionReversed.v1" => {
                if let Some((volunteer, kind, hours)) = deposits.remove(&text(&data["original"])) {
                    let a = accounts.entry(volunteer).or_default();
                    match kind.as_str() {
                        "credit" => a.lifetime_credit_hours -= hours,
                        _ => a.lifetime_honour_hours -= hours,
                    }
                }
            }
            "RedemptionAuthorized.v1" => {
                let (volunteer, points) = (text(&data["volunteer"]), dec(&data["points"]));
                accounts.entry(volunteer.clone()).or_default().points_held += points;
                holds.insert(text(&data["hold"]), (volunteer, points));
            }
            "RedemptionCaptured.v1" | "RedemptionVoided.v1" | "RedemptionHoldExpired.v1" => {
                let (volunteer, points) = holds
                    .remove(&text(&data["hold"]))
                    .unwrap_or_else(|| panic!("closes a hold that is not open: {line}"));
                accounts.entry(volunteer).or_default().points_held -= points;
            }
            _ => {}
        }
        // Double entry: every transaction's legs sum to zero per unit; receipts
        // (HoursReceived) have no postings, so each transaction counts once.
        let Some(postings) = data.get("postings").and_then(Value::as_array) else {
            continue;
        };
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for p in postings {
            let (account, unit, amount) =
                (text(&p["account"]), text(&p["unit"]), dec(&p["amount"]));
            assert!(amount.scale() <= 2, "at most two places: {p}");
            *sums.entry(unit.clone()).or_default() += amount;
            if account.starts_with("system:") {
                continue;
            }
            let a = accounts.entry(account).or_default();
            match unit.as_str() {
                "hours" => a.spendable_hours += amount,
                "honour_hours" => a.honour_hours += amount,
                "points" => a.points += amount,
                other => panic!("unit {other} in {line}"),
            }
        }
        assert!(
            sums.values().all(Decimal::is_zero),
            "unbalanced postings {sums:?} in {line}"
        );
    }
    accounts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_recomputed_from_the_export_alone_match_the_server() {
    let dir = seeded_dir().await;
    let (_, summary, exported) = export_file(dir.path(), "audit.jsonl", None).await;
    let lines = lines(&exported);
    assert_eq!(lines.len() as u64, summary.events);
    let head = summary.head.clone().expect("the city is not empty");
    assert_eq!(
        lines.last().unwrap()["position"]["commit"],
        head.position.commit()
    );
    // The range digest printed, recomputed from the lines' hashes alone.
    let mut digest = [0u8; 32];
    for l in &lines {
        let mut both = digest.to_vec();
        both.extend(hex::decode(l["hash"].as_str().unwrap()).unwrap());
        digest = *blake3::hash(&both).as_bytes();
    }
    assert_eq!(head.range_digest, hex::encode(digest));
    let audited = recompute(&lines);
    let kinds = |k: &str| audited.values().filter(|a| a.kind == k).count();
    assert_eq!(kinds("volunteer"), VOLUNTEERS as usize);
    assert!(kinds("organisation") > 0 && kinds("project") > 0 && kinds("merchant") > 0);
    assert!(kinds("bank") >= 1);
    assert!(
        audited.values().any(|a| a.points > Decimal::ZERO)
            && audited.values().any(|a| a.honour_hours > Decimal::ZERO)
            && audited.values().any(|a| a.closed)
            && audited.values().any(|a| a.stars() == 2)
            && audited.values().any(|a| a.points_held > Decimal::ZERO),
        "the city exercises points, honour hours, closures, stars and holds"
    );

    assert_served_as_audited(dir.path(), &audited, &head).await;
}

/// The server, on the log of `dir`, asked to be at least as fresh as the export's
/// head, answers for every account what the auditor recomputed from the lines.
async fn assert_served_as_audited(
    dir: &Path,
    audited: &BTreeMap<String, Audited>,
    head: &export::ExportHead,
) {
    let log = ledger_server::open_log(dir).unwrap();
    let server = timebank_tests::spawn_server(Arc::new(log.clone()), NOW).await;
    let mut queries = LedgerQueriesClient::new(server.channel.clone());
    let min_position = pb::LogPosition {
        commit: head.position.commit(),
        prepare: head.position.prepare(),
    };
    for (id, a) in audited {
        let view = queries
            .get_account(pb::GetAccountRequest {
                min_position: Some(min_position),
                account_id: id.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("GetAccount {id}: {s:?}"))
            .into_inner();
        let served = Audited {
            kind: view.kind.clone(),
            closed: view.closed,
            spendable_hours: Decimal::from_str(&view.spendable_hours).unwrap(),
            honour_hours: Decimal::from_str(&view.honour_hours).unwrap(),
            points: Decimal::from_str(&view.points_available).unwrap()
                + Decimal::from_str(&view.points_held).unwrap(),
            points_held: Decimal::from_str(&view.points_held).unwrap(),
            lifetime_credit_hours: Decimal::from_str(&view.lifetime_credit_hours).unwrap(),
            lifetime_honour_hours: Decimal::from_str(&view.lifetime_honour_hours).unwrap(),
        };
        assert_eq!(&served, a, "{id}: the server's view against the audit");
        if a.kind == "volunteer" {
            let star = view.star.expect("volunteers have a star level");
            assert_eq!(star.policy_version, "national-2024");
            assert_eq!(star.stars, a.stars(), "{id}: stars");
        }
    }
    // The auditor's VerifyLog over the same range answers the export's digest.
    let verified = ledger_server::pb::audit_client::AuditClient::new(server.channel.clone())
        .verify_log(pb::VerifyLogRequest {
            after: None,
            up_to: Some(min_position),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.range_digest, head.range_digest);
    drop(queries);
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
    // Serving wrote nothing (no receipt was missing): the export is still the whole log.
    assert_eq!(log.head().await.unwrap(), Some(head.position));
    log.close();
}

/// The raw text of the JSON value at the start of `text`.
fn raw_value(text: &str) -> &str {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    values.next().expect("a value").expect("valid JSON");
    &text[..values.byte_offset()]
}

/// The payload bytes `hash` is over (docs/events.md, "Checking the hash chain"): the
/// raw text of `data`, or for a binary payload the bytes `stored_data` holds in base64.
fn stored_payload(line: &str, v: &Value) -> Vec<u8> {
    match v.get("stored_data") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(text(b64))
            .unwrap_or_else(|e| panic!("stored_data is standard base64 ({e}): {line}")),
        None => raw_data(line).as_bytes().to_vec(),
    }
}

/// The raw text of the line's `data`.
fn raw_data(line: &str) -> &str {
    let key = ",\"data\":";
    let at = line.find(key).expect("envelope key") + key.len();
    raw_value(&line[at..])
}

/// `hash` recomputed from the line's own text (docs/events.md, "Checking the hash
/// chain"): `metadata` and (for a JSON payload) `data` are the stored bytes, so their
/// raw text hashes; a binary payload's stored bytes are `stored_data`.
fn line_hash(line: &str, v: &Value) -> String {
    let after = |key: &str, from: usize| {
        let at = line[from..].find(key).expect("envelope key") + from + key.len();
        (at, raw_value(&line[at..]))
    };
    let (data_at, data) = after(",\"data\":", 0);
    let (_, metadata) = after(",\"metadata\":", data_at + data.len());
    let part = |h: &mut blake3::Hasher, bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let mut h = blake3::Hasher::new();
    part(&mut h, text(&v["stream"]).as_bytes());
    h.update(&v["version"].as_u64().unwrap().to_le_bytes());
    h.update(&hex::decode(text(&v["id"]).replace('-', "")).unwrap());
    part(&mut h, text(&v["type"]).as_bytes());
    part(&mut h, &stored_payload(line, v));
    // Binary metadata: its stored bytes; JSON metadata: its raw text in the line.
    match v.get("stored_metadata") {
        Some(b64) => part(
            &mut h,
            &base64::engine::general_purpose::STANDARD
                .decode(text(b64))
                .unwrap_or_else(|e| panic!("stored_metadata is standard base64 ({e}): {line}")),
        ),
        None => part(&mut h, metadata.as_bytes()),
    }
    h.finalize().to_hex().to_string()
}

/// Positions increase; per stream, versions count from 0, prev_hash is the previous
/// line's hash (zeros first) and equals the metadata's; each hash recomputes from the
/// line alone. Returns each stream's last (version, hash).
fn assert_chains(all: &[&str]) -> BTreeMap<String, (u64, String)> {
    let zeros = "0".repeat(64);
    let mut streams: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut previous: Option<(u64, u64)> = None;
    for line in all {
        let v: Value = serde_json::from_str(line).unwrap();
        let position = (
            v["position"]["commit"].as_u64().unwrap(),
            v["position"]["prepare"].as_u64().unwrap(),
        );
        assert!(previous < Some(position), "positions increase: {line}");
        previous = Some(position);
        let version = v["version"].as_u64().unwrap();
        let prev_hash = text(&v["prev_hash"]);
        assert_eq!(v["metadata"]["prev_hash"], v["prev_hash"]);
        match streams.get(&text(&v["stream"])) {
            None => assert_eq!((version, &prev_hash), (0, &zeros), "{line}"),
            Some((last, hash)) => {
                assert_eq!((version, &prev_hash), (last + 1, hash), "{line}")
            }
        }
        let hash = text(&v["hash"]);
        assert_eq!(line_hash(line, &v), hash, "{line}");
        streams.insert(text(&v["stream"]), (version, hash));
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_is_deterministic_resumable_and_chains_per_stream() {
    let dir = seeded_dir().await;
    let (_, first, a) = export_file(dir.path(), "a.jsonl", None).await;
    let (_, second, b) = export_file(dir.path(), "b.jsonl", None).await;
    assert!(a == b, "the same log gives the same bytes");
    assert_eq!(first, second);

    // Resuming after a position gives exactly the rest of the full export.
    let all: Vec<&str> = a.lines().collect();
    let middle = all.len() / 2;
    let v: Value = serde_json::from_str(all[middle - 1]).unwrap();
    let after = format!("{}:{}", v["position"]["commit"], v["position"]["prepare"]);
    let (_, rest, c) = export_file(dir.path(), "c.jsonl", Some(&after)).await;
    assert_eq!(c.lines().collect::<Vec<_>>(), all[middle..]);
    let (rest_head, first_head) = (rest.head.unwrap(), first.head.clone().unwrap());
    assert_eq!(
        (
            rest_head.position,
            &rest_head.stream,
            rest_head.version,
            &rest_head.hash
        ),
        (
            first_head.position,
            &first_head.stream,
            first_head.version,
            &first_head.hash
        )
    );
    // The range digest is the resumed range's own: over the lines after `after`.
    let mut digest = [0u8; 32];
    for line in &all[middle..] {
        let v: Value = serde_json::from_str(line).unwrap();
        let mut both = digest.to_vec();
        both.extend(hex::decode(v["hash"].as_str().unwrap()).unwrap());
        digest = *blake3::hash(&both).as_bytes();
    }
    assert_eq!(rest_head.range_digest, hex::encode(digest));
    assert_ne!(rest_head.range_digest, first_head.range_digest);

    // A log of JSON payloads has none of the binary fields.
    assert!(!a.contains("\"stored_data\":") && !a.contains("\"payload_encoding\":"));
    let streams = assert_chains(&all);
    assert_eq!(
        first.head.as_ref().map(|h| h.hash.clone()),
        streams
            .get(&first.head.as_ref().unwrap().stream)
            .map(|s| s.1.clone())
    );
}

/// A city written with binary payloads (`--payload-encoding binary`): every line's
/// `data` is JSON that decodes to the event the log holds, `stored_data` is the
/// log's bytes, every hash recomputes from `stored_data` and chains per stream, and the
/// auditor's program, reading only `data`, recomputes what the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_log_exports_json_data_beside_the_stored_bytes_that_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = seed_city(dir.path(), PayloadEncoding::Binary).await;
    let mut stored = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        stored.extend(page);
    }
    log.close();

    let (_, summary, exported) = export_file(dir.path(), "binary.jsonl", None).await;
    let all: Vec<&str> = exported.lines().collect();
    assert_eq!(
        (all.len(), summary.events),
        (stored.len(), stored.len() as u64)
    );
    for (line, e) in all.iter().zip(&stored) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (v["position"]["commit"].as_u64(), v["version"].as_u64()),
            (Some(e.position.commit()), Some(e.version))
        );
        assert_eq!(v["payload_encoding"], "binary", "{line}");
        let bytes = stored_payload(line, &v);
        assert_eq!(bytes, e.data, "stored_data is the log's bytes: {line}");
        let data = raw_data(line);
        assert!(data.starts_with('{'), "data is a JSON object: {line}");
        assert_eq!(
            LedgerEvent::decode(&e.event_type, data.as_bytes()).unwrap(),
            LedgerEvent::decode(&e.event_type, &bytes).unwrap(),
            "data is the stored event: {line}"
        );
    }
    let streams = assert_chains(&all);
    let head = summary.head.clone().expect("the city is not empty");
    assert_eq!(streams.get(&head.stream).map(|s| &s.1), Some(&head.hash));

    let audited = recompute(&lines(&exported));
    assert_eq!(
        audited.values().filter(|a| a.kind == "volunteer").count(),
        VOLUNTEERS as usize
    );
    assert_served_as_audited(dir.path(), &audited, &head).await;
}

#[tokio::test]
async fn an_empty_log_exports_nothing() {
    let mut out = Vec::new();
    let summary = export::export_log(&MemoryLog::new(), ReadFrom::Start, &mut out, "memory")
        .await
        .unwrap();
    assert_eq!((summary.events, summary.head, out.len()), (0, None, 0));
}

/// A payload that is not JSON stops the export with the event named, and leaves
/// neither the output file nor its partial file behind.
#[tokio::test]
async fn a_corrupt_payload_fails_the_export_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = ledger_server::open_log(dir.path()).unwrap();
    let metadata = format!(
        r#"{{"schema":1,"request_id":null,"request_digest":null,"prev_hash":"{}","causation":null}}"#,
        "0".repeat(64)
    );
    log.append(
        &StreamName::new("account-v-1").unwrap(),
        ExpectedVersion::NoStream,
        vec![NewEvent {
            id: EventId::from_bytes([9; 16]),
            event_type: "AccountClosed.v1".into(),
            data: b"{\"account\":".to_vec(),
            metadata: metadata.into_bytes(),
        }],
    )
    .await
    .unwrap();
    log.close();
    let out = dir.path().join("audit.jsonl");
    let args = whole_log_to(dir.path(), &out);
    let err = export::run(&args).await.unwrap_err().to_string();
    assert!(
        err.contains(
            "position 0 (account-v-1 version 0, AccountClosed.v1) has data that is not JSON"
        ),
        "{err}"
    );
    assert!(!out.exists());
    assert!(!dir.path().join("audit.jsonl.partial").exists());
}

/// A security probe planted a symlink at `FILE.partial`: the export wrote through it,
/// over the file it named, and FILE ended as a link to that file. The partial file is
/// now removed before a new one is created (`create_new`): the planted link goes, the
/// file it named is untouched, and FILE is a plain file holding the export.
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_planted_at_the_partial_file_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let log = ledger_server::open_log(dir.path()).unwrap();
    log.close();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("audit.jsonl.partial")).unwrap();
    let out = dir.path().join("audit.jsonl");
    let args = whole_log_to(dir.path(), &out);
    export::run(&args).await.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!dir.path().join("audit.jsonl.partial").exists());
}

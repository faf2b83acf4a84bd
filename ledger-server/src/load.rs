//! `ledger-server load`: a load generator that drives a running server over gRPC with
//! a mix of operations, a number of concurrent callers and a duration, and reports
//! throughput and latency percentiles (HDR histograms) per operation, and refusals by
//! reason.
//!
//! # Accounts and valid commands
//! Each run registers its own accounts under a fresh run id (`ld<run>-…`): one
//! organisation, one project per caller, and `--volunteers-per-caller` volunteers per
//! caller, each pre-funded with two credit hours. A caller only ever touches its own
//! volunteers and project, so callers never contend for an account, and it tracks its
//! volunteers' balances so spends and exchanges are covered.
//!
//! Deposits get non-overlapping six-minute intervals between 11:00 and 13:00 UTC on
//! past days (yesterday, then the day before, …). Starting in that window, an interval
//! falls on the same calendar day for every ledger calendar offset from −11:00 to
//! +11:00, so the service-date rules hold whether the server runs on UTC or on
//! China's UTC+8.
//!
//! # Operations
//! `deposit`, `spend`, `exchange`, `transfer`, `donate` are the write RPCs (one command
//! each, or `--batch N` commands per `SubmitBatch`). `account` (`GetAccount`) and
//! `credit-report` (`GetCreditReport`) read the caller's volunteers through
//! `timebank.v1.LedgerQueries`, without a `min_position` (what a bank's dashboard
//! does); they are always sent as single RPCs. Before the clock starts the run waits
//! until the read models have seen its setup. `redeem` is a merchant redemption at the
//! till, three calls timed as one: a redemption token for the volunteer
//! (`IssueRedemptionToken`), a hold (`AuthorizeRedemption`) and its capture
//! (`CaptureRedemption`), 0.10 points each; the setup registers a merchant and
//! exchanges one of each volunteer's pre-funded hours for points. Only a caller allowed
//! all three (an administrator's key) can run it. Queries and redemptions are never
//! batched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Utc};
use hdrhistogram::Histogram;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

use crate::pb;
use crate::pb::ledger_commands_client::LedgerCommandsClient;
use crate::pb::ledger_queries_client::LedgerQueriesClient;
use crate::pb::redemptions_client::RedemptionsClient;

/// Deposit slot length: six minutes, 0.1 hours.
const SLOT_MINUTES: i64 = 6;
/// Slots per day in the 11:00–13:00 UTC window (see the module documentation).
const SLOTS_PER_DAY: u64 = 20;
/// First hour (UTC) of the deposit window.
const WINDOW_START_HOUR: i64 = 11;
/// How far back the pre-funding deposit lies: far behind every slot a run uses (a run
/// would need 73,000 deposits on one volunteer to reach it).
const PREFUND_DAYS_BACK: u64 = 3650;
/// Pre-funding per volunteer, in hundredths of an hour (two hours, the window's length).
const PREFUND_HUNDREDTHS: u32 = 200;
/// Hours moved by one spend, exchange, transfer or donation, in hundredths.
const OUTFLOW_HUNDREDTHS: u32 = 5;
/// Most commands per setup batch: the server's batch limit.
const SETUP_BATCH: usize = crate::BATCH_COMMANDS_MAX;
/// Most histogram value: one minute in microseconds; slower calls are clamped.
const LATENCY_MAX_US: u64 = 60_000_000;
/// A histogram of microseconds, 1 µs to [`LATENCY_MAX_US`], three significant digits.
fn microseconds() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Points one redemption captures, in hundredths.
const REDEEM_HUNDREDTHS: u32 = 10;
/// Hours of each volunteer's pre-funding exchanged for points when the mix redeems, in
/// hundredths: at the default rate, 10 points, a hundred redemptions.
const REDEEM_EXCHANGE_HUNDREDTHS: u32 = 100;
/// How long the run waits for the read models to include its setup before queries.
const READ_MODEL_WAIT: Duration = Duration::from_secs(30);

/// An operation of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Deposit,
    Spend,
    Exchange,
    Transfer,
    Donate,
    Redeem,
    Account,
    CreditReport,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Spend => "spend",
            Self::Exchange => "exchange",
            Self::Transfer => "transfer",
            Self::Donate => "donate",
            Self::Redeem => "redeem",
            Self::Account => "account",
            Self::CreditReport => "credit-report",
        }
    }

    fn is_query(&self) -> bool {
        matches!(self, Self::Account | Self::CreditReport)
    }

    /// Sent on its own, never in a `SubmitBatch`: queries and redemptions.
    fn is_single(&self) -> bool {
        self.is_query() || *self == Self::Redeem
    }

    const ALL: [Op; 8] = [
        Op::Deposit,
        Op::Spend,
        Op::Exchange,
        Op::Transfer,
        Op::Donate,
        Op::Redeem,
        Op::Account,
        Op::CreditReport,
    ];
}

/// Weighted operations, e.g. `deposit=80,spend=10,exchange=10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(pub Vec<(Op, u32)>);

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown operation {name:?} in the mix; use {}",
                        Op::ALL.map(|o| o.name()).join(", ")
                    )
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight {weight:?} of {name} is not a whole number"))?;
            out.push((op, weight));
        }
        if out.iter().all(|(_, w)| *w == 0) {
            return Err("the mix has no operation with a weight above zero".into());
        }
        Ok(Self(out))
    }
}

/// A duration like `20s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 20s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long")),
        _ => Err(format!("{text:?}: the unit must be ms, s or m")),
    }
}

/// `ledger-server load` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Weighted operations: deposit, spend, exchange, transfer, donate, redeem (needs
    /// an administrator's key), account, credit-report.
    #[arg(long, default_value = "deposit=80,spend=10,exchange=10")]
    pub mix: Mix,
    /// Concurrent callers, each with its own volunteers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to run, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Commands per SubmitBatch call; 0 sends one RPC per command.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Volunteers per caller (spreads each caller's deposits over several accounts).
    #[arg(long, default_value_t = 16)]
    pub volunteers_per_caller: usize,
    /// HTTP/2 connections the callers share, round robin.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Open loop: start this many calls per second in all (RPCs: a `SubmitBatch` is
    /// one), on a fixed schedule shared round robin by the callers, and time a late
    /// call from its scheduled start, so a server that falls behind shows as latency
    /// instead of as fewer calls. Without it each caller sends its next call as soon
    /// as the last one returns (closed loop). At most `--concurrency` calls are in
    /// flight either way: give enough callers for the rate.
    #[arg(long, value_name = "CALLS_PER_S")]
    pub rate: Option<u64>,
    /// API key sent as `authorization: Bearer KEY` on every call (a server with an
    /// access file needs one; the demo's admin key is in its banner). Its caller must
    /// be allowed to register accounts and write for them.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

impl LoadArgs {
    pub fn config(&self) -> Result<LoadConfig, String> {
        if self.concurrency == 0 || self.volunteers_per_caller == 0 || self.connections == 0 {
            return Err(
                "--concurrency, --volunteers-per-caller and --connections must be at least 1"
                    .into(),
            );
        }
        if self.batch > crate::BATCH_COMMANDS_MAX {
            return Err(format!(
                "--batch {} is over the server's limit of {}",
                self.batch,
                crate::BATCH_COMMANDS_MAX
            ));
        }
        if let Some(key) = &self.api_key {
            BearerKey::new(Some(key))?;
        }
        if let Some(rate) = self.rate {
            if rate == 0 || rate > RATE_MAX {
                return Err(format!(
                    "--rate {rate} is out of range: give 1 to {RATE_MAX} calls per second"
                ));
            }
        }
        Ok(LoadConfig {
            api_key: self.api_key.clone(),
            target: self.target.clone(),
            mix: self.mix.clone(),
            concurrency: self.concurrency,
            duration: self.duration,
            batch: self.batch,
            volunteers_per_caller: self.volunteers_per_caller,
            connections: self.connections,
            rate: self.rate,
        })
    }
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: String,
    pub mix: Mix,
    pub concurrency: usize,
    pub duration: Duration,
    pub batch: usize,
    pub volunteers_per_caller: usize,
    pub connections: usize,
    /// Sent as `authorization: Bearer …` on every call.
    pub api_key: Option<String>,
    /// Calls per second for an open-loop run (`--rate`); `None`: closed loop.
    pub rate: Option<u64>,
}

/// Highest `--rate`: far above what one load generator can send (~30 µs of CPU per
/// call), and low enough that a schedule's nanosecond offsets cannot overflow.
pub const RATE_MAX: u64 = 10_000_000;

/// When a caller starts its calls, and the instant each call is timed from.
///
/// Closed loop: now, until the deadline. Open loop at `rate` calls/s over `callers`
/// callers: the run's calls are numbered 0, 1, 2, … and call `k` is due at
/// `started + k / rate`; caller `i` takes calls `i`, `i + callers`, `i + 2 × callers`,
/// …, waits until each is due and, when it is late (the caller was still waiting for
/// its previous call), times it from when it was due, not from when it went out: the
/// correction for coordinated omission that wrk2 makes (a closed loop, or timing from
/// the send, hides the wait of every call the stalled caller did not send). Calls due
/// before the deadline are all sent, late or not, so an open-loop run sends exactly
/// `ceil(rate × duration)` calls whatever the server does.
#[derive(Clone, Debug)]
struct Pace {
    started: Instant,
    deadline: Instant,
    /// `(rate, callers, next call number)` for an open loop.
    schedule: Option<(u64, u64, u64)>,
    /// Open loop: how late each sleeping caller woke, in µs. Not the server's doing:
    /// the timer's resolution and the machine's own stalls (a descheduled vCPU), which
    /// hold back every call due meanwhile. A server's latency cannot be told apart
    /// from these at percentiles where they show, so the report prints them beside it.
    wake_late_us: Histogram<u64>,
}

impl Pace {
    fn new(
        started: Instant,
        duration: Duration,
        rate: Option<u64>,
        callers: usize,
        caller: usize,
    ) -> Self {
        Self {
            started,
            deadline: started + duration,
            schedule: rate.map(|r| (r, callers as u64, caller as u64)),
            wake_late_us: microseconds(),
        }
    }

    /// When the next call is due, or `None` once the run is over. Does not wait.
    fn next_due(&mut self) -> Option<Instant> {
        match &mut self.schedule {
            None => Some(Instant::now()).filter(|now| *now < self.deadline),
            Some((rate, callers, k)) => {
                // k / rate seconds, in nanoseconds, in u128: no overflow for any k a run reaches.
                let nanos = u128::from(*k) * 1_000_000_000 / u128::from(*rate);
                let due = self.started + Duration::from_nanos(u64::try_from(nanos).ok()?);
                *k += *callers;
                (due < self.deadline).then_some(due)
            }
        }
    }

    /// Wait until the next call is due; the instant to time it from, or `None` once
    /// the run is over. A call already due (the caller was still busy with the last
    /// one) is timed from when it was due. A caller that is early sleeps, and its call
    /// is timed from when it wakes: tokio's timer has a 1 ms resolution, so timing
    /// from the due instant would add up to a millisecond of the generator's own
    /// lateness to every call of an unloaded server.
    async fn next(&mut self) -> Option<Instant> {
        let due = self.next_due()?;
        if self.schedule.is_none() || due <= Instant::now() {
            return Some(due);
        }
        tokio::time::sleep_until(due.into()).await;
        let woke = Instant::now();
        let late_us =
            (woke.saturating_duration_since(due).as_micros() as u64).clamp(1, LATENCY_MAX_US);
        self.wake_late_us.saturating_record(late_us);
        Some(woke)
    }
}

/// A channel whose every call carries the run's API key, if it has one.
type Conn = InterceptedService<Channel, BearerKey>;

/// Adds `authorization: Bearer KEY` to every call, or nothing without a key.
#[derive(Clone)]
pub struct BearerKey(Option<MetadataValue<Ascii>>);

impl BearerKey {
    pub fn new(key: Option<&str>) -> Result<Self, String> {
        key.map(|k| {
            format!("Bearer {k}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| "--api-key must be printable ASCII (as keygen prints it)".to_owned())
        })
        .transpose()
        .map(Self)
    }
}

impl Interceptor for BearerKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A refusal as a person reads it: code, reason and message (tonic's `Display` shows
/// the status details as raw bytes).
fn status_text(s: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    match s.get_details_error_info() {
        Some(info) => format!("{:?} {}: {}", s.code(), info.reason, s.message()),
        None => format!("{:?}: {}", s.code(), s.message()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to {target}: {source}; is the server running (ledger-server serve or demo)?")]
    Connect {
        target: String,
        source: tonic::transport::Error,
    },
    #[error("setting up the run's accounts failed: {0}; check the server's log")]
    Setup(String),
}

/// Latencies and outcomes of one operation.
pub struct OpStats {
    /// Calls the server answered: with a result, or refused with a reason. A call
    /// that got no answer (a connection refused or cut: a gRPC code without an
    /// `ErrorInfo`) is counted in `failures` and not timed: after a server died,
    /// thousands of instant connection errors made a p50 of 0.24 ms out of calls that
    /// took ~3 ms (operator's probe).
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    /// Refusals by the server, by their `ErrorInfo` reason.
    pub errors: BTreeMap<String, u64>,
    /// Calls that got no answer from the server, by gRPC code.
    pub failures: BTreeMap<String, u64>,
}

impl OpStats {
    fn new() -> Self {
        Self {
            latency_us: microseconds(),
            ok: 0,
            errors: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    /// Count one call's outcome, timing it if the server answered.
    fn outcome<T>(&mut self, result: &Result<T, tonic::Status>, elapsed: Duration) {
        match result {
            Ok(_) => {
                self.record(elapsed);
                self.ok += 1;
            }
            Err(status) => self.status(status, elapsed),
        }
    }

    /// Count a call that ended with `status`: a refusal (timed) or a call without an
    /// answer (not timed).
    fn status(&mut self, status: &tonic::Status, elapsed: Duration) {
        match status.get_details_error_info() {
            Some(info) => {
                self.record(elapsed);
                *self.errors.entry(info.reason).or_default() += 1;
            }
            None => {
                *self
                    .failures
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1
            }
        }
    }

    fn record(&mut self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        self.latency_us.saturating_record(us);
    }

    fn merge(&mut self, other: &OpStats) {
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
    }

    /// Refusals and calls without an answer.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.failures.values().sum::<u64>()
    }
}

/// What a run measured.
pub struct LoadReport {
    pub elapsed: Duration,
    pub concurrency: usize,
    pub batch: usize,
    /// The open-loop rate asked for, if any.
    pub rate: Option<u64>,
    /// Open loop: how late the callers woke for calls they slept for, in µs
    /// (`Pace::wake_late_us`).
    pub wake_late_us: Option<Histogram<u64>>,
    /// Per operation (commands; latency per RPC when not batching).
    pub ops: BTreeMap<Op, OpStats>,
    /// With `--batch`: latency of each SubmitBatch call.
    pub batches: Option<OpStats>,
}

impl LoadReport {
    pub fn completed(&self) -> u64 {
        self.ops.values().map(|s| s.ok + s.errors_total()).sum()
    }

    pub fn errors(&self) -> u64 {
        self.ops.values().map(OpStats::errors_total).sum()
    }

    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} callers, {:.1} s{}{}",
            self.concurrency,
            secs,
            if self.batch > 0 {
                format!(", batches of {} commands", self.batch)
            } else {
                ", one RPC per command".into()
            },
            match self.rate {
                Some(r) => format!(
                    ", open loop at {r} calls/s (a late call timed from its scheduled start)"
                ),
                None => ", closed loop".into(),
            }
        );
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation",
            "ok",
            "per s",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let line = |out: &mut String, name: &str, s: &OpStats, count: u64| {
            let h = &s.latency_us;
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{:<14} {:>10} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name,
                s.ok,
                count as f64 / secs,
                s.errors_total(),
                ms(0.5),
                ms(0.9),
                ms(0.99),
                ms(0.999),
                h.max() as f64 / 1000.0
            );
        };
        let mut total = OpStats::new();
        for (op, s) in &self.ops {
            line(&mut out, op.name(), s, s.ok);
            total.merge(s);
        }
        if let Some(b) = &self.batches {
            line(&mut out, "(batch calls)", b, b.ok + b.errors_total());
        }
        line(&mut out, "total", &total, total.ok);
        if self.batch > 0 {
            let _ = writeln!(
                out,
                "(with --batch, per-operation latencies are those of the SubmitBatch call that carried the command)"
            );
        }
        if let Some(h) = self.wake_late_us.as_ref().filter(|h| !h.is_empty()) {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "callers woke late for their calls by p50 {:.2} / p99 {:.2} / max {:.2} ms: the timer and this machine's stalls, not the server; every call due during a stall waits it out",
                ms(0.5),
                ms(0.99),
                h.max() as f64 / 1000.0
            );
        }
        for (op, s) in &self.ops {
            for (reason, n) in &s.errors {
                let _ = writeln!(out, "refused {}: {reason} x{n}", op.name());
            }
            for (code, n) in &s.failures {
                let _ = writeln!(
                    out,
                    "failed {}: {code} x{n} (no answer from the server: connection refused or cut; not timed)",
                    op.name()
                );
            }
        }
        out
    }
}

/// One volunteer a caller owns.
struct Volunteer {
    id: String,
    /// Credit hours the caller knows it holds, in hundredths.
    balance: u32,
    next_slot: u64,
}

/// A caller's accounts and counters.
struct Caller {
    run: String,
    organisation: String,
    project: String,
    merchant: String,
    volunteers: Vec<Volunteer>,
    next_volunteer: usize,
    requests: u64,
    yesterday: NaiveDate,
    /// `{run}-c{index}-`: every request id of this caller starts with it.
    request_prefix: String,
    /// Per day back from `yesterday`: a deposit's activity id and service date, made
    /// once a day is first used.
    day_strings: Vec<(String, String)>,
}

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn amount(hundredths: u32) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn day_start(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
}

impl Caller {
    /// One redemption at the till: a token for the next volunteer, a hold and its
    /// capture. The setup's exchange bought each volunteer points at the server's rate
    /// (10 at the default rate: a hundred redemptions); a run that redeems more is
    /// told so by `INSUFFICIENT_POINTS` refusals.
    async fn redeem(&mut self, client: &mut RedemptionsClient<Conn>) -> Result<(), tonic::Status> {
        let v = self.next_volunteer;
        self.next_volunteer = (v + 1) % self.volunteers.len();
        let points = amount(REDEEM_HUNDREDTHS);
        let token = client
            .issue_redemption_token(pb::IssueRedemptionTokenRequest {
                volunteer_id: self.volunteers[v].id.clone(),
                points_max: points.clone(),
                ttl_seconds: 0,
            })
            .await?
            .into_inner();
        let hold = client
            .authorize_redemption(pb::AuthorizeRedemptionRequest {
                request_id: self.request_id(),
                merchant_id: self.merchant.clone(),
                token: token.token,
                points: points.clone(),
            })
            .await?
            .into_inner();
        client
            .capture_redemption(pb::CaptureRedemptionRequest {
                request_id: self.request_id(),
                merchant_id: self.merchant.clone(),
                volunteer_id: self.volunteers[v].id.clone(),
                hold_id: hold.hold_id,
                points,
            })
            .await
            .map(drop)
    }

    /// The next volunteer in turn, for a query.
    fn next_volunteer_id(&mut self) -> String {
        let v = self.next_volunteer;
        self.next_volunteer = (v + 1) % self.volunteers.len();
        self.volunteers[v].id.clone()
    }

    /// The next request id, `{run}-c{index}-{n}`. Copied and numbered without
    /// `core::fmt`, and a deposit's day strings are made once per day: the load
    /// generator shares the machine's cores with the server it measures, and its
    /// formatting was about a third of its CPU at 100,000 batched deposits a second.
    fn request_id(&mut self) -> String {
        self.requests += 1;
        let mut n = itoa::Buffer::new();
        let n = n.format(self.requests);
        let mut id = String::with_capacity(self.request_prefix.len() + n.len());
        id.push_str(&self.request_prefix);
        id.push_str(n);
        id
    }

    /// The activity id and service date of a deposit `back` days before yesterday.
    fn day_strings(&mut self, back: u64) -> (String, String) {
        let back = usize::try_from(back).expect("days back fit in usize");
        while self.day_strings.len() <= back {
            let day = self.yesterday - Days::new(self.day_strings.len() as u64);
            self.day_strings
                .push((format!("{}-activity-{day}", self.run), day.to_string()));
        }
        self.day_strings[back].clone()
    }

    fn deposit(&mut self, v: usize) -> pb::command::Command {
        let slot = self.volunteers[v].next_slot;
        self.volunteers[v].next_slot += 1;
        let day = self.yesterday - Days::new(slot / SLOTS_PER_DAY);
        let start = day_start(day)
            + WINDOW_START_HOUR * 3600
            + (slot % SLOTS_PER_DAY) as i64 * SLOT_MINUTES * 60;
        self.volunteers[v].balance += 10;
        let (activity_id, service_date) = self.day_strings(slot / SLOTS_PER_DAY);
        pb::command::Command::DepositHours(pb::DepositHoursRequest {
            request_id: self.request_id(),
            volunteer_id: self.volunteers[v].id.clone(),
            organisation_id: self.organisation.clone(),
            activity_id,
            service_date,
            started_at: Some(ts(start)),
            ended_at: Some(ts(start + SLOT_MINUTES * 60)),
            category: "load-test".into(),
            hours: "0.1".into(),
            kind: pb::HourKind::Credit as i32,
            verifier_id: "load-verifier".into(),
        })
    }

    /// The next command for `op` and the operation it really is (a deposit stands in
    /// for an outflow the caller cannot cover yet).
    fn command(&mut self, op: Op) -> (Op, pb::command::Command) {
        let v = self.next_volunteer;
        self.next_volunteer = (self.next_volunteer + 1) % self.volunteers.len();
        // A deposit (or an outflow the volunteer cannot cover yet) builds only its own
        // request: before, every deposit also built an outflow's id, copy and amount
        // and threw them away.
        if !matches!(op, Op::Spend | Op::Exchange | Op::Transfer | Op::Donate)
            || self.volunteers[v].balance < OUTFLOW_HUNDREDTHS
        {
            return (Op::Deposit, self.deposit(v));
        }
        let request_id = self.request_id();
        let volunteer_id = self.volunteers[v].id.clone();
        let hours = amount(OUTFLOW_HUNDREDTHS);
        let command = match op {
            Op::Spend => pb::command::Command::SpendHours(pb::SpendHoursRequest {
                request_id,
                volunteer_id,
                purpose: pb::SpendPurpose::ReceivedService as i32,
                counterparty_id: self.organisation.clone(),
                hours,
                memo: String::new(),
            }),
            Op::Exchange => pb::command::Command::ExchangeHours(pb::ExchangeHoursRequest {
                request_id,
                volunteer_id,
                hours,
                expected_rate_version: 0,
            }),
            Op::Transfer => {
                let to = (v + 1) % self.volunteers.len();
                if to == v {
                    // One volunteer per caller: nobody to transfer to.
                    return (Op::Deposit, self.deposit(v));
                }
                pb::command::Command::TransferHours(pb::TransferHoursRequest {
                    request_id,
                    from_volunteer_id: volunteer_id,
                    to_volunteer_id: self.volunteers[to].id.clone(),
                    relation: pb::FamilyRelation::Sibling as i32,
                    hours,
                })
            }
            Op::Donate => pb::command::Command::DonateHours(pb::DonateHoursRequest {
                request_id,
                volunteer_id,
                project_id: self.project.clone(),
                hours,
            }),
            _ => return (Op::Deposit, self.deposit(v)),
        };
        self.volunteers[v].balance -= OUTFLOW_HUNDREDTHS;
        (op, command)
    }
}

async fn send(
    client: &mut LedgerCommandsClient<Conn>,
    command: pb::command::Command,
) -> Result<(), tonic::Status> {
    use pb::command::Command as C;
    match command {
        C::RegisterAccount(r) => client.register_account(r).await.map(drop),
        C::CloseAccount(r) => client.close_account(r).await.map(drop),
        C::DepositHours(r) => client.deposit_hours(r).await.map(drop),
        C::SpendHours(r) => client.spend_hours(r).await.map(drop),
        C::ExchangeHours(r) => client.exchange_hours(r).await.map(drop),
        C::TransferHours(r) => client.transfer_hours(r).await.map(drop),
        C::DonateHours(r) => client.donate_hours(r).await.map(drop),
        C::ReverseTransaction(r) => client.reverse_transaction(r).await.map(drop),
        other => client
            .submit_batch(pb::SubmitBatchRequest {
                commands: vec![pb::Command {
                    command: Some(other),
                }],
            })
            .await
            .map(drop),
    }
}

/// Run `commands` as batches of at most [`SETUP_BATCH`]; any refused line fails setup.
async fn setup_batches(
    client: &mut LedgerCommandsClient<Conn>,
    commands: Vec<pb::command::Command>,
) -> Result<Option<pb::LogPosition>, LoadError> {
    let mut last = None;
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let chunk: Vec<pb::Command> = commands
            .by_ref()
            .take(SETUP_BATCH)
            .map(|c| pb::Command { command: Some(c) })
            .collect();
        let results = client
            .submit_batch(pb::SubmitBatchRequest { commands: chunk })
            .await
            .map_err(|s| LoadError::Setup(status_text(&s)))?
            .into_inner()
            .results;
        for r in results {
            match r.result {
                Some(pb::batch_result::Result::Error(e)) => {
                    return Err(LoadError::Setup(format!("{}: {}", e.reason, e.message)));
                }
                Some(pb::batch_result::Result::Ok(ok)) => last = ok.position.or(last),
                None => {}
            }
        }
    }
    Ok(last)
}

fn register(request_id: String, id: String, kind: pb::AccountKind) -> pb::command::Command {
    let (region, join) = match kind {
        pb::AccountKind::Volunteer => ("loadtown/district/street/community", "2020-01-01"),
        pb::AccountKind::Organisation => ("loadtown/district", ""),
        _ => ("", ""),
    };
    pb::command::Command::RegisterAccount(pb::RegisterAccountRequest {
        request_id,
        account_id: id,
        kind: kind as i32,
        region_code: region.into(),
        join_date: join.into(),
    })
}

/// Register the run's accounts and pre-fund the volunteers.
async fn setup(
    client: &mut LedgerCommandsClient<Conn>,
    config: &LoadConfig,
) -> Result<(Vec<Caller>, Option<pb::LogPosition>), LoadError> {
    let run = format!("ld{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let yesterday = Utc::now().date_naive() - Days::new(1);
    let organisation = format!("{run}-org");
    let mut registrations = vec![register(
        format!("{run}-reg-org"),
        organisation.clone(),
        pb::AccountKind::Organisation,
    )];
    let mut fund = Vec::new();
    let mut exchanges = Vec::new();
    let merchant = format!("{run}-m");
    registrations.push(register(
        format!("{run}-reg-m"),
        merchant.clone(),
        pb::AccountKind::Merchant,
    ));
    let mut callers = Vec::with_capacity(config.concurrency);
    let prefund_day = yesterday - Days::new(PREFUND_DAYS_BACK);
    let prefund_start = day_start(prefund_day) + WINDOW_START_HOUR * 3600;
    for c in 0..config.concurrency {
        let project = format!("{run}-p{c}");
        registrations.push(register(
            format!("{run}-reg-p{c}"),
            project.clone(),
            pb::AccountKind::Project,
        ));
        let mut volunteers = Vec::with_capacity(config.volunteers_per_caller);
        for k in 0..config.volunteers_per_caller {
            let id = format!("{run}-c{c}-v{k}");
            registrations.push(register(
                format!("{run}-reg-{id}"),
                id.clone(),
                pb::AccountKind::Volunteer,
            ));
            fund.push(pb::command::Command::DepositHours(
                pb::DepositHoursRequest {
                    request_id: format!("{run}-fund-{id}"),
                    volunteer_id: id.clone(),
                    organisation_id: organisation.clone(),
                    activity_id: format!("{run}-prefund"),
                    service_date: prefund_day.to_string(),
                    started_at: Some(ts(prefund_start)),
                    ended_at: Some(ts(prefund_start + 2 * 3600)),
                    category: "load-test".into(),
                    hours: amount(PREFUND_HUNDREDTHS),
                    kind: pb::HourKind::Credit as i32,
                    verifier_id: "load-verifier".into(),
                },
            ));
            let redeems = config
                .mix
                .0
                .iter()
                .any(|(op, w)| *op == Op::Redeem && *w > 0);
            if redeems {
                exchanges.push(pb::command::Command::ExchangeHours(
                    pb::ExchangeHoursRequest {
                        request_id: format!("{run}-points-{id}"),
                        volunteer_id: id.clone(),
                        hours: amount(REDEEM_EXCHANGE_HUNDREDTHS),
                        expected_rate_version: 0,
                    },
                ));
            }
            volunteers.push(Volunteer {
                id,
                balance: PREFUND_HUNDREDTHS
                    - if redeems {
                        REDEEM_EXCHANGE_HUNDREDTHS
                    } else {
                        0
                    },
                next_slot: 0,
            });
        }
        callers.push(Caller {
            run: run.clone(),
            organisation: organisation.clone(),
            project,
            merchant: merchant.clone(),
            volunteers,
            next_volunteer: 0,
            requests: 0,
            yesterday,
            request_prefix: format!("{run}-c{c}-"),
            day_strings: Vec::new(),
        });
    }
    setup_batches(client, registrations).await?;
    let mut last = setup_batches(client, fund).await?;
    if !exchanges.is_empty() {
        // The points each exchange bought, at whatever rate the server has.
        last = setup_batches(client, exchanges).await?.or(last);
    }
    Ok((callers, last))
}

/// Wait until the read models include `position` (the setup), so queries find the
/// run's volunteers. Without a query service, there is nothing to wait for.
async fn wait_for_read_models(
    channel: Channel,
    key: BearerKey,
    volunteer: &str,
    position: Option<pb::LogPosition>,
) -> Result<(), LoadError> {
    let mut client = LedgerQueriesClient::with_interceptor(channel, key);
    let deadline = Instant::now() + READ_MODEL_WAIT;
    loop {
        let r = client
            .get_account(pb::GetAccountRequest {
                min_position: position,
                account_id: volunteer.to_owned(),
            })
            .await;
        match r {
            Ok(_) => return Ok(()),
            Err(s) if Instant::now() < deadline && s.code() != tonic::Code::Unimplemented => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => {
                return Err(LoadError::Setup(format!(
                    "the read models did not catch up with the setup: {}",
                    status_text(&s)
                )))
            }
        }
    }
}

/// Picks operations by weight with a small deterministic generator (xorshift): the
/// mix only needs to be right on average, and the caller index seeds it.
struct Picker {
    ops: Vec<(Op, u32)>,
    total: u32,
    state: u64,
}

impl Picker {
    fn new(ops: &[(Op, u32)], seed: u64) -> Self {
        Self {
            ops: ops.to_vec(),
            total: ops.iter().map(|(_, w)| w).sum(),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> Op {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let mut x = (self.state % u64::from(self.total)) as u32;
        for (op, w) in &self.ops {
            if x < *w {
                return *op;
            }
            x -= w;
        }
        self.ops[0].0
    }
}

/// Set up, run every caller until the duration is over, and merge what they measured.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    let connect = |target: String| async move {
        Endpoint::from_shared(target.clone())
            .map_err(|source| LoadError::Connect {
                target: target.clone(),
                source,
            })?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| LoadError::Connect { target, source })
    };
    let mut channels = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        channels.push(connect(config.target.clone()).await?);
    }
    // The mix has a positive weight (checked when it was parsed).
    let sendable: Vec<(Op, u32)> = config
        .mix
        .0
        .iter()
        .copied()
        .filter(|(_, w)| *w > 0)
        .collect();
    let key = BearerKey::new(config.api_key.as_deref()).map_err(LoadError::Setup)?;
    let mut setup_client = LedgerCommandsClient::with_interceptor(channels[0].clone(), key.clone());
    let (callers, setup_position) = setup(&mut setup_client, config).await?;
    if sendable.iter().any(|(op, _)| op.is_query()) {
        let first = callers
            .first()
            .and_then(|c| c.volunteers.first())
            .map(|v| v.id.clone())
            .unwrap_or_default();
        wait_for_read_models(channels[0].clone(), key.clone(), &first, setup_position).await?;
    }

    let started = Instant::now();
    let sendable = Arc::new(sendable);
    let mut tasks = Vec::with_capacity(callers.len());
    for (i, mut caller) in callers.into_iter().enumerate() {
        let mut client = LedgerCommandsClient::with_interceptor(
            channels[i % channels.len()].clone(),
            key.clone(),
        );
        let mut queries = LedgerQueriesClient::with_interceptor(
            channels[i % channels.len()].clone(),
            key.clone(),
        );
        let mut redemptions =
            RedemptionsClient::with_interceptor(channels[i % channels.len()].clone(), key.clone());
        let sendable = sendable.clone();
        let batch = config.batch;
        let mut pace = Pace::new(started, config.duration, config.rate, config.concurrency, i);
        tasks.push(tokio::spawn(async move {
            let mut picker = Picker::new(&sendable, i as u64 + 1);
            let mut stats: BTreeMap<Op, OpStats> = BTreeMap::new();
            let mut batches = OpStats::new();
            while let Some(t) = pace.next().await {
                let op = picker.next();
                if op == Op::Redeem {
                    let result = caller.redeem(&mut redemptions).await;
                    let s = stats.entry(op).or_insert_with(OpStats::new);
                    s.outcome(&result, t.elapsed());
                } else if op.is_query() {
                    let volunteer = caller.next_volunteer_id();
                    let result = match op {
                        Op::Account => queries
                            .get_account(pb::GetAccountRequest {
                                min_position: None,
                                account_id: volunteer,
                            })
                            .await
                            .map(drop),
                        _ => queries
                            .get_credit_report(pb::GetCreditReportRequest {
                                min_position: None,
                                volunteer_id: volunteer,
                                as_of: None,
                                model_version: String::new(),
                            })
                            .await
                            .map(drop),
                    };
                    let s = stats.entry(op).or_insert_with(OpStats::new);
                    s.outcome(&result, t.elapsed());
                } else if batch == 0 {
                    let (op, command) = caller.command(op);
                    let result = send(&mut client, command).await;
                    let s = stats.entry(op).or_insert_with(OpStats::new);
                    s.outcome(&result, t.elapsed());
                } else {
                    // This call's commands: the op drawn, then more from the mix (queries
                    // are drawn again: they are never batched).
                    let mut draw = Some(op);
                    let (ops, commands): (Vec<Op>, Vec<pb::Command>) = (0..batch)
                        .map(|_| {
                            let mut op = draw.take().unwrap_or_else(|| picker.next());
                            while op.is_single() {
                                op = picker.next();
                            }
                            let (op, c) = caller.command(op);
                            (op, pb::Command { command: Some(c) })
                        })
                        .unzip();
                    let result = client
                        .submit_batch(pb::SubmitBatchRequest { commands })
                        .await;
                    let elapsed = t.elapsed();
                    batches.outcome(&result, elapsed);
                    match result {
                        Ok(response) => {
                            for (op, r) in ops.iter().zip(response.into_inner().results) {
                                let s = stats.entry(*op).or_insert_with(OpStats::new);
                                s.record(elapsed);
                                match r.result {
                                    Some(pb::batch_result::Result::Error(e)) => {
                                        *s.errors.entry(e.reason).or_default() += 1
                                    }
                                    _ => s.ok += 1,
                                }
                            }
                        }
                        Err(status) => {
                            for op in ops {
                                let s = stats.entry(op).or_insert_with(OpStats::new);
                                s.status(&status, elapsed);
                            }
                        }
                    }
                }
            }
            (stats, batches, pace.wake_late_us)
        }));
    }
    let mut ops: BTreeMap<Op, OpStats> = BTreeMap::new();
    let mut batches = OpStats::new();
    let mut wake_late_us = microseconds();
    for t in tasks {
        // A caller task only ends by returning; a panic is a bug worth surfacing.
        let (stats, b, late) = t.await.expect("a load caller panicked");
        let _ = wake_late_us.add(&late);
        for (op, s) in stats {
            ops.entry(op).or_insert_with(OpStats::new).merge(&s);
        }
        batches.merge(&b);
    }
    Ok(LoadReport {
        elapsed: started.elapsed(),
        concurrency: config.concurrency,
        batch: config.batch,
        rate: config.rate,
        wake_late_us: config.rate.is_some().then_some(wake_late_us),
        ops,
        batches: (config.batch > 0).then_some(batches),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operator's probe: after the server was killed mid-run, 100,673 instant
    /// connection errors were timed into the histogram with the 8,344 answered calls
    /// (p50 0.24 ms for calls that took ~3 ms) and printed as "refused". A call the
    /// server answered, with a result or a reason, is timed; one without an answer is
    /// counted apart, not timed, and printed as "failed".
    #[test]
    fn only_calls_the_server_answered_are_timed() {
        let refused = tonic::Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "no",
            tonic_types::ErrorDetails::with_error_info("INSUFFICIENT_BALANCE", "timebank", []),
        );
        let cut = tonic::Status::unavailable("connection refused");
        let mut s = OpStats::new();
        s.outcome(&Ok(()), Duration::from_millis(3));
        s.outcome::<()>(&Err(refused), Duration::from_millis(4));
        for _ in 0..10 {
            s.outcome::<()>(&Err(cut.clone()), Duration::from_micros(200));
        }
        assert_eq!(s.latency_us.len(), 2, "the answered calls only");
        assert!(s.latency_us.min() >= 3_000, "{}", s.latency_us.min());
        assert_eq!((s.ok, s.errors_total()), (1, 11));
        assert_eq!(s.errors.get("INSUFFICIENT_BALANCE"), Some(&1));
        assert_eq!(s.failures.get("Unavailable"), Some(&10));
        let mut ops = BTreeMap::new();
        ops.insert(Op::Deposit, s);
        let report = LoadReport {
            elapsed: Duration::from_secs(1),
            concurrency: 1,
            batch: 0,
            rate: None,
            wake_late_us: None,
            ops,
            batches: None,
        };
        let text = report.render();
        assert!(
            text.contains("refused deposit: INSUFFICIENT_BALANCE x1"),
            "{text}"
        );
        assert!(text.contains("failed deposit: Unavailable x10"), "{text}");
    }

    #[test]
    fn mixes_and_durations_parse() {
        let m: Mix = "deposit=80,spend=10,exchange=10".parse().unwrap();
        assert_eq!(m.0.len(), 3);
        assert!("deposit=x".parse::<Mix>().is_err());
        assert!("teleport=1".parse::<Mix>().is_err());
        assert!("deposit=0".parse::<Mix>().is_err());
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2h").is_err());
        assert_eq!(amount(5), "0.05");
        assert_eq!(amount(200), "2.00");
    }

    /// Given 1,000 calls/s over 4 callers for 10 ms, caller 1's calls are due at 1, 5
    /// and 9 ms (calls 1, 5, 9 of the run) and then the run is over for it; the four
    /// callers together are due exactly ceil(rate × duration) = 10 calls, each once.
    #[test]
    fn an_open_loop_shares_one_schedule_round_robin() {
        let started = Instant::now();
        let ms = Duration::from_millis;
        let mut one = Pace::new(started, ms(10), Some(1000), 4, 1);
        let due: Vec<Duration> = std::iter::from_fn(|| one.next_due())
            .map(|t| t - started)
            .collect();
        assert_eq!(due, [ms(1), ms(5), ms(9)]);
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|i| {
                let mut p = Pace::new(started, ms(10), Some(1000), 4, i);
                std::iter::from_fn(move || p.next_due()).map(move |t| t - started)
            })
            .collect();
        all.sort();
        assert_eq!(all, (0..10).map(ms).collect::<Vec<_>>());
        // 3 calls/s for 1 s: due at 0, 1/3 and 2/3 s, to the nanosecond, not at 1 s.
        let mut p = Pace::new(started, ms(1000), Some(3), 1, 0);
        let due: Vec<Duration> = std::iter::from_fn(|| p.next_due())
            .map(|t| t - started)
            .collect();
        assert_eq!(
            due,
            [
                Duration::ZERO,
                Duration::from_nanos(333_333_333),
                Duration::from_nanos(666_666_666)
            ]
        );
    }

    /// Closed loop: due now, until the deadline.
    #[test]
    fn a_closed_loop_is_due_at_once_until_the_deadline() {
        let started = Instant::now();
        let mut p = Pace::new(started, Duration::from_secs(60), None, 4, 0);
        let due = p.next_due().expect("the run has a minute to go");
        assert!(due >= started && due - started < Duration::from_secs(1));
        let mut over = Pace::new(started, Duration::ZERO, None, 4, 0);
        assert_eq!(over.next_due(), None);
    }

    #[test]
    fn a_rate_out_of_range_is_refused_with_the_range() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let parse = |rate: &str| Cli::parse_from(["load", "--rate", rate]).load.config();
        assert_eq!(parse("5000").map(|c| c.rate), Ok(Some(5000)));
        for bad in ["0", "10000001"] {
            let err = parse(bad).expect_err("refused");
            assert!(err.contains("give 1 to 10000000"), "{err}");
        }
    }
}

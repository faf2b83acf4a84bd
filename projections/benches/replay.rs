//! Projection benchmarks (docs/benchmarks.md, "Projections and queries"):
//!
//! 1. **Replay**: N synthetic events of a city (the ledger's own event types and JSON
//!    payloads, as the log stores them) folded through every read model on one thread,
//!    as a rebuild folds them (`ReadModels::apply_all`), and the binary ones also one
//!    event at a time (`ReadModels::apply`, its peer in the same run).
//!    Also measured alone: JSON decoding of the same events (what bounds the replay),
//!    the state digest, and a snapshot write and read.
//! 2. **Credit report under load**: volunteers' streams in an embedded log on disk;
//!    concurrent clients ask reports for random volunteers; p50 / p99 / max latency.
//!
//! `cargo bench -p projections --bench replay`. Environment:
//! - `TIMEBANK_BENCH_EVENTS` (default 3,000,000): events to replay;
//! - `TIMEBANK_BENCH_REPORT_VOLUNTEERS` (default 20,000), `TIMEBANK_BENCH_REPORT_SECS`
//!   (default 5), `TIMEBANK_BENCH_REPORT_CLIENTS` (default 16);
//! - `TIMEBANK_BENCH_DIR`: where the temporary embedded log goes;
//! - `TIMEBANK_BENCH_ONLY` (`replay` or `report`): run one of the two; `binary`: only
//!   the binary-payload decode and replay, for a profiler or callgrind to see that pass
//!   and nothing else (the JSON passes share function names with it); it holds the
//!   events in memory (`TIMEBANK_BENCH_STREAM` does not apply to it);
//! - `TIMEBANK_BENCH_PAUSE=1`: wait 3 s (and say so on stderr, with the pid) before
//!   the binary-payload replay, for a profiler to attach to that pass alone;
//! - `TIMEBANK_BENCH_STREAM=1`: generate and apply a batch at a time (no event list
//!   in memory), for city-sized replays (`TIMEBANK_BENCH_EVENTS=30000000`).

use std::alloc::{GlobalAlloc, Layout};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode, SystemAccount};
use ledger_core::domain::events::*;
use ledger_core::domain::ids::{ActivityId, Category, Note, TransactionId, VerifierId};
use ledger_core::domain::postings::movement;
use ledger_core::domain::units::{ExchangeRate, Hours, Unit};
use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, Position, RecordedEvent};
use mimalloc::MiMalloc;
use projections::credit::{credit_report, read_account_stream};
use projections::{snapshot, ReadModels, StarPolicy, EVENTS_PER_BATCH_MAX};
use rust_decimal::Decimal;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn acc(s: String) -> AccountId {
    AccountId::new(s).expect("bench ids are valid")
}

fn uuid(rng: &mut Rng) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(rng.next(), rng.next())
}

/// Live heap bytes, counted by the allocator below. RSS growth alone misses read-model
/// memory that reuses heap the generator or the decode passes freed (in the default
/// mode, small per-cell maps come out of the freed event list and show as ~0 MiB).
static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

/// The allocator the server runs on (mimalloc, `ledger-server/src/main.rs`), counting
/// what is live: one relaxed atomic add per call. Replay in production is the server's
/// projection worker, so the bench allocates as it does (glibc malloc was ~8 % of a
/// replay's samples).
struct Counting;

// SAFETY: every call is forwarded to `MiMalloc` unchanged; only a counter is kept beside.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) };
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_HEAP.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> usize {
    LIVE_HEAP.load(Ordering::Relaxed)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// A city's events: (stream, event) pairs in log order.
struct City {
    events: Vec<(AccountId, LedgerEvent)>,
    volunteers: u64,
}

/// Recent deposits the generator keeps for ratings and reversals. Past it, a new
/// deposit replaces a random kept one, so a 30 M-event stream needs ~100 MiB of
/// generator state, not ~600 MiB; the default 3 M events (~2.25 M deposits) never
/// reach it, so their event stream is the one every earlier figure was measured on.
const DEPOSITS_KEPT_MAX: usize = 4_000_000;

/// Hangzhou-shaped: 13 districts × 10 streets × 10 communities, 1,300 organisations,
/// 50 projects; one volunteer per ~11 events (2.68 M volunteers : 30 M events).
/// Yields (stream, event) pairs in log order, one at a time, so a city-sized replay
/// needs no list of its events.
struct CityGen<'r> {
    rng: &'r mut Rng,
    n: u64,
    next: u64,
    volunteers: u64,
    orgs: u64,
    projects: u64,
    base: DateTime<Utc>,
    start_day: NaiveDate,
    /// Each volunteer's community; organisation i serves community i (1,300 of each).
    home: Vec<u64>,
    cats: Vec<Category>,
    /// Recent deposits per volunteer, for reversals and ratings.
    deposits: Vec<(u64, TransactionId)>,
    rate: ExchangeRate,
    issuance: AccountId,
    services: AccountId,
    redeemed: AccountId,
    points: AccountId,
}

impl<'r> CityGen<'r> {
    fn new(n: u64, rng: &'r mut Rng) -> Self {
        let volunteers = (n / 11).max(100);
        Self {
            rng,
            n,
            next: 0,
            volunteers,
            orgs: 1300,
            projects: 50,
            base: "2026-01-01T00:00:00Z".parse().expect("a timestamp"),
            start_day: NaiveDate::from_ymd_opt(2023, 1, 1).expect("a date"),
            home: Vec::with_capacity(volunteers as usize),
            cats: [
                "elderly-care",
                "river-patrol",
                "traffic",
                "epidemic",
                "blood-drive",
                "library",
            ]
            .iter()
            .map(|c| Category::new(*c).expect("valid"))
            .collect(),
            deposits: Vec::new(),
            rate: ExchangeRate::default(),
            issuance: AccountId::system(SystemAccount::HourIssuance),
            services: AccountId::system(SystemAccount::Services),
            redeemed: AccountId::system(SystemAccount::HoursRedeemed),
            points: AccountId::system(SystemAccount::PointIssuance),
        }
    }

    fn region(i: u64) -> RegionCode {
        RegionCode::new(format!(
            "hangzhou/d{}/s{}/c{}",
            i % 13,
            (i / 13) % 10,
            (i / 130) % 10
        ))
        .expect("valid region")
    }

    fn keep_deposit(&mut self, v: u64, tx: TransactionId) {
        if self.deposits.len() < DEPOSITS_KEPT_MAX {
            self.deposits.push((v, tx));
        } else {
            let k = self.rng.below(self.deposits.len() as u64) as usize;
            self.deposits[k] = (v, tx);
        }
    }

    fn registered(a: AccountId, kind: AccountKind, at: DateTime<Utc>) -> (AccountId, LedgerEvent) {
        (
            a.clone(),
            LedgerEvent::AccountRegistered(AccountRegistered {
                account: a,
                kind,
                registered_at: at,
            }),
        )
    }

    /// The `i`-th event after the registrations.
    fn step(&mut self, i: u64) -> (AccountId, LedgerEvent) {
        let v = self.rng.below(self.volunteers);
        let who = acc(format!("v-{v:08}"));
        let tx = TransactionId(uuid(self.rng));
        let at = self.base + Days::seconds(i as i64);
        let quarters = 1 + self.rng.below(24);
        let hours = Hours::new(Decimal::new(quarters as i64 * 25, 2)).expect("valid hours");
        let roll = self.rng.below(100);
        let e = if roll < 75 || self.deposits.is_empty() {
            let day = self.start_day + Days::days(self.rng.below(1400) as i64);
            let started = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
            // Mostly the local organisation; its activities are its own (~180 each,
            // ~230 k in all: 60 k a year for ~4 years, Hangzhou's figure).
            let o = if self.rng.below(5) == 0 {
                self.rng.below(self.orgs)
            } else {
                self.home[v as usize]
            };
            let org = acc(format!("org-{o}"));
            self.keep_deposit(v, tx);
            LedgerEvent::HoursDeposited(HoursDeposited {
                transaction: tx,
                volunteer: who.clone(),
                organisation: org,
                activity: ActivityId::new(format!("act-{}", self.rng.below(180))).expect("valid"),
                service_date: day,
                started_at: started,
                ended_at: started + Days::minutes(quarters as i64 * 15),
                category: self.cats[self.rng.below(self.cats.len() as u64) as usize].clone(),
                hours,
                kind: if self.rng.below(10) == 0 {
                    HourKind::Honour
                } else {
                    HourKind::Credit
                },
                verifier: VerifierId::new("staff-7").expect("valid"),
                postings: movement(Unit::Hours, &self.issuance, &who, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 83 {
            LedgerEvent::HoursSpent(HoursSpent {
                transaction: tx,
                volunteer: who.clone(),
                purpose: SpendPurpose::ReceivedService,
                counterparty: acc(format!("proj-{}", self.rng.below(self.projects))),
                hours,
                memo: None,
                postings: movement(Unit::Hours, &who, &self.services, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 88 {
            let p = self.rate.points_for(hours).expect("points");
            let mut postings = movement(Unit::Hours, &who, &self.redeemed, hours.value()).to_vec();
            postings.extend(movement(Unit::Points, &self.points, &who, p.value()));
            LedgerEvent::HoursExchanged(HoursExchanged {
                transaction: tx,
                volunteer: who.clone(),
                hours,
                points: p,
                rate: self.rate,
                postings,
                recorded_at: at,
            })
        } else if roll < 91 {
            let project = acc(format!("proj-{}", self.rng.below(self.projects)));
            LedgerEvent::HoursDonated(HoursDonated {
                transaction: tx,
                from: who.clone(),
                project: project.clone(),
                hours,
                postings: movement(Unit::Hours, &who, &project, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 93 {
            let to = acc(format!("v-{:08}", self.rng.below(self.volunteers)));
            LedgerEvent::HoursTransferred(HoursTransferred {
                transaction: tx,
                from: who.clone(),
                to: to.clone(),
                relation: FamilyRelation::Child,
                hours,
                postings: movement(Unit::Hours, &who, &to, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 96 {
            let (dv, dtx) = self.deposits[self.rng.below(self.deposits.len() as u64) as usize];
            LedgerEvent::ServiceRated(ServiceRated {
                deposit: dtx,
                volunteer: acc(format!("v-{dv:08}")),
                rating: 1 + self.rng.below(5) as u8,
                rater: VerifierId::new("resident-1").expect("valid"),
                recorded_at: at,
            })
        } else if roll < 97 {
            LedgerEvent::NoShowRecorded(NoShowRecorded {
                volunteer: who.clone(),
                organisation: acc(format!("org-{}", self.rng.below(self.orgs))),
                activity: ActivityId::new("act-1").expect("valid"),
                service_date: self.start_day,
                recorded_at: at,
            })
        } else {
            // Reverse a recent deposit (a volunteer's own, on their stream).
            let k = self.rng.below(self.deposits.len() as u64) as usize;
            let (dv, dtx) = self.deposits.swap_remove(k);
            let owner = acc(format!("v-{dv:08}"));
            LedgerEvent::TransactionReversed(TransactionReversed {
                transaction: tx,
                original: dtx,
                account: owner.clone(),
                reason: Note::new("recorded twice").expect("valid"),
                // The replay reads only the debited account's legs; the amount is not
                // the original's here, which no read model checks.
                postings: movement(Unit::Hours, &owner, &self.issuance, Decimal::new(1, 2))
                    .to_vec(),
                recorded_at: at,
            })
        };
        let stream = match &e {
            LedgerEvent::TransactionReversed(t) => t.account.clone(),
            _ => who,
        };
        (stream, e)
    }
}

impl Iterator for CityGen<'_> {
    type Item = (AccountId, LedgerEvent);

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let (orgs, projects, volunteers) = (self.orgs, self.projects, self.volunteers);
        let item = if i < orgs {
            let kind = AccountKind::Organisation {
                region: Self::region(i),
            };
            Self::registered(acc(format!("org-{i}")), kind, self.base)
        } else if i < orgs + projects {
            let p = i - orgs;
            Self::registered(acc(format!("proj-{p}")), AccountKind::Project, self.base)
        } else if i < orgs + projects + volunteers {
            let v = i - orgs - projects;
            let community = self.rng.below(1300);
            self.home.push(community);
            let kind = AccountKind::Volunteer {
                region: Self::region(community),
                joined_on: self.start_day + Days::days(self.rng.below(1000) as i64),
            };
            Self::registered(acc(format!("v-{v:08}")), kind, self.base)
        } else if i < self.n {
            self.step(i)
        } else {
            return None;
        };
        self.next += 1;
        Some(item)
    }
}

/// The whole city in memory.
fn city(n: u64, rng: &mut Rng) -> City {
    let mut g = CityGen::new(n, rng);
    let volunteers = g.volunteers;
    let events = g.by_ref().collect();
    City { events, volunteers }
}

/// Metadata of a realistic size, which the projections do not read.
const METADATA: &[u8] = br#"{"request_id":"platform-a:0123456789abcdef","request_digest":"5f0c2b7e3b0d1f8a9c4e6d2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f","prev":"0c9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10"}"#;

/// One event as the log stores it (JSON payload, metadata).
fn record(i: u64, stream: &AccountId, e: &LedgerEvent, rng: &mut Rng) -> RecordedEvent {
    RecordedEvent {
        stream: stream.stream(),
        version: 0,
        position: Position::from_sequence(i),
        id: EventId(uuid(rng)),
        event_type: e.event_type().to_owned(),
        data: e.encode(),
        metadata: METADATA.to_vec(),
    }
}

/// The events as the log stores them.
fn recorded(city: &City, rng: &mut Rng) -> Vec<RecordedEvent> {
    city.events
        .iter()
        .enumerate()
        .map(|(i, (stream, e))| record(i as u64, stream, e, rng))
        .collect()
}

/// A posting as the lean decode reads it. (Fields are decoded, then only black-boxed:
/// the decode is what is measured.)
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct LeanPosting<'a> {
    #[serde(borrow)]
    account: Cow<'a, str>,
    #[serde(borrow)]
    unit: Cow<'a, str>,
    amount: Decimal,
}

/// The fields the read models read, from every event type at once, borrowed where the
/// JSON has no escapes; everything else (instants, verifier, notes, rates) is skipped
/// unparsed. A measurement of the "decode only what the projections read" step of
/// docs/benchmarks.md, not a decoder the projections use.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct Lean<'a> {
    #[serde(borrow, default)]
    account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    volunteer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    organisation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    activity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    counterparty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    project: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    original: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    region: Option<Cow<'a, str>>,
    #[serde(default)]
    joined_on: Option<NaiveDate>,
    #[serde(default)]
    service_date: Option<NaiveDate>,
    #[serde(default)]
    hours: Option<Decimal>,
    #[serde(borrow, default)]
    postings: Vec<LeanPosting<'a>>,
}

/// Event types no read model reads (no postings, no fold): not decoded at all.
const IGNORED_TYPES: [&str; 3] = ["HoursReceived.v1", "NoShowRecorded.v1", "ServiceRated.v1"];

/// Lean-decode every event; returns how many were decoded (the rest were skipped).
fn lean_decode(events: &[RecordedEvent]) -> usize {
    let mut decoded = 0;
    for e in events {
        if IGNORED_TYPES.contains(&e.event_type.as_str()) {
            continue;
        }
        let l: Lean<'_> = serde_json::from_slice(&e.data).expect("lean decode");
        std::hint::black_box(&l);
        decoded += 1;
    }
    decoded
}

/// `TIMEBANK_BENCH_STREAM=1`: generate, encode and apply a batch at a time, so the
/// size of a run is bounded by the read models' memory, not by a list of events
/// (~600 B each in memory: 30 M would need ~18 GiB). Measures the replay (time inside
/// `apply_all` only, two clock reads per batch), the read models' resident
/// memory (after the generator's own state is freed) and the snapshot steps; no
/// decode-only pass. Event ids come from their own generator, so the stream is not
/// the in-memory mode's event for event, only the same shape.
fn replay_stream(n: u64) {
    let mut rng = Rng(0x7153_0000);
    let mut ids = Rng(0x0001_D500);
    let rss_before = rss_bytes();
    let heap_before = live_heap();
    let mut m = ReadModels::new();
    let started = Instant::now();
    let mut apply = Duration::ZERO;
    let mut count = 0u64;
    let mut payload = 0usize;
    let mut city = CityGen::new(n, &mut rng);
    let volunteers = city.volunteers;
    // A rebuild's batches (`ReadModels::apply_all`), generated and encoded first, one
    // whole batch per call.
    let mut batch = Vec::with_capacity(EVENTS_PER_BATCH_MAX);
    let fold = |m: &mut ReadModels, batch: &mut Vec<RecordedEvent>| {
        let t = fold_all(m, batch);
        batch.clear();
        t
    };
    for (stream, e) in city.by_ref() {
        let r = record(count, &stream, &e, &mut ids);
        payload += r.data.len();
        batch.push(r);
        if batch.len() == EVENTS_PER_BATCH_MAX {
            apply += fold(&mut m, &mut batch);
        }
        count += 1;
        if count.is_multiple_of(5_000_000) {
            eprintln!(
                "… {count} events in {:.0} s, RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                rss_bytes() as f64 / (1 << 20) as f64
            );
        }
    }
    apply += fold(&mut m, &mut batch);
    drop(city);
    let rss_after = rss_bytes();
    let heap = live_heap().saturating_sub(heap_before);
    println!(
        "streamed {count} events ({volunteers} volunteers, avg {} B of JSON payload) in {:.1} s",
        payload / count.max(1) as usize,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| replay through all read models (decode + fold), streamed | {:.2} s | {:.0} |",
        apply.as_secs_f64(),
        count as f64 / apply.as_secs_f64()
    );
    println!(
        "read-model memory: {:.0} MiB live heap ({:.0} B per event), {:.0} MiB RSS growth, for {} accounts, {} standing deposits, {} service-index activity entries",
        heap as f64 / (1 << 20) as f64,
        heap as f64 / count as f64,
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64,
        m.rows.len(),
        m.deposits.len(),
        m.index.activity_ref_count(),
    );
    snapshot_steps(m);
}

fn replay_bench() {
    let n = env("TIMEBANK_BENCH_EVENTS", 3_000_000);
    if std::env::var("TIMEBANK_BENCH_STREAM").is_ok_and(|v| v == "1") {
        return replay_stream(n);
    }
    let mut rng = Rng(0x7153_0000);
    let t = Instant::now();
    let c = city(n, &mut rng);
    let events = recorded(&c, &mut rng);
    let bytes: usize = events.iter().map(|e| e.data.len()).sum();
    println!(
        "generated {} events ({} volunteers, {:.0} MiB of JSON payload, avg {} B) in {:.1} s",
        events.len(),
        c.volunteers,
        bytes as f64 / (1 << 20) as f64,
        bytes / events.len(),
        t.elapsed().as_secs_f64()
    );
    drop(c);
    // The same events with binary payloads (`PayloadEncoding::Binary`), measured side
    // by side with the JSON ones in this run.
    let binary: Vec<RecordedEvent> = events
        .iter()
        .map(|e| RecordedEvent {
            data: LedgerEvent::decode(&e.event_type, &e.data)
                .expect("synthetic events decode")
                .encode_as(PayloadEncoding::Binary),
            ..e.clone()
        })
        .collect();
    let binary_bytes: usize = binary.iter().map(|e| e.data.len()).sum();
    println!(
        "binary payloads of the same events: {:.0} MiB, avg {} B",
        binary_bytes as f64 / (1 << 20) as f64,
        binary_bytes / binary.len()
    );

    // Decoding alone: the floor under the replay.
    let t = Instant::now();
    let mut decoded = 0usize;
    for e in &events {
        if LedgerEvent::decode(&e.event_type, &e.data).is_ok() {
            decoded += 1;
        }
    }
    let decode = t.elapsed();
    assert_eq!(decoded, events.len());
    // The next step's ceiling: only the fields the read models read, borrowed, and no
    // decode at all of the types they ignore. In the same run as the full decode.
    let t = Instant::now();
    let lean = lean_decode(&events);
    let lean_time = t.elapsed();
    let t = Instant::now();
    for e in &binary {
        std::hint::black_box(LedgerEvent::decode(&e.event_type, &e.data).expect("decodes"));
    }
    let binary_decode = t.elapsed();

    let rss_before = rss_bytes();
    let heap_before = live_heap();
    let (m, replay) = replay_all(&events);
    let rss_after = rss_bytes();
    let heap = live_heap().saturating_sub(heap_before);
    let (from_binary, binary_replay) = replay_binary(&binary);
    let (one, binary_one_by_one) = replay_one_by_one(&binary);
    assert_eq!(
        one.digest(),
        from_binary.digest(),
        "batched and one by one fold to one state"
    );
    drop((one, binary));
    let rate = |d: Duration| events.len() as f64 / d.as_secs_f64();
    println!("| measurement | time | events/s |");
    println!("|---|---|---|");
    println!(
        "| JSON decode only (LedgerEvent::decode) | {:.2} s | {:.0} |",
        decode.as_secs_f64(),
        rate(decode)
    );
    println!(
        "| replay through all read models (decode + fold) | {:.2} s | {:.0} |",
        replay.as_secs_f64(),
        rate(replay)
    );
    println!(
        "| lean decode (fields the read models read, borrowed; {} of {} events decoded, the rest skipped by type) | {:.2} s | {:.0} |",
        lean,
        events.len(),
        lean_time.as_secs_f64(),
        rate(lean_time)
    );
    let fold = replay.saturating_sub(decode);
    println!(
        "| fold alone (replay − decode) | {:.2} s | {:.0} |",
        fold.as_secs_f64(),
        rate(fold)
    );
    println!(
        "| binary payloads: decode only | {:.2} s | {:.0} |",
        binary_decode.as_secs_f64(),
        rate(binary_decode)
    );
    println!(
        "| **binary payloads: replay through all read models** | {:.2} s | {:.0} |",
        binary_replay.as_secs_f64(),
        rate(binary_replay)
    );
    println!(
        "| binary payloads: replay, one event at a time (`apply`, no prefetch) | {:.2} s | {:.0} |",
        binary_one_by_one.as_secs_f64(),
        rate(binary_one_by_one)
    );
    let (json_digest, binary_digest) = (m.digest(), from_binary.digest());
    assert_eq!(
        json_digest, binary_digest,
        "both encodings fold to one state"
    );
    drop(from_binary);
    println!(
        "read-model memory: {:.0} MiB live heap ({:.0} B per event), ~{:.0} MiB RSS growth, for {} accounts, {} standing deposits, {} service-index activity entries",
        heap as f64 / (1 << 20) as f64,
        heap as f64 / events.len() as f64,
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64,
        m.rows.len(),
        m.deposits.len(),
        m.index.activity_ref_count(),
    );
    service_index_queries(&m);
    let target = 1_000_000.0;
    let verdict = |d: Duration| if rate(d) >= target { "met" } else { "NOT met" };
    println!(
        "target ≥ 1,000,000 events/s on one core: JSON payloads {} ({:.0}), binary payloads {} ({:.0})",
        verdict(replay),
        rate(replay),
        verdict(binary_replay),
        rate(binary_replay)
    );

    snapshot_steps(m);
}

/// `GetServiceIndex`'s cost on the replayed state: the index keeps its sums per node
/// and a query adds up the node's subtree (`index.rs`), so the city's root is the
/// dearest node. Every node in three periods, and the root alone.
fn service_index_queries(m: &ReadModels) {
    let periods = [
        projections::Period::All,
        projections::Period::Year(2024),
        projections::Period::Month(2024, 3),
    ];
    let nodes: Vec<&str> = m.regions.paths.names().collect();
    let t = Instant::now();
    for &path in &nodes {
        for p in periods {
            std::hint::black_box(m.service_index(path, p));
        }
    }
    let all = t.elapsed();
    let rounds = 100u32;
    let t = Instant::now();
    for _ in 0..rounds {
        for p in periods {
            std::hint::black_box(m.service_index("hangzhou", p));
        }
    }
    let root = t.elapsed() / (rounds * periods.len() as u32);
    println!(
        "GetServiceIndex in process: {} nodes × {} periods in {:.1} ms ({:.1} µs per query); the city's root (all {} nodes) {:.1} µs per query",
        nodes.len(),
        periods.len(),
        all.as_secs_f64() * 1e3,
        all.as_secs_f64() * 1e6 / (nodes.len() * periods.len()) as f64,
        nodes.len(),
        root.as_secs_f64() * 1e6
    );
}

/// The digest and the snapshot steps on the replayed state. The state is dropped before
/// the snapshot is read back, so the read, like a restart, holds one copy.
fn snapshot_steps(m: ReadModels) {
    let t = Instant::now();
    let digest = m.digest();
    println!(
        "state digest {digest} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // What a periodic snapshot holds the worker for. Before: the whole write (encode,
    // hash, write, fsync) under the read lock. Now: a clone under the lock, the write
    // off it. The option not taken, encoding to bytes under the lock, is measured too
    // (first, and dropped, so the two transient copies never coexist).
    let t = Instant::now();
    let bytes = postcard::to_stdvec(&m).expect("read models encode");
    let encode = t.elapsed();
    let encoded = bytes.len();
    drop(bytes);
    let (rss, heap) = (rss_bytes(), live_heap());
    let t = Instant::now();
    let copy = m.clone();
    let clone = t.elapsed();
    let cloned = rss_bytes().saturating_sub(rss);
    let cloned_heap = live_heap().saturating_sub(heap);
    let dir = tempdir();
    let t = Instant::now();
    let size = snapshot::write(&dir, &copy).expect("snapshot writes");
    let w = t.elapsed();
    drop(copy);
    let checkpoint = m.checkpoint;
    drop(m);
    println!("| snapshot step | time | held the worker |");
    println!("|---|---|---|");
    println!(
        "| write with fsync (encode + hash + write + fsync) | {:.2} s | before: all of it |",
        w.as_secs_f64()
    );
    println!(
        "| clone of the read models (+{:.0} MiB heap, +{:.0} MiB RSS while written) | {:.2} s | now: only this |",
        cloned_heap as f64 / (1 << 20) as f64,
        cloned as f64 / (1 << 20) as f64,
        clone.as_secs_f64()
    );
    println!(
        "| encode to bytes ({:.0} MiB, the option not taken) | {:.2} s | would be |",
        encoded as f64 / (1 << 20) as f64,
        encode.as_secs_f64()
    );
    let t = Instant::now();
    let back = snapshot::read(&dir)
        .expect("snapshot reads")
        .expect("present");
    let r = t.elapsed();
    assert_eq!(back.checkpoint, checkpoint);
    // Exact: the state read back is the state written.
    assert_eq!(
        back.digest(),
        digest,
        "a snapshot reads back the state it holds"
    );
    drop(back);
    println!(
        "snapshot: {:.0} MiB, write (fsync) {:.2} s, read + verify + decode {:.2} s",
        size as f64 / (1 << 20) as f64,
        w.as_secs_f64(),
        r.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let base =
        std::env::var("TIMEBANK_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let d = base.join(format!("tb-proj-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("bench dir");
    d
}

fn report_bench() {
    let volunteers = env("TIMEBANK_BENCH_REPORT_VOLUNTEERS", 20_000);
    let secs = env("TIMEBANK_BENCH_REPORT_SECS", 5);
    let clients = env("TIMEBANK_BENCH_REPORT_CLIENTS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempdir();
    rt.block_on(async move {
        let log = ledger_store::EmbeddedLog::open(&dir, ledger_store::EmbeddedConfig::default())
            .expect("embedded log opens");
        // ~12 events per volunteer stream (the city's average), one append per stream.
        let mut rng = Rng(0x00C2_ED17);
        let c = city(volunteers * 12, &mut rng);
        let mut per_stream: std::collections::BTreeMap<String, Vec<NewEvent>> = Default::default();
        for (stream, e) in &c.events {
            per_stream.entry(stream.as_str().to_owned()).or_default().push(NewEvent {
                id: EventId(uuid(&mut rng)),
                event_type: e.event_type().to_owned(),
                data: e.encode(),
                metadata: b"{}".to_vec(),
            });
        }
        let t = Instant::now();
        let mut total = 0usize;
        for (stream, evs) in per_stream {
            let stream = AccountId::new(stream).expect("valid").stream();
            for chunk in evs.chunks(ledger_core::log::limits::EVENTS_PER_APPEND_MAX) {
                total += chunk.len();
                log.append(&stream, ExpectedVersion::Any, chunk.to_vec())
                    .await
                    .expect("append");
            }
        }
        println!(
            "credit reports: {} events in {} volunteer streams appended in {:.1} s",
            total,
            c.volunteers,
            t.elapsed().as_secs_f64()
        );
        let log: Arc<dyn EventLog> = Arc::new(log);
        let policy = Arc::new(StarPolicy::national());
        let as_of: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().expect("a timestamp");
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for k in 0..clients {
            let (log, policy) = (log.clone(), policy.clone());
            let n = c.volunteers;
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(k);
                let mut lat = Vec::new();
                let mut events = 0usize;
                while Instant::now() < deadline {
                    let v = AccountId::new(format!("v-{:08}", rng.below(n))).expect("valid");
                    let t = Instant::now();
                    let evs = read_account_stream(log.as_ref(), &v).await.expect("reads");
                    events += evs.len();
                    let r = credit_report(&v, &evs, as_of, chrono::FixedOffset::east_opt(0).expect("zero offset"), "", &policy).expect("a report");
                    std::hint::black_box(r.score);
                    lat.push(t.elapsed());
                }
                (lat, events)
            }));
        }
        let mut lat = Vec::new();
        let mut events = 0;
        for t in tasks {
            let (l, e) = t.await.expect("client task");
            lat.extend(l);
            events += e;
        }
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "| clients | reports | reports/s | events per report | p50 | p99 | max |\n|---|---|---|---|---|---|---|\n| {} | {} | {:.0} | {:.1} | {:.0} µs | {:.0} µs | {:.0} µs |",
            clients,
            lat.len(),
            lat.len() as f64 / secs as f64,
            events as f64 / lat.len() as f64,
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            lat.last().expect("some reports").as_secs_f64() * 1e6
        );
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing else.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {cores} cores; {}",
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    // `TIMEBANK_BENCH_ONLY=replay` or `=report`: one half (e.g. to size the replay up).
    let only = std::env::var("TIMEBANK_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "replay" {
        replay_bench();
    }
    if only.is_empty() || only == "report" {
        report_bench();
    }
    if only == "binary" {
        binary_bench();
    }
}

/// The binary-payload decode and replay alone (`TIMEBANK_BENCH_ONLY=binary`): the same
/// events as [`replay_bench`]'s, the same two measurements, the state digest.
fn binary_bench() {
    let n = env("TIMEBANK_BENCH_EVENTS", 3_000_000);
    let mut rng = Rng(0x7153_0000);
    let c = city(n, &mut rng);
    let binary: Vec<RecordedEvent> = recorded(&c, &mut rng)
        .into_iter()
        .map(|e| RecordedEvent {
            data: LedgerEvent::decode(&e.event_type, &e.data)
                .expect("synthetic events decode")
                .encode_as(PayloadEncoding::Binary),
            ..e
        })
        .collect();
    drop(c);
    let t = Instant::now();
    for e in &binary {
        std::hint::black_box(LedgerEvent::decode(&e.event_type, &e.data).expect("decodes"));
    }
    let decode = t.elapsed();
    let (m, replay) = replay_binary(&binary);
    let (one, one_by_one) = replay_one_by_one(&binary);
    let rate = |d: Duration| binary.len() as f64 / d.as_secs_f64();
    println!("| measurement, {} events | time | events/s |", binary.len());
    println!("|---|---|---|");
    println!(
        "| binary payloads: decode only | {:.2} s | {:.0} |",
        decode.as_secs_f64(),
        rate(decode)
    );
    println!(
        "| **binary payloads: replay through all read models** | {:.2} s | {:.0} |",
        replay.as_secs_f64(),
        rate(replay)
    );
    println!(
        "| binary payloads: replay, one event at a time (`apply`, no prefetch) | {:.2} s | {:.0} |",
        one_by_one.as_secs_f64(),
        rate(one_by_one)
    );
    let digest = m.digest();
    assert_eq!(
        digest,
        one.digest(),
        "batched and one by one fold to one state"
    );
    println!("state digest {digest}");
}

/// `events` folded into fresh read models as a rebuild folds them
/// (`ReadModels::apply_all`: decoded and prefetched a batch at a time), and how long
/// it took.
fn replay_all(events: &[RecordedEvent]) -> (ReadModels, Duration) {
    let mut m = ReadModels::new();
    let t = fold_all(&mut m, events);
    (m, t)
}

/// `events` folded into `m` with `ReadModels::apply_all`, and how long it took. The
/// synthetic city breaks no rule of the handler's, so an anomaly is a bench bug.
fn fold_all(m: &mut ReadModels, events: &[RecordedEvent]) -> Duration {
    let t = Instant::now();
    m.apply_all(
        events,
        |_| None,
        |e, a| panic!("synthetic event {} folded with {a:?}", e.position),
    )
    .expect("synthetic events apply");
    t.elapsed()
}

/// `events` folded one at a time (`ReadModels::apply`, no batch and no prefetch): the
/// peer [`replay_all`] is measured against in the same run.
fn replay_one_by_one(events: &[RecordedEvent]) -> (ReadModels, Duration) {
    let mut m = ReadModels::new();
    let t = Instant::now();
    for e in events {
        assert_eq!(m.apply(e).expect("synthetic events apply"), None);
    }
    (m, t.elapsed())
}

/// The binary-payload events folded by [`replay_all`]. With `TIMEBANK_BENCH_PAUSE=1`
/// it first says its pid and waits 3 s, for a profiler to attach to this pass alone.
fn replay_binary(binary: &[RecordedEvent]) -> (ReadModels, Duration) {
    if std::env::var("TIMEBANK_BENCH_PAUSE").is_ok_and(|v| v == "1") {
        eprintln!("pid {}: binary replay starts in 3 s", std::process::id());
        std::thread::sleep(Duration::from_secs(3));
    }
    replay_all(binary)
}

//! Projection benchmarks (docs/benchmarks.md, "Projections and queries"):
//!
//! 1. **Replay**: N synthetic events of a city (the ledger's own event types and JSON
//!    payloads, as the log stores them) folded through every read model on one thread.
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
//! - `TIMEBANK_BENCH_ONLY` (`replay` or `report`): run one of the two.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode, SystemAccount};
use ledger_core::domain::events::*;
use ledger_core::domain::ids::{ActivityId, Category, Note, TransactionId, VerifierId};
use ledger_core::domain::postings::movement;
use ledger_core::domain::units::{ExchangeRate, Hours, Unit};
use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, Position, RecordedEvent};
use projections::credit::{credit_report, read_account_stream};
use projections::{snapshot, ReadModels, StarPolicy};
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

/// Hangzhou-shaped: 13 districts × 10 streets × 10 communities, 1,300 organisations,
/// 50 projects; one volunteer per ~11 events (2.68 M volunteers : 30 M events).
fn city(n: u64, rng: &mut Rng) -> City {
    let volunteers = (n / 11).max(100);
    let orgs = 1300u64;
    let projects = 50u64;
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("a timestamp");
    let start_day = NaiveDate::from_ymd_opt(2023, 1, 1).expect("a date");
    let region = |i: u64| {
        RegionCode::new(format!(
            "hangzhou/d{}/s{}/c{}",
            i % 13,
            (i / 13) % 10,
            (i / 130) % 10
        ))
        .expect("valid region")
    };
    let mut events = Vec::with_capacity(n as usize);
    for o in 0..orgs {
        let a = acc(format!("org-{o}"));
        events.push((
            a.clone(),
            LedgerEvent::AccountRegistered(AccountRegistered {
                account: a,
                kind: AccountKind::Organisation { region: region(o) },
                registered_at: base,
            }),
        ));
    }
    for p in 0..projects {
        let a = acc(format!("proj-{p}"));
        events.push((
            a.clone(),
            LedgerEvent::AccountRegistered(AccountRegistered {
                account: a,
                kind: AccountKind::Project,
                registered_at: base,
            }),
        ));
    }
    // Each volunteer's community; organisation i serves community i (1,300 of each).
    let mut home: Vec<u64> = Vec::with_capacity(volunteers as usize);
    for v in 0..volunteers {
        let a = acc(format!("v-{v:08}"));
        let community = rng.below(1300);
        home.push(community);
        events.push((
            a.clone(),
            LedgerEvent::AccountRegistered(AccountRegistered {
                account: a,
                kind: AccountKind::Volunteer {
                    region: region(community),
                    joined_on: start_day + Days::days(rng.below(1000) as i64),
                },
                registered_at: base,
            }),
        ));
    }
    let issuance = AccountId::system(SystemAccount::HourIssuance);
    let services = AccountId::system(SystemAccount::Services);
    let redeemed = AccountId::system(SystemAccount::HoursRedeemed);
    let points = AccountId::system(SystemAccount::PointIssuance);
    let cats: Vec<Category> = [
        "elderly-care",
        "river-patrol",
        "traffic",
        "epidemic",
        "blood-drive",
        "library",
    ]
    .iter()
    .map(|c| Category::new(*c).expect("valid"))
    .collect();
    // Recent deposits per volunteer, for reversals and ratings.
    let mut deposits: Vec<(u64, TransactionId)> = Vec::new();
    let rate = ExchangeRate::default();
    while (events.len() as u64) < n {
        let v = rng.below(volunteers);
        let who = acc(format!("v-{v:08}"));
        let tx = TransactionId(uuid(rng));
        let at = base + Days::seconds(events.len() as i64);
        let quarters = 1 + rng.below(24);
        let hours = Hours::new(Decimal::new(quarters as i64 * 25, 2)).expect("valid hours");
        let roll = rng.below(100);
        let e = if roll < 75 || deposits.is_empty() {
            let day = start_day + Days::days(rng.below(1400) as i64);
            let started = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
            // Mostly the local organisation; its activities are its own (~180 each,
            // ~230 k in all: 60 k a year for ~4 years, Hangzhou's figure).
            let o = if rng.below(5) == 0 {
                rng.below(orgs)
            } else {
                home[v as usize]
            };
            let org = acc(format!("org-{o}"));
            deposits.push((v, tx));
            LedgerEvent::HoursDeposited(HoursDeposited {
                transaction: tx,
                volunteer: who.clone(),
                organisation: org,
                activity: ActivityId::new(format!("act-{}", rng.below(180))).expect("valid"),
                service_date: day,
                started_at: started,
                ended_at: started + Days::minutes(quarters as i64 * 15),
                category: cats[rng.below(cats.len() as u64) as usize].clone(),
                hours,
                kind: if rng.below(10) == 0 {
                    HourKind::Honour
                } else {
                    HourKind::Credit
                },
                verifier: VerifierId::new("staff-7").expect("valid"),
                postings: movement(Unit::Hours, &issuance, &who, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 83 {
            LedgerEvent::HoursSpent(HoursSpent {
                transaction: tx,
                volunteer: who.clone(),
                purpose: SpendPurpose::ReceivedService,
                counterparty: acc(format!("proj-{}", rng.below(projects))),
                hours,
                memo: None,
                postings: movement(Unit::Hours, &who, &services, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 88 {
            let p = rate.points_for(hours).expect("points");
            let mut postings = movement(Unit::Hours, &who, &redeemed, hours.value()).to_vec();
            postings.extend(movement(Unit::Points, &points, &who, p.value()));
            LedgerEvent::HoursExchanged(HoursExchanged {
                transaction: tx,
                volunteer: who.clone(),
                hours,
                points: p,
                rate,
                postings,
                recorded_at: at,
            })
        } else if roll < 91 {
            let project = acc(format!("proj-{}", rng.below(projects)));
            LedgerEvent::HoursDonated(HoursDonated {
                transaction: tx,
                from: who.clone(),
                project: project.clone(),
                hours,
                postings: movement(Unit::Hours, &who, &project, hours.value()).to_vec(),
                recorded_at: at,
            })
        } else if roll < 93 {
            let to = acc(format!("v-{:08}", rng.below(volunteers)));
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
            let (dv, dtx) = deposits[rng.below(deposits.len() as u64) as usize];
            LedgerEvent::ServiceRated(ServiceRated {
                deposit: dtx,
                volunteer: acc(format!("v-{dv:08}")),
                rating: 1 + rng.below(5) as u8,
                rater: VerifierId::new("resident-1").expect("valid"),
                recorded_at: at,
            })
        } else if roll < 97 {
            LedgerEvent::NoShowRecorded(NoShowRecorded {
                volunteer: who.clone(),
                organisation: acc(format!("org-{}", rng.below(orgs))),
                activity: ActivityId::new("act-1").expect("valid"),
                service_date: start_day,
                recorded_at: at,
            })
        } else {
            // Reverse a recent deposit (a volunteer's own, on their stream).
            let i = rng.below(deposits.len() as u64) as usize;
            let (dv, dtx) = deposits.swap_remove(i);
            let owner = acc(format!("v-{dv:08}"));
            LedgerEvent::TransactionReversed(TransactionReversed {
                transaction: tx,
                original: dtx,
                account: owner.clone(),
                reason: Note::new("recorded twice").expect("valid"),
                // The replay reads only the debited account's legs; the amount is not
                // the original's here, which no read model checks.
                postings: movement(Unit::Hours, &owner, &issuance, Decimal::new(1, 2)).to_vec(),
                recorded_at: at,
            })
        };
        let stream = match &e {
            LedgerEvent::TransactionReversed(t) => t.account.clone(),
            _ => who,
        };
        events.push((stream, e));
    }
    City { events, volunteers }
}

/// The events as the log stores them (JSON payloads, metadata of a realistic size).
fn recorded(city: &City, rng: &mut Rng) -> Vec<RecordedEvent> {
    let metadata = br#"{"request_id":"platform-a:0123456789abcdef","request_digest":"5f0c2b7e3b0d1f8a9c4e6d2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f","prev":"0c9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10"}"#.to_vec();
    city.events
        .iter()
        .enumerate()
        .map(|(i, (stream, e))| RecordedEvent {
            stream: stream.stream(),
            version: 0,
            position: Position::from_sequence(i as u64),
            id: EventId(uuid(rng)),
            event_type: e.event_type().to_owned(),
            data: e.encode(),
            metadata: metadata.clone(),
        })
        .collect()
}

fn replay_bench() {
    let n = env("TIMEBANK_BENCH_EVENTS", 3_000_000);
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

    let rss_before = rss_bytes();
    let mut m = ReadModels::new();
    let t = Instant::now();
    for e in &events {
        m.apply(e).expect("synthetic events apply");
    }
    let replay = t.elapsed();
    let rss_after = rss_bytes();
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
    let fold = replay.saturating_sub(decode);
    println!(
        "| fold alone (replay − decode) | {:.2} s | {:.0} |",
        fold.as_secs_f64(),
        rate(fold)
    );
    println!(
        "read-model memory: ~{:.0} MiB RSS growth for {} accounts, {} standing deposits ({:.0} B per event)",
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64,
        m.rows.len(),
        m.deposits.len(),
        rss_after.saturating_sub(rss_before) as f64 / events.len() as f64
    );
    let target = 1_000_000.0;
    println!(
        "target ≥ 1,000,000 events/s on one core: {} ({:.0})",
        if rate(replay) >= target {
            "met"
        } else {
            "NOT met"
        },
        rate(replay)
    );

    let t = Instant::now();
    let digest = m.digest();
    println!(
        "state digest {digest} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // What a periodic snapshot holds the worker for. Before: the whole write (encode,
    // hash, write, fsync) under the read lock. Now: a clone under the lock, the write
    // off it. The option not taken, encoding to bytes under the lock, is measured too.
    let t = Instant::now();
    let copy = m.clone();
    let clone = t.elapsed();
    let t = Instant::now();
    let bytes = postcard::to_stdvec(&m).expect("read models encode");
    let encode = t.elapsed();
    let encoded = bytes.len();
    drop(bytes);
    let dir = tempdir();
    let t = Instant::now();
    let size = snapshot::write(&dir, &copy).expect("snapshot writes");
    let w = t.elapsed();
    drop(copy);
    println!("| snapshot step | time | held the worker |");
    println!("|---|---|---|");
    println!(
        "| write with fsync (encode + hash + write + fsync) | {:.2} s | before: all of it |",
        w.as_secs_f64()
    );
    println!(
        "| clone of the read models | {:.2} s | now: only this |",
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
    assert_eq!(back.checkpoint, m.checkpoint);
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
                    let r = credit_report(&v, &evs, as_of, "", &policy).expect("a report");
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
}

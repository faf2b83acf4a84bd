//! Durable append and read-all throughput of the embedded event log, side by side with
//! a SQLite peer in the same run. `docs/benchmarks.md` holds the figures and how to read
//! them.
//!
//! ```text
//! cargo bench -p ledger-store --bench append                         # full run, a few minutes
//! TIMEBANK_BENCH_QUICK=1 cargo bench -p ledger-store --bench append  # smoke run, seconds
//! ```
//!
//! `TIMEBANK_BENCH_DIR` picks the directory the temporary stores are made in (default:
//! the system temp dir). Both peers always use the same one, so the same disk.
//! `TIMEBANK_BENCH_ONLY=batch-1024,writers-256` runs only the listed workloads (keys:
//! `batch-N`, `writers-N`, `read-all`), e.g. to profile one.
//!
//! Workloads, each on a fresh store:
//! - **batch N**: one writer appends batches of N events (one stream per batch, 1,000
//!   account streams in turn, expected version checked) until the time or event budget
//!   is spent. A batch is one `append_blocking` call, or one SQLite transaction.
//!   Throughput is events over the time spent inside the append calls, so the client's
//!   event building counts for neither peer.
//! - **N writers**: N concurrent writers each append single events to their own stream in
//!   a loop. Embedded: N tokio tasks on a multi-thread runtime sharing one handle (group
//!   commit). SQLite: N threads, measured twice: sharing one connection behind a mutex,
//!   and each with its own connection (`BEGIN IMMEDIATE`, busy timeout). The ratio is
//!   taken against the faster of the two. Throughput is events over wall time.
//! - **read-all**: a store filled with the same events, closed and reopened, read from the
//!   start in pages of 4,096 (the contract's maximum page) into `RecordedEvent`s.
//!
//! Every append of either peer is durable when it returns: `fdatasync` for the
//! embedded log, WAL with `synchronous=FULL` for SQLite. An fsync probe measures what the
//! disk itself allows, which bounds both.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, Position, ReadFrom};
use ledger_core::log::{RecordedEvent, StreamName};
use ledger_store::{EmbeddedConfig, EmbeddedLog};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Bytes of JSON payload per event: "about 200 bytes" in the issue. No metadata.
const EVENT_DATA_BYTES: usize = 200;
const EVENT_TYPE: &str = "HoursDeposited.v1";

const BATCH_SIZES: [usize; 4] = [1, 64, 1024, 8192];
const CONCURRENT_WRITERS: [usize; 3] = [1, 16, 256];

/// Streams the batch workloads cycle through: a batch is one account's append, and a
/// ledger has many accounts, so the per-stream lookups see a realistic index.
const BATCH_STREAMS: usize = 1000;

/// Page size of read-all: `limits::READ_EVENTS_MAX`, the largest page a reader may ask.
const READ_PAGE: usize = 4096;

/// How long each workload runs for each peer. Five seconds spans thousands of fsyncs and
/// a few segment rolls at the fast end, and keeps the whole run (7 append workloads, the
/// concurrent ones with two SQLite setups, plus read-all and the probes) to a few
/// minutes. Quick mode only checks that everything runs.
const FULL_WORKLOAD_TIME: Duration = Duration::from_secs(5);
const QUICK_WORKLOAD_TIME: Duration = Duration::from_millis(300);
/// The workload time is split into this many alternating rounds per peer.
const FULL_ROUNDS: u32 = 2;

/// Event cap per workload, whichever of time and events comes first: bounds the disk
/// (~320 bytes per record, so ~640 MB per peer) and the embedded log's in-memory index.
const FULL_WORKLOAD_EVENTS_MAX: u64 = 2_000_000;
const QUICK_WORKLOAD_EVENTS_MAX: u64 = 100_000;

/// Events written before the read-all workload: enough to read for a second or more.
const FULL_READ_ALL_EVENTS: u64 = 1_000_000;
const QUICK_READ_ALL_EVENTS: u64 = 20_000;

/// How long the fsync probes run.
const FULL_PROBE_TIME: Duration = Duration::from_secs(2);
const QUICK_PROBE_TIME: Duration = Duration::from_millis(200);

/// The issue's targets, checked at the end of the run.
const TARGET_BATCH_1024: f64 = 300_000.0;
const TARGET_WRITERS_256: f64 = 20_000.0;
const TARGET_RATIO: f64 = 5.0;

#[derive(Clone, Copy)]
struct Budget {
    /// Each workload runs this many times for each peer, alternating peers, and the
    /// rounds are added up: a change in the machine's conditions (another process
    /// hitting the disk) then falls on both peers instead of one.
    rounds: u32,
    time: Duration,
    events: u64,
    read_all_events: u64,
    probe_time: Duration,
}

fn main() {
    let quick = std::env::var_os("TIMEBANK_BENCH_QUICK").is_some_and(|v| v != "0")
        || std::env::args().any(|a| a == "--quick");
    let budget = if quick {
        Budget {
            rounds: 1,
            time: QUICK_WORKLOAD_TIME,
            events: QUICK_WORKLOAD_EVENTS_MAX,
            read_all_events: QUICK_READ_ALL_EVENTS,
            probe_time: QUICK_PROBE_TIME,
        }
    } else {
        Budget {
            rounds: FULL_ROUNDS,
            time: FULL_WORKLOAD_TIME,
            events: FULL_WORKLOAD_EVENTS_MAX,
            read_all_events: FULL_READ_ALL_EVENTS,
            probe_time: FULL_PROBE_TIME,
        }
    };
    let base = std::env::var_os("TIMEBANK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the bench directory");

    // Run only these workloads: a comma-separated list of keys (batch-1, batch-64,
    // batch-1024, batch-8192, writers-1, writers-16, writers-256, read-all).
    let only = std::env::var("TIMEBANK_BENCH_ONLY").ok();
    let wanted = |key: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| k.trim() == key))
    };

    print_machine(&base, quick, &budget);
    let load_before = load_average();
    let probe = fsync_probe(&base, budget.probe_time);
    // Disk latency on a shared machine drifts; a short probe before each workload shows
    // the conditions that workload ran in.
    let row_probe = |base: &Path| fsync_p50(base, budget.probe_time / 8);
    let round = Budget {
        time: budget.time / budget.rounds,
        events: budget.events / budget.rounds as u64,
        ..budget
    };

    let mut rows = Vec::new();
    for batch in BATCH_SIZES {
        if !wanted(&format!("batch-{batch}")) {
            continue;
        }
        let fsync = row_probe(&base);
        let (mut e, mut s) = (Measured::default(), Measured::default());
        for _ in 0..budget.rounds {
            e.add(in_temp(&base, |dir| {
                batch_workload(&mut Embedded::open(dir), batch, &round)
            }));
            s.add(in_temp(&base, |dir| {
                batch_workload(&mut Sqlite::open(dir), batch, &round)
            }));
        }
        let row = Row::new(format!("append, batch of {batch}"), fsync, &e, &s, None);
        row.print_progress();
        rows.push(row);
    }
    for writers in CONCURRENT_WRITERS {
        if !wanted(&format!("writers-{writers}")) {
            continue;
        }
        let fsync = row_probe(&base);
        let mut e = Measured::default();
        let (mut shared, mut own) = (Measured::default(), Measured::default());
        for _ in 0..budget.rounds {
            e.add(in_temp(&base, |dir| embedded_writers(dir, writers, &round)));
            shared.add(in_temp(&base, |dir| {
                sqlite_writers_shared(dir, writers, &round)
            }));
            own.add(in_temp(&base, |dir| {
                sqlite_writers_own(dir, writers, &round)
            }));
        }
        const SHARED: &str = "one connection shared behind a mutex";
        const OWN: &str = "one connection per writer";
        let (best, other) = if shared.rate() >= own.rate() {
            ((SHARED, shared), (OWN, own))
        } else {
            ((OWN, own), (SHARED, shared))
        };
        let row = Row::new(
            format!(
                "{writers} concurrent single-event writer{}",
                if writers == 1 { "" } else { "s" }
            ),
            fsync,
            &e,
            &best.1,
            Some((best.0, other.0, &other.1)),
        );
        row.print_progress();
        rows.push(row);
    }
    let mut reopen = None;
    if wanted("read-all") {
        let fsync = row_probe(&base);
        let (e, opened) = in_temp(&base, |dir| embedded_read_all(dir, budget.read_all_events));
        let s = in_temp(&base, |dir| sqlite_read_all(dir, budget.read_all_events));
        let row = Row::new(
            format!("read-all, {} events", rate(e.events as f64)),
            fsync,
            &e,
            &s,
            None,
        );
        row.print_progress();
        rows.push(row);
        reopen = Some((e.events, opened));
    }
    let load_after = load_average();

    print_results(&rows, &probe, reopen);
    println!();
    println!("Load average (1 / 5 / 15 min) before: {load_before}, after: {load_after}");
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("?".into(), |s| {
        s.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
    })
}

// ---------------------------------------------------------------------------------------
// Events

/// A random 128-bit id, as a client's UUIDv4 would be: SQLite's unique index on it then
/// sees random inserts, as it would in production.
fn random_id() -> EventId {
    EventId::from_bytes(rand::rng().random())
}

/// A ~200-byte JSON-like payload that differs from event to event.
fn new_event(account: &str, n: u64) -> NewEvent {
    let mut s = format!(
        r#"{{"account":"{account}","hours":"{}.{:02}","counterparty":"account-{:06}","service":"garden help","seq":{n},"note":""#,
        n % 8,
        n * 25 % 100,
        n % 997
    );
    while s.len() < EVENT_DATA_BYTES - 2 {
        s.push('.');
    }
    s.push_str("\"}");
    NewEvent {
        id: random_id(),
        event_type: EVENT_TYPE.into(),
        data: s.into_bytes(),
        metadata: Vec::new(),
    }
}

fn account(i: usize) -> StreamName {
    StreamName::new(format!("account-{i:06}")).expect("a valid stream name")
}

// ---------------------------------------------------------------------------------------
// Measurements

/// What one workload of one peer did.
#[derive(Default)]
struct Measured {
    events: u64,
    elapsed: Duration,
    /// Latency of each append call (empty for read-all).
    latencies: Vec<Duration>,
    /// CPU time the embedded log's writer thread used during the workload.
    writer_cpu: Option<Duration>,
    /// CPU time the whole bench process used during the workload (concurrent writers).
    process_cpu: Option<Duration>,
    /// Group commits the embedded log's writer thread made.
    writer_writes: Option<u64>,
}

impl Measured {
    /// Add up the rounds of one workload.
    fn add(&mut self, round: Measured) {
        (self.writer_cpu, self.process_cpu, self.writer_writes) = if self.events == 0 {
            (round.writer_cpu, round.process_cpu, round.writer_writes)
        } else {
            (
                self.writer_cpu.zip(round.writer_cpu).map(|(a, b)| a + b),
                self.process_cpu.zip(round.process_cpu).map(|(a, b)| a + b),
                self.writer_writes
                    .zip(round.writer_writes)
                    .map(|(a, b)| a + b),
            )
        };
        self.events += round.events;
        self.elapsed += round.elapsed;
        self.latencies.extend(round.latencies);
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// "p50 / p99" of the append latencies, or "-" when there are none.
    fn latency_cell(&self) -> String {
        if self.latencies.is_empty() {
            return "-".into();
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        format!("{} / {}", ms(at(0.50)), ms(at(0.99)))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rate(r: f64) -> String {
    // Thousands separators keep the table readable.
    let n = r.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn in_temp<T>(base: &Path, f: impl FnOnce(&Path) -> T) -> T {
    let dir = tempfile::Builder::new()
        .prefix("timebank-bench-")
        .tempdir_in(base)
        .expect("create a temp dir");
    f(dir.path())
}

// ---------------------------------------------------------------------------------------
// The peers

/// What the batch workload needs of a store: one atomic, durable, version-checked append.
trait Peer {
    /// Append and return the stream's new version.
    fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> u64;

    /// CPU time used so far by the store's own background writer, if it has one.
    fn writer_cpu(&self) -> Option<Duration> {
        None
    }

    /// Segment files started since the store was created (embedded log only).
    fn new_segments(&self) -> u64 {
        0
    }
}

struct Embedded {
    log: EmbeddedLog,
    dir: PathBuf,
}

impl Embedded {
    fn open(dir: &Path) -> Self {
        Self {
            log: EmbeddedLog::open(dir, EmbeddedConfig::default()).expect("open the log"),
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.log.close();
    }
}

impl Peer for Embedded {
    fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> u64 {
        self.log
            .append_blocking(stream, expected, events)
            .expect("embedded append")
            .stream_version
    }

    fn writer_cpu(&self) -> Option<Duration> {
        writer_thread_cpu()
    }

    fn new_segments(&self) -> u64 {
        new_segments(&self.dir)
    }
}

/// CPU time (user + system) used so far by this whole process, from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(10) * (utime + stime) as u32)
}

/// CPU time (user + system) used so far by the embedded log's writer thread, from
/// `/proc/self/task/*/stat`, at the kernel's 10 ms tick resolution. Only one log is open
/// at a time here, so there is at most one such thread.
fn writer_thread_cpu() -> Option<Duration> {
    const TICK: Duration = Duration::from_millis(10); // USER_HZ = 100 on Linux
    let mut ticks = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // Thread names are cut to 15 bytes: "event-log-writer" reads "event-log-write".
        if comm.trim() != "event-log-write" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after "(comm)": state is field 3, utime field 14, stime field 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        *ticks.get_or_insert(0) += utime + stime;
    }
    ticks.map(|t: u64| TICK * t as u32)
}

/// (write calls, bytes written) so far by the embedded log's writer thread, from
/// `/proc/self/task/*/io`. See [`group_commits`].
fn writer_thread_writes() -> Option<(u64, u64)> {
    let mut writes = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "event-log-write" {
            continue;
        }
        let io = std::fs::read_to_string(task.path().join("io")).ok()?;
        let field = |name: &str| -> Option<u64> {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let (calls, bytes) = writes.get_or_insert((0, 0));
        *calls += field("syscw:")?;
        *bytes += field("wchar:")?;
    }
    writes
}

/// Group commits of the writer thread, from its write calls: each group is one `pwrite`
/// (then one fdatasync) of whole records, plus a 64-byte header when it starts a new
/// segment. Its other writes are 8-byte eventfd writes that wake a parked tokio worker
/// when it answers an async caller, so
/// `groups = calls - (bytes - record bytes - header bytes) / 8`. (A group that fills one
/// segment and starts the next writes twice, so it may count as two: at most one extra
/// per new segment.)
fn group_commits(calls: u64, bytes: u64, events: u64, new_segments: u64) -> u64 {
    let other = bytes.saturating_sub(events * RECORD_BYTES as u64 + new_segments * 64);
    calls.saturating_sub(other / 8)
}

/// Segments the embedded log in `dir` has started since it was created.
fn new_segments(dir: &Path) -> u64 {
    let segments = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count() as u64
        })
        .unwrap_or(1);
    segments.saturating_sub(1)
}

struct Sqlite {
    conn: Connection,
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    event_id   BLOB    NOT NULL UNIQUE,
    event_type TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    metadata   BLOB    NOT NULL,
    UNIQUE (stream, version)
);";

/// How long a SQLite connection waits for the write lock before giving up: far longer
/// than any workload, so no append fails under contention (it waits instead).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

fn sqlite_connect(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join("events.sqlite")).expect("open sqlite");
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .expect("journal_mode=WAL");
    assert_eq!(mode.to_lowercase(), "wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous=FULL");
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
        .expect("busy_timeout");
    conn.execute_batch(SQLITE_SCHEMA).expect("create the table");
    conn
}

/// One append as one transaction: check the expected version, insert the rows, commit.
fn sqlite_append(
    conn: &mut Connection,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> u64 {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("begin");
    let current: Option<i64> = tx
        .prepare_cached("SELECT MAX(version) FROM events WHERE stream = ?1")
        .expect("prepare")
        .query_row([stream.as_str()], |r| r.get(0))
        .optional()
        .expect("read the stream version")
        .flatten();
    let current = current.map(|v| v as u64);
    assert!(
        expected.is_satisfied_by(current),
        "sqlite: {stream} at {current:?}, expected {expected}"
    );
    let first = current.map_or(0, |v| v + 1);
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (stream, version, event_id, event_type, data, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .expect("prepare");
        for (i, e) in events.iter().enumerate() {
            insert
                .execute(params![
                    stream.as_str(),
                    (first + i as u64) as i64,
                    &e.id.as_bytes()[..],
                    e.event_type,
                    e.data,
                    e.metadata
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
    first + events.len() as u64 - 1
}

impl Sqlite {
    fn open(dir: &Path) -> Self {
        Self {
            conn: sqlite_connect(dir),
        }
    }
}

impl Peer for Sqlite {
    fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> u64 {
        sqlite_append(&mut self.conn, stream, expected, &events)
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

fn batch_workload(peer: &mut impl Peer, batch: usize, budget: &Budget) -> Measured {
    let streams: Vec<StreamName> = (0..BATCH_STREAMS).map(account).collect();
    let mut versions: Vec<Option<u64>> = vec![None; BATCH_STREAMS];
    let mut m = Measured::default();
    let cpu_before = peer.writer_cpu();
    let writes_before = writer_thread_writes();
    let mut n = 0u64;
    let mut i = 0usize;
    while m.elapsed < budget.time && m.events < budget.events {
        let s = i % BATCH_STREAMS;
        i += 1;
        let events: Vec<NewEvent> = (0..batch)
            .map(|_| {
                n += 1;
                new_event(streams[s].as_str(), n)
            })
            .collect();
        let expected = ExpectedVersion::from_current(versions[s]);
        let t0 = Instant::now();
        let version = peer.append(&streams[s], expected, events);
        let took = t0.elapsed();
        versions[s] = Some(version);
        m.elapsed += took;
        m.latencies.push(took);
        m.events += batch as u64;
    }
    // The writer names its thread itself, so just after open it may not be found yet:
    // it is a new thread that has done nothing then, so count that as zero.
    m.writer_cpu = peer
        .writer_cpu()
        .map(|a| a - cpu_before.unwrap_or_default());
    m.writer_writes = writer_thread_writes().map(|(calls, bytes)| {
        let (c0, b0) = writes_before.unwrap_or_default();
        group_commits(calls - c0, bytes - b0, m.events, peer.new_segments())
    });
    m
}

fn embedded_writers(dir: &Path, writers: usize, budget: &Budget) -> Measured {
    let log = EmbeddedLog::open(dir, EmbeddedConfig::default()).expect("open the log");
    // Default worker count: one per core, as a server would run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cpu_before = writer_thread_cpu();
    let process_before = process_cpu();
    let writes_before = writer_thread_writes();
    let written = Arc::new(AtomicU64::new(0));
    let events_max = budget.events;
    let start = Instant::now();
    let deadline = start + budget.time;
    let latencies = rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let log = log.clone();
                let written = written.clone();
                tokio::spawn(async move {
                    let stream = account(w);
                    let mut current = None;
                    let mut n = 0u64;
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline && written.load(Ordering::Relaxed) < events_max
                    {
                        n += 1;
                        let event = new_event(stream.as_str(), n);
                        let t0 = Instant::now();
                        let r = log
                            .append(&stream, ExpectedVersion::from_current(current), vec![event])
                            .await
                            .expect("embedded append");
                        latencies.push(t0.elapsed());
                        current = Some(r.stream_version);
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("writer task"));
        }
        all
    });
    let elapsed = start.elapsed();
    let writer_cpu = writer_thread_cpu().map(|a| a - cpu_before.unwrap_or_default());
    let process_cpu = process_cpu().zip(process_before).map(|(a, b)| a - b);
    let events = written.load(Ordering::Relaxed);
    let writer_writes = writer_thread_writes().map(|(calls, bytes)| {
        let (c0, b0) = writes_before.unwrap_or_default();
        group_commits(calls - c0, bytes - b0, events, new_segments(dir))
    });
    drop(rt);
    log.close();
    Measured {
        events,
        elapsed,
        latencies,
        writer_cpu,
        process_cpu,
        writer_writes,
    }
}

/// N threads, each appending single events to its own stream until the budget is spent;
/// `append` is how one thread appends.
fn threaded_writers<C: Send>(
    writers: usize,
    budget: &Budget,
    connect: impl Fn() -> C + Sync,
    append: impl Fn(&mut C, &StreamName, ExpectedVersion, &[NewEvent]) -> u64 + Sync,
) -> Measured {
    let written = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + budget.time;
    let latencies = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (written, connect, append) = (&written, &connect, &append);
                scope.spawn(move || {
                    let mut conn = connect();
                    let stream = account(w);
                    let mut current = None;
                    let mut n = 0u64;
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline
                        && written.load(Ordering::Relaxed) < budget.events
                    {
                        n += 1;
                        let event = new_event(stream.as_str(), n);
                        let t0 = Instant::now();
                        let v = append(
                            &mut conn,
                            &stream,
                            ExpectedVersion::from_current(current),
                            &[event],
                        );
                        latencies.push(t0.elapsed());
                        current = Some(v);
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            all.extend(t.join().expect("writer thread"));
        }
        all
    });
    Measured {
        events: written.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies,
        ..Measured::default()
    }
}

/// SQLite, one connection shared by every writer behind a mutex: writes are serialized
/// in the process instead of by SQLite's file lock, so no writer sleeps in the busy
/// handler.
fn sqlite_writers_shared(dir: &Path, writers: usize, budget: &Budget) -> Measured {
    let conn = Arc::new(Mutex::new(sqlite_connect(dir)));
    threaded_writers(
        writers,
        budget,
        || conn.clone(),
        |conn, stream, expected, events| {
            let mut c = conn.lock().expect("sqlite mutex");
            sqlite_append(&mut c, stream, expected, events)
        },
    )
}

/// SQLite, one connection per writer: `BEGIN IMMEDIATE` takes the write lock, the others
/// wait in SQLite's busy handler.
fn sqlite_writers_own(dir: &Path, writers: usize, budget: &Budget) -> Measured {
    drop(sqlite_connect(dir)); // create the table before the writers race to
    threaded_writers(writers, budget, || sqlite_connect(dir), sqlite_append)
}

/// Fill a store with `events` events in batches of 1,024 over the account streams.
fn fill(peer: &mut impl Peer, events: u64) {
    let streams: Vec<StreamName> = (0..BATCH_STREAMS).map(account).collect();
    let mut versions: Vec<Option<u64>> = vec![None; BATCH_STREAMS];
    let mut n = 0u64;
    let mut i = 0;
    while n < events {
        let s = i % BATCH_STREAMS;
        i += 1;
        let batch = (events - n).min(1024);
        let evs: Vec<NewEvent> = (0..batch)
            .map(|_| {
                n += 1;
                new_event(streams[s].as_str(), n)
            })
            .collect();
        let v = peer.append(&streams[s], ExpectedVersion::from_current(versions[s]), evs);
        versions[s] = Some(v);
    }
}

/// Returns the read-all measurement and how long the reopen (index rebuild) took.
fn embedded_read_all(dir: &Path, events: u64) -> (Measured, Duration) {
    fill(&mut Embedded::open(dir), events);
    let t0 = Instant::now();
    let log = EmbeddedLog::open(dir, EmbeddedConfig::default()).expect("reopen the log");
    let opened = t0.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let (read, bytes) = rt.block_on(async {
        let mut from = ReadFrom::Start;
        let (mut read, mut bytes) = (0u64, 0usize);
        loop {
            let page = log.read_all(from, READ_PAGE).await.expect("read_all");
            let Some(last) = page.last() else { break };
            from = ReadFrom::After(last.position);
            read += page.len() as u64;
            bytes += page.iter().map(|e| e.data.len()).sum::<usize>();
        }
        (read, bytes)
    });
    let elapsed = start.elapsed();
    assert_eq!(read, events, "read-all returns every event");
    assert_eq!(bytes, events as usize * EVENT_DATA_BYTES);
    log.close();
    (
        Measured {
            events: read,
            elapsed,
            ..Measured::default()
        },
        opened,
    )
}

fn sqlite_read_all(dir: &Path, events: u64) -> Measured {
    fill(&mut Sqlite::open(dir), events);
    let conn = sqlite_connect(dir);
    let start = Instant::now();
    let mut stmt = conn
        .prepare(
            "SELECT position, stream, version, event_id, event_type, data, metadata
             FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
        )
        .expect("prepare");
    let (mut after, mut read, mut bytes) = (0i64, 0u64, 0usize);
    loop {
        let page: Vec<RecordedEvent> = stmt
            .query_map(params![after, READ_PAGE as i64], |r| {
                let id: Vec<u8> = r.get(3)?;
                Ok(RecordedEvent {
                    position: Position::from_sequence(r.get::<_, i64>(0)? as u64),
                    stream: StreamName::new(r.get::<_, String>(1)?).expect("stream name"),
                    version: r.get::<_, i64>(2)? as u64,
                    id: EventId::from_bytes(id.try_into().expect("16-byte id")),
                    event_type: r.get(4)?,
                    data: r.get(5)?,
                    metadata: r.get(6)?,
                })
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let Some(last) = page.last() else { break };
        after = last.position.commit() as i64;
        read += page.len() as u64;
        bytes += page.iter().map(|e| e.data.len()).sum::<usize>();
    }
    let elapsed = start.elapsed();
    assert_eq!(read, events, "read-all returns every row");
    assert_eq!(bytes, events as usize * EVENT_DATA_BYTES);
    Measured {
        events: read,
        elapsed,
        ..Measured::default()
    }
}

// ---------------------------------------------------------------------------------------
// What the disk allows

struct Probe {
    /// (label, write size, latencies) of write + fdatasync loops.
    syncs: Vec<(&'static str, usize, Measured)>,
    /// 4 MiB writes + fdatasync: the disk's sequential durable bandwidth, in MiB/s.
    bandwidth_mib_s: f64,
}

/// Size of one record of the workload on disk: 8-byte record header, 80-byte fixed body,
/// 14-byte stream name, 17-byte type, 200-byte payload (docs/event-log.md).
const RECORD_BYTES: usize = 8 + 80 + 14 + 17 + EVENT_DATA_BYTES;

/// Size of the preallocated probe file; writes wrap around in it, as SQLite's WAL does.
const PREALLOCATED_BYTES: usize = 64 << 20;

/// Write `chunk` bytes + fdatasync in a loop for `time`, either appending to `file` (it
/// grows, as a segment does) or overwriting a zero-filled preallocated region.
fn sync_loop(file: &File, chunk: usize, preallocated: bool, time: Duration) -> Measured {
    let buf = vec![0x5au8; chunk];
    let mut m = Measured::default();
    let mut offset = 0u64;
    while m.elapsed < time {
        if preallocated && offset as usize + chunk > PREALLOCATED_BYTES {
            offset = 0;
        }
        let t0 = Instant::now();
        file.write_all_at(&buf, offset).expect("write");
        file.sync_data().expect("fdatasync");
        let took = t0.elapsed();
        offset += chunk as u64;
        m.elapsed += took;
        m.latencies.push(took);
        m.events += 1;
    }
    m
}

/// What the disk allows: how long a small durable write takes when the file grows
/// (block allocation and a size change for the journal to commit) and when it
/// overwrites preallocated space, for one record and for 64, and the bandwidth.
fn fsync_probe(base: &Path, time: Duration) -> Probe {
    in_temp(base, |dir| {
        let preallocated = File::create(dir.join("preallocated")).expect("create");
        let zeros = vec![0u8; 1 << 20];
        for at in (0..PREALLOCATED_BYTES).step_by(zeros.len()) {
            preallocated
                .write_all_at(&zeros, at as u64)
                .expect("preallocate");
        }
        preallocated.sync_all().expect("fsync");
        let mut syncs = Vec::new();
        for (records, label_grow, label_pre) in [
            (1, "1 record, file grows", "1 record, preallocated"),
            (64, "64 records, file grows", "64 records, preallocated"),
        ] {
            let chunk = records * RECORD_BYTES;
            let grows = File::create(dir.join(format!("grows-{records}"))).expect("create");
            syncs.push((label_grow, chunk, sync_loop(&grows, chunk, false, time / 4)));
            syncs.push((
                label_pre,
                chunk,
                sync_loop(&preallocated, chunk, true, time / 4),
            ));
        }

        let big = File::create(dir.join("bandwidth")).expect("create");
        let chunk = vec![0xa5u8; 4 << 20];
        let (mut written, mut spent, mut offset) = (0usize, Duration::ZERO, 0u64);
        while spent < time {
            let t0 = Instant::now();
            big.write_all_at(&chunk, offset).expect("write");
            big.sync_data().expect("fdatasync");
            spent += t0.elapsed();
            offset += chunk.len() as u64;
            written += chunk.len();
        }
        let bandwidth_mib_s = written as f64 / (1 << 20) as f64 / spent.as_secs_f64();
        Probe {
            syncs,
            bandwidth_mib_s,
        }
    })
}

/// p50 of one-record appends + fdatasync for `time`: the disk's state right now.
fn fsync_p50(base: &Path, time: Duration) -> Duration {
    in_temp(base, |dir| {
        let file = File::create(dir.join("probe")).expect("create");
        let mut m = sync_loop(&file, RECORD_BYTES, false, time);
        m.latencies.sort_unstable();
        m.latencies[m.latencies.len() / 2]
    })
}

// ---------------------------------------------------------------------------------------
// Output

struct Row {
    workload: String,
    /// p50 of a short fdatasync probe just before the workload ran.
    fsync_p50: Duration,
    embedded: f64,
    sqlite: f64,
    embedded_latency: String,
    sqlite_latency: String,
    /// Embedded writer thread: (CPU share of the measured time, CPU per event).
    writer_busy: Option<(f64, Duration)>,
    /// Cores the whole bench process kept busy during the embedded workload.
    process_cores: Option<f64>,
    /// Embedded: (group commits per second, events per group).
    groups: Option<(f64, f64)>,
    /// The slower SQLite setup of the concurrent workloads, for the record.
    /// (faster setup, slower setup, slower's events/s, slower's latencies).
    sqlite_other: Option<(&'static str, &'static str, f64, String)>,
}

impl Row {
    fn new(
        workload: String,
        fsync_p50: Duration,
        e: &Measured,
        s: &Measured,
        other: Option<(&'static str, &'static str, &Measured)>,
    ) -> Self {
        Self {
            workload,
            fsync_p50,
            embedded: e.rate(),
            sqlite: s.rate(),
            embedded_latency: e.latency_cell(),
            sqlite_latency: s.latency_cell(),
            writer_busy: e.writer_cpu.map(|cpu| {
                (
                    cpu.as_secs_f64() / e.elapsed.as_secs_f64(),
                    cpu / e.events.max(1) as u32,
                )
            }),
            process_cores: e
                .process_cpu
                .map(|cpu| cpu.as_secs_f64() / e.elapsed.as_secs_f64()),
            groups: e.writer_writes.filter(|&w| w > 0).map(|w| {
                (
                    w as f64 / e.elapsed.as_secs_f64(),
                    e.events as f64 / w as f64,
                )
            }),
            sqlite_other: other.map(|(best, name, o)| (best, name, o.rate(), o.latency_cell())),
        }
    }

    fn ratio(&self) -> f64 {
        self.embedded / self.sqlite
    }

    fn print_progress(&self) {
        eprintln!(
            "  done: {:<40} embedded {:>12} ev/s  sqlite {:>10} ev/s  ratio {:.1}x",
            self.workload,
            rate(self.embedded),
            rate(self.sqlite),
            self.ratio()
        );
    }
}

fn print_machine(base: &Path, quick: bool, budget: &Budget) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("?".into(), |s| s.trim().to_owned());
    let (device, fs) = mount_of(base);
    let disk = device
        .strip_prefix("/dev/")
        .map(|d| {
            let q = |f: &str| {
                std::fs::read_to_string(format!("/sys/block/{d}/queue/{f}"))
                    .map_or("?".into(), |s| s.trim().to_owned())
            };
            let driver = std::fs::read_link(format!("/sys/block/{d}/device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "?".into());
            format!(
                "driver {driver}, write cache {}, rotational {}",
                q("write_cache"),
                q("rotational")
            )
        })
        .unwrap_or_default();
    println!("# timebank durable append benchmark");
    println!();
    println!(
        "- mode: {}",
        if quick {
            "QUICK (smoke run, figures not meaningful)"
        } else {
            "full"
        }
    );
    println!(
        "- budget per workload and peer: {:.1} s or {} events, whichever first, in {} alternating rounds; read-all of {} events",
        budget.time.as_secs_f64(),
        rate(budget.events as f64),
        budget.rounds,
        rate(budget.read_all_events as f64)
    );
    println!("- cores: {cores} ({cpu}), memory {mem_gib}, kernel {kernel}");
    println!(
        "- store directory: {} on {device} ({fs}; {disk})",
        base.display()
    );
    println!(
        "- sqlite {} (bundled), journal_mode=WAL, synchronous=FULL",
        rusqlite::version()
    );
    println!("- events: {EVENT_DATA_BYTES}-byte JSON payload, no metadata, ~{RECORD_BYTES} bytes per embedded record");
    println!();
}

/// The device and filesystem type of the mount that holds `path`.
fn mount_of(path: &Path) -> (String, String) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, at, _)| path.starts_with(at))
        .max_by_key(|(_, at, _)| at.len())
        .map_or(("?".into(), "?".into()), |(dev, _, fs)| {
            (dev.into(), fs.into())
        })
}

fn print_results(rows: &[Row], probe: &Probe, reopen: Option<(u64, Duration)>) {
    println!("## fsync probe (write + fdatasync, one at a time)");
    println!();
    println!("| write | bytes | fdatasyncs/s | p50 / p99 |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, bytes, m) in &probe.syncs {
        println!(
            "| {label} | {} | {} | {} |",
            rate(*bytes as f64),
            rate(m.rate()),
            m.latency_cell()
        );
    }
    println!();
    println!(
        "Sequential durable bandwidth (4 MiB write + fdatasync): {:.0} MiB/s, i.e. at most {} events/s of {RECORD_BYTES}-byte records.",
        probe.bandwidth_mib_s,
        rate(probe.bandwidth_mib_s * (1 << 20) as f64 / RECORD_BYTES as f64)
    );
    println!();
    println!("## Throughput (events/s), embedded log vs SQLite, same run, same disk");
    println!();
    println!("| workload | embedded | sqlite | ratio | embedded p50 / p99 | sqlite p50 / p99 | fsync p50 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1}x | {} | {} | {} |",
            r.workload,
            rate(r.embedded),
            rate(r.sqlite),
            r.ratio(),
            r.embedded_latency,
            r.sqlite_latency,
            ms(r.fsync_p50)
        );
    }
    println!();
    println!("Latencies are per append call; fsync p50 is a short write + fdatasync probe just before the row ran. For the concurrent rows the sqlite column is the faster of its two setups:");
    println!();
    for r in rows {
        if let Some((best, name, other, lat)) = &r.sqlite_other {
            println!(
                "- {}: {best}; the other, {name}: {} events/s, p50 / p99 {}",
                r.workload,
                rate(*other),
                lat
            );
        }
    }
    println!();
    println!("Embedded writer thread CPU (user + system, 10 ms ticks) against the measured time, and its group commits (write + fdatasync):");
    println!();
    for r in rows {
        if let Some((share, per_event)) = r.writer_busy {
            let process = r.process_cores.map_or(String::new(), |c| {
                format!(" (the whole bench process: {c:.2} cores busy)")
            });
            let groups = r.groups.map_or(String::new(), |(per_s, size)| {
                format!("; {} group commits/s of {size:.1} events", rate(per_s))
            });
            println!(
                "- {}: busy {:.0}% of the time, {:.2} us per event{process}{groups}",
                r.workload,
                share * 100.0,
                per_event.as_secs_f64() * 1e6
            );
        }
    }
    println!();
    if let Some((events, opened)) = reopen {
        println!(
            "Embedded reopen before read-all (scan and index rebuild of {} events): {:.2} s",
            rate(events as f64),
            opened.as_secs_f64()
        );
        println!();
    }
    println!("## Targets");
    println!();
    let find = |prefix: &str| rows.iter().find(|r| r.workload.starts_with(prefix));
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    if let Some(r) = find("append, batch of 1024") {
        println!(
            "- batch of 1,024 >= {} events/s: {} ({})",
            rate(TARGET_BATCH_1024),
            verdict(r.embedded >= TARGET_BATCH_1024),
            rate(r.embedded)
        );
    }
    if let Some(r) = find("256 concurrent") {
        println!(
            "- 256 concurrent writers >= {} events/s: {} ({})",
            rate(TARGET_WRITERS_256),
            verdict(r.embedded >= TARGET_WRITERS_256),
            rate(r.embedded)
        );
    }
    for r in rows {
        println!(
            "- {} >= {TARGET_RATIO:.0}x sqlite: {} ({:.1}x)",
            r.workload,
            verdict(r.ratio() >= TARGET_RATIO),
            r.ratio()
        );
    }
}

//! Crash test: a child process appends from several threads and reports each
//! acknowledged append on stdout; the parent SIGKILLs it at a random moment, reopens
//! the log, and checks that every acknowledged event is there exactly once, that no
//! append is visible in part, and that the hash chain verifies. Repeated
//! `KILL_CYCLES` times on the same directory, so recovery also runs on logs that were
//! themselves recovered.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, StreamName};
use ledger_store::{verify, EmbeddedConfig, EmbeddedLog};
use rand::{Rng, SeedableRng};

/// At least 25 kill cycles in the normal test run (the bar); each costs about
/// a tenth of a second.
const KILL_CYCLES: usize = 30;
/// Writer threads in the child, so kills land in the middle of group commits.
const CHILD_WRITERS: usize = 4;
const CHILD_ENV: &str = "TIMEBANK_CRASH_CHILD_DIR";

/// Small segments so kills also land around segment rollovers.
fn config() -> EmbeddedConfig {
    EmbeddedConfig {
        segment_bytes_max: 64 * 1024,
        ..EmbeddedConfig::default()
    }
}

#[test]
#[ignore = "the child side of crash_recovery_keeps_every_acknowledged_event; run by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = EmbeddedLog::open(std::path::Path::new(&dir), config()).expect("child open");
    let threads: Vec<_> = (0..CHILD_WRITERS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let stream = StreamName::new(format!("crash-{t}")).expect("name");
                let mut rng = rand::rngs::StdRng::from_os_rng();
                loop {
                    let batch = uuid::Uuid::new_v4();
                    let n = rng.random_range(1..=5usize);
                    let events: Vec<NewEvent> = (0..n)
                        .map(|i| NewEvent {
                            id: EventId::new_random(),
                            event_type: "Crash.v1".into(),
                            data: format!(
                                "{batch} {i} {n} {}",
                                "x".repeat(rng.random_range(0..300))
                            )
                            .into_bytes(),
                            metadata: Vec::new(),
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
                    log.append_blocking(&stream, ExpectedVersion::Any, events)
                        .expect("append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {batch} {}", ids.join(",")).expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn crash_recovery_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed: u64 = rand::random();
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked: HashSet<EventId> = HashSet::new();
    let mut cuts = 0;
    for cycle in 0..KILL_CYCLES {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let (_, list) = rest.split_once(' ').expect("ack line");
                    ids.extend(list.split(',').map(|s| EventId(s.parse().expect("uuid"))));
                }
            }
            ids
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250)));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap child");
        let new_acks = reader.join().expect("reader");
        acked.extend(new_acks);

        let log = EmbeddedLog::open(dir.path(), config()).expect("reopen after kill");
        if log.recovery().torn_tail.is_some() {
            cuts += 1;
        }
        let events = read_everything(&log);
        let mut seen = HashSet::new();
        let mut batches: HashMap<String, (usize, usize)> = HashMap::new();
        for e in &events {
            assert!(
                seen.insert(e.id),
                "cycle {cycle}: event {} appears twice",
                e.id
            );
            let text = String::from_utf8_lossy(&e.data).into_owned();
            let mut parts = text.split(' ');
            let batch = parts.next().expect("batch").to_owned();
            let _i = parts.next();
            let n: usize = parts.next().expect("n").parse().expect("n");
            let entry = batches.entry(batch).or_insert((0, n));
            entry.0 += 1;
        }
        for (batch, (have, n)) in &batches {
            assert_eq!(have, n, "cycle {cycle}: append {batch} is visible in part");
        }
        let missing: Vec<&EventId> = acked.iter().filter(|id| !seen.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged events lost: {missing:?}"
        );
        let report = verify(dir.path()).expect("verify");
        assert_eq!(report.events, events.len() as u64);
        assert_eq!(report.head_hash, log.recovery().head_hash);
        assert!(report.torn_tail.is_none(), "recovery cut the tail");
        log.close();
    }
    eprintln!(
        "crash test: {KILL_CYCLES} kills, {} acknowledged events, {cuts} torn tails cut",
        acked.len()
    );
    assert!(acked.len() > KILL_CYCLES, "the child made progress");
}

fn read_everything(log: &EmbeddedLog) -> Vec<ledger_core::log::RecordedEvent> {
    let mut out = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = futures::executor::block_on(log.read_all(from, 4096)).expect("read_all");
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        out.extend(page);
    }
    out
}

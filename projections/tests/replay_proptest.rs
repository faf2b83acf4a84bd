//! Random command sequences: a rebuild from zero, the live worker (incremental), and a
//! snapshot-then-resume all reach identical state (equal digests and equal values).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ledger_core::domain::commands::Command;
use ledger_core::domain::events::HourKind;
use ledger_core::domain::ids::TransactionId;
use ledger_core::log::{EventLog, ReadFrom};
use projections::runtime::SnapshotHook;
use projections::{runtime, snapshot, ProjectionConfig, ReadModels};
use proptest::prelude::*;

const VOLUNTEERS: [&str; 4] = ["v0", "v1", "v2", "v3"];
const REGIONS: [&str; 3] = ["hz/xihu/a", "hz/xihu/b", "hz/binjiang"];

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        v: usize,
        org: usize,
        day: u32,
        quarters: u32,
        cat: usize,
        act: usize,
        honour: bool,
    },
    Spend {
        v: usize,
        quarters: u32,
    },
    Exchange {
        v: usize,
        quarters: u32,
    },
    Transfer {
        from: usize,
        to: usize,
        quarters: u32,
    },
    Donate {
        v: usize,
        p: usize,
        quarters: u32,
    },
    Reverse {
        k: usize,
    },
    NoShow {
        v: usize,
        day: u32,
    },
    Rate {
        k: usize,
        rating: u8,
    },
    Close {
        v: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, 0..2usize, 0..90u32, 1..32u32, 0..3usize, 0..3usize, prop::bool::weighted(0.2))
            .prop_map(|(v, org, day, quarters, cat, act, honour)| Op::Deposit { v, org, day, quarters, cat, act, honour }),
        2 => (0..4usize, 1..16u32).prop_map(|(v, quarters)| Op::Spend { v, quarters }),
        1 => (0..4usize, 1..16u32).prop_map(|(v, quarters)| Op::Exchange { v, quarters }),
        1 => (0..4usize, 0..4usize, 1..16u32).prop_map(|(from, to, quarters)| Op::Transfer { from, to, quarters }),
        1 => (0..4usize, 0..2usize, 1..16u32).prop_map(|(v, p, quarters)| Op::Donate { v, p, quarters }),
        2 => (0..64usize).prop_map(|k| Op::Reverse { k }),
        1 => (0..4usize, 0..90u32).prop_map(|(v, day)| Op::NoShow { v, day }),
        1 => (0..64usize, 1..=5u8).prop_map(|(k, rating)| Op::Rate { k, rating }),
        1 => (0..4usize).prop_map(|v| Op::Close { v }),
    ]
}

fn date(offset: u32) -> String {
    (day("2026-08-01") + chrono::Duration::days(i64::from(offset))).to_string()
}

fn hours(quarters: u32) -> String {
    format!("{}.{:02}", quarters / 4, (quarters % 4) * 25)
}

/// Run the ops; return nothing, the log holds the result.
async fn play(c: &mut City, ops: &[Op]) {
    c.organisation("org0", "hz/xihu").await;
    c.organisation("org1", "hz/binjiang").await;
    c.project("p0").await;
    c.project("p1").await;
    for (i, v) in VOLUNTEERS.iter().enumerate() {
        c.volunteer(v, REGIONS[i % REGIONS.len()], "2025-01-01")
            .await;
    }
    // (account a reversal is decided on, transaction, is a deposit of that volunteer)
    let mut reversible: Vec<(String, TransactionId, bool)> = Vec::new();
    for op in ops {
        let (cmd, debited, deposit): (Command, Option<String>, bool) = match op.clone() {
            Op::Deposit {
                v,
                org,
                day,
                quarters,
                cat,
                act,
                honour,
            } => {
                let kind = if honour {
                    HourKind::Honour
                } else {
                    HourKind::Credit
                };
                let cmd = c.deposit_cmd(
                    VOLUNTEERS[v],
                    ["org0", "org1"][org],
                    &date(day),
                    &hours(quarters),
                    ["care", "patrol", "traffic"][cat],
                    ["a0", "a1", "a2"][act],
                    kind,
                );
                (cmd, Some(VOLUNTEERS[v].to_owned()), true)
            }
            Op::Spend { v, quarters } => {
                let cmd = Command::SpendHours(ledger_core::domain::commands::SpendHours {
                    request_id: ledger_core::domain::ids::RequestId::new(format!(
                        "s-{}",
                        rand_id(op, reversible.len())
                    ))
                    .unwrap(),
                    volunteer: acc(VOLUNTEERS[v]),
                    purpose: ledger_core::domain::events::SpendPurpose::ReceivedService,
                    counterparty: acc(if quarters % 2 == 0 { "p0" } else { "org0" }),
                    hours: ledger_core::domain::units::Hours::parse(&hours(quarters)).unwrap(),
                    memo: None,
                });
                (cmd, Some(VOLUNTEERS[v].to_owned()), false)
            }
            Op::Exchange { v, quarters } => {
                let cmd = Command::ExchangeHours(ledger_core::domain::commands::ExchangeHours {
                    request_id: ledger_core::domain::ids::RequestId::new(format!(
                        "x-{}",
                        rand_id(op, reversible.len())
                    ))
                    .unwrap(),
                    volunteer: acc(VOLUNTEERS[v]),
                    hours: ledger_core::domain::units::Hours::parse(&hours(quarters)).unwrap(),
                    expected_rate_version: None,
                });
                (cmd, Some(VOLUNTEERS[v].to_owned()), false)
            }
            Op::Transfer { from, to, quarters } => (
                c.transfer_cmd(VOLUNTEERS[from], VOLUNTEERS[to], &hours(quarters)),
                Some(VOLUNTEERS[to].to_owned()),
                false,
            ),
            Op::Donate { v, p, quarters } => {
                let p = ["p0", "p1"][p];
                (
                    c.donate_cmd(VOLUNTEERS[v], p, &hours(quarters)),
                    Some(p.to_owned()),
                    false,
                )
            }
            Op::Reverse { k } => {
                if reversible.is_empty() {
                    continue;
                }
                let (a, t, _) = reversible[k % reversible.len()].clone();
                (c.reverse_cmd(&a, t), None, false)
            }
            Op::NoShow { v, day } => (
                c.no_show_cmd(VOLUNTEERS[v], "org0", &date(day)),
                None,
                false,
            ),
            Op::Rate { k, rating } => {
                let deposits: Vec<_> = reversible.iter().filter(|r| r.2).collect();
                if deposits.is_empty() {
                    continue;
                }
                let (a, t, _) = deposits[k % deposits.len()].clone();
                (c.rate_cmd(&a, t, rating), None, false)
            }
            Op::Close { v } => (c.close_cmd(VOLUNTEERS[v]), None, false),
        };
        if let Ok(o) = c.try_run(cmd).await {
            if let Some(a) = debited {
                reversible.push((a, o.transaction, deposit));
            }
        }
    }
}

fn rand_id(op: &Op, n: usize) -> String {
    format!(
        "{n}-{}",
        blake3::hash(format!("{op:?}").as_bytes()).to_hex()[..8].to_owned()
    )
}

async fn apply_range(
    log: &dyn EventLog,
    m: &mut ReadModels,
    from: ReadFrom,
    max: usize,
) -> ReadFrom {
    let page = log.read_all(from, max).await.unwrap();
    for e in &page {
        assert_eq!(
            m.apply(e).unwrap(),
            None,
            "the handler writes no fold anomaly"
        );
    }
    page.last().map_or(from, |e| ReadFrom::After(e.position))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn rebuild_incremental_and_resumed_states_are_identical(ops in prop::collection::vec(op(), 1..60), cut in 0usize..200) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = City::new();
            // The live worker follows the log while the commands run (incremental).
            let (live, worker) = runtime::start(Arc::new(c.log.clone()), ProjectionConfig::default()).await;
            play(&mut c, &ops).await;
            let head = c.log.head().await.unwrap().unwrap();
            live.freshness().wait_for(head, Duration::from_secs(2)).await.unwrap();
            worker.stop().await.unwrap();

            let rebuilt = c.models().await;
            prop_assert_eq!(rebuilt.checkpoint, Some(head));

            // Snapshot after `cut` events, load it, resume to the end.
            let dir = tempfile::tempdir().unwrap();
            let mut part = ReadModels::new();
            let from = apply_range(&c.log, &mut part, ReadFrom::Start, cut.max(1)).await;
            snapshot::write(dir.path(), &part).unwrap();
            let mut resumed = snapshot::read(dir.path()).unwrap().unwrap();
            prop_assert_eq!(&resumed, &part);
            let mut from = from;
            loop {
                let before = resumed.events;
                from = apply_range(&c.log, &mut resumed, from, 7).await;
                if resumed.events == before { break; }
            }

            let live = live.read().clone();
            prop_assert_eq!(live.digest(), rebuilt.digest());
            prop_assert_eq!(resumed.digest(), rebuilt.digest());
            prop_assert_eq!(&live, &rebuilt);
            prop_assert_eq!(&resumed, &rebuilt);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn the_worker_snapshots_on_stop_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    let cfg = ProjectionConfig::in_dir(dir.path());
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg.clone()).await;
    let o = c.deposit("v0", "org0", "2026-11-01", "3").await;
    p.freshness()
        .wait_for(o.position, Duration::from_secs(2))
        .await
        .unwrap();
    w.stop().await.unwrap();
    let snap = snapshot::read(dir.path()).unwrap().unwrap();
    assert_eq!(snap.checkpoint, Some(o.position));
    // More events while stopped; the restarted worker loads the snapshot and catches up.
    let o2 = c.deposit("v0", "org0", "2026-11-02", "2").await;
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg).await;
    assert!(p.freshness().checkpoint() >= Some(o.position));
    p.freshness()
        .wait_for(o2.position, Duration::from_secs(2))
        .await
        .unwrap();
    let digest = p.read().digest();
    assert_eq!(digest, c.models().await.digest());
    w.stop().await.unwrap();
    // A damaged snapshot is refused (and the server then rebuilds from the log).
    let path = dir.path().join(snapshot::SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        snapshot::read(dir.path()),
        Err(snapshot::SnapshotError::Corrupt { .. })
    ));
    let (p, w) = runtime::start(
        Arc::new(c.log.clone()),
        ProjectionConfig::in_dir(dir.path()),
    )
    .await;
    p.freshness()
        .wait_for(o2.position, Duration::from_secs(2))
        .await
        .unwrap();
    let digest = p.read().digest();
    assert_eq!(digest, c.models().await.digest());
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_rebuild_writes_a_snapshot_equal_to_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    c.deposit("v0", "org0", "2026-11-01", "3").await;
    let m = runtime::rebuild(&c.log, Some(dir.path())).await.unwrap();
    assert_eq!(
        snapshot::read(dir.path()).unwrap().unwrap().digest(),
        m.digest()
    );
    assert_eq!(m.events, 3);
}

/// A snapshot directory whose path a file takes, in a temporary directory (kept
/// while the first value lives): every snapshot written there fails.
fn unwritable_snapshot_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("projections");
    std::fs::write(&dir, b"not a directory").unwrap();
    (root, dir)
}

/// A periodic snapshot that cannot be written (here the snapshot directory's path is
/// taken by a file; the operator's probe filled a 5 MB volume) is logged and tried
/// again: the worker goes on applying, so queries with a fresh `min_position` are
/// answered. Before, the failure stopped the worker, and every query waiting for a
/// position past it answered NOT_CAUGHT_UP until the process restarted. Once the path
/// is free, a later attempt writes the snapshot.
#[tokio::test]
async fn a_snapshot_that_cannot_be_written_does_not_stop_the_worker() {
    let (_root, dir) = unwritable_snapshot_dir();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    let cfg = ProjectionConfig {
        // Due at every event, and again 100 ms after a failed one.
        snapshot_every_events: 1,
        snapshot_every: Duration::from_millis(100),
        ..ProjectionConfig::in_dir(&dir)
    };
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg).await;
    let wait = Duration::from_secs(5);
    let first = c.deposit("v0", "org0", "2026-11-01", "3").await;
    p.freshness().wait_for(first.position, wait).await.unwrap();
    // Several attempts have failed by now; the worker still applies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = c.deposit("v0", "org0", "2026-11-02", "2").await;
    p.freshness().wait_for(second.position, wait).await.unwrap();
    let folded = c.models().await.digest();
    assert_eq!(p.read().digest(), folded);
    // The path freed, a retry lands without a new event.
    std::fs::remove_file(&dir).unwrap();
    // An attempt copied before the second deposit may land first, at the first one's
    // checkpoint; the retry after it holds both.
    let deadline = std::time::Instant::now() + wait;
    let snap = loop {
        if let Ok(Some(s)) = snapshot::read(&dir) {
            if s.checkpoint == Some(second.position) {
                break s;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot of the second deposit after the path was freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(snap.checkpoint, Some(second.position));
    w.stop().await.unwrap();
}

/// The final snapshot's failure is the one a stop reports: the server's exit status
/// then says the next start will replay more than it should have to.
#[tokio::test]
async fn a_final_snapshot_that_cannot_be_written_is_what_the_stop_returns() {
    let (_root, dir) = unwritable_snapshot_dir();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    let cfg = ProjectionConfig {
        snapshot_every_events: 1_000,
        snapshot_every: Duration::from_secs(3600),
        ..ProjectionConfig::in_dir(&dir)
    };
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg).await;
    let o = c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    p.freshness()
        .wait_for(o.position, Duration::from_secs(5))
        .await
        .unwrap();
    let e = w
        .stop()
        .await
        .expect_err("the final snapshot cannot be written");
    assert!(
        matches!(
            e,
            runtime::RuntimeError::Snapshot(snapshot::SnapshotError::Io { .. })
        ),
        "{e:?}"
    );
}

/// A periodic snapshot is written off the worker: while its write is held up (a slow
/// disk, played by the hook) the worker goes on applying events, and the snapshot that
/// lands holds the consistent cut it was copied at. The final one, after it, holds all.
/// Multi-thread, as the server runs it (the clone goes through `block_in_place`; the
/// current-thread path is taken by the other snapshot tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_applies_events_while_a_snapshot_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    // The writing thread says it has started, then waits until released.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let hook = SnapshotHook(Arc::new(move || {
        let _ = started_tx.send(());
        let _ = release_rx.lock().unwrap().recv();
    }));
    let cfg = ProjectionConfig {
        // Due at the third event (the deposit below); never by time in the test.
        snapshot_every_events: 3,
        snapshot_every: Duration::from_secs(3600),
        before_snapshot_write: Some(hook),
        ..ProjectionConfig::in_dir(dir.path())
    };
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg).await;
    let o1 = c.deposit("v0", "org0", "2026-11-01", "3").await;
    let wait = Duration::from_secs(5);
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(wait))
        .await
        .unwrap()
        .expect("a snapshot starts after the third event");
    // The write is held: events still get applied.
    c.deposit("v0", "org0", "2026-11-02", "2").await;
    let o3 = c.deposit("v0", "org0", "2026-11-03", "1").await;
    p.freshness().wait_for(o3.position, wait).await.unwrap();
    assert!(snapshot::read(dir.path()).unwrap().is_none());
    release_tx.send(()).unwrap();
    drop(release_tx);
    let deadline = std::time::Instant::now() + wait;
    let snap = loop {
        if let Some(s) = snapshot::read(dir.path()).unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((snap.checkpoint, snap.events), (Some(o1.position), 3));
    // The stop waits for nothing in flight and writes everything.
    w.stop().await.unwrap();
    let last = snapshot::read(dir.path()).unwrap().unwrap();
    assert_eq!(last.checkpoint, Some(o3.position));
    assert_eq!(last.digest(), c.models().await.digest());
}

//! The worker's monitoring numbers (`projections::stats`): lag before and after
//! catching up, and the snapshot age reset by a snapshot. And what the worker does
//! with a snapshot at start: resume on it, or drop it when the log (restored from a
//! backup) does not hold the event at its checkpoint.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::{
    EventId, EventLog, ExpectedVersion, NewEvent, Position, ReadFrom, StreamName,
};
use ledger_store::{copy_log, EmbeddedConfig, EmbeddedLog};
use projections::{runtime, LagCounting, LagSampler, ProjectionConfig, Projections};

#[tokio::test]
async fn the_lag_shows_while_behind_and_is_zero_once_caught_up() {
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    let log = Arc::new(c.log.clone());
    let (p, w) = runtime::start(log.clone(), ProjectionConfig::default()).await;
    let o = c.deposit("v0", "org0", "2026-11-01", "3").await;
    p.freshness()
        .wait_for(o.position, Duration::from_secs(2))
        .await
        .unwrap();
    // A stopped worker keeps its checkpoint: the events appended since are its lag.
    w.stop().await.unwrap();
    c.deposit("v0", "org0", "2026-11-02", "2").await;
    let o3 = c.deposit("v0", "org0", "2026-11-03", "1").await;
    let behind = o3.position.commit() - o.position.commit();
    assert!(behind >= 2, "{behind}");
    for counting in [LagCounting::Sequence, LagCounting::ReadAhead] {
        let mut s = LagSampler::new(counting);
        let first = s.sample(&*log, &p).await.unwrap();
        assert_eq!(first.checkpoint, Some(o.position));
        assert_eq!(first.head, Some(o3.position));
        assert_eq!(first.lag_events, behind, "{counting:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let later = s.sample(&*log, &p).await.unwrap();
        assert_eq!(later.lag_events, behind);
        assert!(later.lag >= Duration::from_millis(30), "{later:?}");
    }
    // A worker that catches up: no lag in events or seconds.
    let (p, w) = runtime::start(log.clone(), ProjectionConfig::default()).await;
    let mut s = LagSampler::new(LagCounting::Sequence);
    p.freshness()
        .wait_for(o3.position, Duration::from_secs(2))
        .await
        .unwrap();
    let caught_up = s.sample(&*log, &p).await.unwrap();
    assert_eq!(caught_up.lag_events, 0);
    assert_eq!(caught_up.lag, Duration::ZERO);
    w.stop().await.unwrap();
}

#[tokio::test]
async fn the_snapshot_age_grows_from_start_and_resets_after_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    let cfg = ProjectionConfig {
        // Snapshot on every event, and never by time during the test.
        snapshot_every_events: 1,
        snapshot_every: Duration::from_secs(3600),
        ..ProjectionConfig::in_dir(dir.path())
    };
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first catch-up (two events) snapshots at once: wait for that, then let it age.
    let before = p.snapshot_age();
    assert!(before >= Duration::from_millis(250), "{before:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let aged = p.snapshot_age();
    assert!(aged >= before + Duration::from_millis(100), "{aged:?}");
    let o = c.deposit("v0", "org0", "2026-11-01", "3").await;
    p.freshness()
        .wait_for(o.position, Duration::from_secs(2))
        .await
        .unwrap();
    // The snapshot is written right after the chunk is published.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while p.snapshot_age() >= Duration::from_millis(100) {
        assert!(std::time::Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(dir
        .path()
        .join(projections::snapshot::SNAPSHOT_FILE)
        .exists());
    w.stop().await.unwrap();
}

#[tokio::test]
async fn the_worker_takes_the_handlers_decoded_events_and_folds_the_same_state() {
    use ledger_core::app::DecodedEvents;
    let decoded = Arc::new(DecodedEvents::new());
    let mut c = City::new();
    c.handler = c.handler.clone().with_decoded_events(decoded.clone());
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    c.volunteer("v1", "hz/xihu/b", "2025-02-01").await;
    c.deposit("v0", "org0", "2026-11-01", "3").await;
    let last = c.deposit("v1", "org0", "2026-11-02", "2.5").await;
    let log = Arc::new(c.log.clone());
    let appended = last.position.commit() + 1;
    // Started after the commands, the worker finds every event left for it.
    let cfg = ProjectionConfig {
        decoded: Some(decoded.clone()),
        ..ProjectionConfig::default()
    };
    let (p, w) = runtime::start(log.clone(), cfg).await;
    p.freshness()
        .wait_for(last.position, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(decoded.taken(), appended, "no payload decoded again");
    let live = p.read().digest();
    w.stop().await.unwrap();
    let rebuilt = runtime::rebuild(&*log, None).await.unwrap();
    assert_eq!(
        live,
        rebuilt.digest(),
        "same state as decoding every payload"
    );
}

#[tokio::test]
async fn a_snapshot_past_the_logs_head_is_dropped_and_the_models_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || snapshots_at_stop(dir.path());
    // A log of five events, folded and snapshotted at the worker's stop.
    let mut c = City::new();
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    c.deposit("v0", "org0", "2026-11-01", "3").await;
    let last = c.deposit("v0", "org0", "2026-11-02", "2").await;
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg()).await;
    p.freshness()
        .wait_for(last.position, Duration::from_secs(2))
        .await
        .unwrap();
    w.stop().await.unwrap();
    // The log "restored from an older backup": only the first three events' worth.
    let mut older = City::new();
    older.organisation("org0", "hz/xihu").await;
    let registered = older.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    assert!(registered.position < last.position);
    let log = Arc::new(older.log.clone());
    let (p, w) = runtime::start(log.clone(), cfg()).await;
    // The snapshot's last event is not in this log (its checkpoint is past the head):
    // the snapshot is dropped at start and the worker rebuilds.
    let rebuilt = runtime::rebuild(&*log, None).await.unwrap();
    let mut waited = Duration::ZERO;
    while p.read().events != rebuilt.events || p.read().checkpoint != rebuilt.checkpoint {
        assert!(
            waited < Duration::from_secs(5),
            "never rebuilt: {:?}",
            p.read().checkpoint
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(rebuilt.checkpoint, Some(registered.position));
    assert_eq!(
        p.read().digest(),
        rebuilt.digest(),
        "the state of the restored log"
    );
    w.stop().await.unwrap();
}

/// The worker's log in these tests: notes where each subscription starts (from the
/// start: a rebuild; after a checkpoint: a resume), and can fail or hang its next
/// stream reads.
type Watched = ledger_core::log::faulty::FaultyLog;

/// `history` in an embedded log in `dir`, the backend a data directory holds: copied
/// in global order, so every event keeps its stream, version, id and position.
async fn embedded(history: &MemoryLog, dir: &Path) -> EmbeddedLog {
    let log = EmbeddedLog::open(dir, EmbeddedConfig::default()).unwrap();
    copy_log(history, &log, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert_eq!(log.head().await.unwrap(), history.head().await.unwrap());
    log
}

/// Events no handler of this ledger writes in this order, appended as another writer
/// would: a deposit before its volunteer's registration, the registration, the
/// deposit's reversal (which took the service back from a region it was never counted
/// in, and panicked), and the end of a hold never authorised (panicked).
#[tokio::test]
async fn a_foreign_logs_anomalies_are_counted_and_the_worker_folds_on() {
    let log = Arc::new(MemoryLog::new());
    let stream = StreamName::new("account-ghost").unwrap();
    let tx = "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01";
    let events = [
        (
            "HoursDeposited.v1",
            tx,
            r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","volunteer":"ghost","organisation":"org-1","activity":"act-1","service_date":"2026-03-05","started_at":"2026-03-05T09:00:00Z","ended_at":"2026-03-05T11:30:00Z","category":"elderly-care","hours":"2.50","kind":"credit","verifier":"ver-1","postings":[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"ghost","unit":"hours","amount":"2.50"}],"recorded_at":"2026-03-05T12:00:00Z"}"#,
        ),
        (
            "AccountRegistered.v1",
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a00",
            r#"{"account":"ghost","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#,
        ),
        (
            "TransactionReversed.v1",
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a02",
            r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a02","original":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","account":"ghost","reason":"entered twice","postings":[{"account":"system:hour-issuance","unit":"hours","amount":"2.50"},{"account":"ghost","unit":"hours","amount":"-2.50"}],"recorded_at":"2026-03-06T12:00:00Z"}"#,
        ),
        (
            "RedemptionVoided.v1",
            "7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a03",
            r#"{"hold":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a09","volunteer":"ghost","merchant":"shop","released":"1.00","recorded_at":"2026-03-07T12:00:00Z"}"#,
        ),
    ];
    let mut head = None;
    for (event_type, id, data) in events {
        let e = NewEvent {
            id: EventId(id.parse().unwrap()),
            event_type: event_type.to_owned(),
            data: data.as_bytes().to_vec(),
            metadata: Vec::new(),
        };
        let appended = log
            .append(&stream, ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
        head = Some(appended.last_position());
    }
    let dir = tempfile::tempdir().unwrap();
    let (p, w) = runtime::start(log.clone(), snapshots_at_stop(dir.path())).await;
    caught_up(&p, head.unwrap()).await;
    assert_eq!(
        p.fold_anomalies(),
        2,
        "RegisteredAfterService, HoldEndedUnauthorised"
    );
    let sample = LagSampler::new(LagCounting::Sequence)
        .sample(&*log, &p)
        .await
        .unwrap();
    assert_eq!(sample.fold_anomalies, 2);
    {
        let m = p.read();
        let ghost = m.row(m.account_index("ghost").unwrap());
        assert_eq!((ghost.lifetime_centi(), ghost.balances), (0, [0; 3]));
    }
    // Events after them are folded as ever.
    let later = NewEvent {
        id: EventId("7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a04".parse().unwrap()),
        event_type: "AccountRegistered.v1".to_owned(),
        data: br#"{"account":"v-2","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#.to_vec(),
        metadata: Vec::new(),
    };
    let appended = log
        .append(
            &StreamName::new("account-v-2").unwrap(),
            ExpectedVersion::NoStream,
            vec![later],
        )
        .await
        .unwrap();
    caught_up(&p, appended.last_position()).await;
    assert!(p.read().account_index("v-2").is_some());
    w.stop().await.unwrap();
    // The count is the log's, kept in the snapshot: a restart resumes with it.
    let (p, w) = runtime::start(log.clone(), snapshots_at_stop(dir.path())).await;
    caught_up(&p, appended.last_position()).await;
    assert_eq!(p.fold_anomalies(), 2);
    assert_eq!(
        p.read().events,
        5,
        "resumed from the snapshot, nothing refolded"
    );
    w.stop().await.unwrap();
}

/// Wait until the worker has applied up to `head`.
async fn caught_up(p: &Projections, head: Position) {
    p.freshness()
        .wait_for(head, Duration::from_secs(5))
        .await
        .unwrap();
}

/// The history a snapshot is taken of: four events, the last a deposit at `v0`'s
/// version 2.
async fn four_events(c: &mut City) -> Position {
    c.organisation("org0", "hz/xihu").await;
    c.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    c.deposit("v0", "org0", "2026-11-01", "3").await;
    c.deposit("v0", "org0", "2026-11-02", "2").await.position
}

#[tokio::test]
async fn a_restored_log_beyond_the_checkpoint_with_another_event_there_is_detected_and_the_models_rebuilt(
) {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("projections");
    let cfg = || snapshots_at_stop(&snapshots);
    // Given a snapshot of one history, taken at the worker's stop,
    let mut ours = City::new();
    let checkpoint = four_events(&mut ours).await;
    let log = embedded(&ours.log, &dir.path().join("log")).await;
    let (p, w) = runtime::start(Arc::new(log.clone()), cfg()).await;
    caught_up(&p, checkpoint).await;
    let snapshot_event = p.read().checkpoint_event.clone().unwrap();
    w.stop().await.unwrap();
    log.close();
    // and a log restored from a backup of another history: same accounts, other
    // requests (so other event ids), and a head beyond the snapshot's checkpoint.
    let mut other = City::new();
    other.skip_request_ids(1000);
    other.organisation("org0", "hz/xihu").await;
    other.volunteer("v0", "hz/xihu/a", "2025-01-01").await;
    other.deposit("v0", "org0", "2026-11-01", "4").await;
    other.deposit("v0", "org0", "2026-11-03", "5").await;
    let head = other
        .deposit("v0", "org0", "2026-11-04", "1")
        .await
        .position;
    assert!(head > checkpoint);
    let restored = embedded(&other.log, &dir.path().join("restored-log")).await;
    // At the checkpoint it holds another event of the same stream and version: only
    // the event id tells the two apart.
    let there = restored
        .read_stream(
            &StreamName::new(snapshot_event.stream.as_str()).unwrap(),
            snapshot_event.version,
            1,
        )
        .await
        .unwrap();
    assert_eq!(there[0].position, checkpoint);
    assert_ne!(there[0].id, snapshot_event.id);
    let restored = Watched::over(restored);

    // When the worker starts on the restored log with that snapshot,
    let (p, w) = runtime::start(Arc::new(restored.clone()), cfg()).await;

    // then the snapshot is dropped before queries see it, the worker folds the log
    // from the start, and the models equal a rebuild from zero.
    assert_eq!(
        p.freshness().checkpoint(),
        None,
        "the snapshot is not served"
    );
    caught_up(&p, head).await;
    assert_eq!(restored.subscriptions(), vec![ReadFrom::Start]);
    let rebuilt = runtime::rebuild(&restored, None).await.unwrap();
    assert_eq!(p.read().digest(), rebuilt.digest());
    assert_eq!(*p.read(), rebuilt);
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_on_the_same_log_resumes_from_the_snapshot_without_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("projections");
    let cfg = || snapshots_at_stop(&snapshots);
    // Given a snapshot taken at the worker's stop,
    let mut c = City::new();
    let checkpoint = four_events(&mut c).await;
    let log_dir = dir.path().join("log");
    let log = embedded(&c.log, &log_dir).await;
    let (p, w) = runtime::start(Arc::new(log.clone()), cfg()).await;
    caught_up(&p, checkpoint).await;
    w.stop().await.unwrap();
    // and more events appended to the same log while the worker was stopped,
    let head = c.deposit("v0", "org0", "2026-11-03", "1").await.position;
    copy_log(&c.log, &log, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    log.close();

    // when the process starts again (the log reopened),
    let log = Watched::over(EmbeddedLog::open(&log_dir, EmbeddedConfig::default()).unwrap());
    let (p, w) = runtime::start(Arc::new(log.clone()), cfg()).await;

    // then the snapshot is served at once and the worker goes on after its checkpoint,
    // never from the start, to the same models as a rebuild.
    assert!(p.freshness().checkpoint() >= Some(checkpoint));
    caught_up(&p, head).await;
    assert_eq!(log.subscriptions(), vec![ReadFrom::After(checkpoint)]);
    let rebuilt = runtime::rebuild(&log, None).await.unwrap();
    assert_eq!(p.read().digest(), rebuilt.digest());
    assert_eq!(*p.read(), rebuilt);
    w.stop().await.unwrap();
}

/// Operator's probe: after a restart the snapshot age read 10 s although the snapshot
/// on disk was older; after a crash that hid how much a next start would replay. The
/// age of a snapshot resumed from starts at its file's age.
#[tokio::test]
async fn the_snapshot_age_after_a_restart_is_the_age_of_the_snapshot_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("projections");
    let mut c = City::new();
    let checkpoint = four_events(&mut c).await;
    let (p, w) = runtime::start(Arc::new(c.log.clone()), snapshots_at_stop(&snapshots)).await;
    caught_up(&p, checkpoint).await;
    w.stop().await.unwrap();
    // Written an hour ago, as far as the file system says.
    let hour = Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(snapshots.join(projections::snapshot::SNAPSHOT_FILE))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - hour)
        .unwrap();
    let (p, w) = runtime::start(Arc::new(c.log.clone()), snapshots_at_stop(&snapshots)).await;
    let age = p.snapshot_age();
    assert!(
        age >= hour && age < hour + Duration::from_secs(60),
        "{age:?}"
    );
    w.stop().await.unwrap();
}

/// Projections in `dir` that write a snapshot only when the worker stops (none by
/// count or by time during a test).
fn snapshots_at_stop(dir: &Path) -> ProjectionConfig {
    ProjectionConfig {
        snapshot_every: Duration::from_secs(3600),
        ..ProjectionConfig::in_dir(dir)
    }
}

/// A city of four events whose worker stopped with a snapshot in `dir` at their
/// checkpoint, then one more deposit: (the city, the config, the checkpoint, the head).
async fn snapshot_then_one_more(dir: &Path) -> (City, ProjectionConfig, Position, Position) {
    let cfg = snapshots_at_stop(dir);
    let mut c = City::new();
    let checkpoint = four_events(&mut c).await;
    let (p, w) = runtime::start(Arc::new(c.log.clone()), cfg.clone()).await;
    caught_up(&p, checkpoint).await;
    w.stop().await.unwrap();
    let head = c.deposit("v0", "org0", "2026-11-03", "1").await.position;
    (c, cfg, checkpoint, head)
}

/// A worker that held its snapshot back at start (queries see no checkpoint), then,
/// once the log answered, resumed on it after `checkpoint` (one subscription, no
/// rebuild from the start) to the models a rebuild gives.
async fn held_back_then_resumed(
    c: &City,
    log: &Watched,
    p: &Projections,
    checkpoint: Position,
    head: Position,
) {
    assert_eq!(p.freshness().checkpoint(), None, "held back");
    caught_up(p, head).await;
    assert_eq!(log.subscriptions(), vec![ReadFrom::After(checkpoint)]);
    let rebuilt = c.models().await;
    assert_eq!(p.read().digest(), rebuilt.digest());
}

/// Paused time: the bounded wait elapses as soon as nothing else can run.
#[tokio::test(start_paused = true)]
async fn a_log_that_hangs_on_the_check_at_start_does_not_hang_the_start() {
    // Given a snapshot of this log,
    let dir = tempfile::tempdir().unwrap();
    let (c, cfg, checkpoint, head) = snapshot_then_one_more(dir.path()).await;
    // when the worker starts while the log never answers the check's first read,
    let log = Watched::over(c.log.clone());
    log.hanging_stream_reads.store(1, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let (p, w) = runtime::start(Arc::new(log.clone()), cfg).await;

    // then the start returns after the bounded wait with the snapshot held back, and
    // the worker resumes on it once the log answers (no rebuild).
    assert_eq!(started.elapsed(), runtime::RESTORE_CHECK_WAIT_MAX);
    held_back_then_resumed(&c, &log, &p, checkpoint, head).await;
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_the_log_cannot_be_asked_about_at_start_is_held_back_then_resumed() {
    // Given a snapshot of this log,
    let dir = tempfile::tempdir().unwrap();
    let (c, cfg, checkpoint, head) = snapshot_then_one_more(dir.path()).await;
    // when the worker starts while the log cannot answer the check,
    let log = Watched::over(c.log.clone());
    log.failing_stream_reads.store(1, Ordering::SeqCst);
    let (p, w) = runtime::start(Arc::new(log.clone()), cfg).await;

    // then queries do not see the unchecked snapshot, and once the log answers the
    // worker resumes on it after its checkpoint (no rebuild).
    held_back_then_resumed(&c, &log, &p, checkpoint, head).await;
    w.stop().await.unwrap();
}

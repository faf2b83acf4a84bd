//! The worker's monitoring numbers (`projections::stats`): lag before and after
//! catching up, and the snapshot age reset by a snapshot.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use projections::{runtime, LagCounting, LagSampler, ProjectionConfig};

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
    let cfg = || ProjectionConfig {
        snapshot_every: Duration::from_secs(3600),
        ..ProjectionConfig::in_dir(dir.path())
    };
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
    // The snapshot loads first (checkpoint past the head, so a freshness wait would
    // pass at once); the worker then finds its checkpoint missing and rebuilds.
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

//! The KurrentDB backend end to end through the real `kurrentdb` client, against an
//! in-process stand-in of a KurrentDB node (`kurrentdb_fake/server.rs`): the shared
//! conformance suite, the stored form of events, a committed append whose answer is
//! lost in a failover, subscriptions that survive dropped connections, and import /
//! export between the embedded log and "KurrentDB".

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use ledger_core::log::{
    EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, RecordedEvent, StreamName,
};
use ledger_store::{copy_log, CopyProgress, EmbeddedConfig, EmbeddedLog, KurrentLog};

/// Code generated at build time (`build.rs`) by tonic-build from the `streams.proto`
/// that ships with the `kurrentdb` crate, vendored in `kurrentdb_fake/protos/`
/// (server side only).
#[allow(clippy::all, dead_code)]
mod proto {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

#[path = "kurrentdb_fake/server.rs"]
mod server;

fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("name")
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        id: EventId::new_random(),
        event_type: "HoursDeposited.v1".into(),
        data: format!("{{\"n\":{n},\"hours\":\"1.5\"}}").into_bytes(),
        metadata: format!("{{\"schema\":1,\"prev_hash\":\"{n:064x}\"}}").into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_conformance_suite_passes_through_the_real_client() {
    let (_fake, url) = server::start().await;
    ledger_core::log::conformance::run_all(|| {
        let log = KurrentLog::connect(&url).expect("connect");
        async move { log }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_as_json_and_claims_stay_hidden() {
    let (fake, url) = server::start().await;
    let log = KurrentLog::connect(&url).expect("connect");
    let s = stream("account-json");
    let mut raw = event(0);
    raw.data = b"not json".to_vec();
    log.append(&s, ExpectedVersion::NoStream, vec![event(1), raw])
        .await
        .expect("append");
    let stored = fake.stored();
    let ours: Vec<&(String, String, String)> =
        stored.iter().filter(|e| e.0 == "account-json").collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(
        ours[0].2, "application/json",
        "ledger JSON shows as JSON in the UI"
    );
    assert_eq!(
        ours[1].2, "application/octet-stream",
        "anything else is kept as bytes"
    );
    let claims: Vec<_> = stored
        .iter()
        .filter(|e| e.0.starts_with("timebank-idclaim-"))
        .collect();
    assert_eq!(claims.len(), 2, "one claim per event id");
    assert!(claims
        .iter()
        .all(|c| c.1 == "EventIdClaimed.v1" && c.2 == "application/json"));
    let all = log.read_all(ReadFrom::Start, 100).await.expect("read_all");
    assert_eq!(
        all.len(),
        2,
        "no claim and no system event in the ledger's view"
    );
    assert!(all.iter().all(|e| e.stream == s));
    assert_eq!(log.head().await.expect("head"), Some(all[1].position));
    // A name of the claim namespace is refused, not silently mixed with claims.
    let r = log
        .append(
            &stream("timebank-idclaim-x"),
            ExpectedVersion::Any,
            vec![event(2)],
        )
        .await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_committed_before_a_failover_returns_its_original_result() {
    let (fake, url) = server::start().await;
    let log = KurrentLog::connect(&url).expect("connect");
    let s = stream("account-failover");
    log.append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .expect("first");
    fake.faults
        .lose_next_append_reply
        .store(true, Ordering::SeqCst);
    let batch = vec![event(1), event(2)];
    let r = log
        .append(&s, ExpectedVersion::Exact(0), batch.clone())
        .await
        .expect("the backend finds its committed append instead of failing");
    assert_eq!(r.stream_version, 2);
    let read = log.read_stream(&s, 0, 10).await.expect("read");
    assert_eq!(read.len(), 3, "written once");
    assert_eq!(r.positions, vec![read[1].position, read[2].position]);
    // The caller's own retry (stale expected version now) gets the same answer.
    let again = log
        .append(&s, ExpectedVersion::Exact(0), batch)
        .await
        .expect("retry");
    assert_eq!(again, r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_dropped_connections_without_gaps_or_duplicates() {
    let (fake, url) = server::start().await;
    let log = KurrentLog::connect(&url).expect("connect");
    let s = stream("account-sub");
    let total = 120;
    let mut sub = log.subscribe_all(ReadFrom::Start);
    let writer = {
        let log = log.clone();
        let fake = fake.clone();
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..total {
                log.append(&s, ExpectedVersion::Any, vec![event(i)])
                    .await
                    .expect("append");
                if i % 10 == 3 {
                    fake.write_system_event();
                }
                if i % 25 == 7 {
                    fake.drop_subscriptions();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let mut seen: Vec<RecordedEvent> = Vec::new();
    while seen.len() < total {
        let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("an event within 30 s")
            .expect("subscription open")
            .expect("no error");
        assert_eq!(e.stream, s, "only ledger events");
        seen.push(e);
    }
    writer.await.expect("writer");
    let ids: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "no duplicates");
    assert!(
        seen.iter().enumerate().all(|(i, e)| e.version == i as u64),
        "no gaps"
    );
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    // Resuming from a checkpoint starts right after it.
    fake.drop_subscriptions();
    let mut resumed = log.subscribe_all(ReadFrom::After(seen[59].position));
    let next = resumed.next().await.expect("open").expect("ok");
    assert_eq!(next.id, seen[60].id);
}

fn keep_going(_: &CopyProgress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_log_moves_into_kurrentdb_and_back() {
    let (_fake, url) = server::start().await;
    let kurrent = KurrentLog::connect(&url).expect("connect");
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let src = EmbeddedLog::open(a.path(), EmbeddedConfig::default()).expect("open");
    let mut versions = [None; 5];
    for i in 0..200usize {
        let k = (i * 3) % 5;
        let n = 1 + i % 3;
        let r = src
            .append(
                &stream(&format!("account-{k}")),
                ExpectedVersion::from_current(versions[k]),
                (0..n).map(|j| event(i * 10 + j)).collect(),
            )
            .await
            .expect("append");
        versions[k] = Some(r.stream_version);
    }
    let imported = copy_log(&src, &kurrent, &mut keep_going)
        .await
        .expect("import");
    assert_eq!(imported.written, imported.events);
    let again = copy_log(&src, &kurrent, &mut keep_going)
        .await
        .expect("re-import");
    assert_eq!((again.written, again.appends), (0, 0), "idempotent");
    let dst = EmbeddedLog::open(b.path(), EmbeddedConfig::default()).expect("open");
    let exported = copy_log(&kurrent, &dst, &mut keep_going)
        .await
        .expect("export");
    assert_eq!(exported.events, imported.events);
    let strip = |v: Vec<RecordedEvent>| {
        v.into_iter()
            .map(|e| (e.stream, e.version, e.id, e.event_type, e.data, e.metadata))
            .collect::<Vec<_>>()
    };
    let round = strip(dst.read_all(ReadFrom::Start, 4096).await.expect("read"));
    assert_eq!(
        strip(src.read_all(ReadFrom::Start, 4096).await.expect("read")),
        round
    );
    dst.close();
    assert_eq!(
        ledger_store::verify(b.path()).expect("verifies").events,
        imported.events
    );
}

//! The conformance suite of the [`EventLog`] contract, run against every backend.
//!
//! Each case gets a fresh log from the caller's factory and uses stream names unique to
//! the run, and filters `read_all` to its own streams, so the suite also runs against a
//! shared server (KurrentDB) that holds other data.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use super::{
    AppendError, EventId, EventLog, ExpectedVersion, InvalidEvent, NewEvent, ReadError, ReadFrom,
    RecordedEvent, StreamName,
};

/// Run every case. `make` returns a fresh, empty-or-shared log for each case.
pub async fn run_all<L, F, Fut>(mut make: F)
where
    L: EventLog + Clone,
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
{
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    macro_rules! case {
        ($name:ident) => {{
            eprintln!("conformance: {}", stringify!($name));
            $name(make().await, run).await;
        }};
    }
    case!(append_and_read_back);
    case!(expected_version_is_enforced);
    case!(append_is_atomic_and_ordered);
    case!(retry_returns_original_result);
    case!(reused_ids_are_rejected);
    case!(invalid_appends_are_rejected);
    case!(read_paging);
    case!(concurrent_appends_conflict);
    case!(subscription_crosses_from_catch_up_to_live);
}

pub fn event(kind: &str, data: &str) -> NewEvent {
    NewEvent {
        id: EventId::new_random(),
        event_type: kind.to_owned(),
        data: data.as_bytes().to_vec(),
        metadata: b"{}".to_vec(),
    }
}

fn stream(run: &str, name: &str) -> StreamName {
    StreamName::new(format!("conf{run}-{name}")).expect("valid test stream name")
}

/// All events of this run's streams, paging through the whole log.
async fn read_all_of_run(log: &impl EventLog, run: &str) -> Vec<RecordedEvent> {
    let prefix = format!("conf{run}-");
    let mut out = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, 100).await.expect("read_all");
        let Some(last) = page.last() else { break };
        from = ReadFrom::After(last.position);
        out.extend(
            page.into_iter()
                .filter(|e| e.stream.as_str().starts_with(&prefix)),
        );
    }
    out
}

async fn append_and_read_back(log: impl EventLog, run: &str) {
    let s = stream(run, "a");
    assert!(log.read_stream(&s, 0, 10).await.expect("read").is_empty());
    let e = event("Opened.v1", "{\"n\":1}");
    let r = log
        .append(&s, ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .expect("first append");
    assert_eq!(r.stream_version, 0);
    assert_eq!(r.positions.len(), 1);
    let read = log.read_stream(&s, 0, 10).await.expect("read");
    assert_eq!(read.len(), 1);
    let got = &read[0];
    assert_eq!(
        (got.version, got.id, got.position),
        (0, e.id, r.positions[0])
    );
    assert_eq!(
        (&got.event_type[..], &got.data[..], &got.metadata[..]),
        ("Opened.v1", &e.data[..], &e.metadata[..])
    );
    assert_eq!(got.stream, s);
    let head = log
        .head()
        .await
        .expect("head")
        .expect("a head after an append");
    assert!(head >= r.positions[0]);
}

async fn expected_version_is_enforced(log: impl EventLog, run: &str) {
    let s = stream(run, "ev");
    let wrong = log
        .append(&s, ExpectedVersion::Exact(0), vec![event("E.v1", "0")])
        .await;
    assert!(
        matches!(wrong, Err(AppendError::WrongExpectedVersion { current, .. }) if current.0.is_none()),
        "exact version on a missing stream: {wrong:?}"
    );
    log.append(&s, ExpectedVersion::NoStream, vec![event("E.v1", "1")])
        .await
        .expect("create");
    let again = log
        .append(&s, ExpectedVersion::NoStream, vec![event("E.v1", "2")])
        .await;
    assert!(
        matches!(again, Err(AppendError::WrongExpectedVersion { current, .. }) if current.0 == Some(0)),
        "no-stream on an existing stream: {again:?}"
    );
    let stale = log
        .append(&s, ExpectedVersion::Exact(5), vec![event("E.v1", "3")])
        .await;
    assert!(
        matches!(stale, Err(AppendError::WrongExpectedVersion { current, expected: ExpectedVersion::Exact(5), .. }) if current.0 == Some(0)),
        "wrong exact version: {stale:?}"
    );
    let ok = log
        .append(&s, ExpectedVersion::Exact(0), vec![event("E.v1", "4")])
        .await
        .expect("exact");
    assert_eq!(ok.stream_version, 1);
    let any = log
        .append(&s, ExpectedVersion::Any, vec![event("E.v1", "5")])
        .await
        .expect("any");
    assert_eq!(any.stream_version, 2);
    assert_eq!(
        log.read_stream(&s, 0, 10).await.expect("read").len(),
        3,
        "rejected appends wrote nothing"
    );
}

async fn append_is_atomic_and_ordered(log: impl EventLog, run: &str) {
    let s = stream(run, "batch");
    let events: Vec<NewEvent> = (0..50).map(|i| event("E.v1", &i.to_string())).collect();
    let r = log
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .expect("batch");
    assert_eq!(r.stream_version, 49);
    assert_eq!(r.positions.len(), 50);
    assert!(
        r.positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase"
    );
    let read = log.read_stream(&s, 0, 100).await.expect("read");
    let ids: Vec<EventId> = read.iter().map(|e| e.id).collect();
    assert_eq!(ids, events.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(read.iter().enumerate().all(|(i, e)| e.version == i as u64));
    // A failed batch leaves no trace of any of its events.
    let bad = log
        .append(
            &s,
            ExpectedVersion::Exact(3),
            vec![event("E.v1", "x"), event("E.v1", "y")],
        )
        .await;
    assert!(bad.is_err());
    assert_eq!(log.read_stream(&s, 0, 100).await.expect("read").len(), 50);
}

async fn retry_returns_original_result(log: impl EventLog, run: &str) {
    let s = stream(run, "retry");
    let batch = vec![event("E.v1", "a"), event("E.v1", "b")];
    let first = log
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("first");
    let head = log.head().await.expect("head");
    // The retry's expected version is now stale; it is still the same append.
    let again = log
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("retry");
    assert_eq!(first, again);
    assert_eq!(
        log.head().await.expect("head"),
        head,
        "a retry writes nothing"
    );
    log.append(&s, ExpectedVersion::Any, vec![event("E.v1", "c")])
        .await
        .expect("later append");
    let late = log
        .append(&s, ExpectedVersion::Any, batch)
        .await
        .expect("late retry");
    assert_eq!(first, late);
    assert_eq!(log.read_stream(&s, 0, 10).await.expect("read").len(), 3);
}

async fn reused_ids_are_rejected(log: impl EventLog, run: &str) {
    let s = stream(run, "reuse");
    let e = event("E.v1", "original");
    log.append(&s, ExpectedVersion::Any, vec![e.clone()])
        .await
        .expect("original");
    let mut changed = e.clone();
    changed.data = b"changed".to_vec();
    let r = log.append(&s, ExpectedVersion::Any, vec![changed]).await;
    assert!(
        matches!(r, Err(AppendError::EventIdReused { id }) if id == e.id),
        "{r:?}"
    );
    let other = stream(run, "reuse-other");
    let r = log
        .append(&other, ExpectedVersion::Any, vec![e.clone()])
        .await;
    assert!(
        matches!(r, Err(AppendError::EventIdReused { .. })),
        "same id, other stream: {r:?}"
    );
    let r = log
        .append(
            &s,
            ExpectedVersion::Any,
            vec![event("E.v1", "new"), e.clone()],
        )
        .await;
    assert!(
        matches!(r, Err(AppendError::EventIdReused { .. })),
        "new id then old id: {r:?}"
    );
    let r = log
        .append(
            &s,
            ExpectedVersion::Any,
            vec![e.clone(), event("E.v1", "new")],
        )
        .await;
    assert!(
        matches!(r, Err(AppendError::EventIdReused { .. })),
        "old id then new id: {r:?}"
    );
    assert_eq!(log.read_stream(&s, 0, 10).await.expect("read").len(), 1);
    assert!(log
        .read_stream(&other, 0, 10)
        .await
        .expect("read")
        .is_empty());
}

async fn invalid_appends_are_rejected(log: impl EventLog, run: &str) {
    let s = stream(run, "invalid");
    let r = log.append(&s, ExpectedVersion::Any, vec![]).await;
    assert!(
        matches!(r, Err(AppendError::Invalid(InvalidEvent::NoEvents))),
        "{r:?}"
    );
    let e = event("E.v1", "x");
    let r = log
        .append(&s, ExpectedVersion::Any, vec![e.clone(), e])
        .await;
    assert!(
        matches!(
            r,
            Err(AppendError::Invalid(
                InvalidEvent::DuplicateIdInAppend { .. }
            ))
        ),
        "{r:?}"
    );
    let r = log
        .append(&s, ExpectedVersion::Any, vec![event("bad type!", "x")])
        .await;
    assert!(matches!(r, Err(AppendError::Invalid(_))), "{r:?}");
    let mut big = event("E.v1", "");
    big.data = vec![b'x'; super::limits::EVENT_DATA_BYTES_MAX + 1];
    let r = log.append(&s, ExpectedVersion::Any, vec![big]).await;
    assert!(
        matches!(&r, Err(AppendError::LimitExceeded(l)) if l.limit == "event_data_bytes_max"),
        "{r:?}"
    );
    let many: Vec<NewEvent> = (0..=super::limits::EVENTS_PER_APPEND_MAX)
        .map(|_| event("E.v1", ""))
        .collect();
    let r = log.append(&s, ExpectedVersion::Any, many).await;
    assert!(
        matches!(&r, Err(AppendError::LimitExceeded(l)) if l.limit == "events_per_append_max"),
        "{r:?}"
    );
    let r = log
        .read_all(ReadFrom::Start, super::limits::READ_EVENTS_MAX + 1)
        .await;
    assert!(
        matches!(&r, Err(ReadError::LimitExceeded(l)) if l.limit == "read_events_max"),
        "{r:?}"
    );
    assert!(
        log.read_stream(&s, 0, 10).await.expect("read").is_empty(),
        "nothing was written"
    );
}

async fn read_paging(log: impl EventLog, run: &str) {
    let a = stream(run, "page-a");
    let b = stream(run, "page-b");
    for i in 0..30 {
        let s = if i % 3 == 0 { &b } else { &a };
        log.append(s, ExpectedVersion::Any, vec![event("E.v1", &i.to_string())])
            .await
            .expect("append");
    }
    let page = log.read_stream(&a, 5, 7).await.expect("page");
    assert_eq!(
        page.iter().map(|e| e.version).collect::<Vec<_>>(),
        (5..12).collect::<Vec<_>>()
    );
    assert!(log
        .read_stream(&a, 20, 7)
        .await
        .expect("past the end")
        .is_empty());
    let all = read_all_of_run(&log, run).await;
    let ours: Vec<&RecordedEvent> = all
        .iter()
        .filter(|e| e.stream == a || e.stream == b)
        .collect();
    assert_eq!(ours.len(), 30);
    let data: Vec<String> = ours
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect();
    assert_eq!(
        data,
        (0..30).map(|i| i.to_string()).collect::<Vec<_>>(),
        "global order is append order"
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // A stream read reports each event's global position, the one `read_all` reports:
    // a reader that checks a stored checkpoint by the event's stream and version (the
    // projection worker at start) relies on it.
    for e in &ours {
        let by_stream = log
            .read_stream(&e.stream, e.version, 1)
            .await
            .expect("read");
        assert_eq!(
            by_stream
                .iter()
                .map(|s| (s.id, s.position))
                .collect::<Vec<_>>(),
            vec![(e.id, e.position)],
            "{} at version {}",
            e.stream,
            e.version
        );
    }
}

async fn concurrent_appends_conflict(log: impl EventLog + Clone, run: &str) {
    let s = stream(run, "race");
    log.append(&s, ExpectedVersion::NoStream, vec![event("E.v1", "0")])
        .await
        .expect("create");
    let log = Arc::new(log);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let log = log.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            log.append(
                &s,
                ExpectedVersion::Exact(0),
                vec![event("E.v1", &i.to_string())],
            )
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(r) => {
                won += 1;
                assert_eq!(r.stream_version, 1);
            }
            Err(AppendError::WrongExpectedVersion { current, .. }) => {
                assert_eq!(current.0, Some(1))
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one of the racing appends wins");
    assert_eq!(log.read_stream(&s, 0, 10).await.expect("read").len(), 2);
}

async fn subscription_crosses_from_catch_up_to_live(log: impl EventLog + Clone, run: &str) {
    let s = stream(run, "sub");
    for i in 0..20 {
        log.append(
            &s,
            ExpectedVersion::Any,
            vec![event("E.v1", &i.to_string())],
        )
        .await
        .expect("append");
    }
    let prefix = format!("conf{run}-");
    let writer = {
        let log = log.clone();
        let s = s.clone();
        tokio::spawn(async move {
            for i in 20..200 {
                let n = if i % 7 == 0 { 3 } else { 1 };
                let batch = (0..n).map(|k| event("E.v1", &format!("{i}.{k}"))).collect();
                log.append(&s, ExpectedVersion::Any, batch)
                    .await
                    .expect("live append");
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let total = 20
        + (20..200)
            .map(|i| if i % 7 == 0 { 3 } else { 1 })
            .sum::<usize>();
    let mut sub = log.subscribe_all(ReadFrom::Start);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < total {
        let next = tokio::time::timeout_at(deadline, sub.next()).await;
        let e = next
            .expect("subscription delivers within 30 s")
            .expect("stream open")
            .expect("no error");
        if e.stream.as_str().starts_with(&prefix) && e.stream == s {
            seen.push(e);
        }
    }
    writer.await.expect("writer");
    let ids: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "no duplicates");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "global order"
    );
    assert!(
        seen.iter().enumerate().all(|(i, e)| e.version == i as u64),
        "no gaps"
    );
    // A subscription from a checkpoint starts right after it.
    let mid = seen[99].position;
    let mut from_mid = log.subscribe_all(ReadFrom::After(mid));
    loop {
        let e = from_mid.next().await.expect("open").expect("ok");
        if e.stream == s {
            assert_eq!(e.id, seen[100].id);
            break;
        }
    }
}

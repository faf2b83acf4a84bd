//! The embedded log against the shared conformance suite of the log contract.
use ledger_store::{EmbeddedConfig, EmbeddedLog};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_conforms() {
    let mut dirs = Vec::new();
    ledger_core::log::conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
        dirs.push(dir);
        async move { log }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_conforms_with_tiny_segments() {
    // Segments of 8 KiB make nearly every case roll over to new segments.
    let mut dirs = Vec::new();
    ledger_core::log::conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            segment_bytes_max: 8 * 1024,
            ..EmbeddedConfig::default()
        };
        let log = EmbeddedLog::open(dir.path(), config).expect("open");
        dirs.push(dir);
        async move { log }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_log_with_a_commit_delay_writes_every_append_once_in_order() {
    use ledger_core::log::{EventLog, ExpectedVersion, ReadFrom, StreamName};
    // Waves of 64 concurrent appends: the first wave's groups hold 8 or more, so the
    // writer waits before each later group (the path of a busy server). Every append
    // must land once, each stream's versions in the order its appends were made, and
    // a reopen must find the same log.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        commit_delay: std::time::Duration::from_millis(2),
        ..EmbeddedConfig::default()
    };
    let streams: Vec<StreamName> = (0..64)
        .map(|i| StreamName::new(format!("acct-busy-{i}")).expect("stream name"))
        .collect();
    let waves = 6;
    let mut positions = Vec::new();
    {
        let log = EmbeddedLog::open(dir.path(), config.clone()).expect("open");
        for wave in 0..waves {
            let appends = streams.iter().map(|s| {
                let expected = match wave {
                    0 => ExpectedVersion::NoStream,
                    w => ExpectedVersion::Exact(w - 1),
                };
                log.append(s, expected, vec![one_event(&format!("\"{wave}\""))])
            });
            for r in futures::future::join_all(appends).await {
                let r = r.expect("append");
                assert_eq!(r.stream_version, wave);
                positions.extend(r.positions);
            }
        }
        let mut unique = positions.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 64 * waves as usize, "one position per append");
        log.close();
    }
    let log = EmbeddedLog::open(dir.path(), config).expect("reopen");
    assert_eq!(log.event_count(), 64 * waves);
    let all = log.read_all(ReadFrom::Start, 1_000).await.expect("read");
    assert_eq!(all.len(), 64 * waves as usize);
    for s in &streams {
        let events = log.read_stream(s, 0, 100).await.expect("read");
        let data: Vec<String> = events
            .iter()
            .map(|e| String::from_utf8(e.data.clone()).expect("utf-8"))
            .collect();
        let expected: Vec<String> = (0..waves).map(|w| format!("\"{w}\"")).collect();
        assert_eq!(data, expected, "{s}");
    }
}

#[test]
fn a_commit_delay_past_its_bound_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        commit_delay: ledger_store::COMMIT_DELAY_MAX + std::time::Duration::from_micros(1),
        ..EmbeddedConfig::default()
    };
    let Err(e) = EmbeddedLog::open(dir.path(), config) else {
        panic!("a commit delay past COMMIT_DELAY_MAX opened");
    };
    assert!(e.to_string().contains("commit_delay"), "{e}");
    // Nothing was created for a refused configuration.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

// The writer keeps no content digest per event: a retry is told from a reuse by reading
// the stored record back (or, within one group, the event still in memory). These two
// cases reach each source.

fn one_event(data: &str) -> ledger_core::log::NewEvent {
    ledger_core::log::conformance::event("E.v1", data)
}

#[test]
fn a_retry_after_a_reopen_is_told_from_a_reuse_by_the_stored_record() {
    use ledger_core::log::{AppendError, ExpectedVersion, StreamName};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = StreamName::new("acct-reopen").expect("stream name");
    let batch = vec![one_event("a"), one_event("b")];
    let first = {
        let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
        let first = log
            .append_blocking(&s, ExpectedVersion::NoStream, batch.clone())
            .expect("first append");
        log.close();
        first
    };
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("reopen");
    let again = log
        .append_blocking(&s, ExpectedVersion::NoStream, batch.clone())
        .expect("retry after reopen");
    assert_eq!(first, again, "the retry returns the original result");
    let mut changed = batch[1].clone();
    changed.data = b"\"changed\"".to_vec();
    let r = log.append_blocking(&s, ExpectedVersion::Any, vec![batch[0].clone(), changed]);
    assert!(
        matches!(r, Err(AppendError::EventIdReused { id }) if id == batch[1].id),
        "same id, other content: {r:?}"
    );
    assert_eq!(
        log.event_count(),
        2,
        "neither the retry nor the reuse wrote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_append_write_it_once() {
    use ledger_core::log::{AppendError, EventLog, ExpectedVersion, StreamName};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    let s = StreamName::new("acct-group").expect("stream name");
    let batch = vec![one_event("a"), one_event("b")];
    let mut changed = batch[0].clone();
    changed.data = b"\"changed\"".to_vec();
    // Sent together, most land in the writer's first group or the next: a retry of an
    // event that is decided but not yet durable is recognised from the group itself.
    let retries = (0..32).map(|_| log.append(&s, ExpectedVersion::Any, batch.clone()));
    let reuse = log.append(&s, ExpectedVersion::Any, vec![changed]);
    let (results, reuse) = tokio::join!(futures::future::join_all(retries), reuse);
    let first = results[0].as_ref().expect("append").clone();
    for r in &results {
        assert_eq!(r.as_ref().expect("retry"), &first);
    }
    // The changed event either came first (and then every retry would be a reuse, which
    // the loop above refutes) or is refused.
    assert!(
        matches!(reuse, Err(AppendError::EventIdReused { .. })),
        "{reuse:?}"
    );
    assert_eq!(log.read_stream(&s, 0, 10).await.expect("read").len(), 2);
}

//! Copying logs between backends (import / export), tested embedded → embedded: the
//! same code path an import into KurrentDB takes, through the `EventLog` trait only.

use std::ops::ControlFlow;
use std::path::Path;

use ledger_core::log::{
    AppendResult, EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, RecordedEvent, StreamName,
};
use ledger_store::{copy_log, verify, CopyProgress, EmbeddedConfig, EmbeddedLog, TransferError};

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(dir, EmbeddedConfig::default()).expect("open")
}

fn stream(i: usize) -> StreamName {
    StreamName::new(format!("account-{i}")).expect("name")
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        id: EventId::new_random(),
        event_type: "HoursDeposited.v1".into(),
        data: format!("{{\"n\":{n},\"hours\":\"1.5\"}}").into_bytes(),
        metadata: format!("{{\"schema\":1,\"prev_hash\":\"{n:064x}\"}}").into_bytes(),
    }
}

/// A source log with interleaved streams and multi-event appends: 7 streams, 400
/// appends, 1 to 4 events each.
async fn fill(log: &EmbeddedLog) -> usize {
    let mut versions: Vec<Option<u64>> = vec![None; 7];
    let mut total = 0;
    for a in 0..400usize {
        let s = (a * 5 + a / 3) % 7;
        let n = 1 + (a % 4);
        let batch: Vec<NewEvent> = (0..n).map(|k| event(total + k)).collect();
        let r: AppendResult = log
            .append(
                &stream(s),
                ExpectedVersion::from_current(versions[s]),
                batch,
            )
            .await
            .expect("append");
        versions[s] = Some(r.stream_version);
        total += n;
    }
    total
}

async fn all(log: &dyn EventLog) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut from = ReadFrom::Start;
    loop {
        let page = log.read_all(from, 1000).await.expect("read_all");
        let Some(last) = page.last() else { return out };
        from = ReadFrom::After(last.position);
        out.extend(page);
    }
}

/// Stream, version, id, type, data, metadata.
type Content = (String, u64, EventId, String, Vec<u8>, Vec<u8>);

/// What must survive a copy: everything but the positions.
fn content(events: &[RecordedEvent]) -> Vec<Content> {
    events
        .iter()
        .map(|e| {
            (
                e.stream.to_string(),
                e.version,
                e.id,
                e.event_type.clone(),
                e.data.clone(),
                e.metadata.clone(),
            )
        })
        .collect()
}

fn keep_going(_: &CopyProgress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_embedded_copy_is_exact_and_verifies() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (src, dst) = (open(a.path()), open(b.path()));
    let total = fill(&src).await;
    let report = copy_log(&src, &dst, &mut keep_going).await.expect("copy");
    assert_eq!(report.events, total as u64);
    assert_eq!(report.written, total as u64);
    assert_eq!(report.already_present, 0);
    assert_eq!(report.streams, 7);
    assert!(report.appends <= 400, "runs of one stream stay one append");
    let (from, to) = (all(&src).await, all(&dst).await);
    assert_eq!(
        content(&from),
        content(&to),
        "same events in the same global order"
    );
    for s in 0..7 {
        let a = src.read_stream(&stream(s), 0, 4096).await.expect("read");
        let b = dst.read_stream(&stream(s), 0, 4096).await.expect("read");
        assert_eq!(content(&a), content(&b), "stream {s}");
    }
    assert_eq!(report.destination_head, to.last().map(|e| e.position));
    dst.close();
    let v = verify(b.path()).expect("destination verifies");
    assert_eq!(v.events, total as u64);
    assert!(v.torn_tail.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_resumes_and_a_rerun_writes_nothing() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let src = open(a.path());
    let total = fill(&src).await;
    {
        let dst = open(b.path());
        let mut calls = 0;
        let mut stop_midway = |_: &CopyProgress| {
            calls += 1;
            if calls == 150 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let err = copy_log(&src, &dst, &mut stop_midway)
            .await
            .expect_err("stopped");
        let TransferError::Stopped { events_done } = err else {
            panic!("{err}")
        };
        assert!(events_done > 0 && (events_done as usize) < total);
        // Simulate a crash in the middle of a run: half of the next source run is in
        // the destination already (written event by event).
        let copied = all(&dst).await.len();
        let next = &all(&src).await[copied..];
        let s = next[0].stream.clone();
        for e in next.iter().take_while(|e| e.stream == s).take(1) {
            let expected = ExpectedVersion::from_current(e.version.checked_sub(1));
            dst.append(
                &s,
                expected,
                vec![NewEvent {
                    id: e.id,
                    event_type: e.event_type.clone(),
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                }],
            )
            .await
            .expect("partial run");
        }
        dst.close();
    }
    let dst = open(b.path());
    let resumed = copy_log(&src, &dst, &mut keep_going).await.expect("resume");
    assert_eq!(resumed.events, total as u64);
    assert!(resumed.already_present > 0 && resumed.written > 0);
    assert_eq!(resumed.written + resumed.already_present, total as u64);
    assert_eq!(content(&all(&src).await), content(&all(&dst).await));
    let head = dst.head().await.expect("head");
    let again = copy_log(&src, &dst, &mut keep_going).await.expect("rerun");
    assert_eq!(
        (again.written, again.appends),
        (0, 0),
        "a rerun writes nothing"
    );
    assert_eq!(again.already_present, total as u64);
    assert_eq!(dst.head().await.expect("head"), head);
    dst.close();
    assert_eq!(verify(b.path()).expect("verifies").events, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_destination_stops_the_copy_without_writing() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (src, dst) = (open(a.path()), open(b.path()));
    fill(&src).await;
    // Another log's event where the source's first event of account-0 goes.
    dst.append(&stream(0), ExpectedVersion::NoStream, vec![event(9999)])
        .await
        .expect("foreign event");
    let before = dst.head().await.expect("head");
    let err = copy_log(&src, &dst, &mut keep_going)
        .await
        .expect_err("diverged");
    assert!(
        matches!(&err, TransferError::Diverged { stream: s, version: 0, .. } if *s == stream(0)),
        "{err}"
    );
    assert_eq!(dst.head().await.expect("head"), before, "nothing written");
}

/// Another log's events in streams the source does not have: before any event of
/// the source is written (a destination that does not begin with the source's first
/// event), and after a complete copy (events after the copy's last). Both copies
/// used to end "verified", the two logs merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_holding_another_logs_streams_is_refused() {
    let (a, b, c) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (src, dst) = (open(a.path()), open(b.path()));
    fill(&src).await;
    let other = StreamName::new("account-elsewhere").expect("name");
    dst.append(&other, ExpectedVersion::NoStream, vec![event(9999)])
        .await
        .expect("foreign event");
    let before = dst.head().await.expect("head");
    let err = copy_log(&src, &dst, &mut keep_going)
        .await
        .expect_err("another log");
    assert!(
        matches!(&err, TransferError::Diverged { stream: s, .. } if *s == other),
        "{err}"
    );
    assert_eq!(dst.head().await.expect("head"), before, "nothing written");

    let dst = open(c.path());
    copy_log(&src, &dst, &mut keep_going).await.expect("copy");
    dst.append(&other, ExpectedVersion::NoStream, vec![event(9999)])
        .await
        .expect("foreign event after the copy");
    let err = copy_log(&src, &dst, &mut keep_going)
        .await
        .expect_err("events after the copy");
    assert!(
        matches!(&err, TransferError::Diverged { stream: s, version: 0, .. } if *s == other),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_an_empty_log_is_a_verified_no_op() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (src, dst) = (open(a.path()), open(b.path()));
    let report = copy_log(&src, &dst, &mut keep_going).await.expect("copy");
    assert_eq!((report.events, report.streams, report.appends), (0, 0, 0));
    assert_eq!(report.destination_head, None);
}

#[test]
fn the_cli_copies_a_directory_and_verifies_it() {
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let total = rt.block_on(async {
        let src = open(a.path());
        let n = fill(&src).await;
        src.close();
        n
    });
    let dest = b.path().join("copy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_timebank-log"))
        .args(["import", "--from"])
        .arg(a.path())
        .arg("--to")
        .arg(&dest)
        .output()
        .expect("run timebank-log");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("copied: {total} events in 7 streams")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("verified: {total} events")),
        "{stdout}"
    );
    // The same again: nothing to write, still exit 0.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_timebank-log"))
        .args(["export", "--from"])
        .arg(a.path())
        .arg("--to")
        .arg(&dest)
        .output()
        .expect("run timebank-log");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("0 written in 0 appends, {total} already present")),
        "{stdout}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_timebank-log"))
        .args(["import", "--from"])
        .arg(b.path().join("no-such-log"))
        .arg("--to")
        .arg(b.path().join("other"))
        .output()
        .expect("run timebank-log");
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a missing source is an error"
    );
    assert!(!b.path().join("no-such-log").exists(), "and is not created");
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_timebank-log"))
        .args(["import", "--from", "x"])
        .output()
        .expect("run timebank-log");
    assert_eq!(usage.status.code(), Some(2));
}

/// A data directory given where its `log/` is meant (or any directory without a log):
/// `verify` and a copy from it used to report "verified: 0 events" and exit 0, and
/// the copy left a new empty log (a LOCK and a segment) in the directory named.
#[test]
fn the_cli_refuses_a_directory_that_holds_no_log_and_names_its_log() {
    let data = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let log = open(&data.path().join("log"));
        fill(&log).await;
        log.close();
    });
    let dest = tempfile::tempdir().expect("dir");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_timebank-log"))
            .args(args)
            .output()
            .expect("run timebank-log")
    };
    let d = data.path().as_os_str();
    let copy_to = dest.path().join("copy");
    for out in [
        run(&["verify".as_ref(), d]),
        run(&[
            "copy".as_ref(),
            "--from".as_ref(),
            d,
            "--to".as_ref(),
            copy_to.as_os_str(),
        ]),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("holds no embedded log"), "{stderr}");
        assert!(
            stderr.contains(&data.path().join("log").display().to_string()),
            "names the log inside: {stderr}"
        );
    }
    // And a data directory given as the destination: a second log would start beside
    // its `log/`.
    let source = dest.path().join("source");
    rt.block_on(async {
        let log = open(&source);
        fill(&log).await;
        log.close();
    });
    let out = run(&[
        "copy".as_ref(),
        "--from".as_ref(),
        source.as_os_str(),
        "--to".as_ref(),
        d,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a data directory"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(data.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("log")],
        "nothing created"
    );
}

/// Append `events` to `log` as one append each, after whatever the stream holds.
async fn append_each(log: &EmbeddedLog, events: &[(StreamName, usize)]) {
    for (s, n) in events {
        let current = log
            .read_stream(s, 0, 4096)
            .await
            .expect("read")
            .last()
            .map(|e| e.version);
        log.append(s, ExpectedVersion::from_current(current), vec![event(*n)])
            .await
            .expect("append");
    }
}

/// A destination that shares the source's beginning and then goes its own way: a
/// backup that took writes of its own after it was copied, and another ledger's log
/// that begins with the same event. The copy used to append the source's events up
/// to the point where it met the difference (the fork), or all of them (the other
/// ledger's events sat before the copy's last, so the end check did not see them),
/// leaving the destination altered, or merged and "verified". Now both are refused
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_destination_is_refused_and_left_unchanged() {
    let (a, b, c) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (src, fork) = (open(a.path()), open(b.path()));
    fill(&src).await;
    copy_log(&src, &fork, &mut keep_going)
        .await
        .expect("the backup");
    // Both take writes: the source in streams 0 and 1 first (the copy reaches them
    // before the fork point), the backup in stream 3.
    append_each(
        &src,
        &[
            (stream(0), 10_000),
            (stream(1), 10_001),
            (stream(3), 10_002),
        ],
    )
    .await;
    append_each(&fork, &[(stream(3), 20_000)]).await;
    let fork_at = all(&fork).await.last().expect("the fork's event").version;

    // Another ledger's log: the source's first event, then its own.
    let other = open(c.path());
    let first = src.read_all(ReadFrom::Start, 1).await.expect("read");
    let e = &first[0];
    other
        .append(
            &e.stream,
            ExpectedVersion::NoStream,
            vec![NewEvent {
                id: e.id,
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                metadata: e.metadata.clone(),
            }],
        )
        .await
        .expect("same first event");
    let elsewhere = StreamName::new("account-elsewhere").expect("name");
    append_each(&other, &[(elsewhere.clone(), 30_000)]).await;

    for (dst, at) in [(&fork, (stream(3), fork_at)), (&other, (elsewhere, 0))] {
        let before = content(&all(dst).await);
        let head = dst.head().await.expect("head");
        let err = copy_log(&src, dst, &mut keep_going)
            .await
            .expect_err("a fork is refused");
        let TransferError::Diverged {
            stream: s,
            version: v,
            what,
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!((s, *v), (&at.0, at.1), "{err}");
        assert!(what.contains("nothing was written"), "{err}");
        assert_eq!(dst.head().await.expect("head"), head, "nothing written");
        assert_eq!(content(&all(dst).await), before, "content unchanged");
    }
}

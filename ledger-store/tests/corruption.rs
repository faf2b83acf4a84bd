//! Damage and torn tails: what opening (and verifying) a log does with each.
//!
//! Given a log written and closed cleanly, when its bytes are changed in a given way,
//! then `open` either cuts an unacknowledged tail and says so, or refuses to open and
//! names the segment, the offset and what is wrong.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use ledger_core::log::{EventId, EventLog, ExpectedVersion, NewEvent, ReadFrom, StreamName};
use ledger_store::{verify, EmbeddedConfig, EmbeddedLog, OpenError};

fn event(i: usize) -> NewEvent {
    NewEvent {
        id: EventId::new_random(),
        event_type: "Test.v1".into(),
        data: format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(100)).into_bytes(),
        metadata: b"{}".to_vec(),
    }
}

/// A log with `appends` appends of 3 events each; returns the dir.
fn write_log(config: EmbeddedConfig, appends: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path(), config).expect("open");
    let s = StreamName::new("account-a").expect("name");
    for a in 0..appends {
        let batch = (0..3).map(|k| event(a * 3 + k)).collect();
        log.append_blocking(&s, ExpectedVersion::Any, batch)
            .expect("append");
    }
    log.close();
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x01;
    fs::write(path, bytes).expect("write");
}

fn count(log: &EmbeddedLog) -> usize {
    futures::executor::block_on(log.read_all(ReadFrom::Start, 4096))
        .expect("read")
        .len()
}

fn expect_corrupt(dir: &Path, segment: &Path, near: u64) -> String {
    let err = EmbeddedLog::open(dir, EmbeddedConfig::default())
        .err()
        .expect("open must refuse");
    let verify_err = verify(dir).expect_err("verify must refuse");
    for e in [&err, &verify_err] {
        match e {
            OpenError::Corrupt {
                segment: s,
                offset,
                what,
            } => {
                assert_eq!(s, segment, "names the damaged segment: {what}");
                assert!(
                    *offset <= near && near - offset < 1024,
                    "offset {offset} is near the damage at {near}: {what}"
                );
            }
            other => panic!("expected Corrupt, got {other}"),
        }
    }
    err.to_string()
}

#[test]
fn a_flipped_byte_in_the_middle_refuses_to_open() {
    let dir = write_log(EmbeddedConfig::default(), 100);
    let seg = &segments(dir.path())[0];
    let mid = fs::metadata(seg).expect("meta").len() / 2;
    flip(seg, mid);
    let msg = expect_corrupt(dir.path(), seg, mid);
    assert!(msg.contains("0000000000.seg"), "{msg}");
}

#[test]
fn a_flipped_byte_in_an_older_segment_names_that_segment() {
    let config = EmbeddedConfig {
        segment_bytes_max: 4096,
        ..EmbeddedConfig::default()
    };
    let dir = write_log(config, 60);
    let segs = segments(dir.path());
    assert!(segs.len() > 3, "tiny segments roll over");
    let victim = &segs[1];
    flip(victim, 200);
    expect_corrupt(dir.path(), victim, 200);
}

#[test]
fn a_flipped_byte_in_the_last_record_followed_by_nothing_is_a_torn_tail() {
    // Indistinguishable from a torn final write: cut and reported, never silent.
    let dir = write_log(EmbeddedConfig::default(), 10);
    let seg = &segments(dir.path())[0];
    let len = fs::metadata(seg).expect("meta").len();
    flip(seg, len - 5);
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    let t = log.recovery().torn_tail.clone().expect("reported");
    assert!(t.reason.contains("CRC"), "{}", t.reason);
    assert_eq!(count(&log), 27, "the last append (3 events) is cut whole");
}

#[test]
fn a_truncated_tail_is_cut_back_to_the_last_complete_append() {
    let dir = write_log(EmbeddedConfig::default(), 10);
    let seg = segments(dir.path())[0].clone();
    let starts = record_starts(&fs::read(&seg).expect("read"));
    assert_eq!(starts.len(), 31, "30 records and the end");
    // Cut inside the second record of the last append: its first record is complete
    // but has no COMMIT flag, so the whole append goes.
    let last_append = starts[27];
    let cut_to = (starts[28] + starts[29]) / 2;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(cut_to)
        .expect("truncate");
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open recovers");
    let t = log
        .recovery()
        .torn_tail
        .clone()
        .expect("the cut is reported");
    assert_eq!(t.segment, seg);
    assert_eq!(
        t.records_cut, 1,
        "one complete record of the torn append was dropped"
    );
    assert_eq!((t.cut_at, t.bytes_cut), (last_append, cut_to - last_append));
    // The cut starts where the 28th record was: position 27, which the next append takes.
    assert_eq!(t.first_position_cut, 27);
    assert_eq!(count(&log), 27);
    // The log goes on from there and verifies.
    let s = StreamName::new("account-a").expect("name");
    let r = log
        .append_blocking(&s, ExpectedVersion::Exact(26), vec![event(99)])
        .expect("append after recovery");
    assert_eq!(r.stream_version, 27);
    log.close();
    let report = verify(dir.path()).expect("verifies");
    assert_eq!(report.events, 28);
    assert!(report.torn_tail.is_none());
}

#[test]
fn zeros_after_the_last_append_are_cut() {
    // What a filesystem can leave after a power cut: the file grew, the data did not land.
    let dir = write_log(EmbeddedConfig::default(), 5);
    let seg = segments(dir.path())[0].clone();
    let len = fs::metadata(&seg).expect("meta").len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(len + 4096)
        .expect("extend");
    let report = verify(dir.path()).expect("verify tolerates a torn tail");
    assert_eq!(report.torn_tail.as_ref().map(|t| t.bytes_cut), Some(4096));
    // The report names where the cut starts and does not claim the cut was never
    // acknowledged: a damaged last record looks the same.
    let text = report.render();
    assert!(
        text.contains("from position 15 on (0 complete records without a COMMIT record")
            && text.contains("compare the head hash with the last one published")
            && !text.contains("unacknowledged append"),
        "{text}"
    );
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    assert_eq!(
        log.recovery()
            .torn_tail
            .as_ref()
            .map(|t| (t.cut_at, t.records_cut)),
        Some((len, 0))
    );
    assert_eq!(count(&log), 15);
    assert_eq!(
        fs::metadata(&seg).expect("meta").len(),
        len,
        "the file is cut back"
    );
}

#[test]
fn an_edited_record_with_a_recomputed_crc_breaks_the_hash_chain() {
    let dir = write_log(EmbeddedConfig::default(), 10);
    let seg = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&seg).expect("read");
    // First record: header at 64, body at 72; change a byte of its data, fix the CRC.
    let body_len = u32::from_le_bytes(bytes[64..68].try_into().expect("4 bytes")) as usize;
    let body = 72..72 + body_len;
    let data_at = body.end - 10;
    bytes[data_at] = b'7';
    let crc = crc32c::crc32c(&bytes[body.clone()]);
    bytes[68..72].copy_from_slice(&crc.to_le_bytes());
    fs::write(&seg, &bytes).expect("write");
    let msg = expect_corrupt(dir.path(), &seg, body.end as u64);
    assert!(msg.contains("hash chain broken"), "{msg}");
}

#[test]
fn an_unborn_last_segment_is_removed() {
    let dir = write_log(EmbeddedConfig::default(), 3);
    let unborn = dir.path().join("0000000001.seg");
    fs::write(&unborn, [0u8; 20]).expect("write");
    // `verify` says what the open is about to do (it used to say nothing of the file),
    // and still passes: nothing is lost.
    let v = verify(dir.path()).expect("an unborn segment is not damage");
    assert_eq!(v.unborn_segment.as_deref(), Some(unborn.as_path()));
    assert_eq!((v.events, v.segments), (9, 1));
    let text = v.render();
    assert!(
        text.contains("unborn segment") && text.contains("0000000001.seg"),
        "{text}"
    );
    assert!(text.contains("the next open removes it"), "{text}");
    assert!(unborn.exists(), "verify changes nothing");
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    assert_eq!(
        log.recovery().unborn_segment_removed.as_deref(),
        Some(unborn.as_path())
    );
    assert!(!unborn.exists());
    assert_eq!(count(&log), 9);
}

#[test]
fn a_missing_segment_refuses_to_open() {
    let config = EmbeddedConfig {
        segment_bytes_max: 4096,
        ..EmbeddedConfig::default()
    };
    let dir = write_log(config, 40);
    let segs = segments(dir.path());
    fs::remove_file(&segs[1]).expect("remove");
    match EmbeddedLog::open(dir.path(), EmbeddedConfig::default()) {
        Err(OpenError::Corrupt { what, .. }) => {
            assert!(what.contains("segment 1 is missing"), "{what}")
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("opened a log with a hole"),
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    match EmbeddedLog::open(dir.path(), EmbeddedConfig::default()) {
        Err(OpenError::Locked { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("two writers on one log"),
    }
}

/// Offsets where records start, walking the length fields, plus the end offset.
fn record_starts(bytes: &[u8]) -> Vec<u64> {
    let mut at = 64;
    let mut out = vec![at as u64];
    while at < bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 8 + n;
        out.push(at as u64);
    }
    out
}

#[test]
fn close_releases_the_directory_while_clones_are_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("open");
    let reader = first.clone();
    first.close();
    let second =
        EmbeddedLog::open(dir.path(), EmbeddedConfig::default()).expect("reopen after close");
    let s = StreamName::new("account-a").expect("name");
    assert!(
        first
            .append_blocking(&s, ExpectedVersion::Any, vec![event(1)])
            .is_err(),
        "a closed log refuses appends"
    );
    second
        .append_blocking(&s, ExpectedVersion::Any, vec![event(2)])
        .expect("the new opener writes");
    drop(reader);
}

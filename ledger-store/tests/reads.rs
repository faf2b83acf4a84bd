//! Reads whose records do not fit one staged read.
//!
//! The embedded log reads back-to-back records with one `pread` of at most
//! `READ_SPAN_BYTES_MAX` bytes and copies each event out of that buffer. Given pages
//! far larger than that bound, spread over several segments, when they are read by
//! position and by stream, then every event comes back whole, once, in order.

use ledger_core::log::{
    EventId, EventLog, ExpectedVersion, NewEvent, Position, ReadFrom, StreamName,
};
use ledger_store::embedded::READ_SPAN_BYTES_MAX;
use ledger_store::{EmbeddedConfig, EmbeddedLog};

/// Event `i`: its number, then filler up to `len` bytes of data, so a read can check
/// every byte it got.
fn event(i: usize, len: usize) -> NewEvent {
    let mut data = format!("{{\"i\":{i},\"pad\":\"").into_bytes();
    let fill = b'a' + (i % 26) as u8;
    data.resize(len.saturating_sub(2).max(data.len()), fill);
    data.extend_from_slice(b"\"}");
    NewEvent {
        id: EventId::new_random(),
        event_type: "Test.v1".into(),
        data,
        metadata: format!("{{\"m\":{i}}}").into_bytes(),
    }
}

#[test]
fn pages_larger_than_one_staged_read_come_back_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Segments of 3 MiB: the big events below spill over two segment boundaries.
    let config = EmbeddedConfig {
        segment_bytes_max: 3 * 1024 * 1024,
        ..EmbeddedConfig::default()
    };
    let log = EmbeddedLog::open(dir.path(), config.clone()).expect("open");
    let (a, b) = (
        StreamName::new("account-a").expect("name"),
        StreamName::new("account-b").expect("name"),
    );
    // 120 events alternating 60 KiB and 1 KiB, in appends of 10, over two streams:
    // ~3.7 MiB, so one page is several staged reads and crosses segments.
    let sizes: Vec<usize> = (0..120)
        .map(|i| if i % 2 == 0 { 60 * 1024 } else { 1024 })
        .collect();
    let mut written = Vec::new();
    for (k, chunk) in sizes.chunks(10).enumerate() {
        let stream = if k % 2 == 0 { &a } else { &b };
        let events: Vec<NewEvent> = chunk
            .iter()
            .enumerate()
            .map(|(j, &len)| event(k * 10 + j, len))
            .collect();
        written.extend(events.iter().map(|e| (stream.clone(), e.clone())));
        log.append_blocking(stream, ExpectedVersion::Any, events)
            .expect("append");
    }
    let total: usize = written.iter().map(|(_, e)| e.data.len()).sum();
    assert!(
        total > 3 * READ_SPAN_BYTES_MAX,
        "the page must outgrow the bound"
    );

    let check = |log: &EmbeddedLog| {
        let all = futures::executor::block_on(log.read_all(ReadFrom::Start, 4096)).expect("read");
        assert_eq!(all.len(), written.len());
        for (i, (got, (stream, sent))) in all.iter().zip(&written).enumerate() {
            assert_eq!(got.position, Position::from_sequence(i as u64), "in order");
            assert_eq!(&got.stream, stream);
            assert_eq!(got.id, sent.id);
            assert_eq!(got.data, sent.data, "event {i}'s data, every byte");
            assert_eq!(got.metadata, sent.metadata);
        }
        for stream in [&a, &b] {
            let page = futures::executor::block_on(log.read_stream(stream, 0, 4096)).expect("read");
            let sent: Vec<_> = written.iter().filter(|(s, _)| s == stream).collect();
            assert_eq!(page.len(), sent.len());
            for (got, (_, sent)) in page.iter().zip(sent) {
                assert_eq!((got.id, &got.data), (sent.id, &sent.data));
            }
        }
    };
    check(&log);
    log.close();
    // And from the files alone, after a reopen.
    let log = EmbeddedLog::open(dir.path(), config.clone()).expect("reopen");
    check(&log);
    log.close();
}

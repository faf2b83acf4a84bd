//! The single writer and its group commit.
//!
//! One thread owns the segment files for writing. It takes every append request that
//! is waiting (up to [`COMMIT_REQUESTS_MAX`] / [`COMMIT_BYTES_MAX`]), decides each one
//! against the index plus what this group has already decided, encodes them all into
//! one buffer, writes it with one `write`, makes it durable with one `fdatasync`, and
//! only then publishes the new index entries and answers the callers. Appends that
//! arrive during the fsync form the next group: the busier the log, the bigger the
//! groups, the fewer fsyncs per event.
//!
//! Option not taken: an async writer task. The work is CPU (encode, hash) and
//! blocking I/O (fdatasync); a plain thread keeps it off the async runtime's workers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use ledger_core::log::dense::retry_result_with;
use ledger_core::log::{
    AppendError, AppendResult, ContentDigest, CurrentVersion, EventId, ExpectedVersion,
    LimitExceeded, NewEvent, Position, StreamName,
};
use tokio::sync::{mpsc, oneshot};

use super::format::{
    encode_record, record_len, segment_file_name, Hash, RecordFields, SegmentHeader,
    SEGMENT_HEADER_LEN,
};
use super::index::{FastMap, IdIndex, Index, Location};
use super::{sync_dir, Shared};

/// Most append requests decided and written as one group. Bounds the time the writer
/// holds the index read lock and the size of one reply fan-out.
pub const COMMIT_REQUESTS_MAX: usize = 4096;

/// Most bytes written by one group. One append may be up to `APPEND_BYTES_MAX` (16 MiB);
/// past this a group is closed so its buffer stays bounded.
pub const COMMIT_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The writer waits [`EmbeddedConfig::commit_delay`](super::EmbeddedConfig) before
/// taking a group only when the group before it held at least this many appends: a
/// sign that appends arrive faster than fsyncs complete, so waiting gathers many more.
/// Under light load (a few callers, the groups they make are of one or two appends)
/// no append ever waits. The idea and the name are PostgreSQL's `commit_siblings`.
pub const COMMIT_DELAY_GROUP_APPENDS_MIN: usize = 8;

/// ... and at most this many: past it the groups are already large enough that one
/// more fsync per group is a small share of their work (or the disk, not the CPU, is
/// what they wait for, and a delay would only lengthen each cycle).
pub const COMMIT_DELAY_GROUP_APPENDS_MAX: usize = 512;

pub struct AppendRequest {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<AppendResult, AppendError>>,
}

/// Bytes destined for one segment within a group.
struct WritePart {
    segment: u64,
    /// Set when the group opens this segment: the header goes first.
    new_segment: Option<SegmentHeader>,
    offset: u64,
    bytes: Vec<u8>,
}

/// What a group has decided but not yet made durable (ids go straight into the
/// writer's own index: if the group fails to become durable the writer refuses all
/// further appends, so a stale id there can never be seen).
#[derive(Default)]
struct Overlay {
    streams: FastMap<StreamName, Vec<u64>>,
    locations: Vec<Location>,
}

pub struct Writer {
    pub shared: Arc<Shared>,
    /// See [`COMMIT_DELAY_GROUP_APPENDS_MIN`].
    pub commit_delay: std::time::Duration,
    pub dir: PathBuf,
    pub segment_bytes_max: u64,
    pub file: File,
    pub segment: u64,
    pub segment_len: u64,
    pub next_sequence: u64,
    pub head_hash: Hash,
    pub ids: IdIndex,
    /// Set after a failed write or fsync: the file may hold a partial group, so nothing
    /// more may be written after it until a reopen has cut it off.
    pub failed: Option<String>,
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        let mut group = Vec::new();
        let mut appends_before = 0;
        while let Some(first) = rx.blocking_recv() {
            // A busy log: wait a little so that this group gathers what arrives in
            // the meantime. Each fsync costs the server ~100 µs of CPU besides its
            // wait (writing back the pages, the file's size, the device's queue:
            // docs/benchmarks.md, "Twelfth session"), which group commit alone makes
            // once per ~30 batched deposits at 55,000/s, because a fast disk finishes
            // each fsync before many appends are waiting. Option not taken: waiting
            // until N appends are in, which a load of fewer than N callers would
            // wait on for the whole bound every time.
            // A failed log answers at once (`commit_group`): nothing to gather for.
            let wait = commit_wait(self.commit_delay, appends_before);
            if let (Some(delay), None) = (wait, &self.failed) {
                std::thread::sleep(delay);
            }
            let mut bytes = first.bytes;
            group.push(first);
            while group.len() < COMMIT_REQUESTS_MAX && bytes < COMMIT_BYTES_MAX {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.bytes;
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            appends_before = group.len();
            self.commit_group(&mut group);
        }
        tracing::debug!("event log writer stopped: every handle was dropped");
    }

    fn commit_group(&mut self, group: &mut Vec<AppendRequest>) {
        let started = std::time::Instant::now();
        let appends = group.len();
        if let Some(why) = &self.failed {
            for r in group.drain(..) {
                let _ = r.reply.send(Err(AppendError::Unavailable(why.clone())));
            }
            return;
        }
        let mut overlay = Overlay::default();
        let mut parts: Vec<WritePart> = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut sequence = self.next_sequence;
        let mut hash = self.head_hash;
        let mut segment = self.segment;
        let mut segment_len = self.segment_len;
        {
            let index = self.shared.read_index();
            // (first sequence, request) of each append this group has decided so far:
            // where a retry within the group finds the event it repeats.
            let mut pending: Vec<(u64, usize)> = Vec::new();
            // The group's encoded bytes from each append on, were every append to be
            // written: a part opened for an append is sized for it and every append
            // after it, so that it does not regrow (each time copying what it holds)
            // as a group of tens of appends fills it. Exact, not `r.bytes`: that
            // estimate falls a few bytes short of a record, and a buffer a few bytes
            // short still doubles once, copying the whole group. Callgrind: ~1,000
            // instructions per batched deposit.
            let sizes: Vec<usize> = group
                .iter()
                .map(|r| {
                    r.events
                        .iter()
                        .map(|e| record_len(r.stream.as_str(), &e.event_type, &e.data, &e.metadata))
                        .sum()
                })
                .collect();
            let mut left: usize = sizes.iter().sum();
            for (gi, r) in group.iter().enumerate() {
                let ahead = left;
                left -= sizes[gi];
                let events = &r.events;
                let durable_head = self.next_sequence;
                let digest_of = |seq: u64| -> Result<ContentDigest, AppendError> {
                    if seq < durable_head {
                        return stored_digest(&self.shared, &index, seq);
                    }
                    let at = pending.partition_point(|&(first, _)| first <= seq);
                    let (first, owner) =
                        pending[at.checked_sub(1).expect("pending ids are in the group")];
                    let owner = &group[owner];
                    Ok(owner.events[(seq - first) as usize].content_digest(&owner.stream))
                };
                let outcome = decide(
                    &index,
                    &self.ids,
                    &overlay,
                    &r.stream,
                    r.expected,
                    events,
                    digest_of,
                    self.segment_bytes_max,
                )
                .map(|decided| match decided {
                    Decided::Retry(result) => result,
                    Decided::Append { version, size } => {
                        if segment_len + size as u64 > self.segment_bytes_max {
                            segment += 1;
                            segment_len = SEGMENT_HEADER_LEN as u64;
                            parts.push(WritePart {
                                segment,
                                new_segment: Some(SegmentHeader {
                                    number: segment,
                                    first_sequence: sequence,
                                    start_hash: hash,
                                }),
                                offset: 0,
                                bytes: Vec::with_capacity(size.max(ahead) + SEGMENT_HEADER_LEN),
                            });
                        } else if parts.last().is_none_or(|p| p.segment != segment) {
                            parts.push(WritePart {
                                segment,
                                new_segment: None,
                                offset: segment_len,
                                bytes: Vec::with_capacity(size.max(ahead)),
                            });
                        }
                        let part = parts.last_mut().expect("a part was just ensured");
                        pending.push((sequence, gi));
                        let mut positions = Vec::with_capacity(events.len());
                        let seqs = overlay.streams.entry(r.stream.clone()).or_default();
                        for (i, e) in events.iter().enumerate() {
                            let at = segment_len;
                            let before = part.bytes.len();
                            hash = encode_record(
                                &mut part.bytes,
                                &RecordFields {
                                    commit: i + 1 == events.len(),
                                    sequence,
                                    version: version + i as u64,
                                    id: &e.id,
                                    prev_hash: &hash,
                                    stream: r.stream.as_str(),
                                    event_type: &e.event_type,
                                    data: &e.data,
                                    metadata: &e.metadata,
                                },
                            );
                            segment_len += (part.bytes.len() - before) as u64;
                            overlay.locations.push(Location::new(segment, at));
                            self.ids.insert(e.id, sequence);
                            seqs.push(sequence);
                            positions.push(Position::from_sequence(sequence));
                            sequence += 1;
                        }
                        AppendResult {
                            stream_version: version + events.len() as u64 - 1,
                            positions,
                        }
                    }
                });
                outcomes.push(outcome);
            }
        }

        if !parts.is_empty() {
            if let Err(e) = self.write_parts(&parts) {
                let why = format!("write or fsync failed, reopen the log to recover: {e}");
                tracing::error!(%why, "event log failed");
                self.failed = Some(why.clone());
                for r in group.drain(..) {
                    let _ = r.reply.send(Err(AppendError::Unavailable(why.clone())));
                }
                return;
            }
            self.next_sequence = sequence;
            self.head_hash = hash;
            self.segment_len = segment_len;
            let mut index = self.shared.write_index();
            for p in &parts {
                let len = p.offset
                    + p.bytes.len() as u64
                    + p.new_segment.map_or(0, |_| SEGMENT_HEADER_LEN as u64);
                if p.segment as usize == index.segment_lens.len() {
                    index.segment_lens.push(len);
                } else {
                    index.segment_lens[p.segment as usize] = len;
                }
            }
            index.locations.extend_from_slice(&overlay.locations);
            for (stream, seqs) in overlay.streams {
                index.streams.entry(stream).or_default().extend(seqs);
            }
            assert_eq!(
                index.head(),
                self.next_sequence,
                "index and writer agree on the head"
            );
            drop(index);
            self.shared.head_tx.send_replace(self.next_sequence);
        }
        let events_written: usize = overlay.locations.len();
        for (r, outcome) in group.drain(..).zip(outcomes) {
            let _ = r.reply.send(outcome);
        }
        // Names and buckets: ledger-server/src/metrics.rs.
        metrics::histogram!("timebank_log_group_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("timebank_log_group_commit_appends").record(appends as f64);
        tracing::trace!(
            events = events_written,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group committed"
        );
    }

    /// Write each part and make it durable before the next one: a new segment is only
    /// created once everything before it is on disk, so only the last segment can ever
    /// hold a torn write.
    fn write_parts(&mut self, parts: &[WritePart]) -> std::io::Result<()> {
        for p in parts {
            if let Some(header) = p.new_segment {
                let path = self.dir.join(segment_file_name(p.segment));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN + p.bytes.len());
                buf.extend_from_slice(&header.encode());
                buf.extend_from_slice(&p.bytes);
                file.write_all_at(&buf, 0)?;
                file.sync_all()?;
                sync_dir(&self.dir)?;
                self.file = file;
                self.segment = p.segment;
            } else {
                assert_eq!(p.segment, self.segment, "writes go to the current segment");
                let write = std::time::Instant::now();
                self.file.write_all_at(&p.bytes, p.offset)?;
                let sync = std::time::Instant::now();
                self.file.sync_data()?;
                metrics::histogram!("timebank_log_write_seconds")
                    .record((sync - write).as_secs_f64());
                metrics::histogram!("timebank_log_fsync_seconds")
                    .record(sync.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }
}

/// How long the writer waits before taking a group, given how many appends the
/// group before it held: the configured delay while the log is busy, nothing under
/// light load or when the groups are already large.
fn commit_wait(delay: std::time::Duration, appends_before: usize) -> Option<std::time::Duration> {
    let busy =
        (COMMIT_DELAY_GROUP_APPENDS_MIN..COMMIT_DELAY_GROUP_APPENDS_MAX).contains(&appends_before);
    (busy && !delay.is_zero()).then_some(delay)
}

enum Decided {
    Retry(AppendResult),
    /// `size`: the append's encoded bytes, already computed for the segment limit.
    Append {
        version: u64,
        size: usize,
    },
}

/// The content digest of the durable event at `seq`, read back from its segment (the
/// readers' path, [`Shared::read_spans`]): asked only when an append names an id that
/// is already taken (see [`IdIndex`]), so the copy it makes costs nothing that matters.
fn stored_digest(shared: &Shared, index: &Index, seq: u64) -> Result<ContentDigest, AppendError> {
    let events = shared
        .read_spans(&[seq], &[index.span(seq)])
        .map_err(|e| AppendError::Unavailable(format!("{e}; verify the log")))?;
    let stored = events.first().expect("one record read for one sequence");
    Ok(stored.content_digest())
}

#[allow(clippy::too_many_arguments)]
fn decide(
    index: &Index,
    ids: &IdIndex,
    overlay: &Overlay,
    stream: &StreamName,
    expected: ExpectedVersion,
    events: &[NewEvent],
    digest_of: impl Fn(u64) -> Result<ContentDigest, AppendError>,
    segment_bytes_max: u64,
) -> Result<Decided, AppendError> {
    let lookup = |id: &EventId| ids.get(id).copied();
    let durable = index.streams.get(stream).map_or(&[][..], Vec::as_slice);
    let pending = overlay.streams.get(stream).map_or(&[][..], Vec::as_slice);
    let version_of = |seq: u64| -> u64 {
        match durable.binary_search(&seq) {
            Ok(v) => v as u64,
            Err(_) => {
                let v = pending
                    .binary_search(&seq)
                    .expect("a matching retry names events of this stream");
                (durable.len() + v) as u64
            }
        }
    };
    if let Some(result) = retry_result_with(lookup, version_of, digest_of, stream, events)? {
        return Ok(Decided::Retry(result));
    }
    let count = (durable.len() + pending.len()) as u64;
    let current = count.checked_sub(1);
    if !expected.is_satisfied_by(current) {
        return Err(AppendError::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            current: CurrentVersion(current),
        });
    }
    let size: usize = events
        .iter()
        .map(|e| record_len(stream.as_str(), &e.event_type, &e.data, &e.metadata))
        .sum();
    LimitExceeded::check(
        "segment_bytes_max",
        size + SEGMENT_HEADER_LEN,
        segment_bytes_max as usize,
    )?;
    Ok(Decided::Append {
        version: count,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_commit_waits_only_while_the_groups_before_it_are_busy_but_not_large() {
        let ms = Duration::from_millis(1);
        // Light load: a lone caller, a few callers, the first group after a start.
        for appends in [0, 1, 2, COMMIT_DELAY_GROUP_APPENDS_MIN - 1] {
            assert_eq!(commit_wait(ms, appends), None, "{appends}");
        }
        for appends in [
            COMMIT_DELAY_GROUP_APPENDS_MIN,
            100,
            COMMIT_DELAY_GROUP_APPENDS_MAX - 1,
        ] {
            assert_eq!(commit_wait(ms, appends), Some(ms), "{appends}");
            assert_eq!(commit_wait(Duration::ZERO, appends), None, "{appends}");
        }
        // Groups already this large (a slow disk, a seeder's bulk): no wait.
        for appends in [COMMIT_DELAY_GROUP_APPENDS_MAX, COMMIT_REQUESTS_MAX] {
            assert_eq!(commit_wait(ms, appends), None, "{appends}");
        }
    }
}

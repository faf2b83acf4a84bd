//! Copying a whole event log into another: embedded → KurrentDB (import), KurrentDB →
//! embedded (export), or between any two logs.
//!
//! The source is replayed in its global order. Each run of consecutive events of one
//! stream becomes one append in the destination (so an append of the source is never
//! split, except where the contract's per-append limits force it), with the same
//! stream, version, event id, type, data and metadata. Because the destination keeps
//! ids, versions and bytes, the ledger's own per-stream hash chain (`prev_hash` in
//! each event's metadata) verifies there unchanged.
//!
//! Resumable and idempotent: before each append the destination stream is read at the
//! versions about to be written; events already there (same id and content) are
//! skipped, and the rest is appended with the exact expected version it must follow.
//! A copy stopped anywhere — a crash, Ctrl-C, a network error — is finished by running
//! it again; a second run over a complete copy writes nothing. Anything in the
//! destination that contradicts the source stops the copy with
//! [`TransferError::Diverged`]: the tool never overwrites or guesses.
//!
//! Before anything is written, a destination that is not empty must be exactly a
//! prefix of the source: its events, in global order, are the source's first events,
//! each with the same stream, version, id, type, data and metadata. Only a copy this
//! command started (and was stopped) looks like that. A fork (a backup that took
//! writes of its own) or another ledger's log that happens to begin with the same
//! event is refused with [`TransferError::Diverged`] and nothing is written. The
//! earlier check compared only the first event and let the per-run checks find the
//! fork point later, by which time every source event before it had been appended:
//! the refused destination was left altered, and still verified.
//!
//! The prefix check streams both logs a page at a time (memory: two pages), reading
//! each destination event once; the events it matched are then counted as already
//! present without reading the destination again, so a resumed copy does no more
//! work than it did with a read per run. A comparison of hash chains was not taken:
//! the embedded log's record chain also covers positions and how events were
//! grouped into appends, which a copy does not keep, and KurrentDB has no such chain.
//!
//! At the end every stream is checked in the destination: same last version, same
//! last event id, nothing after it; and the destination must hold nothing after the
//! copy's last event (another writer during the copy).
//!
//! Positions are not preserved: each log numbers its own global order. Projection
//! checkpoints taken on the source do not apply to the destination; projections
//! rebuild from the start after a move (docs/operations.md).

use std::collections::HashMap;
use std::ops::ControlFlow;

use ledger_core::log::limits::{APPEND_BYTES_MAX, EVENTS_PER_APPEND_MAX, READ_EVENTS_MAX};
use ledger_core::log::{
    AppendError, CurrentVersion, EventId, EventLog, ExpectedVersion, NewEvent, Position, ReadError,
    ReadFrom, RecordedEvent, StreamName,
};

/// Events read from the source per page: the contract's read limit.
pub const COPY_PAGE_EVENTS: usize = READ_EVENTS_MAX;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("reading the source log failed: {0}; fix the source and run the copy again")]
    ReadSource(#[source] ReadError),
    #[error("reading the destination log failed: {0}; run the copy again to resume")]
    ReadDestination(#[source] ReadError),
    #[error(
        "appending to {stream} at version {version} in the destination failed: {source}; \
         run the copy again to resume"
    )]
    Append {
        stream: StreamName,
        version: u64,
        #[source]
        source: AppendError,
    },
    /// The destination holds something the source does not: another writer, or a
    /// different log copied into the same place. Nothing was overwritten.
    #[error(
        "destination diverges from the source in stream {stream} at version {version}: \
         {what}; copy into an empty log or the one a previous run of this copy started"
    )]
    Diverged {
        stream: StreamName,
        version: u64,
        what: String,
    },
    /// The source handed out a stream's versions out of order: it is damaged.
    #[error(
        "source stream {stream} jumps from version {expected} to {found} in global order; \
         verify and repair the source first"
    )]
    SourceGap {
        stream: StreamName,
        expected: u64,
        found: u64,
    },
    /// The progress callback asked to stop. Running the copy again resumes it.
    #[error("copy stopped after {events_done} of the source's events; run it again to resume")]
    Stopped { events_done: u64 },
}

/// Where a copy stands, after each append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Source events handled so far (written or found already there).
    pub events_done: u64,
    /// Of those, appended by this run.
    pub written: u64,
    /// Of those, found already in the destination (a resumed or repeated copy).
    pub already_present: u64,
    /// Streams seen so far.
    pub streams: u64,
    /// Position of the last source event handled: how far through the source.
    pub source_position: Option<Position>,
}

/// The outcome of a complete, verified copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    pub events: u64,
    pub written: u64,
    pub already_present: u64,
    pub streams: u64,
    /// Appends made in the destination by this run.
    pub appends: u64,
    pub source_head: Option<Position>,
    pub destination_head: Option<Position>,
}

impl CopyReport {
    pub fn render(&self) -> String {
        let pos = |p: Option<Position>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
        format!(
            "copied: {} events in {} streams ({} written in {} appends, {} already present)\n\
             source head: {}\ndestination head: {}\n\
             verified: every stream ends at the same version and event id\n",
            self.events,
            self.streams,
            self.written,
            self.appends,
            self.already_present,
            pos(self.source_head),
            pos(self.destination_head)
        )
    }
}

/// The last version and id of one stream, as seen in the source.
struct StreamEnd {
    version: u64,
    id: EventId,
}

/// Copy every event of `from` into `to` (see the module documentation). `progress` is
/// called after each append; returning `ControlFlow::Break(())` stops the copy with
/// [`TransferError::Stopped`], safely resumable.
pub async fn copy_log(
    from: &dyn EventLog,
    to: &dyn EventLog,
    progress: &mut (dyn FnMut(&CopyProgress) -> ControlFlow<()> + Send),
) -> Result<CopyReport, TransferError> {
    let mut ends: HashMap<StreamName, StreamEnd> = HashMap::new();
    let mut p = CopyProgress::default();
    // Nothing is written before this returns: a destination that is not a prefix of
    // the source is refused untouched.
    let prefix = match_destination_prefix(from, to, &mut ends, &mut p, progress).await?;
    let mut appends = 0;
    // Where the destination holds the last source event handled so far.
    let mut destination_last: Option<Position> = prefix.destination_last;
    let mut cursor = ReadFrom::after(prefix.source_last);
    loop {
        let page = from
            .read_all(cursor, COPY_PAGE_EVENTS)
            .await
            .map_err(TransferError::ReadSource)?;
        let Some(last) = page.last() else { break };
        cursor = ReadFrom::After(last.position);
        for run in runs(&page) {
            check_source_continues(&ends, &run[0])?;
            let (written, made_append, at) = copy_run(to, run).await?;
            appends += u64::from(made_append);
            destination_last = destination_last.max(Some(at));
            let tail = &run[run.len() - 1];
            note_stream_end(&mut ends, &mut p, tail);
            p.events_done += run.len() as u64;
            p.written += written;
            p.already_present += run.len() as u64 - written;
            p.source_position = Some(tail.position);
            if progress(&p).is_break() {
                return Err(TransferError::Stopped {
                    events_done: p.events_done,
                });
            }
        }
    }
    for (stream, end) in &ends {
        let tail = to
            .read_stream(stream, end.version, 2)
            .await
            .map_err(TransferError::ReadDestination)?;
        match tail.as_slice() {
            [e] if e.id == end.id => {}
            [] => {
                return Err(TransferError::Diverged {
                    stream: stream.clone(),
                    version: end.version,
                    what: "the destination stream ends before the source's last event".into(),
                })
            }
            [e] => {
                return Err(TransferError::Diverged {
                    stream: stream.clone(),
                    version: end.version,
                    what: format!(
                        "the destination holds event {} where the source has {}",
                        e.id, end.id
                    ),
                })
            }
            _ => {
                return Err(TransferError::Diverged {
                    stream: stream.clone(),
                    version: end.version + 1,
                    what: "the destination stream goes on after the source's last event".into(),
                })
            }
        }
    }
    let after = to
        .read_all(ReadFrom::after(destination_last), 1)
        .await
        .map_err(TransferError::ReadDestination)?;
    if let Some(e) = after.first() {
        return Err(TransferError::Diverged {
            stream: e.stream.clone(),
            version: e.version,
            what: format!(
                "the destination holds event {} after the last one copied from the source: \
                 another log's, or another writer's",
                e.id
            ),
        });
    }
    Ok(CopyReport {
        events: p.events_done,
        written: p.written,
        already_present: p.already_present,
        streams: p.streams,
        appends,
        source_head: from.head().await.map_err(TransferError::ReadSource)?,
        destination_head: to.head().await.map_err(TransferError::ReadDestination)?,
    })
}

/// Split a page into runs of consecutive events of one stream with consecutive
/// versions, each small enough for one append under the contract's limits.
fn runs(page: &[RecordedEvent]) -> Vec<&[RecordedEvent]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in page.iter().enumerate() {
        let size = append_bytes(e);
        if i > start {
            let prev = &page[i - 1];
            let continues = e.stream == prev.stream
                && e.version == prev.version + 1
                && i - start < EVENTS_PER_APPEND_MAX
                && bytes + size <= APPEND_BYTES_MAX;
            if !continues {
                out.push(&page[start..i]);
                start = i;
                bytes = 0;
            }
        }
        bytes += size;
    }
    if start < page.len() {
        out.push(&page[start..]);
    }
    out
}

/// An event's share of an append, counted as `validate_append` counts it.
fn append_bytes(e: &RecordedEvent) -> usize {
    e.data.len() + e.metadata.len() + e.event_type.len() + e.stream.as_str().len()
}

/// A source event must follow the last one seen in its stream by exactly one version.
fn check_source_continues(
    ends: &HashMap<StreamName, StreamEnd>,
    e: &RecordedEvent,
) -> Result<(), TransferError> {
    let expected = ends.get(&e.stream).map_or(0, |end| end.version + 1);
    if e.version == expected {
        Ok(())
    } else {
        Err(TransferError::SourceGap {
            stream: e.stream.clone(),
            expected,
            found: e.version,
        })
    }
}

/// Remember `tail` as the last event of its stream handled so far.
fn note_stream_end(
    ends: &mut HashMap<StreamName, StreamEnd>,
    p: &mut CopyProgress,
    tail: &RecordedEvent,
) {
    let end = StreamEnd {
        version: tail.version,
        id: tail.id,
    };
    if ends.insert(tail.stream.clone(), end).is_none() {
        p.streams += 1;
    }
}

/// Reads one log in global order a page of [`COPY_PAGE_EVENTS`] at a time, so that
/// walking a whole log holds one page in memory.
struct Pager<'a> {
    log: &'a dyn EventLog,
    cursor: ReadFrom,
    page: std::vec::IntoIter<RecordedEvent>,
    ended: bool,
}

impl<'a> Pager<'a> {
    fn new(log: &'a dyn EventLog) -> Self {
        Self {
            log,
            cursor: ReadFrom::Start,
            page: Vec::new().into_iter(),
            ended: false,
        }
    }

    async fn next(&mut self) -> Result<Option<RecordedEvent>, ReadError> {
        if let Some(e) = self.page.next() {
            return Ok(Some(e));
        }
        if self.ended {
            return Ok(None);
        }
        let page = self.log.read_all(self.cursor, COPY_PAGE_EVENTS).await?;
        match page.last() {
            Some(last) => self.cursor = ReadFrom::After(last.position),
            None => self.ended = true,
        }
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}

/// How far a destination already holds the source: the last matched event's
/// position in each log (`None` for an empty destination).
struct Prefix {
    source_last: Option<Position>,
    destination_last: Option<Position>,
}

/// Establish, before anything is written, that the destination holds exactly the
/// source's first events in the source's order (same stream, version, id, type,
/// data, metadata): an empty log, or a copy this command started. Anything else, a
/// fork or another ledger's log, is [`TransferError::Diverged`] at the destination's
/// first event that differs. The matched events are counted in `ends` and `p` as
/// already present, so the copy goes on after them without reading them again.
///
/// Bounded by the destination: each of its events is read once, with the source
/// event it must equal, one page of each in memory. `progress` is called once a
/// page, so a long check can be stopped and reports how far it got.
async fn match_destination_prefix(
    from: &dyn EventLog,
    to: &dyn EventLog,
    ends: &mut HashMap<StreamName, StreamEnd>,
    p: &mut CopyProgress,
    progress: &mut (dyn FnMut(&CopyProgress) -> ControlFlow<()> + Send),
) -> Result<Prefix, TransferError> {
    let mut source = Pager::new(from);
    let mut destination = Pager::new(to);
    let mut prefix = Prefix {
        source_last: None,
        destination_last: None,
    };
    // Bounded by the destination: one turn per event it holds, ending at its last
    // event or at the first that differs. No cap of its own: a cap would have to
    // either refuse a long resumed copy or trust the part it did not compare.
    loop {
        let Some(d) = destination
            .next()
            .await
            .map_err(TransferError::ReadDestination)?
        else {
            return Ok(prefix);
        };
        let s = source.next().await.map_err(TransferError::ReadSource)?;
        let s = match s {
            Some(s) if same_event(&s, &d) => s,
            s => {
                let source_has = s.map_or_else(
                    || "the source has no more events".to_owned(),
                    |s| {
                        format!(
                            "the source has event {} ({} version {})",
                            s.id, s.stream, s.version
                        )
                    },
                );
                return Err(TransferError::Diverged {
                    stream: d.stream.clone(),
                    version: d.version,
                    what: format!(
                        "the destination's event {} in global order is {} where {source_has}: \
                         the destination is not a copy of this source's beginning (a fork \
                         that took writes of its own, or another ledger's log); nothing \
                         was written",
                        p.events_done, d.id
                    ),
                });
            }
        };
        check_source_continues(ends, &s)?;
        note_stream_end(ends, p, &s);
        p.events_done += 1;
        p.already_present += 1;
        p.source_position = Some(s.position);
        prefix.source_last = Some(s.position);
        prefix.destination_last = Some(d.position);
        if p.events_done.is_multiple_of(COPY_PAGE_EVENTS as u64) && progress(p).is_break() {
            return Err(TransferError::Stopped {
                events_done: p.events_done,
            });
        }
    }
}

/// The same event in both logs: everything but the position, byte for byte.
fn same_event(s: &RecordedEvent, d: &RecordedEvent) -> bool {
    s.stream == d.stream
        && s.version == d.version
        && s.id == d.id
        && s.event_type == d.event_type
        && s.data == d.data
        && s.metadata == d.metadata
}

/// Copy one run; returns how many events were written, whether an append was made,
/// and where the destination holds the run's last event.
async fn copy_run(
    to: &dyn EventLog,
    run: &[RecordedEvent],
) -> Result<(u64, bool, Position), TransferError> {
    let stream = &run[0].stream;
    let first = run[0].version;
    let there = to
        .read_stream(stream, first, run.len())
        .await
        .map_err(TransferError::ReadDestination)?;
    for (d, s) in there.iter().zip(run) {
        if d.version != s.version || d.id != s.id || d.content_digest() != s.content_digest() {
            return Err(TransferError::Diverged {
                stream: stream.clone(),
                version: s.version,
                what: format!(
                    "the destination holds event {} (version {}) where the source has event {}{}",
                    d.id,
                    d.version,
                    s.id,
                    if d.id == s.id {
                        " with other content"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    let rest = &run[there.len().min(run.len())..];
    let Some(head) = rest.first() else {
        let at = there[run.len() - 1].position;
        return Ok((0, false, at));
    };
    let expected = match head.version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    };
    let events: Vec<NewEvent> = rest
        .iter()
        .map(|e| NewEvent {
            id: e.id,
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        })
        .collect();
    let last = rest[rest.len() - 1].version;
    match to.append(stream, expected, events).await {
        Ok(r) if r.stream_version == last => Ok((rest.len() as u64, true, r.last_position())),
        Ok(r) => Err(TransferError::Diverged {
            stream: stream.clone(),
            version: head.version,
            what: format!(
                "the destination numbered the events up to version {} instead of {last}",
                r.stream_version
            ),
        }),
        Err(AppendError::WrongExpectedVersion { current, .. }) => Err(TransferError::Diverged {
            stream: stream.clone(),
            version: head.version,
            what: format!(
                "the destination stream is at version {} where the source needs {}",
                current,
                CurrentVersion(head.version.checked_sub(1))
            ),
        }),
        Err(source) => Err(TransferError::Append {
            stream: stream.clone(),
            version: head.version,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: &str, version: u64, seq: u64, bytes: usize) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new(stream).expect("name"),
            version,
            position: Position::from_sequence(seq),
            id: EventId::new_random(),
            event_type: "E.v1".into(),
            data: vec![b'x'; bytes],
            metadata: Vec::new(),
        }
    }

    #[test]
    fn runs_follow_streams_and_consecutive_versions() {
        let page = vec![
            rec("a", 0, 0, 1),
            rec("a", 1, 1, 1),
            rec("b", 0, 2, 1),
            rec("a", 2, 3, 1),
            rec("a", 3, 4, 1),
            rec("a", 4, 5, 1),
        ];
        let lens: Vec<usize> = runs(&page).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![2, 1, 3]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn runs_respect_the_append_limits() {
        let big = ledger_core::log::limits::EVENT_DATA_BYTES_MAX;
        let page: Vec<RecordedEvent> = (0..300).map(|v| rec("a", v, v, big)).collect();
        let rs = runs(&page);
        assert!(rs.len() > 1, "16 MiB per append splits 300 × 64 KiB");
        for r in &rs {
            let bytes: usize = r.iter().map(append_bytes).sum();
            assert!(bytes <= APPEND_BYTES_MAX);
        }
        assert_eq!(rs.iter().map(|r| r.len()).sum::<usize>(), 300);
    }
}

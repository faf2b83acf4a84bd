//! Machinery shared by logs that number events densely (0, 1, 2, …), so that the
//! position of an event is its sequence number: `MemoryLog` and the embedded log.
//! Kept apart from both so neither backend depends on the other's module, and so the
//! retry rule and the catch-up/live switch are written once.

use std::collections::HashMap;

use futures::StreamExt;
use tokio::sync::watch;

use super::{
    AppendError, AppendResult, ContentDigest, EventId, EventStream, NewEvent, Position, ReadError,
    ReadFrom, RecordedEvent, StreamName,
};

/// The sequence number a dense-sequence log starts reading at.
pub fn start_sequence(from: ReadFrom, head: u64) -> Result<u64, ReadError> {
    match from {
        ReadFrom::Start => Ok(0),
        ReadFrom::After(p) if p.commit() != p.prepare() || p.commit() >= head => {
            Err(ReadError::UnknownPosition(p.to_string()))
        }
        ReadFrom::After(p) => Ok(p.commit() + 1),
    }
}

/// The retry rule of the contract, for logs that keep an id index of `id -> sequence`
/// and the events by sequence: `Ok(Some(original))` for an exact retry, `Ok(None)` when
/// no id is known, an error when ids are reused.
pub fn retry_result(
    ids: &HashMap<EventId, u64>,
    events: &[RecordedEvent],
    stream: &StreamName,
    new: &[NewEvent],
) -> Result<Option<AppendResult>, AppendError> {
    retry_result_with(
        |id| ids.get(id).copied(),
        |seq| events[seq as usize].version,
        |seq| Ok(events[seq as usize].content_digest()),
        stream,
        new,
    )
}

/// [`retry_result`] over lookup functions, so a log can keep its indexes as it likes.
///
/// `digest_of(seq)` gives the content digest of the stored event at `seq`. It is only
/// asked when an appended id is already taken (a retry, or a reuse to refuse), so a
/// log need not keep a digest per event: the embedded log reads the stored record
/// back instead, which saves a hash per append and 16 bytes per event in memory.
pub fn retry_result_with(
    lookup: impl Fn(&EventId) -> Option<u64>,
    version_of: impl Fn(u64) -> u64,
    digest_of: impl Fn(u64) -> Result<ContentDigest, AppendError>,
    stream: &StreamName,
    new: &[NewEvent],
) -> Result<Option<AppendResult>, AppendError> {
    let Some(first) = new.first() else {
        return Ok(None);
    };
    let Some(first_seq) = lookup(&first.id) else {
        // Not a retry, unless a later event of the append reuses an id.
        if let Some(e) = new.iter().find(|e| lookup(&e.id).is_some()) {
            return Err(AppendError::EventIdReused { id: e.id });
        }
        return Ok(None);
    };
    let mut positions = Vec::with_capacity(new.len());
    for (i, e) in new.iter().enumerate() {
        match lookup(&e.id) {
            Some(seq)
                if seq == first_seq + i as u64 && digest_of(seq)? == e.content_digest(stream) =>
            {
                positions.push(Position::from_sequence(seq));
            }
            _ => return Err(AppendError::EventIdReused { id: e.id }),
        }
    }
    let last = first_seq + new.len() as u64 - 1;
    Ok(Some(AppendResult {
        stream_version: version_of(last),
        positions,
    }))
}

/// Catch-up-then-live subscription for logs that publish their head (number of durable
/// events) on a watch channel. Pages through `read` until caught up, then waits for the
/// head to move. Because it only ever reads by position, the switch from catch-up to
/// live can neither skip nor repeat an event.
pub fn follow<R>(from: ReadFrom, head_rx: watch::Receiver<u64>, read: R) -> EventStream
where
    R: Fn(ReadFrom, usize) -> Result<Vec<RecordedEvent>, ReadError> + Send + Sync + 'static,
{
    /// Page size of a subscription's reads: big enough to amortise a read, small
    /// enough that a slow consumer does not pin much memory.
    const SUBSCRIPTION_PAGE_EVENTS_MAX: usize = 1024;
    struct State<R> {
        from: ReadFrom,
        rx: watch::Receiver<u64>,
        read: R,
        buffered: std::vec::IntoIter<RecordedEvent>,
        failed: bool,
    }
    let state = State {
        from,
        rx: head_rx,
        read,
        buffered: Vec::new().into_iter(),
        failed: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.failed {
            return None;
        }
        loop {
            if let Some(e) = s.buffered.next() {
                s.from = ReadFrom::After(e.position);
                return Some((Ok(e), s));
            }
            // Mark the current head as seen *before* reading, so an append that lands
            // after the read wakes us up.
            s.rx.borrow_and_update();
            match (s.read)(s.from, SUBSCRIPTION_PAGE_EVENTS_MAX) {
                Err(e) => {
                    s.failed = true;
                    return Some((Err(e), s));
                }
                Ok(page) if !page.is_empty() => s.buffered = page.into_iter(),
                Ok(_) => {
                    if s.rx.changed().await.is_err() {
                        // The log was dropped: the subscription ends.
                        return None;
                    }
                }
            }
        }
    })
    .boxed()
}

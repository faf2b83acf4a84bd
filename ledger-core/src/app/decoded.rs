//! [`DecodedEvents`]: the events this process's handler is appending, still decoded,
//! for the projection worker of the same process.
//!
//! Every event a command appends is read back by the projection worker moments later,
//! which used to decode its JSON payload again: ~7 % of the server's CPU under a
//! `SubmitBatch` load (docs/benchmarks.md). The handler holds the decoded event it
//! encodes those bytes from, so it leaves it here, with a copy of the bytes, before it
//! appends; the worker takes it when it reads a record with the same id and the same
//! payload bytes, and decodes only on a miss. The log stays the only truth: an entry is
//! used only for a record whose payload is byte for byte the one the handler encoded
//! from this very event, so whatever happened to the append (a lost race re-decided
//! under the same id, a refusal, another process's event), the worker folds what the
//! record says (debug builds decode anyway and assert that the two are equal).
//!
//! Left *before* the append, not after: the worker is woken by the group commit and
//! usually reads the record before the handler's task even sees its reply, so an entry
//! keyed by the position the append returns was found 5 % of the time under load.
//!
//! Bounded by construction: a fixed ring of [`DECODED_EVENTS_SLOTS`] slots indexed by
//! event id; a new entry overwrites whatever its slot held, so an entry the worker
//! never takes (the append was refused, or the worker is far behind) costs one slot
//! until it is overwritten, and a miss only means one decode. Options not taken: an
//! unbounded map (a stalled worker would grow it without limit), and handing events to
//! the worker over a channel (the worker must apply in log order, which a channel
//! filled by many handler tasks does not give).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::events::LedgerEvent;
use crate::log::EventId;

/// Slots in the ring. The worker reads an event a few milliseconds after its commit
/// (one group commit plus a wake-up); 16,384 slots cover more than 100 ms at 100 k
/// appended events/s, so a worker that keeps up almost never misses, for ~1 MiB of
/// slots plus the entries in them (~0.5 KiB each: the payload copy and the event).
pub const DECODED_EVENTS_SLOTS: usize = 16_384;

struct Entry {
    id: EventId,
    /// The payload the handler encoded from `event`, to be matched byte for byte.
    data: Vec<u8>,
    event: Arc<LedgerEvent>,
}

type Slot = Mutex<Option<Entry>>;

pub struct DecodedEvents {
    slots: Box<[Slot]>,
    /// Events taken so far (for tests and monitoring: the decodes saved).
    taken: AtomicU64,
}

impl Default for DecodedEvents {
    fn default() -> Self {
        Self::with_slots(DECODED_EVENTS_SLOTS)
    }
}

impl std::fmt::Debug for DecodedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedEvents")
            .field("slots", &self.slots.len())
            .field("taken", &self.taken())
            .finish()
    }
}

impl DecodedEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// A ring of `slots` slots (tests use small ones to force overwrites).
    pub fn with_slots(slots: usize) -> Self {
        assert!(slots > 0, "a ring needs a slot");
        Self {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            taken: AtomicU64::new(0),
        }
    }

    /// The slot of `id`. Event ids are UUIDs derived by hashing (request ids,
    /// transactions), so their first bytes are already spread.
    fn slot(&self, id: EventId) -> &Slot {
        let b = id.0.as_bytes();
        let head = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        // A poisoned slot only means a thread panicked while holding it; an entry is
        // checked on use, so the slot stays usable.
        &self.slots[(head % self.slots.len() as u64) as usize]
    }

    /// How many events were taken: decodes the worker did not have to do.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Leave `event`, about to be appended with id `id` and payload `data`.
    pub fn put(&self, id: EventId, data: &[u8], event: Arc<LedgerEvent>) {
        let entry = Entry {
            id,
            data: data.to_vec(),
            event,
        };
        *self.slot(id).lock().unwrap_or_else(PoisonError::into_inner) = Some(entry);
    }

    /// Take the event left for a record with id `id` and payload `data`, if it is
    /// still there and was encoded to exactly these bytes.
    pub fn take(&self, id: EventId, data: &[u8]) -> Option<Arc<LedgerEvent>> {
        let mut slot = self.slot(id).lock().unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            Some(e) if e.id == id && e.data == data => {
                self.taken.fetch_add(1, Ordering::Relaxed);
                Some(e.event)
            }
            other => {
                *slot = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::AccountId;
    use crate::domain::events::ConsentWithdrawn;
    use crate::domain::ids::TransactionId;

    fn event(n: u8) -> LedgerEvent {
        LedgerEvent::ConsentWithdrawn(ConsentWithdrawn {
            consent: TransactionId(uuid::Uuid::from_bytes([n; 16])),
            volunteer: AccountId::new(format!("v{n}")).expect("account id"),
            bank: AccountId::new("bank1").expect("account id"),
            recorded_at: chrono::DateTime::UNIX_EPOCH,
        })
    }

    fn id(n: u8) -> EventId {
        EventId(uuid::Uuid::from_bytes([n; 16]))
    }

    #[test]
    fn an_event_is_taken_once_and_only_for_its_id_and_bytes() {
        let ring = DecodedEvents::with_slots(8);
        let e = Arc::new(event(1));
        ring.put(id(1), b"payload", e.clone());
        assert!(ring.take(id(2), b"payload").is_none(), "another id");
        assert!(ring.take(id(1), b"other bytes").is_none(), "other bytes");
        assert_eq!(ring.take(id(1), b"payload").as_deref(), Some(&*e));
        assert!(ring.take(id(1), b"payload").is_none(), "taken once");
        assert_eq!(ring.taken(), 1);
    }

    #[test]
    fn a_full_ring_overwrites_and_a_miss_is_only_a_miss() {
        let ring = DecodedEvents::with_slots(4);
        for n in 0..64u8 {
            ring.put(id(n), &[n], Arc::new(event(n)));
        }
        let kept = (0..64u8)
            .filter(|&n| ring.take(id(n), &[n]).is_some_and(|e| *e == event(n)))
            .count();
        assert!(kept <= 4, "at most one entry per slot: {kept}");
    }
}

//! [`DecodedEvents`]: the events this process's handler has just appended, still
//! decoded, for the projection worker of the same process.
//!
//! Every event a command appends is read back by the projection worker moments later,
//! which used to decode its JSON payload again: ~7 % of the server's CPU under a
//! `SubmitBatch` load (docs/benchmarks.md). The handler holds the decoded event it
//! encoded those bytes from, so it leaves it here, keyed by the event's log position
//! and id; the worker takes it when it reaches that position and decodes only on a
//! miss. The log stays the only truth: an entry is used only for the record at the
//! same position with the same id, whose payload the handler encoded from this very
//! event (debug builds decode anyway and assert they are equal).
//!
//! Bounded by construction: a fixed ring of [`DECODED_EVENTS_SLOTS`] slots indexed by
//! position; a new entry overwrites whatever its slot held, so an entry the worker
//! never takes (it read the record before the handler put it, or the worker is far
//! behind) costs one slot until it is overwritten, and a miss only means one decode.
//! Options not taken: an unbounded map (a stalled worker would grow it without limit),
//! and handing events to the worker over a channel (the worker must apply in log
//! order, which a channel filled by many handler tasks does not give).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::domain::events::LedgerEvent;
use crate::log::{EventId, Position};

/// Slots in the ring. The worker reads an event a few milliseconds after its commit
/// (one group commit plus a wake-up); 16,384 slots cover more than 100 ms at 100 k
/// appended events/s, so a worker that keeps up almost never misses, for ~0.8 MiB of
/// slots plus the events in them.
pub const DECODED_EVENTS_SLOTS: usize = 16_384;

type Slot = Mutex<Option<(Position, EventId, Box<LedgerEvent>)>>;

pub struct DecodedEvents {
    slots: Box<[Slot]>,
    /// Events taken so far (for tests and monitoring: the share of decodes saved).
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

    /// The slot of `position`. Dense logs number events 0, 1, 2, …; KurrentDB's commit
    /// positions are byte offsets, so they are mixed (Fibonacci hashing) before the
    /// modulo rather than used as they are.
    fn slot(&self, position: Position) -> &Slot {
        let mixed = position.commit().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
        // A poisoned slot only means a thread panicked while holding it; the entry is
        // checked on use, so the slot stays usable.
        &self.slots[(mixed % self.slots.len() as u64) as usize]
    }

    /// How many events were taken: decodes the worker did not have to do.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Leave the decoded `event` appended at `position` with id `id`.
    pub fn put(&self, position: Position, id: EventId, event: LedgerEvent) {
        let mut slot = self
            .slot(position)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some((position, id, Box::new(event)));
    }

    /// Take the event left for `position` and `id`, if it is still there.
    pub fn take(&self, position: Position, id: EventId) -> Option<Box<LedgerEvent>> {
        let mut slot = self
            .slot(position)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            Some((p, i, event)) if p == position && i == id => {
                self.taken.fetch_add(1, Ordering::Relaxed);
                Some(event)
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
    fn an_event_is_taken_once_and_only_for_its_position_and_id() {
        let ring = DecodedEvents::with_slots(8);
        let p = Position::from_sequence(3);
        ring.put(p, id(1), event(1));
        assert!(ring.take(p, id(2)).is_none(), "another id at the position");
        assert!(ring.take(Position::from_sequence(11), id(1)).is_none());
        assert_eq!(ring.take(p, id(1)).as_deref(), Some(&event(1)));
        assert!(ring.take(p, id(1)).is_none(), "taken once");
    }

    #[test]
    fn a_full_ring_overwrites_and_a_miss_is_only_a_miss() {
        let ring = DecodedEvents::with_slots(4);
        for n in 0..64u8 {
            ring.put(Position::from_sequence(n.into()), id(n), event(n));
        }
        let kept = (0..64u8)
            .filter(|&n| {
                ring.take(Position::from_sequence(n.into()), id(n))
                    .is_some_and(|e| *e == event(n))
            })
            .count();
        assert!(kept <= 4, "at most one entry per slot: {kept}");
    }
}

//! The in-memory index, rebuilt by the scan at every open.
//!
//! Memory per event: a location (8 bytes), a stream entry (8 bytes) and an id entry
//! in the writer's [`IdIndex`] (16-byte id + 8-byte sequence, plus table overhead):
//! roughly 50 bytes, so ~1.5 GiB for a city's 30 M events. Persisting the index next to the
//! segments is the known next step when logs grow past that; it was not taken yet
//! because a rebuild from the segments is simpler and is verified on every open.

use std::collections::HashMap;

use ledger_core::log::{EventId, StreamName};

/// Maps keyed by client-chosen values (ids, stream names) use a randomly seeded hasher,
/// so a client cannot pick keys that collide; foldhash's is several times faster than
/// the standard SipHash on these short keys (the writer's hottest loop).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Event id -> sequence. Owned by the writer alone: readers never look ids up, so the
/// map needs no lock and each id is inserted once.
///
/// No content digest is kept beside the sequence: one is only needed when an append
/// names an id that is already taken (a retry, or a reuse to refuse), and then the
/// writer reads the stored record back and hashes it (`writer::stored_digest`). Option
/// not taken: a digest per event, computed at every append and for every record at
/// every open (a BLAKE3 over each event: ~30 % of a city log's open) and held in
/// memory (16 bytes per event) for the rare retry.
pub type IdIndex = FastMap<EventId, u64>;

/// Where a record starts: segment number in the high 32 bits, offset in the low 32.
/// Segments are at most 4 GiB (`EmbeddedConfig::segment_bytes_max` is checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location(u64);

impl Location {
    pub fn new(segment: u64, offset: u64) -> Self {
        assert!(segment <= u32::MAX as u64 && offset <= u32::MAX as u64);
        Self(segment << 32 | offset)
    }
    pub fn segment(self) -> u64 {
        self.0 >> 32
    }
    pub fn offset(self) -> u64 {
        self.0 & u32::MAX as u64
    }
}

#[derive(Default)]
pub struct Index {
    /// One per committed event, by sequence number.
    pub locations: Vec<Location>,
    /// Sequence numbers of each stream's events; the index in the vector is the version.
    pub streams: FastMap<StreamName, Vec<u64>>,
    /// Durable length of each segment, by segment number.
    pub segment_lens: Vec<u64>,
}

impl Index {
    pub fn head(&self) -> u64 {
        self.locations.len() as u64
    }

    /// The byte range `[start, end)` of the record with sequence `seq`.
    pub fn span(&self, seq: u64) -> (u64, u64, u64) {
        let at = self.locations[seq as usize];
        let end = match self.locations.get(seq as usize + 1) {
            Some(next) if next.segment() == at.segment() => next.offset(),
            _ => self.segment_lens[at.segment() as usize],
        };
        (at.segment(), at.offset(), end)
    }
}

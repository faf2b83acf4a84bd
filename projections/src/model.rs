//! [`ReadModels`]: the state every read model lives in, and the fold that keeps it.
//!
//! One struct rather than one per model because the models share what is expensive:
//! the account-id interner, the region tree and the deposit index (a reversal names
//! only the original transaction; undoing a deposit's effect on rankings and the
//! service index needs its volunteer, day and activity). Each read model's own part is
//! in its file; this file interns, dispatches and digests.
//!
//! Determinism: indices are assigned in log order, so a rebuild, an incremental run
//! and a snapshot-then-resume assign the same indices. Hash maps are keyed by those
//! indices and never iterated into an output unsorted.

use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

use chrono::{Datelike, NaiveDate};
use hashbrown::HashTable;
use ledger_core::domain::account::{AccountKind, REGION_LEVELS_MAX};
use ledger_core::domain::events::{DecodeError, HourKind, LedgerEvent};
use ledger_core::domain::units::Unit;
use ledger_core::log::{EventId, EventMark, Position, RecordedEvent, StreamName};
use rust_decimal::Decimal;
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::{Deserialize, Serialize};

use crate::account::{AccountRow, Kind};
use crate::anomaly::FoldAnomaly;
use crate::index::{DepositChange, ServiceIndex};
use crate::redemptions::{RedemptionStatus, Redemptions};

/// Hours or points in hundredths. Every ledger amount has at most two places.
pub type Centi = i64;

/// An amount in hundredths. Panics if `d` has more than two places: the domain never
/// writes one, so such an event is a bug upstream, not input to round.
pub fn centi(d: Decimal) -> Centi {
    ledger_core::domain::units::hundredths(d)
        .expect("ledger amounts are whole hundredths that fit an i64")
}

/// Hundredths back to an exact decimal at two places.
pub fn decimal(c: Centi) -> Decimal {
    Decimal::new(c, 2)
}

/// A calendar day as a day number (days from 0001-01-01).
pub fn day_number(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

pub fn day_from_number(n: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(n).expect("day numbers come from NaiveDates")
}

/// A month as `year * 12 + month0`, ordered like the months: one number per month of
/// any year chrono holds (±262,143, so it fits an `i32`), the years before 1 CE
/// included. The rows and the service index count a deposit's month by this one key.
/// (Until snapshot format 12 the rows' key was unsigned and folded every year before
/// 1 CE into year 0 while the index kept them apart: a foreign log's deposits in
/// years -1 and -2, reversed, drove an index cell below zero and stopped the fold.)
pub fn month_key(d: NaiveDate) -> i32 {
    d.year() * 12 + d.month0() as i32
}

/// A statistics period: all time, a calendar year or a calendar month (of service
/// dates, in the ledger's calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Period {
    All,
    Year(i32),
    /// Year and month (1..=12).
    Month(i32, u32),
}

impl Period {
    /// The three periods a service day counts toward.
    pub fn of_day(d: NaiveDate) -> [Period; 3] {
        [
            Period::All,
            Period::Year(d.year()),
            Period::Month(d.year(), d.month()),
        ]
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        match *self {
            Period::All => true,
            Period::Year(y) => d.year() == y,
            Period::Month(y, m) => d.year() == y && d.month() == m,
        }
    }

    /// Month keys `[from, to]` this period spans, None for all time. Saturating: a
    /// period's year is any `i32`, a month key's only chrono's.
    pub fn month_range(&self) -> Option<(i32, i32)> {
        let y = |y: i32| y.saturating_mul(12);
        match *self {
            Period::All => None,
            Period::Year(yr) => Some((y(yr), y(yr).saturating_add(11))),
            Period::Month(yr, m) => {
                let k = y(yr).saturating_add(m as i32 - 1);
                Some((k, k))
            }
        }
    }
}

/// Strings ↔ dense `u32` indices, assigned in first-seen (log) order.
///
/// Each name is stored once: its bytes in `text`, one name after another, and where it
/// ends in `ends`. The lookup table holds [`Slot`]s: an index and, for a name of up to
/// [`SLOT_INLINE_BYTES_MAX`] bytes (every id the synthetic city and the demo use), the
/// name's bytes themselves. The projection worker clones the read models for every
/// periodic snapshot, under a lock (`runtime.rs`), so the clone matters as much as the
/// size: here it copies three flat buffers, with no allocation or pointer chase per
/// name.
///
/// Why names inline in the table: a replay interns a deposit's volunteer and activity
/// (two lookups per deposit), and with only an index in the table each lookup was four
/// loads, each depending on the one before: the control bytes, the slot, the name's end
/// in `ends`, the name's bytes in `text`, then a `memcmp` call. At a city's size every
/// one of them misses the cache; a profile of the replay put ~27 % of it there
/// (docs/benchmarks.md, "Eighteenth session"). With the name inline a lookup is the
/// control bytes and one 32-byte slot, compared as two fixed arrays. A longer name
/// keeps its first bytes inline, which rules out every other candidate, and is
/// compared through `text` as before. The cost: 32 bytes per table bucket instead of 4:
/// 2,888 MiB instead of 2,760 MiB of read models at a city's 30 M events (2.7 M
/// accounts), for a replay ~6 % faster at 1 M events (four alternating pairs, same
/// section). Tried before and not kept: the sixth session saw no difference through
/// the VM's noise, the ninth measured it slower in two rounds (docs/benchmarks.md,
/// "Ninth session"); this session's four pairs on the binary pass alone all favour it.
/// At a city's size the one run (streamed JSON, caches evicted by the generator)
/// showed no difference either way.
///
/// Option not taken: `Arc<str>` shared by a map and a list. Stored once too, but a
/// clone still visits every name to bump its count (a cache miss each, millions at a
/// city's size) and rebuilds the map entry by entry, and each name carries a 16-byte
/// count header.
#[derive(Clone, Default)]
pub struct Interner {
    /// Every name's bytes, in index order.
    text: String,
    /// `ends[i]`: where name `i` ends in `text` (it starts where name `i - 1` ends).
    /// `usize`, not `u32`: the fold cannot refuse an event, so the names' total size
    /// gets no limit of its own beyond memory.
    ends: Vec<usize>,
    /// Slots, hashed by their names ([`name_hash`]).
    table: HashTable<Slot>,
}

/// Most bytes of a name held in its table slot. 27 makes a slot 32 bytes (with the
/// index and the length), so that a slot never straddles two cache lines. Account ids
/// may have up to 64 bytes and activity keys more: those take the long path (a
/// prefix compare, then `text`), and their gain from this layout was not measured;
/// the bench's ids and the demo's all fit.
const SLOT_INLINE_BYTES_MAX: usize = 27;

/// [`Slot::len`] of a name longer than [`SLOT_INLINE_BYTES_MAX`]: its first bytes are
/// inline, the whole name is compared through `text`.
const SLOT_LEN_LONG: u8 = u8::MAX;
const _: () = assert!(SLOT_INLINE_BYTES_MAX < SLOT_LEN_LONG as usize);

/// One table entry: a name's index and its bytes (the first ones, for a long name),
/// zero-padded so that two slots compare as whole arrays.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    index: u32,
    /// The name's length, or [`SLOT_LEN_LONG`].
    len: u8,
    bytes: [u8; SLOT_INLINE_BYTES_MAX],
}
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    /// The slot `name` would have at `index`.
    fn of(name: &str, index: u32) -> Self {
        let b = name.as_bytes();
        let n = b.len().min(SLOT_INLINE_BYTES_MAX);
        let mut bytes = [0u8; SLOT_INLINE_BYTES_MAX];
        bytes[..n].copy_from_slice(&b[..n]);
        Self {
            index,
            len: if b.len() > SLOT_INLINE_BYTES_MAX {
                SLOT_LEN_LONG
            } else {
                n as u8
            },
            bytes,
        }
    }

    /// The name, if it is inline whole.
    fn inline(&self) -> Option<&[u8]> {
        (self.len != SLOT_LEN_LONG).then(|| &self.bytes[..usize::from(self.len)])
    }

    /// True if this slot is `probe`'s name ([`Slot::of`] it, any index): equal inline
    /// parts and, for a long name, equal bytes in `text`.
    fn is(&self, probe: &Slot, name: &str, text: &str, ends: &[usize]) -> bool {
        self.len == probe.len
            && self.bytes == probe.bytes
            && (self.len != SLOT_LEN_LONG || is_name(text, ends, self.index, name))
    }

    /// The hash of the slot's name (as [`name_hash`] of it).
    fn hash(&self, text: &str, ends: &[usize]) -> u64 {
        match self.inline() {
            // Inline names are what `intern` stored: valid UTF-8 cut at its end.
            Some(b) => name_hash_bytes(b),
            None => name_hash(cut(text, ends, self.index)),
        }
    }
}

/// The hash a name is filed under. FxHash, like the read models' maps: unseeded, and
/// no output depends on the table's order.
fn name_hash(name: &str) -> u64 {
    name_hash_bytes(name.as_bytes())
}

fn name_hash_bytes(name: &[u8]) -> u64 {
    FxBuildHasher.hash_one(name)
}

/// Name `i` of `text` as cut by `ends`.
fn cut<'a>(text: &'a str, ends: &[usize], i: u32) -> &'a str {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &text[start..ends[i]]
}

/// True if name `i` is `name`. Compares bytes: a `str` slice would check both ends
/// for a char boundary on every probe.
fn is_name(text: &str, ends: &[usize], i: u32, name: &str) -> bool {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    text.as_bytes().get(start..ends[i]) == Some(name.as_bytes())
}

impl Interner {
    pub fn get(&self, name: &str) -> Option<u32> {
        let probe = Slot::of(name, 0);
        self.table
            .find(name_hash(name), |s| {
                s.is(&probe, name, &self.text, &self.ends)
            })
            .map(|s| s.index)
    }

    pub fn intern(&mut self, name: &str) -> u32 {
        let hash = name_hash(name);
        let Self { text, ends, table } = self;
        let probe = Slot::of(name, 0);
        if let Some(s) = table.find(hash, |s| s.is(&probe, name, text, ends)) {
            return s.index;
        }
        let i = u32::try_from(ends.len()).expect("fewer than 2^32 interned names");
        text.push_str(name);
        ends.push(text.len());
        table.insert_unique(hash, Slot { index: i, ..probe }, |s| s.hash(text, ends));
        i
    }

    pub fn name(&self, i: u32) -> &str {
        cut(&self.text, &self.ends, i)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The names in index order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| cut(&self.text, &self.ends, i as u32))
    }
}

/// Equal names at equal indices; the table follows from them.
impl PartialEq for Interner {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.ends == other.ends
    }
}

impl Eq for Interner {}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

// Only the names are stored, as a sequence of strings; the table is rebuilt on load
// (half the snapshot size). The same bytes as the `Vec<Box<str>>` this was before, so
// the state digest did not change with this layout.
impl Serialize for Interner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for Interner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, Error, SeqAccess, Visitor};

        /// Appends one name's bytes to the text: no allocation per name.
        struct Append<'a>(&'a mut String);
        impl<'de> DeserializeSeed<'de> for Append<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_str(self)
            }
        }
        impl Visitor<'_> for Append<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<(), E> {
                self.0.push_str(v);
                Ok(())
            }
        }

        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = Interner;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Interner, A::Error> {
                let n = seq
                    .size_hint()
                    .unwrap_or(0)
                    .min(crate::snapshot::MAP_RESERVE_ENTRIES_MAX);
                let mut m = Interner {
                    text: String::new(),
                    ends: Vec::with_capacity(n),
                    table: HashTable::with_capacity(n),
                };
                let Interner { text, ends, table } = &mut m;
                while seq.next_element_seed(Append(text))?.is_some() {
                    let i = u32::try_from(ends.len()).map_err(A::Error::custom)?;
                    let start = ends.last().copied().unwrap_or(0);
                    let name = &text[start..];
                    let hash = name_hash(name);
                    let probe = Slot::of(name, i);
                    if table
                        .find(hash, |s| s.is(&probe, name, text, ends))
                        .is_some()
                    {
                        return Err(A::Error::custom(format!("duplicate name {name:?}")));
                    }
                    ends.push(text.len());
                    table.insert_unique(hash, probe, |s| s.hash(text, ends));
                }
                Ok(m)
            }
        }
        d.deserialize_seq(Names)
    }
}

/// No region (merchants, projects).
pub const NO_REGION: u32 = u32::MAX;

/// One node of the region tree (`hangzhou`, `hangzhou/xihu`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionNode {
    pub parent: u32,
    pub children: Vec<u32>,
    /// Volunteers registered at exactly this node.
    pub members: Vec<u32>,
}

/// The region tree, nodes interned by their full path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regions {
    pub paths: Interner,
    pub nodes: Vec<RegionNode>,
    /// Top-level nodes (cities), in first-seen order.
    pub roots: Vec<u32>,
}

impl Regions {
    /// The node of `path` and its ancestors, created if missing.
    pub fn node(&mut self, path: &str) -> u32 {
        if let Some(n) = self.paths.get(path) {
            return n;
        }
        let parent = match path.rfind('/') {
            Some(cut) => self.node(&path[..cut]),
            None => NO_REGION,
        };
        let n = self.paths.intern(path);
        debug_assert_eq!(n as usize, self.nodes.len());
        self.nodes.push(RegionNode {
            parent,
            children: Vec::new(),
            members: Vec::new(),
        });
        if parent == NO_REGION {
            self.roots.push(n);
        } else {
            self.nodes[parent as usize].children.push(n);
        }
        n
    }

    /// `node` and its ancestors, leaf first (at most four).
    pub fn lineage(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors((node != NO_REGION).then_some(node), move |&n| {
            let p = self.nodes[n as usize].parent;
            (p != NO_REGION).then_some(p)
        })
    }

    /// `node` and its ancestors in a fixed array (no allocation on the hot path).
    pub fn lineage_array(&self, node: u32) -> ([u32; REGION_LEVELS_MAX], usize) {
        let mut out = [0u32; REGION_LEVELS_MAX];
        let mut n = 0;
        for x in self.lineage(node) {
            assert!(
                n < REGION_LEVELS_MAX,
                "region codes have at most four levels"
            );
            out[n] = x;
            n += 1;
        }
        (out, n)
    }

    /// `node` and every node below it: `node` first, the rest in no particular order.
    pub fn subtree(&self, node: u32) -> Vec<u32> {
        let mut out = vec![node];
        let mut i = 0;
        while let Some(&n) = out.get(i) {
            out.extend_from_slice(&self.nodes[n as usize].children);
            // Each node is some other's child at most once: a tree, never a cycle.
            assert!(
                out.len() <= self.nodes.len(),
                "the region tree has no cycle"
            );
            i += 1;
        }
        out
    }

    /// Every volunteer registered in `node`'s subtree (all volunteers for None).
    pub fn members_under(&self, node: Option<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack: Vec<u32> = match node {
            Some(n) => vec![n],
            None => self.roots.clone(),
        };
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            out.extend_from_slice(&node.members);
            stack.extend_from_slice(&node.children);
        }
        out
    }

    pub fn path(&self, node: u32) -> &str {
        self.paths.name(node)
    }
}

/// What the deposit index keeps of a standing deposit: what undoing its effects needs
/// (the volunteer's row, the service index), in 16 bytes; with its 16-byte key an
/// entry is 32 bytes, 20 M of them in a city at 30 M events. The organisation is not
/// kept: the activity is interned as `organisation/activity`, so
/// [`ReadModels::activity_orgs`] has it. The category was kept before and nothing read
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRef {
    pub account: u32,
    pub activity: u32,
    pub day: i32,
    /// Hundredths of an hour in the low 31 bits, [`DepositRef::HONOUR`] for honour hours.
    hours: u32,
}

/// Most hundredths one deposit holds: the domain's 10,000 hours per entry
/// (`ledger_core::domain::units::HOURS_PER_ENTRY_MAX`).
pub const DEPOSIT_CENTI_MAX: Centi = 1_000_000;
const _: () = assert!(DEPOSIT_CENTI_MAX < DepositRef::HONOUR as Centi);

impl DepositRef {
    /// The flag bit of honour hours; hundredths stay below it.
    pub const HONOUR: u32 = 1 << 31;

    pub fn new(account: u32, activity: u32, day: i32, centi: Centi, honour: bool) -> Self {
        assert!(
            (0..=DEPOSIT_CENTI_MAX).contains(&centi),
            "an entry is at most 10,000 hours"
        );
        let c = u32::try_from(centi).expect("checked against DEPOSIT_CENTI_MAX");
        Self {
            account,
            activity,
            day,
            hours: if honour { c | Self::HONOUR } else { c },
        }
    }

    pub fn centi(&self) -> Centi {
        Centi::from(self.hours & !Self::HONOUR)
    }

    pub fn honour(&self) -> bool {
        self.hours & Self::HONOUR != 0
    }
}

/// A stored event the projections cannot fold. The worker stops on it rather than
/// skip a fact: a newer writer's event types need a newer build of the projections,
/// and a payload of a known type that breaks its rules was not written by this ledger.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("event {id} at position {position}: {source}; {}", decode_advice(.source))]
    Decode {
        id: ledger_core::log::EventId,
        position: Position,
        source: DecodeError,
    },
    #[error("event {id} at position {position} is not after the checkpoint {checkpoint}; the log delivered events out of order")]
    OutOfOrder {
        id: ledger_core::log::EventId,
        position: Position,
        checkpoint: Position,
    },
}

/// What an operator does about an event the worker cannot decode.
fn decode_advice(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::UnknownType(_) => {
            "upgrade the server to a build that knows this event, then restart"
        }
        DecodeError::Payload { .. } | DecodeError::BinaryPayload { .. } => {
            "this build cannot read that payload of a known type: if a newer build wrote it, run that build again; otherwise another program wrote it: find it (`timebank-log verify` checks an embedded log's hash chains). The read models stay at the event before it"
        }
    }
}

/// The event at [`ReadModels::checkpoint`], by what names it in any log: its id, and
/// its stream and version, which is where it can be read back on every backend. A
/// position alone is a log's own coordinate: a log restored from another history can
/// hold some other event there, so a restored snapshot is trusted only if the log
/// holds this event at that position (`runtime.rs`, the check before resuming).
///
/// Stored as the [`EventMark`] the receipts catch-up checks its own checkpoint by,
/// less the position (the checkpoint itself), with the stream as a plain string so
/// that it is overwritten in place on every apply. Option not taken: also a
/// digest of the event's content. It would catch a log holding the same event id with
/// other content, but it costs a BLAKE3 of every payload on the fold's hot path, and an
/// event id already derives from the client's request id, which no log holds twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEvent {
    pub id: EventId,
    /// The stream's name as a plain string, overwritten in place by each apply: no
    /// allocation per event once it has grown to the longest name seen.
    pub stream: String,
    pub version: u64,
}

impl CheckpointEvent {
    /// This event at `position` (the checkpoint) as the log's mark of it, to be
    /// looked up in a log; None if the stored stream name is not one any log holds (a
    /// payload this build did not write).
    pub fn mark(&self, position: Position) -> Option<EventMark> {
        Some(EventMark {
            position,
            id: self.id,
            stream: StreamName::new(self.stream.as_str()).ok()?,
            version: self.version,
        })
    }
}

/// Every read model, folded from the log up to [`ReadModels::checkpoint`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModels {
    /// The position of the last event applied; None before the first.
    pub checkpoint: Option<Position>,
    /// The event at the checkpoint; Some exactly when `checkpoint` is.
    pub checkpoint_event: Option<CheckpointEvent>,
    /// How many events were applied.
    pub events: u64,
    /// How many of them were folded with a [`FoldAnomaly`]: a fold of the log like the
    /// rest of the state, so a restart from a snapshot keeps the count (0 for every log
    /// this ledger's handler wrote).
    pub fold_anomalies: u64,
    pub accounts: Interner,
    pub rows: Vec<AccountRow>,
    pub regions: Regions,
    /// Activities, interned as `organisation-index/activity-id`.
    pub activities: Interner,
    /// Activity index → its organisation's account index.
    pub activity_orgs: Vec<u32>,
    /// Standing deposits by transaction id (removed when reversed).
    #[serde(with = "crate::snapshot::pairs")]
    pub deposits: FxHashMap<u128, DepositRef>,
    /// Spends whose counterparty is a project ("hours served" by the project), for
    /// their reversals: transaction → (project, hundredths).
    #[serde(with = "crate::snapshot::pairs")]
    pub project_spends: FxHashMap<u128, (u32, Centi)>,
    /// Account indices of projects, in registration order.
    pub projects: Vec<u32>,
    pub index: ServiceIndex,
    /// Merchants' redemptions and the points on hold (`redemptions.rs`).
    pub redemptions: Redemptions,
    /// Scratch buffer for interning keys; not state.
    #[serde(skip)]
    scratch: String,
}

impl ReadModels {
    pub fn new() -> Self {
        Self::default()
    }

    fn account(&mut self, id: &str) -> u32 {
        let i = self.accounts.intern(id);
        if i as usize == self.rows.len() {
            // In no region until its registration says otherwise. (A row's default
            // region was node 0: in a log that names an account before registering it,
            // which the handler never writes but an imported log may hold, its service
            // counted in the first region registered, or the fold panicked indexing a
            // node that did not exist yet.)
            self.rows.push(AccountRow {
                region: NO_REGION,
                ..AccountRow::default()
            });
        }
        i
    }

    pub fn account_index(&self, id: &str) -> Option<u32> {
        self.accounts.get(id)
    }

    pub fn row(&self, i: u32) -> &AccountRow {
        &self.rows[i as usize]
    }

    /// Apply one recorded event. Events must come in global order, each once. An event
    /// this ledger's handler would not have written is folded all the same, and the
    /// rule it breaks is returned (`anomaly.rs`) for the caller to note.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<Option<FoldAnomaly>, ApplyError> {
        self.check_order(recorded)?;
        let event =
            LedgerEvent::decode(&recorded.event_type, &recorded.data).map_err(|source| {
                ApplyError::Decode {
                    id: recorded.id,
                    position: recorded.position,
                    source,
                }
            })?;
        Ok(self.apply_at(recorded, &event))
    }

    /// [`ReadModels::apply`] of each of `events`, in order, with the same result: the
    /// events before the first error are applied, that one and the rest are not, and
    /// the error is the one `apply` gives for it. Each anomaly goes to `noted` with its
    /// event. `handed` may give an event's payload already decoded: what this
    /// process's handler encoded it from ([`ledger_core::app::DecodedEvents`]; debug
    /// builds decode the payload anyway and assert that the two are equal); the others
    /// are decoded here.
    ///
    /// Faster than `apply` one by one: the events are decoded a batch at a time and the
    /// memory their fold will touch is asked for before any of them is folded
    /// (`prefetch.rs`, which says why and how much).
    pub fn apply_all<'e>(
        &mut self,
        events: &'e [RecordedEvent],
        mut handed: impl FnMut(&RecordedEvent) -> Option<std::sync::Arc<LedgerEvent>>,
        mut noted: impl FnMut(&'e RecordedEvent, FoldAnomaly),
    ) -> Result<(), ApplyError> {
        let mut batch = crate::prefetch::Batch::default();
        for run in events.chunks(crate::prefetch::EVENTS_PER_BATCH_MAX) {
            batch.decode(run, &mut handed);
            self.prefetch(&mut batch);
            for (recorded, event) in run.iter().zip(batch.drain()) {
                // As `apply`: the order before the payload.
                self.check_order(recorded)?;
                let event = event.map_err(|source| ApplyError::Decode {
                    id: recorded.id,
                    position: recorded.position,
                    source,
                })?;
                if let Some(a) = self.apply_at(recorded, &event) {
                    noted(recorded, a);
                }
            }
        }
        Ok(())
    }

    /// Count `anomaly`, if any, and hand it on.
    fn counted(&mut self, anomaly: Option<FoldAnomaly>) -> Option<FoldAnomaly> {
        self.fold_anomalies += u64::from(anomaly.is_some());
        anomaly
    }

    fn check_order(&self, recorded: &RecordedEvent) -> Result<(), ApplyError> {
        match self.checkpoint {
            Some(cp) if recorded.position <= cp => Err(ApplyError::OutOfOrder {
                id: recorded.id,
                position: recorded.position,
                checkpoint: cp,
            }),
            _ => Ok(()),
        }
    }

    fn apply_at(&mut self, recorded: &RecordedEvent, event: &LedgerEvent) -> Option<FoldAnomaly> {
        let anomaly = self.apply_event(event);
        let anomaly = self.counted(anomaly);
        self.checkpoint = Some(recorded.position);
        match &mut self.checkpoint_event {
            Some(at) => {
                at.id = recorded.id;
                at.version = recorded.version;
                if at.stream != recorded.stream.as_str() {
                    at.stream.clear();
                    at.stream.push_str(recorded.stream.as_str());
                }
            }
            None => {
                self.checkpoint_event = Some(CheckpointEvent {
                    id: recorded.id,
                    stream: recorded.stream.as_str().to_owned(),
                    version: recorded.version,
                })
            }
        }
        self.events += 1;
        anomaly
    }

    /// Apply a decoded event; the rule of the handler's logs it breaks, if any
    /// ([`FoldAnomaly`]: folded all the same, as its message says).
    ///
    /// Deposits, spends and holds are filed under the ids their payloads name
    /// (`transaction`, `hold`), which is what a reversal or a hold's end names: not
    /// under the event id. The handler makes the two equal, but a log copied by a tool
    /// that gave events new ids would otherwise have every reversal miss its deposit
    /// and every hold stay open for good.
    pub fn apply_event(&mut self, event: &LedgerEvent) -> Option<FoldAnomaly> {
        // The last account a posting named, so that a deposit does not look its
        // volunteer up twice (its credit posting names them).
        let mut posted: Option<(&str, u32)> = None;
        if let Some(postings) = event.postings() {
            for p in postings {
                if p.account.is_system() {
                    continue;
                }
                let a = self.account(p.account.as_str());
                posted = Some((p.account.as_str(), a));
                let slot = match p.unit {
                    Unit::Hours => 0,
                    Unit::HonourHours => 1,
                    Unit::Points => 2,
                };
                self.rows[a as usize].balances[slot] += centi(p.amount);
            }
        }
        match event {
            LedgerEvent::AccountRegistered(e) => {
                let a = self.account(e.account.as_str());
                if self.rows[a as usize].kind != Kind::Unregistered {
                    return Some(FoldAnomaly::RegisteredTwice);
                }
                let (kind, region, joined) = match &e.kind {
                    AccountKind::Volunteer { region, joined_on } => {
                        (Kind::Volunteer, Some(region), Some(*joined_on))
                    }
                    AccountKind::Organisation { region } => {
                        (Kind::Organisation, Some(region), None)
                    }
                    AccountKind::Merchant => (Kind::Merchant, None, None),
                    AccountKind::Project => (Kind::Project, None, None),
                    AccountKind::Bank => (Kind::Bank, None, None),
                };
                let mut node = region.map_or(NO_REGION, |r| self.regions.node(r.as_str()));
                let mut anomaly = None;
                if node != NO_REGION && self.rows[a as usize].activities > 0 {
                    // Its standing deposits were counted in no region; a reversal takes
                    // each back from the row's region (`deposit_effect`).
                    node = NO_REGION;
                    anomaly = Some(FoldAnomaly::RegisteredAfterService);
                }
                let row = &mut self.rows[a as usize];
                row.kind = kind;
                row.region = node;
                row.joined_on = joined.map_or(0, day_number);
                match kind {
                    Kind::Volunteer if node != NO_REGION => {
                        self.regions.nodes[node as usize].members.push(a);
                        let joined = joined.expect("volunteers have a join date");
                        self.index.on_registered(node, joined);
                    }
                    Kind::Project => self.projects.push(a),
                    _ => {}
                }
                return anomaly;
            }
            LedgerEvent::AccountClosed(e) => {
                let a = self.account(e.account.as_str());
                let row = &mut self.rows[a as usize];
                row.closed = true;
                row.closed_at = e.closed_at.timestamp();
            }
            LedgerEvent::HoursDeposited(e) => {
                let account = match posted {
                    Some((name, a)) if name == e.volunteer.as_str() => a,
                    _ => self.account(e.volunteer.as_str()),
                };
                let organisation = self.account(e.organisation.as_str());
                // A reused buffer: no allocation unless the activity is new.
                let mut key = std::mem::take(&mut self.scratch);
                activity_key(organisation, e.activity.as_str(), &mut key);
                let activity = self.activities.intern(&key);
                key.clear(); // empty between uses, so it never differs between states
                self.scratch = key;
                if activity as usize == self.activity_orgs.len() {
                    self.activity_orgs.push(organisation);
                }
                // Debug builds only: the key above spells the organisation's index, so
                // in a fold the two cannot differ, and a snapshot is checked for it when
                // read (`validate_activities`). In a release replay the read would be
                // one more cache miss per deposit (a 4-byte entry among a city's
                // activities) that nothing else needs: the deposit's effect is given
                // the organisation it already has.
                debug_assert_eq!(
                    self.activity_orgs[activity as usize], organisation,
                    "an activity's key names its organisation"
                );
                let dep = DepositRef::new(
                    account,
                    activity,
                    day_number(e.service_date),
                    centi(e.hours.value()),
                    e.kind == HourKind::Honour,
                );
                let anomaly = match self.deposits.entry(e.transaction.0.as_u128()) {
                    Entry::Occupied(_) => Some(FoldAnomaly::DepositSeenTwice),
                    Entry::Vacant(v) => {
                        v.insert(dep);
                        None
                    }
                };
                // The decoded date, not `dep.day` turned back into one.
                self.deposit_effect(&dep, organisation, e.service_date, 1);
                return anomaly;
            }
            LedgerEvent::HoursSpent(e) => {
                let cp = self.account(e.counterparty.as_str());
                if self.rows[cp as usize].kind == Kind::Project {
                    let c = centi(e.hours.value());
                    self.rows[cp as usize].served += c;
                    match self.project_spends.entry(e.transaction.0.as_u128()) {
                        Entry::Occupied(_) => return Some(FoldAnomaly::SpendSeenTwice),
                        Entry::Vacant(v) => {
                            v.insert((cp, c));
                        }
                    }
                }
            }
            LedgerEvent::HoursDonated(e) => {
                let p = self.account(e.project.as_str());
                self.rows[p as usize].donated += centi(e.hours.value());
            }
            LedgerEvent::TransactionReversed(e) => {
                let original = e.original.0.as_u128();
                if let Some(dep) = self.deposits.remove(&original) {
                    let organisation = self.activity_orgs[dep.activity as usize];
                    self.deposit_effect(&dep, organisation, day_from_number(dep.day), -1);
                } else if let Some((p, c)) = self.project_spends.remove(&original) {
                    self.rows[p as usize].served -= c;
                } else {
                    // A donation is reversed on the project's stream (it debits the
                    // project); transfers go to volunteers, so this is the only case.
                    let a = self.account(e.account.as_str());
                    if self.rows[a as usize].kind == Kind::Project {
                        let debit: Decimal = e
                            .postings
                            .iter()
                            .filter(|p| p.account == e.account && p.amount < Decimal::ZERO)
                            .map(|p| -p.amount)
                            .sum();
                        self.rows[a as usize].donated -= centi(debit);
                    }
                }
            }
            LedgerEvent::RedemptionAuthorized(e) => {
                let merchant = self.account(e.merchant.as_str());
                let volunteer = self.account(e.volunteer.as_str());
                return self.redemptions.authorized(
                    e.hold.0.as_u128(),
                    merchant,
                    volunteer,
                    centi(e.points.value()),
                    e.recorded_at,
                    e.expires_at,
                );
            }
            LedgerEvent::RedemptionCaptured(e) => {
                return self.redemptions.ended(
                    e.hold.0.as_u128(),
                    RedemptionStatus::Captured,
                    centi(e.points.value()),
                    e.recorded_at,
                )
            }
            LedgerEvent::RedemptionVoided(e) => {
                return self.redemptions.ended(
                    e.hold.0.as_u128(),
                    RedemptionStatus::Voided,
                    0,
                    e.recorded_at,
                )
            }
            LedgerEvent::RedemptionHoldExpired(e) => {
                return self.redemptions.ended(
                    e.hold.0.as_u128(),
                    RedemptionStatus::Expired,
                    0,
                    e.recorded_at,
                )
            }
            LedgerEvent::HoursExchanged(_)
            | LedgerEvent::HoursTransferred(_)
            | LedgerEvent::HoursReceived(_)
            | LedgerEvent::NoShowRecorded(_)
            | LedgerEvent::ServiceRated(_)
            | LedgerEvent::ConsentGranted(_)
            | LedgerEvent::ConsentWithdrawn(_)
            | LedgerEvent::CreditReportServed(_) => {}
        }
        None
    }

    /// Add (`sign` = 1) or remove (-1) a standing deposit's effect on the volunteer's
    /// row and on the service index.
    ///
    /// `organisation` (the activity's) and `day` (`dep.day` as a date) are what a
    /// deposit's caller has at hand; looking them up again cost a cache miss and a
    /// chrono table walk per deposit.
    fn deposit_effect(&mut self, dep: &DepositRef, organisation: u32, day: NaiveDate, sign: i64) {
        debug_assert_eq!(day_number(day), dep.day);
        debug_assert_eq!(self.activity_orgs[dep.activity as usize], organisation);
        let c = dep.centi() * sign;
        let transitions =
            self.rows[dep.account as usize].deposit_effect(dep, organisation, day, c, sign);
        let region = self.rows[dep.account as usize].region;
        let (lineage, n) = self.regions.lineage_array(region);
        self.index.on_deposit(
            &lineage[..n],
            &self.regions,
            DepositChange {
                day,
                activity: dep.activity,
                centi: c,
                sign,
                transitions,
            },
        );
    }

    /// BLAKE3 over a canonical encoding of the whole state: equal digests mean equal
    /// state, whichever way (rebuild, incremental, resumed) it was reached. Maps are
    /// hashed in key order. Each part is hashed as its postcard length (u64 LE), then
    /// its postcard bytes.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        let h = &mut h;
        // `checkpoint_event` is not hashed: it follows from the checkpoint and the log
        // (it is what the log holds there), so it adds nothing to "equal state", and
        // hashing it would change every digest already recorded.
        put(h, &self.checkpoint);
        put(h, &self.events);
        put(h, &self.fold_anomalies);
        put(h, &self.accounts);
        put(h, &self.rows);
        put(h, &self.regions);
        put(h, &self.activities);
        put(h, &self.activity_orgs);
        put(h, &sorted(&self.deposits));
        put(h, &sorted(&self.project_spends));
        put(h, &self.projects);
        // The largest part (tens of millions of activity counts at a city) is
        // streamed, not built: the same length and bytes as the sorted lists it
        // stands for (`index::Canonical`).
        let index = self.index.canonical();
        put_streamed(h, &index, index.encoded_len());
        put(h, &self.redemptions.canonical());
        h.finalize().to_hex().to_string()
    }
}

/// The interning key of an activity of `organisation` (its account index) into `out`
/// (cleared first): `{organisation}/{activity}`, without `core::fmt`. An activity id
/// is its organisation's own, so two organisations' `act-1` are two activities.
pub(crate) fn activity_key(organisation: u32, activity: &str, out: &mut String) {
    out.clear();
    out.push_str(itoa::Buffer::new().format(organisation));
    out.push('/');
    out.push_str(activity);
}

/// Why a decoded snapshot's activities are refused (`snapshot::read`): an
/// organisation recorded for an activity that its key does not name. The fold never
/// writes one (the key is `{organisation}/{activity}`), so only a writer bug or a
/// hand-edited payload, its checksum recomputed, could hold it; folded on, a deposit
/// would count under the key's organisation and its reversal under the recorded one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidActivities {
    #[error("{orgs} organisations are recorded for {activities} activities")]
    Count { activities: usize, orgs: usize },
    #[error("activity {activity} ({key:?}) is recorded under account {org}, which its key does not name or which has no row")]
    Organisation {
        activity: u32,
        key: String,
        org: u32,
    },
}

impl ReadModels {
    /// Every activity's recorded organisation is the account its key names, and has a
    /// row: what `apply_event` relies on when it checks this only in debug builds.
    pub fn validate_activities(&self) -> Result<(), InvalidActivities> {
        if self.activity_orgs.len() != self.activities.len() {
            return Err(InvalidActivities::Count {
                activities: self.activities.len(),
                orgs: self.activity_orgs.len(),
            });
        }
        for (i, (key, &org)) in self.activities.names().zip(&self.activity_orgs).enumerate() {
            let named = key.split_once('/').and_then(|(o, _)| o.parse::<u32>().ok());
            if named != Some(org) || org as usize >= self.rows.len() {
                return Err(InvalidActivities::Organisation {
                    activity: i as u32,
                    key: key.to_owned(),
                    org,
                });
            }
        }
        Ok(())
    }
}

/// Entries of a map sorted by key.
pub fn sorted<K: Ord + Clone, V: Clone>(m: &FxHashMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Hash one part of the digest: its postcard length as u64 LE, then its postcard
/// bytes.
fn put(h: &mut blake3::Hasher, v: &impl Serialize) {
    let bytes = postcard::to_stdvec(v).expect("read models always serialise");
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
}

/// [`put`] for a part too large to encode into memory first: `len`, which the caller
/// computed without encoding, then the bytes streamed into the hasher through a
/// buffer. The same input to the hash as `put`; a wrong `len` would silently change
/// digests, so the bytes are counted and checked.
fn put_streamed(h: &mut blake3::Hasher, v: &impl Serialize, len: u64) {
    /// Feeds the hasher and counts.
    struct Sink<'h> {
        h: &'h mut blake3::Hasher,
        written: u64,
    }
    impl std::io::Write for Sink<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.h.update(buf);
            self.written += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    h.update(&len.to_le_bytes());
    // Buffered: postcard writes a byte or a few at a time, and a hasher update per
    // varint would cost more than the hashing.
    let sink = std::io::BufWriter::with_capacity(1 << 16, Sink { h, written: 0 });
    let sink = postcard::to_io(v, sink).expect("read models always serialise");
    let sink = sink
        .into_inner()
        .map_err(|e| e.into_error())
        .expect("the hasher takes every byte");
    assert_eq!(
        sink.written, len,
        "a streamed digest part is as long as it said"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, json: &str) -> LedgerEvent {
        LedgerEvent::decode(event_type, json.as_bytes()).expect("a test payload decodes")
    }

    /// A log that names a volunteer before registering it (the handler never writes
    /// one; an imported log may hold one) folds its deposit into no region: not into
    /// the first region registered, and without a panic on an empty region tree.
    #[test]
    fn a_deposit_for_an_account_never_registered_counts_in_no_region() {
        let deposit = event(
            "HoursDeposited.v1",
            r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","volunteer":"ghost","organisation":"org-1","activity":"act-1","service_date":"2026-03-05","started_at":"2026-03-05T09:00:00Z","ended_at":"2026-03-05T11:30:00Z","category":"elderly-care","hours":"2.50","kind":"credit","verifier":"ver-1","postings":[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"ghost","unit":"hours","amount":"2.50"}],"recorded_at":"2026-03-05T12:00:00Z"}"#,
        );
        let registered = event(
            "AccountRegistered.v1",
            r#"{"account":"v-1","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#,
        );
        // On an empty region tree.
        let mut m = ReadModels::new();
        m.apply_event(&deposit);
        assert_eq!(
            m.rows[m.account_index("ghost").unwrap() as usize].region,
            NO_REGION
        );
        // And after a volunteer registered in a region: that region has no hours.
        let mut m = ReadModels::new();
        m.apply_event(&registered);
        m.apply_event(&deposit);
        let xihu = m.service_index("hangzhou", Period::All).unwrap();
        assert_eq!((xihu.total_hours, xihu.participations), (Decimal::ZERO, 0));
    }

    // A foreign log's events (`anomaly.rs`): each decodes, none is one the handler
    // writes in that order, and before each stopped the fold with a panic.
    const GHOST_DEPOSIT: &str = r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","volunteer":"ghost","organisation":"org-1","activity":"act-1","service_date":"2026-03-05","started_at":"2026-03-05T09:00:00Z","ended_at":"2026-03-05T11:30:00Z","category":"elderly-care","hours":"2.50","kind":"credit","verifier":"ver-1","postings":[{"account":"system:hour-issuance","unit":"hours","amount":"-2.50"},{"account":"ghost","unit":"hours","amount":"2.50"}],"recorded_at":"2026-03-05T12:00:00Z"}"#;
    const GHOST_IN_XIHU: &str = r#"{"account":"ghost","kind":"volunteer","region":"hangzhou/xihu","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#;
    const GHOST_IN_BINJIANG: &str = r#"{"account":"ghost","kind":"volunteer","region":"hangzhou/binjiang","joined_on":"2025-06-21","registered_at":"2025-06-21T16:00:00Z"}"#;
    const GHOST_REVERSAL: &str = r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a02","original":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01","account":"ghost","reason":"entered twice","postings":[{"account":"system:hour-issuance","unit":"hours","amount":"2.50"},{"account":"ghost","unit":"hours","amount":"-2.50"}],"recorded_at":"2026-03-06T12:00:00Z"}"#;

    fn ghost(m: &ReadModels) -> &AccountRow {
        m.row(m.account_index("ghost").expect("ghost has a row"))
    }

    fn hangzhou_hours(m: &ReadModels) -> (Decimal, u64) {
        let v = m
            .service_index("hangzhou", Period::All)
            .expect("hangzhou is a node");
        (v.total_hours, v.participations)
    }

    #[test]
    fn a_registration_after_service_keeps_the_volunteer_where_it_was_counted() {
        let mut m = ReadModels::new();
        assert_eq!(
            m.apply_event(&event("HoursDeposited.v1", GHOST_DEPOSIT)),
            None
        );
        // Given standing service counted in no region, when the volunteer registers,
        // then it stays in no region (and is no member of Xihu).
        assert_eq!(
            m.apply_event(&event("AccountRegistered.v1", GHOST_IN_XIHU)),
            Some(FoldAnomaly::RegisteredAfterService)
        );
        assert_eq!(ghost(&m).region, NO_REGION);
        assert_eq!(ghost(&m).kind, Kind::Volunteer);
        assert_eq!(hangzhou_hours(&m), (Decimal::ZERO, 0));
        // The reversal takes the service back from where it was counted.
        assert_eq!(
            m.apply_event(&event("TransactionReversed.v1", GHOST_REVERSAL)),
            None
        );
        assert_eq!(ghost(&m).lifetime_centi(), 0);
        assert_eq!(ghost(&m).balances, [0; 3]);
        assert_eq!(hangzhou_hours(&m), (Decimal::ZERO, 0));
    }

    #[test]
    fn a_second_registration_changes_nothing() {
        let mut m = ReadModels::new();
        m.apply_event(&event("AccountRegistered.v1", GHOST_IN_XIHU));
        m.apply_event(&event("HoursDeposited.v1", GHOST_DEPOSIT));
        assert_eq!(hangzhou_hours(&m), (Decimal::new(250, 2), 1));
        assert_eq!(
            m.apply_event(&event("AccountRegistered.v1", GHOST_IN_BINJIANG)),
            Some(FoldAnomaly::RegisteredTwice)
        );
        let xihu = m
            .regions
            .paths
            .get("hangzhou/xihu")
            .expect("xihu is a node");
        assert_eq!(ghost(&m).region, xihu);
        assert_eq!(m.regions.nodes[xihu as usize].members.len(), 1);
        assert_eq!(m.regions.paths.get("hangzhou/binjiang"), None);
        m.apply_event(&event("TransactionReversed.v1", GHOST_REVERSAL));
        assert_eq!(hangzhou_hours(&m), (Decimal::ZERO, 0));
    }

    #[test]
    fn a_deposit_seen_twice_counts_twice_and_a_reversal_takes_back_one() {
        let mut m = ReadModels::new();
        m.apply_event(&event("AccountRegistered.v1", GHOST_IN_XIHU));
        let deposit = event("HoursDeposited.v1", GHOST_DEPOSIT);
        assert_eq!(m.apply_event(&deposit), None);
        assert_eq!(m.apply_event(&deposit), Some(FoldAnomaly::DepositSeenTwice));
        assert_eq!(ghost(&m).lifetime_centi(), 500);
        assert_eq!(ghost(&m).balances[0], 500);
        assert_eq!(hangzhou_hours(&m), (Decimal::new(500, 2), 2));
        m.apply_event(&event("TransactionReversed.v1", GHOST_REVERSAL));
        assert_eq!(ghost(&m).lifetime_centi(), 250);
        assert_eq!(ghost(&m).balances[0], 250);
        assert_eq!(hangzhou_hours(&m), (Decimal::new(250, 2), 1));
        // A second reversal of the id finds no standing deposit filed under it.
        assert_eq!(
            m.apply_event(&event("TransactionReversed.v1", GHOST_REVERSAL)),
            None
        );
        assert_eq!(ghost(&m).lifetime_centi(), 250);
    }

    /// A foreign log's service dates before 1 CE (the decoders read any year chrono
    /// holds; the handler writes years 0000 to 9999): the rows used to fold them all
    /// into year 0 while the service index kept them apart, so these four events
    /// drove the index's active count for year -2 below zero and stopped the fold.
    #[test]
    fn deposits_before_1_ce_are_counted_and_reversed_in_their_own_years() {
        let mut m = ReadModels::new();
        m.apply_event(&event("AccountRegistered.v1", GHOST_IN_XIHU));
        let in_year = |year: &str, tx: &str| {
            GHOST_DEPOSIT
                .replace("2026-03-05\"", &format!("{year}-03-05\""))
                .replace("9a01", tx)
        };
        let reversal = |tx: &str| GHOST_REVERSAL.replace("9a01", tx);
        let a = in_year("-0001", "aa01");
        let b = in_year("-0002", "bb01");
        for json in [a, b] {
            let e = event("HoursDeposited.v1", &json);
            let LedgerEvent::HoursDeposited(d) = &e else {
                unreachable!()
            };
            assert!(d.service_date.year() < 0, "{:?}", d.service_date);
            assert_eq!(m.apply_event(&e), None);
        }
        let active = |m: &ReadModels, y: i32| {
            m.service_index("hangzhou", Period::Year(y))
                .map_or(0, |v| v.active_volunteers)
        };
        assert_eq!((active(&m, -1), active(&m, -2)), (1, 1));
        assert_eq!(ghost(&m).year_centi(-1), 250);
        m.apply_event(&event("TransactionReversed.v1", &reversal("aa01")));
        assert_eq!((active(&m, -1), active(&m, -2)), (0, 1));
        m.apply_event(&event("TransactionReversed.v1", &reversal("bb01")));
        assert_eq!((active(&m, -1), active(&m, -2)), (0, 0));
        assert_eq!(hangzhou_hours(&m), (Decimal::ZERO, 0));
    }

    #[test]
    fn a_spend_seen_twice_counts_twice_and_a_reversal_takes_back_one() {
        let mut m = ReadModels::new();
        m.apply_event(&event(
            "AccountRegistered.v1",
            r#"{"account":"park","kind":"project","registered_at":"2025-06-21T16:00:00Z"}"#,
        ));
        let spend = event(
            "HoursSpent.v1",
            r#"{"transaction":"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a05","volunteer":"ghost","purpose":"other","counterparty":"park","hours":"1.50","memo":null,"postings":[{"account":"ghost","unit":"hours","amount":"-1.50"},{"account":"system:hour-redemption","unit":"hours","amount":"1.50"}],"recorded_at":"2026-03-06T12:00:00Z"}"#,
        );
        let park = |m: &ReadModels| m.row(m.account_index("park").expect("a row")).served;
        assert_eq!(m.apply_event(&spend), None);
        assert_eq!(m.apply_event(&spend), Some(FoldAnomaly::SpendSeenTwice));
        assert_eq!(park(&m), 300);
        let reversal = GHOST_REVERSAL.replace(
            "\"original\":\"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a01\"",
            "\"original\":\"7d5f3c3e-6a55-4f0e-9d0b-2f2f6b1e9a05\"",
        );
        m.apply_event(&event("TransactionReversed.v1", &reversal));
        assert_eq!(park(&m), 150);
    }

    fn interner(names: &[&str]) -> Interner {
        let mut m = Interner::default();
        for n in names {
            m.intern(n);
        }
        m
    }

    #[test]
    fn an_interner_keeps_each_name_once_and_a_clone_finds_them_all() {
        let names = [
            "v-1",
            "org-2/act-3",
            "",
            "v-1",
            "hangzhou/d1",
            "org-2/act-3",
        ];
        let m = interner(&names);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m.names().collect::<Vec<_>>(),
            ["v-1", "org-2/act-3", "", "hangzhou/d1"]
        );
        // Once: the text holds each distinct name's bytes and nothing else.
        assert_eq!(m.text, "v-1org-2/act-3hangzhou/d1");
        let copy = m.clone();
        assert_eq!(copy, m);
        for (i, n) in m.names().enumerate() {
            assert_eq!(copy.get(n), Some(i as u32));
            assert_eq!(copy.name(i as u32), n);
        }
        assert_eq!(copy.get("v-2"), None);
    }

    #[test]
    fn an_interner_encodes_as_the_list_of_its_names_and_reads_back_equal() {
        let m = interner(&["v-1", "", "org-2/act-3", "区域/一"]);
        let bytes = postcard::to_stdvec(&m).unwrap();
        // The bytes of the `Vec<Box<str>>` this was before, hence the same digests.
        let list: Vec<Box<str>> = m.names().map(Into::into).collect();
        assert_eq!(bytes, postcard::to_stdvec(&list).unwrap());
        let back: Interner = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.get("org-2/act-3"), Some(2));
        assert_eq!(back.get("区域/一"), Some(3));
        // Interning goes on from where the snapshot stopped.
        let mut back = back;
        assert_eq!(back.intern("v-9"), 4);
        assert_eq!(back.intern(""), 1);
    }

    /// Names at and past the slot's inline length, names that differ only past it or
    /// only by a trailing NUL (the slot's padding), enough of them to make the table
    /// grow and rehash: each is found at its own index, before and after a clone and
    /// a snapshot's encode and decode, and a long name twice does not decode.
    #[test]
    fn an_interner_tells_long_names_and_padded_ones_apart() {
        let prefix = "p".repeat(SLOT_INLINE_BYTES_MAX);
        let mut names: Vec<String> = vec![
            "ab".into(),
            "ab\0".into(),
            "ab\0\0".into(),
            prefix.clone(),                        // exactly inline
            format!("{prefix}x"),                  // one past: long, same inline bytes
            format!("{prefix}y"),                  // long, same inline bytes
            format!("{prefix}xx"),                 // long, a longer one of the same start
            "q".repeat(SLOT_INLINE_BYTES_MAX - 1), // one short of inline
        ];
        // Enough to rehash the table several times, short and long alternating.
        for i in 0..5_000 {
            names.push(format!("v-{i}"));
            names.push(format!("{prefix}/{i}"));
        }
        let mut m = Interner::default();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.intern(n), i as u32, "{n:?} is new");
        }
        let back: Interner = postcard::from_bytes(&postcard::to_stdvec(&m).unwrap()).unwrap();
        for copy in [&m, &m.clone(), &back] {
            for (i, n) in names.iter().enumerate() {
                assert_eq!(copy.get(n), Some(i as u32), "{n:?}");
                assert_eq!(copy.name(i as u32), n);
            }
            assert_eq!(copy.get("ab\0\0\0"), None);
            assert_eq!(copy.get(&format!("{prefix}z")), None);
            assert_eq!(copy.get(&prefix[1..]), None);
        }
        assert_eq!(
            m.intern(&format!("{prefix}y")),
            5,
            "a long name is found again"
        );
        let twice = [format!("{prefix}x"), "a".into(), format!("{prefix}x")];
        assert!(postcard::from_bytes::<Interner>(&postcard::to_stdvec(&twice).unwrap()).is_err());
    }

    /// A snapshot whose activity is recorded under another organisation than its key
    /// names (the fold checks this only in debug builds) is refused when read, and
    /// one folded from a log reads back.
    #[test]
    fn a_snapshot_with_an_activity_under_another_organisation_is_refused() {
        use crate::snapshot::{read, write, SnapshotError};
        let mut m = ReadModels::new();
        m.apply_event(&event("AccountRegistered.v1", GHOST_IN_XIHU));
        m.apply_event(&event("HoursDeposited.v1", GHOST_DEPOSIT));
        m.checkpoint = Some(Position::new(1, 1));
        m.checkpoint_event = Some(CheckpointEvent {
            id: EventId::new_random(),
            stream: "account-ghost".into(),
            version: 1,
        });
        assert_eq!(m.validate_activities(), Ok(()));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap().as_ref(), Some(&m));
        let ghost = m.account_index("ghost").unwrap();
        for (edit, expected) in [
            (
                (|m: &mut ReadModels, other: u32| m.activity_orgs[0] = other)
                    as fn(&mut ReadModels, u32),
                "is recorded under account",
            ),
            (
                |m: &mut ReadModels, _| {
                    m.activity_orgs.push(0);
                },
                "2 organisations are recorded for 1 activities",
            ),
        ] {
            let mut bad = m.clone();
            edit(&mut bad, ghost);
            write(dir.path(), &bad).unwrap();
            match read(dir.path()) {
                Err(e @ SnapshotError::Activities { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains(expected), "{message}");
                    assert!(message.contains("rebuilt from the log"), "{message}");
                }
                other => panic!("not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn a_name_twice_does_not_decode() {
        let bytes = postcard::to_stdvec(&["a", "b", "a"]).unwrap();
        assert!(postcard::from_bytes::<Interner>(&bytes).is_err());
    }

    #[test]
    fn a_streamed_part_hashes_as_an_encoded_one() {
        let part = (vec![(1u32, "a".to_owned()); 50_000], Some(u64::MAX));
        let len = postcard::to_stdvec(&part).unwrap().len() as u64;
        let (mut encoded, mut streamed) = (blake3::Hasher::new(), blake3::Hasher::new());
        put(&mut encoded, &part);
        put_streamed(&mut streamed, &part, len);
        assert_eq!(encoded.finalize(), streamed.finalize());
    }

    #[test]
    #[should_panic(expected = "as long as it said")]
    fn a_streamed_part_of_another_length_is_a_bug() {
        put_streamed(&mut blake3::Hasher::new(), &[1u8, 2, 3], 4);
    }

    #[test]
    fn a_deposit_ref_holds_the_domains_largest_entry() {
        assert_eq!(
            centi(ledger_core::domain::units::HOURS_PER_ENTRY_MAX),
            DEPOSIT_CENTI_MAX
        );
    }
}

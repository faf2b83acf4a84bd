//! The service index (志愿服务指数): per region node and period, rolled up the region
//! tree: registered volunteers, active volunteers, activities, participations and total
//! hours.
//!
//! Service is attributed to the volunteer's registered region and the service date. A
//! volunteer is registered at exactly one node, so registered volunteers, active
//! volunteers (a volunteer is active in a period when they have a standing deposit in
//! it), participations and hours add up the tree: each cell keeps them for the
//! volunteers registered at exactly its node (three cells per deposit: the node's
//! month, year and all time), and a query sums the node's subtree
//! ([`ServiceIndex::rolled_up`]; a city is ~1,450 nodes). Distinct activities do not
//! add up (one activity served in two communities is one activity of their district),
//! so each cell keeps them for its whole subtree, counted by [`ActivityRefs`] and
//! carried up the tree only when an activity comes into or leaves a cell.
//!
//! Option not taken: every cell kept rolled up, for each node of the volunteer's
//! lineage (what this replaced). A query was one lookup, but every deposit touched
//! twelve cells (four levels × three periods) and looked its activity up in four of
//! them, ~2,000 instructions of the fold's ~3,600 per event; queries of the index are
//! rare next to deposits (docs/benchmarks.md, "Ninth session").

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Serialize, Serializer};
use smallvec::SmallVec;

use ledger_core::domain::account::REGION_LEVELS_MAX;

use crate::account::Transitions;
use crate::model::{decimal, Centi, Period, ReadModels, Regions};

/// One (region node, period) cell. The sums (`registered`, `active`, `participations`,
/// `centi`) are those of the volunteers registered at exactly this node; `activities`
/// is the whole subtree's. [`ServiceIndex::rolled_up`] gives a node's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Volunteers of this node who joined in the period (all time: every one).
    pub registered: u32,
    /// Volunteers of this node with at least one standing deposit in the period.
    pub active: u32,
    /// Distinct activities with at least one standing deposit in the period by a
    /// volunteer of this node's subtree.
    pub activities: u32,
    /// Standing deposits by volunteers of this node.
    pub participations: u64,
    pub centi: Centi,
}

/// Most (region node, period) cells the index can address: slots are `u32`. A city
/// has ~1,450 nodes and ~55 periods in four years of service (~80 k cells). The count
/// is nodes × periods the log names; the fold cannot refuse an event (it is a fact
/// already recorded) and the ledger accepts any past service date, so this is the
/// index's addressing, asserted, as for interned names.
pub const INDEX_CELLS_MAX: usize = u32::MAX as usize;

/// "No cell yet" in a node's row of slots.
const NO_SLOT: u32 = u32::MAX;

/// The month period of a month key ([`crate::model::month_key`], the rows' key too,
/// so that a deposit's month is the same cell for both).
fn month_period(month: i32) -> Period {
    Period::Month(month.div_euclid(12), month.rem_euclid(12) as u32 + 1)
}

/// One activity's standing deposits in one month by volunteers registered at one
/// node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The service month ([`crate::model::month_key`]).
    pub month: i32,
    /// The volunteers' registered region node.
    pub node: u32,
    /// Standing deposits; never zero (the entry goes with the last one).
    pub count: u32,
}

impl Served {
    fn key(&self) -> (i32, u32) {
        (self.month, self.node)
    }
}

/// Per activity, where it was served: its standing deposits per (month, volunteer's
/// node), sorted by (month, node), strictly increasing, no zero count. An activity
/// counts in the distinct activities of a node's cell for a period while one of its
/// entries lies in that node's subtree and in that period. So a deposit into a
/// (month, node) the activity already has changes no cell's distinct count and costs
/// one binary search; only when an entry comes or goes does the fold look at the
/// activity's other entries ([`ActivityRefs::kept`]) to find the cells, of the node
/// and its ancestors, that it enters or leaves.
///
/// Kept per activity, not per cell: one deposit's lookups land in one short list (an
/// activity is served in a few communities' months), where per-cell maps (an option
/// replaced earlier) cost one miss per node, in maps that for a city's month hold
/// every activity of the month. A `Vec`, not a map: one allocation per activity, so
/// cloning the state for a periodic snapshot copies an activity's entries in one
/// `memcpy`, and reading a snapshot back pushes them in order, no hashing (fifth
/// session: the hash maps this replaced made the clone 3.4–4.7× slower at 3 M events).
///
/// Option not taken: an entry per (cell, activity) for every cell the activity counts
/// in, each ancestor's and each year's and all time's too (what this replaced, up to
/// twelve per (month, node)). A cell's distinct count was then one step of one entry,
/// but a deposit new to its (month, node) stepped up to twelve entries, and the entries
/// were the largest part of the read models: 6.0 M of 8 bytes at 1 M events, where
/// these are ~0.6 M of 12 bytes (docs/benchmarks.md, "Ninth session").
///
/// While an activity has at most two entries ([`ACTIVITY_REFS_INLINE`]) they are held
/// in place (past that, all of them move to the heap, as a `Vec`'s would): a deposit
/// then reads one 32-byte slot of `activity_refs` instead of a `Vec`'s 24-byte header
/// and its heap block, one cache miss fewer per deposit for an activity served in one
/// or two (month, node) pairs. Stored as the same sequence either way. Measured only
/// together with the eighteenth session's other fold changes (docs/benchmarks.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRefs(SmallVec<[Served; ACTIVITY_REFS_INLINE]>);

/// Entries of an activity held without a heap block: two make [`ActivityRefs`] 32
/// bytes (a `Vec` is 24), so one never straddles more than one cache-line boundary.
pub const ACTIVITY_REFS_INLINE: usize = 2;
const _: () = assert!(std::mem::size_of::<ActivityRefs>() == 32);

impl ActivityRefs {
    /// The entries, by (month, node).
    pub fn entries(&self) -> &[Served] {
        &self.0
    }

    /// Set the count of (month, node) (tests build arbitrary entries with it).
    #[cfg(test)]
    fn set(&mut self, month: i32, node: u32, count: u32) {
        match self.0.binary_search_by_key(&(month, node), Served::key) {
            Ok(i) => self.0[i].count = count,
            Err(i) => self.0.insert(i, Served { month, node, count }),
        }
    }

    /// Count one deposit in (`month`, `node`) up (`sign` > 0) or down; true if the
    /// entry came or went.
    fn step(&mut self, month: i32, node: u32, sign: i64) -> bool {
        let v = &mut self.0;
        match v.binary_search_by_key(&(month, node), Served::key) {
            Ok(i) if sign > 0 => {
                v[i].count += 1;
                false
            }
            Ok(i) => {
                v[i].count -= 1;
                if v[i].count == 0 {
                    v.remove(i);
                    return true;
                }
                false
            }
            Err(i) => {
                assert!(
                    sign > 0,
                    "a standing deposit's activity is counted where it was served"
                );
                v.insert(
                    i,
                    Served {
                        month,
                        node,
                        count: 1,
                    },
                );
                true
            }
        }
    }

    /// For each node of `lineage` (a node, then its ancestors) and each period of
    /// `month` (all time, year, month): whether an entry other than (`month`,
    /// `lineage[0]`) keeps the activity counted there. Bit `level * 3 + period`.
    ///
    /// A month's cells can only be kept by entries of that month and a year's by
    /// entries of that year, which are contiguous in the list; an entry of a node
    /// keeps every ancestor of it too. So it looks at the month's entries, then the
    /// rest of the year's until every year is settled, then the rest until every
    /// all-time is: for an activity served mostly in one community the first entry
    /// of each stage settles it. At most every entry once.
    fn kept(&self, lineage: &[u32], month: i32, regions: &Regions) -> u16 {
        let levels = lineage.len();
        assert!(
            levels <= REGION_LEVELS_MAX,
            "a region node has at most four levels"
        );
        let own = (month, lineage[0]);
        let v = &self.0;
        let year = month.div_euclid(12) * 12;
        let year_lo = v.partition_point(|e| e.month < year);
        let year_hi = v.partition_point(|e| e.month < year + 12);
        let month_lo = v.partition_point(|e| e.month < month);
        let month_hi = v.partition_point(|e| e.month <= month);
        // Bits of every level for one period.
        let every = |period: usize| (0..levels).fold(0u16, |m, l| m | 1 << (l * 3 + period));
        let (all, in_year) = (every(0), every(1));
        // The bits `e` keeps in its first `periods` periods: from the lowest level of
        // `lineage` that is its node or an ancestor of it, up.
        let keeps = |e: &Served, periods: usize| -> u16 {
            if e.key() == own {
                return 0;
            }
            let Some(level) = regions
                .lineage(e.node)
                .find_map(|x| lineage.iter().position(|&n| n == x))
            else {
                return 0;
            };
            let mut bits = 0;
            for l in level..levels {
                for p in 0..periods {
                    bits |= 1 << (l * 3 + p);
                }
            }
            bits
        };
        let mut kept = 0u16;
        for e in &v[month_lo..month_hi] {
            kept |= keeps(e, 3);
        }
        for e in v[year_lo..month_lo].iter().chain(&v[month_hi..year_hi]) {
            if kept & in_year == in_year {
                break;
            }
            kept |= keeps(e, 2);
        }
        for e in v[..year_lo].iter().chain(&v[year_hi..]) {
            if kept & all == all {
                break;
            }
            kept |= keeps(e, 1);
        }
        kept
    }
}

/// Why a decoded service index is refused (`snapshot::read`): contents no fold
/// produces, which only a writer bug or a hand-edited payload (its checksum
/// recomputed) could hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIndex {
    #[error("activity {activity}'s entries are not in (month, node) order, or name one twice, at month {month:?}, node {node}")]
    OutOfOrder {
        activity: u32,
        month: Period,
        node: u32,
    },
    #[error("activity {activity} holds a zero count for month {month:?}, node {node}")]
    ZeroCount {
        activity: u32,
        month: Period,
        node: u32,
    },
    #[error("the service index names region node {node}, but the region tree has {nodes} nodes")]
    NoSuchNode { node: u32, nodes: usize },
    #[error("activity {activity} was served in month {month:?} at node {node}, which has no cell")]
    NoSuchCell {
        activity: u32,
        month: Period,
        node: u32,
    },
}

/// What one standing deposit, added or taken back, changes in the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DepositChange {
    /// The service date.
    pub day: NaiveDate,
    pub activity: u32,
    /// Hundredths of an hour, negative when the deposit is taken back.
    pub centi: Centi,
    /// 1 for a deposit added, -1 for one taken back.
    pub sign: i64,
    /// Whether the volunteer became active (1) or inactive (-1) in the day's all-time,
    /// year and month periods.
    pub transitions: Transitions,
}

/// Cells in slots, addressed without hashing on the hot path: periods get dense ids in
/// the order the log names them (a city's service spans ~55), each region node has a
/// row of slots indexed by period id, and a slot indexes `cells`. Per deposit the fold
/// looks up its three periods in a map of a few dozen entries (hot in cache) and then
/// indexes 12 slots; the option this replaced looked up 12 `(node, period)` keys in a
/// map of every cell. Option not taken: cells in arrays indexed by month number per
/// node: the ledger accepts any past service date, so the span of months, and such
/// arrays, have no bound; period ids grow only with the periods actually named.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "StoredIndex")]
pub struct ServiceIndex {
    /// Period id → period, in first-seen (log) order.
    periods: Vec<Period>,
    /// Slot → (node, period id), in first-touch (log) order.
    keys: Vec<(u32, u32)>,
    cells: Vec<Cell>,
    /// Activity id (`ReadModels::activities`) → where it was served.
    activity_refs: Vec<ActivityRefs>,
    /// Period → period id; derived from `periods` (rebuilt on load, not stored).
    #[serde(skip_serializing)]
    period_ids: FxHashMap<Period, u32>,
    /// Node → period id → slot (`NO_SLOT` if untouched); derived from `keys`.
    #[serde(skip_serializing)]
    node_slots: Vec<Vec<u32>>,
    /// (year, month) → the ids of its all-time, year and month periods: one lookup
    /// per deposit instead of three. A cache of `period_ids`, filled as months are met
    /// (empty after a load). Keyed by the pair, not by [`crate::model::month_key`],
    /// which folds every year before 1 CE into year 0.
    #[serde(skip)]
    month_pids: FxHashMap<(i32, u32), [u32; 3]>,
}

/// Equal when the stored fields are: the two addressing tables are derived from them
/// (a row of slots may be longer after a load than after the same events applied).
impl PartialEq for ServiceIndex {
    fn eq(&self, other: &Self) -> bool {
        self.periods == other.periods
            && self.keys == other.keys
            && self.cells == other.cells
            && self.activity_refs == other.activity_refs
    }
}

impl Eq for ServiceIndex {}

/// What a snapshot stores of the index: the same fields as [`ServiceIndex`] without the
/// two derived addressing tables, which are rebuilt on load.
#[derive(Deserialize)]
struct StoredIndex {
    periods: Vec<Period>,
    keys: Vec<(u32, u32)>,
    cells: Vec<Cell>,
    activity_refs: Vec<ActivityRefs>,
}

/// Addressing is checked while the addressing tables are rebuilt, because rebuilding
/// them indexes by what is checked: a stored index whose cells and keys differ in number, whose key
/// names a period it does not list, or that names one (node, period) twice, is refused
/// (the snapshot is then not used and the models are rebuilt from the log) instead of
/// panicking or addressing the wrong cell. A snapshot is checksummed, so only a payload
/// this build did not write gets here. A node id beyond the region tree is refused
/// only after the decode, by [`ServiceIndex::validate`] (`snapshot::read`, which
/// knows the tree; the index does not), so a far one costs its row's allocation
/// first. Not checked anywhere: that each cell's `activities` equals the number of
/// activities with an entry under it, which a later reversal relies on.
impl TryFrom<StoredIndex> for ServiceIndex {
    type Error = String;

    fn try_from(s: StoredIndex) -> Result<Self, String> {
        if s.cells.len() != s.keys.len() {
            return Err(format!(
                "the service index holds {} cells for {} keys",
                s.cells.len(),
                s.keys.len()
            ));
        }
        let period_ids = s
            .periods
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, i as u32))
            .collect();
        let mut node_slots: Vec<Vec<u32>> = Vec::new();
        for (slot, &(node, pid)) in s.keys.iter().enumerate() {
            if pid as usize >= s.periods.len() {
                return Err(format!(
                    "service index cell {slot} names period {pid} of {}",
                    s.periods.len()
                ));
            }
            let row = row_of(&mut node_slots, node, s.periods.len());
            if row[pid as usize] != NO_SLOT {
                return Err(format!(
                    "service index cells {} and {slot} are both node {node}, period {pid}",
                    row[pid as usize]
                ));
            }
            row[pid as usize] = slot as u32;
        }
        Ok(Self {
            periods: s.periods,
            keys: s.keys,
            cells: s.cells,
            activity_refs: s.activity_refs,
            period_ids,
            node_slots,
            month_pids: FxHashMap::default(),
        })
    }
}

/// `node`'s row of slots, grown to hold `periods` period ids.
fn row_of(node_slots: &mut Vec<Vec<u32>>, node: u32, periods: usize) -> &mut Vec<u32> {
    let n = node as usize;
    if node_slots.len() <= n {
        node_slots.resize_with(n + 1, Vec::new);
    }
    let row = &mut node_slots[n];
    if row.len() < periods {
        row.resize(periods, NO_SLOT);
    }
    row
}

/// The index in a canonical form, for the state digest, without building it:
/// serialised, it is the pair (every cell sorted by (node, period), every
/// `((node, month, activity), count)` activity by activity in id order and, within an
/// activity, by (month, node), as kept), in the bytes of
/// `(Vec<((u32, Period), Cell)>, Vec<((u32, Period, u32), u32)>)`. Only the cell keys
/// (~80 k at a city) are sorted up front; the entries are written as they are kept,
/// in an order that is a function of the state alone. Activity ids are assigned in log
/// order, so equal states list them in the same order.
pub struct Canonical<'a> {
    index: &'a ServiceIndex,
    /// Every (node, period) with its slot, sorted by (node, period).
    order: Vec<((u32, Period), u32)>,
}

impl ServiceIndex {
    /// The cell of `node` in `period` as stored (its own volunteers' sums, its
    /// subtree's activities), if anything ever touched it.
    pub fn cell(&self, node: u32, period: Period) -> Option<&Cell> {
        self.cell_at(node, *self.period_ids.get(&period)?)
    }

    /// The cell of `node` for period id `pid`, if anything ever touched it.
    fn cell_at(&self, node: u32, pid: u32) -> Option<&Cell> {
        let slot = *self.node_slots.get(node as usize)?.get(pid as usize)?;
        (slot != NO_SLOT).then(|| &self.cells[slot as usize])
    }

    /// Every cell of `node`, in no particular order.
    pub fn cells_of(&self, node: u32) -> impl Iterator<Item = (Period, &Cell)> + '_ {
        let row = self.node_slots.get(node as usize).map_or(&[][..], |r| r);
        row.iter()
            .enumerate()
            .filter(|(_, &s)| s != NO_SLOT)
            .map(|(pid, &s)| (self.periods[pid], &self.cells[s as usize]))
    }

    /// `subtree[0]`'s figures for `period`: the sums of the cells of every node of
    /// `subtree` (`Regions::subtree`, the node first), and the node's own distinct
    /// activities.
    pub fn rolled_up(&self, subtree: &[u32], period: Period) -> Cell {
        let Some(&node) = subtree.first() else {
            return Cell::default();
        };
        let Some(&pid) = self.period_ids.get(&period) else {
            return Cell::default();
        };
        let mut sum = Cell::default();
        for &n in subtree {
            if let Some(c) = self.cell_at(n, pid) {
                sum.registered += c.registered;
                sum.active += c.active;
                sum.participations += c.participations;
                sum.centi += c.centi;
            }
        }
        sum.activities = self.cell_at(node, pid).map_or(0, |c| c.activities);
        sum
    }

    /// The ids of the all-time, year and month periods of `day`, made if new.
    fn period_ids_of(&mut self, day: NaiveDate) -> [u32; 3] {
        let month = (day.year(), day.month());
        if let Some(&pids) = self.month_pids.get(&month) {
            return pids;
        }
        let pids = Period::of_day(day).map(|p| self.period_id(p));
        self.month_pids.insert(month, pids);
        pids
    }

    /// The id of `period`, made if new.
    fn period_id(&mut self, period: Period) -> u32 {
        let next = self.periods.len();
        let id = *self.period_ids.entry(period).or_insert_with(|| {
            assert!(next < u32::MAX as usize, "fewer than 2^32 periods");
            next as u32
        });
        if id as usize == next {
            self.periods.push(period);
        }
        id
    }

    /// The slot of (node, period id), made if missing.
    fn slot(&mut self, node: u32, pid: u32) -> usize {
        self.slots(node, [pid])[0]
    }

    /// The slots of (node, each period id), made if missing: the node's row is looked
    /// up once for all of them (a deposit needs three per node, for up to four nodes).
    fn slots<const N: usize>(&mut self, node: u32, pids: [u32; N]) -> [usize; N] {
        self.slots_where(node, pids, [true; N])
            .map(|s| s.expect("every slot was wanted"))
    }

    /// [`ServiceIndex::slots`] of the period ids `want` marks, None for the others:
    /// a cell an activity is kept in is neither looked up nor made (a fold has made
    /// it already; a snapshot that lacks it gets no empty cell the fold would not
    /// have made, which would change the state's digest).
    fn slots_where<const N: usize>(
        &mut self,
        node: u32,
        pids: [u32; N],
        want: [bool; N],
    ) -> [Option<usize>; N] {
        let Self {
            periods,
            keys,
            cells,
            node_slots,
            ..
        } = self;
        let row = row_of(node_slots, node, periods.len());
        std::array::from_fn(|k| {
            if !want[k] {
                return None;
            }
            let pid = pids[k];
            let slot = row[pid as usize];
            if slot != NO_SLOT {
                return Some(slot as usize);
            }
            let next = cells.len();
            assert!(next < INDEX_CELLS_MAX, "fewer than 2^32 index cells");
            row[pid as usize] = next as u32;
            cells.push(Cell::default());
            keys.push((node, pid));
            Some(next)
        })
    }

    /// A volunteer registered at `node`, who joined on `joined`.
    pub(crate) fn on_registered(&mut self, node: u32, joined: NaiveDate) {
        for p in self.period_ids_of(joined) {
            let s = self.slot(node, p);
            self.cells[s].registered += 1;
        }
    }

    /// Add or take back a standing deposit by a volunteer registered at `lineage[0]`
    /// (`lineage`: that node and its ancestors, leaf first; empty for a volunteer in no
    /// region, who counts nowhere).
    pub(crate) fn on_deposit(&mut self, lineage: &[u32], regions: &Regions, change: DepositChange) {
        let DepositChange {
            day,
            activity,
            centi: c,
            sign,
            transitions,
        } = change;
        let a = activity as usize;
        if self.activity_refs.len() <= a {
            self.activity_refs.resize_with(a + 1, ActivityRefs::default);
        }
        let Some(&own) = lineage.first() else {
            return;
        };
        let pids = self.period_ids_of(day);
        let slots = self.slots(own, pids);
        for (k, &s) in slots.iter().enumerate() {
            let cell = &mut self.cells[s];
            cell.centi += c;
            cell.participations = cell
                .participations
                .checked_add_signed(sign)
                .expect("participations never go below zero");
            cell.active = cell
                .active
                .checked_add_signed(i32::from(transitions[k]))
                .expect("active volunteers never go below zero");
        }
        // Distinct activities: only if the activity's (month, node) entry came or went
        // does any cell's count change, and then in the cells of the node and its
        // ancestors that no other entry keeps it in.
        let month = crate::model::month_key(day);
        let refs = &mut self.activity_refs[a];
        if !refs.step(month, own, sign) {
            return;
        }
        let kept = refs.kept(lineage, month, regions);
        for (level, &n) in lineage.iter().enumerate() {
            let want: [bool; 3] = std::array::from_fn(|p| kept & 1 << (level * 3 + p) == 0);
            if want == [false; 3] {
                continue; // kept in all three periods of this node
            }
            let node_slots = if level == 0 {
                slots.map(Some)
            } else {
                self.slots_where(n, pids, want)
            };
            for (p, s) in node_slots.into_iter().enumerate() {
                let Some(s) = s.filter(|_| want[p]) else {
                    continue;
                };
                let cell = &mut self.cells[s];
                cell.activities = cell
                    .activities
                    .checked_add_signed(if sign > 0 { 1 } else { -1 })
                    .expect("an activity leaves only a cell it counts in");
            }
        }
    }

    /// Prefetch activity `a`'s entry slot, if it has one (`prefetch.rs`).
    pub(crate) fn prefetch_activity(&self, a: u32) {
        if let Some(refs) = self.activity_refs.get(a as usize) {
            crate::prefetch::lines_of(refs);
        }
    }

    /// Prefetch activity `a`'s entries when they are on the heap (past
    /// [`ACTIVITY_REFS_INLINE`]); its slot should be in cache already (`prefetch.rs`,
    /// stage 2). An `a` the index does not hold yet prefetches nothing.
    pub(crate) fn prefetch_entries(&self, a: u32) {
        if let Some(refs) = self.activity_refs.get(a as usize) {
            if refs.0.spilled() {
                crate::prefetch::line(refs.0.as_ptr());
            }
        }
    }

    /// Prefetch `node`'s own cells for the periods of `day`, those already addressed
    /// (`prefetch.rs`, stage 2). A month the fold has not met yet prefetches nothing.
    pub(crate) fn prefetch_cells(&self, node: u32, day: NaiveDate) {
        let Some(pids) = self.month_pids.get(&(day.year(), day.month())) else {
            return;
        };
        for &pid in pids {
            if let Some(cell) = self.cell_at(node, pid) {
                crate::prefetch::line(cell);
            }
        }
    }

    /// How many (month, node, activity) entries are held (for memory figures).
    pub fn activity_ref_count(&self) -> usize {
        self.activity_refs.iter().map(|r| r.0.len()).sum()
    }

    /// Check what a fold guarantees and a decode cannot: every cell and entry names a
    /// node of the region tree (`nodes` of them; the fold walks an entry's ancestors),
    /// and every activity's entries are strictly increasing by (month, node) (so none
    /// twice), non-zero, and name a month cell the index holds. One pass over the cells
    /// and one over the entries. Not checked: that each cell's distinct count is the
    /// number of activities with an entry under it, which a later reversal relies on.
    pub fn validate(&self, nodes: usize) -> Result<(), InvalidIndex> {
        let node_in_tree = |node: u32| {
            if (node as usize) < nodes {
                Ok(())
            } else {
                Err(InvalidIndex::NoSuchNode { node, nodes })
            }
        };
        for &(node, _) in &self.keys {
            node_in_tree(node)?;
        }
        for (a, refs) in self.activity_refs.iter().enumerate() {
            let activity = a as u32;
            let mut last: Option<(i32, u32)> = None;
            for e in &refs.0 {
                let (month, node) = (month_period(e.month), e.node);
                if last.is_some_and(|l| l >= e.key()) {
                    return Err(InvalidIndex::OutOfOrder {
                        activity,
                        month,
                        node,
                    });
                }
                if e.count == 0 {
                    return Err(InvalidIndex::ZeroCount {
                        activity,
                        month,
                        node,
                    });
                }
                node_in_tree(node)?;
                if self.cell(node, month).is_none() {
                    return Err(InvalidIndex::NoSuchCell {
                        activity,
                        month,
                        node,
                    });
                }
                last = Some(e.key());
            }
        }
        Ok(())
    }

    /// (node, period) of slot `s`.
    fn key(&self, s: u32) -> (u32, Period) {
        let (n, pid) = self.keys[s as usize];
        (n, self.periods[pid as usize])
    }

    /// The canonical form, for the state digest ([`Canonical`]).
    pub fn canonical(&self) -> Canonical<'_> {
        let mut order: Vec<((u32, Period), u32)> = (0..self.cells.len() as u32)
            .map(|s| (self.key(s), s))
            .collect();
        order.sort_unstable_by_key(|e| e.0);
        Canonical { index: self, order }
    }
}

/// The postcard size of `v`. The size flavor only counts, and nothing here fails to
/// serialise.
fn size_of(v: &impl Serialize) -> u64 {
    postcard::serialize_with_flavor(v, postcard::ser_flavors::Size::default())
        .expect("postcard sizes plain values") as u64
}

impl Canonical<'_> {
    /// The length of the postcard encoding, computed without sorting or encoding the
    /// counts: the digest frames every part with its length before its bytes.
    pub fn encoded_len(&self) -> u64 {
        let ix = self.index;
        let mut counts_len = size_of(&ix.activity_ref_count());
        for (a, refs) in ix.activity_refs.iter().enumerate() {
            let a = a as u32;
            counts_len += refs
                .0
                .iter()
                .map(|e| size_of(&((e.node, month_period(e.month), a), e.count)))
                .sum::<u64>();
        }
        size_of(&Cells(self)) + counts_len
    }
}

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut pair = s.serialize_tuple(2)?;
        pair.serialize_element(&Cells(self))?;
        pair.serialize_element(&Counts(self))?;
        pair.end()
    }
}

/// The cells in key order, as a sequence of `((node, period), cell)`.
struct Cells<'a>(&'a Canonical<'a>);

impl Serialize for Cells<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        s.collect_seq(
            c.order
                .iter()
                .map(|&(key, slot)| (key, c.index.cells[slot as usize])),
        )
    }
}

/// Every activity entry, as a sequence of `((node, month, activity), count)`:
/// activity by activity, each one's entries as kept.
struct Counts<'a>(&'a Canonical<'a>);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ix = self.0.index;
        let mut seq = s.serialize_seq(Some(ix.activity_ref_count()))?;
        for (a, refs) in ix.activity_refs.iter().enumerate() {
            for e in &refs.0 {
                seq.serialize_element(&((e.node, month_period(e.month), a as u32), e.count))?;
            }
        }
        seq.end()
    }
}

/// The service index of one node and period (`GetServiceIndex`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexView {
    pub region: String,
    pub period: Period,
    pub registered_volunteers: u32,
    pub active_volunteers: u32,
    pub activities: u32,
    pub participations: u64,
    pub total_hours: rust_decimal::Decimal,
}

impl ReadModels {
    /// The index of `region` (a node path) for `period`; None for an unknown node.
    /// For a month or year, `registered_volunteers` counts volunteers registered (by
    /// join date) up to the end of the period: the size of the scheme then.
    pub fn service_index(&self, region: &str, period: Period) -> Option<IndexView> {
        let node = self.regions.paths.get(region)?;
        // Walked once: the sums and the registrations to the period's end both need it.
        let subtree = self.regions.subtree(node);
        let c = self.index.rolled_up(&subtree, period);
        let registered = match period {
            Period::All => c.registered,
            Period::Year(y) | Period::Month(y, _) => {
                // Cumulative to the period's end: the years before, plus this year's
                // months up to the period's last month, over the subtree.
                let last_month = match period {
                    Period::Month(_, m) => m,
                    _ => 12,
                };
                let mut total = 0;
                for &n in &subtree {
                    total += self
                        .index
                        .cells_of(n)
                        .filter(|(p, _)| match *p {
                            Period::Year(py) => py < y,
                            Period::Month(py, m) => py == y && m <= last_month,
                            Period::All => false,
                        })
                        .map(|(_, c)| c.registered)
                        .sum::<u32>();
                }
                total
            }
        };
        Some(IndexView {
            region: region.to_owned(),
            period,
            registered_volunteers: registered,
            active_volunteers: c.active,
            activities: c.activities,
            participations: c.participations,
            total_hours: decimal(c.centi),
        })
    }
}

/// The calendar year of a day (for callers that only hold a date).
pub fn year_of(d: NaiveDate) -> i32 {
    d.year()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Flat = (Vec<((u32, Period), Cell)>, Vec<((u32, Period, u32), u32)>);

    /// The canonical lists built naively, in full: the reference.
    fn flat(ix: &ServiceIndex) -> Flat {
        let mut cells: Vec<((u32, Period), Cell)> = (0..ix.cells.len() as u32)
            .map(|s| (ix.key(s), ix.cells[s as usize]))
            .collect();
        cells.sort_unstable_by_key(|e| e.0);
        let mut refs = Vec::new();
        for (a, r) in ix.activity_refs.iter().enumerate() {
            for e in &r.0 {
                refs.push(((e.node, month_period(e.month), a as u32), e.count));
            }
        }
        (cells, refs)
    }

    fn assert_streams_the_flat_bytes(ix: &ServiceIndex) {
        let canonical = ix.canonical();
        let bytes = postcard::to_stdvec(&canonical).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&flat(ix)).unwrap());
        assert_eq!(canonical.encoded_len(), bytes.len() as u64);
    }

    /// What a snapshot stores of the index, to write payloads it would refuse.
    #[derive(Serialize)]
    struct Raw {
        periods: Vec<Period>,
        keys: Vec<(u32, u32)>,
        cells: Vec<Cell>,
        activity_refs: Vec<ActivityRefs>,
    }

    fn read(raw: Raw) -> Result<ServiceIndex, postcard::Error> {
        postcard::from_bytes(&postcard::to_stdvec(&raw).unwrap())
    }

    #[test]
    fn a_stored_index_that_addresses_no_cell_or_one_twice_is_refused_not_a_panic() {
        let ok = || Raw {
            periods: vec![Period::All, Period::Year(2026)],
            keys: vec![(0, 0), (0, 1), (1, 0)],
            cells: vec![Cell::default(); 3],
            activity_refs: vec![],
        };
        let ix = read(ok()).expect("a well-formed index reads");
        assert_eq!(ix.node_slots, vec![vec![0, 1], vec![2, NO_SLOT]]);
        // A key naming a period the index does not list (indexed the table before).
        let mut raw = ok();
        raw.keys[2] = (1, 2);
        assert!(read(raw).is_err());
        // One (node, period) twice: two cells, one address.
        let mut raw = ok();
        raw.keys[2] = (0, 1);
        assert!(read(raw).is_err());
        // Fewer cells than keys: a slot past the cells.
        let mut raw = ok();
        raw.cells.pop();
        assert!(read(raw).is_err());
    }

    #[test]
    fn the_canonical_form_is_the_bytes_of_the_flat_lists() {
        assert_streams_the_flat_bytes(&ServiceIndex::default());
        let mut ix = ServiceIndex::default();
        // Values on both sides of every varint byte boundary.
        let edges = [0, 1, 127, 128, 16_383, 16_384, 2_097_152, u32::MAX];
        let mut x = 0x5eed_u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x >> 33
        };
        // Cells made in a scrambled order, so slot order is not key order.
        for _ in 0..2_000 {
            let node = edges[next() as usize % edges.len()].min(next() as u32 % 300);
            let year = 2020 + (next() % 5) as i32;
            let period = match next() % 3 {
                0 => Period::All,
                1 => Period::Year(year),
                _ => Period::Month(year, 1 + (next() % 12) as u32),
            };
            let pid = ix.period_id(period);
            let s = ix.slot(node, pid);
            let cell = &mut ix.cells[s];
            cell.registered += 1;
            cell.participations += next();
            cell.centi -= next() as Centi;
            for _ in 0..next() % 20 {
                let activity = (next() % 700) as usize;
                if ix.activity_refs.len() <= activity {
                    ix.activity_refs
                        .resize_with(activity + 1, ActivityRefs::default);
                }
                let count = edges[next() as usize % edges.len()].max(1);
                // Months on both sides of zero, and far out.
                let month = [-40_000, -1, 0, 1, 24_300, 24_311, 3_000_000][next() as usize % 7];
                ix.activity_refs[activity].set(month, node, count);
            }
        }
        assert!(ix.activity_ref_count() > 10_000);
        assert_streams_the_flat_bytes(&ix);
    }

    fn change(
        day: NaiveDate,
        activity: u32,
        centi: Centi,
        sign: i64,
        transitions: Transitions,
    ) -> DepositChange {
        DepositChange {
            day,
            activity,
            centi,
            sign,
            transitions,
        }
    }

    /// Nodes 0 (`a`) and 1 (`a/b`, a child of 0).
    fn regions() -> Regions {
        let mut r = Regions::default();
        assert_eq!(r.node("a/b"), 1);
        r
    }

    /// An activity served in March 2025 by a volunteer of node 0 and one of node 1,
    /// built by the fold: six cells, two entries.
    fn small() -> ServiceIndex {
        let mut ix = ServiceIndex::default();
        let r = regions();
        let day = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        ix.on_deposit(&[0], &r, change(day, 0, 100, 1, [1, 1, 1]));
        ix.on_deposit(&[1, 0], &r, change(day, 0, 100, 1, [1, 1, 1]));
        assert_eq!(ix.cells.len(), 6);
        assert_eq!(ix.activity_ref_count(), 2);
        // Counted once in each of node 0's cells though served under it twice.
        for p in Period::of_day(day) {
            assert_eq!(ix.cell(0, p).unwrap().activities, 1);
            assert_eq!(ix.cell(1, p).unwrap().activities, 1);
        }
        ix
    }

    #[test]
    fn entries_come_and_go_and_stay_in_month_node_order() {
        let mut ix = small();
        let r = regions();
        let april = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap();
        ix.on_deposit(&[1, 0], &r, change(april, 0, 100, 1, [0, 0, 0]));
        ix.on_deposit(&[1, 0], &r, change(april, 0, 100, 1, [0, 0, 0]));
        let entries = ix.activity_refs[0].entries().to_vec();
        assert!(entries.windows(2).all(|w| w[0].key() < w[1].key()));
        assert_eq!(entries.len(), 3);
        assert!(ix.validate(2).is_ok());
        // April counts the activity at node 1 and, through it, at node 0.
        assert_eq!(ix.cell(1, Period::Month(2025, 4)).unwrap().activities, 1);
        assert_eq!(ix.cell(0, Period::Month(2025, 4)).unwrap().activities, 1);
        assert_eq!(ix.cell(0, Period::Year(2025)).unwrap().activities, 1);
        // Take both April deposits back: the April entry goes, and so does the
        // activity from April's cells; the year and all time stay.
        ix.on_deposit(&[1, 0], &r, change(april, 0, -100, -1, [0, 0, 0]));
        ix.on_deposit(&[1, 0], &r, change(april, 0, -100, -1, [0, 0, 0]));
        assert_eq!(ix.activity_ref_count(), 2);
        assert_eq!(ix, small_with_april_cells());
    }

    /// `small()` then April's cells touched and emptied again: cells stay, entries go.
    fn small_with_april_cells() -> ServiceIndex {
        let mut ix = small();
        let april = ix.period_id(Period::Month(2025, 4));
        ix.slot(1, april);
        ix.slot(0, april);
        ix
    }

    #[test]
    fn months_of_years_before_the_common_era_keep_cells_of_their_own() {
        let mut ix = ServiceIndex::default();
        let r = regions();
        let a = NaiveDate::from_ymd_opt(-5, 3, 1).unwrap();
        let b = NaiveDate::from_ymd_opt(-3, 3, 1).unwrap();
        ix.on_deposit(&[0], &r, change(a, 0, 100, 1, [1, 1, 1]));
        ix.on_deposit(&[0], &r, change(b, 0, 200, 1, [0, 1, 1]));
        assert_eq!(ix.cell(0, Period::Month(-5, 3)).unwrap().centi, 100);
        assert_eq!(ix.cell(0, Period::Month(-3, 3)).unwrap().centi, 200);
        assert_eq!(ix.cell(0, Period::All).unwrap().activities, 1);
        assert!(ix.validate(2).is_ok());
    }

    /// `models` written as a snapshot and read back.
    fn round_trip(
        models: &ReadModels,
    ) -> Result<Option<ReadModels>, crate::snapshot::SnapshotError> {
        let dir = tempfile::tempdir().unwrap();
        crate::snapshot::write(dir.path(), models).unwrap();
        crate::snapshot::read(dir.path())
    }

    #[test]
    fn a_snapshot_with_invalid_activity_counts_is_refused() {
        use crate::snapshot::SnapshotError;
        type Edit = fn(&mut SmallVec<[Served; ACTIVITY_REFS_INLINE]>);
        let refused = |edit: Edit| {
            let mut models = ReadModels::new();
            models.regions = regions();
            models.index = small();
            edit(&mut models.index.activity_refs[0].0);
            match round_trip(&models) {
                Err(SnapshotError::ServiceIndex { source, .. }) => source,
                other => panic!("not refused as an invalid index: {other:?}"),
            }
        };
        let march = Period::Month(2025, 3);
        assert_eq!(
            refused(|v| v.reverse()),
            InvalidIndex::OutOfOrder {
                activity: 0,
                month: march,
                node: 0
            }
        );
        assert_eq!(
            refused(|v| v.push(v[1])),
            InvalidIndex::OutOfOrder {
                activity: 0,
                month: march,
                node: 1
            }
        );
        assert_eq!(
            refused(|v| v[1].count = 0),
            InvalidIndex::ZeroCount {
                activity: 0,
                month: march,
                node: 1
            }
        );
        assert_eq!(
            refused(|v| v.push(Served {
                month: v[1].month + 1,
                node: 1,
                count: 1
            })),
            InvalidIndex::NoSuchCell {
                activity: 0,
                month: Period::Month(2025, 4),
                node: 1
            }
        );
        // A node the region tree does not have (the fold would walk its ancestors).
        assert_eq!(
            refused(|v| v.push(Served {
                month: v[1].month,
                node: 7,
                count: 1
            })),
            InvalidIndex::NoSuchNode { node: 7, nodes: 2 }
        );
        // The error says what is wrong and what happens next.
        let message = SnapshotError::ServiceIndex {
            path: "read-models.snap".into(),
            source: InvalidIndex::ZeroCount {
                activity: 0,
                month: march,
                node: 1,
            },
        }
        .to_string();
        assert!(
            message.contains("zero count for month Month(2025, 3), node 1"),
            "{message}"
        );
        assert!(message.contains("rebuilt from the log"), "{message}");
    }
}

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

/// Per activity, what keeps it counted in each cell's distinct activities, keyed by
/// the cell's slot: in a node's month cell, its standing deposits by the node's own
/// volunteers plus the node's children in whose month cell it counts; in a year's cell
/// the months of the year in which it counts at that node; in the all-time cell the
/// years. An activity counts in a cell while its entry is there (non-zero). An entry
/// is stepped only when the one it derives from crosses zero (a month's below it in
/// the tree, a node's months and years), so a deposit into a month in which the
/// activity already counts at the volunteer's node costs one lookup, and the node's
/// ancestors are not visited at all.
///
/// Kept per activity, not per cell: the lookups of one deposit then all land in one
/// small list (an activity is served in a few communities' months), one or two cache
/// misses, where per-cell maps (an option replaced earlier) cost one miss per node,
/// in maps that for a city's month hold every activity of the month.
///
/// A `Vec` of `(slot, count)` sorted by slot, strictly increasing, no zero count,
/// looked up by binary search: one allocation of 8 bytes per entry, so cloning the
/// state for a periodic snapshot copies each activity's entries in one `memcpy`, and
/// reading a snapshot back pushes them in order, no hashing. Slots are numbered in
/// first-touch (log) order, so the cells of a month new to the log go at the end; an
/// insert elsewhere moves the entries after it (at 1 M events an activity holds 27
/// on average, 58 at p99, 94 at most). Option not taken: the `FxHashMap<u32, u32>`
/// this replaced (fourth session): O(1) lookups, but hundreds of thousands of small
/// tables (control bytes plus power-of-two buckets) to allocate and rebuild: at 3 M
/// events, measured side by side, the snapshot's clone took 0.99–1.03 s instead of
/// 0.22–0.29 s, its read back 0.89–1.12 s instead of 0.57 s, and the read models
/// 51 MiB more heap, for a fold that was not faster (docs/benchmarks.md, "The service
/// index per activity as sorted vectors (fifth session)").
///
/// Stored as the sequence of its pairs, the bytes `crate::snapshot::pairs` writes for
/// a map with these entries, so snapshot format 8 is unchanged. Pairs are written in
/// slot order; a map wrote them in its iteration order, so a snapshot written by a
/// build with the map is sorted once on load ([`From`]); a slot twice, a zero count or
/// a missing cell is then refused by [`ServiceIndex::validate`] (`snapshot::read`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u32, u32)>")]
pub struct ActivityRefs(Vec<(u32, u32)>);

impl From<Vec<(u32, u32)>> for ActivityRefs {
    /// As decoded; sorted by slot if it is not (a map's iteration order).
    fn from(mut pairs: Vec<(u32, u32)>) -> Self {
        if !pairs.is_sorted_by_key(|e| e.0) {
            pairs.sort_unstable_by_key(|e| e.0);
        }
        Self(pairs)
    }
}

impl ActivityRefs {
    /// `(slot, count)`, by slot.
    pub fn counts(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// Set slot `s`'s count (tests build arbitrary counts with it).
    #[cfg(test)]
    fn set(&mut self, s: u32, count: u32) {
        match self.0.binary_search_by_key(&s, |e| e.0) {
            Ok(i) => self.0[i].1 = count,
            Err(i) => self.0.insert(i, (s, count)),
        }
    }

    /// Count the activity up (`sign` > 0) or down by one in slot `s`; true if the
    /// entry came or went (the count left or reached zero).
    fn step(&mut self, s: u32, sign: i64) -> bool {
        let v = &mut self.0;
        match v.binary_search_by_key(&s, |e| e.0) {
            Ok(i) if sign > 0 => {
                v[i].1 += 1;
                false
            }
            Ok(i) => {
                v[i].1 -= 1;
                if v[i].1 == 0 {
                    v.remove(i);
                    return true;
                }
                false
            }
            Err(i) => {
                assert!(
                    sign > 0,
                    "a standing deposit's activity is counted in its cells"
                );
                if v.capacity() == 0 {
                    // An activity's first deposit makes up to 12 entries (four levels
                    // × three periods) one after another: one allocation for them, not
                    // a growth at 4 and 8 (~700 instructions per deposit in a replay
                    // whose activities are new, measured). Option not taken: more up
                    // front, which activities served in one month would never use.
                    v.reserve_exact(REGION_LEVELS_MAX * 3);
                }
                v.insert(i, (s, 1));
                // Where binary search put it; two comparisons beside a move of the tail.
                assert!(
                    (i == 0 || v[i - 1].0 < s) && v.get(i + 1).is_none_or(|e| e.0 > s),
                    "an activity's counts stay sorted by slot"
                );
                true
            }
        }
    }
}

/// Why a decoded service index is refused (`snapshot::read`): contents no fold
/// produces, which only a writer bug or a hand-edited payload (its checksum
/// recomputed) could hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIndex {
    #[error("activity {activity} counts cell slot {slot} twice")]
    SlotTwice { activity: u32, slot: u32 },
    #[error("activity {activity} holds a zero count for cell slot {slot}")]
    ZeroCount { activity: u32, slot: u32 },
    #[error("activity {activity} counts cell slot {slot}, but there are {cells} cells")]
    NoSuchSlot {
        activity: u32,
        slot: u32,
        cells: usize,
    },
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
    /// Activity id (`ReadModels::activities`) → its counts per cell slot.
    activity_refs: Vec<ActivityRefs>,
    /// Period → period id; derived from `periods` (rebuilt on load, not stored).
    #[serde(skip_serializing)]
    period_ids: FxHashMap<Period, u32>,
    /// Node → period id → slot (`NO_SLOT` if untouched); derived from `keys`.
    #[serde(skip_serializing)]
    node_slots: Vec<Vec<u32>>,
    /// Month key ([`crate::model::month_key`]) → the ids of its all-time, year and
    /// month periods: one lookup per deposit instead of three. A cache of
    /// `period_ids`, filled as months are met (empty after a load).
    #[serde(skip)]
    month_pids: FxHashMap<u32, [u32; 3]>,
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
/// this build did not write gets here. Not checked: a node id far beyond the region
/// tree, which the tables would try to allocate a row for (region nodes are not part
/// of the index). `snapshot::read` then checks the counts ([`ServiceIndex::validate`]);
/// not checked anywhere: that each cell's `activities` equals the number of activities
/// counting it, which a later reversal relies on.
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
/// `((node, period, activity), count)` activity by activity in id order and, within an
/// activity, by (node, period)), in the bytes of
/// `(Vec<((u32, Period), Cell)>, Vec<((u32, Period, u32), u32)>)`. Only the cell keys
/// (~80 k at a city) are sorted up front; each activity's counts are sorted when it is
/// written, so the largest transient is one activity's counts instead of a list of
/// all of them (34 M entries, ~1 GB, at 10 M events). Activity ids are assigned in log
/// order, so equal states list them in the same order. Option not taken: the fully
/// key-sorted list the digest hashed before the index was kept per activity, which
/// needs every count regrouped by cell first.
pub struct Canonical<'a> {
    index: &'a ServiceIndex,
    /// Every (node, period) with its slot, sorted by (node, period).
    order: Vec<((u32, Period), u32)>,
}

impl ServiceIndex {
    /// The cell of `node` in `period` as stored (its own volunteers' sums, its
    /// subtree's activities), if anything ever touched it.
    pub fn cell(&self, node: u32, period: Period) -> Option<&Cell> {
        let pid = *self.period_ids.get(&period)? as usize;
        let slot = *self.node_slots.get(node as usize)?.get(pid)?;
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

    /// `node`'s figures for `period`: the sums of every cell in its subtree, and its
    /// own distinct activities.
    pub fn rolled_up(&self, regions: &Regions, node: u32, period: Period) -> Cell {
        let Some(&pid) = self.period_ids.get(&period) else {
            return Cell::default();
        };
        let own = |n: u32| {
            let slot = *self.node_slots.get(n as usize)?.get(pid as usize)?;
            (slot != NO_SLOT).then(|| self.cells[slot as usize])
        };
        let mut sum = Cell::default();
        for n in regions.subtree(node) {
            if let Some(c) = own(n) {
                sum.registered += c.registered;
                sum.active += c.active;
                sum.participations += c.participations;
                sum.centi += c.centi;
            }
        }
        sum.activities = own(node).map_or(0, |c| c.activities);
        sum
    }

    /// The ids of the all-time, year and month periods of `day`, made if new.
    fn period_ids_of(&mut self, day: NaiveDate) -> [u32; 3] {
        let month = crate::model::month_key(day);
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
        let periods = self.periods.len();
        let row = row_of(&mut self.node_slots, node, periods);
        let slot = row[pid as usize];
        if slot != NO_SLOT {
            return slot as usize;
        }
        let next = self.cells.len();
        assert!(next < INDEX_CELLS_MAX, "fewer than 2^32 index cells");
        row[pid as usize] = next as u32;
        self.cells.push(Cell::default());
        self.keys.push((node, pid));
        next
    }

    /// A volunteer registered at `node`, who joined on `joined`.
    pub(crate) fn on_registered(&mut self, node: u32, joined: NaiveDate) {
        for p in self.period_ids_of(joined) {
            let s = self.slot(node, p);
            self.cells[s].registered += 1;
        }
    }

    /// Add (`sign` = 1) or take back (-1) a standing deposit of `c` hundredths in
    /// `activity` on `day` by a volunteer registered at `lineage[0]` (`lineage`: that
    /// node and its ancestors, leaf first; empty for a volunteer in no region, who
    /// counts nowhere). `transitions` says whether the volunteer became active (1) or
    /// inactive (-1) in the day's all-time, year and month periods.
    pub(crate) fn on_deposit(
        &mut self,
        lineage: &[u32],
        day: NaiveDate,
        activity: u32,
        c: Centi,
        sign: i64,
        transitions: Transitions,
    ) {
        let a = activity as usize;
        if self.activity_refs.len() <= a {
            self.activity_refs.resize_with(a + 1, ActivityRefs::default);
        }
        let Some(&own) = lineage.first() else {
            return;
        };
        let pids = self.period_ids_of(day);
        let slots = pids.map(|p| self.slot(own, p));
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
        // Distinct activities, leaf first: the node's month; if the activity came or
        // went there, the node's year (and if that crossed, its all time) and the
        // parent's month, whose count is one per child the activity counts in.
        // Taken out of the list for the walk, as `slot` may add cells meanwhile.
        let mut refs = std::mem::take(&mut self.activity_refs[a]);
        for (level, &n) in lineage.iter().enumerate() {
            let [all, year, month] = if level == 0 {
                slots
            } else {
                pids.map(|p| self.slot(n, p))
            };
            if !count_activity(&mut refs, &mut self.cells[month], month as u32, sign) {
                break;
            }
            if count_activity(&mut refs, &mut self.cells[year], year as u32, sign) {
                count_activity(&mut refs, &mut self.cells[all], all as u32, sign);
            }
        }
        self.activity_refs[a] = refs;
    }

    /// How many (node, period) cells are held (for memory figures).
    pub fn cell_count(&self) -> usize {
        self.cells.len()
    }

    /// How many (node, period, activity) counts are held (for memory figures).
    pub fn activity_ref_count(&self) -> usize {
        self.activity_refs.iter().map(|r| r.0.len()).sum()
    }

    /// Check what a fold guarantees and a decode cannot: every activity's counts are
    /// strictly increasing by slot (no slot twice: [`ActivityRefs::from`] has sorted
    /// them), non-zero, and name existing cells. One pass over the counts.
    pub fn validate(&self) -> Result<(), InvalidIndex> {
        let cells = self.cells.len();
        for (a, refs) in self.activity_refs.iter().enumerate() {
            let activity = a as u32;
            let mut last: Option<u32> = None;
            for &(slot, count) in &refs.0 {
                if last == Some(slot) {
                    return Err(InvalidIndex::SlotTwice { activity, slot });
                }
                // Sorted on decode, so anything else out of order is a bug here.
                assert!(last.is_none_or(|l| l < slot), "sorted on decode");
                if count == 0 {
                    return Err(InvalidIndex::ZeroCount { activity, slot });
                }
                if slot as usize >= cells {
                    return Err(InvalidIndex::NoSuchSlot {
                        activity,
                        slot,
                        cells,
                    });
                }
                last = Some(slot);
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
                .map(|&(s, n)| {
                    let (node, period) = ix.key(s);
                    size_of(&((node, period, a), n))
                })
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

/// Every activity count, as a sequence of `((node, period, activity), count)`:
/// activity by activity, each one's counts sorted in one reused buffer.
struct Counts<'a>(&'a Canonical<'a>);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ix = self.0.index;
        let mut seq = s.serialize_seq(Some(ix.activity_ref_count()))?;
        let mut counts: Vec<((u32, Period), u32)> = Vec::new();
        for (a, refs) in ix.activity_refs.iter().enumerate() {
            counts.clear();
            counts.extend(refs.0.iter().map(|&(s, n)| (ix.key(s), n)));
            counts.sort_unstable_by_key(|e| e.0);
            for &((node, period), n) in &counts {
                seq.serialize_element(&((node, period, a as u32), n))?;
            }
        }
        seq.end()
    }
}

/// Count an activity up (`sign` > 0) or down by one in `cell` (slot `s`), given the
/// activity's counts `refs`; true if it came into the cell or left it (which changes
/// the cell's distinct count, and is a step for the period above).
fn count_activity(refs: &mut ActivityRefs, cell: &mut Cell, s: u32, sign: i64) -> bool {
    if !refs.step(s, sign) {
        return false;
    }
    if sign > 0 {
        cell.activities += 1;
    } else {
        cell.activities -= 1;
    }
    true
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
        let c = self.index.rolled_up(&self.regions, node, period);
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
                for n in self.regions.subtree(node) {
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
            let mut mine: Vec<((u32, Period, u32), u32)> =
                r.0.iter()
                    .map(|&(s, count)| {
                        let (n, p) = ix.key(s);
                        ((n, p, a as u32), count)
                    })
                    .collect();
            mine.sort_unstable_by_key(|e| e.0);
            refs.extend(mine);
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
                ix.activity_refs[activity].set(s as u32, count);
            }
        }
        assert!(ix.activity_ref_count() > 10_000);
        assert_streams_the_flat_bytes(&ix);
    }

    /// An index with two cells and one activity counted in both, built by the fold.
    fn small() -> ServiceIndex {
        let mut ix = ServiceIndex::default();
        let day = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        ix.on_deposit(&[0], day, 0, 100, 1, [1, 1, 1]);
        ix.on_deposit(&[1, 0], day, 0, 100, 1, [1, 1, 1]);
        assert_eq!(ix.cells.len(), 6);
        assert_eq!(ix.activity_ref_count(), 6);
        ix
    }

    #[test]
    fn counts_come_and_go_in_slot_order() {
        let mut ix = small();
        let day = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap();
        ix.on_deposit(&[1, 0], day, 0, 100, 1, [0, 0, 0]);
        ix.on_deposit(&[1, 0], day, 0, 100, 1, [0, 0, 0]);
        let counts = ix.activity_refs[0].counts().to_vec();
        assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ix.validate().is_ok());
        // Take both April deposits back: the April cells' entries go, and so does the
        // activity from those cells' distinct counts; the year and all-time stay.
        ix.on_deposit(&[1, 0], day, 0, -100, -1, [0, 0, 0]);
        ix.on_deposit(&[1, 0], day, 0, -100, -1, [0, 0, 0]);
        assert_eq!(ix.activity_ref_count(), 6);
        assert_eq!(ix, small_with_april_cells());
    }

    /// `small()` then April's cells touched and emptied again: cells stay, counts go.
    fn small_with_april_cells() -> ServiceIndex {
        let mut ix = small();
        let april = ix.period_id(Period::Month(2025, 4));
        ix.slot(1, april);
        ix.slot(0, april);
        ix
    }

    #[test]
    fn stored_as_the_pairs_a_map_of_the_same_counts_is_stored_as() {
        #[derive(Serialize)]
        struct Map(#[serde(with = "crate::snapshot::pairs")] FxHashMap<u32, u32>);
        #[derive(Serialize)]
        struct Sorted(std::collections::BTreeMap<u32, u32>);
        // Slots on both sides of varint byte boundaries, counts too.
        let entries: Vec<(u32, u32)> = [0, 1, 127, 128, 300, 16_384, 70_000, u32::MAX - 1]
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, [1, 127, 128, 16_384, u32::MAX][i % 5]))
            .collect();
        let refs = ActivityRefs(entries.clone());
        let map: FxHashMap<u32, u32> = entries.iter().copied().collect();
        let bytes = postcard::to_stdvec(&refs).unwrap();
        // The same bytes as the map's pairs written in slot order (a count, then pairs)
        assert_eq!(
            bytes,
            postcard::to_stdvec(&Sorted(map.clone().into_iter().collect())).unwrap()
        );
        // and the same length as the map's pairs in its own iteration order,
        let old = postcard::to_stdvec(&Map(map)).unwrap();
        assert_eq!(bytes.len(), old.len());
        // which reads back sorted: a snapshot written with the map loads as it was.
        assert_eq!(postcard::from_bytes::<ActivityRefs>(&old).unwrap(), refs);
        assert_eq!(postcard::from_bytes::<ActivityRefs>(&bytes).unwrap(), refs);
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
    fn a_snapshot_with_counts_out_of_slot_order_loads_sorted() {
        let mut models = ReadModels::new();
        models.index = small();
        let sorted = models.index.clone();
        models.index.activity_refs[0].0.reverse();
        let back = round_trip(&models).unwrap().unwrap();
        assert_eq!(back.index, sorted);
        assert_eq!(back.digest(), {
            let mut m = ReadModels::new();
            m.index = sorted;
            m.digest()
        });
    }

    #[test]
    fn a_snapshot_with_invalid_activity_counts_is_refused() {
        use crate::snapshot::SnapshotError;
        type Edit = fn(&mut Vec<(u32, u32)>);
        let refused = |edit: Edit| {
            let mut models = ReadModels::new();
            models.index = small();
            edit(&mut models.index.activity_refs[0].0);
            match round_trip(&models) {
                Err(SnapshotError::ServiceIndex { source, .. }) => source,
                other => panic!("not refused as an invalid index: {other:?}"),
            }
        };
        assert_eq!(
            refused(|v| v.push((2, 5))),
            InvalidIndex::SlotTwice {
                activity: 0,
                slot: 2
            }
        );
        assert_eq!(
            refused(|v| v[3].1 = 0),
            InvalidIndex::ZeroCount {
                activity: 0,
                slot: 3
            }
        );
        assert_eq!(
            refused(|v| v.push((6, 1))),
            InvalidIndex::NoSuchSlot {
                activity: 0,
                slot: 6,
                cells: 6
            }
        );
        // The error says what is wrong and what happens next.
        let message = SnapshotError::ServiceIndex {
            path: "read-models.snap".into(),
            source: InvalidIndex::ZeroCount {
                activity: 0,
                slot: 3,
            },
        }
        .to_string();
        assert!(message.contains("zero count for cell slot 3"), "{message}");
        assert!(message.contains("rebuilt from the log"), "{message}");
    }
}

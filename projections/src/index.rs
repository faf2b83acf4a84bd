//! The service index (志愿服务指数): per region node and period, rolled up the region
//! tree: registered volunteers, active volunteers, activities, participations and total
//! hours.
//!
//! Each cell is kept incrementally for every node on the volunteer's lineage (at most
//! four) and the three periods of the service day (all time, year, month), so a query
//! is one lookup. Distinct counts (active volunteers, activities) do not add up a tree,
//! so they are kept per node: a volunteer is active in a cell when they have a standing
//! deposit in it; an activity counts once per cell however many volunteers served in
//! it. Service is attributed to the volunteer's registered region and the service date.

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Serialize, Serializer};

use crate::account::Transitions;
use crate::model::{decimal, Centi, Period, ReadModels};

/// One (region node, period) cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Volunteers who joined in the period (all time: every registered volunteer).
    pub registered: u32,
    /// Volunteers with at least one standing deposit in the period.
    pub active: u32,
    /// Distinct activities with at least one standing deposit in the period.
    pub activities: u32,
    /// Standing deposits.
    pub participations: u64,
    pub centi: Centi,
}

/// Most (region node, period) cells the index can address: slots are `u32`. A city
/// has ~1,450 nodes and ~55 periods in four years of service (~80 k cells). The count
/// is nodes × periods the log names; the fold cannot refuse an event (it is a fact
/// already recorded) and the ledger accepts any past service date, so this is the
/// index's addressing, asserted, as for interned names.
pub const INDEX_CELLS_MAX: usize = u32::MAX as usize;

/// Per activity in one cell, what keeps it counted in the cell's distinct activities:
/// in a month's cell its standing deposits; in a year's cell the months of the year
/// in which it has one; in the all-time cell the years. An activity counts in a cell
/// while its entry is there (non-zero), and a level is touched only when the level
/// below crosses zero, so a deposit into a month the activity already had costs one
/// lookup per node instead of three.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRefs(#[serde(with = "crate::snapshot::pairs")] pub FxHashMap<u32, u32>);

/// Cells in slots: a small map from (node, period) to a slot, a vector of cells and
/// one activity map per slot. Per deposit the fold does 12 lookups in the slot map
/// (~80 k entries at a city, hot in cache) and 4 to 12 in the slots' own activity maps
/// (cache misses; see [`ActivityRefs`]).
///
/// Before, the activity refs were one map keyed by (node, period, activity): 24 bytes
/// per entry, 34 M entries at 10 M events, the largest thing in memory (larger than
/// the deposit index). Now an entry is 8 bytes (activity, count) in its cell's map,
/// and the cell's key is stored once. Option not taken: cells in arrays indexed by
/// month per node, with no slot map: the ledger accepts any past service date, so the
/// span of months, and such arrays, have no bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIndex {
    /// (node, period) → slot in `cells` and `activity_refs`, assigned in log order.
    #[serde(with = "crate::snapshot::pairs")]
    slots: FxHashMap<(u32, Period), u32>,
    cells: Vec<Cell>,
    activity_refs: Vec<ActivityRefs>,
}

/// The index in its canonical (sorted) form, for the state digest, without building
/// it: serialised, it is the pair (every cell sorted by (node, period), every
/// (node, period, activity) count sorted by that key), in the bytes of
/// `(Vec<((u32, Period), Cell)>, Vec<((u32, Period, u32), u32)>)`, the flat lists
/// the digest used to hash. Only the slot keys (~80 k at a city) are sorted up front;
/// each cell's activity counts are sorted when the cell is written, so the largest
/// transient is one cell's counts instead of a list of all of them (34 M entries,
/// ~1 GB, at 10 M events). Keys are unique per cell, so sorting the cells, then the
/// counts within each, gives the flat list's order.
pub struct Canonical<'a> {
    index: &'a ServiceIndex,
    /// Every (node, period) with its slot, sorted by (node, period).
    order: Vec<((u32, Period), u32)>,
}

impl ServiceIndex {
    /// The cell of `node` in `period`, if anything ever touched it.
    pub fn cell(&self, node: u32, period: Period) -> Option<&Cell> {
        self.slots
            .get(&(node, period))
            .map(|&s| &self.cells[s as usize])
    }

    /// Every cell of `node`, in no particular order.
    pub fn cells_of(&self, node: u32) -> impl Iterator<Item = (Period, &Cell)> + '_ {
        self.slots
            .iter()
            .filter(move |((n, _), _)| *n == node)
            .map(|(&(_, p), &s)| (p, &self.cells[s as usize]))
    }

    /// The slot of (node, period), made if missing.
    fn slot(&mut self, node: u32, period: Period) -> usize {
        let next = self.cells.len();
        let slot = *self.slots.entry((node, period)).or_insert_with(|| {
            assert!(next < INDEX_CELLS_MAX, "fewer than 2^32 index cells");
            next as u32
        }) as usize;
        if slot == next {
            self.cells.push(Cell::default());
            self.activity_refs.push(ActivityRefs::default());
        }
        debug_assert_eq!(self.cells.len(), self.activity_refs.len());
        slot
    }

    pub(crate) fn on_registered(&mut self, lineage: &[u32], joined: NaiveDate) {
        for &n in lineage {
            for p in Period::of_day(joined) {
                let s = self.slot(n, p);
                self.cells[s].registered += 1;
            }
        }
    }

    pub(crate) fn on_deposit(
        &mut self,
        lineage: &[u32],
        day: NaiveDate,
        activity: u32,
        c: Centi,
        sign: i64,
        transitions: Transitions,
    ) {
        let periods = Period::of_day(day);
        for &n in lineage {
            let slots = periods.map(|p| self.slot(n, p));
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
            // Month, then year, then all time, each only if the one below crossed zero.
            for &s in slots.iter().rev() {
                if !self.count_activity(s, activity, sign) {
                    break;
                }
            }
        }
    }

    /// Count `activity` up (`sign` > 0) or down by one in slot `s`; true if it came into
    /// the cell or left it (which changes the cell's distinct count, and is a step for
    /// the period above).
    fn count_activity(&mut self, s: usize, activity: u32, sign: i64) -> bool {
        let refs = &mut self.activity_refs[s].0;
        let cell = &mut self.cells[s];
        if sign > 0 {
            let r = refs.entry(activity).or_default();
            *r += 1;
            if *r == 1 {
                cell.activities += 1;
                return true;
            }
        } else {
            let r = refs
                .get_mut(&activity)
                .expect("a standing deposit's activity is counted in its cells");
            *r -= 1;
            if *r == 0 {
                refs.remove(&activity);
                cell.activities -= 1;
                return true;
            }
        }
        false
    }

    /// How many (node, period, activity) counts are held (for memory figures).
    pub fn activity_ref_count(&self) -> usize {
        self.activity_refs.iter().map(|r| r.0.len()).sum()
    }

    /// The canonical form, for the state digest ([`Canonical`]).
    pub fn canonical(&self) -> Canonical<'_> {
        let mut order: Vec<((u32, Period), u32)> =
            self.slots.iter().map(|(&k, &s)| (k, s)).collect();
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
        let mut counts_len = size_of(&self.index.activity_ref_count());
        for &(key, slot) in &self.order {
            let counts = &self.index.activity_refs[slot as usize].0;
            counts_len += size_of(&key) * counts.len() as u64;
            counts_len += counts.iter().map(|e| size_of(&e)).sum::<u64>();
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

/// Every activity count in key order, as a sequence of `((node, period, activity),
/// count)`: cell by cell, each cell's counts sorted in one reused buffer.
struct Counts<'a>(&'a Canonical<'a>);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut seq = s.serialize_seq(Some(c.index.activity_ref_count()))?;
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for &((node, period), slot) in &c.order {
            counts.clear();
            counts.extend(
                c.index.activity_refs[slot as usize]
                    .0
                    .iter()
                    .map(|(&a, &n)| (a, n)),
            );
            counts.sort_unstable_by_key(|e| e.0);
            for &(activity, n) in &counts {
                seq.serialize_element(&((node, period, activity), n))?;
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
        let cell = |p| self.index.cell(node, p).copied().unwrap_or_default();
        let c = cell(period);
        let registered = match period {
            Period::All => c.registered,
            Period::Year(y) | Period::Month(y, _) => {
                // Cumulative to the period's end: the years before, plus this year's
                // months up to the period's last month.
                let last_month = match period {
                    Period::Month(_, m) => m,
                    _ => 12,
                };
                let earlier: u32 = self
                    .index
                    .cells_of(node)
                    .filter(|(p, _)| matches!(p, Period::Year(py) if *py < y))
                    .map(|(_, c)| c.registered)
                    .sum();
                let this_year: u32 = (1..=last_month)
                    .map(|m| cell(Period::Month(y, m)).registered)
                    .sum();
                earlier + this_year
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

    /// The flat sorted lists the digest hashed before [`Canonical`]: the reference.
    fn flat(ix: &ServiceIndex) -> Flat {
        let mut cells: Vec<((u32, Period), Cell)> = ix
            .slots
            .iter()
            .map(|(&k, &s)| (k, ix.cells[s as usize]))
            .collect();
        cells.sort_unstable_by_key(|e| e.0);
        let mut refs = Vec::new();
        for (&(n, p), &s) in &ix.slots {
            refs.extend(
                ix.activity_refs[s as usize]
                    .0
                    .iter()
                    .map(|(&a, &count)| ((n, p, a), count)),
            );
        }
        refs.sort_unstable_by_key(|e: &((u32, Period, u32), u32)| e.0);
        (cells, refs)
    }

    fn assert_streams_the_flat_bytes(ix: &ServiceIndex) {
        let canonical = ix.canonical();
        let bytes = postcard::to_stdvec(&canonical).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&flat(ix)).unwrap());
        assert_eq!(canonical.encoded_len(), bytes.len() as u64);
    }

    #[test]
    fn the_canonical_form_is_the_bytes_of_the_flat_sorted_lists() {
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
            let s = ix.slot(node, period);
            let cell = &mut ix.cells[s];
            cell.registered += 1;
            cell.participations += next();
            cell.centi -= next() as Centi;
            for _ in 0..next() % 20 {
                let activity = match next() % 2 {
                    0 => edges[next() as usize % edges.len()],
                    _ => next() as u32,
                };
                let count = edges[next() as usize % edges.len()].max(1);
                ix.activity_refs[s].0.insert(activity, count);
            }
        }
        assert!(ix.activity_ref_count() > 10_000);
        assert_streams_the_flat_bytes(&ix);
    }
}

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
use serde::{Deserialize, Serialize};

use crate::account::Transitions;
use crate::model::{decimal, sorted, Centi, Period, ReadModels};

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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIndex {
    #[serde(with = "crate::snapshot::pairs")]
    pub cells: FxHashMap<(u32, Period), Cell>,
    /// Standing deposits per (node, period, activity), for distinct activity counts.
    #[serde(with = "crate::snapshot::pairs")]
    pub activity_refs: FxHashMap<(u32, Period, u32), u32>,
}

/// The canonical (sorted) form, for digests.
pub type CanonicalIndex = (Vec<((u32, Period), Cell)>, Vec<((u32, Period, u32), u32)>);

impl ServiceIndex {
    pub(crate) fn on_registered(&mut self, lineage: &[u32], joined: NaiveDate) {
        for &n in lineage {
            for p in Period::of_day(joined) {
                self.cells.entry((n, p)).or_default().registered += 1;
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
        for &n in lineage {
            for (k, p) in Period::of_day(day).into_iter().enumerate() {
                let cell = self.cells.entry((n, p)).or_default();
                cell.centi += c;
                cell.participations = cell
                    .participations
                    .checked_add_signed(sign)
                    .expect("participations never go below zero");
                cell.active = cell
                    .active
                    .checked_add_signed(i32::from(transitions[k]))
                    .expect("active volunteers never go below zero");
                let key = (n, p, activity);
                let refs = self.activity_refs.entry(key).or_default();
                if sign > 0 {
                    *refs += 1;
                    if *refs == 1 {
                        cell.activities += 1;
                    }
                } else {
                    *refs -= 1;
                    if *refs == 0 {
                        self.activity_refs.remove(&key);
                        cell.activities -= 1;
                    }
                }
            }
        }
    }

    pub fn canonical(&self) -> CanonicalIndex {
        (sorted(&self.cells), sorted(&self.activity_refs))
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
        let cell = |p| {
            self.index
                .cells
                .get(&(node, p))
                .copied()
                .unwrap_or_default()
        };
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
                    .cells
                    .iter()
                    .filter(|((n, p), _)| *n == node && matches!(p, Period::Year(py) if *py < y))
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

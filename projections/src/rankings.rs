//! Rankings: top volunteers by hours for a region and period, projects by hours
//! donated and served, regions by hours.
//!
//! Volunteer rankings scan the volunteers registered under the region (their month
//! totals are in their rows) rather than keep a sorted index per (region, period):
//! a scan of a whole city (2.68 M rows) is tens of milliseconds, an administrator's
//! query, and it needs no memory beyond the rows. Ties are broken by account id, so
//! the order is total and the same on every machine.

use rust_decimal::Decimal;

use crate::model::{decimal, Centi, Period, ReadModels};

/// Most entries a ranking returns.
pub const RANKING_LIMIT_MAX: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranked {
    /// Account id or region path.
    pub id: String,
    pub hours: Decimal,
    /// Projects: hours served (spent with the project as counterparty).
    pub served: Decimal,
}

/// Why a ranking cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RankingError {
    #[error("region {0:?} has no registered volunteers or organisations; check the region code")]
    UnknownRegion(String),
}

impl ReadModels {
    /// Node of a region path; None (everything) for the empty path.
    pub(crate) fn region_node(&self, region: &str) -> Result<Option<u32>, RankingError> {
        if region.is_empty() {
            return Ok(None);
        }
        self.regions
            .paths
            .get(region)
            .map(Some)
            .ok_or_else(|| RankingError::UnknownRegion(region.to_owned()))
    }

    /// Top `limit` volunteers under `region` (a node path, "" for all) by standing
    /// hours with service dates in `period`. Volunteers with no hours are left out.
    pub fn top_volunteers(
        &self,
        region: &str,
        period: Period,
        limit: usize,
    ) -> Result<Vec<Ranked>, RankingError> {
        let node = self.region_node(region)?;
        let range = period.month_range();
        let mut scored: Vec<(Centi, u32)> = self
            .regions
            .members_under(node)
            .into_iter()
            .filter_map(|v| {
                let c = self.row(v).period_centi(range);
                (c > 0).then_some((c, v))
            })
            .collect();
        Ok(self.top(&mut scored, limit))
    }

    fn top(&self, scored: &mut [(Centi, u32)], limit: usize) -> Vec<Ranked> {
        let limit = limit.clamp(1, RANKING_LIMIT_MAX);
        let key = |&(c, v): &(Centi, u32)| (std::cmp::Reverse(c), self.accounts.name(v));
        if scored.len() > limit {
            scored.select_nth_unstable_by(limit - 1, |a, b| key(a).cmp(&key(b)));
        }
        let n = scored.len().min(limit);
        let top = &mut scored[..n];
        top.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        top.iter()
            .map(|&(c, v)| Ranked {
                id: self.accounts.name(v).to_owned(),
                hours: decimal(c),
                served: decimal(0),
            })
            .collect()
    }

    /// Top `limit` projects by hours donated (standing), then served; ties by id.
    pub fn top_projects(&self, limit: usize) -> Vec<Ranked> {
        let limit = limit.clamp(1, RANKING_LIMIT_MAX);
        let mut v: Vec<(Centi, Centi, &str)> = self
            .projects
            .iter()
            .map(|&p| {
                let r = self.row(p);
                (r.donated, r.served, self.accounts.name(p))
            })
            .filter(|(d, s, _)| *d > 0 || *s > 0)
            .collect();
        v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
        v.truncate(limit);
        v.into_iter()
            .map(|(d, s, id)| Ranked {
                id: id.to_owned(),
                hours: decimal(d),
                served: decimal(s),
            })
            .collect()
    }

    /// The child regions of `parent` ("" for the top level) by hours in `period`.
    pub fn top_regions(
        &self,
        parent: &str,
        period: Period,
        limit: usize,
    ) -> Result<Vec<Ranked>, RankingError> {
        let limit = limit.clamp(1, RANKING_LIMIT_MAX);
        let children = match self.region_node(parent)? {
            None => &self.regions.roots,
            Some(n) => &self.regions.nodes[n as usize].children,
        };
        let mut v: Vec<(Centi, &str)> = children
            .iter()
            .map(|&n| {
                let c = self.index.rolled_up(&self.regions.subtree(n), period).centi;
                (c, self.regions.path(n))
            })
            .filter(|(c, _)| *c > 0)
            .collect();
        v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        v.truncate(limit);
        Ok(v.into_iter()
            .map(|(c, id)| Ranked {
                id: id.to_owned(),
                hours: decimal(c),
                served: decimal(0),
            })
            .collect())
    }
}

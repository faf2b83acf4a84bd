//! Annual minimum: the volunteers of a region or an organisation with fewer than a
//! given number of hours in a calendar year (party and league members are expected to
//! give 20).
//!
//! Who is counted: volunteers of the scheme in the year (joined by the end of the year,
//! not closed before it began) who are
//! - in a region: registered under the node;
//! - of an organisation: with at least one standing deposit verified by it (the ledger
//!   has no membership roll; service is the evidence of membership). A volunteer who
//!   joined after the year, or had left before it, was not short in it, whichever
//!   scope asks.
//!
//! Hours are all their standing hours (credit and honour) with service dates in the
//! year, with whichever organisation.

use chrono::{FixedOffset, NaiveDate};
use rust_decimal::Decimal;

use crate::account::Kind;
use crate::model::{centi, day_number, decimal, Centi, ReadModels};
use crate::rankings::RankingError;

/// Most volunteers one answer lists; the total is always exact.
pub const ANNUAL_LIST_MAX: usize = 10_000;

/// Largest minimum that means anything: 24 hours a day (the per-day rule) for 366
/// days. Larger asks are refused rather than overflow the arithmetic.
pub const ANNUAL_MINIMUM_HOURS_MAX: i64 = 24 * 366;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    Region(&'a str),
    Organisation(&'a str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BelowMinimum {
    /// (account id, hours in the year), fewest hours first, ties by id.
    pub volunteers: Vec<(String, Decimal)>,
    /// How many volunteers are below the minimum (may exceed the list).
    pub total: usize,
    /// How many volunteers were considered.
    pub considered: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnualError {
    #[error(transparent)]
    Region(#[from] RankingError),
    #[error("organisation {0:?} is not a registered organisation")]
    UnknownOrganisation(String),
    /// Registered, as another kind of account.
    #[error("{id:?} is not an organisation (it is registered as: {kind})")]
    NotAnOrganisation { id: String, kind: &'static str },
    #[error("year {0} is not a calendar year the ledger can hold")]
    Year(i32),
    #[error("minimum {0} hours is outside 0 to {ANNUAL_MINIMUM_HOURS_MAX}")]
    Minimum(Decimal),
}

impl ReadModels {
    /// `calendar` is the ledger's (`LedgerConfig::calendar_offset`): years are its
    /// years, as service dates are its days.
    pub fn below_annual_minimum(
        &self,
        scope: Scope<'_>,
        year: i32,
        calendar: FixedOffset,
        minimum: Decimal,
        limit: usize,
    ) -> Result<BelowMinimum, AnnualError> {
        self.below_annual_minimum_within(scope, None, year, calendar, minimum, limit)
    }

    /// [`ReadModels::below_annual_minimum`] of the volunteers registered under one of
    /// the region paths `within` only (`None`: all). An organisation may serve
    /// volunteers of any region, and a platform asking about its organisation must
    /// not learn the yearly hours of volunteers outside its own regions (a security
    /// probe did, by depositing an hour for one through its organisation). A path the
    /// read models do not know holds nobody yet.
    pub fn below_annual_minimum_within(
        &self,
        scope: Scope<'_>,
        within: Option<&[String]>,
        year: i32,
        calendar: FixedOffset,
        minimum: Decimal,
        limit: usize,
    ) -> Result<BelowMinimum, AnnualError> {
        let within_nodes: Option<Vec<u32>> = within.map(|paths| {
            paths
                .iter()
                .filter_map(|p| self.regions.paths.get(p))
                .collect()
        });
        let visible = |v: u32| match &within_nodes {
            None => true,
            Some(nodes) => {
                let region = self.row(v).region;
                region != crate::model::NO_REGION
                    && self.regions.lineage(region).any(|n| nodes.contains(&n))
            }
        };
        let start = NaiveDate::from_ymd_opt(year, 1, 1).ok_or(AnnualError::Year(year))?;
        let end = NaiveDate::from_ymd_opt(year, 12, 31).ok_or(AnnualError::Year(year))?;
        // The instant the year began in the ledger's calendar, for closures (instants).
        let began = start
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(calendar).single())
            .ok_or(AnnualError::Year(year))?
            .timestamp();
        let end = day_number(end);
        if minimum < Decimal::ZERO || minimum > Decimal::from(ANNUAL_MINIMUM_HOURS_MAX) {
            return Err(AnnualError::Minimum(minimum));
        }
        let min: Centi =
            centi(minimum.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::AwayFromZero));
        // A volunteer of the scheme in the year: joined by its end, not closed before it.
        let in_year = |v: u32| {
            let row = self.row(v);
            row.joined_on <= end && !(row.closed && row.closed_at < began)
        };
        let candidates: Vec<u32> = match scope {
            Scope::Region(r) => {
                let node = self.region_node(r)?;
                self.regions
                    .members_under(node)
                    .into_iter()
                    .filter(|&v| in_year(v) && visible(v))
                    .collect()
            }
            Scope::Organisation(o) => {
                let org = self
                    .account_index(o)
                    .filter(|&i| self.row(i).kind != Kind::Unregistered)
                    .ok_or_else(|| AnnualError::UnknownOrganisation(o.to_owned()))?;
                let kind = self.row(org).kind;
                if kind != Kind::Organisation {
                    return Err(AnnualError::NotAnOrganisation {
                        id: o.to_owned(),
                        kind: kind.name(),
                    });
                }
                (0..u32::try_from(self.rows.len()).expect("fewer than 2^32 accounts"))
                    .filter(|&v| {
                        let row = self.row(v);
                        row.kind == Kind::Volunteer
                            && row.orgs.binary_search_by(|e| e.0.cmp(&org)).is_ok()
                            && in_year(v)
                            && visible(v)
                    })
                    .collect()
            }
        };
        let considered = candidates.len();
        let mut below: Vec<(Centi, &str)> = candidates
            .into_iter()
            .map(|v| (self.row(v).year_centi(year), self.accounts.name(v)))
            .filter(|(c, _)| *c < min)
            .collect();
        below.sort_unstable();
        let total = below.len();
        below.truncate(limit.clamp(1, ANNUAL_LIST_MAX));
        Ok(BelowMinimum {
            volunteers: below
                .into_iter()
                .map(|(c, id)| (id.to_owned(), decimal(c)))
                .collect(),
            total,
            considered,
        })
    }
}

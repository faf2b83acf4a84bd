//! The demo city: its region tree, organisations, public projects, merchants, partner
//! banks and volunteers, all derived from the seed.
//!
//! Modelled on the figures in `shared/domain.md`: Hangzhou's thirteen districts, towns
//! and communities under them (the four-level region tree), about one organisation per
//! 200 volunteers (Cixi: 1,332 for 385 k; Yinzhou: 1,300 for 220 k), a merchant scheme
//! of a few dozen shops, and a handful of public projects that receive donations.
//!
//! Volunteers are never held in memory: [`City::volunteer`] derives volunteer `i`'s
//! profile from its own random stream, so a 2.68 M-volunteer city costs no more memory
//! here than a small one, and any part of the generator can ask about any volunteer.

use chrono::{Datelike, NaiveDate};
use rand::Rng;

use super::{rng, DemoConfig, STREAM_CITY, STREAM_PROFILE_BASE};

/// The city the region codes are rooted at.
pub const CITY: &str = "hangzhou";

/// Hangzhou's districts and county-level cities: the second level of the region tree.
pub const DISTRICTS: [&str; 13] = [
    "shangcheng",
    "gongshu",
    "xihu",
    "binjiang",
    "xiaoshan",
    "yuhang",
    "linping",
    "qiantang",
    "fuyang",
    "linan",
    "tonglu",
    "chunan",
    "jiande",
];

/// Service categories, one per organisation (what the bulletins list).
pub const CATEGORIES: [&str; 10] = [
    "elderly-care",
    "river-patrol",
    "traffic-guidance",
    "epidemic-prevention",
    "blood-drive",
    "community-cleanup",
    "library-service",
    "disability-support",
    "tutoring",
    "environmental",
];

/// The partner banks that read credit reports under consent. The first is the bank of
/// the demo access file's bank caller (`run::DEMO_BANK`); a second one makes consents
/// per bank visible (a bank is served only under a consent to itself). Fixed rather
/// than scaled: a city works with a handful of partner banks whatever its size.
pub const BANKS: [&str; 2] = ["bank-demo", "bank-qiantang-rural"];

/// Volunteers per organisation: Cixi has 1,332 organisations for 385 k volunteers
/// (~290), Yinzhou 1,300 for 220 k (~170).
const VOLUNTEERS_PER_ORGANISATION: u32 = 200;
/// Fewest organisations, so a tiny city still has one in most districts.
const ORGANISATIONS_MIN: u32 = 13;
/// Volunteers per community (Hangzhou: ~2.68 M volunteers in roughly 3,000
/// communities and villages).
const VOLUNTEERS_PER_COMMUNITY: u32 = 900;
/// Towns (streets) per district, a range the seed picks from.
const TOWNS_PER_DISTRICT: (u32, u32) = (4, 12);
/// Bounds on communities per town, so small and huge cities both keep a real tree.
const COMMUNITIES_PER_TOWN: (u32, u32) = (2, 60);
/// Merchants in the points scheme: one city had 49 shops, a pilot street 20.
const MERCHANTS: (u32, u32) = (5, 49);
/// Volunteers per merchant before the cap above.
const VOLUNTEERS_PER_MERCHANT: u32 = 2_000;
/// Public projects that receive donated hours.
const PROJECTS: (u32, u32) = (3, 12);
/// Volunteers per public project before the cap above.
const VOLUNTEERS_PER_PROJECT: u32 = 50_000;
/// Share of volunteers who are party or league members (expected to give at least 20
/// hours a year), in percent.
const MEMBER_PERCENT: u32 = 20;
/// Share of volunteers who join during the demo year, in percent; the rest registered
/// in the five years before.
const JOINS_DURING_YEAR_PERCENT: u32 = 12;
/// How many years before the demo year the earliest volunteers joined.
const EARLIEST_JOIN_YEARS: i32 = 5;

#[derive(Clone, Debug)]
pub struct Town {
    pub code: String,
    /// Index into `City::communities` of the town's first community.
    pub first_community: usize,
    pub communities: usize,
}

#[derive(Clone, Debug)]
pub struct Organisation {
    pub id: String,
    /// A district or a town: organisations register at the level they serve.
    pub region: String,
    pub district: usize,
    pub category: &'static str,
}

/// One volunteer, derived from the seed on demand.
#[derive(Clone, Debug)]
pub struct Volunteer {
    pub index: u32,
    pub id: String,
    pub region: String,
    pub district: usize,
    pub joined_on: NaiveDate,
    /// Joined during the demo year: registered on that day, not at the start.
    pub joins_during_year: bool,
    /// A party or league member, expected to serve at least 20 hours a year.
    pub member: bool,
}

/// The region tree and every account but the volunteers.
#[derive(Clone, Debug)]
pub struct City {
    pub seed: u64,
    pub volunteers: u32,
    pub year: i32,
    /// Towns by district.
    pub towns: Vec<Vec<Town>>,
    /// Community region codes (four levels), grouped by town.
    pub communities: Vec<String>,
    /// District of each community.
    community_district: Vec<usize>,
    pub organisations: Vec<Organisation>,
    /// Organisation indices by district.
    pub organisations_by_district: Vec<Vec<u32>>,
    pub projects: Vec<String>,
    pub merchants: Vec<String>,
    pub banks: Vec<String>,
}

fn scaled(n: u32, per: u32, (min, max): (u32, u32)) -> u32 {
    (n / per).clamp(min, max)
}

impl City {
    pub fn generate(config: &DemoConfig) -> Self {
        let mut r = rng(config.seed, STREAM_CITY);
        let mut towns = Vec::with_capacity(DISTRICTS.len());
        let mut communities = Vec::new();
        let mut community_district = Vec::new();
        let town_counts: Vec<u32> = DISTRICTS
            .iter()
            .map(|_| r.random_range(TOWNS_PER_DISTRICT.0..=TOWNS_PER_DISTRICT.1))
            .collect();
        let towns_total: u32 = town_counts.iter().sum();
        let per_town = scaled(
            config.volunteers,
            VOLUNTEERS_PER_COMMUNITY * towns_total.max(1),
            COMMUNITIES_PER_TOWN,
        );
        for (d, district) in DISTRICTS.iter().enumerate() {
            let mut ts = Vec::new();
            for t in 0..town_counts[d] {
                let code = format!("{CITY}/{district}/street-{:02}", t + 1);
                // Some towns are larger than others.
                let n =
                    r.random_range(per_town.div_ceil(2).max(1)..=per_town + per_town / 2) as usize;
                let first = communities.len();
                for c in 0..n {
                    communities.push(format!("{code}/community-{:02}", c + 1));
                    community_district.push(d);
                }
                ts.push(Town {
                    code,
                    first_community: first,
                    communities: n,
                });
            }
            towns.push(ts);
        }

        let n_orgs = (config.volunteers / VOLUNTEERS_PER_ORGANISATION).max(ORGANISATIONS_MIN);
        let mut organisations = Vec::with_capacity(n_orgs as usize);
        let mut organisations_by_district = vec![Vec::new(); DISTRICTS.len()];
        for k in 0..n_orgs {
            let district = k as usize % DISTRICTS.len();
            let category = CATEGORIES[r.random_range(0..CATEGORIES.len())];
            // A third serve the whole district; the rest one town.
            let region = if r.random_ratio(1, 3) {
                format!("{CITY}/{}", DISTRICTS[district])
            } else {
                let ts = &towns[district];
                ts[r.random_range(0..ts.len())].code.clone()
            };
            organisations_by_district[district].push(k);
            organisations.push(Organisation {
                id: format!("org-{}-{:05}", DISTRICTS[district], k + 1),
                region,
                district,
                category,
            });
        }
        let projects = (0..scaled(config.volunteers, VOLUNTEERS_PER_PROJECT, PROJECTS))
            .map(|k| format!("project-{:03}", k + 1))
            .collect();
        let merchants = (0..scaled(config.volunteers, VOLUNTEERS_PER_MERCHANT, MERCHANTS))
            .map(|k| format!("merchant-{:03}", k + 1))
            .collect();
        Self {
            seed: config.seed,
            volunteers: config.volunteers,
            year: config.year,
            towns,
            communities,
            community_district,
            organisations,
            organisations_by_district,
            projects,
            merchants,
            banks: BANKS.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    /// The id of volunteer `index` (0-based), without deriving the rest of the profile.
    pub fn volunteer_id(index: u32) -> String {
        format!("v-{:07}", index + 1)
    }

    /// Volunteer `index`'s profile, from its own random stream.
    pub fn volunteer(&self, index: u32) -> Volunteer {
        let mut r = rng(self.seed, STREAM_PROFILE_BASE + u64::from(index));
        let c = r.random_range(0..self.communities.len());
        let joins_during_year = r.random_range(0..100) < JOINS_DURING_YEAR_PERCENT;
        let year_start = NaiveDate::from_ymd_opt(self.year, 1, 1).expect("a valid year");
        let joined_on = if joins_during_year {
            // Late enough in the year to still have a few months to serve.
            year_start + chrono::Days::new(r.random_range(0..300))
        } else {
            let first = NaiveDate::from_ymd_opt(self.year - EARLIEST_JOIN_YEARS, 1, 1)
                .expect("a valid year");
            let span = (year_start - first).num_days() as u64;
            first + chrono::Days::new(r.random_range(0..span))
        };
        Volunteer {
            index,
            id: Self::volunteer_id(index),
            region: self.communities[c].clone(),
            district: self.community_district[c],
            joined_on,
            joins_during_year,
            member: r.random_range(0..100) < MEMBER_PERCENT,
        }
    }

    /// The day of the demo year (0-based) a date falls on.
    pub fn day_of_year(&self, date: NaiveDate) -> u32 {
        debug_assert_eq!(date.year(), self.year);
        date.ordinal0()
    }
}

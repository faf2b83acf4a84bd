//! The demo city: a deterministic, seeded generator of a realistic city's year of
//! volunteer service, written through the ledger's own command handler.
//!
//! # Layout
//! - [`city`]: the region tree (city → district → town → community), organisations,
//!   public projects, merchants, and volunteers derived on demand from the seed;
//! - [`activity`]: one volunteer's year — participations with a heavy-tailed count,
//!   seasonal days (peaks around 5 March and 5 December), honour hours, spends,
//!   exchanges, family transfers, donations, corrections, no-shows, ratings, closures,
//!   consents to banks with their inquiries, redemptions at merchants — with the rules
//!   kept by construction;
//! - [`scenario`]: the [`scenario::Part`]s a run generates, the compact
//!   [`scenario::Step`] and how it becomes a ledger `Command`;
//! - [`staging`]: the log the seeder's handler writes to, which forwards its appends to
//!   the durable log in the same order, hundreds at a time;
//! - this file: [`seed`], which generates every step, sorts them by time and runs them
//!   one after another through [`Handler::execute`] with a [`FixedClock`] set to each
//!   step's moment.
//!
//! # Determinism
//! Every random choice comes from ChaCha8 (`rand_chacha`, whose output is fixed by its
//! specification, unlike `StdRng`), keyed by the seed, one stream per purpose and per
//! volunteer. Request ids, event ids and instants derive from the steps, and the steps
//! run in one total order ([`scenario::Step::key`]), one at a time. So the log — and
//! its head hash — depends only on the seed, the size and the year.
//!
//! Option not taken: running volunteers' commands concurrently. The order in which
//! concurrent appends reach the log would vary from run to run, and with it the head
//! hash. Instead commands are decided one at a time against a staging log
//! ([`staging`]) that forwards them to the durable log in the same order with many in
//! flight, so the speed is the handler's CPU, not one fsync per command.
//!
//! # Every rule is enforced
//! The steps go through the same handler the gRPC API uses. A rejection means the
//! generator built a step the rules refuse — a generator bug — and is counted by
//! reason in [`SeedReport::rejections`] (the tests require zero).

pub mod activity;
pub mod city;
pub(crate) mod run;
pub mod scenario;
pub mod staging;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use indicatif::{ProgressBar, ProgressStyle};
use ledger_core::app::{CommandError, FixedClock, Handler, LedgerConfig, ReceiptMark};
use ledger_core::domain::commands::Command;
use ledger_core::domain::events::PayloadEncoding;
use ledger_core::log::{EventId, EventLog, ReadError, ReadFrom};
use projections::StarPolicies;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use run::{banner, seed_and_serve, seed_only, DemoRunError};

use activity::{Calendar, Year};
use city::City;
use scenario::{city_steps, Action, Scenario, Step, StepError};
use staging::StagingLog;

use crate::partners::banks::{prepare_report, PrepareReportError};

/// The year the demo city lives through. Fixed so that a seed always gives the same
/// log, and in the past so that every service date is before today.
pub const DEMO_YEAR: i32 = 2025;
/// Volunteers in the default city: seeds in well under a minute on two cores
/// (release build), large enough for skew and seasons to show.
pub const DEFAULT_VOLUNTEERS: u32 = 20_000;
/// The largest city the generator accepts: Hangzhou's 2.68 M registered volunteers.
/// Beyond it request ids and step numbers still fit, but seeding takes hours.
pub const VOLUNTEERS_MAX: u32 = 2_680_000;
/// The default seed.
pub const DEFAULT_SEED: u64 = 2018;
/// The demo ledger's calendar: China Standard Time, UTC+8.
pub const DEMO_CALENDAR_OFFSET_SECS: i32 = 8 * 3600;

/// Folded account states the seeder's handler keeps. The seeder walks a whole city's
/// year in time order, so a volunteer comes back days after their last step, hundreds
/// of thousands of commands later; a miss re-reads and re-folds the volunteer's whole
/// stream. 262,144 states (~1 GiB for a city's typical volunteers) hold the busy
/// volunteers and every project between their steps; the default server cache
/// (`STATE_CACHE_ACCOUNTS_MAX`) is sized for an hour of live traffic instead.
pub const SEED_STATE_CACHE_ACCOUNTS_MAX: usize = 262_144;

/// Random stream of the city (regions, organisations).
const STREAM_CITY: u64 = 1;
/// First random stream of volunteer profiles (one per volunteer).
const STREAM_PROFILE_BASE: u64 = 1 << 32;
/// First random stream of volunteers' years (one per volunteer).
const STREAM_ACTIVITY_BASE: u64 = 2 << 32;

/// A ChaCha8 generator for `stream` under `seed`: the key is derived from the seed
/// with BLAKE3, so nearby seeds give unrelated cities.
pub(crate) fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut key = blake3::Hasher::new();
    key.update(b"timebank demo city v1");
    key.update(&seed.to_le_bytes());
    let mut r = ChaCha8Rng::from_seed(*key.finalize().as_bytes());
    r.set_stream(stream);
    r
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub seed: u64,
    pub volunteers: u32,
    pub year: i32,
    pub scenario: Scenario,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// How the city's events are stored (and, for `demo`, the ones served later).
    pub payload_encoding: PayloadEncoding,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            volunteers: DEFAULT_VOLUNTEERS,
            year: DEMO_YEAR,
            scenario: Scenario::default(),
            progress: true,
            payload_encoding: PayloadEncoding::Json,
        }
    }
}

/// The ledger configuration the demo city is written (and served) with: the default
/// exchange rate and a UTC+8 calendar.
pub fn ledger_config() -> LedgerConfig {
    LedgerConfig {
        calendar_offset: FixedOffset::east_opt(DEMO_CALENDAR_OFFSET_SECS)
            .expect("UTC+8 is a valid offset"),
        ..LedgerConfig::default()
    }
}

/// Why seeding stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the event log already holds {events} events; seed only into an empty data directory (or start `demo` on it, which serves a log it seeded as it is)")]
    NotEmpty { events: u64 },
    #[error("volunteers must be between 1 and {VOLUNTEERS_MAX}, got {0}")]
    Size(u32),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("the ledger failed while seeding: {0}; the data directory holds a partial city: delete it and seed again")]
    Command(#[from] CommandError),
    #[error("reading the event log failed: {0}")]
    Read(#[from] ReadError),
    #[error("preparing a demo bank inquiry's credit report failed: {0}")]
    Report(#[from] PrepareReportError),
}

/// Accounts worth calling with grpcurl after seeding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// The volunteer who served most (open, with credit hours to spend).
    pub volunteer: String,
    /// An organisation that volunteer served with.
    pub organisation: String,
    pub project: String,
    pub merchant: String,
    /// A volunteer with a consent to [`run::DEMO_BANK`] for
    /// [`scenario::CONSENT_PURPOSE`] that is current at the end of the year and for a
    /// year after (the sample volunteer; `Year::sample_consent`), with two inquiries.
    pub consenting_volunteer: String,
    /// The bank of that consent.
    pub bank: String,
}

/// What a seeding run did.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    pub steps: u64,
    /// Steps executed, by kind.
    pub executed: BTreeMap<&'static str, u64>,
    /// Steps the ledger refused, by reason: generator bugs, zero in a correct build.
    pub rejections: BTreeMap<&'static str, u64>,
    /// The first refused step and why, to debug the generator.
    pub first_rejection: Option<String>,
    pub events: u64,
    pub elapsed: Duration,
    pub sample: Sample,
    /// Where every receipt is known delivered when seeding ends: the last command's
    /// event (each receipt is delivered right after its transaction, one command at a
    /// time), or the end of a catch-up. Saved as the receipts checkpoint, so the first
    /// `serve` does not read the whole city for missing receipts.
    pub receipts_mark: Option<ReceiptMark>,
}

impl SeedReport {
    pub fn rejected(&self) -> u64 {
        self.rejections.values().sum()
    }

    /// A few lines for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "seeded {} steps into {} events in {:.1} s ({:.0} commands/s)\n",
            self.steps,
            self.events,
            self.elapsed.as_secs_f64(),
            self.steps as f64 / self.elapsed.as_secs_f64().max(1e-9)
        );
        for (kind, n) in &self.executed {
            out.push_str(&format!("  {kind:<24} {n:>9}\n"));
        }
        if !self.rejections.is_empty() {
            out.push_str(&format!(
                "  REFUSED (generator bugs): {:?}; first: {}\n",
                self.rejections,
                self.first_rejection.as_deref().unwrap_or("")
            ));
        }
        out
    }
}

/// Every step of the city's year, in the order they run, and the sample accounts.
pub fn generate(config: &DemoConfig) -> Result<(City, Vec<Step>, Sample), DemoError> {
    if config.volunteers == 0 || config.volunteers > VOLUNTEERS_MAX {
        return Err(DemoError::Size(config.volunteers));
    }
    let city = City::generate(config);
    let year = Year::new(&city, &config.scenario, DEMO_CALENDAR_OFFSET_SECS);
    let mut steps = Vec::new();
    city_steps(&city, &year.calendar, &mut steps);
    let mut busiest: Option<(usize, u32, u32)> = None;
    let mut mine = Vec::new();
    for i in 0..city.volunteers {
        mine.clear();
        year.volunteer_steps(&city.volunteer(i), &mut mine);
        let credit: Vec<u32> = mine
            .iter()
            .filter_map(|s| match s.action {
                Action::Deposit(d) if !d.honour => Some(d.organisation),
                _ => None,
            })
            .collect();
        let closes = mine.iter().any(|s| s.action == Action::Close);
        if !closes && busiest.is_none_or(|b| credit.len() > b.0) {
            if let Some(&org) = credit.first() {
                busiest = Some((credit.len(), i, org));
            }
        }
        steps.extend_from_slice(&mine);
    }
    // The sample volunteer consents to the demo bank at the end of the year.
    let consenting = busiest.map_or(0, |b| b.1);
    steps.retain(|s| !(s.owner == consenting && s.action.is_consent()));
    if config.scenario.has(scenario::Part::Consents) {
        steps.extend(year.sample_consent(consenting));
    }
    steps.sort_unstable_by_key(Step::key);
    let sample = Sample {
        volunteer: busiest.map_or_else(|| City::volunteer_id(0), |b| City::volunteer_id(b.1)),
        organisation: city.organisations[busiest.map_or(0, |b| b.2) as usize]
            .id
            .clone(),
        project: city.projects[0].clone(),
        merchant: city.merchants[0].clone(),
        consenting_volunteer: City::volunteer_id(consenting),
        bank: city.banks[0].clone(),
    };
    Ok((city, steps, sample))
}

/// The caller name a seeded inquiry records: the demo access file's bank caller for
/// its bank (so the demo's history reads like the live calls), a loan desk for others.
fn inquiry_caller(bank: &str) -> String {
    if bank == run::DEMO_BANK {
        run::DEMO_BANK_CALLER.to_owned()
    } else {
        format!("{bank}-loan-desk")
    }
}

/// Generate the city and write it into `log`, which must be empty.
pub async fn seed(log: Arc<dyn EventLog>, config: &DemoConfig) -> Result<SeedReport, DemoError> {
    if let Some(head) = log.head().await? {
        return Err(DemoError::NotEmpty {
            events: head.commit() + 1,
        });
    }
    let started = Instant::now();
    let (city, steps, sample) = generate(config)?;
    let calendar = Calendar::new(city.year, DEMO_CALENDAR_OFFSET_SECS);
    let clock = Arc::new(FixedClock::new(Calendar::instant(calendar.at(0, 0))));
    let staging = Arc::new(StagingLog::new(log.clone(), 0));
    let handler = Handler::new(
        staging.clone() as Arc<dyn EventLog>,
        clock.clone(),
        LedgerConfig {
            payload_encoding: config.payload_encoding,
            ..ledger_config()
        },
    )
    .with_state_cache_accounts_max(SEED_STATE_CACHE_ACCOUNTS_MAX);

    let policies = StarPolicies::default();
    let bar = if config.progress {
        let bar = ProgressBar::new(steps.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "seeding the demo city {bar:40} {pos}/{len} commands ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut report = SeedReport {
        steps: steps.len() as u64,
        sample,
        ..SeedReport::default()
    };
    // The last command that appended, for the receipts mark (built once, at the end).
    let mut last_executed = None;
    for step in &steps {
        clock.set(Calendar::instant(step.at));
        let mut command = step.command(&city, &calendar)?;
        if let Command::ServeCreditReport(c) = &mut command {
            // Computed here, from the volunteer's stream as it is at this step, the way
            // the Banks service computes it (see `scenario`).
            c.served = prepare_report(
                staging.as_ref(),
                &c.volunteer,
                Calendar::instant(step.at),
                handler.config().calendar_offset,
                policies.default_policy(),
                &inquiry_caller(c.bank.as_str()),
            )
            .await?;
        }
        match handler.execute(&command).await {
            Ok(outcome) => {
                *report.executed.entry(step.action.name()).or_default() += 1;
                last_executed = Some((step, outcome));
            }
            Err(CommandError::Rejected(r)) => {
                *report.rejections.entry(r.reason()).or_default() += 1;
                report
                    .first_rejection
                    .get_or_insert_with(|| format!("{step:?}: {r}"));
            }
            Err(e) => return Err(e.into()),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some((step, outcome)) = last_executed {
        report.receipts_mark = Some(ReceiptMark {
            position: outcome.position,
            id: EventId(outcome.transaction.0),
            stream: step.command(&city, &calendar)?.target().stream(),
            version: outcome.stream_version,
        });
    }
    if handler.take_receipts_pending() {
        let caught_up = handler.deliver_receipts(ReadFrom::Start).await?;
        report.receipts_mark = caught_up.last;
    }
    staging
        .finish()
        .await
        .map_err(|e| CommandError::LogUnavailable(e.to_string()))?;
    report.events = log.head().await?.map_or(0, |p| p.commit() + 1);
    report.elapsed = started.elapsed();
    Ok(report)
}

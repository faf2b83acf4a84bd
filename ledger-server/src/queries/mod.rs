//! `timebank.v1.LedgerQueries`: the read side. Answers come from the projections'
//! read models (balances, star levels, rankings, the service index, annual minimums)
//! or, for the credit report and transaction history, from the account's own stream.
//!
//! Freshness: a request's `min_position` is waited for (up to
//! [`QUERY_FRESHNESS_WAIT_MS_MAX`]) before answering; past the bound the answer is
//! `UNAVAILABLE` / `NOT_CAUGHT_UP` with the checkpoint reached. UNAVAILABLE rather
//! than FAILED_PRECONDITION because nothing is wrong with the request: the same
//! request succeeds a moment later, and gRPC clients retry UNAVAILABLE by default.
//!
//! Failures become statuses in `crate::status::query_status`, like commands'.

pub mod convert;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, FixedOffset};
use ledger_core::app::Clock;
use ledger_core::app::Stamps;
use ledger_core::domain::account::AccountId;
use ledger_core::domain::Rejection;
use ledger_core::log::{EventLog, Position, ReadError};
use projections::annual::{AnnualError, Scope};
use projections::credit::{self, CreditError};
use projections::rankings::RankingError;
use projections::{
    NotCaughtUp, ProjectionConfig, Projections, StarPolicies, QUERY_FRESHNESS_WAIT_MS_MAX,
};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::authz::{self, Caller, Role, RoleKind};
use crate::pb;
use crate::status::{query_status, Described};

/// Default and largest page of `ListTransactions`.
pub const TRANSACTIONS_PAGE_DEFAULT: u32 = 50;
/// A page is one stream read; 500 keeps a response under ~200 KiB.
pub const TRANSACTIONS_PAGE_MAX: u32 = 500;
/// Default length of a ranking.
pub const RANKING_LIMIT_DEFAULT: u32 = 10;
/// Default length of an annual-minimum list.
pub const ANNUAL_LIMIT_DEFAULT: u32 = 100;
/// The members' expectation: 20 hours a year.
pub const ANNUAL_MINIMUM_DEFAULT_HOURS: i64 = 20;

/// What the query side runs with.
#[derive(Clone, Debug, Default)]
pub struct QueryConfig {
    /// Where snapshots go and how often (none by default: tests and embedders).
    pub projections: ProjectionConfig,
    /// Star policies; the default one is used in account views and credit reports.
    pub star_policies: StarPolicies,
    /// How the `timebank_projection_lag_events` gauge counts: by default by reading
    /// ahead (right on any store); `Sequence` for a densely numbered log (embedded).
    pub lag_counting: projections::LagCounting,
    /// The partner services' configuration (the redemption token key). Here because
    /// the partner services are built on the query side's read models.
    pub partners: crate::partners::PartnerConfig,
}

/// The star-policy flags of `serve` and `demo`, flattened into both. Parsed here, not
/// in `main.rs`, so the binary's body stays a list of subcommands.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct StarPolicyArgs {
    /// A star-level policy: a version name and the lifetime hours for 1 to 5 stars,
    /// strictly increasing, at most two decimal places, e.g.
    /// `county-2026=50,150,300,600,1000`. Repeatable. `national-2024`
    /// (100,300,600,1000,1500) is always configured; a version given twice must have
    /// the same thresholds.
    #[arg(long = "star-policy", value_name = "NAME=T1,T2,T3,T4,T5")]
    pub star_policy: Vec<projections::StarPolicy>,
    /// The policy used when a request names none (`GetAccount`, `GetCreditReport`,
    /// `GetStarLevel` without `policy_version`). Default: `national-2024`.
    #[arg(long, value_name = "NAME")]
    pub default_star_policy: Option<String>,
}

impl StarPolicyArgs {
    /// The configured policies, or why they are not a valid set (a version defined
    /// twice differently, an unknown default).
    pub fn policies(&self) -> Result<StarPolicies, projections::star::PolicyError> {
        StarPolicies::configured(
            self.star_policy.iter().cloned(),
            self.default_star_policy.as_deref(),
        )
    }
}

/// What `ledger-server rebuild` did.
#[derive(Clone, Debug)]
pub struct RebuildReport {
    pub events: u64,
    pub checkpoint: Option<Position>,
    /// [`projections::ReadModels::digest`]: equal digests, equal state.
    pub digest: String,
    pub snapshot: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// `rebuild` opened the log as `serve` does, which makes an empty one where none
    /// is: given the log's own directory or a typo, it "rebuilt" nothing, exit 0, and
    /// left an empty ledger inside the real log (operator's probe).
    #[error(transparent)]
    NoLog(#[from] crate::NoLog),
    #[error(transparent)]
    Open(#[from] crate::ServeError),
    #[error(transparent)]
    Projection(#[from] projections::RuntimeError),
}

/// Rebuild the read models of the log in `data_dir` from position zero and write a
/// fresh snapshot to `data_dir/projections/` (the server must be stopped: the log is
/// opened exclusively).
pub async fn rebuild(data_dir: &Path) -> Result<RebuildReport, RebuildError> {
    crate::require_log(data_dir)?;
    let dir = data_dir.to_owned();
    let log = tokio::task::spawn_blocking(move || crate::open_log(&dir))
        .await
        .map_err(|e| crate::ServeError::Blocking(e.to_string()))??;
    let snapshot = data_dir.join(projections::runtime::PROJECTIONS_DIR);
    let result = projections::rebuild(&log, Some(&snapshot)).await;
    let closing = log.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    let models = result?;
    Ok(RebuildReport {
        events: models.events,
        checkpoint: models.checkpoint,
        digest: models.digest(),
        snapshot: snapshot.join(projections::snapshot::SNAPSHOT_FILE),
    })
}

/// Most characters of a caller's text quoted back in an error message. A status
/// message travels in HTTP/2 headers, which clients cap (gRPC C-core at 8 KiB): a
/// 4,000-character version quoted whole turned the answer into a transport error.
pub const ECHOED_CHARS_MAX: usize = 64;

/// `text` as an error message quotes it: at most [`ECHOED_CHARS_MAX`] characters.
fn echoed(text: &str) -> String {
    match text.char_indices().nth(ECHOED_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The kind of account a query is about ([`QueryError::WrongKind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Volunteer,
    Organisation,
    Merchant,
}

impl Wanted {
    pub fn name(self) -> &'static str {
        match self {
            Self::Volunteer => "volunteer",
            Self::Organisation => "organisation",
            Self::Merchant => "merchant",
        }
    }
}

/// Why a query was not answered. Each variant says what the caller can do.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Input(Rejection),
    #[error(transparent)]
    NotCaughtUp(NotCaughtUp),
    /// Commands stamped at or before the asked `as_of` are still being appended after
    /// `SETTLE_WAIT_MS_MAX`: answering now could be contradicted by a later ask.
    #[error("commands recorded at or before as_of {0} are still being written after {SETTLE_WAIT_MS_MAX} ms; retry shortly, or ask for an earlier as_of")]
    NotSettled(String),
    #[error("account {0} is not registered (as of the read models' checkpoint); check the id, or pass the registration's position as min_position")]
    UnknownAccount(String),
    /// As [`QueryError::UnknownAccount`], found from the log itself (the account's
    /// stream is empty) rather than from the read models: no `min_position` would
    /// change the answer, so the message offers none (a request may not even have one).
    #[error("account {0} is not registered: the log holds nothing for it; check the id")]
    UnknownInLog(String),
    #[error("{0} is not a volunteer registered by the report's as_of time")]
    NotAVolunteer(String),
    /// Registered as another kind than the query is about: no position or retry helps.
    #[error("account {account} is not a {} (it is registered as: {is}); check the id", wanted.name())]
    WrongKind {
        account: String,
        is: &'static str,
        wanted: Wanted,
    },
    #[error("region {0:?} has no registered accounts; check the region code")]
    UnknownRegion(String),
    #[error("star policy version {version:?} is not configured; known: {known}")]
    UnknownPolicy { version: String, known: String },
    #[error("credit model version {0:?} is not computed by this server; known: {known}", known = credit::CREDIT_MODEL_VERSIONS.join(", "))]
    UnknownModel(String),
    #[error("event log unavailable: {0}; retry")]
    LogUnavailable(String),
    #[error("event log holds data this server cannot read: {0}; call an operator")]
    LogCorrupt(String),
    /// The account's stream is longer than a whole-stream read may be
    /// (`projections::credit::CREDIT_STREAM_EVENTS_MAX`): retrying cannot help.
    #[error("{0}")]
    StreamTooLong(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// `StreamLog`'s `after_record` names a record the log no longer holds at `after`
    /// (it was restored, or lost an acknowledged tail, since the caller read it):
    /// resuming would skip or repeat records unseen. `now` says what the log holds.
    #[error("the log no longer holds {stream} version {version} with hash {hash} at position {after}: {now}. The log was restored or lost its tail after you read it; verify what you hold against it (VerifyLog, range_digest) before resuming")]
    ResumePointChanged {
        stream: String,
        version: u64,
        hash: String,
        after: Position,
        now: String,
    },
    /// A `VerifyLog` range whose streams outnumber what one call tracks
    /// (`partners::audit::VERIFY_STREAMS_MAX`): the same range in parts succeeds.
    #[error("the range touches more than verify_streams_max ({streams_max}) streams; verify it in parts with `after` and `up_to`")]
    RangeTooLarge { streams_max: usize },
    /// Outside the caller's role or scope (`crate::authz`).
    #[error("{}", .0.message)]
    Denied(Described),
}

impl From<ReadError> for QueryError {
    fn from(e: ReadError) -> Self {
        Self::from(&e)
    }
}

impl From<&ReadError> for QueryError {
    fn from(e: &ReadError) -> Self {
        match e {
            ReadError::Unavailable(m) => Self::LogUnavailable(m.clone()),
            other => Self::LogCorrupt(other.to_string()),
        }
    }
}

impl From<RankingError> for QueryError {
    fn from(e: RankingError) -> Self {
        match e {
            RankingError::UnknownRegion(r) => Self::UnknownRegion(r),
        }
    }
}

impl From<CreditError> for QueryError {
    fn from(e: CreditError) -> Self {
        Self::from(&e)
    }
}

impl From<&CreditError> for QueryError {
    fn from(e: &CreditError) -> Self {
        match e {
            CreditError::UnknownModel(m) => Self::UnknownModel(echoed(m)),
            CreditError::NotAVolunteer(v) => Self::NotAVolunteer(v.clone()),
            CreditError::Read(r) => r.into(),
            CreditError::Decode(d) => Self::LogCorrupt(d.to_string()),
            CreditError::StreamTooLong => Self::StreamTooLong(e.to_string()),
        }
    }
}

impl From<Rejection> for QueryError {
    fn from(r: Rejection) -> Self {
        Self::Input(r)
    }
}

/// Wait, up to `QUERY_FRESHNESS_WAIT_MS_MAX`, until the read models have applied
/// `min` (a position a command returned); the checkpoint they answer at.
///
/// A `min_position` past the log's head was answered `NOT_CAUGHT_UP` (UNAVAILABLE,
/// "retry") after the whole wait, though the read models would reach it only if the log
/// grew that far by chance: no command returned it (invented, or another log's). The
/// head is asked only when the read models are behind `min`, so a caught-up query costs
/// nothing more. It is `FIELD_MALFORMED` on `min_position` now, like any other position
/// this log never handed out.
pub(crate) async fn fresh(
    projections: &Projections,
    log: &dyn EventLog,
    min: Option<pb::LogPosition>,
) -> Result<Option<Position>, QueryError> {
    let f = projections.freshness();
    let Some(p) = convert::min_position(min) else {
        return Ok(f.checkpoint());
    };
    if f.checkpoint().is_none_or(|c| c < p) && log.head().await?.is_none_or(|h| h < p) {
        return Err(Rejection::input(
            "min_position",
            ledger_core::domain::InputProblem::Malformed(format!(
                "position {p} is past this log's head; send a position a command on this ledger returned"
            )),
        )
        .into());
    }
    f.wait_for(p, Duration::from_millis(QUERY_FRESHNESS_WAIT_MS_MAX))
        .await
        .map(Some)
        .map_err(QueryError::NotCaughtUp)
}

/// Longest a credit report asked as of a moment a few milliseconds ago waits for the
/// commands stamped up to then to be appended (`Stamps`). They take milliseconds; as
/// long as a read model's freshness wait, for the same reason.
pub const SETTLE_WAIT_MS_MAX: u64 = QUERY_FRESHNESS_WAIT_MS_MAX;

/// How often that wait looks again: a tenth of a typical append.
const SETTLE_POLL_MS: u64 = 1;

/// The query service.
#[derive(Clone)]
pub struct QueryService {
    projections: Projections,
    /// Accounts' registrations, for platforms' scope checks (`crate::authz`).
    registrations: Arc<authz::Registrations>,
    log: Arc<dyn EventLog>,
    policies: Arc<StarPolicies>,
    clock: Arc<dyn Clock>,
    /// The ledger's calendar (`--calendar-offset`): "this year" of `GetAccount` is its
    /// year, as service dates are its days.
    calendar: FixedOffset,
    /// The command handler's stamps in flight: a credit report is answered only as of
    /// an instant they have all passed ([`ledger_core::app::Stamps`]).
    stamps: Arc<Stamps>,
}

type Answer<T> = Result<Response<T>, Status>;

// tonic's generated trait fixes the error type to `Status`.
#[allow(clippy::result_large_err)]
fn answer<T>(r: Result<T, QueryError>) -> Answer<T> {
    r.map(Response::new).map_err(|e| query_status(&e))
}

impl QueryService {
    pub fn new(
        projections: Projections,
        log: Arc<dyn EventLog>,
        policies: Arc<StarPolicies>,
        clock: Arc<dyn Clock>,
        calendar: FixedOffset,
        // The command handler's stamps in flight (`Handler::stamps`): required, so
        // that no service answers credit reports as of now without them.
        stamps: Arc<Stamps>,
    ) -> Self {
        Self {
            projections,
            registrations: Arc::new(authz::Registrations::new(log.clone())),
            log,
            policies,
            clock,
            calendar,
            stamps,
        }
    }

    /// The year of the ledger's calendar at `now`. Not the UTC year: on New Year's
    /// night east of UTC the ledger already accepts service dated in the new year.
    fn year_at(&self, now: chrono::DateTime<chrono::Utc>) -> i32 {
        now.with_timezone(&self.calendar).year()
    }

    /// An account's own record: auditors and admins any; platforms their scope.
    async fn allow_account(&self, caller: &Caller, account: &AccountId) -> Result<(), QueryError> {
        authz::require_account(
            &self.registrations,
            caller,
            account,
            "read this account",
            false,
        )
        .await
        .map_err(QueryError::Denied)
    }

    /// Wait for `min` (if any); the checkpoint the answer will reflect.
    async fn fresh(&self, min: Option<pb::LogPosition>) -> Result<Option<Position>, QueryError> {
        fresh(&self.projections, self.log.as_ref(), min).await
    }

    fn policy(&self, version: &str) -> Result<&projections::StarPolicy, QueryError> {
        self.policies
            .get(version)
            .ok_or_else(|| QueryError::UnknownPolicy {
                version: echoed(version),
                known: self.policies.versions().collect::<Vec<_>>().join(", "),
            })
    }

    /// Run a scan over the read models off the async workers.
    async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&projections::ReadModels) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let p = self.projections.clone();
        tokio::task::spawn_blocking(move || f(&p.read()))
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?
    }

    async fn get_account_(
        &self,
        caller: &Caller,
        r: pb::GetAccountRequest,
    ) -> Result<pb::AccountView, QueryError> {
        let account = convert::account("account_id", r.account_id)?;
        self.allow_account(caller, &account).await?;
        let cp = self.fresh(r.min_position).await?;
        let now = self.clock.now();
        let year = self.year_at(now);
        let view = self.projections.read().account_view(
            account.as_str(),
            year,
            self.policies.default_policy(),
            now,
        );
        let view = view.ok_or_else(|| QueryError::UnknownAccount(account.to_string()))?;
        Ok(convert::account_view(&view, cp))
    }

    async fn list_transactions_(
        &self,
        caller: &Caller,
        r: pb::ListTransactionsRequest,
    ) -> Result<pb::ListTransactionsResponse, QueryError> {
        let account = convert::account("account_id", r.account_id)?;
        self.allow_account(caller, &account).await?;
        let size = match r.page_size {
            0 => TRANSACTIONS_PAGE_DEFAULT,
            n => n.min(TRANSACTIONS_PAGE_MAX),
        } as usize;
        let from = crate::convert::page_token(&r.page_token)?;
        let cp = self.fresh(r.min_position).await?;
        // One extra event tells whether there is a next page.
        let mut page = self
            .log
            .read_stream(&account.stream(), from, size + 1)
            .await?;
        if from == 0 && page.is_empty() {
            return Err(QueryError::UnknownInLog(account.to_string()));
        }
        // A next token is issued only when more events follow, and a stream only
        // grows: an empty page after one is a token this server never issued (it read
        // as the end of the list).
        if page.is_empty() {
            return Err(crate::convert::page_token_not_issued().into());
        }
        let next = (page.len() > size).then(|| {
            page.truncate(size);
            (from + size as u64).to_string()
        });
        let entries = page
            .iter()
            .map(|e| projections::account::history_entry(&account, e).map(|h| convert::entry(&h)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::LogCorrupt(e.to_string()))?;
        Ok(pb::ListTransactionsResponse {
            entries,
            next_page_token: next.unwrap_or_default(),
            checkpoint: convert::checkpoint(cp),
        })
    }

    async fn get_star_level_(
        &self,
        caller: &Caller,
        r: pb::GetStarLevelRequest,
    ) -> Result<pb::StarLevel, QueryError> {
        let volunteer = convert::account("volunteer_id", r.volunteer_id)?;
        self.allow_account(caller, &volunteer).await?;
        let policy = self.policy(&r.policy_version)?.clone();
        let cp = self.fresh(r.min_position).await?;
        let now = self.clock.now();
        let view = self
            .projections
            .read()
            .account_view(volunteer.as_str(), self.year_at(now), &policy, now)
            .filter(|v| v.kind != "unregistered")
            .ok_or_else(|| QueryError::UnknownAccount(volunteer.to_string()))?;
        if view.kind != "volunteer" {
            return Err(QueryError::WrongKind {
                account: volunteer.to_string(),
                is: view.kind,
                wanted: Wanted::Volunteer,
            });
        }
        Ok(convert::star(&view.star, cp))
    }

    async fn get_credit_report_(
        &self,
        caller: &Caller,
        r: pb::GetCreditReportRequest,
    ) -> Result<pb::CreditReport, QueryError> {
        let volunteer: AccountId = convert::account("volunteer_id", r.volunteer_id)?;
        self.allow_account(caller, &volunteer).await?;
        let asked = convert::timestamp("as_of", r.as_of)?;
        let now = self.stamps.now(&*self.clock);
        // "Now" is the settled instant, read after `now` (so possibly a little later
        // than it, never later than the clock).
        let as_of = asked.unwrap_or_else(|| self.stamps.settled(&*self.clock));
        // A report is the one live at as_of; one of a time still to come would be
        // answered from a record still being written, and a later ask with the same
        // as_of would contradict its digest.
        if asked.is_some() && as_of > now {
            return Err(Rejection::input(
                "as_of",
                ledger_core::domain::InputProblem::Malformed(format!(
                    "{} is after the server's clock ({}); ask for a past time, or leave as_of unset for now",
                    as_of.to_rfc3339(),
                    now.to_rfc3339()
                )),
            )
            .into());
        }
        // Asked as of a moment commands stamped at or before it are still being
        // appended (the last few milliseconds): wait for them, so that the stream read
        // below holds every event recorded by as_of. "Now" is as of the settled
        // instant already.
        if asked.is_some() {
            let waited = std::time::Instant::now();
            while self.stamps.settled(&*self.clock) < as_of {
                if waited.elapsed() >= std::time::Duration::from_millis(SETTLE_WAIT_MS_MAX) {
                    return Err(QueryError::NotSettled(as_of.to_rfc3339()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(SETTLE_POLL_MS)).await;
            }
        }
        let cp = self.fresh(r.min_position).await?;
        let events = credit::read_account_stream(self.log.as_ref(), &volunteer).await?;
        let report = credit::credit_report(
            &volunteer,
            &events,
            as_of,
            self.calendar,
            &r.model_version,
            self.policies.default_policy(),
        )?;
        Ok(convert::credit_report(&report, cp))
    }

    async fn top_volunteers_(
        &self,
        caller: &Caller,
        r: pb::TopVolunteersRequest,
    ) -> Result<pb::Ranking, QueryError> {
        let region = convert::region("region_code", r.region_code)?;
        allow_region(caller, &region)?;
        let period = convert::period("period", &r.period)?;
        let limit = limit(r.limit, RANKING_LIMIT_DEFAULT);
        let cp = self.fresh(r.min_position).await?;
        let v = self
            .scan(move |m| Ok(m.top_volunteers(&region, period, limit)?))
            .await?;
        Ok(convert::ranking(v, cp))
    }

    async fn top_projects_(
        &self,
        caller: &Caller,
        r: pb::TopProjectsRequest,
    ) -> Result<pb::Ranking, QueryError> {
        // Projects and their totals are public within the scheme.
        authz::require(
            caller,
            &[RoleKind::Platform, RoleKind::Auditor, RoleKind::Admin],
            "read rankings",
        )
        .map_err(QueryError::Denied)?;
        let limit = limit(r.limit, RANKING_LIMIT_DEFAULT);
        let cp = self.fresh(r.min_position).await?;
        let v = self.projections.read().top_projects(limit);
        Ok(convert::ranking(v, cp))
    }

    async fn top_regions_(
        &self,
        caller: &Caller,
        r: pb::TopRegionsRequest,
    ) -> Result<pb::Ranking, QueryError> {
        let parent = convert::region("parent_region_code", r.parent_region_code)?;
        allow_region(caller, &parent)?;
        let period = convert::period("period", &r.period)?;
        let limit = limit(r.limit, RANKING_LIMIT_DEFAULT);
        let cp = self.fresh(r.min_position).await?;
        let v = self
            .projections
            .read()
            .top_regions(&parent, period, limit)?;
        Ok(convert::ranking(v, cp))
    }

    async fn get_service_index_(
        &self,
        caller: &Caller,
        r: pb::GetServiceIndexRequest,
    ) -> Result<pb::ServiceIndex, QueryError> {
        let region = convert::region("region_code", r.region_code)?;
        if region.is_empty() {
            return Err(Rejection::missing("region_code").into());
        }
        allow_region(caller, &region)?;
        let period = convert::period("period", &r.period)?;
        let cp = self.fresh(r.min_position).await?;
        let i = self
            .projections
            .read()
            .service_index(&region, period)
            .ok_or(QueryError::UnknownRegion(region))?;
        Ok(convert::service_index(&i, cp))
    }

    async fn list_below_annual_minimum_(
        &self,
        caller: &Caller,
        r: pb::ListBelowAnnualMinimumRequest,
    ) -> Result<pb::ListBelowAnnualMinimumResponse, QueryError> {
        use pb::list_below_annual_minimum_request::Scope as S;
        enum Owned {
            Region(String),
            Organisation(String),
        }
        let scope = match r.scope {
            Some(S::RegionCode(t)) => {
                let region = convert::region("region_code", t)?;
                allow_region(caller, &region)?;
                Owned::Region(region)
            }
            Some(S::OrganisationId(t)) => {
                let organisation = convert::account("organisation_id", t)?;
                self.allow_account(caller, &organisation).await?;
                Owned::Organisation(organisation.to_string())
            }
            None => return Err(Rejection::missing("scope").into()),
        };
        if r.year == 0 {
            return Err(Rejection::missing("year").into());
        }
        // The years a period can name ("0000" to "9999"), less year 0, which is unset.
        if !(1..=9999).contains(&r.year) {
            return Err(Rejection::input(
                "year",
                ledger_core::domain::InputProblem::Malformed(format!(
                    "{} is not a year of the calendar; send 1 to 9999, e.g. 2026",
                    r.year
                )),
            )
            .into());
        }
        let minimum = convert::hours_or(
            "minimum_hours",
            &r.minimum_hours,
            Decimal::from(ANNUAL_MINIMUM_DEFAULT_HOURS),
        )?;
        let limit = limit(r.limit, ANNUAL_LIMIT_DEFAULT);
        let year = r.year;
        let cp = self.fresh(r.min_position).await?;
        let calendar = self.calendar;
        // A platform's organisation may serve volunteers of other regions: it sees
        // only those of its own (`below_annual_minimum_within`).
        let within = match &caller.role {
            Role::Platform { regions, .. } => Some(regions.clone()),
            _ => None,
        };
        let b = self
            .scan(move |m| {
                let scope = match &scope {
                    Owned::Region(r) => Scope::Region(r),
                    Owned::Organisation(o) => Scope::Organisation(o),
                };
                m.below_annual_minimum_within(
                    scope,
                    within.as_deref(),
                    year,
                    calendar,
                    minimum,
                    limit,
                )
                .map_err(|e| match e {
                    AnnualError::Region(r) => r.into(),
                    AnnualError::UnknownOrganisation(o) => QueryError::UnknownAccount(o),
                    AnnualError::NotAnOrganisation { id, kind } => QueryError::WrongKind {
                        account: id,
                        is: kind,
                        wanted: Wanted::Organisation,
                    },
                    e @ (AnnualError::Year(_) | AnnualError::Minimum(_)) => {
                        let field = if matches!(e, AnnualError::Year(_)) {
                            "year"
                        } else {
                            "minimum_hours"
                        };
                        QueryError::Input(Rejection::input(
                            field,
                            ledger_core::domain::InputProblem::Malformed(e.to_string()),
                        ))
                    }
                })
            })
            .await?;
        Ok(pb::ListBelowAnnualMinimumResponse {
            volunteers: b
                .volunteers
                .into_iter()
                .map(|(id, h)| pb::VolunteerHours {
                    volunteer_id: id,
                    hours: h.to_string(),
                })
                .collect(),
            total_below: b.total as u64,
            considered: b.considered as u64,
            checkpoint: convert::checkpoint(cp),
        })
    }
}

/// Aggregates over a region: auditors and admins any; platforms the regions they cover.
fn allow_region(caller: &Caller, region: &str) -> Result<(), QueryError> {
    match &caller.role {
        Role::Admin | Role::Auditor => Ok(()),
        Role::Platform { regions, .. } if authz::platform_covers_region(regions, region) => Ok(()),
        _ => Err(QueryError::Denied(authz::denied(
            caller,
            "read statistics of this region",
        ))),
    }
}

fn limit(asked: u32, default: u32) -> usize {
    (if asked == 0 { default } else { asked }) as usize
}

#[tonic::async_trait]
impl pb::ledger_queries_server::LedgerQueries for QueryService {
    async fn get_account(&self, r: Request<pb::GetAccountRequest>) -> Answer<pb::AccountView> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.get_account_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn list_transactions(
        &self,
        r: Request<pb::ListTransactionsRequest>,
    ) -> Answer<pb::ListTransactionsResponse> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.list_transactions_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn get_star_level(&self, r: Request<pb::GetStarLevelRequest>) -> Answer<pb::StarLevel> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.get_star_level_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn get_credit_report(
        &self,
        r: Request<pb::GetCreditReportRequest>,
    ) -> Answer<pb::CreditReport> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.get_credit_report_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn top_volunteers(&self, r: Request<pb::TopVolunteersRequest>) -> Answer<pb::Ranking> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.top_volunteers_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn top_projects(&self, r: Request<pb::TopProjectsRequest>) -> Answer<pb::Ranking> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.top_projects_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn top_regions(&self, r: Request<pb::TopRegionsRequest>) -> Answer<pb::Ranking> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.top_regions_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn get_service_index(
        &self,
        r: Request<pb::GetServiceIndexRequest>,
    ) -> Answer<pb::ServiceIndex> {
        match authz::caller(&r) {
            Ok(caller) => answer(self.get_service_index_(&caller, r.into_inner()).await),
            Err(status) => Err(status),
        }
    }

    async fn list_below_annual_minimum(
        &self,
        r: Request<pb::ListBelowAnnualMinimumRequest>,
    ) -> Answer<pb::ListBelowAnnualMinimumResponse> {
        match authz::caller(&r) {
            Ok(caller) => answer(
                self.list_below_annual_minimum_(&caller, r.into_inner())
                    .await,
            ),
            Err(status) => Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
    use ledger_core::app::{FixedClock, Handler, LedgerConfig};
    use ledger_core::domain::account::{AccountKind, RegionCode};
    use ledger_core::domain::commands::{Command, DepositHours, RegisterAccount};
    use ledger_core::domain::events::HourKind;
    use ledger_core::domain::ids::{ActivityId, Category, RequestId, VerifierId};
    use ledger_core::domain::units::Hours;
    use ledger_core::log::memory::MemoryLog;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// A ledger with its calendar at `offset_hours`, its clock at `now`, a query service
    /// over it, an organisation `org` and a volunteer `li` who joined on 2026-01-01.
    struct Ledger {
        handler: Handler,
        clock: Arc<FixedClock>,
        queries: QueryService,
        worker: projections::WorkerHandle,
        next: u32,
    }

    impl Ledger {
        async fn new(offset_hours: i32, now: &str) -> Self {
            let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
            let clock = Arc::new(FixedClock::new(ts(now)));
            let config = LedgerConfig {
                calendar_offset: FixedOffset::east_opt(offset_hours * 3600).unwrap(),
                ..LedgerConfig::default()
            };
            let handler = Handler::new(log.clone(), clock.clone(), config);
            let (read_models, worker) =
                projections::runtime::start(log.clone(), ProjectionConfig::default()).await;
            let queries = QueryService::new(
                read_models,
                log,
                Arc::new(StarPolicies::default()),
                clock.clone(),
                handler.config().calendar_offset,
                handler.stamps().clone(),
            );
            let mut l = Self {
                handler,
                clock,
                queries,
                worker,
                next: 0,
            };
            let region = RegionCode::new("hangzhou/xihu").unwrap();
            l.run(|request_id| {
                Command::RegisterAccount(RegisterAccount {
                    request_id,
                    account: AccountId::new("org").unwrap(),
                    kind: AccountKind::Organisation {
                        region: region.clone(),
                    },
                })
            })
            .await;
            l.run(|request_id| {
                Command::RegisterAccount(RegisterAccount {
                    request_id,
                    account: AccountId::new("li").unwrap(),
                    kind: AccountKind::Volunteer {
                        region: region.clone(),
                        joined_on: day("2026-01-01"),
                    },
                })
            })
            .await;
            l
        }

        async fn run(&mut self, command: impl FnOnce(RequestId) -> Command) -> pb::LogPosition {
            self.next += 1;
            let c = command(RequestId::new(format!("r-{}", self.next)).unwrap());
            let outcome = self.handler.execute(&c).await.unwrap();
            convert::position(outcome.position)
        }

        /// `hours` for `li` on `date`, served from `start` to `end` (UTC).
        async fn deposit(
            &mut self,
            date: &str,
            start: &str,
            end: &str,
            hours: &str,
        ) -> pb::LogPosition {
            let (started_at, ended_at) = (ts(start), ts(end));
            self.run(|request_id| {
                Command::DepositHours(DepositHours {
                    request_id,
                    volunteer: AccountId::new("li").unwrap(),
                    organisation: AccountId::new("org").unwrap(),
                    activity: ActivityId::new("act-1").unwrap(),
                    service_date: day(date),
                    started_at,
                    ended_at,
                    category: Category::new("elderly-care").unwrap(),
                    hours: Hours::parse(hours).unwrap(),
                    kind: HourKind::Credit,
                    verifier: VerifierId::new("staff-1").unwrap(),
                })
            })
            .await
        }

        async fn stop(self) {
            self.worker.stop().await.unwrap();
        }
    }

    /// "Hours this year" is the year of the ledger's calendar, the calendar service dates
    /// are in (docs/queries.md, `GetAccount`). At 2026-12-31T17:00Z a UTC+8 ledger is in
    /// 2027 already and accepts a deposit dated 2027-01-01: that deposit is this year's.
    #[tokio::test]
    async fn given_a_utc8_ledger_on_new_years_night_when_viewing_an_account_then_this_year_is_the_ledgers(
    ) {
        let mut l = Ledger::new(8, "2026-06-02T12:00:00Z").await;
        l.deposit(
            "2026-06-01",
            "2026-06-01T01:00:00Z",
            "2026-06-01T03:00:00Z",
            "2",
        )
        .await;
        // 2026-12-31T17:00Z is 2027-01-01 01:00 in the ledger's calendar.
        l.clock.set(ts("2026-12-31T17:00:00Z"));
        let at = l
            .deposit(
                "2027-01-01",
                "2026-12-31T16:00:00Z",
                "2026-12-31T16:30:00Z",
                "0.5",
            )
            .await;
        let view = l
            .queries
            .get_account_(
                &Caller::unauthenticated_admin(),
                pb::GetAccountRequest {
                    account_id: "li".into(),
                    min_position: Some(at),
                },
            )
            .await
            .unwrap();
        assert_eq!((view.year, view.hours_this_year.as_str()), (2027, "0.50"));
        l.stop().await;
    }

    /// A report is "the report as it was at this instant" (queries.proto), and re-asking
    /// with the same as_of later gives the same digest (docs/credit-score.md). An as_of
    /// past the server's clock names a report that has not been yet: the events up to it
    /// are still being written, so it is refused rather than answered with a digest
    /// that a later ask contradicts.
    #[tokio::test]
    async fn given_an_as_of_after_now_when_asking_a_credit_report_then_it_is_refused() {
        let mut l = Ledger::new(0, "2026-11-20T12:00:00Z").await;
        l.deposit(
            "2026-11-19",
            "2026-11-19T09:00:00Z",
            "2026-11-19T12:00:00Z",
            "3",
        )
        .await;
        let ask = |as_of: &str| pb::GetCreditReportRequest {
            volunteer_id: "li".into(),
            as_of: Some(convert::to_timestamp(ts(as_of))),
            ..Default::default()
        };
        let caller = Caller::unauthenticated_admin();
        // Now, to the nanosecond, is a time the report has been.
        l.queries
            .get_credit_report_(&caller, ask("2026-11-20T12:00:00Z"))
            .await
            .unwrap();
        match l
            .queries
            .get_credit_report_(&caller, ask("2026-12-20T12:00:00Z"))
            .await
        {
            Err(QueryError::Input(r)) => assert_eq!(r.reason(), "FIELD_MALFORMED"),
            other => panic!("a report of the future was answered: {other:?}"),
        }
        l.stop().await;
    }
}

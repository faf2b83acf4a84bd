//! The scenario: which parts of city life the demo generates, the steps they produce,
//! and how a step becomes a ledger command.
//!
//! A [`Step`] is small (a few dozen bytes) and names accounts by index, so a whole
//! city's year can be sorted by time in memory; it becomes a [`Command`] only when it
//! runs. Request ids are derived from the step (`demo:<account>:<n>`), so they are
//! the same in every run with the same seed, and a reversal can name its original
//! transaction without waiting for it: transaction ids derive from request ids.
//!
//! # Adding a part
//! Add a [`Part`], an [`Action`] variant, its arm in [`Step::command`], and its
//! generation in `activity.rs` (per volunteer) or in [`city_steps`] (city-wide).
//!
//! Bank inquiries are the one step whose command is not complete here: the report it
//! serves is computed from the volunteer's stream at the step's instant, which only the
//! seeder (holding the log) can read; [`Step::command`] leaves it empty and
//! `demo::seed` fills it in with `partners::banks::prepare_report`.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode};
use ledger_core::domain::commands::{
    AuthorizeRedemption, CaptureRedemption, CloseAccount, Command, DepositHours, DonateHours,
    ExchangeHours, ExpireRedemptionHold, GrantConsent, RateService, RecordNoShow, RegisterAccount,
    ReverseTransaction, ServeCreditReport, ServedReport, SpendHours, TransferHours, VoidRedemption,
    WithdrawConsent,
};
use ledger_core::domain::events::{FamilyRelation, HourKind, SpendPurpose};
use ledger_core::domain::ids::{
    ActivityId, Category, IdError, Note, Purpose, RequestId, TransactionId, VerifierId,
};
use ledger_core::domain::token::RedemptionClaims;
use ledger_core::domain::units::{AmountError, Hours, Points};
use rust_decimal::Decimal;

use super::activity::Calendar;
use super::city::City;

/// Parts of city life the demo can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// Service and its credit-hour deposits.
    Service,
    /// Honour hours back-filled by administrators.
    HonourHours,
    Spending,
    Exchanges,
    FamilyTransfers,
    Donations,
    /// Reversals of deposits (recorded twice, no-shows) and of outflows.
    Corrections,
    /// Volunteers who move away and close their account at year end.
    Closures,
    /// Volunteers who signed up for an activity and did not come.
    NoShows,
    /// Residents rating the service behind a deposit (the work-order loop).
    Ratings,
    /// Volunteers' consents to partner banks (granted, some withdrawn, some left to
    /// expire) and the banks' credit-report inquiries under them.
    Consents,
    /// Points redeemed at merchants: holds captured (some partly), voided or left to
    /// expire.
    Redemptions,
}

impl Part {
    pub const ALL: [Part; 12] = [
        Part::Service,
        Part::HonourHours,
        Part::Spending,
        Part::Exchanges,
        Part::FamilyTransfers,
        Part::Donations,
        Part::Corrections,
        Part::Closures,
        Part::NoShows,
        Part::Ratings,
        Part::Consents,
        Part::Redemptions,
    ];
}

/// The parts a run generates (all by default).
#[derive(Clone, Debug)]
pub struct Scenario {
    parts: BTreeSet<Part>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            parts: Part::ALL.into_iter().collect(),
        }
    }
}

impl Scenario {
    pub fn only(parts: impl IntoIterator<Item = Part>) -> Self {
        Self {
            parts: parts.into_iter().collect(),
        }
    }

    pub fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Whom a spend paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counterparty {
    Organisation(u32),
    Merchant(u32),
}

/// Whose stream a reversal is decided on (the account it debits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReverseOn {
    /// The step's owner: deposits, spends, exchanges.
    Owner,
    /// The receiving volunteer of a family transfer.
    Volunteer(u32),
    /// The project of a donation.
    Project(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositStep {
    pub organisation: u32,
    /// Day of the year (0-based) in the ledger's calendar.
    pub day: u16,
    pub start_q: u8,
    pub duration_q: u8,
    pub hundredths: u32,
    pub honour: bool,
}

/// What a step does. Amounts are in exact hundredths of an hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    RegisterOrganisation,
    RegisterProject,
    RegisterMerchant,
    RegisterVolunteer,
    Deposit(DepositStep),
    Spend {
        purpose: SpendPurpose,
        counterparty: Counterparty,
        hundredths: u32,
    },
    Exchange {
        hundredths: u32,
    },
    Transfer {
        to: u32,
        relation: FamilyRelation,
        hundredths: u32,
    },
    Donate {
        project: u32,
        hundredths: u32,
    },
    /// Reverse the owner's step number `original`.
    Reverse {
        original: u16,
        on: ReverseOn,
        reason: &'static str,
    },
    Close,
    /// The volunteer did not come to the activity this step describes (no hours).
    NoShow(DepositStep),
    /// A resident rates the service of the owner's deposit step `deposit`.
    Rate {
        deposit: u16,
        rating: u8,
    },
    RegisterBank,
    /// The volunteer consents to bank `bank` (index into `City::banks`) for
    /// [`CONSENT_PURPOSE`] until `expires_at` (UTC seconds).
    GrantConsent {
        bank: u8,
        expires_at: i64,
    },
    WithdrawConsent {
        bank: u8,
    },
    /// Bank `bank` is served the volunteer's credit report (the report is filled in by
    /// the seeder, see the module documentation).
    Inquiry {
        bank: u8,
    },
    /// A hold of `points` (hundredths of a point) at merchant `merchant`, against a
    /// token for up to `points_max` that expires at `token_expires_at`.
    Authorize {
        merchant: u32,
        points: u32,
        points_max: u32,
        token_expires_at: i64,
    },
    /// Capture `points` (hundredths) of the owner's hold made by step `hold`.
    Capture {
        hold: u16,
        merchant: u32,
        points: u32,
    },
    Void {
        hold: u16,
        merchant: u32,
    },
    /// Record that the owner's hold made by step `hold` expired (what the server's
    /// sweeper does).
    ExpireHold {
        hold: u16,
    },
}

impl Action {
    /// Consent steps (grants, withdrawals, inquiries).
    pub fn is_consent(&self) -> bool {
        matches!(
            self,
            Self::GrantConsent { .. } | Self::WithdrawConsent { .. } | Self::Inquiry { .. }
        )
    }

    /// A short name for counting what ran.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RegisterOrganisation => "register organisation",
            Self::RegisterProject => "register project",
            Self::RegisterMerchant => "register merchant",
            Self::RegisterVolunteer => "register volunteer",
            Self::Deposit(d) if d.honour => "deposit honour hours",
            Self::Deposit(_) => "deposit credit hours",
            Self::Spend { .. } => "spend",
            Self::Exchange { .. } => "exchange",
            Self::Transfer { .. } => "family transfer",
            Self::Donate { .. } => "donation",
            Self::Reverse { .. } => "reversal",
            Self::Close => "close account",
            Self::NoShow(_) => "no-show",
            Self::Rate { .. } => "rating",
            Self::RegisterBank => "register bank",
            Self::GrantConsent { .. } => "grant consent",
            Self::WithdrawConsent { .. } => "withdraw consent",
            Self::Inquiry { .. } => "bank inquiry",
            Self::Authorize { .. } => "authorise redemption",
            Self::Capture { .. } => "capture redemption",
            Self::Void { .. } => "void redemption",
            Self::ExpireHold { .. } => "expire redemption hold",
        }
    }
}

/// Ranks: what runs first among steps at the same instant. Accounts others refer to
/// register before the volunteers who use them; closures run after everything else.
pub const RANK_ORGANISATION: u8 = 0;
pub const RANK_PROJECT: u8 = 1;
pub const RANK_MERCHANT: u8 = 2;
pub const RANK_BANK: u8 = 3;
/// Volunteers registered before the year (they exist from its first instant).
pub const RANK_EARLY_VOLUNTEER: u8 = 4;
/// Every other step of the year.
pub const RANK_YEAR: u8 = 5;
pub const RANK_CLOSURE: u8 = 6;

/// The purpose of every demo consent and inquiry: what a bank and a platform agree on
/// for a volunteer loan (the example `partners.proto` gives).
pub const CONSENT_PURPOSE: &str = "volunteer-loan";

/// How long a demo redemption token lives: the server's default.
pub const TOKEN_TTL_SECS: i64 = crate::partners::redemptions::TOKEN_TTL_SECONDS_DEFAULT as i64;

/// One command-to-be at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When it runs: the clock reading (UTC seconds) the handler decides it at.
    pub at: i64,
    /// Order among steps at the same instant: the `RANK_*` constants.
    pub rank: u8,
    /// The owning account's index: a volunteer, or an organisation / project /
    /// merchant for their registration.
    pub owner: u32,
    /// The owner's step number: unique per owner, part of the request id.
    pub seq: u16,
    pub action: Action,
}

impl Step {
    /// The total order steps run in: by time, then rank, owner and number. It depends
    /// only on the steps, so the log (and its head hash) depends only on the seed.
    pub fn key(&self) -> (i64, u8, u32, u16) {
        (self.at, self.rank, self.owner, self.seq)
    }
}

/// A step that cannot become a command: a generator bug.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(
        "the demo generator built an invalid id: {0}; this is a bug in ledger-server/src/demo"
    )]
    Id(#[from] IdError),
    #[error(
        "the demo generator built an invalid amount: {0}; this is a bug in ledger-server/src/demo"
    )]
    Amount(#[from] AmountError),
    #[error("the demo generator built an invalid region code: {0}; this is a bug in ledger-server/src/demo")]
    Region(String),
}

/// An organisation's activity on a day, starting at a local hour: volunteers who
/// served (or did not come) together share it.
fn activity_id(org: &str, day: NaiveDate, start_q: u8) -> Result<ActivityId, IdError> {
    ActivityId::new(format!(
        "act-{org}-{}-{:02}",
        day.format("%Y%m%d"),
        start_q / 4
    ))
}

fn hours(hundredths: u32) -> Result<Hours, AmountError> {
    Hours::new(Decimal::new(i64::from(hundredths), 2))
}

fn points(hundredths: u32) -> Result<Points, AmountError> {
    Points::new(Decimal::new(i64::from(hundredths), 2))
}

fn bank_id(city: &City, bank: u8) -> Result<AccountId, IdError> {
    AccountId::new(city.banks[usize::from(bank)].clone())
}

fn merchant_id(city: &City, merchant: u32) -> Result<AccountId, IdError> {
    AccountId::new(&city.merchants[merchant as usize])
}

/// The id of the token behind the owner's hold step `seq`: derived like every demo id,
/// so the log depends only on the seed (the server draws token ids at random).
pub fn token_id(owner: &str, seq: u16) -> uuid::Uuid {
    let hash = blake3::hash(format!("demo-token:{owner}:{seq}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The request id of the owner's step `seq` (`demo:<account id>:<seq>`).
pub fn request_id(owner: &str, seq: u16) -> Result<RequestId, IdError> {
    RequestId::new(format!("demo:{owner}:{seq}"))
}

/// The transaction a step wrote (derived from its request id).
pub fn transaction_of(owner: &str, seq: u16) -> Result<TransactionId, IdError> {
    let command_id = ledger_core::domain::ids::event_id_for_request(&request_id(owner, seq)?);
    Ok(TransactionId::from(command_id))
}

impl Step {
    /// The owner's account id.
    pub fn owner_id(&self, city: &City) -> String {
        match self.action {
            Action::RegisterOrganisation => city.organisations[self.owner as usize].id.clone(),
            Action::RegisterProject => city.projects[self.owner as usize].clone(),
            Action::RegisterMerchant => city.merchants[self.owner as usize].clone(),
            Action::RegisterBank => city.banks[self.owner as usize].clone(),
            _ => City::volunteer_id(self.owner),
        }
    }

    /// The ledger command this step sends.
    pub fn command(&self, city: &City, calendar: &Calendar) -> Result<Command, StepError> {
        let owner = self.owner_id(city);
        let request_id = request_id(&owner, self.seq)?;
        let account = AccountId::new(&owner)?;
        let region = |text: &str| {
            RegionCode::new(text.to_owned()).map_err(|e| StepError::Region(e.to_string()))
        };
        Ok(match self.action {
            Action::RegisterOrganisation => {
                let org = &city.organisations[self.owner as usize];
                Command::RegisterAccount(RegisterAccount {
                    request_id,
                    account,
                    kind: AccountKind::Organisation {
                        region: region(&org.region)?,
                    },
                })
            }
            Action::RegisterProject => Command::RegisterAccount(RegisterAccount {
                request_id,
                account,
                kind: AccountKind::Project,
            }),
            Action::RegisterMerchant => Command::RegisterAccount(RegisterAccount {
                request_id,
                account,
                kind: AccountKind::Merchant,
            }),
            Action::RegisterBank => Command::RegisterAccount(RegisterAccount {
                request_id,
                account,
                kind: AccountKind::Bank,
            }),
            Action::RegisterVolunteer => {
                let v = city.volunteer(self.owner);
                Command::RegisterAccount(RegisterAccount {
                    request_id,
                    account,
                    kind: AccountKind::Volunteer {
                        region: region(&v.region)?,
                        joined_on: v.joined_on,
                    },
                })
            }
            Action::Deposit(d) => {
                let org = &city.organisations[d.organisation as usize];
                let day = NaiveDate::from_yo_opt(city.year, u32::from(d.day) + 1)
                    .expect("service days are days of the demo year");
                let start = u32::from(d.start_q);
                let end = start + u32::from(d.duration_q);
                Command::DepositHours(DepositHours {
                    request_id,
                    volunteer: account,
                    organisation: AccountId::new(&org.id)?,
                    activity: activity_id(&org.id, day, d.start_q)?,
                    service_date: day,
                    started_at: Calendar::instant(calendar.at(u32::from(d.day), start)),
                    ended_at: Calendar::instant(calendar.at(u32::from(d.day), end)),
                    category: Category::new(org.category)?,
                    hours: hours(d.hundredths)?,
                    kind: if d.honour {
                        HourKind::Honour
                    } else {
                        HourKind::Credit
                    },
                    verifier: VerifierId::new(if d.honour {
                        "admin-backfill".to_owned()
                    } else {
                        format!("staff-{:05}-{}", d.organisation + 1, d.day % 3 + 1)
                    })?,
                })
            }
            Action::Spend {
                purpose,
                counterparty,
                hundredths,
            } => Command::SpendHours(SpendHours {
                request_id,
                volunteer: account,
                purpose,
                counterparty: AccountId::new(match counterparty {
                    Counterparty::Organisation(k) => city.organisations[k as usize].id.clone(),
                    Counterparty::Merchant(k) => city.merchants[k as usize].clone(),
                })?,
                hours: hours(hundredths)?,
                memo: Some(Note::new(match purpose {
                    SpendPurpose::ReceivedService => "home visit for an elderly parent",
                    SpendPurpose::FineOffset => "traffic-civility duty offsets a small fine",
                    SpendPurpose::Other => "community canteen meals",
                })?),
            }),
            Action::Exchange { hundredths } => Command::ExchangeHours(ExchangeHours {
                request_id,
                volunteer: account,
                hours: hours(hundredths)?,
                expected_rate_version: None,
            }),
            Action::Transfer {
                to,
                relation,
                hundredths,
            } => Command::TransferHours(TransferHours {
                request_id,
                from: account,
                to: AccountId::new(City::volunteer_id(to))?,
                relation,
                hours: hours(hundredths)?,
            }),
            Action::Donate {
                project,
                hundredths,
            } => Command::DonateHours(DonateHours {
                request_id,
                from: account,
                project: AccountId::new(&city.projects[project as usize])?,
                hours: hours(hundredths)?,
            }),
            Action::Reverse {
                original,
                on,
                reason,
            } => Command::ReverseTransaction(ReverseTransaction {
                request_id,
                account: match on {
                    ReverseOn::Owner => account,
                    ReverseOn::Volunteer(v) => AccountId::new(City::volunteer_id(v))?,
                    ReverseOn::Project(p) => AccountId::new(&city.projects[p as usize])?,
                },
                transaction: transaction_of(&owner, original)?,
                reason: Note::new(reason)?,
            }),
            Action::Close => Command::CloseAccount(CloseAccount {
                request_id,
                account,
                reason: Note::new("moved out of the city")?,
            }),
            Action::NoShow(d) => {
                let org = &city.organisations[d.organisation as usize];
                let day = NaiveDate::from_yo_opt(city.year, u32::from(d.day) + 1)
                    .expect("service days are days of the demo year");
                Command::RecordNoShow(RecordNoShow {
                    request_id,
                    volunteer: account,
                    organisation: AccountId::new(&org.id)?,
                    activity: activity_id(&org.id, day, d.start_q)?,
                    date: day,
                })
            }
            Action::Rate { deposit, rating } => Command::RateService(RateService {
                request_id,
                volunteer: account,
                deposit: transaction_of(&owner, deposit)?,
                rating,
                rater: VerifierId::new(format!(
                    "resident-{:04}",
                    (self.owner + u32::from(deposit)) % 9973
                ))?,
            }),
            Action::GrantConsent { bank, expires_at } => Command::GrantConsent(GrantConsent {
                request_id,
                volunteer: account,
                bank: bank_id(city, bank)?,
                purpose: Purpose::new(CONSENT_PURPOSE)?,
                expires_at: Calendar::instant(expires_at),
            }),
            Action::WithdrawConsent { bank } => Command::WithdrawConsent(WithdrawConsent {
                request_id,
                volunteer: account,
                bank: bank_id(city, bank)?,
            }),
            Action::Inquiry { bank } => Command::ServeCreditReport(ServeCreditReport {
                request_id,
                volunteer: account,
                bank: bank_id(city, bank)?,
                purpose: Purpose::new(CONSENT_PURPOSE)?,
                served: ServedReport::default(),
            }),
            Action::Authorize {
                merchant,
                points: amount,
                points_max,
                token_expires_at,
            } => Command::AuthorizeRedemption(AuthorizeRedemption {
                request_id,
                merchant: merchant_id(city, merchant)?,
                // The claims of a token the platform would have issued: the demo
                // writes below the token's signature, an edge concern (the handler
                // takes verified claims), so it builds the claims directly.
                token: RedemptionClaims {
                    id: token_id(&owner, self.seq),
                    volunteer: account,
                    points_max: points(points_max)?,
                    expires_at: Calendar::instant(token_expires_at),
                },
                points: points(amount)?,
            }),
            Action::Capture {
                hold,
                merchant,
                points: amount,
            } => Command::CaptureRedemption(CaptureRedemption {
                request_id,
                merchant: merchant_id(city, merchant)?,
                volunteer: account,
                hold: transaction_of(&owner, hold)?,
                points: points(amount)?,
            }),
            Action::Void { hold, merchant } => Command::VoidRedemption(VoidRedemption {
                request_id,
                merchant: merchant_id(city, merchant)?,
                volunteer: account,
                hold: transaction_of(&owner, hold)?,
            }),
            // The sweeper's own request id, so a server started on the seeded log
            // would find the expiry already recorded.
            Action::ExpireHold { hold } => Command::ExpireRedemptionHold(
                ExpireRedemptionHold::new(account, transaction_of(&owner, hold)?),
            ),
        })
    }
}

/// City-wide steps: organisations, projects, merchants and banks register at the
/// first instant of the year, before any volunteer.
pub fn city_steps(city: &City, calendar: &Calendar, out: &mut Vec<Step>) {
    let start = calendar.at(0, 0);
    let mut add = |rank: u8, n: usize, action: Action| {
        out.extend((0..n as u32).map(|owner| Step {
            at: start,
            rank,
            owner,
            seq: 0,
            action,
        }))
    };
    add(
        RANK_ORGANISATION,
        city.organisations.len(),
        Action::RegisterOrganisation,
    );
    add(RANK_PROJECT, city.projects.len(), Action::RegisterProject);
    add(
        RANK_MERCHANT,
        city.merchants.len(),
        Action::RegisterMerchant,
    );
    add(RANK_BANK, city.banks.len(), Action::RegisterBank);
}

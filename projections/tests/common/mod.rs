//! A small city over a `MemoryLog`, driven through the real command handler, so the
//! read models are tested on the events the ledger really writes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger_core::app::{CommandError, FixedClock, Handler, LedgerConfig};
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode};
use ledger_core::domain::commands::*;
use ledger_core::domain::events::{FamilyRelation, HourKind, SpendPurpose};
use ledger_core::domain::ids::{ActivityId, Category, Note, RequestId, TransactionId, VerifierId};
use ledger_core::domain::state::Outcome;
use ledger_core::domain::units::Hours;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::EventLog;
use projections::ReadModels;
use rust_decimal::Decimal;

pub const NOW: &str = "2026-11-20T12:00:00Z";

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::from_str(s).unwrap()
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub struct City {
    pub log: MemoryLog,
    pub clock: Arc<FixedClock>,
    pub handler: Handler,
    next: u64,
    /// Hours already booked per (volunteer, day), to place intervals without overlap.
    booked: HashMap<(String, NaiveDate), i64>,
}

impl City {
    pub fn new() -> Self {
        Self::with_config(LedgerConfig::default())
    }

    /// A city whose ledger runs with `config` (e.g. a UTC+8 calendar).
    pub fn with_config(config: LedgerConfig) -> Self {
        let log = MemoryLog::new();
        let clock = Arc::new(FixedClock::new(ts(NOW)));
        let handler = Handler::new(
            Arc::new(log.clone()) as Arc<dyn EventLog>,
            clock.clone(),
            config,
        );
        Self {
            log,
            clock,
            handler,
            next: 0,
            booked: HashMap::new(),
        }
    }

    /// Start this city's request ids `n` further on, so that its events carry ids
    /// another city's never do (an event id derives from its request id): another
    /// history, not a copy of the same one.
    pub fn skip_request_ids(&mut self, n: u64) {
        self.next += n;
    }

    fn rid(&mut self) -> RequestId {
        self.next += 1;
        RequestId::new(format!("r-{}", self.next)).unwrap()
    }

    pub fn set_now(&self, at: &str) {
        self.clock.set(ts(at));
    }

    pub async fn try_run(&mut self, c: Command) -> Result<Outcome, CommandError> {
        self.handler.execute(&c).await
    }

    pub async fn run(&mut self, c: Command) -> Outcome {
        let name = c.name();
        self.handler
            .execute(&c)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub async fn volunteer(&mut self, id: &str, region: &str, joined: &str) -> Outcome {
        let c = Command::RegisterAccount(RegisterAccount {
            request_id: self.rid(),
            account: acc(id),
            kind: AccountKind::Volunteer {
                region: RegionCode::new(region).unwrap(),
                joined_on: day(joined),
            },
        });
        self.run(c).await
    }

    pub async fn organisation(&mut self, id: &str, region: &str) -> Outcome {
        let c = Command::RegisterAccount(RegisterAccount {
            request_id: self.rid(),
            account: acc(id),
            kind: AccountKind::Organisation {
                region: RegionCode::new(region).unwrap(),
            },
        });
        self.run(c).await
    }

    pub async fn project(&mut self, id: &str) -> Outcome {
        let c = Command::RegisterAccount(RegisterAccount {
            request_id: self.rid(),
            account: acc(id),
            kind: AccountKind::Project,
        });
        self.run(c).await
    }

    /// The deposit command (not run): `hours` on `date` for `org`, placed after the
    /// volunteer's earlier service that day.
    #[allow(clippy::too_many_arguments)]
    pub fn deposit_cmd(
        &mut self,
        who: &str,
        org: &str,
        date: &str,
        hours: &str,
        category: &str,
        activity: &str,
        kind: HourKind,
    ) -> Command {
        let d = day(date);
        let secs = (dec(hours) * Decimal::from(3600))
            .trunc()
            .to_string()
            .parse::<i64>()
            .unwrap();
        let used = self.booked.entry((who.to_owned(), d)).or_default();
        let start = d.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::seconds(*used);
        *used += secs;
        Command::DepositHours(DepositHours {
            request_id: self.rid(),
            volunteer: acc(who),
            organisation: acc(org),
            activity: ActivityId::new(activity).unwrap(),
            service_date: d,
            started_at: start,
            ended_at: start + Duration::seconds(secs),
            category: Category::new(category).unwrap(),
            hours: Hours::parse(hours).unwrap(),
            kind,
            verifier: VerifierId::new("staff-1").unwrap(),
        })
    }

    pub async fn deposit(&mut self, who: &str, org: &str, date: &str, hours: &str) -> Outcome {
        let c = self.deposit_cmd(
            who,
            org,
            date,
            hours,
            "elderly-care",
            "act-1",
            HourKind::Credit,
        );
        self.run(c).await
    }

    pub async fn deposit_in(
        &mut self,
        who: &str,
        org: &str,
        date: &str,
        hours: &str,
        category: &str,
        activity: &str,
    ) -> Outcome {
        let c = self.deposit_cmd(who, org, date, hours, category, activity, HourKind::Credit);
        self.run(c).await
    }

    pub async fn honour(&mut self, who: &str, org: &str, date: &str, hours: &str) -> Outcome {
        let c = self.deposit_cmd(
            who,
            org,
            date,
            hours,
            "elderly-care",
            "act-1",
            HourKind::Honour,
        );
        self.run(c).await
    }

    pub async fn spend(&mut self, who: &str, counterparty: &str, hours: &str) -> Outcome {
        let c = Command::SpendHours(SpendHours {
            request_id: self.rid(),
            volunteer: acc(who),
            purpose: SpendPurpose::ReceivedService,
            counterparty: acc(counterparty),
            hours: Hours::parse(hours).unwrap(),
            memo: None,
        });
        self.run(c).await
    }

    pub async fn exchange(&mut self, who: &str, hours: &str) -> Outcome {
        let c = Command::ExchangeHours(ExchangeHours {
            request_id: self.rid(),
            volunteer: acc(who),
            hours: Hours::parse(hours).unwrap(),
            expected_rate_version: None,
        });
        self.run(c).await
    }

    pub fn transfer_cmd(&mut self, from: &str, to: &str, hours: &str) -> Command {
        Command::TransferHours(TransferHours {
            request_id: self.rid(),
            from: acc(from),
            to: acc(to),
            relation: FamilyRelation::Parent,
            hours: Hours::parse(hours).unwrap(),
        })
    }

    pub fn donate_cmd(&mut self, from: &str, project: &str, hours: &str) -> Command {
        Command::DonateHours(DonateHours {
            request_id: self.rid(),
            from: acc(from),
            project: acc(project),
            hours: Hours::parse(hours).unwrap(),
        })
    }

    pub async fn donate(&mut self, from: &str, project: &str, hours: &str) -> Outcome {
        let c = self.donate_cmd(from, project, hours);
        self.run(c).await
    }

    pub fn reverse_cmd(&mut self, account: &str, tx: TransactionId) -> Command {
        Command::ReverseTransaction(ReverseTransaction {
            request_id: self.rid(),
            account: acc(account),
            transaction: tx,
            reason: Note::new("recorded in error").unwrap(),
        })
    }

    pub async fn reverse(&mut self, account: &str, tx: TransactionId) -> Outcome {
        let c = self.reverse_cmd(account, tx);
        self.run(c).await
    }

    pub fn no_show_cmd(&mut self, who: &str, org: &str, date: &str) -> Command {
        Command::RecordNoShow(RecordNoShow {
            request_id: self.rid(),
            volunteer: acc(who),
            organisation: acc(org),
            activity: ActivityId::new("act-x").unwrap(),
            date: day(date),
        })
    }

    pub fn rate_cmd(&mut self, who: &str, deposit: TransactionId, rating: u8) -> Command {
        Command::RateService(RateService {
            request_id: self.rid(),
            volunteer: acc(who),
            deposit,
            rating,
            rater: VerifierId::new("resident-1").unwrap(),
        })
    }

    pub fn close_cmd(&mut self, who: &str) -> Command {
        Command::CloseAccount(CloseAccount {
            request_id: self.rid(),
            account: acc(who),
            reason: Note::new("moved away").unwrap(),
        })
    }

    /// The read models folded from the whole log.
    pub async fn models(&self) -> ReadModels {
        projections::rebuild(&self.log, None).await.unwrap()
    }
}

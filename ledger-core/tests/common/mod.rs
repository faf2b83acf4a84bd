//! Shared helpers for the handler tests: a world of accounts over a `MemoryLog`.
#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger_core::app::{FixedClock, Handler, LedgerConfig};
use ledger_core::domain::account::{AccountId, AccountKind, RegionCode};
use ledger_core::domain::commands::*;
use ledger_core::domain::events::{FamilyRelation, HourKind, SpendPurpose};
use ledger_core::domain::ids::{ActivityId, Category, Note, RequestId, TransactionId, VerifierId};
use ledger_core::domain::units::Hours;
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::EventLog;

pub const NOW: &str = "2026-11-20T12:00:00Z";

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub fn rid(s: &str) -> RequestId {
    RequestId::new(s).unwrap()
}

pub fn h(s: &str) -> Hours {
    Hours::parse(s).unwrap()
}

pub fn dec(s: &str) -> rust_decimal::Decimal {
    rust_decimal::Decimal::from_str(s).unwrap()
}

pub fn handler_over(log: Arc<dyn EventLog>) -> Handler {
    Handler::new(
        log,
        Arc::new(FixedClock::new(ts(NOW))),
        LedgerConfig::default(),
    )
}

pub fn new_handler() -> (MemoryLog, Handler) {
    let log = MemoryLog::new();
    let handler = handler_over(Arc::new(log.clone()));
    (log, handler)
}

pub fn register(req: &str, id: &str, kind: AccountKind) -> Command {
    Command::RegisterAccount(RegisterAccount {
        request_id: rid(req),
        account: acc(id),
        kind,
    })
}

pub fn volunteer_kind() -> AccountKind {
    AccountKind::Volunteer {
        region: RegionCode::new("hangzhou/xihu").unwrap(),
        joined_on: NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
    }
}

pub fn org_kind() -> AccountKind {
    AccountKind::Organisation {
        region: RegionCode::new("hangzhou/xihu").unwrap(),
    }
}

/// A deposit of `hours` for `who` on day `day_index` days before 2026-11-20, 00:00 UTC
/// plus `hour_offset` hours, lasting four hours.
pub fn deposit(req: &str, who: &str, hours: &str, day_index: i64, hour_offset: i64) -> Command {
    let start =
        ts("2026-11-19T00:00:00Z") - Duration::days(day_index) + Duration::hours(hour_offset);
    let end = start + Duration::hours(4);
    Command::DepositHours(DepositHours {
        request_id: rid(req),
        volunteer: acc(who),
        organisation: acc("org"),
        activity: ActivityId::new("act-1").unwrap(),
        service_date: start.date_naive(),
        started_at: start,
        ended_at: end,
        category: Category::new("elderly-care").unwrap(),
        hours: h(hours),
        kind: HourKind::Credit,
        verifier: VerifierId::new("staff-1").unwrap(),
    })
}

pub fn spend(req: &str, who: &str, hours: &str) -> Command {
    Command::SpendHours(SpendHours {
        request_id: rid(req),
        volunteer: acc(who),
        purpose: SpendPurpose::FineOffset,
        counterparty: acc("org"),
        hours: h(hours),
        memo: None,
    })
}

pub fn exchange(req: &str, who: &str, hours: &str) -> Command {
    Command::ExchangeHours(ExchangeHours {
        request_id: rid(req),
        volunteer: acc(who),
        hours: h(hours),
        expected_rate_version: None,
    })
}

pub fn transfer(req: &str, from: &str, to: &str, hours: &str) -> Command {
    Command::TransferHours(TransferHours {
        request_id: rid(req),
        from: acc(from),
        to: acc(to),
        relation: FamilyRelation::Child,
        hours: h(hours),
    })
}

pub fn donate(req: &str, from: &str, project: &str, hours: &str) -> Command {
    Command::DonateHours(DonateHours {
        request_id: rid(req),
        from: acc(from),
        project: acc(project),
        hours: h(hours),
    })
}

pub fn reverse(req: &str, account: &str, tx: TransactionId) -> Command {
    Command::ReverseTransaction(ReverseTransaction {
        request_id: rid(req),
        account: acc(account),
        transaction: tx,
        reason: Note::new("entered twice").unwrap(),
    })
}

/// Register volunteers v1, v2, organisation org and project p.
pub async fn setup(handler: &Handler) {
    for (req, id, kind) in [
        ("r-v1", "v1", volunteer_kind()),
        ("r-v2", "v2", volunteer_kind()),
        ("r-org", "org", org_kind()),
        ("r-p", "p", AccountKind::Project),
    ] {
        handler.execute(&register(req, id, kind)).await.unwrap();
    }
}

//! Shared helpers for the handler tests: a world of accounts over a `MemoryLog`.
// Each test binary uses a different part of the helpers.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use chrono::Duration;
use ledger_core::app::{FixedClock, Handler, LedgerConfig};
use ledger_core::domain::account::{AccountKind, RegionCode};
use ledger_core::domain::commands::testkit as kit;
pub use ledger_core::domain::commands::testkit::{acc, dec, named, ts};
use ledger_core::domain::commands::Command;
use ledger_core::domain::ids::{RequestId, TransactionId};
use ledger_core::log::memory::MemoryLog;
use ledger_core::log::EventLog;

pub const NOW: &str = "2026-11-20T12:00:00Z";

pub fn rid(s: &str) -> RequestId {
    RequestId::new(s).unwrap()
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

// The commands the handler tests send, with the request ids they choose: the test
// kit's builders (`ledger_core::domain::commands::testkit`) under a named id.

pub fn register(req: &str, id: &str, kind: AccountKind) -> Command {
    named(req, kit::register(id, kind))
}

pub fn volunteer_kind() -> AccountKind {
    kit::volunteer_kind()
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
    named(
        req,
        Command::DepositHours(kit::deposit(who, hours, start, end)),
    )
}

pub fn spend(req: &str, who: &str, hours: &str) -> Command {
    named(req, kit::spend(who, hours))
}

pub fn exchange(req: &str, who: &str, hours: &str) -> Command {
    named(req, kit::exchange(who, hours))
}

pub fn transfer(req: &str, from: &str, to: &str, hours: &str) -> Command {
    named(req, kit::transfer(from, to, hours))
}

pub fn donate(req: &str, from: &str, project: &str, hours: &str) -> Command {
    named(req, kit::donate(from, project, hours))
}

pub fn reverse(req: &str, account: &str, tx: TransactionId) -> Command {
    named(req, kit::reverse(account, tx))
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

//! Given/when/then support for the command tests: a tiny world of account states
//! built by deciding commands (so "given" uses the same rules as "when").

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::domain::account::{AccountKind, RegionCode};
use crate::domain::events::{
    FamilyRelation, HourKind, HoursReceived, LedgerEvent, ReceiptCause, SpendPurpose,
};
use crate::domain::ids::{ActivityId, Category, Note, VerifierId};
use crate::domain::units::{Hours, Unit};

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::from_str(s).unwrap()
}

pub fn h(s: &str) -> Hours {
    Hours::parse(s).unwrap()
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn rid() -> RequestId {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RequestId::new(format!("req-{n}")).unwrap()
}

pub struct World {
    pub accounts: BTreeMap<AccountId, AccountState>,
    pub now: DateTime<Utc>,
    pub rate: ExchangeRate,
    pub calendar: chrono::FixedOffset,
    pub hold_timeout: chrono::Duration,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// An empty world at 2026-11-20T12:00Z with the default rate.
    pub fn new() -> Self {
        Self {
            accounts: BTreeMap::new(),
            now: ts("2026-11-20T12:00:00Z"),
            rate: ExchangeRate::default(),
            calendar: chrono::FixedOffset::east_opt(0).unwrap(),
            hold_timeout: chrono::Duration::minutes(15),
        }
    }

    pub fn state(&self, id: &str) -> AccountState {
        self.accounts
            .get(&acc(id))
            .cloned()
            .unwrap_or_else(|| AccountState::empty(acc(id)))
    }

    pub fn balance(&self, id: &str, unit: Unit) -> Decimal {
        self.state(id).balance(unit)
    }

    /// When: decide `cmd` against the world, without applying it.
    pub fn when(&self, cmd: &Command) -> Result<LedgerEvent, Rejection> {
        let target = self.state(cmd.target().as_str());
        let others: BTreeMap<AccountId, std::sync::Arc<AccountState>> = self
            .accounts
            .iter()
            .map(|(id, s)| (id.clone(), std::sync::Arc::new(s.clone())))
            .collect();
        let ctx = Context {
            now: self.now,
            calendar: self.calendar,
            transaction: TransactionId::from(cmd.event_id()),
            target: &target,
            others: &others,
            rate: &self.rate,
            hold_timeout: self.hold_timeout,
        };
        cmd.decide(&ctx)
    }

    /// Given: decide `cmd`, which must succeed, and apply it (and its receipts).
    pub fn given(&mut self, cmd: Command) -> TransactionId {
        let event = self
            .when(&cmd)
            .unwrap_or_else(|r| panic!("given {cmd:?}: {r}"));
        self.apply(
            cmd.target().clone(),
            TransactionId::from(cmd.event_id()),
            event,
        )
    }

    pub fn apply(
        &mut self,
        target: AccountId,
        tx: TransactionId,
        event: LedgerEvent,
    ) -> TransactionId {
        if let Some(postings) = event.postings() {
            assert!(crate::domain::postings::balanced(postings));
            let cause = match &event {
                LedgerEvent::HoursTransferred(_) => ReceiptCause::Transfer,
                LedgerEvent::HoursDonated(_) => ReceiptCause::Donation,
                _ => ReceiptCause::Reversal,
            };
            for p in postings {
                if p.amount > Decimal::ZERO && !p.account.is_system() && p.account != target {
                    let receipt = LedgerEvent::HoursReceived(HoursReceived {
                        transaction: tx,
                        from: target.clone(),
                        to: p.account.clone(),
                        hours: Hours::new(p.amount).unwrap(),
                        cause,
                        recorded_at: self.now,
                    });
                    self.accounts
                        .entry(p.account.clone())
                        .or_insert_with(|| AccountState::empty(p.account.clone()))
                        .apply(tx, &receipt);
                }
            }
        }
        self.accounts
            .entry(target.clone())
            .or_insert_with(|| AccountState::empty(target))
            .apply(tx, &event);
        tx
    }

    pub fn register(&mut self, id: &str, kind: AccountKind) -> &mut Self {
        self.given(register(id, kind));
        self
    }

    pub fn volunteer(&mut self, id: &str) -> &mut Self {
        self.register(id, volunteer_kind())
    }

    pub fn organisation(&mut self, id: &str) -> &mut Self {
        self.register(
            id,
            AccountKind::Organisation {
                region: RegionCode::new("hangzhou/xihu").unwrap(),
            },
        )
    }

    pub fn project(&mut self, id: &str) -> &mut Self {
        self.register(id, AccountKind::Project)
    }

    pub fn merchant(&mut self, id: &str) -> &mut Self {
        self.register(id, AccountKind::Merchant)
    }

    pub fn bank(&mut self, id: &str) -> &mut Self {
        self.register(id, AccountKind::Bank)
    }

    /// A standard world: volunteers v1, v2, organisation org, project p, merchant m.
    pub fn standard() -> Self {
        let mut w = Self::new();
        w.volunteer("v1")
            .volunteer("v2")
            .organisation("org")
            .project("p")
            .merchant("m");
        w
    }

    /// Given v1 (or `who`) holds `hours` credit hours from a deposit on 2026-11-01
    /// at a distinct hour slot `slot` (0..24).
    pub fn credit(&mut self, who: &str, hours: &str, slot: u32) -> TransactionId {
        let start = ts("2026-10-01T00:00:00Z") + chrono::Duration::hours(i64::from(slot) * 24);
        let mut d = deposit(who, hours, start, start + chrono::Duration::hours(24));
        d.service_date = start.date_naive();
        self.given(Command::DepositHours(d))
    }
}

pub fn volunteer_kind() -> AccountKind {
    AccountKind::Volunteer {
        region: RegionCode::new("hangzhou/xihu/lingyin/c3").unwrap(),
        joined_on: day("2020-01-01"),
    }
}

pub fn register(id: &str, kind: AccountKind) -> Command {
    Command::RegisterAccount(RegisterAccount {
        request_id: rid(),
        account: acc(id),
        kind,
    })
}

/// A credit deposit by organisation `org` for `who` over `[start, end)`.
pub fn deposit(who: &str, hours: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> DepositHours {
    DepositHours {
        request_id: rid(),
        volunteer: acc(who),
        organisation: acc("org"),
        activity: ActivityId::new("act-1").unwrap(),
        service_date: start.date_naive(),
        started_at: start,
        ended_at: end,
        category: Category::new("elderly-care").unwrap(),
        hours: h(hours),
        kind: HourKind::Credit,
        verifier: VerifierId::new("staff-7").unwrap(),
    }
}

pub fn spend(who: &str, hours: &str) -> Command {
    Command::SpendHours(SpendHours {
        request_id: rid(),
        volunteer: acc(who),
        purpose: SpendPurpose::ReceivedService,
        counterparty: acc("org"),
        hours: h(hours),
        memo: None,
    })
}

pub fn exchange(who: &str, hours: &str) -> Command {
    Command::ExchangeHours(ExchangeHours {
        request_id: rid(),
        volunteer: acc(who),
        hours: h(hours),
        expected_rate_version: None,
    })
}

pub fn transfer(from: &str, to: &str, hours: &str) -> Command {
    Command::TransferHours(TransferHours {
        request_id: rid(),
        from: acc(from),
        to: acc(to),
        relation: FamilyRelation::Spouse,
        hours: h(hours),
    })
}

pub fn donate(from: &str, project: &str, hours: &str) -> Command {
    Command::DonateHours(DonateHours {
        request_id: rid(),
        from: acc(from),
        project: acc(project),
        hours: h(hours),
    })
}

pub fn reverse(account: &str, tx: TransactionId) -> Command {
    Command::ReverseTransaction(ReverseTransaction {
        request_id: rid(),
        account: acc(account),
        transaction: tx,
        reason: Note::new("recorded in error").unwrap(),
    })
}

pub fn close(account: &str) -> Command {
    Command::CloseAccount(CloseAccount {
        request_id: rid(),
        account: acc(account),
        reason: Note::new("moved away").unwrap(),
    })
}

pub fn purpose() -> crate::domain::ids::Purpose {
    crate::domain::ids::Purpose::new("volunteer-loan").unwrap()
}

/// `who` consents to `bank` for [`purpose`] until `expires_at`.
pub fn grant(who: &str, bank: &str, expires_at: &str) -> Command {
    Command::GrantConsent(GrantConsent {
        request_id: rid(),
        volunteer: acc(who),
        bank: acc(bank),
        purpose: purpose(),
        expires_at: ts(expires_at),
    })
}

/// `cmd` under the request id `req`: for tests of retries and idempotency, where the
/// id must be chosen.
pub fn named(req: &str, mut cmd: Command) -> Command {
    *cmd.request_id_mut() = RequestId::new(req).unwrap();
    cmd
}

/// The reason of a rejection, for terse assertions.
pub fn reason(r: Result<LedgerEvent, Rejection>) -> &'static str {
    match r {
        Ok(e) => panic!("expected a rejection, got {e:?}"),
        Err(r) => r.reason(),
    }
}

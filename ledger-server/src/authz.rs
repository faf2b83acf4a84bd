//! Who may call what: the one place roles and scopes are checked.
//!
//! Authentication (`crate::auth`) puts the [`Caller`] into every request's extensions;
//! each RPC then asks here whether the caller's role allows it and, for platforms,
//! merchants and banks, whether the accounts it touches are in the caller's scope.
//!
//! | role | may |
//! |---|---|
//! | platform | every command and account query for accounts of its regions (region-code prefixes) or its organisations; deposits and no-shows also for any volunteer when the organisation is its own, and the reversal and rating of such a deposit; the reversal of a transfer or donation sent by an account in its scope (on the receiver's stream); aggregate queries over regions it covers; consents, inquiry history and redemption tokens of its volunteers |
//! | merchant | its own redemptions: star level of a token's presenter, authorise, capture, void, list, settle |
//! | bank | credit reports of volunteers who consented to it (each one an inquiry), and the reports it was served |
//! | auditor | every query and the audit service; no writes |
//! | admin | everything, except the bank service (an inquiry is made by a bank) |
//!
//! A refusal is `PERMISSION_DENIED` with reason `NOT_IN_SCOPE` and the same message
//! whether the account is outside the scope or does not exist, so a partner cannot
//! probe for accounts. Missing credentials never get this far (`UNAUTHENTICATED`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledger_core::app::Handler;
use ledger_core::domain::account::{AccountId, AccountKind};
use ledger_core::domain::commands::Command;
use ledger_core::domain::events::{LedgerEvent, ReceiptCause};
use ledger_core::domain::state::TxKind;
use ledger_core::log::EventLog;
use tonic::{Code, Request, Status};

pub use crate::auth::{Caller, Role};
use crate::status::Described;

/// The coarse role classes the table above is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Platform,
    Merchant,
    Bank,
    Auditor,
    Admin,
}

impl RoleKind {
    pub fn of(role: &Role) -> Self {
        match role {
            Role::Platform { .. } => Self::Platform,
            Role::Merchant { .. } => Self::Merchant,
            Role::Bank { .. } => Self::Bank,
            Role::Auditor => Self::Auditor,
            Role::Admin => Self::Admin,
        }
    }
}

/// The caller of `request`, as authentication left it. None means the request did not
/// pass through the authentication layer: refuse (fail closed).
#[allow(clippy::result_large_err)] // tonic's Status is the error type of every RPC
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            Described {
                code: Code::Unauthenticated,
                reason: "UNAUTHENTICATED",
                message: "no authenticated caller; send `authorization: Bearer <api key>`".into(),
                metadata: HashMap::new(),
            }
            .into_status()
        })
}

/// The refusal of a call outside the caller's role or scope.
pub fn denied(caller: &Caller, what: &str) -> Described {
    Described {
        code: Code::PermissionDenied,
        reason: "NOT_IN_SCOPE",
        message: format!(
            "caller {} ({}) may not {what}, or the account is not one it may see",
            caller.name,
            caller.role.name()
        ),
        metadata: [("role".to_owned(), caller.role.name().to_owned())].into(),
    }
}

/// Allow only the listed role classes.
pub fn require(caller: &Caller, allowed: &[RoleKind], what: &str) -> Result<(), Described> {
    if allowed.contains(&RoleKind::of(&caller.role)) {
        Ok(())
    } else {
        Err(denied(caller, what))
    }
}

/// True if region path `region` is `prefix` or below it (`hangzhou/xihu` covers
/// `hangzhou/xihu/lingyin`, not `hangzhou/xihu2`).
pub fn region_covers(prefix: &str, region: &str) -> bool {
    region == prefix
        || (region.starts_with(prefix) && region.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// True if a platform with these scopes covers the region node `region` ("" is the
/// whole ledger, which no regional platform covers).
pub fn platform_covers_region(regions: &[String], region: &str) -> bool {
    !region.is_empty() && regions.iter().any(|p| region_covers(p, region))
}

/// What authorisation needs to know about an account: its registration (kind and
/// region never change after it).
#[derive(Clone, Debug)]
pub struct AccountFacts {
    pub kind: Option<AccountKind>,
}

impl AccountFacts {
    pub fn region(&self) -> Option<&str> {
        match &self.kind {
            Some(AccountKind::Volunteer { region, .. } | AccountKind::Organisation { region }) => {
                Some(region.as_str())
            }
            _ => None,
        }
    }
}

/// Most registrations [`Registrations`] keeps. A registration is ~100 bytes, so 65,536
/// is a few MiB and covers the accounts a busy hour of a city touches; when full the
/// cache is emptied and refills (option not taken: an LRU, whose bookkeeping costs
/// every hit for a miss that is one short read).
pub const REGISTRATIONS_CACHED_MAX: usize = 65_536;

/// Accounts' registrations (kind and region), read from the first event of each
/// stream and kept: they never change once written, so a cached one is never stale.
/// Without it every platform call would read and decode a registration event before
/// doing its work. Unregistered accounts are not cached (they may register any time).
pub struct Registrations {
    log: Arc<dyn EventLog>,
    cache: Mutex<HashMap<AccountId, AccountKind>>,
}

impl Registrations {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self {
            log,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, AccountKind>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `account`'s registration. An account that does not exist has no kind; so has
    /// one whose stream cannot be read, which then reads as out of scope (the command
    /// itself reports the log error if it runs).
    pub async fn facts(&self, account: &AccountId) -> AccountFacts {
        if let Some(kind) = self.lock().get(account) {
            return AccountFacts {
                kind: Some(kind.clone()),
            };
        }
        let kind = match self.log.read_stream(&account.stream(), 0, 1).await {
            Ok(page) => {
                page.first()
                    .and_then(|e| match LedgerEvent::decode(&e.event_type, &e.data) {
                        Ok(LedgerEvent::AccountRegistered(r)) => Some(r.kind),
                        _ => None,
                    })
            }
            Err(_) => None,
        };
        if let Some(kind) = &kind {
            let mut cache = self.lock();
            if cache.len() >= REGISTRATIONS_CACHED_MAX {
                cache.clear();
            }
            cache.insert(account.clone(), kind.clone());
        }
        AccountFacts { kind }
    }
}

/// True if the platform scope covers `account`: its organisations by id, volunteers
/// and organisations by region.
pub async fn platform_covers_account(
    registrations: &Registrations,
    regions: &[String],
    organisations: &[String],
    account: &AccountId,
) -> bool {
    if organisations.iter().any(|o| o == account.as_str()) {
        return true;
    }
    registrations
        .facts(account)
        .await
        .region()
        .is_some_and(|r| platform_covers_region(regions, r))
}

/// May `caller` see `account`'s own record (account queries, consents, tokens)?
/// Admins and auditors: any; platforms: their scope; others: no.
pub async fn require_account(
    registrations: &Registrations,
    caller: &Caller,
    account: &AccountId,
    what: &str,
    writes: bool,
) -> Result<(), Described> {
    match &caller.role {
        Role::Admin => Ok(()),
        Role::Auditor if !writes => Ok(()),
        Role::Platform {
            regions,
            organisations,
        } if platform_covers_account(registrations, regions, organisations, account).await => {
            Ok(())
        }
        _ => Err(denied(caller, what)),
    }
}

/// May `caller` execute `command` through the write API? `handler` gives the state of
/// an account outside a platform's regions when the platform corrects a transaction
/// there ([`corrects_own_transaction`]).
pub async fn require_command(
    registrations: &Registrations,
    handler: &Handler,
    caller: &Caller,
    command: &Command,
) -> Result<(), Described> {
    // Written only for a refusal: an allowed command (every one, under load) needs no
    // text.
    let what = || format!("execute {}", command.name());
    let (regions, organisations) = match &caller.role {
        Role::Admin => return Ok(()),
        Role::Platform {
            regions,
            organisations,
        } => (regions, organisations),
        _ => return Err(denied(caller, &what())),
    };
    let own_org = |o: &AccountId| organisations.iter().any(|x| x == o.as_str());
    let allowed = match command {
        // The region is in the request; merchants, projects and banks are set up by
        // an administrator.
        Command::RegisterAccount(c) => match &c.kind {
            AccountKind::Volunteer { region, .. } | AccountKind::Organisation { region } => {
                platform_covers_region(regions, region.as_str()) || own_org(&c.account)
            }
            _ => false,
        },
        // An organisation's platform records its service for volunteers anywhere.
        Command::DepositHours(c) if own_org(&c.organisation) => true,
        Command::RecordNoShow(c) if own_org(&c.organisation) => true,
        // Merchant, bank and system commands have their own services and roles.
        Command::AuthorizeRedemption(_)
        | Command::CaptureRedemption(_)
        | Command::VoidRedemption(_)
        | Command::ServeCreditReport(_)
        | Command::ExpireRedemptionHold(_) => false,
        other => {
            platform_covers_account(registrations, regions, organisations, other.target()).await
                || corrects_own_transaction(registrations, handler, regions, organisations, other)
                    .await?
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(denied(caller, &what()))
    }
}

/// True if `command` corrects a transaction the platform could make although the
/// account it writes is outside its regions: a reversal or rating of a deposit made
/// through one of its organisations (which may record service for any volunteer), or
/// the reversal of a transfer or donation its account sent (a reversal is written on
/// the receiver's stream: another city's family member, or a project). Without this a
/// platform could make these transactions and not undo its own mistakes (a platform's
/// probe). Read from the account's state (a command about to run loads it anyway),
/// and only for a registered account (its registration is one cached read), so a
/// made-up id costs no fold and leaves nothing in the state cache. An unknown account
/// or transaction, or one the platform could not have made, is out of scope with the
/// same answer as any other (`NOT_IN_SCOPE`: no probing); a log that cannot be read is
/// `UNAVAILABLE` (retry), not a refusal.
///
/// The organisation a deposit names is the one that verified the service, so its
/// platform may correct the deposit whoever recorded it: a platform that records
/// service under another platform's organisation hands that platform the say over it.
async fn corrects_own_transaction(
    registrations: &Registrations,
    handler: &Handler,
    regions: &[String],
    organisations: &[String],
    command: &Command,
) -> Result<bool, Described> {
    let (account, transaction, rating) = match command {
        Command::ReverseTransaction(c) => (&c.account, c.transaction, false),
        Command::RateService(c) => (&c.volunteer, c.deposit, true),
        _ => return Ok(false),
    };
    if registrations.facts(account).await.kind.is_none() {
        return Ok(false);
    }
    let state = handler
        .load(account)
        .await
        .map_err(|e| crate::status::describe(&e))?;
    let Some(tx) = state.transactions.get(&transaction) else {
        return Ok(false);
    };
    let Some(party) = &tx.counterparty else {
        return Ok(false);
    };
    Ok(match tx.kind {
        TxKind::Deposit => organisations.iter().any(|o| o == party.as_str()),
        TxKind::Received(ReceiptCause::Transfer | ReceiptCause::Donation) if !rating => {
            platform_covers_account(registrations, regions, organisations, party).await
        }
        _ => false,
    })
}

/// May `caller` act for merchant `merchant`? The merchant itself and admins; auditors
/// only to read (`writes` false).
pub fn require_merchant(
    caller: &Caller,
    merchant: &AccountId,
    what: &str,
    writes: bool,
) -> Result<(), Described> {
    match &caller.role {
        Role::Admin => Ok(()),
        Role::Auditor if !writes => Ok(()),
        Role::Merchant { merchant: own } if own == merchant.as_str() => Ok(()),
        _ => Err(denied(caller, what)),
    }
}

/// The bank a caller is, for the bank service.
pub fn require_bank(caller: &Caller, what: &str) -> Result<AccountId, Described> {
    match &caller.role {
        Role::Bank { bank } => AccountId::new(bank).map_err(|_| denied(caller, what)),
        _ => Err(denied(caller, what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_their_subtree_only() {
        assert!(region_covers("hangzhou/xihu", "hangzhou/xihu"));
        assert!(region_covers("hangzhou/xihu", "hangzhou/xihu/lingyin/c3"));
        assert!(!region_covers("hangzhou/xihu", "hangzhou/xihu2"));
        assert!(!region_covers("hangzhou/xihu", "hangzhou"));
        assert!(!platform_covers_region(&["hangzhou".into()], ""));
        assert!(platform_covers_region(&["hangzhou".into()], "hangzhou/a"));
    }
}

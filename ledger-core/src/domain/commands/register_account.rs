//! `RegisterAccount`: open an account of a kind. Registering is an event
//! (`AccountRegistered.v1`), the first of the account's stream.

use serde::Serialize;

use super::Context;
use crate::domain::account::{AccountId, AccountKind};
use crate::domain::events::{AccountRegistered, LedgerEvent};
use crate::domain::ids::RequestId;
use crate::domain::rejection::Rejection;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegisterAccount {
    pub request_id: RequestId,
    pub account: AccountId,
    pub kind: AccountKind,
}

impl RegisterAccount {
    /// Rules: the id is not under the reserved `system:` prefix in any letter case,
    /// and no account with the id exists (an id is never reused, even after closing:
    /// its history stays).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        if self.account.is_reserved() {
            return Err(Rejection::ReservedAccountId {
                account: self.account.clone(),
            });
        }
        if ctx.target.is_registered() {
            return Err(Rejection::AccountAlreadyExists {
                account: self.account.clone(),
            });
        }
        // A join date still to come would give the credit model's tenure a start the
        // volunteer has not reached (credit-score.md, "Where the inputs come from").
        if let AccountKind::Volunteer { joined_on, .. } = &self.kind {
            let today = ctx.today();
            if *joined_on > today {
                return Err(Rejection::JoinDateInFuture {
                    joined_on: *joined_on,
                    today,
                });
            }
        }
        Ok(LedgerEvent::AccountRegistered(AccountRegistered {
            account: self.account.clone(),
            kind: self.kind.clone(),
            registered_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::domain::account::AccountKind;
    use crate::domain::events::LedgerEvent;

    #[test]
    fn given_no_account_when_registering_then_account_registered() {
        let w = World::new();
        let e = w.when(&register("v1", volunteer_kind())).unwrap();
        let LedgerEvent::AccountRegistered(e) = e else {
            panic!("{e:?}")
        };
        assert_eq!(e.account.as_str(), "v1");
        assert_eq!(e.kind, volunteer_kind());
        assert_eq!(e.registered_at, w.now);
    }

    #[test]
    fn when_the_join_date_is_after_today_then_join_date_in_future() {
        use crate::domain::account::RegionCode;
        // The world's now is 2026-11-20T12:00Z, its calendar UTC.
        let joined = |d: &str| AccountKind::Volunteer {
            region: RegionCode::new("hangzhou/xihu").unwrap(),
            joined_on: d.parse().unwrap(),
        };
        let w = World::new();
        assert!(w.when(&register("v1", joined("2026-11-20"))).is_ok());
        assert!(w.when(&register("v1", joined("2019-01-01"))).is_ok());
        assert_eq!(
            reason(w.when(&register("v1", joined("2026-11-21")))),
            "JOIN_DATE_IN_FUTURE"
        );
        assert_eq!(
            reason(w.when(&register("v1", joined("9999-12-31")))),
            "JOIN_DATE_IN_FUTURE"
        );
    }

    #[test]
    fn given_a_registered_account_when_registering_it_again_then_already_exists() {
        let mut w = World::new();
        w.volunteer("v1");
        assert_eq!(
            reason(w.when(&register("v1", AccountKind::Merchant))),
            "ACCOUNT_ALREADY_EXISTS"
        );
    }

    #[test]
    fn given_a_closed_account_when_registering_its_id_then_already_exists() {
        let mut w = World::new();
        w.volunteer("v1");
        w.given(close("v1"));
        assert_eq!(
            reason(w.when(&register("v1", volunteer_kind()))),
            "ACCOUNT_ALREADY_EXISTS"
        );
    }

    #[test]
    fn when_registering_a_system_id_then_reserved() {
        let w = World::new();
        assert_eq!(
            reason(w.when(&register("system:hour-issuance", AccountKind::Project))),
            "ACCOUNT_ID_RESERVED"
        );
        for id in ["System:hour-issuance", "SYSTEM:x", "sYsTeM:"] {
            assert_eq!(
                reason(w.when(&register(id, AccountKind::Project))),
                "ACCOUNT_ID_RESERVED",
                "{id}"
            );
        }
        // Only the prefix is reserved: ids that merely contain it are not.
        for id in ["systems:x", "my-system:x", "system"] {
            assert!(w.when(&register(id, AccountKind::Project)).is_ok(), "{id}");
        }
    }
}

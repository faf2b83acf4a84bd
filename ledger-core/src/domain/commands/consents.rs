//! `GrantConsent` and `WithdrawConsent`: a volunteer authorises a bank to read their
//! credit report for one purpose until an expiry, or takes that back. Recorded by the
//! volunteer's platform on the volunteer's stream (`ConsentGranted.v1`,
//! `ConsentWithdrawn.v1`), so the inquiry that relies on a consent is decided on the
//! same stream, under the same optimistic-concurrency check: a withdrawal and an
//! inquiry racing each other cannot both win.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{require_open, Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{ConsentGranted, ConsentWithdrawn, LedgerEvent};
use crate::domain::ids::{Purpose, RequestId};
use crate::domain::rejection::Rejection;

/// Longest a consent may last. A year covers a loan application and its review; a
/// standing authority for longer must be renewed by the volunteer, so a forgotten
/// consent does not stay open for ever.
pub const CONSENT_DAYS_MAX: i64 = 366;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantConsent {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub bank: AccountId,
    pub purpose: Purpose,
    #[serde(with = "crate::domain::serde_time::utc")]
    pub expires_at: DateTime<Utc>,
}

impl GrantConsent {
    /// Rules: open volunteer; the bank is a registered, open bank; the consent expires
    /// after now (`ConsentExpiryInPast`) and within [`CONSENT_DAYS_MAX`]
    /// (`ConsentTooLong`). A consent to a bank that already has one replaces it.
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        require_open(&ctx.other(&self.bank), Kind::Bank)?;
        if self.expires_at <= ctx.now {
            return Err(Rejection::ConsentExpiryInPast {
                expires_at: self.expires_at,
                now: ctx.now,
            });
        }
        if self.expires_at > ctx.now + chrono::Duration::days(CONSENT_DAYS_MAX) {
            return Err(Rejection::ConsentTooLong {
                max_days: CONSENT_DAYS_MAX,
            });
        }
        Ok(LedgerEvent::ConsentGranted(ConsentGranted {
            consent: ctx.transaction,
            volunteer: self.volunteer.clone(),
            bank: self.bank.clone(),
            purpose: self.purpose.clone(),
            expires_at: self.expires_at,
            recorded_at: ctx.now,
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WithdrawConsent {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub bank: AccountId,
}

impl WithdrawConsent {
    /// Rules: registered volunteer (closed is fine: a volunteer who leaves may still
    /// withdraw); a consent to the bank that has not expired (`NoCurrentConsent`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        if !ctx.target.is_registered() {
            return Err(Rejection::UnknownAccount {
                account: self.volunteer.clone(),
            });
        }
        let consent = ctx
            .target
            .consents
            .get(&self.bank)
            .filter(|c| ctx.now < c.expires_at)
            .ok_or_else(|| Rejection::NoCurrentConsent {
                volunteer: self.volunteer.clone(),
                bank: self.bank.clone(),
            })?;
        Ok(LedgerEvent::ConsentWithdrawn(ConsentWithdrawn {
            consent: consent.consent,
            volunteer: self.volunteer.clone(),
            bank: self.bank.clone(),
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use super::*;

    #[test]
    fn given_a_bank_when_granting_a_consent_then_it_is_current_until_expiry() {
        let mut w = World::standard();
        w.bank("b1");
        let c = grant("v1", "b1", "2027-01-01T00:00:00Z");
        let LedgerEvent::ConsentGranted(e) = w.when(&c).unwrap() else {
            panic!()
        };
        assert_eq!(e.bank.as_str(), "b1");
        w.given(c);
        let s = w.state("v1");
        let p = purpose();
        assert!(s.current_consent(&acc("b1"), &p, w.now).is_some());
        assert!(s
            .current_consent(&acc("b1"), &p, ts("2027-01-01T00:00:00Z"))
            .is_none());
        assert!(s
            .current_consent(&acc("b1"), &Purpose::new("other").unwrap(), w.now)
            .is_none());
        assert!(s.current_consent(&acc("b2"), &p, w.now).is_none());
    }

    #[test]
    fn when_granting_to_a_non_bank_or_with_a_bad_expiry_then_refused() {
        let mut w = World::standard();
        w.bank("b1");
        assert_eq!(
            reason(w.when(&grant("v1", "m", "2027-01-01T00:00:00Z"))),
            "WRONG_ACCOUNT_KIND"
        );
        assert_eq!(
            reason(w.when(&grant("v1", "nobody", "2027-01-01T00:00:00Z"))),
            "UNKNOWN_ACCOUNT"
        );
        assert_eq!(
            reason(w.when(&grant("v1", "b1", "2026-11-20T12:00:00Z"))),
            "CONSENT_EXPIRY_IN_PAST"
        );
        assert_eq!(
            reason(w.when(&grant("v1", "b1", "2028-01-01T00:00:00Z"))),
            "CONSENT_TOO_LONG"
        );
    }

    #[test]
    fn given_a_consent_when_withdrawing_then_none_is_current_and_a_second_withdrawal_is_refused() {
        let mut w = World::standard();
        w.bank("b1");
        w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        w.given(withdraw("v1", "b1"));
        assert!(w.state("v1").consents.is_empty());
        assert_eq!(reason(w.when(&withdraw("v1", "b1"))), "NO_CURRENT_CONSENT");
    }

    #[test]
    fn given_an_expired_consent_when_withdrawing_then_no_current_consent() {
        let mut w = World::standard();
        w.bank("b1");
        w.given(grant("v1", "b1", "2026-11-21T00:00:00Z"));
        w.now = ts("2026-11-22T00:00:00Z");
        assert_eq!(reason(w.when(&withdraw("v1", "b1"))), "NO_CURRENT_CONSENT");
    }

    fn withdraw(v: &str, b: &str) -> Command {
        Command::WithdrawConsent(WithdrawConsent {
            request_id: rid(),
            volunteer: acc(v),
            bank: acc(b),
        })
    }
}

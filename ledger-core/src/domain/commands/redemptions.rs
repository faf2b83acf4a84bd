//! Redemptions at a merchant: `AuthorizeRedemption` (a hold on the volunteer's points
//! against a signed, single-use token), then `CaptureRedemption` (possibly for less) or
//! `VoidRedemption`; an uncaptured hold expires after the configured hold timeout and
//! the server's sweeper records it (`ExpireRedemptionHold`). All on the volunteer's
//! stream, so holds, captures and the balance they draw on are decided together.
//!
//! Why holds move nothing until captured: a hold is a promise, not a payment. Keeping
//! the points in the volunteer's balance (less what open holds keep) means a void or an
//! expiry is a fact with no postings to undo, and only captures reach the books
//! (`volunteer → system:points-redeemed`, the merchant named in the event). Option not
//! taken: moving held points to a suspense account, which doubles the postings of
//! every redemption and makes expiry a transaction that must itself be written for
//! the books to balance.

use rust_decimal::Decimal;
use serde::Serialize;

use super::{require_open, Context, Kind};
use crate::domain::account::{AccountId, SystemAccount};
use crate::domain::events::{
    LedgerEvent, RedemptionAuthorized, RedemptionCaptured, RedemptionHoldExpired, RedemptionVoided,
};
use crate::domain::ids::{RequestId, TransactionId};
use crate::domain::postings::movement;
use crate::domain::rejection::Rejection;
use crate::domain::state::{HoldRecord, HoldStatus};
use crate::domain::token::RedemptionClaims;
use crate::domain::units::{Points, Unit};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorizeRedemption {
    pub request_id: RequestId,
    pub merchant: AccountId,
    /// The claims of a token whose signature the server has verified.
    pub token: RedemptionClaims,
    pub points: Points,
}

impl AuthorizeRedemption {
    /// Rules: open merchant; open volunteer; the token has not expired
    /// (`TokenExpired`) nor been used (`TokenAlreadyUsed`); the points are within the
    /// token's maximum (`TokenMaximumExceeded`) and available to the volunteer
    /// (`InsufficientPoints`). The hold expires after the configured hold timeout.
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(&ctx.other(&self.merchant), Kind::Merchant)?;
        require_open(ctx.target, Kind::Volunteer)?;
        if ctx.now >= self.token.expires_at {
            return Err(Rejection::TokenExpired {
                expires_at: self.token.expires_at,
            });
        }
        if ctx.target.tokens_used.contains(&self.token.id) {
            return Err(Rejection::TokenAlreadyUsed);
        }
        if self.points > self.token.points_max {
            return Err(Rejection::TokenMaximumExceeded {
                max: self.token.points_max.value(),
                requested: self.points.value(),
            });
        }
        let available = ctx.target.points_available(ctx.now);
        if available < self.points.value() {
            return Err(Rejection::InsufficientPoints {
                requested: self.points.value(),
            });
        }
        Ok(LedgerEvent::RedemptionAuthorized(RedemptionAuthorized {
            hold: ctx.transaction,
            volunteer: self.token.volunteer.clone(),
            merchant: self.merchant.clone(),
            token: self.token.id,
            points: self.points,
            expires_at: ctx.now + ctx.hold_timeout,
            recorded_at: ctx.now,
        }))
    }
}

/// The hold `hold` of `merchant` on the target's stream, open and unexpired at now.
fn open_hold<'a>(
    ctx: &'a Context<'_>,
    merchant: &AccountId,
    hold: TransactionId,
) -> Result<&'a HoldRecord, Rejection> {
    let record = ctx
        .target
        .holds
        .get(&hold)
        .filter(|h| &h.merchant == merchant)
        .ok_or(Rejection::UnknownHold { hold })?;
    match record.status {
        HoldStatus::Captured => return Err(Rejection::HoldAlreadyCaptured { hold }),
        HoldStatus::Voided => return Err(Rejection::HoldVoided { hold }),
        HoldStatus::Expired => {
            return Err(Rejection::HoldExpired {
                hold,
                expires_at: record.expires_at,
            })
        }
        HoldStatus::Open => {}
    }
    if ctx.now >= record.expires_at {
        return Err(Rejection::HoldExpired {
            hold,
            expires_at: record.expires_at,
        });
    }
    Ok(record)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureRedemption {
    pub request_id: RequestId,
    pub merchant: AccountId,
    pub volunteer: AccountId,
    pub hold: TransactionId,
    pub points: Points,
}

impl CaptureRedemption {
    /// Rules: the hold is this merchant's (`UnknownHold`), not captured
    /// (`HoldAlreadyCaptured`), voided (`HoldVoided`) or expired (`HoldExpired`); the
    /// points are at most the hold's (`CaptureExceedsHold`). The rest is released.
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        let hold = open_hold(ctx, &self.merchant, self.hold)?;
        if self.points.value() > hold.points {
            return Err(Rejection::CaptureExceedsHold {
                hold: self.hold,
                held: hold.points,
                requested: self.points.value(),
            });
        }
        let balance = ctx.target.balance(Unit::Points);
        if balance < self.points.value() {
            // Only a reversal of an exchange can take held points away (it may not:
            // reversals respect holds); kept as a rule rather than trusted.
            return Err(Rejection::InsufficientPoints {
                requested: self.points.value(),
            });
        }
        Ok(LedgerEvent::RedemptionCaptured(RedemptionCaptured {
            transaction: ctx.transaction,
            hold: self.hold,
            volunteer: self.volunteer.clone(),
            merchant: self.merchant.clone(),
            points: self.points,
            released: hold.points - self.points.value(),
            postings: movement(
                Unit::Points,
                &self.volunteer,
                &AccountId::system(SystemAccount::PointsRedeemed),
                self.points.value(),
            )
            .to_vec(),
            recorded_at: ctx.now,
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoidRedemption {
    pub request_id: RequestId,
    pub merchant: AccountId,
    pub volunteer: AccountId,
    pub hold: TransactionId,
}

impl VoidRedemption {
    /// Rules: as for a capture, the hold must be this merchant's and open.
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        let hold = open_hold(ctx, &self.merchant, self.hold)?;
        Ok(LedgerEvent::RedemptionVoided(RedemptionVoided {
            hold: self.hold,
            volunteer: self.volunteer.clone(),
            merchant: self.merchant.clone(),
            released: points(hold.points),
            recorded_at: ctx.now,
        }))
    }
}

/// Record that an uncaptured hold reached its expiry. Issued by the server's sweeper
/// with the request id [`ExpireRedemptionHold::request_id_for`], so sweepers racing on
/// one hold write one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpireRedemptionHold {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub hold: TransactionId,
}

impl ExpireRedemptionHold {
    pub fn new(volunteer: AccountId, hold: TransactionId) -> Self {
        Self {
            request_id: Self::request_id_for(hold),
            volunteer,
            hold,
        }
    }

    pub fn request_id_for(hold: TransactionId) -> RequestId {
        // Under the reserved `system:` prefix, which no account id (and so no partner's
        // scoped request id) can start with.
        RequestId::new(format!("system:expire-hold:{hold}"))
            .expect("a uuid makes a valid request id")
    }

    /// Rules: the hold is open (`HoldAlreadyCaptured`, `HoldVoided`, `HoldExpired`) and
    /// its expiry has passed (`HoldNotExpired`).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        let record = ctx
            .target
            .holds
            .get(&self.hold)
            .ok_or(Rejection::UnknownHold { hold: self.hold })?;
        match record.status {
            HoldStatus::Open if ctx.now >= record.expires_at => {}
            HoldStatus::Open => {
                return Err(Rejection::HoldNotExpired {
                    hold: self.hold,
                    expires_at: record.expires_at,
                })
            }
            HoldStatus::Captured => return Err(Rejection::HoldAlreadyCaptured { hold: self.hold }),
            HoldStatus::Voided => return Err(Rejection::HoldVoided { hold: self.hold }),
            HoldStatus::Expired => {
                return Err(Rejection::HoldExpired {
                    hold: self.hold,
                    expires_at: record.expires_at,
                })
            }
        }
        Ok(LedgerEvent::RedemptionHoldExpired(RedemptionHoldExpired {
            hold: self.hold,
            volunteer: self.volunteer.clone(),
            merchant: record.merchant.clone(),
            released: points(record.points),
            expired_at: record.expires_at,
            recorded_at: ctx.now,
        }))
    }
}

/// A hold's amount as `Points`: holds are authorised from `Points`, so always valid.
fn points(d: Decimal) -> Points {
    Points::new(d).expect("a hold holds a valid, positive amount of points")
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use super::*;
    use crate::domain::units::Points;

    fn token(v: &str, max: &str, n: u128) -> RedemptionClaims {
        RedemptionClaims {
            id: uuid::Uuid::from_u128(n),
            volunteer: acc(v),
            points_max: Points::parse(max).unwrap(),
            expires_at: ts("2026-11-20T12:05:00Z"),
        }
    }

    fn authorize(t: RedemptionClaims, points: &str) -> Command {
        Command::AuthorizeRedemption(AuthorizeRedemption {
            request_id: rid(),
            merchant: acc("m"),
            token: t,
            points: Points::parse(points).unwrap(),
        })
    }

    fn capture(m: &str, hold: TransactionId, points: &str) -> Command {
        Command::CaptureRedemption(CaptureRedemption {
            request_id: rid(),
            merchant: acc(m),
            volunteer: acc("v1"),
            hold,
            points: Points::parse(points).unwrap(),
        })
    }

    fn void(hold: TransactionId) -> Command {
        Command::VoidRedemption(VoidRedemption {
            request_id: rid(),
            merchant: acc("m"),
            volunteer: acc("v1"),
            hold,
        })
    }

    /// v1 with 50 points (5 hours exchanged at 10 per hour).
    fn world() -> World {
        let mut w = World::standard();
        w.credit("v1", "8", 0);
        w.given(exchange("v1", "5"));
        w
    }

    #[test]
    fn given_points_when_authorising_then_a_hold_keeps_them_until_it_expires() {
        let mut w = world();
        let hold = w.given(authorize(token("v1", "30", 1), "30"));
        let s = w.state("v1");
        assert_eq!(s.balance(Unit::Points), dec("50"));
        assert_eq!(s.points_available(w.now), dec("20"));
        let expiry = s.holds[&hold].expires_at;
        assert_eq!(expiry, w.now + w.hold_timeout);
        assert_eq!(s.points_available(expiry), dec("50"));
        let refused = w.when(&authorize(token("v1", "30", 2), "30"));
        assert_eq!(reason(refused.clone()), "INSUFFICIENT_POINTS");
        // The merchant learns that 30 are not available, not how many are (20).
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("30") && !message.contains("20"),
            "{message}"
        );
    }

    #[test]
    fn token_rules_expired_reused_over_the_maximum() {
        let mut w = world();
        assert_eq!(
            reason(w.when(&authorize(token("v1", "10", 1), "10.01"))),
            "TOKEN_MAXIMUM_EXCEEDED"
        );
        w.given(authorize(token("v1", "10", 1), "5"));
        assert_eq!(
            reason(w.when(&authorize(token("v1", "10", 1), "5"))),
            "TOKEN_ALREADY_USED"
        );
        w.now = ts("2026-11-20T12:05:00Z");
        assert_eq!(
            reason(w.when(&authorize(token("v1", "10", 3), "5"))),
            "TOKEN_EXPIRED"
        );
    }

    #[test]
    fn given_a_hold_when_capturing_part_then_only_that_is_redeemed_and_the_rest_returns() {
        let mut w = world();
        let hold = w.given(authorize(token("v1", "30", 1), "30"));
        let LedgerEvent::RedemptionCaptured(e) = w.when(&capture("m", hold, "12.5")).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.released, dec("17.50"));
        w.given(capture("m", hold, "12.5"));
        let s = w.state("v1");
        assert_eq!(s.balance(Unit::Points), dec("37.50"));
        assert_eq!(s.points_available(w.now), dec("37.50"));
        assert_eq!(
            reason(w.when(&capture("m", hold, "1"))),
            "HOLD_ALREADY_CAPTURED"
        );
        assert_eq!(reason(w.when(&void(hold))), "HOLD_ALREADY_CAPTURED");
    }

    #[test]
    fn capture_rules_other_merchant_over_the_hold_after_void_after_expiry() {
        let mut w = world();
        w.merchant("m2");
        let hold = w.given(authorize(token("v1", "30", 1), "30"));
        assert_eq!(reason(w.when(&capture("m2", hold, "1"))), "UNKNOWN_HOLD");
        assert_eq!(
            reason(w.when(&capture("m", hold, "30.01"))),
            "CAPTURE_EXCEEDS_HOLD"
        );
        w.given(void(hold));
        assert_eq!(w.state("v1").points_available(w.now), dec("50"));
        assert_eq!(reason(w.when(&capture("m", hold, "1"))), "HOLD_VOIDED");
        assert_eq!(reason(w.when(&void(hold))), "HOLD_VOIDED");

        let hold = w.given(authorize(token("v1", "30", 2), "30"));
        w.now += w.hold_timeout;
        assert_eq!(reason(w.when(&capture("m", hold, "1"))), "HOLD_EXPIRED");
        assert_eq!(reason(w.when(&void(hold))), "HOLD_EXPIRED");
    }

    #[test]
    fn given_an_open_hold_the_sweeper_expires_it_only_after_its_expiry() {
        let mut w = world();
        let hold = w.given(authorize(token("v1", "30", 1), "30"));
        let expire = Command::ExpireRedemptionHold(ExpireRedemptionHold::new(acc("v1"), hold));
        assert_eq!(reason(w.when(&expire)), "HOLD_NOT_EXPIRED");
        w.now += w.hold_timeout;
        let LedgerEvent::RedemptionHoldExpired(e) = w.when(&expire).unwrap() else {
            panic!()
        };
        assert_eq!(e.released.to_string(), "30.00");
        w.given(expire.clone());
        assert_eq!(w.state("v1").holds[&hold].status, HoldStatus::Expired);
        assert_eq!(reason(w.when(&expire)), "HOLD_EXPIRED");
        assert_eq!(reason(w.when(&capture("m", hold, "1"))), "HOLD_EXPIRED");
    }
}

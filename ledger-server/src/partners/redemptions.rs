//! `timebank.v1.Redemptions`: tokens for platforms; holds, captures, voids, lists and
//! settlement for merchants; and the sweeper that records expired holds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_core::domain::account::AccountId;
use ledger_core::domain::commands::{Command, ExpireRedemptionHold};
use ledger_core::domain::events::LedgerEvent;
use ledger_core::domain::ids::TransactionId;
use ledger_core::domain::token::RedemptionClaims;
use ledger_core::domain::{InputProblem, Rejection};
use projections::model::decimal;
use projections::redemptions::Redemption;
use tonic::{Code, Request, Response, Status};

use super::banks::volunteer_field;
use super::{internal, page_size, page_start, respond, Partners};
use crate::authz::{self, RoleKind};
use crate::convert;
use crate::pb;
use crate::queries::convert::{checkpoint, position, to_timestamp};
use crate::status::{describe, describe_rejection, Described};

/// Default lifetime of a redemption token: long enough to walk to the till and scan,
/// short enough that a photographed QR code is useless by the next customer.
pub const TOKEN_TTL_SECONDS_DEFAULT: u32 = 300;
/// Longest lifetime a platform may ask for: a queue at a busy counter.
pub const TOKEN_TTL_SECONDS_MAX: u32 = 900;
/// Most captures listed in one settlement statement; the total covers them all.
pub const SETTLEMENT_LINES_MAX: usize = 10_000;
/// How often the sweeper looks for holds past their expiry. The points are available
/// again at the expiry instant regardless (a rule of the command); the sweeper only
/// records the fact, so a few seconds' delay is harmless.
pub const HOLD_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Most holds expired per sweep: bounds one sweep's work; the rest wait for the next.
pub const HOLDS_PER_SWEEP_MAX: usize = 1000;

type Answer<T> = Result<Response<T>, Status>;

fn rejected(r: Rejection) -> Described {
    describe_rejection(&r)
}

/// The Redemptions service.
#[derive(Clone)]
pub struct RedemptionService(pub Partners);

impl RedemptionService {
    async fn issue(
        &self,
        caller: &authz::Caller,
        r: pb::IssueRedemptionTokenRequest,
    ) -> Result<pb::RedemptionToken, Described> {
        authz::require(
            caller,
            &[RoleKind::Platform, RoleKind::Admin],
            "issue redemption tokens",
        )?;
        let volunteer = volunteer_field(r.volunteer_id)?;
        authz::require_account(
            self.0.commands.registrations(),
            caller,
            &volunteer,
            "issue tokens for this volunteer",
            true,
        )
        .await?;
        let points_max = convert::points("points_max", &r.points_max).map_err(rejected)?;
        let ttl = match r.ttl_seconds {
            0 => TOKEN_TTL_SECONDS_DEFAULT,
            n if n <= TOKEN_TTL_SECONDS_MAX => n,
            n => {
                return Err(rejected(Rejection::input(
                    "ttl_seconds",
                    InputProblem::Malformed(format!(
                        "{n} is longer than token_ttl_seconds_max ({TOKEN_TTL_SECONDS_MAX})"
                    )),
                )))
            }
        };
        let state = self
            .0
            .handler
            .load(&volunteer)
            .await
            .map_err(|e| describe(&e))?;
        match &state.kind {
            Some(k) if k.name() == "volunteer" && !state.closed => {}
            Some(_) if state.closed => {
                return Err(rejected(Rejection::AccountClosed { account: volunteer }))
            }
            Some(k) => {
                return Err(rejected(Rejection::WrongAccountKind {
                    account: volunteer,
                    expected: "volunteer",
                    actual: k.name(),
                }))
            }
            None => return Err(rejected(Rejection::UnknownAccount { account: volunteer })),
        }
        let claims = RedemptionClaims {
            id: uuid::Uuid::new_v4(),
            volunteer,
            points_max,
            expires_at: self.0.clock().now() + chrono::Duration::seconds(i64::from(ttl)),
        };
        Ok(pb::RedemptionToken {
            token: claims.sign(&self.0.config.token_key),
            token_id: claims.id.to_string(),
            expires_at: Some(to_timestamp(claims.expires_at)),
        })
    }

    async fn presenter_star(
        &self,
        caller: &authz::Caller,
        r: pb::GetPresenterStarLevelRequest,
    ) -> Result<pb::PresenterStarLevel, Described> {
        authz::require(
            caller,
            &[RoleKind::Merchant, RoleKind::Admin],
            "read a presenter's star level",
        )?;
        let claims =
            convert::redemption_token(&r.token, &self.0.config.token_key).map_err(rejected)?;
        if self.0.clock().now() >= claims.expires_at {
            return Err(rejected(Rejection::TokenExpired {
                expires_at: claims.expires_at,
            }));
        }
        let policy = self.0.policies.default_policy();
        let star = self
            .0
            .projections
            .read()
            .account_view(claims.volunteer.as_str(), 0, policy, self.0.clock().now())
            .map(|v| u32::from(v.star.stars))
            .unwrap_or(0);
        Ok(pb::PresenterStarLevel {
            stars: star,
            policy_version: policy.version.clone(),
        })
    }

    async fn authorize(
        &self,
        caller: &authz::Caller,
        r: pb::AuthorizeRedemptionRequest,
    ) -> Result<pb::RedemptionHold, Described> {
        let merchant = convert::account("merchant_id", r.merchant_id.clone()).map_err(rejected)?;
        authz::require_merchant(caller, &merchant, "redeem for this merchant", true)?;
        let (volunteer, outcome) =
            match convert::authorize_redemption(r.clone(), &self.0.config.token_key) {
                Ok(command) => {
                    let volunteer = command.target().clone();
                    (
                        volunteer,
                        self.0.commands.execute_authorized(command).await?,
                    )
                }
                // A retry whose token no longer verifies (the key was replaced since
                // the first attempt) gets the original answer if there is one: a retry
                // never gets a second, different answer.
                Err(refused) => match convert::authorize_redemption_unverified(r) {
                    Some(command) => match self.0.handler.recorded_outcome(&command).await {
                        Ok(Some(outcome)) => (command.target().clone(), outcome),
                        Ok(None) => return Err(rejected(refused)),
                        // The stream could not be read: maybe a retry, so not "invalid".
                        Err(e) => return Err(crate::status::describe(&e)),
                    },
                    None => return Err(rejected(refused)),
                },
            };
        let (recorded, event) = self.0.event_at(&volunteer, outcome.stream_version).await?;
        let LedgerEvent::RedemptionAuthorized(e) = event else {
            return Err(internal(
                Code::Internal,
                "INTERNAL",
                format!("expected a hold, found {}", event.event_type()),
            ));
        };
        Ok(pb::RedemptionHold {
            hold_id: e.hold.to_string(),
            volunteer_id: e.volunteer.to_string(),
            points: e.points.to_string(),
            expires_at: Some(to_timestamp(e.expires_at)),
            position: Some(position(recorded.position)),
            replayed: outcome.replayed,
        })
    }

    async fn end_hold(
        &self,
        caller: &authz::Caller,
        merchant: String,
        command: Result<Command, Rejection>,
    ) -> Result<pb::CommandResult, Described> {
        let merchant = convert::account("merchant_id", merchant).map_err(rejected)?;
        authz::require_merchant(caller, &merchant, "redeem for this merchant", true)?;
        let command = command.map_err(rejected)?;
        let outcome = self.0.commands.execute_authorized(command).await?;
        Ok(convert::command_result(&outcome))
    }

    async fn fresh(
        &self,
        min: Option<pb::LogPosition>,
    ) -> Result<Option<ledger_core::log::Position>, Described> {
        crate::queries::fresh(&self.0.projections, self.0.log().as_ref(), min)
            .await
            .map_err(|e| crate::status::query_status_described(&e))
    }

    async fn list(
        &self,
        caller: &authz::Caller,
        r: pb::ListRedemptionsRequest,
    ) -> Result<pb::ListRedemptionsResponse, Described> {
        let merchant = convert::account("merchant_id", r.merchant_id).map_err(rejected)?;
        authz::require_merchant(caller, &merchant, "list this merchant's redemptions", false)?;
        let size = page_size(r.page_size);
        let from = page_start(&r.page_token)? as usize;
        let cp = self.fresh(r.min_position).await?;
        let m = self.0.projections.read();
        let i = super::registered_merchant(&m, &merchant)?;
        // One more than the page tells whether another follows, without collecting the
        // rest (which made paging through all O(N²), under the read models' lock).
        let all: Vec<&Redemption> = m
            .redemptions
            .of_merchant(i)
            .skip(from)
            .take(size.saturating_add(1))
            .collect();
        if from > 0 && all.is_empty() {
            return Err(super::page_token_not_issued());
        }
        let more = all.len() > size;
        let page = all
            .into_iter()
            .take(size)
            .map(|x| redemption(&m, x))
            .collect();
        Ok(pb::ListRedemptionsResponse {
            next_page_token: if more {
                (from + size).to_string()
            } else {
                String::new()
            },
            redemptions: page,
            checkpoint: checkpoint(cp),
        })
    }

    async fn settlement(
        &self,
        caller: &authz::Caller,
        r: pb::GetSettlementStatementRequest,
    ) -> Result<pb::SettlementStatement, Described> {
        let merchant = convert::account("merchant_id", r.merchant_id).map_err(rejected)?;
        authz::require_merchant(caller, &merchant, "settle this merchant", false)?;
        let from: DateTime<Utc> = convert::timestamp("from", r.from).map_err(rejected)?;
        let to: DateTime<Utc> = convert::timestamp("to", r.to).map_err(rejected)?;
        // Captures are settled to the second (the read model keeps capture times in
        // whole seconds), so a boundary inside a second would put that second's
        // captures on the wrong side of it. Refused rather than rounded: a statement
        // must be exactly the `[from, to)` it names. Option not taken: capture times
        // at full precision in the read model, a snapshot format change for boundaries
        // no settlement period uses.
        for (field, t) in [("from", from), ("to", to)] {
            if t.timestamp_subsec_nanos() != 0 {
                return Err(rejected(Rejection::input(
                    field,
                    InputProblem::Malformed(format!(
                        "{} is inside a second; settlement periods start and end on whole seconds",
                        t.to_rfc3339()
                    )),
                )));
            }
        }
        if to <= from {
            return Err(rejected(Rejection::input(
                "to",
                InputProblem::Malformed("must be after `from`".into()),
            )));
        }
        let cp = self.fresh(r.min_position).await?;
        let m = self.0.projections.read();
        let i = super::registered_merchant(&m, &merchant)?;
        let c = m.redemptions.captures_between(
            i,
            from.timestamp(),
            to.timestamp(),
            SETTLEMENT_LINES_MAX,
        );
        let lines = c.lines.iter().map(|x| redemption(&m, x)).collect();
        let (captures, total, truncated) = (c.captures, c.total, c.truncated);
        Ok(pb::SettlementStatement {
            merchant_id: merchant.to_string(),
            from: Some(to_timestamp(from)),
            to: Some(to_timestamp(to)),
            captures,
            total_points: decimal(total).to_string(),
            lines,
            truncated,
            checkpoint: checkpoint(cp),
        })
    }
}

fn redemption(m: &projections::ReadModels, x: &Redemption) -> pb::Redemption {
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).map(to_timestamp);
    pb::Redemption {
        hold_id: uuid::Uuid::from_u128(x.hold).to_string(),
        volunteer_id: m.accounts.name(x.volunteer).to_owned(),
        authorized_points: decimal(x.authorized).to_string(),
        captured_points: decimal(x.captured).to_string(),
        status: x.status.name().to_owned(),
        authorized_at: at(x.authorized_at),
        expires_at: at(x.expires_at),
        ended_at: (x.ended_at != 0).then(|| at(x.ended_at)).flatten(),
    }
}

/// Record `RedemptionHoldExpired` for every open hold past its expiry, every
/// [`HOLD_SWEEP_INTERVAL`]. Runs until aborted.
pub async fn sweep_holds(partners: Partners) {
    let mut tick = tokio::time::interval(HOLD_SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let now = partners.clock().now();
        let due: Vec<(AccountId, TransactionId)> = {
            let m = partners.projections.read();
            m.redemptions
                .expired_open(now, HOLDS_PER_SWEEP_MAX)
                .into_iter()
                .filter_map(|x| {
                    AccountId::new(m.accounts.name(x.volunteer))
                        .ok()
                        .map(|v| (v, TransactionId(uuid::Uuid::from_u128(x.hold))))
                })
                .collect()
        };
        for (volunteer, hold) in due {
            let command = Command::ExpireRedemptionHold(ExpireRedemptionHold::new(volunteer, hold));
            match partners.commands.execute_authorized(command).await {
                Ok(o) => tracing::info!(%hold, replayed = o.replayed, "redemption hold expired"),
                // Captured or voided just before the sweep: nothing to record.
                Err(d) => {
                    tracing::debug!(%hold, reason = d.reason, "hold not expired: {}", d.message)
                }
            }
        }
    }
}

#[tonic::async_trait]
impl pb::redemptions_server::Redemptions for RedemptionService {
    async fn issue_redemption_token(
        &self,
        r: Request<pb::IssueRedemptionTokenRequest>,
    ) -> Answer<pb::RedemptionToken> {
        let caller = authz::caller(&r)?;
        respond(self.issue(&caller, r.into_inner()).await)
    }

    async fn get_presenter_star_level(
        &self,
        r: Request<pb::GetPresenterStarLevelRequest>,
    ) -> Answer<pb::PresenterStarLevel> {
        let caller = authz::caller(&r)?;
        respond(self.presenter_star(&caller, r.into_inner()).await)
    }

    async fn authorize_redemption(
        &self,
        r: Request<pb::AuthorizeRedemptionRequest>,
    ) -> Answer<pb::RedemptionHold> {
        let caller = authz::caller(&r)?;
        respond(self.authorize(&caller, r.into_inner()).await)
    }

    async fn capture_redemption(
        &self,
        r: Request<pb::CaptureRedemptionRequest>,
    ) -> Answer<pb::CommandResult> {
        let caller = authz::caller(&r)?;
        let r = r.into_inner();
        let merchant = r.merchant_id.clone();
        respond(
            self.end_hold(&caller, merchant, convert::capture_redemption(r))
                .await,
        )
    }

    async fn void_redemption(
        &self,
        r: Request<pb::VoidRedemptionRequest>,
    ) -> Answer<pb::CommandResult> {
        let caller = authz::caller(&r)?;
        let r = r.into_inner();
        let merchant = r.merchant_id.clone();
        respond(
            self.end_hold(&caller, merchant, convert::void_redemption(r))
                .await,
        )
    }

    async fn list_redemptions(
        &self,
        r: Request<pb::ListRedemptionsRequest>,
    ) -> Answer<pb::ListRedemptionsResponse> {
        let caller = authz::caller(&r)?;
        respond(self.list(&caller, r.into_inner()).await)
    }

    async fn get_settlement_statement(
        &self,
        r: Request<pb::GetSettlementStatementRequest>,
    ) -> Answer<pb::SettlementStatement> {
        let caller = authz::caller(&r)?;
        respond(self.settlement(&caller, r.into_inner()).await)
    }
}

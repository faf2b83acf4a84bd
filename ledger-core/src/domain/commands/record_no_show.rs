//! `RecordNoShow`: a volunteer signed up for an activity and did not turn up. Event:
//! `NoShowRecorded.v1` on the volunteer's stream; it moves nothing and is an input to
//! the credit score's reliability factor (`docs/credit-score.md`).
//!
//! Option not taken: recording no-shows on the organisation's stream. The credit score
//! is computed from the volunteer's own stream only, so the fact belongs there.

use chrono::NaiveDate;
use serde::Serialize;

use super::{require_open, Context, Kind};
use crate::domain::account::AccountId;
use crate::domain::events::{LedgerEvent, NoShowRecorded};
use crate::domain::ids::{ActivityId, RequestId};
use crate::domain::rejection::Rejection;
use crate::domain::state::NoShowKey;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordNoShow {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub organisation: AccountId,
    pub activity: ActivityId,
    /// The day of the activity the volunteer missed.
    #[serde(with = "crate::domain::serde_time::date")]
    pub date: NaiveDate,
}

impl RecordNoShow {
    /// Rules: the volunteer is an open volunteer; the organisation an open
    /// organisation; the date is not after today in the ledger's calendar
    /// (`ServiceDateInFuture`: a no-show is recorded after the activity); the same
    /// no-show (organisation, activity, date) is not recorded yet
    /// (`NoShowAlreadyRecorded`: under a second request id it would count twice in
    /// the credit score's reliability, and a no-show cannot be reversed).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        require_open(ctx.target, Kind::Volunteer)?;
        require_open(&ctx.other(&self.organisation), Kind::Organisation)?;
        let today = ctx.today();
        if self.date > today {
            return Err(Rejection::ServiceDateInFuture {
                service_date: self.date,
                today,
            });
        }
        let key = NoShowKey {
            organisation: self.organisation.clone(),
            activity: self.activity.clone(),
            date: self.date,
        };
        if let Some(&transaction) = ctx.target.no_shows.get(&key) {
            return Err(Rejection::NoShowAlreadyRecorded {
                volunteer: self.volunteer.clone(),
                organisation: key.organisation,
                activity: key.activity,
                date: key.date,
                transaction,
            });
        }
        Ok(LedgerEvent::NoShowRecorded(NoShowRecorded {
            volunteer: self.volunteer.clone(),
            organisation: self.organisation.clone(),
            activity: self.activity.clone(),
            service_date: self.date,
            recorded_at: ctx.now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use super::RecordNoShow;
    use crate::domain::events::LedgerEvent;
    use crate::domain::ids::ActivityId;

    fn no_show(who: &str, org: &str, date: &str) -> Command {
        Command::RecordNoShow(RecordNoShow {
            request_id: rid(),
            volunteer: acc(who),
            organisation: acc(org),
            activity: ActivityId::new("act-9").unwrap(),
            date: day(date),
        })
    }

    #[test]
    fn given_a_volunteer_when_recording_a_no_show_then_no_show_recorded() {
        let w = World::standard();
        let e = w.when(&no_show("v1", "org", "2026-11-19")).unwrap();
        assert!(matches!(e, LedgerEvent::NoShowRecorded(ref n)
            if n.volunteer.as_str() == "v1" && n.service_date == day("2026-11-19")));
    }

    #[test]
    fn when_the_date_is_tomorrow_then_service_date_in_future() {
        let w = World::standard();
        assert_eq!(
            reason(w.when(&no_show("v1", "org", "2026-11-21"))),
            "SERVICE_DATE_IN_FUTURE"
        );
    }

    #[test]
    fn when_the_organisation_is_not_one_then_rejected() {
        let w = World::standard();
        assert_eq!(
            reason(w.when(&no_show("v1", "ghost", "2026-11-19"))),
            "UNKNOWN_ACCOUNT"
        );
        assert_eq!(
            reason(w.when(&no_show("v1", "p", "2026-11-19"))),
            "WRONG_ACCOUNT_KIND"
        );
        assert_eq!(
            reason(w.when(&no_show("org", "org", "2026-11-19"))),
            "WRONG_ACCOUNT_KIND"
        );
    }

    #[test]
    fn given_a_no_show_when_the_same_one_is_recorded_again_then_no_show_already_recorded() {
        let mut w = World::standard();
        let first = w.given(no_show("v1", "org", "2026-11-19"));
        let again = w.when(&no_show("v1", "org", "2026-11-19"));
        assert_eq!(reason(again.clone()), "NO_SHOW_ALREADY_RECORDED");
        let message = again.unwrap_err().to_string();
        assert!(message.contains(&first.to_string()), "{message}");
        // Another day, activity or organisation is another no-show.
        w.given(no_show("v1", "org", "2026-11-18"));
        w.given(Command::RecordNoShow(RecordNoShow {
            request_id: rid(),
            volunteer: acc("v1"),
            organisation: acc("org"),
            activity: ActivityId::new("act-10").unwrap(),
            date: day("2026-11-19"),
        }));
    }

    #[test]
    fn given_a_no_show_when_reversing_it_then_not_reversible() {
        let mut w = World::standard();
        let tx = w.given(no_show("v1", "org", "2026-11-19"));
        assert_eq!(reason(w.when(&reverse("v1", tx))), "NOT_REVERSIBLE");
    }
}

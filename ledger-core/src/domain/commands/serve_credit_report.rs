//! `ServeCreditReport`: record that a bank was served a volunteer's credit report (an
//! inquiry), only under a current consent. Event: `CreditReportServed.v1` on the
//! volunteer's stream, holding the report as served.
//!
//! The server computes the report (it lives in `projections`) and then executes this
//! command; the consent is checked here, on the volunteer's stream, so the inquiry is
//! written only if the consent was current at the instant of the append.

use serde::Serialize;

use super::Context;
use crate::domain::account::AccountId;
use crate::domain::events::{CreditReportServed, LedgerEvent};
use crate::domain::ids::{Purpose, RequestId};
use crate::domain::rejection::Rejection;
use crate::domain::state::INQUIRIES_PER_CONSENT_PER_DAY_MAX;

/// Largest report kept in an inquiry. A `tb-credit-1` report is under 2 KiB of JSON;
/// 16 KiB leaves room for later models and keeps every inquiry far below the log's
/// event size limit.
pub const REPORT_BYTES_MAX: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServeCreditReport {
    pub request_id: RequestId,
    pub volunteer: AccountId,
    pub bank: AccountId,
    pub purpose: Purpose,
    /// Not part of the request's identity (a retry computes a new report at a new
    /// instant, and must get the original inquiry back): skipped by the digest.
    #[serde(skip)]
    pub served: ServedReport,
}

/// The report being served, as the server computed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedReport {
    /// The authenticated caller's name.
    pub caller: String,
    pub model_version: String,
    pub score: u32,
    /// The report's JSON text.
    pub report: String,
    /// The volunteer's stream the report was computed from ([`ComputedFrom`]).
    pub computed_from: ComputedFrom,
}

/// How much of the volunteer's stream a served report read. Checked against the
/// stream the inquiry is appended to, so that the served report is exactly the report
/// as of its time: an event appended after the report's read (a deposit decided and
/// stamped before the report's `as_of`, whose append was still on its way) makes the
/// report outdated (`ReportOutdated`), and the server computes it again. Once the
/// inquiry is appended, an event still on its way meets a stream that moved, is
/// decided again and stamped after the inquiry, so no later ask as of the report's
/// time can include an event the served report missed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ComputedFrom {
    /// Not checked: a report not computed from this ledger's stream (tests).
    #[default]
    Unchecked,
    /// Computed from the stream whose last report input (an event that is not a
    /// partner event: consents, inquiries and holds are no input) was at this version
    /// (None: none).
    Version(Option<u64>),
}

impl ServeCreditReport {
    /// Rules: the bank's own account is not closed (`AccountClosed`: a closed bank is
    /// no longer a partner, as `GrantConsent` already requires an open bank; the bank
    /// is the caller, so this tells it nothing about anyone else); the volunteer has a
    /// consent to the bank for the purpose that is current now (`ConsentRequired`, also
    /// for an unknown volunteer: the answer must not tell a bank whether the volunteer
    /// exists); fewer than `INQUIRIES_PER_CONSENT_PER_DAY_MAX` inquiries under that
    /// consent in the 24 hours before now (`InquiriesPerDayExceeded`). A retry of an
    /// inquiry served before the closure still returns it (the request index is read
    /// before any rule).
    pub fn decide(&self, ctx: &Context<'_>) -> Result<LedgerEvent, Rejection> {
        assert!(
            self.served.report.len() <= REPORT_BYTES_MAX,
            "credit reports are bounded by REPORT_BYTES_MAX"
        );
        if ctx.other(&self.bank).closed {
            return Err(Rejection::AccountClosed {
                account: self.bank.clone(),
            });
        }
        let consent = ctx
            .target
            .current_consent(&self.bank, &self.purpose, ctx.now)
            .ok_or_else(|| Rejection::ConsentRequired {
                purpose: self.purpose.to_string(),
            })?;
        if let Some(next_at) = consent.next_inquiry_at(ctx.now) {
            return Err(Rejection::InquiriesPerDayExceeded {
                max: INQUIRIES_PER_CONSENT_PER_DAY_MAX,
                next_at,
            });
        }
        if let ComputedFrom::Version(read) = self.served.computed_from {
            if read != ctx.target.report_input_version {
                return Err(Rejection::ReportOutdated);
            }
        }
        Ok(LedgerEvent::CreditReportServed(CreditReportServed {
            inquiry: ctx.transaction,
            volunteer: self.volunteer.clone(),
            bank: self.bank.clone(),
            consent: consent.consent,
            purpose: self.purpose.clone(),
            caller: self.served.caller.clone(),
            model_version: self.served.model_version.clone(),
            score: self.served.score,
            report_digest: report_digest(&self.served.report),
            report: self.served.report.clone(),
            recorded_at: ctx.now,
        }))
    }
}

/// Hex BLAKE3 of a report's JSON text: how a bank names the report it was served.
pub fn report_digest(report: &str) -> String {
    blake3::hash(report.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::Command;
    use super::*;

    fn inquiry(v: &str, b: &str, p: &str) -> Command {
        Command::ServeCreditReport(ServeCreditReport {
            request_id: rid(),
            volunteer: acc(v),
            bank: acc(b),
            purpose: Purpose::new(p).unwrap(),
            served: ServedReport {
                caller: "bank-one".into(),
                model_version: "tb-credit-1".into(),
                score: 512,
                report: "{\"score\":512}".into(),
                computed_from: ComputedFrom::Unchecked,
            },
        })
    }

    /// A report computed from the stream up to a version is served only while the
    /// stream is still there: an event appended since (a deposit whose append was on
    /// its way) makes it outdated, to be computed again.
    #[test]
    fn given_a_report_read_before_the_last_event_when_served_then_outdated() {
        let mut w = World::standard();
        w.bank("b1");
        w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        // The world of these tests keeps no versions: give the stream's last report
        // input one.
        let at = Some(3);
        w.accounts.get_mut(&acc("v1")).unwrap().report_input_version = at;
        // Partner events after it (another bank's inquiry, a consent) are no input:
        // they do not outdate the report.
        w.accounts.get_mut(&acc("v1")).unwrap().version = Some(5);
        let with = |from: ComputedFrom| {
            let mut c = inquiry("v1", "b1", "volunteer-loan");
            if let Command::ServeCreditReport(s) = &mut c {
                s.served.computed_from = from;
            }
            c
        };
        assert!(w.when(&with(ComputedFrom::Version(at))).is_ok());
        let before = at.map(|v| v - 1);
        assert_eq!(
            reason(w.when(&with(ComputedFrom::Version(before)))),
            "REPORT_OUTDATED"
        );
        assert_eq!(
            reason(w.when(&with(ComputedFrom::Version(None)))),
            "REPORT_OUTDATED"
        );
    }

    #[test]
    fn given_a_current_consent_when_a_report_is_served_then_the_inquiry_keeps_it() {
        let mut w = World::standard();
        w.bank("b1");
        let consent = w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        let LedgerEvent::CreditReportServed(e) =
            w.when(&inquiry("v1", "b1", "volunteer-loan")).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.consent, consent);
        assert_eq!(e.report, "{\"score\":512}");
        assert_eq!(e.report_digest, report_digest("{\"score\":512}"));
        assert_eq!(e.caller, "bank-one");
    }

    #[test]
    fn without_a_current_consent_for_this_bank_and_purpose_then_consent_required() {
        let mut w = World::standard();
        w.bank("b1").bank("b2");
        // None.
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "volunteer-loan"))),
            "CONSENT_REQUIRED"
        );
        // Unknown volunteer: the same answer.
        assert_eq!(
            reason(w.when(&inquiry("ghost", "b1", "volunteer-loan"))),
            "CONSENT_REQUIRED"
        );
        w.given(grant("v1", "b1", "2026-12-01T00:00:00Z"));
        // Other bank, other purpose.
        assert_eq!(
            reason(w.when(&inquiry("v1", "b2", "volunteer-loan"))),
            "CONSENT_REQUIRED"
        );
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "mortgage"))),
            "CONSENT_REQUIRED"
        );
        // Expired.
        w.now = ts("2026-12-01T00:00:00Z");
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "volunteer-loan"))),
            "CONSENT_REQUIRED"
        );
    }

    /// Found in the partner review: a bank closed after the consent kept receiving
    /// reports (and inquiries were written for it).
    #[test]
    fn given_a_closed_bank_when_a_report_is_asked_then_account_closed() {
        let mut w = World::standard();
        w.bank("b1");
        w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        w.given(close("b1"));
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "volunteer-loan"))),
            "ACCOUNT_CLOSED"
        );
    }

    #[test]
    fn given_a_withdrawn_consent_when_a_report_is_asked_then_consent_required() {
        let mut w = World::standard();
        w.bank("b1");
        w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        w.given(Command::WithdrawConsent(super::super::WithdrawConsent {
            request_id: rid(),
            volunteer: acc("v1"),
            bank: acc("b1"),
        }));
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "volunteer-loan"))),
            "CONSENT_REQUIRED"
        );
    }

    /// Found in review: nothing bounded a bank's inquiries, and each is an event on
    /// the volunteer's stream, which reports read whole: one consent could append
    /// enough to make every bank's report of the volunteer STREAM_TOO_LONG.
    #[test]
    fn given_the_days_inquiries_under_a_consent_when_one_more_then_inquiries_per_day_exceeded() {
        let mut w = World::standard();
        w.bank("b1").bank("b2");
        w.given(grant("v1", "b1", "2027-01-01T00:00:00Z"));
        w.given(grant("v1", "b2", "2027-01-01T00:00:00Z"));
        let first = w.now;
        for i in 0..INQUIRIES_PER_CONSENT_PER_DAY_MAX {
            w.now = first + chrono::TimeDelta::minutes(i as i64);
            w.given(inquiry("v1", "b1", "volunteer-loan"));
        }
        w.now = first + chrono::TimeDelta::hours(23);
        let refused = w
            .when(&inquiry("v1", "b1", "volunteer-loan"))
            .expect_err("one over the limit");
        assert_eq!(refused.reason(), "INQUIRIES_PER_DAY_EXCEEDED");
        assert_eq!(
            refused,
            Rejection::InquiriesPerDayExceeded {
                max: INQUIRIES_PER_CONSENT_PER_DAY_MAX,
                next_at: first + chrono::TimeDelta::hours(24),
            }
        );
        // Another bank's consent has its own count.
        assert!(w.when(&inquiry("v1", "b2", "volunteer-loan")).is_ok());
        // 24 hours after the oldest, its place is free again, and only its place.
        w.now = first + chrono::TimeDelta::hours(24);
        w.given(inquiry("v1", "b1", "volunteer-loan"));
        assert_eq!(
            reason(w.when(&inquiry("v1", "b1", "volunteer-loan"))),
            "INQUIRIES_PER_DAY_EXCEEDED"
        );
        // A new consent starts a new count.
        w.given(grant("v1", "b1", "2027-02-01T00:00:00Z"));
        assert!(w.when(&inquiry("v1", "b1", "volunteer-loan")).is_ok());
    }

    #[test]
    fn the_report_is_not_part_of_the_request_identity() {
        let a = inquiry("v1", "b1", "volunteer-loan");
        let mut b = a.clone();
        if let Command::ServeCreditReport(c) = &mut b {
            c.served.report = "{\"score\":1}".into();
        }
        assert_eq!(a.digest(), b.digest());
    }
}

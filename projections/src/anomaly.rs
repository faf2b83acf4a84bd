//! What the fold does with a sequence of events this ledger's handler never writes.
//!
//! The handler decides every event against its account's own stream, so the log it
//! writes registers an account once and before any service is deposited for it, files
//! each transaction and each hold once, and ends a hold only after authorising it. A
//! log written by something else (an import, a restore, another writer on a shared
//! KurrentDB, whose event ids are unique per stream, not across streams) can break
//! any of these, in events that each decode.
//!
//! The fold cannot refuse an event: it is already in the log, and every later one
//! must still be folded. It asserted these rules before, and a broken one stopped the
//! projection worker for good (a restart loads the snapshot and meets the same event
//! again), so every read model froze at that event. Each rule now has a
//! [`FoldAnomaly`] named after it: the fold keeps its state consistent in the way the
//! variant's message says, and the worker counts it and names the first few events in
//! its log ([`AnomalyNotes`]).
//!
//! Option not taken: moving a volunteer's counted service into the region of a
//! registration that comes after it. A deposit's region is not kept in the deposit
//! index (4 more bytes on 20 M entries, and a 16-byte alignment that would make each
//! entry 48 bytes instead of 32), so the fold would have to find the volunteer's
//! standing deposits by scanning the whole index, once per such registration: a log
//! that registered a city's volunteers after their service would take quadratic time.

use ledger_core::log::{EventId, Position};

/// How many anomalies a worker names in its log per run; later ones are only counted
/// (in [`crate::WorkerSample::fold_anomalies`]). A log with one of them often has
/// many of the same kind, and a line per event would bury everything else.
pub const ANOMALIES_NOTED_MAX: u64 = 16;

/// A rule of the handler's logs that an event breaks, and what the fold did instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FoldAnomaly {
    #[error("a deposit with this transaction id was folded before: its hours are counted, but a reversal of the id reverses only the first")]
    DepositSeenTwice,
    #[error("a spend with a project with this transaction id was folded before: its hours count as served, but a reversal of the id takes back only the first")]
    SpendSeenTwice,
    #[error("the account was registered before: this registration changes nothing")]
    RegisteredTwice,
    #[error("the account has standing service counted before this registration, in no region: it stays in no region for good, so that a reversal takes the service back from where it was counted")]
    RegisteredAfterService,
    #[error("a hold with this id was authorised before: this authorisation is not listed")]
    HoldAuthorisedTwice,
    #[error("the hold it ends was never authorised: nothing changes")]
    HoldEndedUnauthorised,
    #[error("the hold it ends has ended already: nothing changes")]
    HoldEndedTwice,
}

impl FoldAnomaly {
    /// A stable name, for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DepositSeenTwice => "DEPOSIT_SEEN_TWICE",
            Self::SpendSeenTwice => "SPEND_SEEN_TWICE",
            Self::RegisteredTwice => "REGISTERED_TWICE",
            Self::RegisteredAfterService => "REGISTERED_AFTER_SERVICE",
            Self::HoldAuthorisedTwice => "HOLD_AUTHORISED_TWICE",
            Self::HoldEndedUnauthorised => "HOLD_ENDED_UNAUTHORISED",
            Self::HoldEndedTwice => "HOLD_ENDED_TWICE",
        }
    }
}

/// Names a run's first [`ANOMALIES_NOTED_MAX`] anomalies in the server's log (the
/// count of the whole log is `ReadModels::fold_anomalies`).
#[derive(Debug, Default)]
pub struct AnomalyNotes {
    seen: u64,
}

impl AnomalyNotes {
    pub fn note(&mut self, id: EventId, position: Position, anomaly: FoldAnomaly) {
        self.seen += 1;
        if self.seen <= ANOMALIES_NOTED_MAX {
            tracing::warn!(
                event = %id,
                position = %position,
                anomaly = anomaly.name(),
                "the log holds an event this ledger's handler would not have written: {anomaly}"
            );
            if self.seen == ANOMALIES_NOTED_MAX {
                tracing::warn!(
                    "{ANOMALIES_NOTED_MAX} fold anomalies named; later ones are only counted (timebank_projection_fold_anomalies_total)"
                );
            }
        }
    }
}

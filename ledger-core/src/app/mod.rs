//! The command handler: storage-agnostic glue between commands and an
//! [`EventLog`](crate::log::EventLog).
//!
//! # The write path
//! 1. Load the target account's state: the cached fold (if any) brought up to date by
//!    reading its stream after the cached version (paged,
//!    [`crate::log::limits::READ_EVENTS_MAX`] events per read), folded into an
//!    [`AccountState`](crate::domain::state::AccountState); load the accounts the
//!    command refers to the same way (read only).
//! 2. If the request id was already seen on the stream: same digest → return the
//!    original outcome with `replayed: true`; different digest → `RequestIdReused`.
//! 3. `decide` with the injected clock; a rejection is returned and nothing is written.
//! 4. Append the one event with `ExpectedVersion` = the version decided on
//!    (`NoStream` for an empty stream). On `WrongExpectedVersion` go back to 1, at most
//!    [`COMMAND_RETRIES_MAX`] times.
//!
//! Steps 1 to 5 run inside closing gates ([`gates`]): a command holds a shared gate on
//! each account it refers to, a `CloseAccount` its own account's gate exclusively, so a
//! close is ordered against the commands that would credit or name the account.
//! Steps 1 to 4 also hold the target's write lane ([`lanes`]), and each receipt of
//! step 5 its receiver's: in one process, appends to one stream take turns, so the
//! retries of step 4 are left for writers in other processes.
//! 5. After the commit, deliver receipts (`HoursReceived.v1`) to accounts the
//!    transaction credited on other streams. A crash between 4 and 5 is healed by
//!    [`Handler::deliver_receipts`], which the server runs at start-up.
//!
//! # Idempotency
//! The event id is derived from the request id (for reversals: from the original
//! transaction), so the log can never hold two events for one request. The first
//! *successful* outcome is final: a retry returns it. Rejections are not stored (bad
//! input must change nothing), so a rejected request is decided again on retry and may
//! succeed if the world changed (e.g. the organisation was registered since). The log's
//! `EventIdReused` means the request id was used on another stream (or, for a reversal,
//! that the transaction was reversed elsewhere): the command is re-decided once against
//! fresh state, then refused as `RequestIdReused` (`AlreadyReversed` for reversals).

mod clock;
mod decoded;
mod gates;
mod handler;
mod keyed;
mod lanes;
mod receipts;
mod stamps;

pub use clock::{Clock, FixedClock, SystemClock};
pub use decoded::{DecodedEvents, DECODED_EVENTS_SLOTS};
pub use handler::{
    CommandError, Handler, LedgerConfig, VerifyError, COMMAND_RETRIES_MAX, STATE_CACHE_ACCOUNTS_MAX,
};
pub use receipts::{
    receipts_for, Receipt, ReceiptMark, ReceiptReport, SkippedTransaction, UnreceiptablePosting,
    SKIPPED_NOTED_MAX,
};
pub use stamps::Stamps;

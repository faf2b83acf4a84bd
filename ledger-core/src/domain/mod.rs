//! The timebank domain: accounts, units, events, commands and their rules.
//!
//! # Layout
//! - [`units`]: `Hours`, `Points` (exact decimals, ≤ 2 places, per-entry maxima), the
//!   posting [`units::Unit`]s and the versioned [`units::ExchangeRate`];
//! - [`ids`]: validated client tokens (request, activity, category, verifier ids, notes)
//!   and the derived event/transaction ids;
//! - [`account`]: account ids and kinds, system accounts, region codes, stream names;
//! - [`postings`]: double-entry legs and their checks;
//! - [`events`]: [`events::LedgerEvent`], every event with its stable versioned name;
//! - [`chain`]: event metadata and the per-stream hash chain;
//! - [`state`]: [`state::AccountState`], one account folded from its own stream;
//! - [`token`]: signed, single-use redemption tokens (what the volunteer's app shows a
//!   merchant);
//! - [`rejection`]: [`Rejection`], the business rules' answers, named after the rule;
//! - [`commands`]: one file per command with its `decide` and its tests.
//!
//! Nothing here does I/O: the handler in `crate::app` loads, decides and appends.

pub mod account;
pub mod chain;
pub mod commands;
pub mod events;
pub mod ids;
pub mod postings;
pub mod rejection;
pub mod serde_time;
pub mod state;
pub mod token;
pub mod units;

pub use rejection::{InputProblem, Rejection};

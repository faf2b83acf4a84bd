//! `ledger-store`: storage backends of the timebank event log.
//!
//! # Layout
//! - [`embedded`]: the default backend, append-only segment files in a data directory
//!   with group commit, crash recovery and a hash chain. `docs/event-log.md` is its
//!   byte-by-byte format.
//!
//! # API boundary
//! Backends implement `ledger_core::log::EventLog` and export nothing the rest of the
//! system depends on beyond opening, closing and verifying. Nothing here knows about
//! accounts or hours.

pub mod embedded;

pub use embedded::{verify, EmbeddedConfig, EmbeddedLog, OpenError, VerifyReport};

//! `ledger-store`: storage backends of the timebank event log.
//!
//! # Layout
//! - [`embedded`]: the default backend, append-only segment files in a data directory
//!   with group commit, crash recovery and a hash chain. `docs/event-log.md` is its
//!   byte-by-byte format.
//! - [`kurrentdb`]: the log on a KurrentDB (EventStoreDB) cluster.
//! - [`store`]: choosing a backend from configuration (`--store`).
//! - [`transfer`]: copying a whole log between backends (import / export).
//!
//! # API boundary
//! Backends implement `ledger_core::log::EventLog` and export nothing the rest of the
//! system depends on beyond opening, closing and verifying. Nothing here knows about
//! accounts or hours.

pub mod embedded;
pub mod kurrentdb;
pub mod store;
pub mod transfer;

pub use embedded::{
    holds_log, require_log, verify, EmbeddedConfig, EmbeddedLog, OpenError, VerifyReport,
    COMMIT_DELAY_MAX,
};
pub use kurrentdb::{ConnectError, KurrentLog};
pub use store::{open_store, Store, StoreError, StoreSpec};
pub use transfer::{copy_log, CopyProgress, CopyReport, TransferError};

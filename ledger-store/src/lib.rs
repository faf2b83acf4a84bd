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

/// Make every file and directory this process creates from now on its owner's alone
/// (umask 077: files 0600, directories 0700), whatever umask it was started with. A
/// data directory holds consents and every credit report as served, and an export all
/// of it: with the usual umask 022 they were created readable by every local user
/// (a security probe). Called first thing by the binaries (`ledger-server`,
/// `timebank-log`), before any file is created; a library leaves the umask alone.
/// Option not taken: a mode on each create, which every new file would have to
/// remember.
pub fn keep_created_files_private() {
    #[cfg(unix)]
    // SAFETY: umask takes a plain integer and only sets the process's file mode
    // creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

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

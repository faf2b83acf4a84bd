//! `ledger-core`: the timebank ledger's domain and the contract of its event log.
//!
//! # Layout
//! - [`log`]: the [`log::EventLog`] trait every storage backend implements (the embedded
//!   log in `ledger-store`, KurrentDB later), the value types it speaks in (streams,
//!   event ids, versions, positions) and its named limits.
//! - [`domain`]: accounts, units, events, commands and their rules (pure, no I/O).
//! - [`app`]: the storage-agnostic command handler: load an account's stream, fold,
//!   decide, append with the expected version, retry on conflict; receipts delivery.
//!
//! # API boundary
//! This crate knows nothing about tonic, protobuf or any storage driver. It depends on
//! plain data crates only (serde, rust_decimal, uuid, blake3), so that the rules of the
//! ledger can be tested, fuzzed and replayed without a server or a disk.
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod log;

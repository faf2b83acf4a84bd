//! Projections: the read models folded from the ledger's event log, and the workers
//! that keep them up to date.
//!
//! The log says what happened; this crate says what it means. Every read model is a
//! pure, deterministic fold of the log in global order: no clock, no randomness, no
//! floats, no hash-map iteration order in any output (ties are broken by account id or
//! index). The same events give the same state, on any machine, at any time, which is
//! what [`ReadModels::digest`] lets an operator check (`ledger-server rebuild`).
//!
//! # Layout
//! - [`model`]: [`ReadModels`], the one state every read model lives in, its interning
//!   tables (account ids, regions, activities → `u32`), the deposit index
//!   reversals need, and the event dispatch (`apply`);
//! - `prefetch`: batched folding ([`ReadModels::apply_all`]): a batch of events is
//!   decoded, the memory its fold will touch is asked for, then it is folded;
//! - [`anomaly`]: the rules of the handler's logs that a foreign log can break, and
//!   what the fold does instead of stopping;
//! - [`account`]: per-account rows (balances, lifetime hours, service days and months)
//!   and the account view; transaction history entries read from a stream;
//! - [`star`]: star-level policies (named, versioned) and levels;
//! - [`credit`]: the credit-score model (`docs/credit-score.md`), computed on demand
//!   from the volunteer's own stream up to an `as_of` time;
//! - [`rankings`]: top volunteers, projects and regions;
//! - [`index`]: the service index per region node and period: sums kept per node and
//!   added up the tree when asked, distinct activities carried up as they change;
//! - [`annual`]: volunteers below an annual minimum;
//! - [`redemptions`]: merchants' holds and captures (lists, settlement), points on
//!   hold, and the open holds the server's sweeper expires;
//! - [`runtime`]: the worker (snapshot load, catch-up, live subscription, periodic
//!   snapshots) and the full rebuild;
//! - [`snapshot`]: atomic, checksummed persistence of state plus checkpoint;
//! - [`stats`]: the worker's lag behind the log and snapshot age, as plain numbers
//!   (the server turns them into Prometheus gauges; this crate has no exporter);
//! - [`wait`]: read-your-writes (wait until the applied checkpoint reaches a position).
//!
//! Depends on `ledger-core` only: gRPC lives in `ledger-server`.
//!
//! # Units
//! Hours and points are held as `i64` hundredths ([`model::Centi`]): the domain stores
//! every amount at exactly two places, so this is exact, half the size of a `Decimal`
//! and several times faster to add; values leave this crate as `Decimal` again.
//!
//! # Memory (sized for a city: 2.68 M volunteers, ~30 M events)
//! - per volunteer: an [`account::AccountRow`] of ~150 bytes, plus its service days
//!   (8 bytes per distinct day), months (16 bytes per active month) and organisations
//!   (8 bytes each), plus its interned id, stored once (its bytes, 8 for where it
//!   ends) and looked up through a 32-byte table slot that holds a short id again
//!   (~50 bytes with the control byte and the table's slack) → about 340 bytes for a
//!   volunteer with 10 service days in 6 months at 2 organisations: ~0.9 GiB for
//!   2.68 M;
//! - per standing deposit: 32 bytes in the deposit index (a reversal names only the
//!   original transaction, so its volunteer, activity, day and hours must be kept; the
//!   organisation follows from the activity), plus the hash table's slack;
//! - the service index: a slot per (region node, period) cell, and per activity one
//!   12-byte entry per (month, volunteer's node) it was served in (kept per activity
//!   so one deposit's lookup lands in one short list, [`index::ActivityRefs`]): fewer
//!   than the standing deposits. Until the ninth session an activity kept an entry
//!   for every cell it counted in, up to twelve per (month, node): 14 M at 3 M
//!   events, 34 M at 10 M, more than the deposit index.
//!
//! Measured (`benches/replay.rs`, live heap counted by the allocator, docs/benchmarks.md
//! "Snapshot load and read-model memory", "…as sorted vectors" and "Ninth session"):
//! 347 MiB at 3 M events since an activity keeps its entries where it was served
//! (471 MiB before in the same run; 804 MiB before the deposit index and the service
//! index were first compacted) and
//! 2,782 MiB at 30 M events streamed (97 B per event; 2.73 M accounts, 20.5 M standing
//! deposits, 12.5 M service-index entries), 2,888 MiB since the eighteenth session's
//! interner slots (2,760 MiB for the build before, in the same session; 19.6 M
//! standing deposits since the bench's reversals take theirs back). Before the
//! compactions, 30 M events took
//! **6.4 GiB** of resident memory. While a periodic snapshot is written the state
//! is cloned (see [`runtime`]): as much again for the length of the write. The credit
//! report keeps nothing in memory (it reads the volunteer's stream on demand).

pub mod account;
pub mod annual;
pub mod anomaly;
pub mod credit;
pub mod index;
pub mod model;
mod prefetch;
pub mod rankings;
pub mod redemptions;
pub mod runtime;
pub mod snapshot;
pub mod star;
pub mod stats;
pub mod wait;

pub use anomaly::{AnomalyNotes, FoldAnomaly};
pub use model::{ApplyError, Period, ReadModels};
pub use prefetch::EVENTS_PER_BATCH_MAX;
pub use runtime::{rebuild, ProjectionConfig, Projections, RuntimeError, WorkerHandle};
pub use star::{StarPolicies, StarPolicy};
pub use stats::{LagCounting, LagSampler, WorkerSample};
pub use wait::{Freshness, NotCaughtUp, QUERY_FRESHNESS_WAIT_MS_MAX};

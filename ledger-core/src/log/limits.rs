//! Named limits of the event-log contract, shared by every backend.
//!
//! Each limit bounds memory, a single write or a single read. An append or read that
//! goes over one is rejected with [`super::LimitExceeded`] naming it, before anything is
//! written. Backends may add limits of their own (segment size, queue depth), never
//! loosen these.

/// Longest stream name, in UTF-8 bytes. Ledger streams are `kind-<id>` with ids of at
/// most 64 bytes; 200 leaves room without letting names dominate a record.
pub const STREAM_NAME_BYTES_MAX: usize = 200;

/// Longest event type name, in bytes. Types are stable identifiers such as
/// `HoursDeposited.v1`, not free text.
pub const EVENT_TYPE_BYTES_MAX: usize = 128;

/// Largest event payload. Ledger events are a few hundred bytes; 64 KiB is generous
/// and keeps one group commit (and one read page) bounded in memory.
pub const EVENT_DATA_BYTES_MAX: usize = 64 * 1024;

/// Largest event metadata (request id, previous-event hash, causation).
pub const EVENT_METADATA_BYTES_MAX: usize = 4 * 1024;

/// Most events in one atomic append. A bank's bulk file or a large event's check-outs
/// arrive as batches of a few thousand; 8,192 covers them while one append still fits
/// in a single write of at most [`APPEND_BYTES_MAX`].
pub const EVENTS_PER_APPEND_MAX: usize = 8192;

/// Most bytes (payload + metadata + names) in one append. An append lands in one
/// segment and one write; this bounds both.
pub const APPEND_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most events returned by one `read_stream` or `read_all` call. Callers page; a
/// bigger page would only hold more memory hostage for one caller.
pub const READ_EVENTS_MAX: usize = 4096;

//! The limits every caller gets, the `[limits]` table of the access file. Each is
//! named `…_max` and its default says why it is what it is.

use serde::Deserialize;

use super::file::AccessError;
use crate::service::BATCH_COMMANDS_MAX;

/// Largest request message a `timebank.v1` service decodes: 4 MiB, tonic's own
/// default and what the server accepted before this limit was configurable. A full
/// batch of [`BATCH_COMMANDS_MAX`] commands (a few hundred bytes each) is well under
/// 1 MiB, so 4 MiB is headroom, while it still bounds the memory one request can make
/// the server hold (times the streams in flight).
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Sustained requests per second per caller: 2,000. A whole city's platform at its
/// peak (the evening after Volunteer Day check-outs) sends well under a hundred
/// commands a second, more when it backfills; 2,000 lets every partner run its bulk
/// jobs at full speed while no single one (misbehaving, looping on retries, or using a
/// leaked key) can take the whole write path of a two-core server from the others.
/// A batch counts as one request: its size is bounded by `batch_commands_max`.
pub const REQUESTS_PER_SECOND_MAX: u32 = 2000;

/// Requests a caller may send at once above its rate: 4,000, two seconds' worth, so
/// a client that reconnects and flushes its backlog is not refused on the first burst.
pub const BURST_MAX: u32 = 4000;

/// The `[limits]` of an access file; every field may be left out for its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest decoded request message, bytes: [`REQUEST_BYTES_MAX`]. Larger requests
    /// get `OUT_OF_RANGE` from tonic (its decoder says so, without an `ErrorInfo`).
    pub request_bytes_max: usize,
    /// Most commands in one `SubmitBatch`: [`BATCH_COMMANDS_MAX`]. Larger batches get
    /// `INVALID_ARGUMENT`, reason `BATCH_TOO_LARGE`.
    pub batch_commands_max: usize,
    /// Sustained requests per second per caller: [`REQUESTS_PER_SECOND_MAX`]. Above it,
    /// `RESOURCE_EXHAUSTED`, reason `RATE_LIMITED`, with a `RetryInfo`. Applies only
    /// with an access file: without one there are no callers to tell apart.
    pub requests_per_second_max: u32,
    /// Requests a caller may send at once above its rate: [`BURST_MAX`].
    pub burst_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_bytes_max: REQUEST_BYTES_MAX,
            batch_commands_max: BATCH_COMMANDS_MAX,
            requests_per_second_max: REQUESTS_PER_SECOND_MAX,
            burst_max: BURST_MAX,
        }
    }
}

impl Limits {
    /// Every limit must let something through: a 0 would refuse every request, which
    /// is never what an operator meant (stop the server, or remove the caller).
    pub fn validate(&self) -> Result<(), AccessError> {
        for (limit, value) in [
            ("request_bytes_max", self.request_bytes_max as u64),
            ("batch_commands_max", self.batch_commands_max as u64),
            (
                "requests_per_second_max",
                u64::from(self.requests_per_second_max),
            ),
            ("burst_max", u64::from(self.burst_max)),
        ] {
            if value == 0 {
                return Err(AccessError::LimitZero { limit });
            }
        }
        Ok(())
    }
}

//! Event-id claims: log-wide event-id uniqueness on a server that only de-duplicates
//! ids within one stream.
//!
//! KurrentDB checks event ids per stream (and for `Any` appends only against a recent
//! cache). The contract wants more: an id already used on *another* stream must be
//! rejected with `EventIdReused`, and the ledger relies on that — a request id reused
//! for a different account derives the same event id on another stream, and the
//! handler turns the rejection into `RequestIdReused`. So before appending, this
//! backend *claims* every event id: it appends one small event to the claim stream
//! `timebank-idclaim-<id as 32 hex digits>` with expected version "no stream". The
//! server's own optimistic concurrency makes exactly one claim per id win, log-wide and
//! across racing nodes; a later claimer reads the winner's stream name.
//!
//! A claim is written before its event. A crash between the two leaves a claim whose
//! event never landed: a retry on the same stream proceeds (the claim is its own), and
//! the id stays reserved for that stream — stricter than the embedded log, never
//! looser. Claim streams are hidden from `read_all`, `head` and subscriptions, and no
//! ledger stream may use the prefix.

use ledger_core::log::{EventId, StreamName};
use serde::{Deserialize, Serialize};

/// Prefix of every claim stream. Ledger streams are `kind-<id>`; no kind is
/// `timebank-idclaim`, and appends to such names are refused.
pub const CLAIM_STREAM_PREFIX: &str = "timebank-idclaim-";

/// Event type of a claim, readable in KurrentDB's UI.
pub const CLAIM_EVENT_TYPE: &str = "EventIdClaimed.v1";

/// The claim stream of one event id.
pub fn claim_stream(id: &EventId) -> String {
    format!("{CLAIM_STREAM_PREFIX}{}", id.0.simple())
}

/// The body of a claim: which stream owns the id. JSON so operators can read it.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub stream: String,
}

pub fn claim_data(stream: &StreamName) -> Claim {
    Claim {
        stream: stream.as_str().to_owned(),
    }
}

pub fn parse_claim(data: &[u8]) -> Option<Claim> {
    serde_json::from_slice(data).ok()
}

/// What claiming one id found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This call created the claim: the id has never been appended anywhere.
    Fresh,
    /// An earlier call claimed it for the same stream: a retry (the event may or may
    /// not have landed) or a reuse within the stream; the stream decides which.
    Ours,
    /// Another stream owns the id.
    Elsewhere(String),
}

/// Classify an existing claim's body for an append to `stream`.
pub fn classify(existing: &[u8], stream: &StreamName) -> ClaimOutcome {
    match parse_claim(existing) {
        Some(c) if c.stream == stream.as_str() => ClaimOutcome::Ours,
        Some(c) => ClaimOutcome::Elsewhere(c.stream),
        // Unreadable claim: someone wrote to a claim stream by hand. Treat the id as
        // taken rather than risk two streams sharing it.
        None => ClaimOutcome::Elsewhere("<unreadable claim>".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_streams_are_per_id_and_hidden() {
        let id = EventId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        let s = claim_stream(&id);
        assert_eq!(s, "timebank-idclaim-0123456789abcdef0123456789abcdef");
        assert!(super::super::convert::is_hidden_stream(&s));
        assert!(StreamName::new(s).is_ok(), "a valid KurrentDB stream name");
    }

    #[test]
    fn claims_round_trip_and_classify() {
        let a = StreamName::new("account-a").expect("name");
        let b = StreamName::new("account-b").expect("name");
        let body = serde_json::to_vec(&claim_data(&a)).expect("json");
        assert_eq!(body, br#"{"stream":"account-a"}"#);
        assert_eq!(parse_claim(&body), Some(claim_data(&a)));
        assert_eq!(classify(&body, &a), ClaimOutcome::Ours);
        assert_eq!(
            classify(&body, &b),
            ClaimOutcome::Elsewhere("account-a".into())
        );
        assert!(matches!(
            classify(b"garbage", &a),
            ClaimOutcome::Elsewhere(_)
        ));
    }
}

//! Event metadata and the per-stream hash chain (tamper evidence on any backend).
//!
//! Each event's metadata carries `prev_hash`, the hash of the previous event of the
//! same stream (all zeros for version 0). The hash of an event is
//!
//! ```text
//! BLAKE3( len(stream) ‖ stream ‖ 8-byte LE version ‖ 16-byte event id
//!       ‖ len(type) ‖ type ‖ len(data) ‖ data ‖ len(metadata) ‖ metadata )
//! ```
//!
//! with every `len` an 8-byte little-endian byte count. Because the metadata (holding
//! the previous hash) is inside the hash, changing, removing or reordering any event of
//! a stream breaks every later link. Each account's history verifies on its own, in
//! whatever log it is stored, without trusting the log's own checksums.

use serde::{Deserialize, Serialize};

use super::commands::BINARY_DIGEST_PREFIX;
use super::events::{PayloadEncoding, BINARY_PAYLOAD_TAG};
use super::ids::{RequestId, TransactionId};
use crate::log::{EventId, RecordedEvent, StreamName};

/// Schema version of [`EventMetadata`].
pub const METADATA_SCHEMA: u32 = 1;

/// The hash linking an event to its predecessor.
pub type EventHash = [u8; 32];

/// `prev_hash` of the first event of a stream.
pub const GENESIS_HASH: EventHash = [0; 32];

/// Lowercase hex of a 32-byte hash: the text `hex::encode` writes, written through
/// `hex`'s table (`encode_to_slice`) instead of `hex::encode`'s iterator of chars,
/// which collects a `String` one char at a time. Every command writes two such texts
/// (`prev_hash`, `request_digest`); the iterator was ~3 % of the server's
/// instructions per batched deposit (docs/benchmarks.md, "Fifth session").
pub fn hex32(bytes: &[u8; 32]) -> String {
    String::from_utf8(hex32_digits(bytes).to_vec()).expect("hex digits are ASCII")
}

/// The 32 bytes that exactly 64 hex digits (either case) spell: the text form of every
/// hash and key hash the ledger gives out ([`hex32`] writes it). Exactly 64: the hex
/// decoder alone would also take a `0x` in front, which no such text has.
pub fn from_hex32(text: &str) -> Result<[u8; 32], hex::FromHexError> {
    if text.len() != 64 {
        return Err(hex::FromHexError::InvalidStringLength);
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)?;
    Ok(bytes)
}

/// The digits [`hex32`] writes, on the stack.
fn hex32_digits(bytes: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    hex::encode_to_slice(bytes, &mut out).expect("32 bytes are 64 hex digits");
    out
}

/// Room reserved for an event's metadata JSON: ~250 bytes with a 36-byte request id,
/// ~350 with the longest. `to_vec` started at 128 and grew, copying, once or twice.
const METADATA_JSON_BYTES_TYPICAL: usize = 512;

/// [`EventMetadata`] borrowed, for writing: the same fields in the same order with
/// the same names, so the same JSON (unit-tested below against the derived
/// `Serialize` of [`EventMetadata`]), without copying the request id and digest into
/// an owned value first.
#[derive(Serialize)]
struct MetadataText<'a> {
    schema: u32,
    request_id: Option<&'a RequestId>,
    request_digest: Option<&'a str>,
    prev_hash: &'a str,
    causation: Option<TransactionId>,
}

impl MetadataText<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(METADATA_JSON_BYTES_TYPICAL);
        serde_json::to_writer(&mut bytes, self).expect("metadata always serialises");
        bytes
    }
}

/// The metadata of a new event in `encoding`: JSON ([`encode_metadata`]) or binary.
/// The handler writes metadata in the encoding it writes payloads in.
pub fn encode_metadata_as(
    encoding: PayloadEncoding,
    request: Option<(&RequestId, &str)>,
    prev: &EventHash,
    causation: Option<TransactionId>,
) -> Vec<u8> {
    match encoding {
        PayloadEncoding::Json => encode_metadata(request, prev, causation),
        PayloadEncoding::Binary => {
            let binary = MetadataBinaryOut {
                schema: METADATA_SCHEMA,
                request_id: request.map(|(id, _)| id),
                request_digest: request.map(|(_, digest)| DigestBinary::of(digest)),
                prev_hash: *prev,
                causation,
            };
            let mut bytes = Vec::with_capacity(METADATA_BINARY_BYTES_TYPICAL);
            bytes.push(BINARY_PAYLOAD_TAG);
            super::events::postcard_after(bytes, &binary).expect("metadata always serialises")
        }
    }
}

/// Room for binary metadata: ~100 bytes with a 36-byte request id.
const METADATA_BINARY_BYTES_TYPICAL: usize = 160;

/// Metadata in a binary record: [`BINARY_PAYLOAD_TAG`], then these fields in postcard
/// (`docs/events.md`, "Binary payloads"): the same values as the JSON's, with the two
/// hashes as their 32 bytes instead of 64 hex digits. Written from borrowed fields,
/// read into [`MetadataBinaryIn`]: the same fields in the same order (the unit test
/// `binary_metadata_reads_back_as_its_json_twin` holds them together).
#[derive(Serialize)]
struct MetadataBinaryOut<'a> {
    schema: u32,
    request_id: Option<&'a RequestId>,
    request_digest: Option<DigestBinary>,
    prev_hash: EventHash,
    causation: Option<TransactionId>,
}

/// [`MetadataBinaryOut`] as read. The request id is read as JSON metadata reads it.
#[derive(Deserialize)]
struct MetadataBinaryIn {
    schema: u32,
    request_id: Option<RequestId>,
    request_digest: Option<DigestBinary>,
    prev_hash: EventHash,
    causation: Option<TransactionId>,
}

/// A request digest's 32 bytes, and which form of the command they are the BLAKE3
/// of (`Command::digest_as`). The variants' order is the wire format.
#[derive(Serialize, Deserialize)]
enum DigestBinary {
    /// Of the command's JSON: the text form is the 64 hex digits.
    Json(EventHash),
    /// Of its binary form: the text form is `bin:` and the 64 hex digits.
    Binary(EventHash),
}

impl DigestBinary {
    /// From the text form the handler computes ([`crate::domain::commands::Command::digest_as`]).
    fn of(text: &str) -> Self {
        let (binary, hex_digits) = match text.strip_prefix(BINARY_DIGEST_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes)
            .expect("a request digest is 64 hex digits, after its prefix");
        if binary {
            Self::Binary(bytes)
        } else {
            Self::Json(bytes)
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Json(b) => hex32(b),
            Self::Binary(b) => format!("{BINARY_DIGEST_PREFIX}{}", hex32(b)),
        }
    }
}

/// The metadata JSON of a new event: exactly what [`EventMetadata::encode`] writes for
/// `EventMetadata { schema: METADATA_SCHEMA, request_id, request_digest, prev_hash:
/// hex32(prev), causation }`, where `request` is the request id and its digest (none
/// for receipts). Every append writes one; this one copies neither the id nor the
/// digest and keeps the hex on the stack.
pub fn encode_metadata(
    request: Option<(&RequestId, &str)>,
    prev: &EventHash,
    causation: Option<TransactionId>,
) -> Vec<u8> {
    let prev_hash = hex32_digits(prev);
    MetadataText {
        schema: METADATA_SCHEMA,
        request_id: request.map(|(id, _)| id),
        request_digest: request.map(|(_, digest)| digest),
        prev_hash: std::str::from_utf8(&prev_hash).expect("hex digits are ASCII"),
        causation,
    }
    .encode()
}

/// The metadata of every ledger event, as stored in JSON or read from binary
/// metadata ([`EventMetadata::decode`]); [`EventMetadata::encode`] writes its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub schema: u32,
    /// The client request that produced the event; none for receipts.
    pub request_id: Option<RequestId>,
    /// Hex BLAKE3 of the canonical encoding of the command (see `commands`).
    pub request_digest: Option<String>,
    /// Hex hash of the previous event of the same stream.
    pub prev_hash: String,
    /// For receipts: the transaction that caused them.
    pub causation: Option<TransactionId>,
}

impl EventMetadata {
    pub fn encode(&self) -> Vec<u8> {
        self.text().encode()
    }

    /// The JSON metadata as text: the bytes of [`EventMetadata::encode`], for readers
    /// that show binary metadata as its JSON rendering.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.text()).expect("metadata always serialises")
    }

    fn text(&self) -> MetadataText<'_> {
        MetadataText {
            schema: self.schema,
            request_id: self.request_id.as_ref(),
            request_digest: self.request_digest.as_deref(),
            prev_hash: &self.prev_hash,
            causation: self.causation,
        }
    }

    /// Read stored metadata of either encoding (binary when it starts with
    /// [`BINARY_PAYLOAD_TAG`], as payloads do). The hashes of binary metadata come back
    /// as the hex text JSON metadata holds, so every reader sees one shape.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetadataError> {
        if let Some(body) = bytes.strip_prefix(&[BINARY_PAYLOAD_TAG]) {
            let b = match postcard::take_from_bytes::<MetadataBinaryIn>(body) {
                Ok((b, [])) => b,
                Ok((_, rest)) => {
                    return Err(MetadataError::Binary(format!(
                        "{} bytes after the last field",
                        rest.len()
                    )))
                }
                Err(e) => return Err(MetadataError::Binary(e.to_string())),
            };
            return Ok(Self {
                schema: b.schema,
                request_id: b.request_id,
                request_digest: b.request_digest.map(|d| d.text()),
                prev_hash: hex32(&b.prev_hash),
                causation: b.causation,
            });
        }
        // Checked as UTF-8 once, then read as text (`events::json_text`).
        serde_json::from_str(super::events::json_text(bytes)?).map_err(MetadataError::Json)
    }
}

/// Stored metadata that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("binary metadata: {0}")]
    Binary(String),
}

/// The hash of one event, as defined in the module documentation.
pub fn event_hash(
    stream: &StreamName,
    version: u64,
    id: &EventId,
    event_type: &str,
    data: &[u8],
    metadata: &[u8],
) -> EventHash {
    let len = 8
        + stream.as_str().len()
        + 8
        + 16
        + 8
        + event_type.len()
        + 8
        + data.len()
        + 8
        + metadata.len();
    if len <= EVENT_HASH_STACK_BYTES {
        // The same bytes laid end to end on the stack and hashed in one call: a
        // `Hasher` fed ten pieces (four of them 8-byte lengths) paid its bookkeeping
        // and a buffering copy on each, ~1,000 instructions per event. BLAKE3 of the
        // concatenation is what the pieces fed in turn give (unit-tested below).
        let mut buf = [0u8; EVENT_HASH_STACK_BYTES];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&(stream.as_str().len() as u64).to_le_bytes());
        put(stream.as_str().as_bytes());
        put(&version.to_le_bytes());
        put(id.as_bytes());
        put(&(event_type.len() as u64).to_le_bytes());
        put(event_type.as_bytes());
        put(&(data.len() as u64).to_le_bytes());
        put(data);
        put(&(metadata.len() as u64).to_le_bytes());
        put(metadata);
        return *blake3::hash(&buf[..len]).as_bytes();
    }
    fn part(h: &mut blake3::Hasher, bytes: &[u8]) {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let mut h = blake3::Hasher::new();
    part(&mut h, stream.as_str().as_bytes());
    h.update(&version.to_le_bytes());
    h.update(id.as_bytes());
    part(&mut h, event_type.as_bytes());
    part(&mut h, data);
    part(&mut h, metadata);
    *h.finalize().as_bytes()
}

/// Longest event [`event_hash`] lays out on the stack: a deposit's ~900 bytes and
/// most other events fit; a longer one is fed to a `Hasher` piece by piece.
const EVENT_HASH_STACK_BYTES: usize = 2048;

/// Where a [`range_digest_step`] chain starts: 32 zero bytes.
pub const RANGE_DIGEST_START: EventHash = [0; 32];

/// One step of VerifyLog's `range_digest`: `BLAKE3(digest ‖ record)`, where `record`
/// is the next record's 32-byte hash ([`recorded_hash`]) in log order. Over a range
/// it commits to every record in it and their order, which the per-stream links do
/// not: nothing links to the last event of a stream, so an edit of it keeps every
/// link. Positions are not in it, so a log copied to another store (new positions,
/// the same records in the same order) keeps its digests (`docs/events.md`).
pub fn range_digest_step(digest: &EventHash, record: &EventHash) -> EventHash {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(digest);
    both[32..].copy_from_slice(record);
    *blake3::hash(&both).as_bytes()
}

pub fn recorded_hash(e: &RecordedEvent) -> EventHash {
    event_hash(
        &e.stream,
        e.version,
        &e.id,
        &e.event_type,
        &e.data,
        &e.metadata,
    )
}

/// Where a stream's chain is broken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event at version {version} of {stream} has unreadable metadata; the stream was altered or written by another program")]
    Metadata { stream: String, version: u64 },
    #[error("event at version {version} of {stream} does not link to its predecessor; the history was altered")]
    Broken { stream: String, version: u64 },
    #[error("stream {stream} holds version {found} where version {expected} belongs; events were removed")]
    Gap {
        stream: String,
        expected: u64,
        found: u64,
    },
}

/// Verify a whole stream's chain, events in version order starting at version 0.
pub fn verify_chain(events: &[RecordedEvent]) -> Result<(), ChainError> {
    let mut prev = GENESIS_HASH;
    for (i, e) in events.iter().enumerate() {
        if e.version != i as u64 {
            return Err(ChainError::Gap {
                stream: e.stream.to_string(),
                expected: i as u64,
                found: e.version,
            });
        }
        let meta = EventMetadata::decode(&e.metadata).map_err(|_| ChainError::Metadata {
            stream: e.stream.to_string(),
            version: e.version,
        })?;
        if meta.prev_hash != hex32(&prev) {
            return Err(ChainError::Broken {
                stream: e.stream.to_string(),
                version: e.version,
            });
        }
        prev = recorded_hash(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 hex digits in either case read back as the bytes `hex32` wrote; a `0x` in
    /// front, a digit more or less, or a letter past `f` are refused.
    #[test]
    fn from_hex32_reads_exactly_64_digits() {
        let h = *blake3::hash(b"timebank").as_bytes();
        let text = hex32(&h);
        assert_eq!(from_hex32(&text), Ok(h));
        assert_eq!(from_hex32(&text.to_uppercase()), Ok(h));
        for bad in [
            format!("0x{text}"),
            text[1..].to_owned(),
            format!("{text}0"),
            format!("g{}", &text[1..]),
            String::new(),
        ] {
            assert!(from_hex32(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex32_writes_what_hex_encode_writes() {
        for h in [[0u8; 32], [0xff; 32], *blake3::hash(b"timebank").as_bytes()] {
            assert_eq!(hex32(&h), hex::encode(h));
        }
    }
    use crate::log::Position;

    #[test]
    fn an_event_hash_is_the_same_on_the_stack_and_piece_by_piece() {
        let stream = StreamName::new("account-vol-1").unwrap();
        let id = EventId::from_bytes([3; 16]);
        for len in [0, 1, 900, 1949, 1950, 1951, 5000] {
            let data = vec![b'x'; len];
            let metadata = b"{\"schema\":1}";
            let mut h = blake3::Hasher::new();
            for (i, piece) in [
                stream.as_str().as_bytes(),
                b"HoursDeposited.v1",
                &data,
                metadata,
            ]
            .into_iter()
            .enumerate()
            {
                h.update(&(piece.len() as u64).to_le_bytes());
                h.update(piece);
                if i == 0 {
                    h.update(&7u64.to_le_bytes());
                    h.update(id.as_bytes());
                }
            }
            assert_eq!(
                event_hash(&stream, 7, &id, "HoursDeposited.v1", &data, metadata),
                *h.finalize().as_bytes(),
                "{len}"
            );
        }
    }

    #[test]
    fn metadata_is_written_as_the_derived_serialize_writes_it() {
        let request = RequestId::new("req-7:a_b.c").unwrap();
        let digest = hex32(blake3::hash(b"command").as_bytes());
        let prev = *blake3::hash(b"previous").as_bytes();
        let transaction = TransactionId(uuid::Uuid::from_bytes([7; 16]));
        for (request, causation) in [
            (Some((&request, digest.as_str())), None),
            (None, Some(transaction)),
            (None, None),
            (Some((&request, digest.as_str())), Some(transaction)),
        ] {
            let owned = EventMetadata {
                schema: METADATA_SCHEMA,
                request_id: request.map(|(id, _)| id.clone()),
                request_digest: request.map(|(_, d)| d.to_owned()),
                prev_hash: hex32(&prev),
                causation,
            };
            let derived = serde_json::to_vec(&owned).unwrap();
            assert_eq!(owned.encode(), derived);
            assert_eq!(encode_metadata(request, &prev, causation), derived);
            assert_eq!(EventMetadata::decode(&derived).unwrap(), owned);
        }
    }

    /// Binary metadata reads back as the very fields its JSON twin holds, for every
    /// mix of request, digest form and causation, in under half the bytes; spoiled
    /// (truncated, padded) it does not decode.
    #[test]
    fn binary_metadata_reads_back_as_its_json_twin() {
        let request = RequestId::new("req-7:a_b.c").unwrap();
        let json_digest = hex32(blake3::hash(b"command").as_bytes());
        let binary_digest = format!("{BINARY_DIGEST_PREFIX}{json_digest}");
        let prev = *blake3::hash(b"previous").as_bytes();
        let transaction = TransactionId(uuid::Uuid::from_bytes([7; 16]));
        for digest in [&json_digest, &binary_digest] {
            for (request, causation) in [
                (Some((&request, digest.as_str())), None),
                (None, Some(transaction)),
                (None, None),
                (Some((&request, digest.as_str())), Some(transaction)),
            ] {
                let json = encode_metadata(request, &prev, causation);
                let binary = encode_metadata_as(PayloadEncoding::Binary, request, &prev, causation);
                assert_eq!(binary[0], BINARY_PAYLOAD_TAG);
                assert!(
                    binary.len() * 2 < json.len(),
                    "{} of {}",
                    binary.len(),
                    json.len()
                );
                let twin = EventMetadata::decode(&json).unwrap();
                assert_eq!(EventMetadata::decode(&binary).unwrap(), twin);
                assert_eq!(
                    encode_metadata_as(PayloadEncoding::Json, request, &prev, causation),
                    json
                );
                for cut in [1, binary.len() - 1] {
                    assert!(matches!(
                        EventMetadata::decode(&binary[..cut]),
                        Err(MetadataError::Binary(_))
                    ));
                }
                let mut padded = binary.clone();
                padded.push(0);
                assert!(matches!(
                    EventMetadata::decode(&padded),
                    Err(MetadataError::Binary(m)) if m.contains("after the last field")
                ));
            }
        }
    }

    fn event(version: u64, prev: EventHash) -> RecordedEvent {
        let meta = EventMetadata {
            schema: METADATA_SCHEMA,
            request_id: None,
            request_digest: None,
            prev_hash: hex::encode(prev),
            causation: None,
        };
        RecordedEvent {
            stream: StreamName::new("account-a").unwrap(),
            version,
            position: Position::from_sequence(version),
            id: EventId::from_bytes([version as u8; 16]),
            event_type: "AccountClosed.v1".into(),
            data: b"{}".to_vec(),
            metadata: meta.encode(),
        }
    }

    #[test]
    fn a_linked_stream_verifies_and_any_change_breaks_it() {
        let first = event(0, GENESIS_HASH);
        let second = event(1, recorded_hash(&first));
        let third = event(2, recorded_hash(&second));
        let stream = vec![first.clone(), second.clone(), third.clone()];
        assert_eq!(verify_chain(&stream), Ok(()));

        let mut changed = stream.clone();
        changed[1].data = b"{ }".to_vec();
        assert!(matches!(
            verify_chain(&changed),
            Err(ChainError::Broken { version: 2, .. })
        ));

        assert!(matches!(
            verify_chain(&[first.clone(), third.clone()]),
            Err(ChainError::Gap {
                expected: 1,
                found: 2,
                ..
            })
        ));
        assert!(matches!(
            verify_chain(std::slice::from_ref(&second)),
            Err(ChainError::Gap {
                expected: 0,
                found: 1,
                ..
            })
        ));
        let mut garbled = stream;
        garbled[0].metadata = b"not json".to_vec();
        assert!(matches!(
            verify_chain(&garbled),
            Err(ChainError::Metadata { version: 0, .. })
        ));
    }
}

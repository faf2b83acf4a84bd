//! The on-disk format of the embedded log, byte by byte. `docs/event-log.md` is the
//! prose version of this file; keep them in step.
//!
//! A log is a directory of segment files `NNNNNNNNNN.seg` (segment number, 10 digits).
//! Each segment is a 64-byte header followed by records. All integers little-endian.
//!
//! Segment header (64 bytes):
//! ```text
//!  0  8  magic "TBLOGSEG"
//!  8  4  format version (1)
//! 12  4  CRC32C of the 64 header bytes with this field zeroed
//! 16  8  segment number
//! 24  8  sequence number of the segment's first record
//! 32 32  chain hash before the segment's first record (zeros for segment 0)
//! ```
//!
//! Record (8 + N bytes):
//! ```text
//!  0  4  N: body length
//!  4  4  CRC32C of the body
//!  8  N  body
//! ```
//! Body (80 + S + T + D + M bytes):
//! ```text
//!  0  1  flags: bit 0 COMMIT = last event of its append; other bits zero
//!  1  1  reserved, zero
//!  2  2  S: stream name length
//!  4  2  T: event type length
//!  6  2  reserved, zero
//!  8  8  sequence number = global position
//! 16  8  stream version
//! 24 16  event id
//! 40 32  previous hash: BLAKE3 of the previous record's body (zeros for the first)
//! 72  4  D: data length
//! 76  4  M: metadata length
//! 80  S  stream name (UTF-8)
//!  .  T  event type (ASCII)
//!  .  D  data
//!  .  M  metadata
//! ```
//! The hash of a record is BLAKE3 of its body. The CRC catches torn writes and bit rot
//! cheaply on every read; the hash chain makes any edit anywhere visible at the head.

use ledger_core::log::limits::{
    EVENT_DATA_BYTES_MAX, EVENT_METADATA_BYTES_MAX, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX,
};
use ledger_core::log::{EventId, Position, RecordedEvent, StreamName};

pub const SEGMENT_MAGIC: &[u8; 8] = b"TBLOGSEG";
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 64;
pub const RECORD_HEADER_LEN: usize = 8;
pub const BODY_FIXED_LEN: usize = 80;
pub const FLAG_COMMIT: u8 = 1;

/// Largest body a valid record can have: anything longer is damage, not data.
pub const RECORD_BODY_BYTES_MAX: usize = BODY_FIXED_LEN
    + STREAM_NAME_BYTES_MAX
    + EVENT_TYPE_BYTES_MAX
    + EVENT_DATA_BYTES_MAX
    + EVENT_METADATA_BYTES_MAX;

pub type Hash = [u8; 32];
pub const ZERO_HASH: Hash = [0; 32];

pub fn segment_file_name(number: u64) -> String {
    format!("{number:010}.seg")
}

pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub number: u64,
    pub first_sequence: u64,
    pub start_hash: Hash,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.number.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_sequence.to_le_bytes());
        b[32..64].copy_from_slice(&self.start_hash);
        let crc = crc32c::crc32c(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("segment header is incomplete");
        }
        if &b[0..8] != SEGMENT_MAGIC {
            return Err("segment header magic is wrong");
        }
        if u32_at(b, 8) != FORMAT_VERSION {
            return Err("segment format version is not 1");
        }
        let mut copy = [0u8; SEGMENT_HEADER_LEN];
        copy.copy_from_slice(&b[..SEGMENT_HEADER_LEN]);
        copy[12..16].fill(0);
        if crc32c::crc32c(&copy) != u32_at(b, 12) {
            return Err("segment header CRC mismatch");
        }
        let mut start_hash = ZERO_HASH;
        start_hash.copy_from_slice(&b[32..64]);
        Ok(Self {
            number: u64_at(b, 16),
            first_sequence: u64_at(b, 24),
            start_hash,
        })
    }
}

/// The fields of a record to encode.
pub struct RecordFields<'a> {
    pub commit: bool,
    pub sequence: u64,
    pub version: u64,
    pub id: &'a EventId,
    pub prev_hash: &'a Hash,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
}

pub fn record_len(stream: &str, event_type: &str, data: &[u8], metadata: &[u8]) -> usize {
    RECORD_HEADER_LEN
        + BODY_FIXED_LEN
        + stream.len()
        + event_type.len()
        + data.len()
        + metadata.len()
}

/// Append one encoded record to `out` and return the hash of its body.
pub fn encode_record(out: &mut Vec<u8>, f: &RecordFields<'_>) -> Hash {
    let body_len = record_len(f.stream, f.event_type, f.data, f.metadata) - RECORD_HEADER_LEN;
    assert!(
        body_len <= RECORD_BODY_BYTES_MAX,
        "limits are checked before encoding"
    );
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.push(if f.commit { FLAG_COMMIT } else { 0 });
    out.push(0);
    out.extend_from_slice(&(f.stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(f.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&f.sequence.to_le_bytes());
    out.extend_from_slice(&f.version.to_le_bytes());
    out.extend_from_slice(f.id.as_bytes());
    out.extend_from_slice(f.prev_hash);
    out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(f.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(f.stream.as_bytes());
    out.extend_from_slice(f.event_type.as_bytes());
    out.extend_from_slice(f.data);
    out.extend_from_slice(f.metadata);
    let body = &out[start + RECORD_HEADER_LEN..];
    debug_assert_eq!(body.len(), body_len);
    let crc = crc32c::crc32c(body);
    let hash = *blake3::hash(body).as_bytes();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// A record parsed in place.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub commit: bool,
    pub sequence: u64,
    pub version: u64,
    pub id: EventId,
    pub prev_hash: &'a [u8],
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    pub body: &'a [u8],
    /// Header + body.
    pub total_len: usize,
}

impl RecordView<'_> {
    pub fn hash(&self) -> Hash {
        *blake3::hash(self.body).as_bytes()
    }

    pub fn to_event(self) -> Result<RecordedEvent, &'static str> {
        Ok(RecordedEvent {
            stream: StreamName::new(self.stream)
                .map_err(|_| "record holds an invalid stream name")?,
            version: self.version,
            position: Position::from_sequence(self.sequence),
            id: self.id,
            event_type: self.event_type.to_owned(),
            data: self.data.to_vec(),
            metadata: self.metadata.to_vec(),
        })
    }
}

/// Why the bytes at an offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFault {
    /// Fewer bytes remain than the record needs: the end of a torn write, or a cut.
    Incomplete,
    BadLength(u32),
    BadCrc {
        stored: u32,
        computed: u32,
    },
    Malformed(&'static str),
}

impl std::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Incomplete => f.write_str("record is incomplete (the file ends inside it)"),
            Self::BadLength(n) => write!(f, "record length {n} is impossible"),
            Self::BadCrc { stored, computed } => {
                write!(
                    f,
                    "record CRC32C mismatch (stored {stored:08x}, computed {computed:08x})"
                )
            }
            Self::Malformed(what) => f.write_str(what),
        }
    }
}

pub fn decode_record(buf: &[u8], off: usize) -> Result<RecordView<'_>, RecordFault> {
    let rest = buf.get(off..).unwrap_or(&[]);
    if rest.len() < RECORD_HEADER_LEN {
        return Err(RecordFault::Incomplete);
    }
    let n = u32_at(rest, 0);
    if (n as usize) < BODY_FIXED_LEN || n as usize > RECORD_BODY_BYTES_MAX {
        return Err(RecordFault::BadLength(n));
    }
    let total_len = RECORD_HEADER_LEN + n as usize;
    if rest.len() < total_len {
        return Err(RecordFault::Incomplete);
    }
    let body = &rest[RECORD_HEADER_LEN..total_len];
    let stored = u32_at(rest, 4);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(RecordFault::BadCrc { stored, computed });
    }
    let flags = body[0];
    if flags & !FLAG_COMMIT != 0 || body[1] != 0 || body[6] != 0 || body[7] != 0 {
        return Err(RecordFault::Malformed(
            "record has unknown flags or reserved bytes set",
        ));
    }
    let s = u16_at(body, 2) as usize;
    let t = u16_at(body, 4) as usize;
    let d = u32_at(body, 72) as usize;
    let m = u32_at(body, 76) as usize;
    if BODY_FIXED_LEN + s + t + d + m != body.len() {
        return Err(RecordFault::Malformed(
            "record field lengths do not add up to its length",
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[24..40]);
    let mut at = BODY_FIXED_LEN;
    let mut take = |len: usize| {
        let field = &body[at..at + len];
        at += len;
        field
    };
    let stream = std::str::from_utf8(take(s))
        .map_err(|_| RecordFault::Malformed("stream name is not UTF-8"))?;
    let event_type = std::str::from_utf8(take(t))
        .map_err(|_| RecordFault::Malformed("event type is not UTF-8"))?;
    let data = take(d);
    let metadata = take(m);
    Ok(RecordView {
        commit: flags & FLAG_COMMIT != 0,
        sequence: u64_at(body, 8),
        version: u64_at(body, 16),
        id: EventId::from_bytes(id),
        prev_hash: &body[40..72],
        stream,
        event_type,
        data,
        metadata,
        body,
        total_len,
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_a_flipped_byte() {
        let id = EventId::new_random();
        let mut buf = Vec::new();
        let hash = encode_record(
            &mut buf,
            &RecordFields {
                commit: true,
                sequence: 7,
                version: 3,
                id: &id,
                prev_hash: &[9; 32],
                stream: "account-a",
                event_type: "HoursDeposited.v1",
                data: b"{\"hours\":\"1.50\"}",
                metadata: b"{}",
            },
        );
        let r = decode_record(&buf, 0).expect("valid record");
        assert_eq!((r.sequence, r.version, r.commit), (7, 3, true));
        assert_eq!((r.stream, r.event_type), ("account-a", "HoursDeposited.v1"));
        assert_eq!(r.id, id);
        assert_eq!(r.hash(), hash);
        assert_eq!(r.total_len, buf.len());
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_record(&bad, 0).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert_eq!(
            decode_record(&buf[..buf.len() - 1], 0).unwrap_err(),
            RecordFault::Incomplete
        );
    }

    #[test]
    fn segment_header_round_trips() {
        let h = SegmentHeader {
            number: 4,
            first_sequence: 1000,
            start_hash: [3; 32],
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut b = h.encode();
        b[20] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }
}

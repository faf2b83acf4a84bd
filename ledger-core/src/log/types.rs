//! The values the event log speaks in.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::limits::{EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};
use super::InvalidEvent;

/// The name of one stream: an account's history, in the ledger.
///
/// Valid names are 1..=[`STREAM_NAME_BYTES_MAX`] bytes of UTF-8 with no control
/// characters and no leading `$` (KurrentDB reserves `$` for its system streams, and the
/// same name must mean the same stream on every backend).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(CompactString);

impl StreamName {
    /// Held inline up to 24 bytes, as ids are (`domain/ids.rs`): `account-` and an id
    /// of up to 16 bytes, every account stream of the demo city, is made for each
    /// account a command loads and read back with every record, without an allocation.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidEvent> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(InvalidEvent::StreamNameEmpty);
        }
        if name.len() > STREAM_NAME_BYTES_MAX {
            return Err(InvalidEvent::StreamNameTooLong {
                bytes: name.len(),
                max: STREAM_NAME_BYTES_MAX,
            });
        }
        if name.starts_with('$') || has_control(name) {
            return Err(InvalidEvent::StreamNameCharacters {
                name: name.to_owned(),
            });
        }
        Ok(Self(CompactString::new(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text.chars().any(char::is_control)`, without decoding chars when every byte is
/// printable ASCII (every name the ledger makes is), which is checked with one range
/// test per byte and no early exit, so that it runs many bytes at a time: the ASCII
/// control characters are exactly the bytes below 0x20 and 0x7F. Decoding chars cost
/// ~400 instructions per stream name, and every command and every record read back
/// makes a few names.
fn has_control(text: &str) -> bool {
    let printable_ascii = text
        .bytes()
        .fold(true, |ok, b| ok & (0x20..0x7f).contains(&b));
    !printable_ascii && text.chars().any(char::is_control)
}

impl TryFrom<String> for StreamName {
    type Error = InvalidEvent;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> Self {
        value.0.into()
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen, globally unique event id. Retrying an append with the same ids is
/// how a client makes it idempotent; KurrentDB de-duplicates on the same ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an event sits in the global order of the whole log.
///
/// Opaque to callers: compare positions, store them as checkpoints, hand them back.
/// The embedded log numbers events densely (`commit == prepare == sequence`); KurrentDB
/// reports its `$all` commit and prepare positions. Ordering is lexicographic on
/// (commit, prepare), which is `$all` order on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    commit: u64,
    prepare: u64,
}

impl Position {
    /// For backends: build a position from the store's own coordinates.
    pub const fn new(commit: u64, prepare: u64) -> Self {
        Self { commit, prepare }
    }

    /// For backends that number events densely.
    pub const fn from_sequence(sequence: u64) -> Self {
        Self::new(sequence, sequence)
    }

    pub const fn commit(&self) -> u64 {
        self.commit
    }

    pub const fn prepare(&self) -> u64 {
        self.prepare
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.commit == self.prepare {
            write!(f, "{}", self.commit)
        } else {
            write!(f, "{}/{}", self.commit, self.prepare)
        }
    }
}

/// Where a read of the whole log starts: at the beginning, or just after a checkpoint.
///
/// "After" rather than "from" because a checkpoint is the last position a reader has
/// *seen*, and only some backends can compute the position that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    After(Position),
}

impl ReadFrom {
    pub fn after(checkpoint: Option<Position>) -> Self {
        checkpoint.map_or(Self::Start, Self::After)
    }
}

/// The optimistic-concurrency condition of an append. Versions are 0-based stream
/// revisions: the first event of a stream has version 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The condition that holds for a stream currently at `current` (None: no stream).
    pub fn from_current(current: Option<u64>) -> Self {
        current.map_or(Self::NoStream, Self::Exact)
    }

    pub fn is_satisfied_by(&self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::Exact(v) => current == Some(*v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// A stream's current version for error messages: a number or "no stream".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentVersion(pub Option<u64>);

impl fmt::Display for CurrentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("no stream"),
            Some(v) => write!(f, "{v}"),
        }
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub id: EventId,
    /// Stable type name with its schema version, e.g. `HoursDeposited.v1`.
    pub event_type: String,
    /// The payload; the ledger writes JSON so operators can read it in any tool.
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl NewEvent {
    /// A digest of everything that makes two appends of the same id "the same event".
    /// Each field is length-prefixed so that no two different events share an encoding.
    pub fn content_digest(&self, stream: &StreamName) -> ContentDigest {
        content_digest(stream, &self.event_type, &self.data, &self.metadata)
    }

    pub(crate) fn validate_type(&self) -> Result<(), InvalidEvent> {
        let t = &self.event_type;
        if t.is_empty() || t.len() > EVENT_TYPE_BYTES_MAX {
            return Err(InvalidEvent::EventTypeLength {
                bytes: t.len(),
                max: EVENT_TYPE_BYTES_MAX,
            });
        }
        if !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(InvalidEvent::EventTypeCharacters {
                event_type: t.clone(),
            });
        }
        Ok(())
    }
}

/// 128 bits of BLAKE3: enough that two different events never share a digest by
/// chance, half the memory of the full hash in the embedded log's id index.
pub type ContentDigest = [u8; 16];

pub fn content_digest(
    stream: &StreamName,
    event_type: &str,
    data: &[u8],
    metadata: &[u8],
) -> ContentDigest {
    let mut h = blake3::Hasher::new();
    for part in [
        stream.as_str().as_bytes(),
        event_type.as_bytes(),
        data,
        metadata,
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// An event as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub stream: StreamName,
    pub version: u64,
    pub position: Position,
    pub id: EventId,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl RecordedEvent {
    pub fn content_digest(&self) -> ContentDigest {
        content_digest(&self.stream, &self.event_type, &self.data, &self.metadata)
    }
}

/// What a successful append returns; a retried append returns the original one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The version of the last event appended: pass it as `ExpectedVersion::Exact` next.
    pub stream_version: u64,
    /// One position per appended event, in order.
    pub positions: Vec<Position>,
}

impl AppendResult {
    /// The position of the last event: a query asked to be at least this fresh sees
    /// the whole append.
    pub fn last_position(&self) -> Position {
        *self
            .positions
            .last()
            .expect("an append result holds at least one position")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_control_check_agrees_with_chars() {
        for b in 0u8..=0x7f {
            let text = format!("account-{}x", b as char);
            assert_eq!(
                has_control(&text),
                text.chars().any(char::is_control),
                "{b:#x}"
            );
        }
        for text in ["kontō-\u{85}", "名字", "a\u{9f}", "a\u{a0}", "\u{7f}é"] {
            assert_eq!(
                has_control(text),
                text.chars().any(char::is_control),
                "{text:?}"
            );
        }
    }
}

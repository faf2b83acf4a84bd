//! `ledger-server export`: the whole event log as JSON lines, for auditors.
//!
//! One [`ExportLine`] per event, in global log order, so that an auditor can recompute
//! balances, star levels and credit scores with a program of their own, and check each
//! account's hash chain, from the file alone. The line format and every event type are
//! documented in `docs/events.md`.
//!
//! # What the export promises
//! - Lines are in strictly increasing log position (the order projections fold in).
//! - It is a snapshot: it ends at the log's head as it was when the export started, so
//!   a live log (KurrentDB) cannot make it run forever.
//! - `data` and `metadata` are the stored bytes **verbatim** (checked to be JSON), not
//!   re-encoded: the same log always gives the same bytes, and an auditor who extracts
//!   the raw text of both fields can recompute `hash` (see
//!   `ledger_core::domain::chain`). Re-encoding through `serde_json::Value` was not
//!   taken: it sorts object keys and would make the stored hash unverifiable.
//! - A **binary** payload (`docs/events.md#binary-payloads`) cannot go into a JSON line
//!   verbatim. Its line's `data` is the event's JSON rendering (exactly what a ledger
//!   writing JSON would have stored), followed by `"payload_encoding":"binary"` and
//!   `"stored_data"`, the stored bytes in standard base64: `hash` is then recomputed
//!   from `stored_data`, not from `data`. Lines of JSON payloads are byte for byte what
//!   they were before binary payloads existed, so existing auditors' tools read a JSON
//!   log unchanged. The options not taken: only base64 in `data` (every tool would
//!   have to decode postcard to read the event), or only the rendering (`hash` could
//!   no longer be recomputed from the file). Binary metadata (written beside binary
//!   payloads) goes out the same way: its JSON rendering as `metadata`, then
//!   `"stored_metadata"` with the stored bytes in base64.
//! - A payload that is not JSON, or a binary payload that does not decode, means the
//!   log is corrupt: the export stops with an error naming the event rather than skip
//!   it (an audit with a hole is worse than none).
//!
//! The embedded log is opened exclusively, so this cannot run against the data
//! directory of a running server (stop it, or export a copy of the directory; the
//! live alternative is the auditor `StreamLog` RPC).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ledger_core::domain::chain::{
    hex32, range_digest_step, recorded_hash, EventHash, EventMetadata, RANGE_DIGEST_START,
};
use ledger_core::domain::events::{is_binary_payload, DecodeError, LedgerEvent};
use ledger_core::log::limits::READ_EVENTS_MAX;
use ledger_core::log::{EventLog, Position, ReadError, ReadFrom, RecordedEvent};
use ledger_store::{OpenError, Store, StoreError};
use serde::de::IgnoredAny;

/// Output buffer. Lines are a few hundred bytes; 1 MiB turns a page of 4,096 events
/// into a handful of writes without holding much memory.
pub const EXPORT_BUFFER_BYTES: usize = 1024 * 1024;

/// `ledger-server export` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ExportArgs {
    /// Data directory of the server (its embedded log is in `log/`). The server must be
    /// stopped: the embedded log is opened exclusively.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where the event log lives: `embedded` (in the data directory) or a KurrentDB
    /// connection string, as for `serve`.
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// Output file, or `-` for standard output. A file is written next to itself as
    /// `FILE.partial`, synced, then renamed into place: FILE is either a complete
    /// export or untouched.
    #[arg(long, default_value = "-")]
    pub out: String,
    /// Export only the events after this position (exclusive): the head position a
    /// previous export printed, as `COMMIT` or `COMMIT:PREPARE`.
    #[arg(long, value_parser = parse_position)]
    pub from_position: Option<Position>,
}

/// One line of the export: one event as the log holds it. Serialised with the fields
/// in this order, as compact JSON followed by `\n`. See `docs/events.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportLine<'a> {
    /// `{"commit": u64, "prepare": u64}`: the event's place in the global order
    /// (equal numbers on the embedded log, where it is the dense sequence number).
    pub position: Position,
    /// `account-<account id>`.
    pub stream: &'a str,
    /// 0-based version of the event in its stream.
    pub version: u64,
    /// The event id, a hyphenated lowercase UUID.
    pub id: String,
    /// `type`: the versioned event type, e.g. `HoursDeposited.v1`.
    pub event_type: &'a str,
    /// The payload as JSON text: the stored text verbatim for a JSON payload, the
    /// event's JSON rendering (`LedgerEvent::encode`) for a binary one.
    pub data: Cow<'a, str>,
    /// For a binary payload only: the stored bytes in standard base64, written as
    /// `"payload_encoding":"binary","stored_data":"…"` right after `data`; `hash` is
    /// over these bytes. None for a JSON payload, whose line is unchanged.
    pub stored_data: Option<String>,
    /// The metadata: the stored JSON text verbatim, or binary metadata's JSON
    /// rendering (`EventMetadata::encode` of what it decodes to).
    pub metadata: Cow<'a, str>,
    /// For binary metadata only: the stored bytes in standard base64, written as
    /// `"stored_metadata":"…"` right after `metadata`; `hash` is over these bytes.
    pub stored_metadata: Option<String>,
    /// The metadata's `prev_hash`: hex hash of the previous event of the same stream
    /// (64 zeros at version 0).
    pub prev_hash: String,
    /// This event's hash (`ledger_core::domain::chain::recorded_hash`), written in hex:
    /// the next event of the stream carries it as `prev_hash`. Kept as bytes so the
    /// export's range digest takes it without hashing the event again.
    pub hash: EventHash,
}

impl<'a> ExportLine<'a> {
    /// The line of `e`, or why `e` cannot be exported (not JSON, or a binary payload
    /// that does not decode: the log is corrupt).
    pub fn of(e: &'a RecordedEvent) -> Result<Self, ExportError> {
        let bad = |field: &'static str, what: String| ExportError::NotJson {
            position: e.position,
            stream: e.stream.to_string(),
            version: e.version,
            event_type: e.event_type.clone(),
            field,
            what,
        };
        let (data, stored_data) = if is_binary_payload(&e.data) {
            let event = LedgerEvent::decode(&e.event_type, &e.data).map_err(|source| {
                ExportError::Undecodable {
                    position: e.position,
                    stream: e.stream.to_string(),
                    version: e.version,
                    source,
                }
            })?;
            let json = event.to_json_string();
            let base64 = base64::engine::general_purpose::STANDARD.encode(&e.data);
            (Cow::Owned(json), Some(base64))
        } else {
            let text = verbatim_json(&e.data).map_err(|w| bad("data", w))?;
            (Cow::Borrowed(text), None)
        };
        let decoded = EventMetadata::decode(&e.metadata)
            .map_err(|err| bad("metadata", format!("not ledger metadata: {err}")))?;
        // Binary metadata (written beside binary payloads) goes out as its JSON
        // rendering, with the stored bytes beside it, as a binary payload does.
        let (metadata, stored_metadata) = if is_binary_payload(&e.metadata) {
            let json = decoded.to_json_string();
            let base64 = base64::engine::general_purpose::STANDARD.encode(&e.metadata);
            (Cow::Owned(json), Some(base64))
        } else {
            let text = verbatim_json(&e.metadata).map_err(|w| bad("metadata", w))?;
            (Cow::Borrowed(text), None)
        };
        let prev_hash = decoded.prev_hash;
        Ok(Self {
            position: e.position,
            stream: e.stream.as_str(),
            version: e.version,
            id: e.id.0.hyphenated().to_string(),
            event_type: &e.event_type,
            data,
            stored_data,
            metadata,
            stored_metadata,
            prev_hash,
            hash: recorded_hash(e),
        })
    }

    /// Write the line, ending in `\n`.
    ///
    /// Written by hand rather than derived through `Serialize`, because `data` and
    /// `metadata` must go out as raw JSON text, in a fixed field order that auditors'
    /// parsers rely on. (serde_json's `RawValue` could carry them too: the workspace
    /// enables `raw_value` for the KurrentDB backend, `ledger-store`; the hand-written
    /// line came first and is pinned byte for byte by the tests.) Strings are escaped
    /// by serde_json.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        write!(
            out,
            "{{\"position\":{{\"commit\":{},\"prepare\":{}}},\"stream\":",
            self.position.commit(),
            self.position.prepare()
        )?;
        serde_json::to_writer(&mut *out, self.stream)?;
        write!(
            out,
            ",\"version\":{},\"id\":\"{}\",\"type\":",
            self.version, self.id
        )?;
        serde_json::to_writer(&mut *out, self.event_type)?;
        write!(out, ",\"data\":{}", self.data)?;
        if let Some(stored) = &self.stored_data {
            // Right after `data`, beside what it describes; at the end of the line was
            // the option not taken: it would split the fields a verifier cuts out of
            // the line around `metadata`'s. Base64's alphabet needs no JSON escaping.
            write!(
                out,
                ",\"payload_encoding\":\"binary\",\"stored_data\":\"{stored}\""
            )?;
        }
        write!(out, ",\"metadata\":{}", self.metadata)?;
        if let Some(stored) = &self.stored_metadata {
            write!(out, ",\"stored_metadata\":\"{stored}\"")?;
        }
        write!(out, ",\"prev_hash\":")?;
        serde_json::to_writer(&mut *out, &self.prev_hash)?;
        writeln!(out, ",\"hash\":\"{}\"}}", hex32(&self.hash))
    }
}

/// `bytes` as text if they are exactly one JSON value on one line.
fn verbatim_json(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str::<IgnoredAny>(text).map_err(|e| format!("not JSON: {e}"))?;
    // JSON strings cannot hold raw line breaks, so these are whitespace between tokens,
    // which the ledger's encoder never writes. Embedded verbatim they would split the
    // line; re-encoded they would no longer hash to `hash`.
    if text.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Err("JSON with line breaks, which the ledger never writes".to_owned());
    }
    Ok(text)
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub events: u64,
    /// The last exported event, if any.
    pub head: Option<ExportHead>,
}

/// The last line of an export: where a later export resumes (`--from-position`), and
/// the hash an auditor can publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHead {
    pub position: Position,
    pub stream: String,
    pub version: u64,
    /// Hex per-stream event hash of the last event (not the embedded log's record-chain
    /// head hash that `timebank-log verify` prints).
    pub hash: String,
    /// Hex digest of every exported event in order
    /// (`ledger_core::domain::chain::range_digest_step`): what the auditor's
    /// `VerifyLog` answers as `range_digest` for the same range.
    pub range_digest: String,
}

impl ExportSummary {
    /// The lines printed on stderr.
    pub fn render(&self) -> String {
        let mut out = format!("exported    {} events\n", self.events);
        match &self.head {
            Some(h) => {
                let p = h.position;
                // "event hash", not "head hash": `timebank-log verify` prints the log's
                // record-chain "head hash", the one operators publish; an export line
                // of that name with another value was read as a mismatch, or copied
                // into a report as the log's.
                out.push_str(&format!(
                    "head        {}:{} ({} version {})\nevent hash  {}\nrange digest {}\n",
                    p.commit(),
                    p.prepare(),
                    h.stream,
                    h.version,
                    h.hash,
                    h.range_digest
                ));
            }
            None => out.push_str("head        none (nothing to export)\n"),
        }
        out
    }
}

/// Why an export failed. Nothing is left at the output path when it does.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    NoLog(#[from] crate::NoLog),
    #[error("the embedded log in {dir} is open in another process, most likely a running ledger-server (it holds the log exclusively): stop the server first, or export a copy of the data directory (a backup); the live alternative is the auditor StreamLog RPC")]
    Locked { dir: PathBuf },
    #[error("cannot open the event store: {0}")]
    Store(StoreError),
    #[error("reading the event log failed after {after}: {source}; run the export again (an --out file is left untouched; standard output holds an incomplete export)")]
    Read { after: String, source: ReadError },
    /// `--from-position` names a position this log never handed out: past its head,
    /// or another log's. Running again cannot help.
    #[error("--from-position {at} is not a position of this log (past its head, or from another log): pass the `head` an earlier export of this log printed, or leave it out to export from the start")]
    UnknownPosition { at: String },
    #[error("event at position {position} ({stream} version {version}, {event_type}) has {field} that is {what}; the log is corrupt or was written by another program: run `timebank-log verify` and restore from a backup")]
    NotJson {
        position: Position,
        stream: String,
        version: u64,
        event_type: String,
        field: &'static str,
        what: String,
    },
    #[error("event at position {position} ({stream} version {version}) has a binary payload the ledger cannot read: {source}; the log is corrupt, or was written by a newer ledger (an unknown event type): run `timebank-log verify`, and export with the ledger build that wrote the log")]
    Undecodable {
        position: Position,
        stream: String,
        version: u64,
        source: DecodeError,
    },
    #[error("the log returned position {found} after {previous}, out of order; the store is broken: report it with the store's name and version")]
    OutOfOrder { previous: Position, found: Position },
    #[error("writing the export to {target} failed: {source}; check free space and permissions")]
    Write { target: String, source: io::Error },
    #[error("a blocking task failed: {0}")]
    Blocking(String),
}

/// `--from-position`: `COMMIT` or `COMMIT:PREPARE` (also `COMMIT/PREPARE`, the form
/// positions are displayed in); prepare defaults to commit, as on the embedded log.
pub fn parse_position(text: &str) -> Result<Position, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("{text:?} is not a position like 1203 or 1203:1203: {e}"))
    };
    match text.split_once([':', '/']) {
        Some((c, p)) => Ok(Position::new(number(c)?, number(p)?)),
        None => {
            let c = number(text)?;
            Ok(Position::new(c, c))
        }
    }
}

/// Write every event after `from` up to the head the log has now, one line each, to
/// `out` (flushed at the end; syncing a file is the caller's business).
///
/// Writes are blocking calls on the async task: an export is a command-line run with
/// nothing else on the runtime, and a `BufWriter` makes them rare. A writer thread fed
/// by a channel was not taken for that reason.
pub async fn export_log(
    log: &dyn EventLog,
    from: ReadFrom,
    out: &mut impl Write,
    target: &str,
) -> Result<ExportSummary, ExportError> {
    let read_failed = |after: ReadFrom| {
        let after = match after {
            ReadFrom::Start => "the start".to_owned(),
            ReadFrom::After(p) => format!("position {p}"),
        };
        move |source| match source {
            ReadError::UnknownPosition(at) => ExportError::UnknownPosition { at },
            source => ExportError::Read { after, source },
        }
    };
    let write_failed = |source| ExportError::Write {
        target: target.to_owned(),
        source,
    };
    let mut summary = ExportSummary::default();
    let Some(end) = log.head().await.map_err(read_failed(from))? else {
        return Ok(summary);
    };
    let mut next = from;
    let mut previous: Option<Position> = None;
    let mut digest = RANGE_DIGEST_START;
    'pages: loop {
        let page = log
            .read_all(next, READ_EVENTS_MAX)
            .await
            .map_err(read_failed(next))?;
        // Only an empty page ends the log: a backend may return a short page before
        // its end (KurrentDB filters its own system events out of a page).
        let Some(last) = page.last() else { break };
        next = ReadFrom::After(last.position);
        for e in &page {
            if e.position > end {
                break 'pages;
            }
            if let Some(p) = previous {
                if e.position <= p {
                    return Err(ExportError::OutOfOrder {
                        previous: p,
                        found: e.position,
                    });
                }
            }
            previous = Some(e.position);
            let line = ExportLine::of(e)?;
            line.write_to(out).map_err(write_failed)?;
            digest = range_digest_step(&digest, &line.hash);
            summary.events += 1;
            summary.head = Some(ExportHead {
                position: e.position,
                stream: line.stream.to_owned(),
                version: line.version,
                hash: hex32(&line.hash),
                range_digest: hex32(&digest),
            });
        }
    }
    out.flush().map_err(write_failed)?;
    Ok(summary)
}

/// `ledger-server export`: open the store, export it to `--out`, close the store, and
/// print the summary on stderr.
pub async fn run(args: &ExportArgs) -> Result<ExportSummary, ExportError> {
    let store = open(args).await?;
    let from = ReadFrom::after(args.from_position);
    let result = if args.out == "-" {
        // Not `stdout().lock()`: the lock is not `Send`, and it would be held across
        // awaits; the BufWriter already makes writes to `Stdout` rare.
        let mut out = BufWriter::with_capacity(EXPORT_BUFFER_BYTES, io::stdout());
        export_log(store.log().as_ref(), from, &mut out, "standard output").await
    } else {
        export_to_file(store.log().as_ref(), from, Path::new(&args.out)).await
    };
    let closing = store.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!("closing the event log failed: {e}");
    }
    let summary = result?;
    eprint!("{}", summary.render());
    Ok(summary)
}

/// Open the store named by `--store` like `serve` does, but refuse to create an empty
/// embedded log where none is: exporting nothing would hide a wrong `--data-dir`.
async fn open(args: &ExportArgs) -> Result<Store, ExportError> {
    let spec = args.store.clone();
    let data_dir = args.data_dir.clone();
    let embedded = spec.trim().is_empty() || spec.trim() == "embedded";
    if embedded {
        crate::require_log(&data_dir)?;
    }
    // Opening the embedded log scans it, and connecting to KurrentDB needs a runtime
    // context: the blocking pool gives both (as in `run`).
    tokio::task::spawn_blocking(move || ledger_store::open_store(&spec, &data_dir))
        .await
        .map_err(|e| ExportError::Blocking(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Embedded {
                dir,
                source: OpenError::Locked { .. },
            } => ExportError::Locked { dir },
            other => ExportError::Store(other),
        })
}

/// Export into `path` through `path.partial`: written, flushed, synced, renamed, and
/// the directory synced, so that `path` is a complete export or untouched even after
/// a crash. The partial file is removed when the export fails.
async fn export_to_file(
    log: &dyn EventLog,
    from: ReadFrom,
    path: &Path,
) -> Result<ExportSummary, ExportError> {
    let target = path.display().to_string();
    let failed = |source| ExportError::Write {
        target: target.clone(),
        source,
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A `.partial` left by an earlier run is removed, not opened: were it a symlink,
    // opening it would write the export through it, over whatever file it names (a
    // security probe overwrote a victim file so). Removing a symlink removes the link
    // only; `create_new` then refuses anything that appears in between.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(failed)?;
    let mut out = BufWriter::with_capacity(EXPORT_BUFFER_BYTES, file);
    let result = async {
        let summary = export_log(log, from, &mut out, &target).await?;
        let file = out.into_inner().map_err(|e| failed(e.into_error()))?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&partial, path).map_err(failed)?;
        sync_parent(path).map_err(failed)?;
        Ok(summary)
    }
    .await;
    if result.is_err() {
        // Best effort: the error being reported matters more than a leftover file.
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Make a rename in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ledger_core::domain::events::LedgerEvent;
    use ledger_core::log::{EventId, StreamName};

    use super::*;

    fn recorded(data: &[u8], metadata: &[u8]) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("account-v-1").unwrap(),
            version: 0,
            position: Position::from_sequence(7),
            id: EventId::from_bytes([1; 16]),
            event_type: "AccountClosed.v1".into(),
            data: data.to_vec(),
            metadata: metadata.to_vec(),
        }
    }

    const META: &[u8] = br#"{"schema":1,"request_id":"r-1","request_digest":"ab","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","causation":null}"#;

    #[test]
    fn the_summary_does_not_call_the_event_hash_a_head_hash() {
        let summary = ExportSummary {
            events: 3,
            head: Some(ExportHead {
                position: Position::from_sequence(2),
                stream: "account-v-1".into(),
                version: 2,
                hash: "9d63".into(),
                range_digest: "ab".into(),
            }),
        };
        let text = summary.render();
        assert!(text.contains("event hash  9d63\n"), "{text}");
        assert!(!text.contains("head hash"), "{text}");
    }

    #[test]
    fn a_line_embeds_payload_and_metadata_verbatim() {
        let e = recorded(br#"{"z":1,"a":"x\ny"}"#, META);
        let mut out = Vec::new();
        ExportLine::of(&e).unwrap().write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        // Keys stay in stored order: the bytes are the stored ones.
        assert!(text.contains(r#","data":{"z":1,"a":"x\ny"},"metadata":{"schema":1,"#));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["position"]["commit"], 7);
        assert_eq!(v["stream"], "account-v-1");
        assert_eq!(v["type"], "AccountClosed.v1");
        assert_eq!(v["id"], "01010101-0101-0101-0101-010101010101");
        assert_eq!(v["prev_hash"], "0".repeat(64));
        assert_eq!(
            v["hash"],
            blake3::Hash::from(recorded_hash(&e)).to_hex().as_str()
        );
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused_by_name() {
        for (data, meta) in [
            (&b"{\"a\":"[..], META),
            (&b"\xff"[..], META),
            (&b"{\"a\":1}\n"[..], META),
            (&b"{}"[..], &b"{\"schema\":1}"[..]),
        ] {
            let err = ExportLine::of(&recorded(data, meta)).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, ExportError::NotJson { .. }), "{text}");
            assert!(text.contains("position 7 (account-v-1 version 0, AccountClosed.v1)"));
        }
    }

    /// A JSON payload's line is byte for byte the line of the build before binary
    /// payloads: existing auditors' tools read it unchanged.
    #[test]
    fn a_json_payload_line_has_no_new_fields() {
        // Given an event with a JSON payload
        let e = recorded(br#"{"a":1}"#, META);
        // When its line is written
        let mut out = Vec::new();
        ExportLine::of(&e).unwrap().write_to(&mut out).unwrap();
        // Then it is the envelope of docs/events.md and nothing else
        let hash = blake3::Hash::from(recorded_hash(&e)).to_hex();
        let zeros = "0".repeat(64);
        let expected = format!(
            "{{\"position\":{{\"commit\":7,\"prepare\":7}},\"stream\":\"account-v-1\",\"version\":0,\"id\":\"01010101-0101-0101-0101-010101010101\",\"type\":\"AccountClosed.v1\",\"data\":{{\"a\":1}},\"metadata\":{},\"prev_hash\":\"{zeros}\",\"hash\":\"{hash}\"}}\n",
            std::str::from_utf8(META).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_binary_payload_line_renders_json_and_carries_the_stored_bytes() {
        // Given an event whose payload is binary
        let event = LedgerEvent::AccountClosed(ledger_core::domain::events::AccountClosed {
            account: ledger_core::domain::account::AccountId::new("v-1").unwrap(),
            reason: ledger_core::domain::ids::Note::new("moved away").unwrap(),
            closed_at: "2026-11-20T12:00:00Z".parse().unwrap(),
        });
        let stored = event.encode_as(ledger_core::domain::events::PayloadEncoding::Binary);
        let e = recorded(&stored, META);
        // When its line is written
        let mut out = Vec::new();
        ExportLine::of(&e).unwrap().write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Then data is the JSON a JSON-writing ledger would have stored, followed by
        // the encoding and the stored bytes in base64, which `hash` is over
        let json = String::from_utf8(event.encode()).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD.encode(&stored);
        assert!(
            text.contains(&format!(
                ",\"data\":{json},\"payload_encoding\":\"binary\",\"stored_data\":\"{base64}\",\"metadata\":{{\"schema\":1,"
            )),
            "{text}"
        );
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["hash"],
            blake3::Hash::from(recorded_hash(&e)).to_hex().as_str()
        );
    }

    #[test]
    fn a_binary_payload_that_does_not_decode_is_refused_by_name() {
        // Given a binary tag followed by garbage
        let e = recorded(
            &[ledger_core::domain::events::BINARY_PAYLOAD_TAG, 0xff, 0xff],
            META,
        );
        // When its line is made
        let err = ExportLine::of(&e).unwrap_err();
        // Then the export stops, naming the event and why
        let text = err.to_string();
        assert!(matches!(err, ExportError::Undecodable { .. }), "{text}");
        assert!(
            text.starts_with("event at position 7 (account-v-1 version 0) has a binary payload the ledger cannot read: event of type AccountClosed.v1 has a binary payload that does not decode: "),
            "{text}"
        );
    }

    #[test]
    fn positions_parse_in_both_forms() {
        assert_eq!(parse_position("12"), Ok(Position::new(12, 12)));
        assert_eq!(parse_position("12:10"), Ok(Position::new(12, 10)));
        assert_eq!(parse_position("12/10"), Ok(Position::new(12, 10)));
        assert!(parse_position("x").is_err());
        assert!(parse_position("1:").is_err());
    }

    /// `docs/events.md` has a section (a heading naming the type in backticks) for
    /// every event type this build writes.
    #[test]
    fn docs_events_md_has_a_section_per_event_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
        let doc = std::fs::read_to_string(path).expect("docs/events.md exists");
        let headings: BTreeSet<&str> = doc
            .lines()
            .filter(|l| l.starts_with('#'))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let missing: Vec<&str> = LedgerEvent::TYPE_NAMES
            .iter()
            .copied()
            .filter(|t| !headings.contains(t))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/events.md has no section heading for {missing:?}: add a `### \\`Type.vN\\`` section"
        );
    }
}

//! Walking the segments: recovery at open and `verify` share this one scanner, so the
//! rules for what counts as damage and what counts as a torn tail live in one place.
//!
//! The rule: only the last append can be torn, because nothing is acknowledged before
//! its bytes are durable and appends are written in order. So a fault is a *torn tail*
//! only if it is in the last segment and no valid record follows it; the tail is then
//! cut back to the end of the last complete append (its COMMIT record). Any other fault
//! is *damage*: the log refuses to open and names the segment, offset and fault.
//! The scanner itself never changes a file; `open` applies its verdict.

use std::fs;
use std::path::{Path, PathBuf};

use super::format::{
    decode_record, parse_segment_file_name, segment_file_name, Hash, RecordView, SegmentHeader,
    SEGMENT_HEADER_LEN, ZERO_HASH,
};
use super::OpenError;

/// A segment as the scan found it.
#[derive(Clone, Debug)]
pub struct ScannedSegment {
    pub number: u64,
    pub path: PathBuf,
    /// Bytes up to the end of the last complete append.
    pub durable_len: u64,
}

/// What the scan found after the last complete append of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Where the file is cut: the end of the last complete append.
    pub cut_at: u64,
    pub bytes_cut: u64,
    /// Valid records of an append whose COMMIT record never made it.
    pub records_cut: u64,
    /// The position (sequence) the cut starts at: the first record cut would have been
    /// there, and the next append takes it.
    pub first_position_cut: u64,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Scan {
    pub segments: Vec<ScannedSegment>,
    /// Number of committed records = the sequence number of the next one.
    pub next_sequence: u64,
    pub head_hash: Hash,
    pub torn_tail: Option<TornTail>,
    /// A last segment whose header never became durable (a crash while rolling over).
    pub unborn_segment: Option<PathBuf>,
}

/// The segment files of `dir`, in order, checked for gaps.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    for (i, (n, _)) in found.iter().enumerate() {
        if *n != i as u64 {
            return Err(OpenError::Corrupt {
                segment: dir.join(segment_file_name(i as u64)),
                offset: 0,
                what: format!("segment {i} is missing (the next one present is {n})"),
            });
        }
    }
    Ok(found)
}

/// Walk every segment in `dir`, handing each record of each *complete* append to
/// `visit` in log order. `visit` may reject a record (e.g. a duplicate event id), which
/// is reported as damage at that record.
pub fn scan(
    dir: &Path,
    mut visit: impl FnMut(&RecordView<'_>, u64, u64) -> Result<(), String>,
) -> Result<Scan, OpenError> {
    let files = list_segments(dir)?;
    let mut out = Scan {
        segments: Vec::with_capacity(files.len()),
        next_sequence: 0,
        head_hash: ZERO_HASH,
        torn_tail: None,
        unborn_segment: None,
    };
    let count = files.len();
    for (i, (number, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes = fs::read(&path).map_err(|source| OpenError::Io {
            path: path.clone(),
            source,
        })?;
        let corrupt = |offset: usize, what: String| OpenError::Corrupt {
            segment: path.clone(),
            offset: offset as u64,
            what,
        };
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(what) => {
                if is_last && find_valid_record(&bytes, 0, out.next_sequence).is_none() {
                    out.unborn_segment = Some(path);
                    break;
                }
                return Err(corrupt(0, what.to_owned()));
            }
        };
        if header.number != number
            || header.first_sequence != out.next_sequence
            || header.start_hash != out.head_hash
        {
            return Err(corrupt(
                0,
                format!(
                    "segment header says number {} starting at sequence {} after hash {}, \
                     but the log before it ends at sequence {} with hash {}",
                    header.number,
                    header.first_sequence,
                    hex::encode(header.start_hash),
                    out.next_sequence,
                    hex::encode(out.head_hash)
                ),
            ));
        }

        let mut off = SEGMENT_HEADER_LEN;
        let mut commit_end = SEGMENT_HEADER_LEN;
        let mut sequence = out.next_sequence;
        let mut hash = out.head_hash;
        // Records of the append being read, delivered once its COMMIT record is seen.
        let mut pending: Vec<(usize, RecordView<'_>)> = Vec::new();
        while off < bytes.len() {
            match decode_record(&bytes, off) {
                Ok(r) => {
                    if r.sequence != sequence {
                        return Err(corrupt(
                            off,
                            format!("record has sequence {}, expected {sequence}", r.sequence),
                        ));
                    }
                    if r.prev_hash != hash {
                        return Err(corrupt(
                            off,
                            format!(
                                "hash chain broken at sequence {sequence}: record names previous \
                                 hash {}, the previous record hashes to {}",
                                hex::encode(r.prev_hash),
                                hex::encode(hash)
                            ),
                        ));
                    }
                    hash = r.hash();
                    sequence += 1;
                    let at = off;
                    off += r.total_len;
                    pending.push((at, r));
                    if r.commit {
                        for (at, r) in pending.drain(..) {
                            visit(&r, number, at as u64).map_err(|what| corrupt(at, what))?;
                        }
                        commit_end = off;
                        out.next_sequence = sequence;
                        out.head_hash = hash;
                    }
                }
                Err(fault) => {
                    if !is_last {
                        return Err(corrupt(off, fault.to_string()));
                    }
                    if let Some(later) = find_valid_record(&bytes, off + 1, sequence) {
                        return Err(corrupt(
                            off,
                            format!(
                                "{fault}; a valid record follows at offset {later}, so this is \
                                 damage inside the log, not a torn write at its end"
                            ),
                        ));
                    }
                    out.torn_tail = Some(TornTail {
                        segment: path.clone(),
                        cut_at: commit_end as u64,
                        bytes_cut: (bytes.len() - commit_end) as u64,
                        records_cut: pending.len() as u64,
                        first_position_cut: out.next_sequence,
                        reason: format!("{fault} at offset {off}"),
                    });
                    pending.clear();
                    break;
                }
            }
        }
        if !pending.is_empty() {
            if !is_last {
                return Err(corrupt(
                    pending[0].0,
                    "segment ends inside an append (its COMMIT record is missing)".into(),
                ));
            }
            out.torn_tail = Some(TornTail {
                segment: path.clone(),
                cut_at: commit_end as u64,
                bytes_cut: (bytes.len() - commit_end) as u64,
                records_cut: pending.len() as u64,
                first_position_cut: out.next_sequence,
                reason: "the file ends inside an append (its COMMIT record is missing)".into(),
            });
        }
        out.segments.push(ScannedSegment {
            number,
            path,
            durable_len: commit_end as u64,
        });
    }
    Ok(out)
}

/// The first offset at or after `from` where a record with CRC intact and a sequence
/// of at least `sequence_min` starts. Only used on the error path: it is what tells a
/// torn tail (nothing valid after the fault) from damage (acknowledged data after it).
fn find_valid_record(bytes: &[u8], from: usize, sequence_min: u64) -> Option<usize> {
    (from..bytes.len())
        .find(|&p| matches!(decode_record(bytes, p), Ok(r) if r.sequence >= sequence_min))
}

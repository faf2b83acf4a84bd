//! Snapshots: the read models and their checkpoint, persisted together, atomically.
//!
//! File `DIR/read-models.snap`:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TBPROJ\0\0` |
//! | 4 | format version (LE u32), [`SNAPSHOT_FORMAT_VERSION`] |
//! | 8 | payload length (LE u64) |
//! | 32 | BLAKE3 of the payload |
//! | n | payload: [`ReadModels`] in postcard (it holds the checkpoint, the event at it and the event count) |
//!
//! Format 8 added the event at the checkpoint ([`crate::model::CheckpointEvent`]: id,
//! stream, version), which the worker checks against the log before it resumes on a
//! snapshot (`runtime.rs`). A snapshot of an older format (7 and before) names no
//! event, so it cannot be checked: like any other format, it is refused and the read
//! models are rebuilt from the log, once, at the first start of a build that writes 8.
//! Format 9 keeps an account's closure as an instant (`AccountRow::closed_at`) instead
//! of its UTC day; a format-8 snapshot is rebuilt the same way.
//!
//! Written to `read-models.snap.tmp`, fsynced, renamed over the old file, then the
//! directory is fsynced: a crash leaves the old snapshot or the new one, never a torn
//! one. A snapshot that fails any check is not used: the worker rebuilds from the log,
//! which is always correct, only slower.
//!
//! Option not taken: JSON (several times larger and slower for multi-GiB state);
//! bincode (unmaintained). postcard is maintained, serde-based and compact (varints).
//!
//! Hash maps are written as a sequence of `(key, value)` pairs in the map's own
//! iteration order and rebuilt with their full capacity reserved from the sequence's
//! length prefix ([`pairs`]). In postcard a map and a sequence of pairs are the same
//! bytes (a varint count, then the entries), so this is not a format change; what
//! changes is the decode. serde's own map decode reserves at most 1 MiB of entries and
//! grows the table from there; fed a table's entries in the table's iteration order
//! with the same unseeded hasher (FxHash), every table smaller than the one written
//! maps the incoming entries onto its front in runs and probing goes quadratic. That
//! made loading a 10 M-event snapshot take 48 s in one map of 34 M entries (the
//! service index's activity counts as they were then), and a 30 M-event one 479 s
//! (`docs/benchmarks.md`). With the capacity reserved the entries
//! land in the order the table will hold them, front to back: 2.8 s for that map.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::model::ReadModels;

/// Most entries one decoded map (or interner, `model.rs`) reserves up front. The count
/// comes from a payload whose checksum was verified, and postcard gives no size hint
/// for a count larger than the bytes left, so this only guards against a writer bug
/// asking for an absurd allocation:
/// past it a map grows as it decodes (slower, still exact). A city's largest map, the
/// deposit index, holds ~20 M entries at 30 M events.
pub const MAP_RESERVE_ENTRIES_MAX: usize = 1 << 27;

/// `#[serde(with = "crate::snapshot::pairs")]` for an `FxHashMap`: written as a
/// sequence of pairs in iteration order, read back with its capacity reserved (see the
/// module doc for why). Option not taken: pairs sorted by key, which would make equal
/// states give equal bytes, but inserting in key order scatters every insert across
/// the table: 10.2 s instead of 2.8 s for a 34 M-entry map, plus a sort at every write.
pub mod pairs {
    use std::fmt;
    use std::hash::Hash;
    use std::marker::PhantomData;

    use rustc_hash::FxHashMap;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::MAP_RESERVE_ENTRIES_MAX;

    pub fn serialize<K, V, S>(map: &FxHashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        let mut seq = s.serialize_seq(Some(map.len()))?;
        for entry in map {
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<FxHashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        struct Pairs<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for Pairs<K, V>
        where
            K: Deserialize<'de> + Eq + Hash,
            V: Deserialize<'de>,
        {
            type Value = FxHashMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of (key, value) pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut map = FxHashMap::default();
                map.reserve(seq.size_hint().unwrap_or(0).min(MAP_RESERVE_ENTRIES_MAX));
                while let Some((k, v)) = seq.next_element::<(K, V)>()? {
                    if map.insert(k, v).is_some() {
                        // A map never holds a key twice: the payload is not one we wrote.
                        return Err(A::Error::custom("a key appears twice in a map"));
                    }
                }
                Ok(map)
            }
        }
        d.deserialize_seq(Pairs(PhantomData))
    }
}

/// Bump on any change to [`ReadModels`]' shape: an older snapshot is then rebuilt.
/// 8: the event at the checkpoint ([`ReadModels::checkpoint_event`]).
/// 9: an account row's closure as an instant (`AccountRow::closed_at`), not a UTC day:
/// the same varint width, so a format-8 row would read as a wrong instant, not fail.
/// 10: the service index's cells hold the sums of their own node's volunteers, not of
/// the subtree, and an activity's month count at a node counts its children, not their
/// deposits (`index.rs`): the same shape, so a format-9 index would read as wrong
/// figures, not fail.
/// 11: an activity's service-index entries are (month, node, count) where it was
/// served, not a count per cell slot it counts in.
/// 12: an account row's month key is signed (`MonthTotal::month`, years before 1 CE
/// kept apart as the service index keeps them): zigzag, not plain varints, so a
/// format-11 row would read as other months, not fail.
/// 13: the count of events folded with a fold anomaly (`ReadModels::fold_anomalies`).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 13;
const MAGIC: &[u8; 8] = b"TBPROJ\0\0";
const HEADER_BYTES: usize = 8 + 4 + 8 + 32;
pub const SNAPSHOT_FILE: &str = "read-models.snap";

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is not a snapshot of this format (version {found:?}, this build writes {SNAPSHOT_FORMAT_VERSION}); it will be rebuilt from the log")]
    Format { path: PathBuf, found: Option<u32> },
    #[error(
        "snapshot {path} failed its checksum or length check; it will be rebuilt from the log"
    )]
    Corrupt { path: PathBuf },
    #[error("snapshot {path} does not decode: {source}; it will be rebuilt from the log")]
    Decode {
        path: PathBuf,
        source: postcard::Error,
    },
    #[error("snapshot {path} holds a checkpoint without the event at it, or the other way round; it will be rebuilt from the log")]
    CheckpointEvent { path: PathBuf },
    #[error("snapshot {path} holds an invalid service index ({source}); it will be rebuilt from the log")]
    ServiceIndex {
        path: PathBuf,
        source: crate::index::InvalidIndex,
    },
    #[error(
        "snapshot {path} holds invalid activities ({source}); it will be rebuilt from the log"
    )]
    Activities {
        path: PathBuf,
        source: crate::model::InvalidActivities,
    },
    #[error("read models do not encode: {0}")]
    Encode(postcard::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
    /// The first write or flush error, kept: postcard reports any writer error as its
    /// own "The serialize buffer is full", which hid a full disk from the operator.
    /// Flushes too: postcard flushes at the end of its encoding, and a snapshot that
    /// fits the buffer meets the full disk there.
    failed: Option<std::io::Error>,
}

impl<W> Hashing<W> {
    /// Keep `e` (the first one); what goes on to postcard, which only reports that
    /// something failed, is an error of the same kind.
    fn keep(&mut self, e: std::io::Error) -> std::io::Error {
        let kind = e.kind();
        self.failed.get_or_insert(e);
        kind.into()
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).map_err(|e| self.keep(e))?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.keep(e))
    }
}

/// Write `models` to `dir` atomically. Returns the snapshot's size in bytes. On
/// failure the temporary file is removed (a half-written one on a full disk would
/// keep the space the next attempt needs) and the previous snapshot stays as it was.
pub fn write(dir: &Path, models: &ReadModels) -> Result<u64, SnapshotError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let written = write_to(dir, &tmp, models);
    if written.is_err() {
        // Best effort: the error that matters is the write's, returned below.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Encode `models` into `inner`, flushed, streamed through a hashing writer (no second
/// in-memory copy of the state): the payload's length and hash. A write error is
/// reported as the I/O error it is, on `path`, not as postcard's encoding error.
fn encode_hashed<W: Write>(
    inner: W,
    models: &ReadModels,
    path: &Path,
) -> Result<(u64, blake3::Hash), SnapshotError> {
    let mut w = Hashing {
        inner,
        hasher: blake3::Hasher::new(),
        len: 0,
        failed: None,
    };
    if let Err(e) = postcard::to_io(models, &mut w) {
        return Err(match w.failed.take() {
            Some(source) => SnapshotError::Io {
                path: path.to_owned(),
                source,
            },
            None => SnapshotError::Encode(e),
        });
    }
    w.flush().map_err(io(path))?;
    Ok((w.len, w.hasher.finalize()))
}

fn write_to(dir: &Path, tmp: &Path, models: &ReadModels) -> Result<u64, SnapshotError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = File::create(tmp).map_err(io(tmp))?;
    file.write_all(&[0u8; HEADER_BYTES]).map_err(io(tmp))?;
    let (len, hash) = encode_hashed(BufWriter::with_capacity(1 << 20, &mut file), models, tmp)?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(hash.as_bytes());
    file.seek(SeekFrom::Start(0)).map_err(io(tmp))?;
    file.write_all(&header).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))?;
    drop(file);
    fs::rename(tmp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(len + HEADER_BYTES as u64)
}

/// How long ago the snapshot in `dir` was written (its file's modification time);
/// None if there is none, or the file system does not say.
pub fn age(dir: &Path) -> Option<std::time::Duration> {
    let modified = fs::metadata(dir.join(SNAPSHOT_FILE))
        .ok()?
        .modified()
        .ok()?;
    // A clock set back since the write reads as age zero.
    Some(modified.elapsed().unwrap_or_default())
}

/// Read the snapshot in `dir`; Ok(None) if there is none.
pub fn read(dir: &Path) -> Result<Option<ReadModels>, SnapshotError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut header = [0u8; HEADER_BYTES];
    if file.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Err(SnapshotError::Format { path, found: None });
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::Format {
            path,
            found: Some(version),
        });
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let on_disk = file.metadata().map_err(io(&path))?.len();
    if on_disk != len + HEADER_BYTES as u64 {
        return Err(SnapshotError::Corrupt { path });
    }
    let mut payload = Vec::with_capacity(
        usize::try_from(len).map_err(|_| SnapshotError::Corrupt { path: path.clone() })?,
    );
    file.read_to_end(&mut payload).map_err(io(&path))?;
    if blake3::hash(&payload).as_bytes() != &header[20..52] {
        return Err(SnapshotError::Corrupt { path });
    }
    let models: ReadModels =
        postcard::from_bytes(&payload).map_err(|source| SnapshotError::Decode {
            path: path.clone(),
            source,
        })?;
    // Every fold sets both together; a payload with one and not the other passed its
    // checksum but was not written by this build, and a checkpoint that names no event
    // could not be checked against the log.
    if models.checkpoint.is_some() != models.checkpoint_event.is_some() {
        return Err(SnapshotError::CheckpointEvent { path });
    }
    // What the index's fold keeps true and its decode does not check (sorted, non-zero
    // activity entries naming existing cells, nodes of the region tree): a payload
    // that breaks it would make later deposits and reversals miscount or panic.
    if let Err(source) = models.index.validate(models.regions.nodes.len()) {
        return Err(SnapshotError::ServiceIndex { path, source });
    }
    // An activity's organisation is what its key names: the fold checks this only in
    // debug builds (`model.rs`, `apply_event`), so a snapshot is held to it here.
    if let Err(source) = models.validate_activities() {
        return Err(SnapshotError::Activities { path, source });
    }
    Ok(Some(models))
}

#[cfg(test)]
mod tests {
    use rustc_hash::FxHashMap;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder(#[serde(with = "super::pairs")] FxHashMap<u64, u32>);

    #[test]
    fn a_map_reads_back_equal_with_its_capacity_reserved() {
        let map: FxHashMap<u64, u32> = (0..100_000u64).map(|k| (k * 7919, k as u32)).collect();
        let bytes = postcard::to_stdvec(&Holder(map.clone())).unwrap();
        // Same bytes as the plain map: a map in postcard is a count, then the entries.
        assert_eq!(bytes, postcard::to_stdvec(&map).unwrap());
        let back: Holder = postcard::from_bytes(&bytes).unwrap();
        assert!(back.0.capacity() >= map.len());
        assert_eq!(back.0, map);
    }

    #[test]
    fn a_snapshot_of_the_format_before_the_checkpoint_event_is_refused_so_the_models_are_rebuilt() {
        // Given a snapshot whose header says format 7 (no event at the checkpoint),
        let dir = tempfile::tempdir().unwrap();
        super::write(dir.path(), &crate::ReadModels::new()).unwrap();
        let path = dir.path().join(super::SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        // when it is read, then it is refused as another format (the worker rebuilds).
        assert!(matches!(
            super::read(dir.path()),
            Err(super::SnapshotError::Format { found: Some(7), .. })
        ));
    }

    /// A disk that fills while the state is encoded (the operator's probe: a 5 MB
    /// volume) is reported as the I/O error it is. postcard turns any writer error
    /// into its own "The serialize buffer is full", which named no full disk.
    #[test]
    fn a_write_error_while_encoding_is_reported_as_that_io_error() {
        /// Takes `room` bytes, then answers "no space left on device".
        struct Filling {
            room: usize,
        }
        impl std::io::Write for Filling {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.room == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
                }
                let n = buf.len().min(self.room);
                self.room -= n;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut models = crate::ReadModels::new();
        for i in 0..100 {
            models.accounts.intern(&format!("volunteer-{i}"));
        }
        let path = std::path::Path::new("/data/projections/read-models.snap.tmp");
        let check = |e: super::SnapshotError| {
            match &e {
                super::SnapshotError::Io { path: p, source } => {
                    assert_eq!(p, path);
                    assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
                }
                other => panic!("not an I/O error: {other:?}"),
            }
            assert!(!e.to_string().contains("buffer is full"), "{e}");
        };
        // The disk fills while postcard writes,
        check(super::encode_hashed(Filling { room: 64 }, &models, path).unwrap_err());
        // and behind a buffer the whole state fits in, as the real writer's: the disk
        // is met by the flush postcard makes at the end (a real full tmpfs showed the
        // first case's fix missed this one).
        let buffered = std::io::BufWriter::with_capacity(1 << 20, Filling { room: 64 });
        check(super::encode_hashed(buffered, &models, path).unwrap_err());
    }

    /// A failed write leaves no temporary file behind (on a full disk it would keep
    /// the space the next attempt needs) and the previous snapshot as it was.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_removes_its_temporary_file_and_keeps_the_previous_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut models = crate::ReadModels::new();
        super::write(dir.path(), &models).unwrap();
        let before = std::fs::read(dir.path().join(super::SNAPSHOT_FILE)).unwrap();
        // The temporary file's name leads to a device that is always full.
        let tmp = dir.path().join(format!("{}.tmp", super::SNAPSHOT_FILE));
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        models.events = 7;
        let e = super::write(dir.path(), &models).unwrap_err();
        assert!(
            matches!(&e, super::SnapshotError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
            "{e:?}"
        );
        assert!(
            std::fs::symlink_metadata(&tmp).is_err(),
            "the temporary file is gone"
        );
        let after = std::fs::read(dir.path().join(super::SNAPSHOT_FILE)).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn a_checkpoint_without_the_event_at_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut models = crate::ReadModels::new();
        models.checkpoint = Some(ledger_core::log::Position::from_sequence(3));
        super::write(dir.path(), &models).unwrap();
        assert!(matches!(
            super::read(dir.path()),
            Err(super::SnapshotError::CheckpointEvent { .. })
        ));
    }

    #[test]
    fn a_key_twice_does_not_decode() {
        let bytes = postcard::to_stdvec(&vec![(1u64, 1u32), (2, 2), (1, 3)]).unwrap();
        assert!(postcard::from_bytes::<Holder>(&bytes).is_err());
    }
}

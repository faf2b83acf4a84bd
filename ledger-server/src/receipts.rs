//! The receipts catch-up and its checkpoint.
//!
//! A transfer, donation or reversal credits another account's stream with a receipt
//! (`HoursReceived`), appended right after the transaction. A crash between the two
//! appends leaves the receipt missing; the catch-up (`Handler::deliver_receipts`)
//! reads the log and delivers every missing one. It runs before the server accepts
//! calls, when an inline delivery failed, and every [`RECEIPTS_CHECKPOINT_INTERVAL`].
//!
//! Without a checkpoint each start reads the whole log and checks the receiver of
//! every transfer, donation and reversal: minutes for a city's 13 M events. So a
//! completed catch-up records where it stopped in `DATA_DIR/receipts.checkpoint`, and
//! the next one starts after it.
//!
//! # File
//! One JSON object, written to `receipts.checkpoint.tmp`, fsynced, renamed over the old
//! file, then the directory is fsynced: a crash leaves the old checkpoint or the new
//! one. Fields: `format` (1), and the [`ReceiptMark`]: `position` (`commit`,
//! `prepare`), `id`, `stream`, `version` of the last event the catch-up read.
//!
//! # Why the checkpoint is safe
//! A catch-up that read every event up to the mark delivered (or found) the receipt of
//! every transaction up to it, including ones whose inline delivery was still in
//! flight: delivery is idempotent (the receipt's event id derives from the
//! transaction). Transactions after the mark are read by the next catch-up. A mark is
//! trusted only if the log holds the event it names, at its stream, version and
//! position ([`Handler::recognises`]): a checkpoint that is missing, unreadable, of
//! another format or from another log makes the catch-up start from the beginning,
//! which is always correct, only slower. Option not taken: keeping the mark inside
//! the projection snapshot, which is rebuilt and deleted on its own schedule.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger_core::app::{CommandError, Handler, ReceiptMark, ReceiptReport};
use ledger_core::log::ReadFrom;

/// The checkpoint's file name in the data directory.
pub const RECEIPTS_CHECKPOINT_FILE: &str = "receipts.checkpoint";
/// The checkpoint's format: bump when [`Stored`] changes; another format is ignored
/// (the catch-up then starts from the beginning once and writes this one).
pub const RECEIPTS_CHECKPOINT_FORMAT: u32 = 1;
/// How often a running server advances the checkpoint: a catch-up over the log since
/// the last one. A restart after a crash re-reads at most about this much of the log;
/// each run reads every event since the previous one once (~1 µs each), so a minute
/// costs ~1 % of a core at 15 k events/s.
pub const RECEIPTS_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Largest checkpoint file read: a mark is ~300 bytes; anything far larger is not one.
const CHECKPOINT_BYTES_MAX: u64 = 64 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    format: u32,
    #[serde(flatten)]
    mark: ReceiptMark,
}

/// The receipts catch-up's checkpoint file, or none (`Default`: tests and embedders
/// without a data directory, where every catch-up reads the whole log).
#[derive(Clone, Debug, Default)]
pub struct ReceiptCheckpoint {
    path: Option<PathBuf>,
}

impl ReceiptCheckpoint {
    /// The checkpoint in `data_dir` ([`RECEIPTS_CHECKPOINT_FILE`]).
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            path: Some(data_dir.join(RECEIPTS_CHECKPOINT_FILE)),
        }
    }

    /// The stored mark, if there is a readable one of this format. Whether it belongs
    /// to the log is checked by [`catch_up`].
    pub fn load(&self) -> Option<ReceiptMark> {
        let path = self.path.as_ref()?;
        let text = match read_small(path) {
            Ok(Some(text)) => text,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "receipts checkpoint unreadable, the catch-up reads the whole log: {e}");
                return None;
            }
        };
        match serde_json::from_str::<Stored>(&text) {
            Ok(s) if s.format == RECEIPTS_CHECKPOINT_FORMAT => Some(s.mark),
            Ok(s) => {
                tracing::warn!(path = %path.display(), format = s.format, "receipts checkpoint of another format, the catch-up reads the whole log");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "receipts checkpoint does not parse, the catch-up reads the whole log: {e}");
                None
            }
        }
    }

    /// Record `mark` atomically (see the module documentation). A failure is logged,
    /// not returned: the checkpoint only saves time, and the next save retries.
    pub fn save(&self, mark: &ReceiptMark) {
        let Some(path) = &self.path else { return };
        if let Err(e) = write_atomically(path, mark) {
            tracing::warn!(path = %path.display(), "receipts checkpoint not saved (the next start reads more of the log): {e}");
        }
    }
}

fn read_small(path: &Path) -> std::io::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() > CHECKPOINT_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {CHECKPOINT_BYTES_MAX} bytes"
        )));
    }
    Ok(Some(std::io::read_to_string(file)?))
}

fn write_atomically(path: &Path, mark: &ReceiptMark) -> std::io::Result<()> {
    let stored = Stored {
        format: RECEIPTS_CHECKPOINT_FORMAT,
        mark: mark.clone(),
    };
    let json = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("checkpoint.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Deliver every missing receipt after the checkpoint (or from the start, when there
/// is no trusted checkpoint), then advance the checkpoint to the last event read. On
/// an error (the log unreadable, a delivery failed) the checkpoint does not move and
/// nothing is lost: the next run starts where this one did.
pub async fn catch_up(
    handler: &Handler,
    checkpoint: &ReceiptCheckpoint,
) -> Result<ReceiptReport, CommandError> {
    let mark = match checkpoint.load() {
        Some(mark) => match handler.recognises(&mark).await {
            Ok(true) => Some(mark),
            Ok(false) => {
                tracing::warn!(position = %mark.position, stream = %mark.stream, "receipts checkpoint names an event this log does not hold there (a data directory from another log?); the catch-up reads the whole log");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let from = ReadFrom::after(mark.as_ref().map(|m| m.position));
    let report = handler.deliver_receipts(from).await?;
    // Nothing read (an empty log, or nothing new): the checkpoint stays where it is.
    if let Some(last) = &report.last {
        checkpoint.save(last);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::app::{FixedClock, LedgerConfig};
    use ledger_core::log::memory::MemoryLog;
    use ledger_core::log::{EventLog, ExpectedVersion, NewEvent, StreamName};
    use std::sync::Arc;

    fn handler(log: &MemoryLog) -> Handler {
        Handler::new(
            Arc::new(log.clone()),
            Arc::new(FixedClock::new(chrono::Utc::now())),
            LedgerConfig::default(),
        )
    }

    async fn append_other(log: &MemoryLog, n: usize) {
        let stream = StreamName::new("other-stream").unwrap();
        for _ in 0..n {
            log.append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent {
                    id: ledger_core::log::EventId::new_random(),
                    event_type: "SomethingElse.v1".into(),
                    data: b"{}".to_vec(),
                    metadata: b"{}".to_vec(),
                }],
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn a_catch_up_starts_after_the_checkpoint_of_this_log_and_advances_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ReceiptCheckpoint::in_dir(dir.path());
        let log = MemoryLog::new();
        append_other(&log, 3).await;
        // Given no checkpoint: the whole log is read and the mark is saved.
        let first = catch_up(&handler(&log), &checkpoint).await.unwrap();
        assert_eq!(first.scanned, 3);
        let saved = checkpoint.load().expect("a checkpoint was written");
        assert_eq!(Some(&saved), first.last.as_ref());
        // When two more events land: only they are read.
        append_other(&log, 2).await;
        let second = catch_up(&handler(&log), &checkpoint).await.unwrap();
        assert_eq!(second.scanned, 2);
        // And with nothing new, nothing is read and the checkpoint stays.
        let third = catch_up(&handler(&log), &checkpoint).await.unwrap();
        assert_eq!(third.scanned, 0);
        assert_eq!(checkpoint.load(), second.last);
    }

    #[tokio::test]
    async fn a_checkpoint_from_another_log_or_unreadable_means_reading_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ReceiptCheckpoint::in_dir(dir.path());
        let elsewhere = MemoryLog::new();
        append_other(&elsewhere, 4).await;
        catch_up(&handler(&elsewhere), &checkpoint).await.unwrap();
        // Another log with the same shape: same streams and positions, other ids.
        let here = MemoryLog::new();
        append_other(&here, 5).await;
        let report = catch_up(&handler(&here), &checkpoint).await.unwrap();
        assert_eq!(report.scanned, 5, "a foreign mark is not trusted");
        // A damaged file is ignored the same way.
        fs::write(dir.path().join(RECEIPTS_CHECKPOINT_FILE), b"{not json").unwrap();
        let report = catch_up(&handler(&here), &checkpoint).await.unwrap();
        assert_eq!(report.scanned, 5);
        // And then rewritten.
        assert_eq!(checkpoint.load(), report.last);
    }
}

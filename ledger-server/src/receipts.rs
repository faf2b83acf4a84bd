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
//! the next one starts after it. A running server ([`ReceiptCatchUp`]) reads and checks
//! that file once, at start; later runs start after the mark it reached itself, kept
//! in memory, and still write each new mark to the file for the next start.
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
    /// to the log is checked by [`ReceiptCatchUp::run`].
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
    crate::export::sync_parent(path)?;
    Ok(())
}

/// The receipts catch-up of one process: its checkpoint file, and where the last run
/// stopped.
///
/// The file is read, and its mark checked against the log, only by the first run (a
/// server's start-up). Every later run starts after the mark this process reached
/// itself, kept in memory: it is of this log by construction, so the periodic run
/// (every [`RECEIPTS_CHECKPOINT_INTERVAL`]) costs no file read and no stream read
/// before it reads the log after the mark. Each run that read something still writes
/// its mark to the file, atomically, so a start after a crash re-reads at most the log
/// since the last run.
///
/// Option not taken: reading and checking the file at every run, as before. After
/// start-up it only ever holds what this process wrote, so each periodic run paid a
/// file read and a stream read to learn what it already knew.
#[derive(Debug)]
pub struct ReceiptCatchUp {
    checkpoint: ReceiptCheckpoint,
    start: Start,
}

/// Where the next run of a [`ReceiptCatchUp`] starts.
#[derive(Debug)]
enum Start {
    /// Not known yet: the next run reads the file and checks it against the log.
    Unread,
    /// After this mark; None: from the beginning of the log.
    After(Option<ReceiptMark>),
}

impl ReceiptCatchUp {
    /// A catch-up whose first run starts after the mark in `checkpoint`, if the log
    /// holds the event it names.
    pub fn new(checkpoint: ReceiptCheckpoint) -> Self {
        Self {
            checkpoint,
            start: Start::Unread,
        }
    }

    /// Deliver every missing receipt after the mark (or from the start, when there is
    /// no trusted one), then advance the mark, in memory and in the file, to the last
    /// event read. On an error (the log unreadable, a delivery failed) the mark does
    /// not move and nothing is lost: the next run starts where this one did.
    pub async fn run(&mut self, handler: &Handler) -> Result<ReceiptReport, CommandError> {
        let mark = match &self.start {
            Start::After(mark) => mark.clone(),
            Start::Unread => {
                let mark = trusted_mark(handler, &self.checkpoint).await?;
                // Checked once: from here on the mark is this process's own.
                self.start = Start::After(mark.clone());
                mark
            }
        };
        let from = ReadFrom::after(mark.as_ref().map(|m| m.position));
        let report = handler.deliver_receipts(from).await?;
        // Nothing read (an empty log, or nothing new): the mark stays where it is.
        if let Some(last) = &report.last {
            self.checkpoint.save(last);
            self.start = Start::After(Some(last.clone()));
        }
        Ok(report)
    }
}

/// Name in the server's log each transaction a catch-up left alone because its
/// payload does not decode or credits another stream with what a receipt cannot carry
/// (a log written by something else): its receipts are not delivered, and an
/// operator should look at it (`timebank-log`, `VerifyLog`). Events of unknown types
/// are counted in `skipped` but not named: a newer build's events are expected.
pub fn warn_skipped(report: &ReceiptReport) {
    for s in &report.skipped_noted {
        tracing::warn!(position = %s.position, stream = %s.stream, "receipts not delivered for this transaction: {}", s.reason);
    }
    let unnamed = report
        .skipped
        .saturating_sub(report.skipped_noted.len() as u64);
    if !report.skipped_noted.is_empty() && unnamed > 0 {
        tracing::warn!(skipped = report.skipped, "and {unnamed} more events skipped by the receipts catch-up (unknown types, or as above)");
    }
}

/// The checkpoint file's mark if the log holds the event it names there; None (read
/// the whole log) for no file, an unreadable one or a foreign mark.
async fn trusted_mark(
    handler: &Handler,
    checkpoint: &ReceiptCheckpoint,
) -> Result<Option<ReceiptMark>, CommandError> {
    let Some(mark) = checkpoint.load() else {
        return Ok(None);
    };
    if handler.recognises(&mark).await? {
        return Ok(Some(mark));
    }
    tracing::warn!(position = %mark.position, stream = %mark.stream, "receipts checkpoint names an event this log does not hold there (a data directory from another log?); the catch-up reads the whole log");
    Ok(None)
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

    /// Given a log written by something else, holding a reversal that decodes (each
    /// posting is valid alone) but credits another stream with points, and one that
    /// credits it with more hours than an amount may be: when the catch-up runs, then
    /// it skips and names both, delivers nothing for them and does not panic (it
    /// asserted "only hours are credited across streams", which crash-looped the
    /// server's start on such a log).
    #[tokio::test]
    async fn a_foreign_transaction_that_credits_what_a_receipt_cannot_carry_is_skipped() {
        use ledger_core::domain::account::AccountId;
        use ledger_core::domain::events::{LedgerEvent, TransactionReversed};
        use ledger_core::domain::ids::{Note, TransactionId};
        use ledger_core::domain::postings::Posting;
        use ledger_core::domain::units::Unit;
        let log = MemoryLog::new();
        let a = AccountId::new("v-a").unwrap();
        let b = AccountId::new("v-b").unwrap();
        let reversal = |unit: Unit, amount: &str| {
            let amount: rust_decimal::Decimal = amount.parse().unwrap();
            LedgerEvent::TransactionReversed(TransactionReversed {
                transaction: TransactionId::from(ledger_core::log::EventId::new_random()),
                original: TransactionId::from(ledger_core::log::EventId::new_random()),
                account: a.clone(),
                reason: Note::new("imported").unwrap(),
                postings: vec![
                    Posting {
                        account: a.clone(),
                        unit,
                        amount: -amount,
                    },
                    Posting {
                        account: b.clone(),
                        unit,
                        amount,
                    },
                ],
                recorded_at: chrono::Utc::now(),
            })
        };
        for (i, event) in [reversal(Unit::Points, "5"), reversal(Unit::Hours, "20000")]
            .into_iter()
            .enumerate()
        {
            let data = event.encode();
            assert!(
                LedgerEvent::decode(event.event_type(), &data).is_ok(),
                "case {i} decodes: only its shape is wrong"
            );
            log.append(
                &a.stream(),
                ExpectedVersion::Any,
                vec![NewEvent {
                    id: ledger_core::log::EventId::new_random(),
                    event_type: event.event_type().into(),
                    data,
                    metadata: b"{}".to_vec(),
                }],
            )
            .await
            .unwrap();
        }
        let report = handler(&log)
            .deliver_receipts(ledger_core::log::ReadFrom::Start)
            .await
            .expect("the catch-up runs to the end");
        assert_eq!(
            (report.scanned, report.delivered, report.skipped),
            (2, 0, 2)
        );
        let reasons: Vec<&str> = report
            .skipped_noted
            .iter()
            .map(|s| s.reason.as_str())
            .collect();
        assert!(reasons[0].contains("with 5 points"), "{reasons:?}");
        assert!(reasons[1].contains("with 20000 hours"), "{reasons:?}");
        assert!(report.skipped_noted.iter().all(|s| s.stream == a.stream()));
        assert!(
            log.read_stream(&b.stream(), 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "no receipt reached v-b"
        );
    }

    /// The catch-up of a server that starts now: it reads the checkpoint file.
    async fn catch_up_at_start(log: &MemoryLog, checkpoint: &ReceiptCheckpoint) -> ReceiptReport {
        ReceiptCatchUp::new(checkpoint.clone())
            .run(&handler(log))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_catch_up_starts_after_the_checkpoint_of_this_log_and_advances_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ReceiptCheckpoint::in_dir(dir.path());
        let log = MemoryLog::new();
        append_other(&log, 3).await;
        // Given no checkpoint: the whole log is read and the mark is saved.
        let first = catch_up_at_start(&log, &checkpoint).await;
        assert_eq!(first.scanned, 3);
        let saved = checkpoint.load().expect("a checkpoint was written");
        assert_eq!(Some(&saved), first.last.as_ref());
        // When two more events land: only they are read.
        append_other(&log, 2).await;
        let second = catch_up_at_start(&log, &checkpoint).await;
        assert_eq!(second.scanned, 2);
        // And with nothing new, nothing is read and the checkpoint stays.
        let third = catch_up_at_start(&log, &checkpoint).await;
        assert_eq!(third.scanned, 0);
        assert_eq!(checkpoint.load(), second.last);
    }

    #[tokio::test]
    async fn a_checkpoint_from_another_log_or_unreadable_means_reading_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ReceiptCheckpoint::in_dir(dir.path());
        let elsewhere = MemoryLog::new();
        append_other(&elsewhere, 4).await;
        catch_up_at_start(&elsewhere, &checkpoint).await;
        // Another log with the same shape: same streams and positions, other ids.
        let here = MemoryLog::new();
        append_other(&here, 5).await;
        let report = catch_up_at_start(&here, &checkpoint).await;
        assert_eq!(report.scanned, 5, "a foreign mark is not trusted");
        // A damaged file is ignored the same way.
        fs::write(dir.path().join(RECEIPTS_CHECKPOINT_FILE), b"{not json").unwrap();
        let report = catch_up_at_start(&here, &checkpoint).await;
        assert_eq!(report.scanned, 5);
        // And then rewritten.
        assert_eq!(checkpoint.load(), report.last);
    }

    #[tokio::test]
    async fn a_running_catch_up_starts_from_its_own_mark_and_still_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = ReceiptCheckpoint::in_dir(dir.path());
        let file = dir.path().join(RECEIPTS_CHECKPOINT_FILE);
        let log = MemoryLog::new();
        append_other(&log, 3).await;
        // Given a server whose start-up catch-up read the log and saved its mark,
        let mut running = ReceiptCatchUp::new(checkpoint.clone());
        let handler = handler(&log);
        assert_eq!(running.run(&handler).await.unwrap().scanned, 3);
        // when the file is damaged behind it (a run that read the file would now read
        // the whole log) and two events land,
        fs::write(&file, b"{not json").unwrap();
        append_other(&log, 2).await;
        // then the periodic run starts from the mark in memory: only the two are read,
        let second = running.run(&handler).await.unwrap();
        assert_eq!(second.scanned, 2);
        // and its mark is written to the file for the next start.
        assert_eq!(checkpoint.load(), second.last);
        // With the file gone and nothing new, nothing is read (and nothing written).
        fs::remove_file(&file).unwrap();
        assert_eq!(running.run(&handler).await.unwrap().scanned, 0);
        assert!(!file.exists());
        // A restart, by contrast, reads the file: none now, so the whole log.
        assert_eq!(catch_up_at_start(&log, &checkpoint).await.scanned, 5);
    }
}

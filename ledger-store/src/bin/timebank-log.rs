//! `timebank-log`: operator tools for the event log.
//!
//! ```text
//! timebank-log verify DIR              walk every record of an embedded log: CRCs, hash
//!                                      chain, sequence numbers, stream versions, id
//!                                      uniqueness; print head position and hash
//! timebank-log import --from DIR --to URL|DIR
//!                                      copy an embedded log into KurrentDB (or another
//!                                      directory)
//! timebank-log export --from URL|DIR --to DIR
//!                                      copy a KurrentDB log into an embedded log
//! timebank-log copy --from LOC --to LOC
//!                                      the same between any two logs
//! ```
//! A location is a KurrentDB connection string (`kurrentdb://`, `esdb://`, with or
//! without `+discover`) or a directory holding an embedded log (created if missing).
//! A copy is resumable and idempotent: run it again after any interruption. The
//! destination must be empty or a copy this command started; the server must not be
//! writing to either side (see docs/operations.md).
//!
//! Exit status: 0 verified / copied and verified, 1 damaged or diverged, 2 usage,
//! I/O or connection error. `verify` is read-only: safe while the server runs, and it
//! never repairs (opening the log with the server does that).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ledger_store::{copy_log, OpenError, StoreSpec, TransferError};

/// How often a running copy reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "timebank-log",
    version,
    about = "Operator tools for the timebank event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify an embedded log directory (read-only; safe while the server runs).
    Verify { dir: PathBuf },
    /// Copy an embedded log (DIR) into KurrentDB (URL) or another directory.
    Import {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: String,
    },
    /// Copy a KurrentDB log (URL) or an embedded log into an embedded log (DIR).
    Export {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: PathBuf,
    },
    /// Copy between any two logs (URLs or directories).
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

fn main() -> ExitCode {
    ledger_store::keep_created_files_private();
    let cli = Cli::parse();
    match cli.command {
        Command::Verify { dir } => verify(&dir),
        Command::Import { from, to } => {
            let from = StoreSpec::Embedded(from);
            transfer(from, StoreSpec::parse_location(&to))
        }
        Command::Export { from, to } => {
            transfer(StoreSpec::parse_location(&from), StoreSpec::Embedded(to))
        }
        Command::Copy { from, to } => transfer(
            StoreSpec::parse_location(&from),
            StoreSpec::parse_location(&to),
        ),
    }
}

fn verify(dir: &Path) -> ExitCode {
    match ledger_store::verify(dir) {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e @ OpenError::Corrupt { .. }) => {
            eprintln!("DAMAGED: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn transfer(from: StoreSpec, to: StoreSpec) -> ExitCode {
    if from == to {
        eprintln!(
            "error: source and destination are the same log ({})",
            from.describe()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run_transfer(&from, &to));
    if code == ExitCode::SUCCESS {
        // An embedded destination is closed by now: verify it as `verify` would.
        if let StoreSpec::Embedded(dir) = &to {
            return verify(dir);
        }
    }
    code
}

async fn run_transfer(from: &StoreSpec, to: &StoreSpec) -> ExitCode {
    if let StoreSpec::Embedded(dir) = from {
        // Opening creates a log where there is none: a mistyped source (or a data
        // directory given for its `log/`) would "copy" an empty log, report success,
        // and leave a new empty log in the directory named.
        if let Err(e) = ledger_store::require_log(dir) {
            eprintln!("error: {e}; the source must be an existing log");
            return ExitCode::from(2);
        }
    }
    if let StoreSpec::Embedded(dir) = to {
        // A data directory given for its `log/`: the copy would start a second log
        // beside it.
        if !ledger_store::holds_log(dir) && ledger_store::holds_log(&dir.join("log")) {
            eprintln!(
                "error: {} is a data directory; its log is {}: copy into that, or into an empty directory",
                dir.display(),
                dir.join("log").display()
            );
            return ExitCode::from(2);
        }
    }
    eprintln!("copying from {} to {}", from.describe(), to.describe());
    let source = match from.open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let destination = match to.open() {
        Ok(s) => s,
        Err(e) => {
            source.close();
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C stops after the append in flight; the copy resumes when run again.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut last_report = Instant::now();
    let mut progress = |p: &ledger_store::CopyProgress| {
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            eprintln!(
                "  {} events ({} written, {} already present) in {} streams",
                p.events_done, p.written, p.already_present, p.streams
            );
        }
        if stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let result = copy_log(
        source.log().as_ref(),
        destination.log().as_ref(),
        &mut progress,
    )
    .await;
    source.close();
    destination.close();
    match result {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e @ (TransferError::Diverged { .. } | TransferError::SourceGap { .. })) => {
            eprintln!("DIVERGED: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

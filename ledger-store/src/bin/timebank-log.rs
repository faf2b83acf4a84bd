//! `timebank-log`: operator tools for an embedded log directory.
//!
//! ```text
//! timebank-log verify DIR   walk every record: CRCs, hash chain, sequence numbers,
//!                           stream versions, id uniqueness; print head position and hash
//! ```
//! Exit status: 0 verified, 1 damaged, 2 usage or I/O error. Read-only: safe while the
//! server runs, and it never repairs (opening the log with the server does that).

use std::path::PathBuf;
use std::process::ExitCode;

use ledger_store::OpenError;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "verify" => match ledger_store::verify(&PathBuf::from(dir)) {
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
        },
        _ => {
            eprintln!("usage: timebank-log verify DIR");
            ExitCode::from(2)
        }
    }
}

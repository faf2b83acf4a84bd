//! `ledger-server serve --data-dir DIR --listen ADDR`
//! `ledger-server rebuild --data-dir DIR` (read models from zero, fresh snapshot)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use chrono::FixedOffset;
use clap::{Parser, Subcommand};
use ledger_core::app::LedgerConfig;
use ledger_core::domain::units::ExchangeRate;
use ledger_server::{run, RunConfig};
use rust_decimal::Decimal;

#[derive(Parser)]
#[command(
    name = "ledger-server",
    version,
    about = "The timebank ledger's gRPC write API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve timebank.v1.LedgerCommands (with gRPC health and reflection).
    Serve {
        /// Directory of the embedded event log (created if missing).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Version of the configured hours → points exchange rate.
        #[arg(long, default_value_t = 1)]
        exchange_rate_version: u32,
        /// Points per credit hour, an exact decimal.
        #[arg(long, default_value = "10", value_parser = Decimal::from_str)]
        points_per_hour: Decimal,
        /// UTC offset of the ledger's calendar ("today" for service dates), e.g. +08:00.
        #[arg(long, default_value = "+00:00", value_parser = FixedOffset::from_str)]
        calendar_offset: FixedOffset,
    },
    /// Rebuild the read models from position zero and write a fresh snapshot to
    /// DATA_DIR/projections/ (stop the server first). Prints the event count, the
    /// checkpoint and the state digest: equal digests mean identical state.
    Rebuild {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (data_dir, listen, exchange_rate_version, points_per_hour, calendar_offset) =
        match Cli::parse().command {
            Cmd::Serve {
                data_dir,
                listen,
                exchange_rate_version,
                points_per_hour,
                calendar_offset,
            } => (
                data_dir,
                listen,
                exchange_rate_version,
                points_per_hour,
                calendar_offset,
            ),
            Cmd::Rebuild { data_dir } => return rebuild(&data_dir).await,
        };
    if points_per_hour <= Decimal::ZERO {
        tracing::error!("--points-per-hour must be greater than zero");
        return ExitCode::FAILURE;
    }
    let config = RunConfig {
        data_dir,
        listen,
        ledger: LedgerConfig {
            exchange_rate: ExchangeRate {
                version: exchange_rate_version,
                points_per_hour,
            },
            calendar_offset,
        },
    };
    match run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn rebuild(data_dir: &std::path::Path) -> ExitCode {
    match ledger_server::queries::rebuild(data_dir).await {
        Ok(r) => {
            println!("events      {}", r.events);
            println!(
                "checkpoint  {}",
                r.checkpoint
                    .map_or_else(|| "none".to_owned(), |p| p.to_string())
            );
            println!("digest      {}", r.digest);
            println!("snapshot    {}", r.snapshot.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

//! `ledger-server serve --data-dir DIR --listen ADDR --access FILE [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]`
//! `ledger-server keygen --name NAME --role ROLE [--bank ID | --merchant ID | --region R … | --organisation O …]`
//! `ledger-server demo` (seed the demo city on first start, then serve)
//! `ledger-server seed --volunteers N --seed S` (seed only)
//! `ledger-server rebuild --data-dir DIR` (read models from zero, fresh snapshot)
//! `ledger-server load --target URL --mix deposit=80,spend=10,exchange=10`
//! `ledger-server export --data-dir DIR --out FILE` (the log as JSON lines, docs/events.md)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use chrono::FixedOffset;
use clap::{Parser, Subcommand};
use ledger_core::app::LedgerConfig;
use ledger_core::domain::events::PayloadEncoding;
use ledger_core::domain::units::ExchangeRate;
use ledger_server::auth::{Access, TlsFiles};
use ledger_server::demo::DemoConfig;
use ledger_server::queries::StarPolicyArgs;
use ledger_server::{run, RunConfig, ServeOptions};
use rust_decimal::Decimal;
use std::io::IsTerminal;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[derive(Parser)]
#[command(
    name = "ledger-server",
    version,
    about = "The timebank ledger's gRPC write API"
)]
struct Cli {
    /// Log line format: text for people, json for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where Prometheus scrapes `/metrics`: an address, or `off` (None). A newtype, because
/// clap reads a bare `Option<T>` field as "optional T".
#[derive(Clone, Copy, Debug)]
struct MetricsListen(Option<SocketAddr>);

/// `--payload-encoding`: one of the encodings' names.
fn payload_encoding(text: &str) -> Result<PayloadEncoding, String> {
    [PayloadEncoding::Json, PayloadEncoding::Binary]
        .into_iter()
        .find(|e| e.name() == text)
        .ok_or_else(|| format!("{text:?} is not a payload encoding; give json or binary"))
}

/// `--points-per-hour`: [`ExchangeRate::points_per_hour`].
fn points_per_hour(text: &str) -> Result<Decimal, String> {
    ExchangeRate::points_per_hour(text).map_err(|e| e.to_string())
}

/// `--commit-delay`: `0`, or a number with `us`, `ms` or `s`, at most
/// [`ledger_store::COMMIT_DELAY_MAX`].
fn commit_delay(text: &str) -> Result<std::time::Duration, String> {
    let delay = match text.strip_suffix("us") {
        Some(n) => n
            .parse::<u64>()
            .map(std::time::Duration::from_micros)
            .map_err(|_| format!("{text:?} is not a delay like 0, 500us or 1ms"))?,
        None if text == "0" => std::time::Duration::ZERO,
        None => ledger_server::load::parse_duration(text)?,
    };
    let max = ledger_store::COMMIT_DELAY_MAX;
    if delay > max {
        return Err(format!(
            "{text:?} is longer than {} ms, the most a commit may wait",
            max.as_millis()
        ));
    }
    Ok(delay)
}

fn metrics_listen(text: &str) -> Result<MetricsListen, String> {
    if text == "off" {
        return Ok(MetricsListen(None));
    }
    text.parse()
        .map(|a| MetricsListen(Some(a)))
        .map_err(|e| format!("{text:?} is not an address like 127.0.0.1:9090 or `off`: {e}"))
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the timebank.v1 gRPC services (commands, queries, partners, audit), with
    /// gRPC health and reflection.
    Serve {
        /// Data directory: the embedded log in `log/` and projection snapshots in
        /// `projections/` (created if missing).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Where the event log lives: `embedded` (in the data directory), or a
        /// KurrentDB / EventStoreDB connection string such as
        /// `kurrentdb://host:2113?tls=false` or `kurrentdb+discover://a,b,c:2113`.
        #[arg(long, default_value = "embedded")]
        store: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Version of the configured hours → points exchange rate.
        #[arg(long, default_value_t = 1)]
        exchange_rate_version: u32,
        /// Points per credit hour, an exact decimal.
        /// Plain decimal notation, at most 6 places, above 0 and at most 100,000,000
        /// (above that not even 0.01 hour could be exchanged).
        #[arg(long, default_value = "10", value_parser = points_per_hour)]
        points_per_hour: Decimal,
        /// UTC offset of the ledger's calendar ("today" for service dates), e.g. +08:00.
        #[arg(long, default_value = "+00:00", value_parser = FixedOffset::from_str)]
        calendar_offset: FixedOffset,
        /// How long a merchant's uncaptured redemption hold keeps a volunteer's points
        /// before it expires and they return (e.g. 15m, 90s).
        #[arg(long, default_value = "15m", value_parser = ledger_server::load::parse_duration)]
        redemption_hold_timeout: std::time::Duration,
        /// How new events' payloads and metadata are stored: `json` (readable text) or
        /// `binary` (postcard: less than half the bytes, ~28 % fewer instructions per
        /// batched deposit, a faster replay; docs/benchmarks.md). Reading accepts both
        /// in any mix, so this may change between restarts; docs/events.md, "Binary
        /// payloads".
        #[arg(long, default_value = "json", value_parser = payload_encoding)]
        payload_encoding: PayloadEncoding,
        /// Prometheus metrics listener (`/metrics`), or `off`.
        #[arg(long, default_value = "127.0.0.1:9090", value_parser = metrics_listen)]
        metrics_listen: MetricsListen,
        /// Access file: the callers (API key hashes, client certificate names, one role
        /// each) and the limits; see docs/operations.md. Required unless
        /// --insecure-no-auth.
        #[arg(long, value_name = "FILE")]
        access: Option<PathBuf>,
        /// Serve without authentication: every caller is an administrator. Only behind
        /// something else that authenticates; never on a reachable address.
        #[arg(long, conflicts_with = "access")]
        insecure_no_auth: bool,
        /// TLS on the gRPC listener: the server's PEM certificate chain.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Mutual TLS: PEM CA certificate(s) that client certificates are verified
        /// against. Client certificates are then optional: a client without one can
        /// still send a bearer key.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Longest a shutdown (SIGTERM, Ctrl-C) waits for open connections before it
        /// stops without them and writes the final snapshot (e.g. 5s, 2m; default
        /// 20s, `SHUTDOWN_GRACE`). Commands in flight are finished either way.
        #[arg(long, value_parser = ledger_server::load::parse_duration)]
        shutdown_grace: Option<std::time::Duration>,
        /// Embedded log: how long the writer waits before a group commit when the log
        /// is busy, so that more appends share one fsync (e.g. 500us, 2ms; 0 never
        /// waits; at most 100ms). Light loads never wait. Default 1ms; see
        /// docs/operations.md
        #[arg(long, value_parser = commit_delay)]
        commit_delay: Option<std::time::Duration>,
        #[command(flatten)]
        star: StarPolicyArgs,
    },
    /// Make a new API key: prints the key (once, on stderr) and the access file's
    /// `[[caller]]` entry with its SHA-256 (on stdout, so `>> access.toml` appends it).
    Keygen {
        /// The caller's name (logs, rate limit).
        #[arg(long)]
        name: String,
        /// platform, merchant, bank, auditor or admin.
        #[arg(long)]
        role: String,
        /// bank: the bank's account id.
        #[arg(long)]
        bank: Option<String>,
        /// merchant: the merchant's account id.
        #[arg(long)]
        merchant: Option<String>,
        /// platform: a region-code prefix it writes for (repeat for several).
        #[arg(long = "region", value_name = "PREFIX")]
        regions: Vec<String>,
        /// platform: an organisation account id it writes for (repeat for several).
        #[arg(long = "organisation", value_name = "ID")]
        organisations: Vec<String>,
        /// Also accept this mTLS client certificate name (CN or DNS SAN).
        #[arg(long)]
        certificate_name: Option<String>,
    },
    /// Seed the demo city into an empty data directory on first start, then serve it
    /// (UTC+8 calendar), printing ready-to-paste grpcurl calls.
    Demo {
        /// Where the demo's embedded log, access file and snapshots live.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// The gRPC address (plaintext).
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Registered volunteers in the demo city (up to 2,680,000, Hangzhou's count).
        #[arg(long, default_value_t = ledger_server::demo::DEFAULT_VOLUNTEERS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(ledger_server::demo::VOLUNTEERS_MAX)))]
        volunteers: u32,
        /// Seed of the generator: the same seed and size give the same log.
        #[arg(long, default_value_t = ledger_server::demo::DEFAULT_SEED)]
        seed: u64,
        /// How the city's events are stored: `json` or `binary` (as for `serve`).
        #[arg(long, default_value = "json", value_parser = payload_encoding)]
        payload_encoding: PayloadEncoding,
        /// Prometheus metrics listener (`/metrics`), or `off`.
        #[arg(long, default_value = "127.0.0.1:9090", value_parser = metrics_listen)]
        metrics_listen: MetricsListen,
        #[command(flatten)]
        star: StarPolicyArgs,
    },
    /// Seed the demo city into an empty data directory and stop.
    Seed {
        /// The empty (or new) data directory to seed.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Registered volunteers in the city (up to 2,680,000, Hangzhou's count).
        #[arg(long, default_value_t = ledger_server::demo::DEFAULT_VOLUNTEERS,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(ledger_server::demo::VOLUNTEERS_MAX)))]
        volunteers: u32,
        /// Seed of the generator: the same seed and size give the same log.
        #[arg(long, default_value_t = ledger_server::demo::DEFAULT_SEED)]
        seed: u64,
        /// How the city's events are stored: `json` or `binary` (as for `serve`).
        #[arg(long, default_value = "json", value_parser = payload_encoding)]
        payload_encoding: PayloadEncoding,
    },
    /// Rebuild the read models from position zero and write a fresh snapshot to
    /// DATA_DIR/projections/ (stop the server first). Prints the event count, the
    /// checkpoint and the state digest: equal digests mean identical state.
    Rebuild {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Drive a running server over gRPC and print throughput and latency percentiles.
    /// It WRITES permanent events (accounts in region `loadtown/…` and their
    /// deposits, spends, exchanges): run it against the demo or a scratch ledger only.
    Load(ledger_server::load::LoadArgs),
    /// Write the whole event log as JSON lines for auditors (docs/events.md), in log
    /// order, and print the event count and head on stderr. Stop the server first: the
    /// embedded log is opened exclusively.
    Export(ledger_server::export::ExportArgs),
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

/// The process allocator. The command path allocates and frees many small buffers
/// (event JSON, gRPC messages, map entries) on several worker threads; in a profile of
/// `SubmitBatch` deposits glibc's malloc and free took ~22 % of the server's CPU
/// (docs/benchmarks.md, "End to end"). Option not taken: jemalloc, similar speed with
/// a larger C build. Only the binary sets it: the library leaves the choice to
/// embedders.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`), as Redis
/// does by default (`disable-thp`). mimalloc asks the kernel for huge pages on its
/// arenas (`madvise(MADV_HUGEPAGE)`), so each first touch of a region faults in and
/// zeroes 2 MiB at once, and again after mimalloc hands freed memory back. Under
/// `SubmitBatch` load that zeroing was ~16 % of the server's CPU samples (the twelfth
/// session's profile); with THP off the server spent 8–11 % less CPU per batched
/// deposit and its p99 latency fell by more than half, measured side by side
/// (docs/benchmarks.md, "Thirteenth session"). Set first thing in `main`, after the
/// runtime's threads exist: the flag is the process's, so it covers them too. Option
/// not taken: mimalloc's `no_thp` build feature, which only stops its own `madvise`,
/// not a kernel set to `always`.
/// Best effort: a kernel without the call (before 3.15) keeps its default.
fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of
        // this process's; it only sets a flag on the process's address space.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    ledger_store::keep_created_files_private();
    let thp = disable_transparent_huge_pages();
    let cli = Cli::parse();
    // `export --out -` writes the export on stdout, so its log lines go to stderr;
    // the other commands keep logging to stdout as they always have.
    let to_stderr = matches!(cli.command, Cmd::Export(_));
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    // Colours for a terminal only: in a file or a pipe the escape codes are noise
    // around every level and field (newcomer's probe). `NO_COLOR` turns them off too.
    let ansi = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_env_filter(filter)
            .init(),
        // Spans as fields, so every line of a command's handling carries its request id.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_env_filter(filter)
            .init(),
    }
    if let Err(e) = thp {
        tracing::debug!("transparent huge pages stay as the kernel sets them: {e}");
    }
    let result: Result<(), String> = match cli.command {
        Cmd::Serve {
            data_dir,
            store,
            listen,
            exchange_rate_version,
            points_per_hour,
            calendar_offset,
            redemption_hold_timeout,
            payload_encoding,
            metrics_listen,
            access,
            insecure_no_auth,
            tls_cert,
            tls_key,
            tls_client_ca,
            shutdown_grace,
            commit_delay,
            star,
        } => {
            let star_policies = match star.policies() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert,
                    key,
                    client_ca: tls_client_ca,
                }),
                _ => None,
            };
            let serve = match serve_options(access, insecure_no_auth, tls) {
                Ok(s) => ServeOptions {
                    shutdown_grace,
                    ..s
                },
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let config = RunConfig {
                data_dir,
                listen,
                ledger: LedgerConfig {
                    exchange_rate: ExchangeRate {
                        version: exchange_rate_version,
                        points_per_hour,
                    },
                    calendar_offset,
                    redemption_hold_timeout: match chrono::Duration::from_std(
                        redemption_hold_timeout,
                    ) {
                        Ok(d) if d > chrono::Duration::zero() => d,
                        _ => {
                            tracing::error!(
                                "--redemption-hold-timeout must be positive and below 290 years"
                            );
                            return ExitCode::FAILURE;
                        }
                    },
                    payload_encoding,
                },
                store: Some(store),
                serve,
                star_policies,
                commit_delay,
            };
            match ledger_server::metrics::install(metrics_listen.0) {
                Ok(()) => run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::Demo {
            data_dir,
            listen,
            volunteers,
            seed,
            payload_encoding,
            metrics_listen,
            star,
        } => {
            let star_policies = match star.policies() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let config = DemoConfig {
                seed,
                volunteers,
                payload_encoding,
                ..DemoConfig::default()
            };
            match ledger_server::metrics::install(metrics_listen.0) {
                Ok(()) => ledger_server::demo::seed_and_serve(
                    data_dir,
                    listen,
                    config,
                    star_policies,
                    shutdown_signal(),
                )
                .await
                .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::Seed {
            data_dir,
            volunteers,
            seed,
            payload_encoding,
        } => {
            let config = DemoConfig {
                seed,
                volunteers,
                payload_encoding,
                ..DemoConfig::default()
            };
            ledger_server::demo::seed_only(data_dir, config)
                .await
                .map_err(|e| e.to_string())
        }
        Cmd::Rebuild { data_dir } => return rebuild(&data_dir).await,
        Cmd::Export(args) => ledger_server::export::run(&args)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Cmd::Keygen {
            name,
            role,
            bank,
            merchant,
            regions,
            organisations,
            certificate_name,
        } => {
            let request = ledger_server::auth::key::KeygenRequest {
                name,
                role,
                bank,
                merchant,
                regions,
                organisations,
                certificate_name,
            };
            match ledger_server::auth::key::keygen(&request) {
                Ok(made) => {
                    eprintln!(
                        "API key for {} (shown once; give it to the caller over a secure channel, the server keeps only its hash):\n\n{}\n\nits access file entry (on stdout):\n",
                        request.name, made.key
                    );
                    println!("{}", made.entry);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Cmd::Load(args) => match args.config() {
            Ok(config) => {
                eprintln!(
                    "load: writing permanent test events into the ledger at {} (accounts in loadtown/…)",
                    config.target
                );
                match ledger_server::load::run(&config).await {
                    Ok(report) => {
                        print!("{}", report.render());
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The access file, TLS and the refusal to serve unauthenticated by accident.
fn serve_options(
    access: Option<PathBuf>,
    insecure_no_auth: bool,
    tls: Option<TlsFiles>,
) -> Result<ServeOptions, String> {
    let access = match access {
        Some(path) => {
            let access = Access::load(&path).map_err(|e| e.to_string())?;
            tracing::info!(
                access = %path.display(),
                callers = access.callers().len(),
                "authenticating timebank.v1 calls"
            );
            Some(std::sync::Arc::new(access))
        }
        None if insecure_no_auth => {
            tracing::warn!(
                "--insecure-no-auth: NO AUTHENTICATION. Every caller is an administrator that can write and read everything; serve like this only behind something else that authenticates"
            );
            None
        }
        None => {
            return Err("no --access FILE: the server authenticates every call against an access file (docs/operations.md; `ledger-server keygen` makes keys); to serve without authentication, say --insecure-no-auth".to_owned())
        }
    };
    let tls = match tls {
        Some(files) => Some(files.load().map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(ServeOptions {
        access,
        tls,
        ..ServeOptions::default()
    })
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn a_commit_delay_is_zero_or_a_short_duration() {
        use std::time::Duration;
        for (text, delay) in [
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("500us", Duration::from_micros(500)),
            ("1ms", Duration::from_millis(1)),
            ("100ms", Duration::from_millis(100)),
        ] {
            assert_eq!(super::commit_delay(text), Ok(delay), "{text}");
        }
        for bad in ["101ms", "1s", "2m", "-1ms", "1.5ms", "ms", "us", "1h", ""] {
            assert!(super::commit_delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_subcommand_parses() {
        Cli::command().debug_assert();
        for args in [
            &["ledger-server", "serve", "--metrics-listen", "off"][..],
            &["ledger-server", "serve", "--access", "a.toml"],
            &["ledger-server", "serve", "--insecure-no-auth"],
            &[
                "ledger-server",
                "serve",
                "--access",
                "a.toml",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-client-ca",
                "ca.pem",
            ],
            &[
                "ledger-server",
                "keygen",
                "--name",
                "p",
                "--role",
                "platform",
                "--region",
                "hangzhou/xihu",
                "--region",
                "hangzhou/binjiang",
                "--organisation",
                "org-7",
            ],
            &[
                "ledger-server",
                "serve",
                "--metrics-listen",
                "127.0.0.1:9999",
            ],
            &[
                "ledger-server",
                "--log-format",
                "json",
                "demo",
                "--volunteers",
                "500",
            ],
            &[
                "ledger-server",
                "serve",
                "--star-policy",
                "county-2026=50,150,300,600,1000",
                "--star-policy",
                "city-2027=80,250.5,500,900,1400",
                "--default-star-policy",
                "county-2026",
            ],
            &["ledger-server", "demo", "--star-policy", "c=1,2,3,4,5"],
            &["ledger-server", "seed", "--seed", "7"],
            &["ledger-server", "rebuild"],
            &[
                "ledger-server",
                "export",
                "--out",
                "audit.jsonl",
                "--from-position",
                "10:10",
            ],
            &[
                "ledger-server",
                "load",
                "--mix",
                "deposit=1",
                "--duration",
                "2s",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["ledger-server", "serve", "--metrics-listen", "x"]).is_err());
        // A malformed policy is refused by the parser, with the policy's own message.
        let e = Cli::try_parse_from(["ledger-server", "serve", "--star-policy", "c=1,2,3"])
            .err()
            .expect("four thresholds are refused");
        assert!(e.to_string().contains("exactly 5 are needed"), "{e}");
        // Both, or a key without its certificate, make no sense.
        assert!(Cli::try_parse_from([
            "ledger-server",
            "serve",
            "--access",
            "a",
            "--insecure-no-auth"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["ledger-server", "serve", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn serve_refuses_to_start_without_an_access_file_unless_told_insecure() {
        let e = super::serve_options(None, false, None).unwrap_err();
        assert!(e.contains("--insecure-no-auth"), "{e}");
        let open = super::serve_options(None, true, None).unwrap();
        assert!(open.access.is_none());
        let e =
            super::serve_options(Some("/nonexistent/access.toml".into()), false, None).unwrap_err();
        assert!(e.contains("/nonexistent/access.toml"), "{e}");
    }
}

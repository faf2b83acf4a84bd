//! `ledger-server`: the timebank gRPC write API (`timebank.v1.LedgerCommands`).
//!
//! # Layout
//! - [`pb`]: code generated from `proto/timebank/v1/ledger.proto` (protox + tonic-build,
//!   no system `protoc`) and its file descriptor set for server reflection;
//! - [`convert`]: the one place proto messages become domain commands and outcomes
//!   become proto results;
//! - [`status`]: the one place command failures become `tonic::Status`;
//! - [`codec`]: tonic's protobuf codec, but a request that does not decode is
//!   `INVALID_ARGUMENT` with an `ErrorInfo` (not tonic's `INTERNAL`);
//! - `service`: the service implementation, the batch RPC and the in-flight bound;
//! - [`export`]: `ledger-server export`, the log as JSON lines for auditors
//!   (`docs/events.md`);
//! - [`queries`]: `timebank.v1.LedgerQueries` over the read models of the `projections`
//!   crate (the worker runs in this process; snapshots under `DATA_DIR/projections/`);
//! - [`auth`]: the access file, authentication (API keys, client certificates), the
//!   per-caller rate limit, the named request limits and TLS ([`ServeOptions`]);
//! - `accept`: accepting connections, plain or TLS, each under a deadline on its
//!   opening (`opening`: silent sockets and stalled TLS handshakes are closed);
//! - `linger`: the connections' lingering close (a response finished during a graceful
//!   shutdown is not lost to a TCP reset);
//! - this file: [`serve`] (tests and embedders) and [`run`] (the binary).
//!
//! Protobuf types stay in this crate; `ledger-core` knows nothing of tonic.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ledger_core::app::{CommandError, DecodedEvents, Handler, LedgerConfig, SystemClock};
use ledger_store::{EmbeddedConfig, EmbeddedLog, OpenError, Store, StoreError};
use projections::runtime::PROJECTIONS_DIR;
use projections::ProjectionConfig;
use tokio::net::TcpListener;

mod accept;
pub mod auth;
pub mod authz;
pub mod codec;
pub mod convert;
pub mod demo;
pub mod export;
mod linger;
pub mod load;
pub mod metrics;
mod opening;
pub mod partners;
pub mod queries;
pub mod receipts;
mod service;
pub mod status;

/// Seconds a connection may be silent before the server pings it (HTTP/2 keepalive).
pub const HTTP2_KEEPALIVE_INTERVAL_S: u64 = 300;

/// Seconds the server waits for a ping's answer before it closes the connection.
pub const HTTP2_KEEPALIVE_TIMEOUT_S: u64 = 20;

pub use auth::ServeOptions;
pub use queries::{QueryConfig, QueryService};
pub use service::{LedgerService, BATCH_COMMANDS_MAX, INFLIGHT_COMMANDS_MAX};

/// Generated protobuf and gRPC code of package `timebank.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("timebank.v1");

    /// The encoded file descriptor set of `timebank.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/timebank_v1_descriptor.bin"));
}

/// How often the server checks whether an inline receipt delivery failed and, if so,
/// runs the receipts catch-up. Short enough that a receiver sees its hours within
/// seconds after a transient log error; a check is one atomic load.
pub const RECEIPT_HEAL_INTERVAL: Duration = Duration::from_secs(5);

/// Longest a shutdown waits for its connections to finish once asked: 20 s. Then the
/// server stops serving without them and goes on to drain the commands in flight
/// and write the final snapshot. Without a bound, one client that stops reading an
/// answer (HTTP/2 flow control: the records already on their way must be taken)
/// held the shutdown for as long as it kept its connection open. Nothing is lost by
/// cutting it: every acknowledged append is durable, a command still running is
/// drained, and a client cut off before its answer retries with the same request id
/// and gets the original result. 20 s, not 30: an orchestrator's usual grace before
/// it kills the process is 30 s (Kubernetes' default), and the final snapshot needs
/// its share of it. [`ServeOptions::shutdown_grace`] sets another bound.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the event log: {0}")]
    OpenLog(#[from] OpenError),
    #[error("cannot open the event store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}; is another server using the port?")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "delivering missing receipts at start-up failed: {}; the event log must be readable to start: check that the event store in the `event store open` line is reachable, then start again",
        startup_cause(.0)
    )]
    ReceiptCatchUp(CommandError),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    TokenKey(#[from] partners::TokenKeyError),
    #[error("a blocking start-up task failed: {0}")]
    Blocking(String),
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Everything acknowledged is in the log, but the read models' final snapshot was
    /// not written (or their worker had stopped on an event it could not fold): the
    /// next start replays more of the log, and the exit status says so to a
    /// supervisor instead of reporting a clean stop.
    #[error("stopped without the projections' final snapshot: {0}; nothing acknowledged is lost (the log has it), the next start replays the events after the last snapshot written. Fix the cause (e.g. free space under DATA_DIR/projections) before the next stop")]
    FinalSnapshot(projections::RuntimeError),
}

/// What went wrong under a start-up step that runs through the command path, for an
/// operator: the cause without the advice meant for API clients ("retry with the same
/// request id"), which an operator starting a server cannot act on.
fn startup_cause(e: &CommandError) -> String {
    match e {
        CommandError::LogUnavailable(why) => format!("the event log is unavailable: {why}"),
        CommandError::Contention { account, attempts } => format!(
            "account {account} changed under the delivery {attempts} times in a row (another writer on the same log?)"
        ),
        other => other.to_string(),
    }
}

/// What `ledger-server serve` runs with.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Holds the embedded log (`log/`) and the projection snapshots (`projections/`).
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub ledger: LedgerConfig,
    /// Where the event log lives: `None` or `"embedded"` for the embedded log in
    /// `data_dir/log`, or a KurrentDB connection string (`kurrentdb://…`,
    /// `kurrentdb+discover://…`, `esdb://…`); see `ledger_store::open_store`.
    pub store: Option<String>,
    /// Access file, limits and TLS; the default is open mode (see [`ServeOptions`]).
    pub serve: ServeOptions,
    /// Star-level policies the queries grade by (`serve --star-policy`); the default
    /// holds `national-2024` only.
    pub star_policies: projections::StarPolicies,
    /// The embedded log's commit delay (`serve --commit-delay`); None: the log's
    /// default ([`EmbeddedConfig`]). Not used with KurrentDB.
    pub commit_delay: Option<std::time::Duration>,
}

/// Sub-directory of a data directory that holds the embedded log's segments.
pub const LOG_DIR: &str = "log";

/// A data directory without an embedded log (`log/`), given to a command that reads
/// an existing ledger (`export`, `rebuild`): opening it as `serve` does would make an
/// empty log there, and the command would report on nothing.
#[derive(Debug, thiserror::Error)]
#[error("no event log in {}: pass the --data-dir of a ledger server (the directory holding log/)", .0.display())]
pub struct NoLog(pub PathBuf);

/// Ok if `data_dir` holds an embedded log, [`NoLog`] if not.
pub fn require_log(data_dir: &Path) -> Result<(), NoLog> {
    if data_dir.join(LOG_DIR).is_dir() {
        Ok(())
    } else {
        Err(NoLog(data_dir.to_owned()))
    }
}

/// Open the durable embedded event log of the data directory `data_dir`
/// (`data_dir/log`, created if missing).
pub fn open_log(data_dir: &Path) -> Result<EmbeddedLog, ServeError> {
    open_log_with(data_dir, EmbeddedConfig::default())
}

/// [`open_log`] with settings other than the defaults.
pub fn open_log_with(data_dir: &Path, config: EmbeddedConfig) -> Result<EmbeddedLog, ServeError> {
    Ok(EmbeddedLog::open(&data_dir.join(LOG_DIR), config)?)
}

/// The binary's entry point: open the configured store (by default the embedded log
/// in `config.data_dir`), listen on `config.listen`, serve until `shutdown`
/// completes, then close the store cleanly.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Bound before the store is opened: a port in use (or any other bind error)
    // then fails with nothing created, where it failed after making an empty log in
    // a new data directory (operator's probe).
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let dir = config.data_dir.clone();
    let spec = config.store.clone().unwrap_or_default();
    let spec_text = spec.clone();
    let mut embedded = EmbeddedConfig::default();
    if let Some(delay) = config.commit_delay {
        embedded.commit_delay = delay;
    }
    // Opening the embedded log scans it (recovery), and connecting to KurrentDB needs a
    // runtime context: the blocking pool gives both without stalling the workers.
    let store = tokio::task::spawn_blocking(move || -> Result<Store, ServeError> {
        if spec.is_empty() || spec == "embedded" {
            Ok(Store::Embedded(open_log_with(&dir, embedded)?))
        } else {
            Ok(ledger_store::open_store(&spec, &dir)?)
        }
    })
    .await
    .map_err(|e| ServeError::Blocking(e.to_string()))??;
    let described = match &store {
        Store::Embedded(_) => format!(
            "embedded log in {}",
            config.data_dir.join(LOG_DIR).display()
        ),
        // Opening a KurrentDB store only parses the connection string: say so, or the
        // line reads as if the cluster had answered (operator's probe).
        Store::Kurrent(_) => format!(
            "{} (not contacted yet: the client connects on the first read)",
            ledger_store::StoreSpec::parse_location(&spec_text).describe()
        ),
    };
    tracing::info!(data_dir = %config.data_dir.display(), store = %store_name(&store), at = %described, "event store open");
    run_listening(store, listener, config, shutdown).await
}

fn store_name(store: &Store) -> &'static str {
    match store {
        Store::Embedded(_) => "embedded",
        Store::Kurrent(_) => "kurrentdb",
    }
}

/// [`run`] on a store that is already open (the demo seeds it first). Closes the
/// store when serving ends.
pub async fn run_on(
    store: Store,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(source) => {
            store.close();
            return Err(ServeError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    run_listening(store, listener, config, shutdown).await
}

/// [`run_on`] with its listener already bound.
async fn run_listening(
    store: Store,
    listener: TcpListener,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let partners = match partners::PartnerConfig::load_or_create(&config.data_dir) {
        Ok(p) => p,
        Err(e) => {
            store.close();
            return Err(e.into());
        }
    };
    // The handler leaves each event it appends, decoded, for the projection worker,
    // which then does not decode the payload again (`ledger_core::app::DecodedEvents`).
    let decoded = Arc::new(DecodedEvents::new());
    let handler = Handler::new(store.log(), Arc::new(SystemClock), config.ledger)
        .with_decoded_events(decoded.clone());
    let queries = QueryConfig {
        partners,
        projections: ProjectionConfig {
            decoded: Some(decoded),
            ..ProjectionConfig::in_dir(config.data_dir.join(PROJECTIONS_DIR))
        },
        lag_counting: match &store {
            Store::Embedded(_) => projections::LagCounting::Sequence,
            _ => projections::LagCounting::ReadAhead,
        },
        star_policies: config.star_policies,
    };
    let serve = ServeOptions {
        receipts_checkpoint: receipts::ReceiptCheckpoint::in_dir(&config.data_dir),
        ..config.serve
    };
    let served = serve_with_options(handler, queries, serve, listener, shutdown).await;
    // Every acknowledged append is durable already; closing stops the writer in order.
    if let Err(e) = tokio::task::spawn_blocking(move || store.close()).await {
        tracing::error!("closing the event log failed: {e}");
    }
    tracing::info!("event log closed");
    served
}

/// Serve `timebank.v1.LedgerCommands` (plus gRPC health and reflection) on `listener`
/// until `shutdown` completes. Before accepting, delivers any receipts a crash left
/// missing. On shutdown it stops accepting, lets in-flight commands finish and returns;
/// closing the log is the caller's job.
pub async fn serve(
    handler: Handler,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(handler, QueryConfig::default(), listener, shutdown).await
}

/// [`serve`] with the query side configured: `timebank.v1.LedgerQueries` answers from
/// a projection worker started here (its snapshot loaded, then catching up) and
/// stopped, with a final snapshot, when serving ends.
pub async fn serve_with(
    handler: Handler,
    queries: QueryConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_options(
        handler,
        queries,
        ServeOptions::default(),
        listener,
        shutdown,
    )
    .await
}

/// [`serve_with`] with access control, limits and TLS ([`ServeOptions`]): every
/// `timebank.v1` call is authenticated and rate-limited per caller by
/// [`auth::AuthLayer`]; health and reflection stay open.
pub async fn serve_with_options(
    handler: Handler,
    queries: QueryConfig,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = options.limits();
    let shutdown_grace = options.shutdown_grace.unwrap_or(SHUTDOWN_GRACE);
    let opening_max = options
        .connection_opening_max
        .unwrap_or(Duration::from_millis(opening::CONNECTION_OPENING_MS_MAX));
    // HTTP/2 keepalive: a connection whose peer has gone without a FIN (a dead
    // client, a dropped NAT entry) answers no ping and is closed, instead of holding a
    // socket for good. The intervals gRPC servers conventionally use, with a shorter
    // first ping; a live client answers pings without noticing them.
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(
            HTTP2_KEEPALIVE_INTERVAL_S,
        )))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(
            HTTP2_KEEPALIVE_TIMEOUT_S,
        )));
    // Reads the checkpoint file once, here; the healer's runs go on from its mark.
    let mut receipts = receipts::ReceiptCatchUp::new(options.receipts_checkpoint.clone());
    let report = receipts
        .run(&handler)
        .await
        .map_err(ServeError::ReceiptCatchUp)?;
    tracing::info!(
        scanned = report.scanned,
        delivered = report.delivered,
        "receipts caught up"
    );
    receipts::warn_skipped(&report);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::ledger_commands_server::LedgerCommandsServer<LedgerService>>()
        .await;
    health
        .set_serving::<pb::ledger_queries_server::LedgerQueriesServer<QueryService>>()
        .await;
    health
        .set_serving::<pb::consents_server::ConsentsServer<partners::consents::ConsentService>>()
        .await;
    health
        .set_serving::<pb::banks_server::BanksServer<partners::banks::BankService>>()
        .await;
    health
        .set_serving::<pb::redemptions_server::RedemptionsServer<partners::redemptions::RedemptionService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<partners::audit::AuditService>>()
        .await;
    // `google.rpc`'s error details too: every refusal carries an `ErrorInfo` (and some
    // a `RetryInfo`) in its status details, and a reflection client such as grpcurl
    // decodes a detail only if reflection can describe its type (before, grpcurl
    // printed the reason as base64: newcomer's probe).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let healer = {
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECEIPT_HEAL_INTERVAL);
            let mut checkpointed = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let due = checkpointed.elapsed() >= receipts::RECEIPTS_CHECKPOINT_INTERVAL;
                let pending = handler.take_receipts_pending();
                if !(pending || due) {
                    continue;
                }
                match receipts.run(&handler).await {
                    Ok(r) => {
                        checkpointed = tokio::time::Instant::now();
                        if r.delivered > 0 {
                            tracing::info!(delivered = r.delivered, "receipts healed");
                        }
                        receipts::warn_skipped(&r);
                    }
                    Err(e) => {
                        tracing::warn!("receipt catch-up failed, will retry: {e}");
                        if pending {
                            // Keep the flag set so the next tick tries again.
                            handler.mark_receipts_pending();
                        }
                    }
                }
            }
        })
    };

    let (read_models, worker) =
        projections::runtime::start(handler.log().clone(), queries.projections).await;
    // A worker stopped at an event it cannot fold leaves the read models at their
    // checkpoint for the rest of the process: the queries' health says so, so that a
    // load balancer or an operator's probe sees it (it read SERVING: operator's probe).
    let unhealthy = {
        let health = health.clone();
        let read_models = read_models.clone();
        tokio::spawn(async move {
            let why = read_models.failure().await;
            tracing::error!("timebank.v1.LedgerQueries health is NOT_SERVING: the projection worker stopped ({why})");
            health
                .set_not_serving::<pb::ledger_queries_server::LedgerQueriesServer<QueryService>>()
                .await;
        })
    };
    let gauges = metrics::spawn_projection_gauges(
        handler.log().clone(),
        read_models.clone(),
        queries.lag_counting,
    );
    let policies = Arc::new(queries.star_policies);
    let query_service = QueryService::new(
        read_models.clone(),
        handler.log().clone(),
        policies.clone(),
        handler.clock().clone(),
        handler.config().calendar_offset,
        handler.stamps().clone(),
    );
    let service =
        LedgerService::new(handler.clone()).with_batch_commands_max(limits.batch_commands_max);
    let partners = partners::Partners::new(
        service.clone(),
        handler,
        read_models,
        policies,
        queries.partners,
    );
    let sweeper = tokio::spawn(partners::redemptions::sweep_holds(partners.clone()));
    let closing = partners.clone();
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, "serving gRPC: timebank.v1 (LedgerCommands, LedgerQueries, Consents, Banks, Redemptions, Audit), health, reflection")
        }
        Err(e) => tracing::info!("serving gRPC (listening address unknown: {e})"),
    }
    let (shutdown_begun, begun) = tokio::sync::oneshot::channel::<()>();
    let router = server
        .layer(metrics::GrpcMetricsLayer)
        .layer(auth::AuthLayer::new(options.access))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            pb::ledger_commands_server::LedgerCommandsServer::new(service.clone())
                .max_decoding_message_size(limits.request_bytes_max),
        )
        .add_service(
            pb::ledger_queries_server::LedgerQueriesServer::new(query_service)
                .max_decoding_message_size(limits.request_bytes_max),
        )
        .add_service(
            pb::consents_server::ConsentsServer::new(partners::consents::ConsentService(
                partners.clone(),
            ))
            .max_decoding_message_size(limits.request_bytes_max),
        )
        .add_service(
            pb::banks_server::BanksServer::new(partners::banks::BankService(partners.clone()))
                .max_decoding_message_size(limits.request_bytes_max),
        )
        .add_service(
            pb::redemptions_server::RedemptionsServer::new(
                partners::redemptions::RedemptionService(partners.clone()),
            )
            .max_decoding_message_size(limits.request_bytes_max),
        )
        .add_service(
            pb::audit_server::AuditServer::new(partners::audit::AuditService(partners.clone()))
                .max_decoding_message_size(limits.request_bytes_max),
        );
    // Accepting stops when the shutdown begins (below): new clients are refused at
    // once instead of accepted into a server that no longer takes connections.
    let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stop_accepting.send(());
        tracing::info!("shutdown requested: no new connections; finishing in-flight commands");
        // A StreamLog that follows the log never ends by itself: end it, or the
        // graceful shutdown waits for its client to hang up.
        closing.close();
        let _ = shutdown_begun.send(());
    };
    // Connections are accepted here, not by tonic (`accept.rs`: a deadline on each
    // one's opening, TLS handshake included); each closes by lingering (`linger.rs`),
    // so a response finished during a graceful shutdown is not lost to a reset.
    let serving: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match options.tls {
        None => Box::pin(router.serve_with_incoming_shutdown(
            accept::plain(listener, opening_max, accepting_stopped),
            signal,
        )),
        Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
            accept::tls(listener, opening_max, tls, accepting_stopped),
            signal,
        )),
    };
    let grace_over = async {
        match begun.await {
            Ok(()) => tokio::time::sleep(shutdown_grace).await,
            // Serving ended without a shutdown (an error): no deadline.
            Err(_) => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = serving => served,
        () = grace_over => {
            // Dropping the server stops accepting and polling; the connections' own
            // tasks end with the runtime. Their commands are drained below.
            tracing::warn!(
                grace_ms = shutdown_grace.as_millis() as u64,
                "connections still open after the shutdown grace; stopping without them"
            );
            Ok(())
        }
    };
    // The sweeper writes through the command service: stop it before draining.
    sweeper.abort();
    let _ = sweeper.await;
    drop(partners);
    service.drain().await;
    drop(service);
    healer.abort();
    gauges.abort();
    unhealthy.abort();
    // Wait for the aborted tasks to be dropped, so they no longer hold the log.
    let _ = healer.await;
    let _ = gauges.await;
    let _ = unhealthy.await;
    // Stops following the log and writes the final snapshot (before the log closes).
    let stopped = worker.stop().await;
    tracing::info!("all commands finished");
    served?;
    stopped.map_err(ServeError::FinalSnapshot)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Operator's probe: a server started against an unreachable KurrentDB ended with
    /// "…: Connection is closed.; retry with the same request id; the event log must be
    /// readable to start …": the request-id advice is for API clients.
    #[test]
    fn a_start_up_failure_gives_operator_advice_only() {
        let e = super::ServeError::ReceiptCatchUp(ledger_core::app::CommandError::LogUnavailable(
            "KurrentDB: Connection is closed.".into(),
        ))
        .to_string();
        assert!(e.contains("Connection is closed"), "{e}");
        assert!(e.contains("is reachable, then start again"), "{e}");
        assert!(!e.contains("request id"), "{e}");
    }

    #[test]
    fn the_reflection_descriptor_set_holds_the_service_and_its_imports() {
        let fds = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<&str> = fds.file.iter().filter_map(|f| f.name.as_deref()).collect();
        assert!(names.contains(&"timebank/v1/ledger.proto"), "{names:?}");
        // grpcurl resolves Timestamp through reflection too.
        assert!(
            names.contains(&"google/protobuf/timestamp.proto"),
            "{names:?}"
        );
    }
}

//! Prometheus metrics: the names, their descriptions, the exporter, and the tower layer
//! that counts and times every gRPC request in one place.
//!
//! | metric | type | labels | recorded by |
//! |---|---|---|---|
//! | `timebank_grpc_requests_total` | counter | `rpc` (`/package.Service/Method` of a method this server serves, else `unknown`: [`rpc_label`]; before the sixteenth session unknown methods were `unimplemented`, and only when so answered), `code` (gRPC code name) | [`GrpcMetricsLayer`] |
//! | `timebank_grpc_request_duration_seconds` | histogram | `rpc` | [`GrpcMetricsLayer`] |
//! | `timebank_log_write_seconds` | histogram | | embedded log writer: one group's `pwrite` |
//! | `timebank_log_fsync_seconds` | histogram | | embedded log writer: one group's `fdatasync` |
//! | `timebank_log_group_commit_seconds` | histogram | | embedded log writer: a whole group (decide, encode, write, sync, publish): the append latency a caller sees past its queueing |
//! | `timebank_log_group_commit_appends` | histogram | | embedded log writer: appends per group |
//! | `timebank_projection_lag_events` | gauge | `projection` | [`spawn_projection_gauges`]: events in the log after the projection's checkpoint |
//! | `timebank_projection_lag_seconds` | gauge | `projection` | [`spawn_projection_gauges`]: age of the oldest observed log head the projection has not applied (0 when caught up) |
//! | `timebank_snapshot_age_seconds` | gauge | `projection` | [`spawn_projection_gauges`]: time since the projection last wrote its snapshot (before its first: the age of the snapshot file it resumed from, or the time since it started if none) |
//!
//! The projection gauges are sampled every [`PROJECTION_SAMPLE_INTERVAL`] from the
//! worker's numbers ([`projections::stats`], which has the exact definitions); the
//! label is [`PROJECTION_LABEL`], the one worker that keeps every read model:
//! - lag in events: the log head minus the checkpoint; exact on the embedded log
//!   (dense sequence numbers), counted by reading ahead on other stores (KurrentDB
//!   positions are byte offsets), where it saturates at `READ_EVENTS_MAX` (4,096);
//! - lag in seconds: the log does not record when an event was appended, so each
//!   sample that finds the head past the checkpoint notes when it saw that head, and
//!   the gauge is the age of the oldest noted head not yet applied: 0 when caught up
//!   or only behind since the last sample, else a lower bound on the true lag within
//!   one interval;
//! - snapshot age: since the last snapshot written, or since the worker started
//!   (a snapshot loaded at start counts as new; with no snapshot directory it is the
//!   worker's uptime). A quiet log gets no new snapshot (nothing to save), so the
//!   age also grows then: alert on it only with writes going on.
//!
//! The embedded log records its metrics with the same names through the `metrics`
//! facade (`ledger-store/src/embedded/writer.rs`); without an installed exporter the
//! calls cost next to nothing.

use std::collections::HashSet;

use prost::Message as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ledger_core::log::EventLog;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

pub const GRPC_REQUESTS_TOTAL: &str = "timebank_grpc_requests_total";
pub const GRPC_REQUEST_SECONDS: &str = "timebank_grpc_request_duration_seconds";
pub const LOG_WRITE_SECONDS: &str = "timebank_log_write_seconds";
pub const LOG_FSYNC_SECONDS: &str = "timebank_log_fsync_seconds";
pub const LOG_GROUP_COMMIT_SECONDS: &str = "timebank_log_group_commit_seconds";
pub const LOG_GROUP_COMMIT_APPENDS: &str = "timebank_log_group_commit_appends";
pub const PROJECTION_LAG_EVENTS: &str = "timebank_projection_lag_events";
pub const PROJECTION_LAG_SECONDS: &str = "timebank_projection_lag_seconds";
pub const SNAPSHOT_AGE_SECONDS: &str = "timebank_snapshot_age_seconds";
pub const PROJECTION_FOLD_ANOMALIES_TOTAL: &str = "timebank_projection_fold_anomalies_total";

/// The `projection` label of the projection gauges: the one worker keeps every read
/// model.
pub const PROJECTION_LABEL: &str = "read_models";
/// How often the projection gauges are sampled.
pub const PROJECTION_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Latency buckets, 50 µs to 10 s: an fsync is ~0.1–1 ms, a request 0.2–20 ms, and
/// anything past seconds is an incident.
const SECONDS_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];
/// Group sizes, powers of two up to the writer's `COMMIT_REQUESTS_MAX` (4,096).
const GROUP_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Describe every metric (HELP text and unit), so a scrape documents itself.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC requests by method and final status code"
    );
    describe_histogram!(
        GRPC_REQUEST_SECONDS,
        Unit::Seconds,
        "gRPC request latency, from the request's arrival to its response headers"
    );
    describe_histogram!(
        LOG_WRITE_SECONDS,
        Unit::Seconds,
        "embedded log: one group commit's write of its records"
    );
    describe_histogram!(
        LOG_FSYNC_SECONDS,
        Unit::Seconds,
        "embedded log: one group commit's fdatasync"
    );
    describe_histogram!(
        LOG_GROUP_COMMIT_SECONDS,
        Unit::Seconds,
        "embedded log: one whole group commit (decide, encode, write, sync, publish)"
    );
    describe_histogram!(
        LOG_GROUP_COMMIT_APPENDS,
        Unit::Count,
        "embedded log: appends made durable by one group commit (one fsync)"
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        Unit::Count,
        "events in the log that a projection has not applied yet"
    );
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "age of the oldest observed log head a projection has not applied yet, sampled every second (0 when caught up)"
    );
    describe_gauge!(
        SNAPSHOT_AGE_SECONDS,
        Unit::Seconds,
        "time since a projection last wrote its snapshot (before its first: the age of the snapshot file it resumed from, or since it started if none)"
    );
    describe_counter!(
        PROJECTION_FOLD_ANOMALIES_TOTAL,
        Unit::Count,
        "events of the log, up to the projection's checkpoint, that this ledger's handler would not have written (a foreign or imported log; the server log names the first ones of each run)"
    );
}

/// Why the exporter did not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot start the Prometheus exporter on {addr}: {source}; choose another --metrics-listen address or `off`")]
    Install {
        addr: SocketAddr,
        source: BuildError,
    },
    #[error("cannot listen for metrics on {addr}: {source}; choose another --metrics-listen address or `off`")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Longest one `/metrics` connection lives, from its accept to its close: a scrape
/// renders and sends a few KiB. The request's first bytes must come within the
/// connection opening deadline (`opening.rs`), its headers within this.
pub const METRICS_CONNECTION_MS_MAX: u64 = 30_000;

/// How often the exporter's upkeep runs (histogram buckets rotated, idle series
/// kept bounded): what the exporter's own listener did every 5 s.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Install the Prometheus exporter and serve `GET /metrics` on `listen` (`None`: no
/// exporter; the metric calls then go nowhere). Must run inside a tokio runtime.
///
/// Served here, over the gRPC listener's accept loop (`accept.rs`), not by the
/// exporter's own HTTP listener: that one retried a failed accept at once (out of
/// file descriptors, it spun a core and logged 2.8 million warnings in 8 s: an edge
/// probe of the seventeenth session) and kept silent connections for good. Here a
/// connection must send its request's first bytes within the opening deadline, gets
/// one response (no keep-alive: a scrape every few seconds does not need it), and is
/// closed after [`METRICS_CONNECTION_MS_MAX`] at the latest.
pub fn install(listen: Option<SocketAddr>) -> Result<(), MetricsError> {
    let Some(addr) = listen else {
        return Ok(());
    };
    let install = |source| MetricsError::Install { addr, source };
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .map_err(install)?
        .set_buckets_for_metric(
            Matcher::Full(LOG_GROUP_COMMIT_APPENDS.into()),
            &GROUP_BUCKETS,
        )
        .map_err(install)?
        .install_recorder()
        .map_err(install)?;
    let listen_error = |source| MetricsError::Listen { addr, source };
    // Bound here, so that a taken address fails the start rather than a task.
    let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
    describe();
    let opening_max = Duration::from_millis(crate::opening::CONNECTION_OPENING_MS_MAX);
    tokio::spawn(serve_metrics(listener, handle, opening_max));
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    Ok(())
}

/// Serve `GET /metrics` from `handle` on `listener` for the rest of the process, and
/// run the exporter's upkeep. A connection must send its first bytes within
/// `opening_max`.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    opening_max: Duration,
) {
    use tokio_stream::StreamExt as _;
    // Never sent: the metrics listener lives as long as the process.
    let (_serving, forever) = tokio::sync::oneshot::channel();
    let mut connections = crate::accept::plain(listener, opening_max, forever);
    let mut upkeep = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = upkeep.tick() => handle.run_upkeep(),
            connection = connections.next() => {
                let Some(Ok(connection)) = connection else { return };
                tokio::spawn(serve_scrape(connection, handle.clone()));
            }
        }
    }
}

/// One connection's one request: the metrics for `GET /metrics`, 404 otherwise.
async fn serve_scrape(
    connection: crate::accept::PlainConnection,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) {
    use http_body_util::Full;
    use hyper::{Method, Response, StatusCode};
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let response = if request.method() == Method::GET && request.uri().path() == "/metrics" {
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(bytes::Bytes::from(handle.render())))
        } else {
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(bytes::Bytes::from_static(
                    b"not found: the metrics are at GET /metrics\n",
                )))
        };
        std::future::ready(response)
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(METRICS_CONNECTION_MS_MAX))
        .serve_connection(hyper_util::rt::TokioIo::new(connection), service);
    let most = Duration::from_millis(METRICS_CONNECTION_MS_MAX);
    match tokio::time::timeout(most, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("a metrics connection failed: {e}"),
        Err(_) => tracing::debug!("a metrics connection was closed after {most:?}"),
    }
}

/// Sample the projection worker every [`PROJECTION_SAMPLE_INTERVAL`] into the
/// projection gauges, until the task is aborted. Without an installed exporter the
/// gauges go nowhere (the sampling still runs: a `head` read a second).
pub fn spawn_projection_gauges(
    log: Arc<dyn EventLog>,
    projections: projections::Projections,
    counting: projections::LagCounting,
) -> tokio::task::JoinHandle<()> {
    let lag_events = metrics::gauge!(PROJECTION_LAG_EVENTS, "projection" => PROJECTION_LABEL);
    let lag_seconds = metrics::gauge!(PROJECTION_LAG_SECONDS, "projection" => PROJECTION_LABEL);
    let snapshot_age = metrics::gauge!(SNAPSHOT_AGE_SECONDS, "projection" => PROJECTION_LABEL);
    let anomalies =
        metrics::counter!(PROJECTION_FOLD_ANOMALIES_TOTAL, "projection" => PROJECTION_LABEL);
    let mut sampler = projections::LagSampler::new(counting);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROJECTION_SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match sampler.sample(&*log, &projections).await {
                Ok(s) => {
                    failing = false;
                    lag_events.set(s.lag_events as f64);
                    lag_seconds.set(s.lag.as_secs_f64());
                    snapshot_age.set(s.snapshot_age.as_secs_f64());
                    anomalies.absolute(s.fold_anomalies);
                }
                Err(e) => {
                    // The lag is unknown; the snapshot age is not.
                    snapshot_age.set(projections.snapshot_age().as_secs_f64());
                    anomalies.absolute(projections.fold_anomalies());
                    if !failing {
                        tracing::warn!(
                            "sampling the projection lag failed: {e}; retrying every second"
                        );
                    }
                    failing = true;
                }
            }
        }
    })
}

/// The gRPC code names, by number, as Prometheus label values.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `rpc` label of every path that is no method this server serves.
pub const UNKNOWN_RPC_LABEL: &str = "unknown";

/// The methods this server serves, as request paths (`/timebank.v1.LedgerQueries/
/// GetAccount`): read from the descriptor sets reflection serves, so a method added to
/// a proto is labelled without a list to keep in step.
static KNOWN_RPCS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut known = HashSet::new();
    for set in [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(set)
            .expect("the build's own descriptor sets decode");
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    known.insert(format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
    }
    known
});

/// The `rpc` label of a request to `path`: the path of a method this server serves,
/// [`UNKNOWN_RPC_LABEL`] for any other. A client chooses the path, and every label
/// value is a series kept for the process's life: labelling paths as sent let a
/// caller without a key grow `/metrics` to 435 MB with 20,000 made-up paths (a
/// security probe; they were answered `UNAUTHENTICATED` before any router saw them,
/// so folding only `UNIMPLEMENTED` answers did not bound the set).
pub fn rpc_label(path: &str) -> String {
    if KNOWN_RPCS.contains(path) {
        path.to_owned()
    } else {
        UNKNOWN_RPC_LABEL.to_owned()
    }
}

/// Counts and times every request of the server it wraps (`Server::builder().layer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = rpc_label(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            // A unary call's failure comes as a trailers-only response, with
            // `grpc-status` in the headers; a success puts it in the trailers.
            let code = match &result {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0),
                Err(_) => 2, // UNKNOWN: the transport failed the request
            };
            let name = CODE_NAMES.get(code).copied().unwrap_or("UNKNOWN");
            metrics::counter!(GRPC_REQUESTS_TOTAL, "rpc" => rpc.clone(), "code" => name)
                .increment(1);
            metrics::histogram!(GRPC_REQUEST_SECONDS, "rpc" => rpc)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the server answers to `request` (all of it, until it closes).
    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// `/metrics` answers a scrape and closes; another path is 404; a connection that
    /// sends nothing is closed at the opening deadline, not kept (the exporter's own
    /// listener kept it for good, and spun a core when out of file descriptors).
    #[tokio::test]
    async fn metrics_are_served_once_per_connection_and_silent_connections_are_cut() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(GRPC_REQUESTS_TOTAL, "rpc" => "x", "code" => "Ok").increment(3);
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_metrics(listener, handle, Duration::from_millis(300)));

        let scrape = ask(addr, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(
            scrape.contains("timebank_grpc_requests_total{rpc=\"x\",code=\"Ok\"} 3"),
            "{scrape}"
        );
        let other = ask(addr, b"GET /other HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");

        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "a silent connection is closed: {closed:?}"
        );
    }

    /// Every method served keeps its own label; any other path, whatever the answer
    /// to it, shares one (a security probe grew /metrics to 435 MB through the labels).
    #[test]
    fn only_the_methods_served_get_a_label_of_their_own() {
        for served in [
            "/timebank.v1.LedgerCommands/DepositHours",
            "/timebank.v1.LedgerQueries/GetAccount",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(super::rpc_label(served), served);
        }
        for made_up in [
            "/timebank.v1.X/00000001aaaa",
            "/timebank.v1.LedgerQueries/GetAccount2",
            "/timebank.v1.LedgerQueries/",
            "/",
            "",
        ] {
            assert_eq!(
                super::rpc_label(made_up),
                super::UNKNOWN_RPC_LABEL,
                "{made_up}"
            );
        }
    }
}

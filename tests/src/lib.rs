//! Shared scaffolding of the end-to-end tests in `tests/`: the real server started on a
//! free loopback port, connected to through a real gRPC channel.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_core::app::{Clock, FixedClock, Handler, LedgerConfig};
use ledger_core::log::EventLog;
use ledger_server::{QueryConfig, ServeOptions};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// A server started by [`spawn_server`].
pub struct Spawned {
    /// Connected to the server; clone it for each client.
    pub channel: Channel,
    /// Send (or drop) to stop the server gracefully.
    pub stop: oneshot::Sender<()>,
    /// The server's task: `serve`'s result once it has stopped.
    pub task: tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
}

/// Serve `log` on 127.0.0.1 (a free port) with the ledger's clock fixed at `now`
/// (RFC 3339), and connect to it.
pub async fn spawn_server(log: Arc<dyn EventLog>, now: &str) -> Spawned {
    let clock = Arc::new(FixedClock::new(at(now)));
    spawn_with(log, clock, ServeOptions::default()).await
}

/// [`spawn_server`] with `clock` (the test moves it) and access control: every call
/// needs the key of one of `access`'s callers.
pub async fn spawn_server_with_access(
    log: Arc<dyn EventLog>,
    clock: Arc<FixedClock>,
    access: ledger_server::auth::Access,
) -> Spawned {
    spawn_with(log, clock, ServeOptions::with_access(access)).await
}

async fn spawn_with(
    log: Arc<dyn EventLog>,
    clock: Arc<FixedClock>,
    options: ServeOptions,
) -> Spawned {
    let (addr, stop, task) = listen(log, clock, options).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the server");
    Spawned {
        channel,
        stop,
        task,
    }
}

/// The server's task, serving `log` with `options` on 127.0.0.1 (a free port): its
/// address, the sender that stops it, and the task. For a test that connects its own
/// way (TLS); the others take [`spawn_server`].
pub async fn listen(
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    options: ServeOptions,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
) {
    let handler = Handler::new(log, clock, LedgerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ledger_server::serve_with_options(
        handler,
        QueryConfig::default(),
        options,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

/// An RFC 3339 instant, in UTC.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("the test instant is RFC 3339")
        .with_timezone(&Utc)
}

/// An RFC 3339 instant as the protobuf `Timestamp` the API takes (whole seconds).
pub fn timestamp(s: &str) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at(s).timestamp(),
        nanos: 0,
    }
}

/// A `RegisterAccount` request; a volunteer joins on `joined_on`, other kinds carry no
/// join date.
pub fn registration(
    request_id: &str,
    id: &str,
    kind: ledger_server::pb::AccountKind,
    region: &str,
    joined_on: &str,
) -> ledger_server::pb::RegisterAccountRequest {
    ledger_server::pb::RegisterAccountRequest {
        request_id: request_id.into(),
        account_id: id.into(),
        kind: kind as i32,
        region_code: region.into(),
        join_date: if kind == ledger_server::pb::AccountKind::Volunteer {
            joined_on.into()
        } else {
            String::new()
        },
    }
}

/// `message` with `key` as its bearer credential.
pub fn with<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}")
            .parse()
            .expect("test keys are printable ASCII"),
    );
    r
}

/// One `[[caller]]` of an access file: `scope` is the role's scope lines (or empty),
/// `key` the caller's API key (its SHA-256 is what the file holds).
pub fn caller_entry(name: &str, role: &str, scope: &str, key: &str) -> String {
    format!(
        "[[caller]]\nname = \"{name}\"\nrole = \"{role}\"\n{scope}\nkey_sha256 = \"{}\"\n\n",
        ledger_server::auth::hash_key(key).to_hex()
    )
}

/// The machine-readable reason of a failure (`ErrorInfo`), or empty without one.
pub fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// The code and machine-readable reason of a failure.
pub fn why(s: &tonic::Status) -> (tonic::Code, String) {
    (s.code(), reason(s))
}

/// The code and reason of a call expected to be refused.
pub fn refused<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (tonic::Code, String) {
    why(&r.expect_err("expected the call to be refused"))
}

/// A server with access control on an empty memory log, its clock fixed where the test
/// moves it, and a client of each service: the harness of the adversarial tests, which
/// add their own accounts.
pub struct Guarded {
    pub log: ledger_core::log::memory::MemoryLog,
    pub clock: Arc<FixedClock>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ledger_server::ServeError>>,
}

impl Guarded {
    /// Serve with `access`, the clock at `now` (RFC 3339).
    pub async fn start(access: ledger_server::auth::Access, now: &str) -> Self {
        Self::start_with(ServeOptions::with_access(access), now).await
    }

    /// [`Guarded::start`] with other `options` (an access file among them).
    pub async fn start_with(options: ServeOptions, now: &str) -> Self {
        Self::start_on(ledger_core::log::memory::MemoryLog::new(), options, now).await
    }

    /// [`Guarded::start_with`] on `log` (a restart: the log of a server stopped).
    pub async fn start_on(
        log: ledger_core::log::memory::MemoryLog,
        options: ServeOptions,
        now: &str,
    ) -> Self {
        let clock = Arc::new(FixedClock::new(at(now)));
        let spawned = spawn_with(Arc::new(log.clone()), clock.clone(), options).await;
        Self {
            log,
            clock,
            channel: spawned.channel,
            stop: Some(spawned.stop),
            task: spawned.task,
        }
    }

    /// Stop gracefully; the server must have stopped without an error.
    pub async fn stop(self) {
        self.stop_result().await.expect("the server stops cleanly");
    }

    /// Stop, and hand back what the server's serve returned: for tests whose log
    /// holds events the projection worker stops on (the stop then reports it).
    pub async fn stop_result(mut self) -> Result<(), ledger_server::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the server task ends")
    }

    pub fn commands(
        &self,
    ) -> ledger_server::pb::ledger_commands_client::LedgerCommandsClient<Channel> {
        ledger_server::pb::ledger_commands_client::LedgerCommandsClient::new(self.channel.clone())
    }

    pub fn queries(
        &self,
    ) -> ledger_server::pb::ledger_queries_client::LedgerQueriesClient<Channel> {
        ledger_server::pb::ledger_queries_client::LedgerQueriesClient::new(self.channel.clone())
    }

    pub fn consents(&self) -> ledger_server::pb::consents_client::ConsentsClient<Channel> {
        ledger_server::pb::consents_client::ConsentsClient::new(self.channel.clone())
    }

    pub fn redemptions(&self) -> ledger_server::pb::redemptions_client::RedemptionsClient<Channel> {
        ledger_server::pb::redemptions_client::RedemptionsClient::new(self.channel.clone())
    }

    pub fn banks(&self) -> ledger_server::pb::banks_client::BanksClient<Channel> {
        ledger_server::pb::banks_client::BanksClient::new(self.channel.clone())
    }

    pub fn audit(&self) -> ledger_server::pb::audit_client::AuditClient<Channel> {
        ledger_server::pb::audit_client::AuditClient::new(self.channel.clone())
    }

    /// The log's head position.
    pub async fn head(&self) -> Option<ledger_core::log::Position> {
        self.log.head().await.expect("a memory log answers")
    }
}

//! Shared scaffolding of the end-to-end tests in `tests/`: the real server started on a
//! free loopback port, connected to through a real gRPC channel.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_core::app::{FixedClock, Handler, LedgerConfig};
use ledger_core::log::EventLog;
use tokio::sync::oneshot;
use tonic::transport::Channel;

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
    let now = DateTime::parse_from_rfc3339(now)
        .expect("the test clock is RFC 3339")
        .with_timezone(&Utc);
    let handler = Handler::new(log, Arc::new(FixedClock::new(now)), LedgerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ledger_server::serve(handler, listener, async move {
        let _ = stopped.await;
    }));
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

//! Accepting the gRPC listener's connections, plain or TLS, each under the opening
//! deadline (`opening.rs`) and closing by lingering (`linger.rs`).
//!
//! One task accepts; each new connection is opened in a task of its own (for TLS, the
//! handshake, under the deadline counted from the accept) and handed to tonic through
//! a bounded channel once it is open, so a client that stalls its handshake holds
//! nothing but its own task until the deadline, and never the accepting of others.
//!
//! Why not tonic's: with `Server::tls_config`, tonic runs each TLS handshake without a
//! timeout (a stalled ClientHello held a socket and a task for good), and on a failed
//! accept (out of file descriptors, `EMFILE`) it tries again at once, which spins a
//! core for as long as the descriptors stay taken. Here accepting pauses
//! [`ACCEPT_ERROR_PAUSE_MS`] after such a failure, one address may hold at most
//! [`CONNECTIONS_OPENING_PER_PEER_MAX`] openings, and accepting stops (the listener
//! closes) as soon as the shutdown begins, where tonic's listener stayed open until
//! the last connection had drained.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::auth::ServerTls;
use crate::linger::Lingering;
use crate::opening::Opened;

/// Most connections being opened at once (accepted, TLS handshake not yet done, or
/// opened and not yet taken by tonic). Past it, accepting waits for one to finish (at
/// most the opening deadline), and new connections wait in the kernel's listen
/// backlog. Why a bound: each open handshake holds rustls's buffers (tens of KiB);
/// 1,024 of them is a few dozen MiB, far more than legitimate clients connecting in
/// one 10 s window.
pub const CONNECTIONS_OPENING_MAX: usize = 1024;

/// Most connections from one IP address being opened at once; one more is closed at
/// once. Why: without it, one host holding 1,024 stalled handshakes (renewed as each
/// is cut at the deadline) kept every other client waiting in the backlog (review of
/// the seventeenth session). A gRPC client opens one connection, or a few; 64 leaves
/// room for many clients behind one NAT or proxy while it takes 16 addresses to
/// reach [`CONNECTIONS_OPENING_MAX`].
pub const CONNECTIONS_OPENING_PER_PEER_MAX: usize = 64;

/// Opened connections waiting for tonic to take them. tonic takes each at once (it
/// spawns the connection's task), so this only smooths a burst of accepts.
const OPENED_QUEUE_MAX: usize = 64;

/// How long accepting pauses after the listener fails for want of a resource (file
/// descriptors, memory): such a failure repeats until a connection closes, and
/// retrying at once would spin a core. Short enough that a freed descriptor is used
/// within a tenth of a second.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// Least time between two `warn` lines about failed accepts.
const ACCEPT_ERROR_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A plain-TCP connection as served.
pub type PlainConnection = Opened<Lingering>;

/// A TLS connection as served: the decrypted stream under the opening deadline.
pub type TlsConnection = Opened<TlsStream<Lingering>>;

/// The auth layer finds a client's certificates as tonic's `TlsConnectInfo` of a TCP
/// connection (`auth/layer.rs`); a connection type that gave anything else would make
/// every certificate caller unauthenticated. Checked when this compiles.
const _: fn() = || {
    fn gives_tls_connect_info<T: Connected<ConnectInfo = TlsConnectInfo<TcpConnectInfo>>>() {}
    gives_tls_connect_info::<TlsConnection>();
};

/// Connections of `listener`, plaintext; each must send its opening within
/// `opening_max` of its accept. Accepting stops when `stop` fires.
pub fn plain(
    listener: TcpListener,
    opening_max: Duration,
    stop: oneshot::Receiver<()>,
) -> ReceiverStream<Result<PlainConnection, Infallible>> {
    // No share per address: a plain connection is handed on at once (its opening
    // deadline runs in hyper's task), so counting it would only refuse a burst of
    // well-behaved clients from one address while their openings were collected
    // (edge probe: 42 of 120 reset after a backlog drained).
    accepting(
        listener,
        opening_max,
        None,
        stop,
        |tcp, deadline| async move { Some(Opened::until(Lingering::new(tcp), deadline)) },
    )
}

/// Connections of `listener`, each after its TLS handshake, which must be done within
/// `opening_max` of the accept; the decrypted stream's first bytes must come by the
/// same deadline. Accepting stops when `stop` fires.
pub fn tls(
    listener: TcpListener,
    opening_max: Duration,
    tls: ServerTls,
    stop: oneshot::Receiver<()>,
) -> ReceiverStream<Result<TlsConnection, Infallible>> {
    accepting(
        listener,
        opening_max,
        Some(CONNECTIONS_OPENING_PER_PEER_MAX),
        stop,
        move |tcp, deadline| {
            let acceptor = tls.acceptor();
            async move {
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout_at(deadline, acceptor.accept(Lingering::new(tcp))).await
                {
                    Ok(Ok(stream)) => Some(Opened::until(stream, deadline)),
                    // Debug, as tonic logged them: a client's failed handshake is the
                    // client's to see, and a flood of them must not flood the log.
                    Ok(Err(e)) => {
                        tracing::debug!(?peer, "TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(
                            ?peer,
                            opening_ms_max = opening_max.as_millis() as u64,
                            "TLS handshake not done in time; closed"
                        );
                        None
                    }
                }
            }
        },
    )
}

/// Accept `listener`'s connections in a task of their own; `open` each in a task of
/// its own (given the connection's opening deadline), and send on those it opens.
/// Accepting ends when `stop` fires or its sender is dropped (the server's shutdown
/// began: new clients are then refused at once, not accepted into a server that no
/// longer serves them), or when the stream is dropped (tonic's serving has ended).
/// Dropping the loop's state aborts the handshakes still going and closes the
/// listener.
fn accepting<C, F, Fut>(
    listener: TcpListener,
    opening_max: Duration,
    per_peer_max: Option<usize>,
    stop: oneshot::Receiver<()>,
    open: F,
) -> ReceiverStream<Result<C, Infallible>>
where
    C: Send + 'static,
    F: Fn(TcpStream, Instant) -> Fut + Send + 'static,
    Fut: Future<Output = Option<C>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OPENED_QUEUE_MAX);
    tokio::spawn(async move {
        let mut stop = stop;
        // Connections being opened, and the peer each is from.
        let mut opening = JoinSet::new();
        let mut peers: HashMap<tokio::task::Id, IpAddr> = HashMap::new();
        let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
        // Opened, waiting for room in the channel to tonic. The loop never waits on
        // the channel itself, so that a stop is seen however busy tonic is.
        let mut ready: VecDeque<C> = VecDeque::new();
        // Accepting is paused until then after the listener ran out of a resource.
        let mut paused_until: Option<Instant> = None;
        // When a failed accept was last logged at `warn` (a run of them would log ten
        // a second).
        let mut warned: Option<Instant> = None;
        loop {
            let room = opening.len() + ready.len() < CONNECTIONS_OPENING_MAX;
            tokio::select! {
                _ = &mut stop => break,
                () = tx.closed() => break,
                () = sleep_until_or_never(paused_until), if paused_until.is_some() => {
                    paused_until = None;
                }
                accepted = listener.accept(), if room && paused_until.is_none() => {
                    match accepted {
                        Ok((tcp, peer)) => {
                            let ip = peer.ip();
                            if let Some(max) = per_peer_max {
                                let from_peer = per_peer.entry(ip).or_insert(0);
                                if *from_peer >= max {
                                    // Closed at once (dropped): one address cannot take
                                    // the whole opening bound from everyone else.
                                    tracing::debug!(%ip, "connection closed: {max} from this address are still opening");
                                    continue;
                                }
                                *from_peer += 1;
                            }
                            let deadline = Instant::now() + opening_max;
                            // Without TCP_NODELAY a response written in more than one
                            // segment waits for the client's delayed ACK (~40 ms on
                            // Linux): unary calls would take 40 ms, not a fraction of one.
                            if let Err(e) = tcp.set_nodelay(true) {
                                tracing::warn!("cannot set TCP_NODELAY on a connection: {e}");
                            }
                            let task = opening.spawn(open(tcp, deadline));
                            if per_peer_max.is_some() {
                                peers.insert(task.id(), ip);
                            }
                        }
                        Err(e) if is_out_of_resources(&e) => {
                            if warned.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_WARN_INTERVAL) {
                                warned = Some(Instant::now());
                                tracing::warn!(
                                    "cannot accept connections: {e}; trying again every {ACCEPT_ERROR_PAUSE_MS} ms (if it says too many open files, raise the file limit, `ulimit -n`; repeats are logged at debug for 10 s)"
                                );
                            } else {
                                tracing::debug!("cannot accept connections: {e}");
                            }
                            paused_until =
                                Some(Instant::now() + Duration::from_millis(ACCEPT_ERROR_PAUSE_MS));
                        }
                        // Anything else is one connection's (gone, or a network error
                        // pending on it: accept(2) reports those too), not the listener's.
                        Err(e) => tracing::debug!("a connection failed before it was accepted: {e}"),
                    }
                }
                Some(opened) = opening.join_next_with_id() => {
                    let (id, connection) = match opened {
                        Ok((id, connection)) => (id, connection),
                        // A panic in an opening (rustls): that connection only.
                        Err(e) => (e.id(), None),
                    };
                    if let Some(ip) = peers.remove(&id) {
                        if let Some(n) = per_peer.get_mut(&ip) {
                            *n -= 1;
                            if *n == 0 {
                                per_peer.remove(&ip);
                            }
                        }
                    }
                    if let Some(connection) = connection {
                        ready.push_back(connection);
                    }
                }
                permit = tx.reserve(), if !ready.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(connection) = ready.pop_front() {
                        permit.send(Ok(connection));
                    }
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Sleep until `at`, or forever if there is none (the branch is disabled then).
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A failure of the listener for want of a resource, which repeats until one is freed
/// (file descriptors, buffers, memory). Every other accept error is one connection's.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_stream::StreamExt;

    /// Whether the server side closed `s` within `wait` (end of stream or a reset).
    async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(wait, s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// A listener on a free loopback port, and its address.
    async fn loopback() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// Openings that never finish (a stalled handshake) until their deadline.
    fn stalled(
        listener: TcpListener,
        stop: oneshot::Receiver<()>,
    ) -> ReceiverStream<Result<(), Infallible>> {
        accepting(
            listener,
            Duration::from_secs(30),
            Some(CONNECTIONS_OPENING_PER_PEER_MAX),
            stop,
            |tcp, deadline| async move {
                tokio::time::sleep_until(deadline).await;
                drop(tcp);
                None::<()>
            },
        )
    }

    /// One address cannot hold more than its share of the connections being opened:
    /// the one over it is closed at once, the others wait for their deadline.
    #[tokio::test]
    async fn an_address_over_its_share_of_openings_is_closed_at_once() {
        let (listener, addr) = loopback().await;
        let (_stop, stop) = oneshot::channel();
        let _incoming = stalled(listener, stop);
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS_OPENING_PER_PEER_MAX {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut over, Duration::from_secs(5)).await,
            "the connection over the share is closed"
        );
        assert!(
            !closed_within(&mut held[0], Duration::from_millis(200)).await,
            "those within it are still opening"
        );
    }

    /// Plain connections are open at once and handed on: a burst from one address
    /// larger than the share of TLS openings is served whole.
    #[tokio::test]
    async fn a_burst_of_plain_connections_from_one_address_is_handed_on_whole() {
        let (listener, addr) = loopback().await;
        let (_stop, stop) = oneshot::channel();
        let mut incoming = plain(listener, Duration::from_secs(30), stop);
        let burst = CONNECTIONS_OPENING_PER_PEER_MAX * 2;
        let mut clients = Vec::new();
        for _ in 0..burst {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        for _ in 0..burst {
            let served = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
            assert!(
                matches!(served, Ok(Some(Ok(_)))),
                "every connection is handed on"
            );
        }
    }

    /// Once the shutdown begins, the listener closes: a new client is refused at once
    /// instead of accepted into a server that no longer serves it.
    #[tokio::test]
    async fn accepting_stops_when_the_shutdown_begins() {
        let (listener, addr) = loopback().await;
        let (stop_accepting, stop) = oneshot::channel();
        let mut incoming = plain(listener, Duration::from_secs(30), stop);
        let _before = TcpStream::connect(addr).await.unwrap();
        assert!(incoming.next().await.is_some(), "served before the stop");
        stop_accepting.send(()).unwrap();
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "new connections are refused after the stop");
        assert!(incoming.next().await.is_none(), "and the stream ends");
    }
}

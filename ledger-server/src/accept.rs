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
//! [`ACCEPT_ERROR_PAUSE_MS`] after such a failure.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::ServerTls;
use crate::linger::Lingering;
use crate::opening::Opened;

/// Most connections being opened at once (accepted, TLS handshake not yet done).
/// Past it, accepting waits for one to finish (at most the opening deadline), and
/// new connections wait in the kernel's listen backlog. Why a bound: each open
/// handshake holds rustls's buffers (tens of KiB); 1,024 of them is a few dozen MiB,
/// far more than legitimate clients connecting in one 10 s window.
pub const CONNECTIONS_OPENING_MAX: usize = 1024;

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

/// Connections of `listener`, plaintext; each must send its opening within
/// `opening_max` of its accept.
pub fn plain(
    listener: TcpListener,
    opening_max: Duration,
) -> ReceiverStream<Result<PlainConnection, Infallible>> {
    accepting(listener, opening_max, |tcp, deadline| async move {
        Some(Opened::until(Lingering::new(tcp), deadline))
    })
}

/// Connections of `listener`, each after its TLS handshake, which must be done within
/// `opening_max` of the accept; the decrypted stream's first bytes must come by the
/// same deadline.
pub fn tls(
    listener: TcpListener,
    opening_max: Duration,
    tls: ServerTls,
) -> ReceiverStream<Result<TlsConnection, Infallible>> {
    accepting(listener, opening_max, move |tcp, deadline| {
        let acceptor = tls.acceptor();
        async move {
            let peer = tcp.peer_addr().ok();
            match tokio::time::timeout_at(deadline, acceptor.accept(Lingering::new(tcp))).await {
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
    })
}

/// Accept `listener`'s connections in a task of their own; `open` each in a task of
/// its own (given the connection's opening deadline), and send on those it opens.
/// Accepting ends when the stream is dropped (tonic's serving has ended).
fn accepting<C, F, Fut>(
    listener: TcpListener,
    opening_max: Duration,
    open: F,
) -> ReceiverStream<Result<C, Infallible>>
where
    C: Send + 'static,
    F: Fn(TcpStream, Instant) -> Fut + Send + 'static,
    Fut: Future<Output = Option<C>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OPENED_QUEUE_MAX);
    tokio::spawn(async move {
        let mut opening = JoinSet::new();
        // When a failed accept was last logged at `warn` (a run of them would log ten
        // a second).
        let mut warned: Option<Instant> = None;
        loop {
            tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept(), if opening.len() < CONNECTIONS_OPENING_MAX => {
                    match accepted {
                        Ok((tcp, _)) => {
                            let deadline = Instant::now() + opening_max;
                            // Without TCP_NODELAY a response written in more than one
                            // segment waits for the client's delayed ACK (~40 ms on
                            // Linux): unary calls would take 40 ms, not a fraction of one.
                            if let Err(e) = tcp.set_nodelay(true) {
                                tracing::warn!("cannot set TCP_NODELAY on a connection: {e}");
                            }
                            opening.spawn(open(tcp, deadline));
                        }
                        Err(e) if is_connection_error(&e) => {
                            tracing::debug!("a connection ended before it was accepted: {e}");
                        }
                        Err(e) => {
                            if warned.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_WARN_INTERVAL) {
                                warned = Some(Instant::now());
                                tracing::warn!(
                                    "cannot accept connections: {e}; trying again every {ACCEPT_ERROR_PAUSE_MS} ms (if it says too many open files, raise the file limit, `ulimit -n`; repeats are logged at debug for 10 s)"
                                );
                            } else {
                                tracing::debug!("cannot accept connections: {e}");
                            }
                            tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                        }
                    }
                }
                Some(opened) = opening.join_next() => {
                    if let Ok(Some(connection)) = opened {
                        if tx.send(Ok(connection)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        // Dropping `opening` aborts the handshakes still going; the listener closes.
    });
    ReceiverStream::new(rx)
}

/// A failure of one connection (gone before it was accepted), not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

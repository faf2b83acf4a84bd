//! A lingering close for the server's connections: when a connection ends, its
//! sending side is shut (FIN) and what the client still sends is read and dropped
//! until the client closes too, or a bound runs out; only then is the socket closed.
//!
//! Why: Linux answers `close()` on a socket with unread bytes in its receive buffer
//! with a reset (RST) instead of a FIN, and a client that receives the reset before
//! it has read the last response loses that response ("connection reset by peer"). An
//! HTTP/2 client keeps sending after the server's last frame (window updates for the
//! response it is receiving, pings, the frames of streams the server's GOAWAY refused),
//! so when the server closes at the end of a graceful shutdown, bytes are often
//! waiting. A command whose response is lost that way was still written: the client
//! sees an unknown outcome and must retry (the retry returns the original result), but
//! a graceful shutdown should deliver what it finished. The same race is why web
//! servers have done a lingering close for decades (Apache's `lingering_close`,
//! nginx's `lingering_close`); hyper and tonic do not.
//!
//! How: h2 ends a connection by flushing and then calling `poll_shutdown` on its
//! transport (`h2::codec::FramedWrite::shutdown`), which is where this wrapper shuts
//! its sending side and drains, without blocking a thread. With TLS, rustls sends its
//! close-notify first and then shuts this transport.
//!
//! Option not taken: `SO_LINGER`. It only changes how long `close()` waits for
//! unsent data (or, at zero, resets on purpose); the reset caused by unread data is
//! sent whatever it says.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Longest a closing connection waits for the client to close its side. The client's
/// FIN follows the server's within a round trip (its HTTP/2 stack closes when it reads
/// the end of the stream); a client that keeps the socket open any longer is not
/// reading responses anyway, and a graceful shutdown waits for this bound at most
/// once (connections drain concurrently).
pub const LINGER_MS_MAX: u64 = 1_000;

/// Most bytes a closing connection reads and drops before it closes regardless: a
/// client still sending a large request after the server's last frame is not owed
/// the wait.
pub const LINGER_BYTES_MAX: usize = 1 << 20;

/// Bytes read per drain step (a stack buffer).
const DRAIN_CHUNK_BYTES: usize = 4096;

/// A server-side TCP connection that closes by lingering (module docs). (Its first
/// bytes must come in time: `opening.rs` wraps it, or the TLS stream over it.)
pub struct Lingering {
    inner: TcpStream,
    closing: Closing,
}

enum Closing {
    /// Not shutting down.
    Open,
    /// Our side is shut; reading and dropping until the client closes, the deadline
    /// or [`LINGER_BYTES_MAX`].
    Draining {
        deadline: Pin<Box<Sleep>>,
        read: usize,
    },
    /// Shut and drained (or given up on): `poll_shutdown` is done.
    Done,
}

impl Lingering {
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            closing: Closing::Open,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    // FIN: the client reads everything sent so far, then end of stream.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.closing = Closing::Draining {
                        deadline: Box::pin(tokio::time::sleep(Duration::from_millis(
                            LINGER_MS_MAX,
                        ))),
                        read: 0,
                    };
                }
                Closing::Draining { deadline, read } => {
                    let mut chunk = [0u8; DRAIN_CHUNK_BYTES];
                    let mut buf = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        // The client closed its side: nothing unread, a clean close.
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                            this.closing = Closing::Done;
                        }
                        Poll::Ready(Ok(())) => {
                            *read += buf.filled().len();
                            if *read > LINGER_BYTES_MAX {
                                this.closing = Closing::Done;
                            }
                        }
                        // Reset or gone: nothing left to protect.
                        Poll::Ready(Err(_)) => this.closing = Closing::Done,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            this.closing = Closing::Done;
                        }
                    }
                }
                Closing::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Connected for Lingering {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Bytes the server sends as its last response.
    const RESPONSE_BYTES: usize = 256 * 1024;

    /// A client that sends bytes the server never reads, waits until the server has
    /// answered and closed, then reads: what it gets.
    async fn client_after_close(addr: std::net::SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&[1; 1000]).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn given_bytes_the_server_never_read_when_it_closes_then_the_client_reads_the_whole_response(
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::spawn(client_after_close(listener.local_addr().unwrap()));
        let (s, _) = listener.accept().await.unwrap();
        let mut s = Lingering::new(s);
        // The client's bytes are in our receive buffer, unread.
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&[7; RESPONSE_BYTES]).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        let got = client
            .await
            .unwrap()
            .expect("no reset: the response arrives whole");
        assert_eq!(got.len(), RESPONSE_BYTES);
        assert!(got.iter().all(|&b| b == 7));
    }

    #[tokio::test]
    async fn given_a_client_that_never_closes_then_the_close_waits_for_the_bound_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Connects, then holds the socket open without reading or closing.
        let client = tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(3 * LINGER_MS_MAX)).await;
            drop(s);
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut s = Lingering::new(s);
        let started = std::time::Instant::now();
        s.shutdown().await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(LINGER_MS_MAX)
                && waited < Duration::from_millis(2 * LINGER_MS_MAX),
            "{waited:?}"
        );
        client.abort();
    }

    #[tokio::test]
    async fn given_a_client_that_keeps_sending_then_the_close_stops_after_the_byte_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let chunk = [9u8; 64 * 1024];
            // Until the server closes for good (a write then fails).
            while s.write_all(&chunk).await.is_ok() {}
        });
        let (s, _) = listener.accept().await.unwrap();
        let mut s = Lingering::new(s);
        let started = std::time::Instant::now();
        s.shutdown().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(LINGER_MS_MAX),
            "stopped on the byte bound, before the deadline"
        );
        drop(s);
        client.await.unwrap();
    }
}

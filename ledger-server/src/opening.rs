//! A deadline on a connection's first bytes: a client that connects and sends nothing
//! (no TLS ClientHello, no HTTP/2 preface) is dropped after
//! [`CONNECTION_OPENING_MS_MAX`] instead of holding a socket for good.
//!
//! Why: neither hyper nor tonic bounds the wait for a connection's first bytes. A
//! security probe opened 1,100 silent sockets: they were still open minutes later, the
//! process ran out of file descriptors, and legitimate calls failed
//! (`DEADLINE_EXCEEDED`, "Handshake read failed") with nothing logged. A gRPC client
//! sends its preface (or ClientHello) as soon as it connects, so the bound costs real
//! clients nothing.
//!
//! How: until [`OPENING_BYTES_MIN`] bytes have been read, a read that would wait also
//! waits on the deadline, and fails with `TimedOut` when it passes; hyper then closes
//! the connection. After that reads pass straight through. The deadline is counted
//! from the accept (`accept.rs`), so with TLS it bounds the handshake and the first
//! decrypted bytes together: `accept.rs` runs the handshake under the same deadline,
//! and [`Opened`] wraps the decrypted stream, so a client that stalls in the middle
//! of a ClientHello, or completes the handshake and never sends the HTTP/2 preface, is
//! cut like a silent one.
//! Not covered: a client that sends its opening and then idles; HTTP/2 keepalive
//! (`lib.rs`) reclaims the dead ones, and the process's file limit bounds the rest.
//!
//! Option not taken: a timeout around tonic's whole accept-and-serve of a connection,
//! which tonic does not expose; and the deadline inside the server's TCP connection
//! type (`linger::Lingering`), as it was at first: with TLS it counted encrypted
//! bytes, which a ClientHello alone satisfies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// Longest a new connection may take, from its accept, to send its first
/// [`OPENING_BYTES_MIN`] bytes (with TLS: to finish the handshake and send its first
/// [`OPENING_BYTES_MIN`] decrypted bytes). Generous for a client on a slow link (a
/// ClientHello, the handshake's last flight and the HTTP/2 preface are a packet or
/// two each), short enough that silent sockets do not pile up.
pub const CONNECTION_OPENING_MS_MAX: u64 = 10_000;

/// Bytes that open a connection: the HTTP/2 client preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) is 24; a TLS ClientHello is longer.
pub const OPENING_BYTES_MIN: usize = 24;

/// A server connection (plain TCP, or the decrypted side of TLS) whose first
/// [`OPENING_BYTES_MIN`] bytes must come by a deadline (module docs). Writes, and
/// reads once the opening is in, pass straight through.
pub struct Opened<IO> {
    inner: IO,
    /// Until the opening bytes are in: the deadline and the bytes read so far.
    opening: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<IO> Opened<IO> {
    /// `inner`, whose opening must be in by `deadline` (counted from its accept).
    pub fn until(inner: IO, deadline: Instant) -> Self {
        Self {
            inner,
            opening: Some((Box::pin(tokio::time::sleep_until(deadline)), 0)),
        }
    }
}

/// While the opening is not in, a read that would wait past the deadline fails with
/// `TimedOut` instead.
impl<IO: AsyncRead + Unpin> AsyncRead for Opened<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some((deadline, read)) = &mut this.opening else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                *read += buf.filled().len() - before;
                if *read >= OPENING_BYTES_MIN {
                    this.opening = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client sent {read} bytes by the connection's opening deadline, fewer than an opening ({OPENING_BYTES_MIN})"
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Opened<IO> {
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
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The inner connection's: tonic's TLS stream gives the client's certificates
/// (`auth/layer.rs` reads them), the TCP stream the addresses.
impl<IO: Connected> Connected for Opened<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// The server side of a pipe whose opening must be in within `wait`.
    fn opened_within(server: DuplexStream, wait: Duration) -> Opened<DuplexStream> {
        Opened::until(server, Instant::now() + wait)
    }

    /// One read: the bytes read.
    async fn read(from: &mut Opened<DuplexStream>) -> io::Result<usize> {
        from.read(&mut [0u8; 64]).await
    }

    /// A silent peer is cut at the deadline; one that sent its opening is not, however
    /// long it then waits.
    #[tokio::test]
    async fn a_silent_connection_is_cut_and_an_opened_one_is_not() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut silent = opened_within(server, Duration::from_millis(100));
        let e = read(&mut silent).await.expect_err("cut at the deadline");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("sent 0 bytes"), "{e}");

        let (mut client, server) = tokio::io::duplex(1024);
        let mut opened = opened_within(server, Duration::from_millis(100));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0;
        while got < OPENING_BYTES_MIN {
            got += read(&mut opened).await.unwrap();
        }
        // Long after the deadline, a read still waits for data rather than failing.
        let later = tokio::time::timeout(Duration::from_millis(300), read(&mut opened)).await;
        assert!(later.is_err(), "an opened connection is not cut: {later:?}");
        client.write_all(b"x").await.unwrap();
        assert_eq!(read(&mut opened).await.unwrap(), 1);
        // A few bytes are not an opening: the deadline still holds.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut trickle = opened_within(server, Duration::from_millis(100));
        client.write_all(b"PRI").await.unwrap();
        assert_eq!(read(&mut trickle).await.unwrap(), 3);
        let e = read(&mut trickle).await.expect_err("still cut");
        assert!(e.to_string().contains("sent 3 bytes"), "{e}");
    }
}

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
//! waits on the deadline, and fails with `TimedOut` when it passes; hyper (or rustls)
//! then closes the connection. After that reads pass straight through.
//! Not covered: a client that sends its opening and then idles; HTTP/2 keepalive
//! (`lib.rs`) reclaims the dead ones, and the process's file limit bounds the rest.
//! With TLS, the bytes counted are the encrypted ones: a client that sends the start
//! of a ClientHello and stalls, or completes the handshake and never sends the HTTP/2
//! preface, is not cut (tonic runs the TLS handshake without a timeout, and hyper's
//! keepalive starts after the HTTP/2 handshake). Closing that would mean accepting
//! TLS here (rustls with a timeout around the handshake, then this deadline on the
//! decrypted stream) instead of through tonic's `tls_config`; not done yet.
//!
//! Option not taken: a timeout around tonic's whole accept-and-serve of a connection,
//! which tonic does not expose.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

/// Longest a new connection may take to send its first [`OPENING_BYTES_MIN`] bytes.
/// Generous for a client on a slow link (a TLS ClientHello or the HTTP/2 preface is
/// one packet), short enough that silent sockets do not pile up.
pub const CONNECTION_OPENING_MS_MAX: u64 = 10_000;

/// Bytes that open a connection: the HTTP/2 client preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) is 24; a TLS ClientHello is longer.
pub const OPENING_BYTES_MIN: usize = 24;

/// The deadline on a connection's opening (module docs), kept by the server's
/// connection type (`linger::Lingering`), which reads through it. Option not taken: a
/// connection wrapper of its own, which repeated every write method of
/// `Lingering`'s to pass them through.
pub struct OpeningDeadline {
    /// Until the opening bytes are in: the deadline and the bytes read so far.
    opening: Option<(Pin<Box<Sleep>>, usize)>,
}

impl OpeningDeadline {
    pub fn new() -> Self {
        Self::after(Duration::from_millis(CONNECTION_OPENING_MS_MAX))
    }

    fn after(deadline: Duration) -> Self {
        Self {
            opening: Some((Box::pin(tokio::time::sleep(deadline)), 0)),
        }
    }

    /// Read from `inner` into `buf`; while the opening is not in, a read that would
    /// wait past the deadline fails with `TimedOut` instead.
    pub fn poll_read<R: AsyncRead + ?Sized>(
        &mut self,
        inner: Pin<&mut R>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = inner.poll_read(cx, buf);
        let Some((deadline, read)) = &mut self.opening else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                *read += buf.filled().len() - before;
                if *read >= OPENING_BYTES_MIN {
                    self.opening = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client sent {read} bytes in {CONNECTION_OPENING_MS_MAX} ms, fewer than a connection's opening ({OPENING_BYTES_MIN})"
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, DuplexStream};

    /// One read of `from` through `deadline`: the bytes read.
    async fn read(deadline: &mut OpeningDeadline, from: &mut DuplexStream) -> io::Result<usize> {
        let mut bytes = [0u8; 64];
        std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut bytes);
            deadline
                .poll_read(Pin::new(&mut *from), cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
        .await
    }

    /// A silent peer is cut at the deadline; one that sent its opening is not, however
    /// long it then waits.
    #[tokio::test]
    async fn a_silent_connection_is_cut_and_an_opened_one_is_not() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let mut silent = OpeningDeadline::after(Duration::from_millis(100));
        let e = read(&mut silent, &mut server)
            .await
            .expect_err("cut at the deadline");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("sent 0 bytes"), "{e}");

        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut opened = OpeningDeadline::after(Duration::from_millis(100));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0;
        while got < OPENING_BYTES_MIN {
            got += read(&mut opened, &mut server).await.unwrap();
        }
        // Long after the deadline, a read still waits for data rather than failing.
        let later =
            tokio::time::timeout(Duration::from_millis(300), read(&mut opened, &mut server)).await;
        assert!(later.is_err(), "an opened connection is not cut: {later:?}");
        client.write_all(b"x").await.unwrap();
        assert_eq!(read(&mut opened, &mut server).await.unwrap(), 1);
        // A few bytes are not an opening: the deadline still holds.
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut trickle = OpeningDeadline::after(Duration::from_millis(100));
        client.write_all(b"PRI").await.unwrap();
        assert_eq!(read(&mut trickle, &mut server).await.unwrap(), 3);
        let e = read(&mut trickle, &mut server)
            .await
            .expect_err("still cut");
        assert!(e.to_string().contains("sent 3 bytes"), "{e}");
    }
}

//! A connection's socket, plain TCP or TLS, and its two halves. The plain-TCP read
//! half is tokio's own; the write side is not wrapped at all: the connection's writer
//! keeps the plain `OwnedWriteHalf` (and its non-blocking fast path) and takes a
//! [`TlsWriteHalf`] only for TLS connections.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A server-side TLS stream over TCP.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;
/// The write half of a TLS connection.
pub type TlsWriteHalf = tokio::io::WriteHalf<TlsStream>;

/// An accepted socket after the TLS handshake, if it had one.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

/// The write half: plain TCP or TLS.
pub enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Tls(TlsWriteHalf),
}

impl Stream {
    /// Splits the socket; TLS halves share the session behind tokio's split lock.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

/// The read half a connection's frame reader reads from.
pub enum ReadHalf {
    Tcp(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream>),
}

impl ReadHalf {
    /// Makes the coming close of the socket a reset (RST) rather than a normal
    /// close. Plain TCP only: a TLS half has no socket to reach.
    pub fn reset_on_close(&self) {
        if let ReadHalf::Tcp(r) = self {
            let stream: &TcpStream = r.as_ref();
            let _ = stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

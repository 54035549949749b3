//! The first steps of an accepted socket: the TLS handshake on an amqps listener,
//! then the AMQP protocol header. Both must be done within the handshake timeout, so
//! a peer that connects and says nothing (or speaks plain AMQP to the TLS port) only
//! costs its own socket, for a bounded time.

use super::ServerContext;
use crate::broker::registry::TlsInfo;
use crate::protocol::codec::PROTOCOL_HEADER;
use crate::tls::stream::Stream;
use crate::tls::{PeerCert, TlsAcceptor};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// The socket once it sent the AMQP 0-9-1 header, with the client certificate's
/// name and the session's description on a TLS connection; `None` when it is closed instead.
pub(super) async fn open(
    socket: TcpStream,
    peer: SocketAddr,
    ctx: &ServerContext,
    tls: Option<TlsAcceptor>,
) -> Option<(Stream, Option<PeerCert>, Option<TlsInfo>)> {
    let deadline = Instant::now() + Duration::from_secs(ctx.config.handshake_timeout_secs);
    let (mut socket, peer_cert, info) = match tls {
        None => (Stream::Tcp(socket), None, None),
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(socket)).await {
            Ok(Ok(stream)) => {
                let cert = PeerCert::of(&stream, ctx.config.tls.cert_login_from);
                let info = crate::tls::describe(&stream);
                (Stream::Tls(Box::new(stream)), Some(cert), Some(info))
            }
            Ok(Err(error)) => {
                tracing::info!(%peer, %error, "TLS handshake failed, closing");
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, "TLS handshake timed out, closing");
                return None;
            }
        },
    };
    let mut header = [0u8; 8];
    match timeout_at(deadline, socket.read_exact(&mut header)).await {
        Ok(Ok(_)) if &header == PROTOCOL_HEADER => Some((socket, peer_cert, info)),
        Ok(Ok(_)) => {
            tracing::info!(%peer, header = ?header, "unsupported protocol header, closing");
            let _ = socket.write_all(PROTOCOL_HEADER).await;
            let _ = socket.shutdown().await;
            None
        }
        _ => {
            tracing::debug!(%peer, "no protocol header, closing");
            None
        }
    }
}

//! Binding sockets and serving connections (plain and TLS) with hyper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyrelay_net::stream::tune;
use hyrelay_net::Stream;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::core::Relay;
use crate::front::{handle, ConnInfo};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A bound listening socket, with TLS or without.
pub struct Endpoint {
    /// The socket.
    pub listener: TcpListener,
    /// TLS acceptor for https/wss.
    pub tls: Option<TlsAcceptor>,
    /// The management address: also serves `/metrics`, `/status.json` and the status page.
    pub management: bool,
}

impl Endpoint {
    /// Binds `addr`, with a clear error naming the address.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        Ok(Endpoint {
            listener,
            tls: tls.map(TlsAcceptor::from),
            management: false,
        })
    }

    /// Binds the management address (metrics, status page, management API).
    pub async fn bind_management(addr: SocketAddr) -> std::io::Result<Endpoint> {
        let mut ep = Self::bind(addr, None).await?;
        ep.management = true;
        Ok(ep)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves connections from `ep` forever.
pub async fn serve(relay: Arc<Relay>, ep: Endpoint) {
    loop {
        let (tcp, remote) = match ep.listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tune(&tcp);
        let relay = relay.clone();
        let tls = ep.tls.clone();
        let management = ep.management;
        // One span per TCP connection: every line logged for it (and for the control
        // channel or relayed connection it becomes) names the peer and gateway.
        let span = tracing::info_span!("conn", gw = %relay.store.gateway_id(), peer = %remote);
        tokio::spawn(
            async move {
                let stream = match tls {
                    None => Stream::Plain(tcp),
                    Some(acc) => {
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await {
                            Ok(Ok(s)) => Stream::ServerTls(Box::new(s)),
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                let info = ConnInfo {
                    remote,
                    tls: stream.is_tls(),
                    management,
                };
                let svc = service_fn(move |req| handle(relay.clone(), info, req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%remote, "connection ended with error: {e}");
                }
            }
            .instrument(span),
        );
    }
}

/// Re-reads the state file once a second so that offline CLI changes apply without restart.
pub async fn watch_state(relay: Arc<Relay>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match relay.reload_if_changed() {
            Ok(true) => tracing::info!("entities reloaded from the data directory"),
            Ok(false) => {}
            Err(e) => tracing::warn!("state file not applied: {e}"),
        }
    }
}

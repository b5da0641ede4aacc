//! NetTcpRelay on the WCF Relay's port 9352 (and the NAT probe on 9352/9353).
//!
//! A client dials 9352 and writes `connect` + its target URI + a flag byte (`01`: TLS
//! follows, `00`: clear), then one length-prefixed msbin1 envelope, `RelayedConnect` with a
//! `RelayAccessToken`. The relay picks a `RelayedConnection` listener of the path, sends it a
//! `RelayedConnect` notification (wrapped in `OnewaySend`) on its AMQP link, and waits. The
//! listener dials 9352 the same way and sends `RelayedAccept{Id}`; the relay answers it
//! `RelayedAcceptReply`, answers the client `RelayedConnectReply`, and from then on copies
//! bytes both ways without looking at them (the NMF session is end to end; the client's idle
//! `Ping` messages reach the listener, which drops them, as with Azure).
//!
//! Fidelity (deviation register in `WCF-RELAY.md`): the preamble, the flag byte, the length
//! prefix, `RelayedConnect`/`RelayedAccept` and the notification's fields are **observed**
//! (F2, Microsoft's client and a clean-room listener of real Azure traffic); the reply to
//! the client, the fault codes and their shape are **inferred** (F3).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyrelay_net::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::core::{new_guid, Relay};
use crate::wcf_amqp::WcfRegistry;
use crate::wcf_oneway::{texts, token_from_header, wrap_oneway};
pub use hyrelay_wcf::relay::{
    action_word, from_msbin1, ipv4_as_long, relay_fault_xml, relayed_connect_xml, reply_envelope,
    split_uri, to_msbin1, Advertise, Preamble, PreambleReader, MAX_CONTROL, RELAYEDCONNECT_NS,
};

/// Longest `connect`/`probe` type string and target URI accepted in the preamble.
/// The whole handshake (preamble, TLS, first envelope) must arrive within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client waiting for its listener's `RelayedAccept`.
pub struct PendingRelayed {
    pub(crate) tx: oneshot::Sender<Conn>,
    pub(crate) expires: Instant,
}

/// One leg of a NetTcpRelay connection: TCP/TLS on 9352, or a `wsrelayedconnection`
/// WebSocket seen as bytes.
pub enum Conn {
    /// Port 9352 (clear or TLS after the flag byte).
    Stream(Stream),
    /// `wss://…/$servicebus/websocket`, sub-protocol `wsrelayedconnection`.
    Ws(tokio::io::DuplexStream),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Stream(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Ws(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Stream(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Ws(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Stream(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Ws(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Stream(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Ws(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Conn {
    /// Resets a TCP leg (a WebSocket leg is just dropped).
    fn abort(self) {
        if let Conn::Stream(s) = &self {
            hyrelay_net::stream::abort_fd(s.raw_fd());
        }
    }
}

/// Joins two legs: the zero-copy-ish byte splice when both are sockets, a generic copy when
/// one is a WebSocket. Returns the bytes moved each way.
pub async fn splice_conns(a: Conn, b: Conn) -> (u64, u64) {
    match (a, b) {
        (Conn::Stream(a), Conn::Stream(b)) => {
            let r = hyrelay_net::splice_bytes(a, Bytes::new(), b, Bytes::new()).await;
            (r.a_to_b, r.b_to_a)
        }
        (mut a, mut b) => tokio::io::copy_bidirectional(&mut a, &mut b)
            .await
            .unwrap_or((0, 0)),
    }
}

/// Joins a Hybrid Connections WebSocket leg with a NetTcpRelay leg.
pub async fn splice_ws_conn(ws: hyrelay_net::Leg, c: Conn) -> (u64, u64) {
    match c {
        Conn::Stream(s) => {
            let r = hyrelay_net::splice_ws_bytes(ws, s, Bytes::new()).await;
            (r.a_to_b, r.b_to_a)
        }
        Conn::Ws(mut d) => {
            let mut w = hyrelay_net::ws_as_bytes(ws);
            tokio::io::copy_bidirectional(&mut w, &mut d)
                .await
                .unwrap_or((0, 0))
        }
    }
}

async fn read_lp<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut l = [0u8; 4];
    r.read_exact(&mut l)
        .await
        .map_err(|e| format!("{what}: connection ended before the length ({e})"))?;
    let n = i32::from_le_bytes(l);
    if n < 0 || n as usize > max {
        return Err(format!("{what}: length {n} is outside 0..={max}"));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)
        .await
        .map_err(|e| format!("{what}: connection ended inside the {n} bytes announced ({e})"))?;
    Ok(v)
}

async fn write_envelope<W: AsyncWrite + Unpin>(w: &mut W, xml: &str) -> std::io::Result<()> {
    let body = to_msbin1(xml).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_le_bytes());
    out.extend_from_slice(&body);
    w.write_all(&out).await?;
    w.flush().await
}

/// Serves `connect` and `probe` on the NetTcpRelay socket (9352) forever.
pub async fn serve(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    adv: Advertise,
) {
    let _ = registry.advertise.set(adv);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("nettcp accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        hyrelay_net::stream::tune(&tcp);
        let (relay, registry, tls) = (relay.clone(), registry.clone(), tls.clone());
        tokio::spawn(
            async move {
                if let Err(e) = run(relay, registry, tcp, tls).await {
                    tracing::info!("{e}");
                }
            }
            .instrument(tracing::info_span!("nettcp", peer = %remote)),
        );
    }
}

/// Reads a preamble with the sans-IO [`PreambleReader`], never a byte past it (TLS may
/// follow the flag byte).
async fn read_preamble(tcp: &mut TcpStream) -> Result<Preamble, String> {
    let mut r = PreambleReader::default();
    let mut buf = [0u8; 64];
    loop {
        let want = r.want();
        let mut field = vec![0u8; want];
        let b: &mut [u8] = if want <= buf.len() {
            &mut buf[..want]
        } else {
            &mut field
        };
        tcp.read_exact(b)
            .await
            .map_err(|e| format!("connection ended inside the preamble ({e})"))?;
        if let Some(p) = r.feed(b).map_err(|e| format!("{e}; closed"))? {
            return Ok(p);
        }
    }
}

/// Serves `probe` only (port 9353) forever.
pub async fn serve_probe(listener: TcpListener) {
    loop {
        let (mut tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("probe accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                match read_preamble(&mut tcp).await? {
                    Preamble::Probe(kind) => probe(&mut tcp, kind).await,
                    Preamble::Connect { .. } => {
                        Err("port 9353 serves only 'probe', got 'connect'".to_string())
                    }
                }
            })
            .await;
            match r {
                Ok(Err(e)) => tracing::info!(peer = %remote, "{e}"),
                Err(_) => {
                    tracing::info!(peer = %remote, "probe: nothing within {HANDSHAKE_TIMEOUT:?}")
                }
                Ok(Ok(())) => {}
            }
        });
    }
}

/// Answers one probe: message type 1 (GetServerAddress) → the relay's own address, 2
/// (GetClientAddress) → the address the relay saw; 12 bytes, int64 LE IPv4 + int32 LE port.
async fn probe(tcp: &mut TcpStream, kind: i32) -> Result<(), String> {
    let addr = match kind {
        1 => tcp.local_addr(),
        2 => tcp.peer_addr(),
        other => {
            return Err(format!(
                "probe: unknown message type {other} (1 = server address, 2 = client address)"
            ))
        }
    }
    .map_err(|e| e.to_string())?;
    let ip = match addr.ip() {
        IpAddr::V4(v4) => ipv4_as_long(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(ipv4_as_long).unwrap_or(0),
    };
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&ip.to_le_bytes());
    out[8..].copy_from_slice(&(addr.port() as i32).to_le_bytes());
    tcp.write_all(&out).await.map_err(|e| e.to_string())?;
    let _ = tcp.shutdown().await;
    Ok(())
}

async fn run(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    mut tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), String> {
    let remote = tcp
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let handshake = async {
        let (via, tls_on) = match read_preamble(&mut tcp).await? {
            Preamble::Probe(kind) => {
                probe(&mut tcp, kind).await?;
                return Ok(None);
            }
            Preamble::Connect { via, tls } => (via, tls),
        };
        let mut stream = match (tls_on, &tls) {
            (false, _) => Stream::Plain(tcp),
            (true, Some(acc)) => Stream::ServerTls(Box::new(
                acc.accept(tcp)
                    .await
                    .map_err(|e| format!("TLS handshake after the flag byte failed: {e}"))?,
            )),
            (true, None) => return Err(
                "the client asked for TLS (flag byte 01) but this relay has no certificate; closed"
                    .into(),
            ),
        };
        let env = read_lp(&mut stream, MAX_CONTROL, "rendezvous message").await;
        let env = match env {
            Ok(e) => e,
            Err(e) => {
                if e.contains("outside") {
                    let _ = write_envelope(
                        &mut stream,
                        &relay_fault_xml(None, "QuotaExceededFault", &e),
                    )
                    .await;
                }
                return Err(e);
            }
        };
        Ok(Some((via, stream, env)))
    };
    let (via, stream, env) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => {
            return Err(format!(
                "no complete NetTcpRelay handshake within {HANDSHAKE_TIMEOUT:?}; closed"
            ))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(x))) => x,
    };
    dispatch(
        relay,
        registry,
        Conn::Stream(stream),
        Some(via),
        env,
        remote,
    )
    .await
}

/// Serves one `wsrelayedconnection` WebSocket (from `/$servicebus/websocket`): the same
/// exchange as on 9352 after the preamble (no `connect`, target URI or flag byte), the
/// length prefix and the envelope possibly in separate frames.
pub async fn run_websocket(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    leg: hyrelay_net::Leg,
    remote: SocketAddr,
) {
    let mut conn = Conn::Ws(hyrelay_net::ws_as_bytes(leg));
    let env = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_lp(&mut conn, MAX_CONTROL, "rendezvous message"),
    )
    .await
    {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            tracing::info!(peer = %remote, "wsrelayedconnection: {e}");
            return;
        }
        Err(_) => return,
    };
    if let Err(e) = dispatch(relay, registry, conn, None, env, remote).await {
        tracing::info!(peer = %remote, "{e}");
    }
}

/// The first envelope decides the role: `RelayedConnect` (client) or `RelayedAccept`
/// (listener).
async fn dispatch(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    mut stream: Conn,
    via: Option<String>,
    env: Vec<u8>,
    remote: SocketAddr,
) -> Result<(), String> {
    let xml = match from_msbin1(&env) {
        Ok(x) => x,
        Err(e) => {
            let _ = write_envelope(
                &mut stream,
                &relay_fault_xml(
                    None,
                    "InvalidRequestFault",
                    &format!("the message is not valid binary XML: {e}"),
                ),
            )
            .await;
            return Err(format!(
                "rendezvous message is not binary XML ({e}); answered InvalidRequestFault"
            ));
        }
    };
    let [action, message_id] =
        <[Option<String>; 2]>::try_from(texts(&xml, &["Action", "MessageID"])).unwrap_or_default();
    let action = action.unwrap_or_default();
    match action_word(&action) {
        "RelayedConnect" => {
            client(
                relay,
                registry,
                stream,
                via.unwrap_or_default(),
                xml,
                message_id,
                remote,
            )
            .await
        }
        "RelayedAccept" => accept(registry, stream, xml, message_id).await,
        _ => {
            let reason = format!(
                "the first message on a NetTcpRelay connection must be RelayedConnect or RelayedAccept, not '{action}'"
            );
            let _ = write_envelope(
                &mut stream,
                &relay_fault_xml(message_id.as_deref(), "InvalidRequestFault", &reason),
            )
            .await;
            Err(reason)
        }
    }
}

async fn refuse(
    stream: &mut Conn,
    id: Option<&str>,
    code: &str,
    reason: String,
) -> Result<(), String> {
    let _ = write_envelope(stream, &relay_fault_xml(id, code, &reason)).await;
    let _ = stream.shutdown().await;
    Err(format!("NetTcpRelay connect refused ({code}): {reason}"))
}

#[allow(clippy::too_many_arguments)]
async fn client(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    mut stream: Conn,
    via: String,
    xml: String,
    msg_id: Option<String>,
    remote: SocketAddr,
) -> Result<(), String> {
    let mid = msg_id.as_deref();
    let target = texts(&xml, &["Uri"])
        .pop()
        .flatten()
        .filter(|u| !u.is_empty())
        .unwrap_or(via);
    let Some((host, path)) = split_uri(&target) else {
        return refuse(
            &mut stream,
            mid,
            "InvalidRequestFault",
            format!("'{target}' is not an sb:// URI"),
        )
        .await;
    };
    let Some(ns) = relay.namespace_for(&host) else {
        return refuse(
            &mut stream,
            mid,
            "EndpointNotFoundFault",
            format!("no namespace is served at '{host}'"),
        )
        .await;
    };
    if path.is_empty() {
        return refuse(
            &mut stream,
            mid,
            "InvalidRequestFault",
            format!("'{target}' names no relay path"),
        )
        .await;
    }
    let token = token_from_header(&xml);
    if let Err(e) = crate::wcf_amqp::authorize_sender(&relay, &ns, &path, token.as_deref()) {
        relay.auth_failed(&e.to_string());
        return refuse(&mut stream, mid, "AuthorizationFailedFault", e.to_string()).await;
    }
    let key = format!(
        "{}/{}",
        ns.name.to_ascii_lowercase(),
        path.to_ascii_lowercase()
    );
    let c = &relay.counters;
    if !registry.has_listener_type(&key, "RelayedConnection") && registry.extensions_on() {
        if let Some((hc, _)) = ns.find_hc(&path) {
            // No NetTcpRelay listener, but a hybrid connection of that name: its listener
            // gets an ordinary accept (the migration path between the faces, an extension).
            let hc = hc.name.clone();
            let mut headers = serde_json::Map::new();
            headers.insert("X-Relay-Via".into(), target.clone().into());
            headers.insert("X-Relay-Origin".into(), "wcf-nettcp".into());
            // What a WebSocket sender's handshake would carry: listeners (hyco-ws) check
            // for the key before accepting.
            let key: [u8; 16] = rand::random();
            headers.insert(
                "Sec-WebSocket-Key".into(),
                base64::engine::general_purpose::STANDARD.encode(key).into(),
            );
            headers.insert("Sec-WebSocket-Version".into(), "13".into());
            headers.insert("Host".into(), host.clone().into());
            let leg = match crate::front::relay_internal_connect(&relay, &ns, &hc, headers, remote)
                .await
            {
                Ok(l) => l,
                Err((code, reason)) => return refuse(&mut stream, mid, code, reason).await,
            };
            write_envelope(&mut stream, &connect_reply(mid))
                .await
                .map_err(|e| format!("client left before RelayedConnectReply: {e}"))?;
            tracing::info!(path = %path, client = %remote, "NetTcpRelay client joined a Hybrid Connections listener");
            c.connects.fetch_add(1, Ordering::Relaxed);
            let (up, down) = splice_ws_conn(leg, stream).await;
            c.bytes.fetch_add(up + down, Ordering::Relaxed);
            tracing::debug!(
                sent = down,
                received = up,
                "NetTcpRelay client ⇄ Hybrid Connections listener ended"
            );
            return Ok(());
        }
    }
    let listener =
        match offer_relayed(&relay, &registry, &key, &target, &host, "RelayedConnection").await {
            Ok(l) => l,
            Err((code, reason)) => return refuse(&mut stream, mid, code, reason).await,
        };
    write_envelope(&mut stream, &connect_reply(mid))
        .await
        .map_err(|e| format!("client left before RelayedConnectReply: {e}"))?;
    tracing::info!(path = %path, client = %remote, "NetTcpRelay connection established");
    c.connects.fetch_add(1, Ordering::Relaxed);
    c.active_connections.fetch_add(1, Ordering::Relaxed);
    let (sent, received) = splice_conns(stream, listener).await;
    c.active_connections.fetch_sub(1, Ordering::Relaxed);
    c.bytes.fetch_add(sent + received, Ordering::Relaxed);
    tracing::debug!(sent, received, "NetTcpRelay connection ended");
    Ok(())
}

fn connect_reply(relates_to: Option<&str>) -> String {
    reply_envelope(
        "RelayedConnectReply",
        relates_to,
        &format!(r#"<RelayedConnectReply xmlns="{RELAYEDCONNECT_NS}"/>"#),
    )
}

/// Sends a `RelayedConnect` notification for `target` to one `RelayedConnection` listener of
/// `key` and waits (the accept time-out) for it to dial back with `RelayedAccept`; returns
/// its stream, already answered `RelayedAcceptReply`. Errors carry a fault name and reason.
pub async fn offer_relayed(
    relay: &Relay,
    registry: &WcfRegistry,
    key: &str,
    target: &str,
    host: &str,
    listener_type: &str,
) -> Result<Conn, (&'static str, String)> {
    let path = key.split_once('/').map(|(_, p)| p).unwrap_or(key);
    let Some(adv) = registry.advertise.get() else {
        return Err((
            "EndpointNotFoundFault",
            "this relay does not serve NetTcpRelay (no [wcf_relay] nettcp)".into(),
        ));
    };
    let timeout = relay.opts.limits.accept_timeout;
    let id = new_guid();
    let (tx, rx) = oneshot::channel();
    registry.add_rendezvous(
        &id,
        PendingRelayed {
            tx,
            expires: Instant::now() + timeout,
        },
    );
    let wrapped = to_msbin1(&relayed_connect_xml(target, &id, adv, host))
        .and_then(|inner| wrap_oneway(target, &inner))
        .map_err(|e| ("InvalidRequestFault", e))?;
    if !registry.deliver_typed(key, listener_type, wrapped) {
        registry.take_rendezvous(&id);
        relay.counters.refused.fetch_add(1, Ordering::Relaxed);
        return Err((
            "EndpointNotFoundFault",
            format!("no NetTcpRelay listener is connected for '{path}'"),
        ));
    }
    tracing::debug!(path = %path, id = %id, "RelayedConnect sent to a listener");
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(_)) | Err(_) => {
            registry.take_rendezvous(&id);
            Err((
                "ConnectionFailedFault",
                format!(
                    "the listener of '{path}' did not accept the connection within {} s",
                    timeout.as_secs()
                ),
            ))
        }
    }
}

async fn accept(
    registry: Arc<WcfRegistry>,
    mut stream: Conn,
    xml: String,
    msg_id: Option<String>,
) -> Result<(), String> {
    let mid = msg_id.as_deref();
    let id = texts(&xml, &["Id"]).pop().flatten().unwrap_or_default();
    let Some(p) = registry.take_rendezvous(&id) else {
        return refuse(
            &mut stream,
            mid,
            "EndpointNotFoundFault",
            format!("rendezvous '{id}' is unknown, expired or already used"),
        )
        .await;
    };
    write_envelope(
        &mut stream,
        &reply_envelope(
            "RelayedAcceptReply",
            mid,
            r#"<anyType xmlns="http://schemas.microsoft.com/2003/10/Serialization/"/>"#,
        ),
    )
    .await
    .map_err(|e| format!("listener left before RelayedAcceptReply: {e}"))?;
    if let Err(s) = p.tx.send(stream) {
        s.abort();
        return Err(format!(
            "rendezvous '{id}': the client left before its listener accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The F2 messages of the rendezvous as golden bytes in `fixtures/nbfx/wcf-relay/`
    /// (`NAME.bin` + the decoder's `NAME.xml`); tests/oracle/xcheck.py decodes every one with
    /// Mono's XmlDictionaryReader and PyPI `wcf`. The relay's own messages must equal the
    /// committed bytes (HYRELAY_BLESS=1 rewrites them); the peers' messages, hand-written
    /// from the notes, must decode into what the relay expects.
    #[test]
    fn golden_rendezvous_messages() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nbfx/wcf-relay");
        let bless = std::env::var_os("HYRELAY_BLESS").is_some();
        let adv = Advertise {
            ip: Ipv4Addr::new(20, 25, 211, 163),
            port: 9352,
            http_port: 80,
            https_port: 443,
        };
        let id = "5f1c2d7e-8a4b-4c3d-9e2f-0a1b2c3d4e5f";
        let to = "sb://contoso.servicebus.windows.net/creditcheck/";
        let inner = to_msbin1(&relayed_connect_xml(
            to,
            id,
            &adv,
            "contoso.servicebus.windows.net",
        ))
        .unwrap();
        let relay_side: Vec<(&str, Vec<u8>)> = vec![
            ("relay-to-listener-relayedconnect-inner", inner.clone()),
            (
                "relay-to-listener-onewaysend-outer",
                crate::wcf_oneway::wrap_oneway_with_id(
                    to,
                    &inner,
                    "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a",
                )
                .unwrap(),
            ),
            (
                "relay-to-client-relayedconnectreply",
                to_msbin1(&reply_envelope(
                    "RelayedConnectReply",
                    Some("urn:uuid:3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"),
                    &format!(r#"<RelayedConnectReply xmlns="{RELAYEDCONNECT_NS}"/>"#),
                ))
                .unwrap(),
            ),
            (
                "relay-to-listener-relayedacceptreply",
                to_msbin1(&reply_envelope(
                    "RelayedAcceptReply",
                    None,
                    r#"<anyType xmlns="http://schemas.microsoft.com/2003/10/Serialization/"/>"#,
                ))
                .unwrap(),
            ),
            (
                "relay-fault-endpointnotfound",
                to_msbin1(&relay_fault_xml(
                    Some("urn:uuid:3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"),
                    "EndpointNotFoundFault",
                    "no NetTcpRelay listener is connected for 'creditcheck'",
                ))
                .unwrap(),
            ),
        ];
        for (name, bytes) in &relay_side {
            let bin = dir.join(format!("{name}.bin"));
            let xml = from_msbin1(bytes).unwrap();
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&bin, bytes).unwrap();
                std::fs::write(dir.join(format!("{name}.xml")), &xml).unwrap();
            }
            assert_eq!(
                &std::fs::read(&bin).unwrap(),
                bytes,
                "{name}: the relay no longer writes the committed bytes"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join(format!("{name}.xml"))).unwrap(),
                xml
            );
        }
        // The notification's fields, as a listener reads them.
        let x = from_msbin1(&inner).unwrap();
        assert_eq!(
            texts(&x, &["Id", "IpAddress", "IpPort", "HttpsPort"]),
            vec![
                Some(id.into()),
                Some("2748520724".into()),
                Some("9352".into()),
                Some("443".into())
            ]
        );
        // The peers' messages (written by hand from known.md 5.2 into NAME.xml, encoded by
        // `hyrelay nbfx encode`): what the relay reads out of them.
        let client =
            from_msbin1(&std::fs::read(dir.join("client-to-relay-relayedconnect.bin")).unwrap())
                .unwrap();
        let [action, uri] =
            <[Option<String>; 2]>::try_from(texts(&client, &["Action", "Uri"])).unwrap();
        assert_eq!(action.as_deref().map(action_word), Some("RelayedConnect"));
        assert_eq!(uri.as_deref(), Some(to.trim_end_matches('/')));
        assert!(token_from_header(&client)
            .unwrap()
            .starts_with("SharedAccessSignature sr="));
        let listener =
            from_msbin1(&std::fs::read(dir.join("listener-to-relay-relayedaccept.bin")).unwrap())
                .unwrap();
        let [action, rid] =
            <[Option<String>; 2]>::try_from(texts(&listener, &["Action", "Id"])).unwrap();
        assert_eq!(action.as_deref(), Some("RelayedAccept"));
        assert_eq!(rid.as_deref(), Some(id));
    }
}

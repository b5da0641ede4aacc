//! NetOneway / NetEvent senders on the WCF Relay's port 9350: an NMF duplex session with
//! binary session encoding; a `Connect` with a `RelayAccessToken`, then every message
//! acknowledged with a correlated reply and delivered to the AMQP listeners of its path
//! (`Unicast`: one of them; `Multicast`: every one) wrapped in an `OnewaySend` envelope.
//!
//! Fidelity (see the deviation register in the README): the NMF session, the Connect body,
//! the token header and the wrapper's shape are **observed** from Microsoft's client (F2);
//! the reply actions `ConnectReply`/`SendReply`, the fault codes and "multicast with no
//! subscriber: acknowledged and dropped" are **inferred** (F3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyrelay_nbfx::{
    encode_records, read_session_message, records_to_xml, write_session_message, xml_to_records,
    xml_to_session_message, Dictionaries, EncodeOptions, SessionDictionary, XmlOptions,
};
use hyrelay_nmf::{
    Encoding, FaultCode, Limits as NmfLimits, Mode, ServerEvent, ServerPolicy, ServerSession,
};
use quick_xml::events::Event as XmlEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::core::{new_guid, now_secs, Relay};
use crate::model::Namespace;
use crate::wcf_amqp::WcfRegistry;

pub use hyrelay_wcf::relay::{esc, CONNECT_NS, RELAY_NS};
/// Largest one-way message (documented: 64 KB).
pub const MAX_ONEWAY: usize = 64 * 1024;

const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA10: &str = "http://www.w3.org/2005/08/addressing";
const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// Texts of the first elements with these local names (in document order of first match).
pub(crate) fn texts(xml: &str, names: &[&str]) -> Vec<Option<String>> {
    let mut out = vec![None; names.len()];
    let mut r = quick_xml::Reader::from_str(xml);
    let mut current: Option<usize> = None;
    loop {
        match r.read_event() {
            Ok(XmlEvent::Start(e)) => {
                let local = e.local_name();
                current = names
                    .iter()
                    .position(|n| n.as_bytes() == local.as_ref())
                    .filter(|i| out[*i].is_none());
            }
            Ok(XmlEvent::Text(t)) => {
                if let Some(i) = current.take() {
                    out[i] = t.unescape().ok().map(|s| s.trim().to_string());
                }
            }
            Ok(XmlEvent::End(_)) => current = None,
            Ok(XmlEvent::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn reply_xml(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{}</a:Action><a:RelatesTo>{}</a:RelatesTo><a:To s:mustUnderstand="1">{ANONYMOUS}</a:To></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        esc(action),
        esc(relates_to)
    )
}

fn fault_xml(relates_to: &str, code: &str, reason: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{WSA10}/fault</a:Action><a:RelatesTo>{}</a:RelatesTo><a:To s:mustUnderstand="1">{ANONYMOUS}</a:To></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value xmlns:r="{RELAY_NS}">r:{code}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{}</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"#,
        esc(relates_to),
        esc(reason)
    )
}

/// The `OnewaySend` wrapper the relay delivers to listeners (msbin1, no session).
pub fn wrap_oneway(via: &str, inner_msbin1: &[u8]) -> Result<Vec<u8>, String> {
    wrap_oneway_with_id(via, inner_msbin1, &new_guid())
}

/// [`wrap_oneway`] with a given `MessageID` GUID (golden fixtures).
pub fn wrap_oneway_with_id(via: &str, inner_msbin1: &[u8], id: &str) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner_msbin1);
    let xml = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{CONNECT_NS}/OnewaySend</a:Action><RelayVia xmlns="{CONNECT_NS}">{}</RelayVia><a:MessageID>urn:uuid:{}</a:MessageID><a:To s:mustUnderstand="1">{}</a:To></s:Header><s:Body><OnewaySend xmlns="{CONNECT_NS}">{b64}</OnewaySend></s:Body></s:Envelope>"#,
        esc(via),
        esc(id),
        esc(via)
    );
    xml_to_records(&xml, None, &EncodeOptions::default())
        .and_then(|r| encode_records(&r))
        .map_err(|e| e.to_string())
}

pub(crate) fn token_from_header(xml: &str) -> Option<String> {
    let t = texts(xml, &["BinarySecurityToken"]).pop().flatten()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(t.as_bytes())
        .ok()?;
    String::from_utf8(raw).ok()
}

fn check_send(
    relay: &Relay,
    ns: &Namespace,
    path: &str,
    token: Option<&str>,
) -> Result<u64, String> {
    crate::wcf_amqp::authorize_sender(relay, ns, path, token).map_err(|e| e.to_string())
}

/// Serves one-way senders on `listener` forever: in clear (9350, `tls` = None) or offering
/// the NMF `application/ssl-tls` upgrade (9351).
pub async fn serve(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("oneway accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let relay = relay.clone();
        let registry = registry.clone();
        let tls = tls.clone();
        tokio::spawn(
            run(relay, registry, Box::new(tcp), remote, tls)
                .instrument(tracing::info_span!("oneway", peer = %remote)),
        );
    }
}

struct Sender {
    ns: Option<Namespace>,
    path: String,
    via: String,
    expiry: u64,
    recv: SessionDictionary,
    send: SessionDictionary,
    sent: u64,
}

/// A byte stream that may change from TCP to TLS in the middle of the framing session.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// Reads `pre` first, then `inner` (bytes of the TLS handshake that arrived with the last
/// framing record).
struct Rewind<S> {
    pre: bytes::Bytes,
    inner: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            let chunk = self.pre.split_to(n);
            buf.put_slice(&chunk);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one `wsrelayedoneway` WebSocket (from `/$servicebus/websocket`): the same NMF
/// session as on 9350, the WebSocket carrying its bytes.
pub async fn run_websocket(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    leg: hyrelay_net::Leg,
    remote: std::net::SocketAddr,
) {
    run(
        relay,
        registry,
        Box::new(hyrelay_net::ws_as_bytes(leg)),
        remote,
        None,
    )
    .await
}

async fn run(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    mut tcp: Box<dyn Duplex>,
    remote: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let t0 = Instant::now();
    let mut sess = ServerSession::new(
        NmfLimits {
            max_message_size: MAX_ONEWAY * 2,
            ..Default::default()
        },
        ServerPolicy {
            modes: vec![Mode::Duplex],
            upgrades: if tls.is_some() {
                vec![hyrelay_nmf::UPGRADE_TLS.to_string()]
            } else {
                Vec::new()
            },
        },
    );
    sess.start(t0.elapsed());
    let mut s = Sender {
        ns: None,
        path: String::new(),
        via: String::new(),
        expiry: 0,
        recv: SessionDictionary::new(1 << 20),
        send: SessionDictionary::new(1 << 20),
        sent: 0,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(120), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        sess.feed(&buf[..n]);
        let mut done = false;
        loop {
            match sess.poll_event() {
                Ok(None) => break,
                Ok(Some(ServerEvent::PreambleComplete(p))) => {
                    if p.encoding != Encoding::Known(0x08) {
                        tracing::info!(via = %p.via, "one-way sender refused: encoding must be binary session (0x08)");
                        sess.fault(FaultCode::ContentTypeInvalid);
                        done = true;
                        break;
                    }
                    s.via = p.via.clone();
                    let _ = sess.accept_preamble();
                }
                Ok(Some(ServerEvent::Message(payload))) => {
                    if let Some(reply) =
                        handle_message(&relay, &registry, &mut s, &payload, remote).await
                    {
                        match xml_to_session_message(&reply, &mut s.send, &EncodeOptions::default())
                        {
                            Ok(m) => {
                                let mut out = Vec::new();
                                if write_session_message(&m, &mut out).is_ok() {
                                    let _ = sess.send_message(&out);
                                }
                            }
                            Err(e) => tracing::warn!("reply not encoded: {e}"),
                        }
                    }
                }
                Ok(Some(ServerEvent::UpgradeRequested(_))) => {
                    // Only TLS is offered (9351), so this is `application/ssl-tls`: answer
                    // UpgradeResponse in clear, then run the TLS handshake on the socket.
                    let Some(acc) = tls.clone() else { break };
                    if sess.accept_upgrade().is_err() {
                        done = true;
                        break;
                    }
                    let out = sess.take_output();
                    if tcp.write_all(&out).await.is_err() {
                        done = true;
                        break;
                    }
                    let pre = bytes::Bytes::from(sess.take_upgrade_bytes());
                    let inner = std::mem::replace(
                        &mut tcp,
                        Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
                    );
                    match acc.accept(Rewind { pre, inner }).await {
                        Ok(t) => tcp = Box::new(t),
                        Err(e) => {
                            tracing::info!("one-way sender: TLS after the upgrade failed: {e}");
                            return;
                        }
                    }
                    if sess.upgrade_complete().is_err() {
                        done = true;
                        break;
                    }
                }
                Ok(Some(ServerEvent::End)) => {
                    let _ = sess.send_end();
                    done = true;
                    break;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::info!("one-way sender session failed: {e}");
                    done = true;
                    break;
                }
            }
        }
        let out = sess.take_output();
        if !out.is_empty() && tcp.write_all(&out).await.is_err() {
            break;
        }
        if done {
            let _ = tcp.shutdown().await;
            break;
        }
    }
    if s.sent > 0 {
        tracing::info!(path = %s.path, messages = s.sent, "one-way sender session ended");
    }
}

/// One message of a sender session; returns the reply (text XML) to send.
async fn handle_message(
    relay: &Arc<Relay>,
    registry: &WcfRegistry,
    s: &mut Sender,
    payload: &[u8],
    remote: std::net::SocketAddr,
) -> Option<String> {
    let limits = hyrelay_nbfx::Limits::buffered(MAX_ONEWAY * 2);
    let msg = match read_session_message(payload, &mut s.recv, &limits) {
        Ok(m) => m,
        Err(e) => {
            tracing::info!("one-way message not decodable: {e}");
            return Some(fault_xml(
                "",
                "InvalidRequestFault",
                &format!("the message is not valid binary XML: {e}"),
            ));
        }
    };
    let xml = match records_to_xml(
        &msg.records,
        Dictionaries::with_session(&s.recv),
        &XmlOptions::default(),
    ) {
        Ok(x) => x,
        Err(e) => return Some(fault_xml("", "InvalidRequestFault", &e.to_string())),
    };
    let [action, message_id] =
        <[Option<String>; 2]>::try_from(texts(&xml, &["Action", "MessageID"])).ok()?;
    let action = action.unwrap_or_default();
    let id = message_id.unwrap_or_default();
    if action == format!("{CONNECT_NS}/Connect") {
        let uri = texts(&xml, &["Uri"]).pop().flatten().unwrap_or_default();
        let host = uri
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or(""))
            .unwrap_or("");
        let path = uri
            .split_once("://")
            .and_then(|(_, r)| r.split_once('/'))
            .map(|(_, p)| p.trim_matches('/').to_string())
            .unwrap_or_default();
        let Some(ns) = relay.namespace_for(host) else {
            return Some(fault_xml(
                &id,
                "EndpointNotFoundFault",
                &format!("no namespace is served at '{host}'"),
            ));
        };
        if path.is_empty() {
            return Some(fault_xml(
                &id,
                "InvalidRequestFault",
                "Connect names no relay path",
            ));
        }
        let token = token_from_header(&xml);
        match check_send(relay, &ns, &path, token.as_deref()) {
            Ok(exp) => {
                tracing::info!(path = %path, "one-way sender connected");
                s.expiry = exp;
                s.ns = Some(ns);
                s.path = path;
                s.via = uri;
                Some(reply_xml(
                    &format!("{CONNECT_NS}/ConnectReply"),
                    &id,
                    &format!(r#"<ConnectReply xmlns="{CONNECT_NS}"/>"#),
                ))
            }
            Err(e) => {
                tracing::info!(path = %path, "one-way sender refused: {e}");
                Some(fault_xml(&id, "AuthorizationFailedFault", &e))
            }
        }
    } else if action == format!("{CONNECT_NS}/OnewayPing") {
        if let (Some(t), Some(ns)) = (token_from_header(&xml), s.ns.as_ref()) {
            match check_send(relay, ns, &s.path, Some(&t)) {
                Ok(exp) => s.expiry = exp,
                Err(e) => return Some(fault_xml(&id, "AuthorizationFailedFault", &e)),
            }
        }
        Some(reply_xml(&format!("{CONNECT_NS}/OnewayPingReply"), &id, ""))
    } else {
        let Some(ns) = s.ns.as_ref() else {
            return Some(fault_xml(
                &id,
                "InvalidRequestFault",
                "the first message of a one-way session must be Connect",
            ));
        };
        if s.expiry + relay.opts.limits.token_grace.as_secs() < now_secs() {
            return Some(fault_xml(
                &id,
                "AuthorizationFailedFault",
                "the session's token expired; renew it with OnewayPing",
            ));
        }
        if payload.len() > MAX_ONEWAY {
            return Some(fault_xml(
                &id,
                "QuotaExceededFault",
                &format!(
                    "the message is {} bytes; one-way messages are limited to {MAX_ONEWAY}",
                    payload.len()
                ),
            ));
        }
        // The inner message, standalone (no session strings), wrapped for the listener.
        let inner = match xml_to_records(&xml, None, &EncodeOptions::default())
            .and_then(|r| encode_records(&r))
        {
            Ok(b) => b,
            Err(e) => return Some(fault_xml(&id, "InvalidRequestFault", &e.to_string())),
        };
        let wrapped = match wrap_oneway(&s.via, &inner) {
            Ok(w) => w,
            Err(e) => return Some(fault_xml(&id, "InvalidRequestFault", &e)),
        };
        let key = format!(
            "{}/{}",
            ns.name.to_ascii_lowercase(),
            s.path.to_ascii_lowercase()
        );
        if registry.deliver(&key, wrapped) == 0 {
            // No WCF Relay listener: a Hybrid Connection of that name gets the message as
            // a SOAP 1.2 POST (extension: the migration path between the two faces).
            let hc = ns
                .hc(&s.path)
                .map(|h| h.name.clone())
                .filter(|_| registry.extensions_on());
            if let Some(hc) = hc {
                let ct = format!(
                    "application/soap+xml; charset=utf-8; action=\"{}\"",
                    action.replace('"', "")
                );
                let headers = [("Content-Type", ct), ("X-Relay-Via", s.via.clone())];
                let ns = ns.clone();
                let body = bytes::Bytes::from(xml.clone());
                let r = crate::front::relay_internal_post(relay, &ns, &hc, &headers, body, remote)
                    .await;
                return Some(match r {
                    Ok(status) if (200..300).contains(&status) => {
                        s.sent += 1;
                        reply_xml(&format!("{CONNECT_NS}/SendReply"), &id, "")
                    }
                    Ok(status) => fault_xml(
                        &id,
                        "InvalidRequestFault",
                        &format!(
                            "the Hybrid Connections listener of '{hc}' answered HTTP {status}"
                        ),
                    ),
                    Err(e) => fault_xml(&id, "EndpointNotFoundFault", &e),
                });
            }
            if registry
                .drop_without_listener
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                tracing::debug!(path = %s.path, "no listener: message acknowledged and dropped ([wcf_relay] without_listener = \"drop\")");
                return Some(reply_xml(&format!("{CONNECT_NS}/SendReply"), &id, ""));
            }
            return Some(fault_xml(
                &id,
                "EndpointNotFoundFault",
                &format!("no listener is connected for '{}'", s.path),
            ));
        }
        s.sent += 1;
        Some(reply_xml(&format!("{CONNECT_NS}/SendReply"), &id, ""))
    }
}

/// Port 9354 (SBMP, Service Bus messaging): not relay. Each connection gets the NMF
/// framing fault `EndpointNotFound` once its preamble is complete, a log line that says why,
/// and is closed (an extension: Azure serves Service Bus messaging there).
pub async fn serve_sbmp(listener: TcpListener) {
    loop {
        let (mut tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("sbmp accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut sess = ServerSession::new(NmfLimits::default(), ServerPolicy::default());
            sess.start(t0.elapsed());
            let mut buf = vec![0u8; 4096];
            loop {
                let n =
                    match tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => break,
                    };
                sess.feed(&buf[..n]);
                let mut faulted = false;
                loop {
                    match sess.poll_event() {
                        Ok(Some(ServerEvent::PreambleComplete(p))) => {
                            tracing::warn!(peer = %remote, via = %p.via, "SBMP/NetMessaging (port 9354) is not served by hyrelay: answered EndpointNotFound");
                            sess.fault(FaultCode::EndpointNotFound);
                            faulted = true;
                            break;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(peer = %remote, "port 9354: not a framing preamble ({e}); closed");
                            faulted = true;
                            break;
                        }
                    }
                }
                let out = sess.take_output();
                if !out.is_empty() {
                    let _ = tcp.write_all(&out).await;
                }
                if faulted {
                    let _ = tcp.shutdown().await;
                    break;
                }
            }
        });
    }
}

//! The Hybrid Connections front-end: WebSocket listen/connect/accept/request handshakes and
//! relayed HTTP requests, on top of hyper's HTTP/1.1 server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyrelay_hc::messages::{
    encode_accept, encode_request, Accept, RemoteEndpoint, Request as HcRequest,
};
use hyrelay_hc::sas::{encode_component, Rights, TokenError};
use hyrelay_hc::url::{parse_target, Action, Target};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::core::Route;
use crate::core::{
    entity_key, new_guid, new_nonce, now_secs, AcceptOutcome, Delivery, PendingAccept,
    PendingRequest, Relay, ResponseBody,
};
use crate::model::{authorize, HybridConnection, Namespace};
use crate::socket::{into_leg, run_control, run_rendezvous, ListenMeta};
use tracing::Instrument;

/// Offers a connection to a listener of the hybrid connection `hc` on behalf of a sender
/// that is not a WebSocket (a WCF Relay NetTcpRelay client: the migration path between the
/// two faces). Sends the listener the usual `accept`, waits for it to dial the rendezvous,
/// and returns its leg. Errors carry a WCF Relay fault name and a reason.
pub async fn relay_internal_connect(
    relay: &Arc<Relay>,
    ns: &Namespace,
    hc: &str,
    headers: Map<String, Value>,
    remote: SocketAddr,
) -> Result<hyrelay_net::Leg, (&'static str, String)> {
    let entity = entity_key(&ns.name, hc);
    let Some(route) = relay.route(&entity, None, None, &[]).await else {
        relay.counters.refused.fetch_add(1, Ordering::Relaxed);
        return Err((
            "EndpointNotFoundFault",
            format!(
                "no listener is connected for '{hc}' (neither NetTcpRelay nor Hybrid Connections)"
            ),
        ));
    };
    let id = new_guid();
    let nonce = new_nonce();
    let address = format!(
        "{}/$hc/{}?sb-hc-action=accept&sb-hc-id={}&sb-hc-nonce={nonce}",
        rendezvous_base(relay, &route),
        hc,
        encode_component(&id)
    );
    let msg = encode_accept(&Accept {
        address,
        id: id.clone(),
        connect_headers: headers,
        remote_endpoint: RemoteEndpoint {
            address: remote.ip().to_string(),
            port: remote.port(),
        },
    });
    let timeout = relay.opts.limits.accept_timeout;
    let (tx, rx) = oneshot::channel();
    relay.add_accept(
        nonce.clone(),
        PendingAccept {
            id: id.clone(),
            entity: entity.clone(),
            listener: route.serial(),
            tx,
            expires: Instant::now() + timeout,
        },
    );
    if let Err(e) = relay.offer(&entity, &route, &msg).await {
        relay.drop_accept(&nonce);
        return Err((
            "EndpointNotFoundFault",
            format!("the listener could not be reached: {e}"),
        ));
    }
    match tokio::time::timeout(timeout, rx).await {
        Err(_) | Ok(Err(_)) => {
            relay.drop_accept(&nonce);
            Err((
                "ConnectionFailedFault",
                format!(
                    "the listener of '{hc}' did not accept the connection within {} s",
                    timeout.as_secs()
                ),
            ))
        }
        Ok(Ok(AcceptOutcome::Rejected { code, description })) => Err((
            "ConnectionFailedFault",
            format!("the listener of '{hc}' rejected the connection: {code} {description}"),
        )),
        Ok(Ok(AcceptOutcome::Accepted { upgrade, .. })) => {
            let up = upgrade.await.map_err(|e| {
                (
                    "ConnectionFailedFault",
                    format!("the listener's rendezvous failed: {e}"),
                )
            })?;
            relay
                .stats(&entity)
                .connects
                .fetch_add(1, Ordering::Relaxed);
            into_leg(up).map_err(|e| ("ConnectionFailedFault", e))
        }
    }
}

/// A Hybrid Connections sender on a path where no hybrid connection exists but NetTcpRelay
/// listeners are registered (the other direction of the migration path): a `RelayedConnect`
/// to one of them, then the sender's WebSocket is spliced with the listener's byte stream.
async fn connect_to_nettcp(
    relay: Arc<Relay>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    t: Target,
    ns: Namespace,
    host: String,
) -> Option<Response<Body>> {
    let registry = relay.wcf.get()?.clone();
    let path = t.path.trim_matches('/').to_string();
    let key = format!(
        "{}/{}",
        ns.name.to_ascii_lowercase(),
        path.to_ascii_lowercase()
    );
    if !registry.extensions_on() || !registry.has_listener_type(&key, "RelayedConnection") {
        return None;
    }
    let token = token_from(&t, req.headers());
    if let Err(e) = crate::wcf_amqp::authorize_sender(&relay, &ns, &path, token.as_deref()) {
        return Some(auth_failure(&relay, &conn, &t, &e, &host, &path));
    }
    let accept_key = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => return Some(r),
    };
    let target = format!("sb://{host}/{path}/");
    let listener = match crate::wcf_nettcp::offer_relayed(
        &relay,
        &registry,
        &key,
        &target,
        &host,
        "RelayedConnection",
    )
    .await
    {
        Ok(l) => l,
        Err((code, reason)) => {
            let status = if code == "EndpointNotFoundFault" {
                404
            } else {
                504
            };
            return Some(reply(status, &reason));
        }
    };
    let sender_up = hyper::upgrade::on(&mut req);
    let relay2 = relay.clone();
    tokio::spawn(
        async move {
            let Ok(up) = sender_up.await else { return };
            let Ok(leg) = into_leg(up) else { return };
            tracing::info!(path = %path, "Hybrid Connections sender joined a NetTcpRelay listener");
            relay2.counters.connects.fetch_add(1, Ordering::Relaxed);
            let (up, down) = crate::wcf_nettcp::splice_ws_conn(leg, listener).await;
            relay2
                .counters
                .bytes
                .fetch_add(up + down, Ordering::Relaxed);
            tracing::debug!(
                sent = up,
                received = down,
                "sender ⇄ NetTcpRelay listener ended"
            );
        }
        .in_current_span(),
    );
    Some(switching(&accept_key, None))
}

/// Response body type of the front-end.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Facts about the TCP connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Peer address.
    pub remote: SocketAddr,
    /// Whether TLS is on.
    pub tls: bool,
    /// Whether this is the management address (metrics, status page).
    pub management: bool,
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A plain-text error/status response whose reason phrase carries the explanation.
pub fn reply(status: u16, text: &str) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    set_reason(&mut r, text);
    r
}

fn set_reason<B>(r: &mut Response<B>, text: &str) {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if let Ok(p) = hyper::ext::ReasonPhrase::try_from(clean.into_bytes()) {
        r.extensions_mut().insert(p);
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn is_ws_upgrade(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    req.method() == Method::GET
        && header_str(h, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

#[allow(clippy::result_large_err)] // the error is the response to send
fn ws_accept_key(req: &Request<Incoming>) -> Result<String, Response<Body>> {
    let h = req.headers();
    if header_str(h, "sec-websocket-version").map(str::trim) != Some("13") {
        let mut r = reply(426, "Sec-WebSocket-Version 13 is required");
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return Err(r);
    }
    match header_str(h, "sec-websocket-key") {
        Some(k) if !k.trim().is_empty() && k.len() < 64 => Ok(hyrelay_ws::accept_key(k)),
        _ => Err(reply(400, "missing or invalid Sec-WebSocket-Key")),
    }
}

fn switching(accept: &str, protocol: Option<&str>) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(p) = protocol {
        if let Ok(v) = HeaderValue::from_str(p) {
            h.insert("sec-websocket-protocol", v);
        }
    }
    r
}

/// Title-cases a header name the way .NET and the captures spell them.
fn display_name(n: &str) -> String {
    match n {
        "sec-websocket-key" => "Sec-WebSocket-Key".into(),
        "sec-websocket-version" => "Sec-WebSocket-Version".into(),
        "sec-websocket-protocol" => "Sec-WebSocket-Protocol".into(),
        "sec-websocket-extensions" => "Sec-WebSocket-Extensions".into(),
        "www-authenticate" => "WWW-Authenticate".into(),
        _ => n
            .split('-')
            .map(|p| {
                let mut c = p.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// Headers as a JSON object of strings; repeated headers joined with `, `.
fn headers_json(h: &HeaderMap, skip: &[&str]) -> Map<String, Value> {
    let mut m: Map<String, Value> = Map::new();
    for name in h.keys() {
        let n = name.as_str();
        if skip.contains(&n) {
            continue;
        }
        let vals: Vec<String> = h
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        m.insert(display_name(n), Value::String(vals.join(", ")));
    }
    m
}

fn token_from(t: &Target, h: &HeaderMap) -> Option<String> {
    // The header (what the SDKs send) wins over the query parameter.
    header_str(h, "servicebusauthorization")
        .map(str::to_string)
        .or_else(|| t.token.clone())
}

fn entity_uri(host: &str, hc: &str) -> String {
    format!("sb://{}/{}", crate::model::strip_port(host), hc)
}

fn auth_failure(
    relay: &Relay,
    conn: &ConnInfo,
    t: &Target,
    e: &TokenError,
    host: &str,
    hc: &str,
) -> Response<Body> {
    relay.limiter.failed(conn.remote.ip(), &t.path);
    relay.counters.refused.fetch_add(1, Ordering::Relaxed);
    relay.auth_failed(e.reason());
    let msg = format!("{e}. Entity: {}", entity_uri(host, hc));
    tracing::info!(remote = %conn.remote, entity = %hc, status = e.status(), "refused: {e}");
    reply(e.status(), &msg)
}

fn not_found(
    relay: &Relay,
    conn: &ConnInfo,
    t: &Target,
    ns: &Namespace,
    host: &str,
) -> Response<Body> {
    relay.limiter.failed(conn.remote.ip(), &t.path);
    relay.counters.refused.fetch_add(1, Ordering::Relaxed);
    reply(
        404,
        &format!(
            "Endpoint does not exist. No hybrid connection matches '{}' in namespace '{}'. SystemTracker: {}",
            t.path,
            ns.name,
            entity_uri(host, &t.path)
        ),
    )
}

/// The request handler.
pub async fn handle(
    relay: Arc<Relay>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(dispatch(relay, conn, req).await)
}

async fn dispatch(relay: Arc<Relay>, conn: ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let host = header_str(req.headers(), "host")
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if conn.management && req.method() == http::Method::GET {
        if let Some(r) = crate::observe::serve(&relay, &target).await {
            return r;
        }
    }
    if target.starts_with("/$servicebus/websocket") {
        return servicebus_websocket(relay, req, conn.remote).await;
    }
    if target.starts_with("/$hyrelay/") || target == "/$hyrelay" {
        return crate::mgmt::handle(relay, conn, req, &host).await;
    }
    let t = match parse_target(&target) {
        Ok(t) => t,
        Err(e) => return reply(400, &format!("Bad request URL: {e}")),
    };
    let Some(ns) = relay.namespace_for(&host) else {
        return reply(
            404,
            &format!("Endpoint does not exist. No namespace is served at host '{host}'"),
        );
    };
    if t.path.is_empty() {
        return reply(404, &format!("Endpoint does not exist. This is hyrelay namespace '{}': address a hybrid connection as /{{name}} (HTTP) or /$hc/{{name}} (WebSocket)", ns.name));
    }
    let limited = matches!(
        t.action,
        None | Some(Action::Listen) | Some(Action::Connect)
    );
    if limited && !relay.limiter.allowed(conn.remote.ip(), &t.path) {
        relay.counters.throttled.fetch_add(1, Ordering::Relaxed);
        let mut r = reply(
            429,
            &format!(
                "Too many failed attempts from {} for '{}'; retry later",
                conn.remote.ip(),
                t.path
            ),
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    match t.action {
        Some(a) => {
            if !is_ws_upgrade(&req) {
                return reply(
                    400,
                    &format!("sb-hc-action={} needs a WebSocket upgrade request (GET with Upgrade: websocket)", a.as_str()),
                );
            }
            match a {
                Action::Listen => listen(relay, conn, req, t, ns, host).await,
                Action::Connect => connect(relay, conn, req, t, ns, host).await,
                Action::Accept => accept(relay, req, t).await,
                Action::Request => rendezvous(relay, req, t).await,
            }
        }
        None => http_request(relay, conn, req, t, ns, host).await,
    }
}

/// Where the listener `route` names must dial for a rendezvous with a sender on this
/// gateway: the address it reached us by, or this gateway's public address when it is
/// connected to another gateway.
fn rendezvous_base(relay: &Relay, route: &Route) -> String {
    match route {
        Route::Local(h) => h.base.clone(),
        Route::Remote(_) => relay
            .opts
            .public_address
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string(),
    }
}

fn base_address(relay: &Relay, conn: &ConnInfo, host: &str) -> String {
    match &relay.opts.public_address {
        Some(p) => p.trim_end_matches('/').to_string(),
        None => format!("{}://{}", if conn.tls { "wss" } else { "ws" }, host),
    }
}

async fn listen(
    relay: Arc<Relay>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    t: Target,
    ns: Namespace,
    host: String,
) -> Response<Body> {
    let Some((hc, _)) = ns.find_hc(&t.path) else {
        return not_found(&relay, &conn, &t, &ns, &host);
    };
    let token = token_from(&t, req.headers());
    let auth = match authorize(
        &ns,
        Some(hc),
        token.as_deref(),
        Rights::LISTEN,
        now_secs(),
        relay.opts.clock_skew.as_secs(),
    ) {
        Ok(a) => a,
        Err(e) => return auth_failure(&relay, &conn, &t, &e, &host, &hc.name),
    };
    let entity = entity_key(&ns.name, &hc.name);
    let n = if relay.store.shared() {
        let (local, remote) = relay.all_listeners(&entity).await;
        local.len() + remote.len()
    } else {
        relay.listener_count(&entity)
    };
    if n >= relay.opts.limits.listeners_per_entity {
        relay.counters.refused.fetch_add(1, Ordering::Relaxed);
        return reply(403, &format!("Quota exceeded: hybrid connection '{}' already has {n} listeners (the limit is {})", hc.name, relay.opts.limits.listeners_per_entity));
    }
    let accept = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let meta = ListenMeta {
        namespace: ns.name.clone(),
        hc: hc.name.clone(),
        entity,
        tracking_id: t.id.clone().unwrap_or_else(new_guid),
        base: base_address(&relay, &conn, &host),
        remote: conn.remote,
        expiry: auth.expiry,
    };
    let up = hyper::upgrade::on(&mut req);
    tokio::spawn(
        async move {
            match up.await {
                Ok(u) => run_control(relay, u, meta).await,
                Err(e) => tracing::debug!("listener upgrade failed: {e}"),
            }
        }
        .in_current_span(),
    );
    switching(&accept, None)
}

async fn connect(
    relay: Arc<Relay>,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    t: Target,
    ns: Namespace,
    host: String,
) -> Response<Body> {
    let Some((hc, _)) = ns.find_hc(&t.path) else {
        let (n2, h2) = (ns.clone(), host.clone());
        if let Some(r) = connect_to_nettcp(relay.clone(), conn, req, t.clone(), n2, h2).await {
            return r;
        }
        return not_found(&relay, &conn, &t, &ns, &host);
    };
    if hc.requires_client_authorization {
        let token = token_from(&t, req.headers());
        if let Err(e) = authorize(
            &ns,
            Some(hc),
            token.as_deref(),
            Rights::SEND,
            now_secs(),
            relay.opts.clock_skew.as_secs(),
        ) {
            return auth_failure(&relay, &conn, &t, &e, &host, &hc.name);
        }
    }
    let accept_key = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let entity = entity_key(&ns.name, &hc.name);
    let (allowed, disallowed) = listener_filters(req.headers());
    let id = t.id.clone().unwrap_or_else(new_guid);
    let q = if t.app_query.is_empty() {
        String::new()
    } else {
        format!("{}&", t.app_query)
    };
    let timeout = relay.opts.limits.accept_timeout;
    let mut failed = Vec::new();
    let (nonce, rx) = loop {
        let Some(route) = relay
            .route(&entity, allowed.as_deref(), disallowed.as_deref(), &failed)
            .await
        else {
            relay.counters.refused.fetch_add(1, Ordering::Relaxed);
            return reply(
                404,
                &format!(
                    "There are no listeners connected for the endpoint. Entity: {}",
                    entity_uri(&host, &hc.name)
                ),
            );
        };
        let nonce = new_nonce();
        let address = format!(
            "{}/$hc{}?{}sb-hc-action=accept&sb-hc-id={}&sb-hc-nonce={}",
            rendezvous_base(&relay, &route),
            t.raw_path,
            q,
            encode_component(&id),
            nonce
        );
        let msg = encode_accept(&Accept {
            address,
            id: id.clone(),
            connect_headers: headers_json(req.headers(), &["servicebusauthorization"]),
            remote_endpoint: RemoteEndpoint {
                address: conn.remote.ip().to_string(),
                port: conn.remote.port(),
            },
        });
        let (tx, rx) = oneshot::channel();
        relay.add_accept(
            nonce.clone(),
            PendingAccept {
                id: id.clone(),
                entity: entity.clone(),
                listener: route.serial(),
                tx,
                expires: Instant::now() + timeout,
            },
        );
        match relay.offer(&entity, &route, &msg).await {
            Ok(()) => break (nonce, rx),
            Err(e) => {
                relay.drop_accept(&nonce);
                tracing::info!(entity = %entity, id = %id, "listener {} unreachable, trying another: {e}", route.describe());
                match route {
                    Route::Remote(r) if failed.len() < 4 => failed.push(r),
                    _ => return reply(502, &format!("The listener could not be reached: {e}")),
                }
            }
        }
    };
    let sender_up = hyper::upgrade::on(&mut req);
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => {
            relay.drop_accept(&nonce);
            tracing::info!(entity = %entity, id = %id, "listener did not accept within {timeout:?}");
            reply(
                504,
                &format!(
                    "The listener did not accept the connection within {} s. Entity: {}",
                    timeout.as_secs(),
                    entity_uri(&host, &hc.name)
                ),
            )
        }
        Ok(Err(_)) => reply(
            502,
            "The listener disconnected before accepting the connection",
        ),
        Ok(Ok(AcceptOutcome::Rejected { code, description })) => {
            tracing::info!(entity = %entity, id = %id, code, "listener rejected the connection");
            reply(code, &description)
        }
        Ok(Ok(AcceptOutcome::Accepted { protocol, upgrade })) => {
            let relay2 = relay.clone();
            let id2 = id.clone();
            let entity2 = entity.clone();
            tokio::spawn(async move {
                let (s, l) = tokio::join!(sender_up, upgrade);
                let (s, l) = match (s, l) {
                    (Ok(s), Ok(l)) => (s, l),
                    _ => {
                        tracing::debug!(id = %id2, "one leg failed to upgrade");
                        return;
                    }
                };
                let (s, l) = match (into_leg(s), into_leg(l)) {
                    (Ok(s), Ok(l)) => (s, l),
                    _ => return,
                };
                relay2.counters.connects.fetch_add(1, Ordering::Relaxed);
                relay2
                    .counters
                    .active_connections
                    .fetch_add(1, Ordering::Relaxed);
                let st = relay2.stats(&entity2);
                st.connects.fetch_add(1, Ordering::Relaxed);
                st.active.fetch_add(1, Ordering::Relaxed);
                let rep = hyrelay_net::splice(s, l).await;
                st.active.fetch_sub(1, Ordering::Relaxed);
                st.bytes_to_listener
                    .fetch_add(rep.a_to_b, Ordering::Relaxed);
                st.bytes_to_sender.fetch_add(rep.b_to_a, Ordering::Relaxed);
                relay2
                    .counters
                    .active_connections
                    .fetch_sub(1, Ordering::Relaxed);
                relay2
                    .counters
                    .bytes
                    .fetch_add(rep.a_to_b + rep.b_to_a, Ordering::Relaxed);
                tracing::debug!(id = %id2, end = ?rep.end, sent = rep.a_to_b, received = rep.b_to_a, "relayed connection ended");
            }.in_current_span());
            switching(&accept_key, protocol.as_deref())
        }
    }
}

fn listener_filters(h: &HeaderMap) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let list = |n: &str| {
        header_str(h, n).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
    };
    (
        list("microsoft-relay-allowedlisteners"),
        list("microsoft-relay-disallowedlisteners"),
    )
}

async fn accept(relay: Arc<Relay>, mut req: Request<Incoming>, t: Target) -> Response<Body> {
    let gone = || {
        reply(
            403,
            "The accept address is invalid, has expired or was already used",
        )
    };
    let Some(nonce) = t.nonce.as_deref() else {
        return gone();
    };
    let Some(p) = relay.take_accept(nonce) else {
        return gone();
    };
    if t.id.as_deref() != Some(p.id.as_str()) {
        return gone();
    }
    if let Some(code) = &t.status_code {
        let code: u16 = code
            .trim()
            .parse()
            .ok()
            .filter(|c| (200..=599).contains(c))
            .unwrap_or(400);
        let description = t
            .status_description
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "Rejected by the listener".into());
        let _ = p.tx.send(AcceptOutcome::Rejected { code, description });
        return reply(410, "Rejected: the sender was told");
    }
    if p.tx.is_closed() {
        return reply(410, "The sender has gone away");
    }
    let accept_key = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => {
            let _ = p.tx.send(AcceptOutcome::Rejected {
                code: 502,
                description: "The listener's accept handshake was invalid".into(),
            });
            return r;
        }
    };
    let protocol = header_str(req.headers(), "sec-websocket-protocol")
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let upgrade = hyper::upgrade::on(&mut req);
    if p.tx
        .send(AcceptOutcome::Accepted {
            protocol: protocol.clone(),
            upgrade,
        })
        .is_err()
    {
        return reply(410, "The sender has gone away");
    }
    switching(&accept_key, protocol.as_deref())
}

async fn rendezvous(relay: Arc<Relay>, mut req: Request<Incoming>, t: Target) -> Response<Body> {
    let Some(p) = t.id.as_deref().and_then(|id| relay.request(id)) else {
        return reply(403, "The rendezvous address is invalid or has expired");
    };
    let accept_key = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let up = hyper::upgrade::on(&mut req);
    tokio::spawn(
        async move {
            match up.await {
                Ok(u) => run_rendezvous(relay, u, p).await,
                Err(e) => tracing::debug!("rendezvous upgrade failed: {e}"),
            }
        }
        .in_current_span(),
    );
    switching(&accept_key, None)
}

pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

async fn http_request(
    relay: Arc<Relay>,
    conn: ConnInfo,
    req: Request<Incoming>,
    t: Target,
    ns: Namespace,
    host: String,
) -> Response<Body> {
    let Some((hc, _)) = ns.find_hc(&t.path) else {
        if let Some(base) = crate::wcf_http::resolve(&relay, &ns, &t.path) {
            let tok = t.token.clone();
            return crate::wcf_http::handle(&relay, conn.remote, req, &ns, &base, &host, tok).await;
        }
        return not_found(&relay, &conn, &t, &ns, &host);
    };
    let hc: HybridConnection = hc.clone();
    let mut skip: Vec<&str> = vec!["servicebusauthorization"];
    skip.extend_from_slice(HOP_BY_HOP);
    let token = token_from(&t, req.headers());
    if hc.requires_client_authorization {
        let (tok, from_authorization) = match token {
            Some(t) => (Some(t), false),
            None => (
                header_str(req.headers(), "authorization").map(str::to_string),
                true,
            ),
        };
        if from_authorization {
            skip.push("authorization");
        }
        if let Err(e) = authorize(
            &ns,
            Some(&hc),
            tok.as_deref(),
            Rights::SEND,
            now_secs(),
            relay.opts.clock_skew.as_secs(),
        ) {
            return auth_failure(&relay, &conn, &t, &e, &host, &hc.name);
        }
    }
    let entity = entity_key(&ns.name, &hc.name);
    let (allowed, disallowed) = listener_filters(req.headers());
    let filtered = allowed.is_some() || disallowed.is_some();
    let Some(route) = relay
        .route(&entity, allowed.as_deref(), disallowed.as_deref(), &[])
        .await
    else {
        relay.counters.refused.fetch_add(1, Ordering::Relaxed);
        if filtered && relay.listener_count(&entity) > 0 {
            return reply(404, "None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria");
        }
        return reply(
            404,
            &format!(
                "There are no listeners connected for the endpoint. Entity: {}",
                entity_uri(&host, &hc.name)
            ),
        );
    };

    let method = req.method().clone();
    let mut headers = headers_json(req.headers(), &skip);
    let via_host = crate::model::strip_port(&host).to_string();
    let via = match headers.get("Via").and_then(Value::as_str) {
        Some(v) => format!("{v}, 1.1 {via_host}"),
        None => format!("1.1 {via_host}"),
    };
    headers.insert("Via".into(), Value::String(via.clone()));
    let request_target = if t.app_query.is_empty() {
        t.raw_path.clone()
    } else {
        format!("{}?{}", t.raw_path, t.app_query)
    };
    let id = new_guid();
    let address = format!(
        "{}/$hc/{}?sb-hc-action=request&sb-hc-id={}",
        rendezvous_base(&relay, &route),
        hc.name,
        id
    );
    let full_request = |has_body: bool| {
        encode_request(&HcRequest {
            address: address.clone(),
            id: id.clone(),
            request_target: Some(request_target.clone()),
            method: Some(method.as_str().to_string()),
            remote_endpoint: Some(RemoteEndpoint {
                address: conn.remote.ip().to_string(),
                port: conn.remote.port(),
            }),
            request_headers: Some(headers.clone()),
            body: Some(has_body),
        })
    };

    // Decide the path: the control channel for complete bodies up to the limit, a
    // rendezvous socket for anything larger or still streaming.
    let limit = relay.opts.limits.control_message_bytes;
    let mut body = req.into_body();
    let mut prefix = BytesMut::new();
    let mut complete = http_body::Body::is_end_stream(&body);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
    while !complete && prefix.len() <= limit {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break,
            Ok(None) => complete = true,
            Ok(Some(Err(e))) => {
                return reply(400, &format!("Reading the request body failed: {e}"))
            }
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    prefix.extend_from_slice(&d);
                }
                if http_body::Body::is_end_stream(&body) {
                    complete = true;
                }
            }
        }
    }
    let json_len = full_request(true).len();
    let use_control = complete && prefix.len() + json_len <= limit;
    let (tx, rx) = oneshot::channel();
    let pending = Arc::new(PendingRequest {
        id: id.clone(),
        entity: entity.clone(),
        listener: route.serial(),
        delivery: Mutex::new(None),
        response: Mutex::new(Some(tx)),
    });
    relay.add_request(pending.clone());
    let sent = if use_control {
        // The request and its body on the listener's control channel; for a listener on
        // another gateway, through that gateway, which sends the response back.
        let has_body = !prefix.is_empty();
        let body = has_body.then_some(&prefix[..]);
        let request = matches!(route, Route::Remote(_)).then_some(id.as_str());
        relay
            .offer_with(&entity, &route, &full_request(has_body), body, request)
            .await
    } else {
        let has_body = !prefix.is_empty() || !complete;
        if let Ok(mut d) = pending.delivery.lock() {
            *d = Some(Delivery {
                json: full_request(has_body),
                prefix: prefix.freeze(),
                rest: if complete { None } else { Some(body) },
                has_body,
            });
        }
        let notice = encode_request(&HcRequest::notice(address.clone(), id.clone()));
        relay.offer(&entity, &route, &notice).await
    };
    if let Err(e) = sent {
        relay.drop_request(&id);
        tracing::info!(entity = %entity, "relayed request: listener {} unreachable: {e}", route.describe());
        return reply(502, &format!("The listener could not be reached: {e}"));
    }
    let start = match tokio::time::timeout(relay.opts.response_timeout, rx).await {
        Err(_) => {
            relay.drop_request(&id);
            return reply(504, "The request was routed to the listener but the listener did not respond in the required time");
        }
        Ok(Err(_)) => {
            relay.drop_request(&id);
            return reply(502, "The listener disconnected before responding");
        }
        Ok(Ok(s)) => s,
    };
    let status = StatusCode::from_u16(start.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body: Body = match start.body {
        ResponseBody::Empty => empty(),
        ResponseBody::Full(b) => full(b),
        ResponseBody::Stream(rx) => ChannelBody { rx }.boxed(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Some(reason) = &start.reason {
        if status.canonical_reason() != Some(reason.as_str()) && !reason.is_empty() {
            set_reason(&mut resp, reason);
        }
    }
    let h = resp.headers_mut();
    for (k, v) in &start.headers {
        let lk = k.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lk.as_str()) || lk == "via" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    let resp_via = start
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("via"))
        .map(|(_, v)| format!("{v}, 1.1 {via_host}"))
        .unwrap_or_else(|| format!("1.1 {via_host}"));
    if let Ok(v) = HeaderValue::from_str(&resp_via) {
        h.insert(http::header::VIA, v);
    }
    resp
}

/// A response body fed by the listener socket's reader.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Relays one complete HTTP POST, made by the relay itself, to a listener of hybrid
/// connection `hc` (on any gateway) over its control channel, and returns the listener's
/// status. Used by the WCF Relay face so that one-way senders reach Hybrid Connections
/// HTTP listeners (a migration path: an extension, Azure keeps the faces apart).
pub async fn relay_internal_post(
    relay: &Arc<Relay>,
    ns: &Namespace,
    hc: &str,
    headers: &[(&str, String)],
    body: Bytes,
    remote: SocketAddr,
) -> Result<u16, String> {
    let entity = entity_key(&ns.name, hc);
    let route = relay
        .route(&entity, None, None, &[])
        .await
        .ok_or_else(|| format!("no listener is connected for '{hc}'"))?;
    let id = new_guid();
    let base = rendezvous_base(relay, &route);
    let mut h = Map::new();
    for (k, v) in headers {
        h.insert((*k).to_string(), Value::String(v.clone()));
    }
    h.insert(
        "Content-Length".into(),
        Value::String(body.len().to_string()),
    );
    let json = encode_request(&HcRequest {
        address: format!("{base}/$hc/{hc}?sb-hc-action=request&sb-hc-id={id}"),
        id: id.clone(),
        request_target: Some(format!("/{hc}")),
        method: Some("POST".into()),
        remote_endpoint: Some(RemoteEndpoint {
            address: remote.ip().to_string(),
            port: remote.port(),
        }),
        request_headers: Some(h),
        body: Some(!body.is_empty()),
    });
    let (tx, rx) = oneshot::channel();
    relay.add_request(Arc::new(PendingRequest {
        id: id.clone(),
        entity: entity.clone(),
        listener: route.serial(),
        delivery: Mutex::new(None),
        response: Mutex::new(Some(tx)),
    }));
    let remote_route = matches!(route, Route::Remote(_));
    let sent = relay
        .offer_with(
            &entity,
            &route,
            &json,
            (!body.is_empty()).then_some(&body[..]),
            remote_route.then_some(id.as_str()),
        )
        .await;
    if let Err(e) = sent {
        relay.drop_request(&id);
        return Err(e);
    }
    match tokio::time::timeout(relay.opts.response_timeout, rx).await {
        Ok(Ok(start)) => Ok(start.status),
        Ok(Err(_)) => {
            relay.drop_request(&id);
            Err("the listener disconnected before responding".into())
        }
        Err(_) => {
            relay.drop_request(&id);
            Err("the listener did not respond in time".into())
        }
    }
}

/// `/$servicebus/websocket`: the WCF Relay's WebSocket transports. `wsrelayedamqp` (listener
/// registration) is served; `wsrelayedconnection` and `wsrelayedoneway` are not yet.
async fn servicebus_websocket(
    relay: Arc<Relay>,
    mut req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let Some(registry) = relay.wcf.get().cloned() else {
        return reply(
            404,
            "The WCF Relay face is off on this relay (hyrelay up --wcf-relay, or [wcf_relay] in the configuration)",
        );
    };
    if !is_ws_upgrade(&req) {
        return reply(400, "/$servicebus/websocket needs a WebSocket upgrade");
    }
    let offered = header_str(req.headers(), "sec-websocket-protocol").unwrap_or("");
    let Some(proto) = ["wsrelayedamqp", "wsrelayedconnection", "wsrelayedoneway"]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim().eq_ignore_ascii_case(p)))
    else {
        return reply(
            400,
            &format!("Sub-protocol '{offered}' is not served here: wsrelayedamqp (listener registration), wsrelayedconnection (NetTcpRelay) and wsrelayedoneway (one-way senders) are"),
        );
    };
    // The listener plane's reconnect-storm limit covers its WebSocket transport too.
    if proto == "wsrelayedamqp" && !registry.admit(remote.ip()) {
        return reply(
            503,
            "Too many new AMQP connections from this address; retry with a back-off",
        );
    }
    let accept = match ws_accept_key(&req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let up = hyper::upgrade::on(&mut req);
    tokio::spawn(
        async move {
            let leg = match up.await.map_err(|e| e.to_string()).and_then(into_leg) {
                Ok(leg) => leg,
                Err(e) => {
                    tracing::debug!("{proto} upgrade failed: {e}");
                    return;
                }
            };
            match proto {
                "wsrelayedamqp" => crate::wcf_amqp::run_websocket(relay, registry, leg).await,
                "wsrelayedconnection" => {
                    crate::wcf_nettcp::run_websocket(relay, registry, leg, remote).await
                }
                _ => crate::wcf_oneway::run_websocket(relay, registry, leg, remote).await,
            }
        }
        .in_current_span(),
    );
    switching(&accept, Some(proto))
}

//! The HTTP relay bindings (BasicHttpRelay, WebHttpRelay, WS2007HttpRelay): a plain HTTP(S)
//! request to `https://ns/path` reaches a legacy WCF listener registered with listener type
//! `RelayedHttp`. The relay plays a NetTcpRelay client for it: a `RelayedConnect` rendezvous,
//! then an NMF session it initiates (singleton-unsized mode, `application/soap+msbin1`), one
//! SOAP 1.2 envelope per HTTP request and one back.
//!
//! The mapping (known.md 5.5, from Microsoft's client code, F2): Action = the HTTP method,
//! `To`, `MessageID`, anonymous `ReplyTo`; every request header as a header element of the
//! same name in the `…/servicebus/web` namespace; `HttpAddress` = the full URL; `BodyFormat`
//! (`…/servicebus/body`) = `WrappedSoap11`/`WrappedSoap12` for SOAP requests, else `Raw`.
//! The response carries `StatusCode` (`…/servicebus/statuscode`, 202 when absent), an optional
//! `FaultReason`, its headers in the web namespace and a body. The relay's choice of framing
//! mode and encoding, and the `<Binary>` body element (base64), are **inferred** (F3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyrelay_nmf::{ClientConfig, ClientEvent, ClientSession, Encoding, Limits, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::core::{new_guid, Relay};
use crate::front::{full, reply, Body, HOP_BY_HOP};
use crate::model::Namespace;
use crate::wcf_nettcp::offer_relayed;
use hyrelay_wcf::relay::{esc, from_msbin1, http_request_xml, parse_http_response, to_msbin1};

/// Largest request or response body relayed (bytes).
pub const MAX_BODY: usize = 16 << 20;
/// How long the listener has to answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

fn key_of(ns: &Namespace, path: &str) -> String {
    format!(
        "{}/{}",
        ns.name.to_ascii_lowercase(),
        path.trim_matches('/').to_ascii_lowercase()
    )
}

/// The relay path that serves `path` on the HTTP relay: the longest leading run of `path`'s
/// segments with a `RelayedHttp` listener registered, or naming a persistent WCF relay of type
/// `http` (then a request without listener gets 502). A WebHttpRelayBinding service listens at
/// its base address and dispatches on what follows (`/relay/customers/42` reaches the listener
/// of `/relay`), so the match is by prefix, whole segments only.
pub fn resolve(relay: &Relay, ns: &Namespace, path: &str) -> Option<String> {
    let reg = relay.wcf.get()?;
    let path = path.trim_matches('/');
    let mut end = path.len();
    loop {
        let base = &path[..end];
        if !base.is_empty()
            && (reg.has_listener_type(&key_of(ns, base), "RelayedHttp")
                || crate::wcf_amqp::persistent_relay(relay, ns, base)
                    .is_some_and(|w| w.relay_type == "http"))
        {
            return Some(base.to_string());
        }
        end = base.rfind('/')?;
    }
}

fn error_xml(status: u16, detail: &str) -> Response<Body> {
    let text = format!(
        "<Error><Code>{status}</Code><Detail>{}. TrackingId:{}_G0,TimeStamp:{}</Detail></Error>",
        esc(detail),
        new_guid(),
        timestamp()
    );
    let mut r = Response::new(full(text));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    r
}

fn timestamp() -> String {
    let secs = crate::core::now_secs();
    format!("{secs}")
}

/// One request/response on a new session with the listener's stream.
async fn exchange(
    mut s: crate::wcf_nettcp::Conn,
    via: &str,
    envelope: &[u8],
) -> Result<Vec<u8>, String> {
    let mut c = ClientSession::new(
        ClientConfig {
            mode: Mode::SingletonUnsized,
            via: via.to_string(),
            encoding: Encoding::Known(0x07),
            upgrade: None,
        },
        Limits {
            max_message_size: MAX_BODY * 2,
            ..Limits::default()
        },
    );
    c.start().map_err(|e| e.to_string())?;
    let mut sent = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let out = c.take_output();
        if !out.is_empty() {
            s.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the listener closed the session before answering".into());
        }
        c.feed(&buf[..n]);
        while let Some(ev) = c.poll_event().map_err(|e| e.to_string())? {
            match ev {
                ClientEvent::PreambleAck if !sent => {
                    c.send_message(envelope).map_err(|e| e.to_string())?;
                    sent = true;
                }
                ClientEvent::Message(m) => {
                    let _ = c.send_end();
                    let out = c.take_output();
                    let _ = s.write_all(&out).await;
                    let _ = s.shutdown().await;
                    return Ok(m);
                }
                ClientEvent::Fault { uri, .. } => {
                    return Err(format!("the listener sent the framing fault {uri}"))
                }
                ClientEvent::End => {
                    return Err("the listener ended the session without answering".into())
                }
                _ => {}
            }
        }
    }
}

/// Relays one HTTP request to a `RelayedHttp` listener of `base`.
pub async fn handle(
    relay: &Arc<Relay>,
    remote: SocketAddr,
    req: Request<Incoming>,
    ns: &Namespace,
    base: &str,
    host: &str,
    query_token: Option<String>,
) -> Response<Body> {
    // `base` is the relay path from [`resolve`]; the full request path travels in the URL.
    let path = base.trim_matches('/').to_string();
    let Some(registry) = relay.wcf.get().cloned() else {
        return reply(404, "the WCF Relay face is off");
    };
    let key = key_of(ns, &path);
    // The token: ServiceBusAuthorization (preferred) or Authorization; the one used is not
    // passed on, so Authorization stays free for the service's own scheme.
    let h = req.headers();
    let sba = h
        .get("servicebusauthorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (token, used) = match (sba, query_token) {
        (Some(t), _) => (Some(t), Some("servicebusauthorization")),
        (None, Some(t)) => (Some(t), None),
        (None, None) => (
            h.get("authorization")
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.starts_with("SharedAccessSignature"))
                .map(str::to_string),
            Some("authorization"),
        ),
    };
    if let Err(e) = crate::wcf_amqp::authorize_sender(relay, ns, &path, token.as_deref()) {
        relay.auth_failed(&e.to_string());
        return reply(401, &format!("ServiceBusAuthorization: {e}"));
    }
    let method = req.method().as_str().to_string();
    let url = format!(
        "http://{host}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers: Vec<(String, String)> = Vec::new();
    for (n, v) in req.headers() {
        let name = n.as_str();
        if Some(name) == used || HOP_BY_HOP.contains(&name) || name == "host" {
            continue;
        }
        if let Ok(v) = v.to_str() {
            headers.push((display_name(name), v.to_string()));
        }
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(413, &format!("request body: {e}")),
    };
    let to = format!("sb://{}/{path}/", crate::model::strip_port(host));
    let envelope = match to_msbin1(&http_request_xml(
        &new_guid(),
        &method,
        &to,
        &url,
        &headers,
        &body,
    )) {
        Ok(e) => e,
        Err(e) => return reply(400, &format!("the request cannot be relayed: {e}")),
    };
    let listener = match offer_relayed(relay, &registry, &key, &to, crate::model::strip_port(host), "RelayedHttp").await {
        Ok(l) => l,
        Err((_, reason)) => {
            return error_xml(
                502,
                &format!("Bad Gateway. There are no active listeners registered for endpoint: {to} ({reason})"),
            )
        }
    };
    let answer =
        match tokio::time::timeout(RESPONSE_TIMEOUT, exchange(listener, &to, &envelope)).await {
            Err(_) => {
                return error_xml(
                    504,
                    "Gateway Timeout. The listener did not answer within 60 s",
                )
            }
            Ok(Err(e)) => return error_xml(502, &format!("Bad Gateway. {e}")),
            Ok(Ok(m)) => m,
        };
    let parts = match from_msbin1(&answer).and_then(|x| parse_http_response(&x)) {
        Ok(p) => p,
        Err(e) => {
            return error_xml(
                502,
                &format!("Bad Gateway. The listener's response is not valid: {e}"),
            )
        }
    };
    tracing::info!(path = %path, method = %method, status = parts.status, client = %remote, "HTTP relay request answered");
    let mut r = Response::new(full(Bytes::from(parts.body)));
    *r.status_mut() =
        http::StatusCode::from_u16(parts.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    for (n, v) in &parts.headers {
        if HOP_BY_HOP.contains(&n.to_ascii_lowercase().as_str())
            || n.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

/// `content-type` → `Content-Type` (how .NET names them).
fn display_name(n: &str) -> String {
    n.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

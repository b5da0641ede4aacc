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

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyrelay_net::Stream;
use hyrelay_nmf::{ClientConfig, ClientEvent, ClientSession, Encoding, Limits, Mode};
use quick_xml::events::Event as XmlEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::core::{new_guid, Relay};
use crate::front::{full, reply, Body, HOP_BY_HOP};
use crate::model::Namespace;
use crate::wcf_nettcp::{from_msbin1, offer_relayed, to_msbin1};
use crate::wcf_oneway::esc;

/// HTTP request headers, as SOAP headers.
pub const WEB_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/web";
/// `BodyFormat`.
pub const BODY_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/body";
/// `StatusCode`.
pub const STATUS_NS: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/statuscode";
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

/// Whether `path` is served by the HTTP relay: a `RelayedHttp` listener is registered there,
/// or a persistent WCF relay of type `http` exists (then a request without listener gets 502).
pub fn applies(relay: &Relay, ns: &Namespace, path: &str) -> bool {
    let Some(reg) = relay.wcf.get() else {
        return false;
    };
    reg.has_listener_type(&key_of(ns, path), "RelayedHttp")
        || crate::wcf_amqp::persistent_relay(relay, ns, path.trim_matches('/'))
            .is_some_and(|w| w.relay_type == "http")
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

/// Whether `name` can be an XML element name as written (HTTP header names are tokens; a
/// few characters of tokens are not name characters).
fn xml_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// The request envelope for the listener.
pub fn request_xml(
    method: &str,
    to: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> String {
    let ct = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let soap_action = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("soapaction"));
    let format = if ct.starts_with("application/soap+xml") {
        "WrappedSoap12"
    } else if ct.starts_with("text/xml") && soap_action {
        "WrappedSoap11"
    } else {
        "Raw"
    };
    let mut h = String::new();
    for (n, v) in headers {
        if xml_name(n) {
            h.push_str(&format!(r#"<{n} xmlns="{WEB_NS}">{}</{n}>"#, esc(v)));
        }
    }
    let body_xml = if body.is_empty() {
        String::new()
    } else {
        format!(
            "<Binary>{}</Binary>",
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    };
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">{}</a:Action><a:MessageID>urn:uuid:{}</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">{}</a:To>{h}<HttpAddress xmlns="{WEB_NS}">{}</HttpAddress><BodyFormat xmlns="{BODY_NS}">{format}</BodyFormat></s:Header><s:Body>{body_xml}</s:Body></s:Envelope>"#,
        esc(method),
        new_guid(),
        esc(to),
        esc(url)
    )
}

/// What the listener answered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseParts {
    /// `StatusCode` (202 when absent).
    pub status: u16,
    /// `FaultReason`.
    pub reason: Option<String>,
    /// Headers in the web namespace.
    pub headers: Vec<(String, String)>,
    /// Body bytes (`<Binary>` base64, or the body element's text).
    pub body: Vec<u8>,
}

/// Reads the listener's response envelope (text XML).
pub fn parse_response(xml: &str) -> Result<ResponseParts, String> {
    let mut out = ResponseParts {
        status: 202,
        ..Default::default()
    };
    let mut r = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<(String, String)> = Vec::new(); // (namespace, local)
    let mut text = String::new();
    loop {
        match r.read_resolved_event() {
            Ok((ns, XmlEvent::Start(e))) => {
                let nsv = match ns {
                    quick_xml::name::ResolveResult::Bound(n) => {
                        String::from_utf8_lossy(n.as_ref()).into_owned()
                    }
                    _ => String::new(),
                };
                stack.push((
                    nsv,
                    String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                ));
                text.clear();
            }
            Ok((_, XmlEvent::Text(t))) => {
                text.push_str(&t.unescape().map_err(|e| e.to_string())?);
            }
            Ok((_, XmlEvent::End(_))) => {
                let Some((ns, local)) = stack.pop() else {
                    break;
                };
                let in_header = stack.len() == 2 && stack[1].1 == "Header";
                let in_body = stack.len() == 2 && stack[1].1 == "Body";
                if in_header && ns == STATUS_NS && local == "StatusCode" {
                    out.status = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("StatusCode '{}' is not a number", text.trim()))?;
                } else if in_header && ns == WEB_NS && local == "FaultReason" {
                    out.reason = Some(text.clone());
                } else if in_header && ns == WEB_NS && local != "HttpAddress" {
                    out.headers.push((local, text.clone()));
                } else if in_body && local == "Binary" {
                    out.body = base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| format!("the Binary body is not base64: {e}"))?;
                } else if in_body {
                    out.body = text.clone().into_bytes();
                }
                text.clear();
            }
            Ok((_, XmlEvent::Eof)) => break,
            Err(e) => return Err(e.to_string()),
            _ => {}
        }
    }
    if !(100..=599).contains(&out.status) {
        return Err(format!("StatusCode {} is not an HTTP status", out.status));
    }
    Ok(out)
}

/// One request/response on a new session with the listener's stream.
async fn exchange(mut s: Stream, via: &str, envelope: &[u8]) -> Result<Vec<u8>, String> {
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

/// Relays one HTTP request to a `RelayedHttp` listener of `path`.
pub async fn handle(
    relay: &Arc<Relay>,
    remote: SocketAddr,
    req: Request<Incoming>,
    ns: &Namespace,
    path: &str,
    host: &str,
    query_token: Option<String>,
) -> Response<Body> {
    let path = path.trim_matches('/').to_string();
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
    let envelope = match to_msbin1(&request_xml(&method, &to, &url, &headers, &body)) {
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
    let parts = match from_msbin1(&answer).and_then(|x| parse_response(&x)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_maps_to_the_documented_headers_and_back() {
        let xml = request_xml(
            "POST",
            "sb://contoso/cc/",
            "http://contoso/cc?x=1",
            &[
                ("Content-Type".into(), "text/xml; charset=utf-8".into()),
                ("SOAPAction".into(), "\"urn:check\"".into()),
                ("Weird:Name".into(), "dropped".into()),
            ],
            b"<s:Envelope/>",
        );
        let bin = to_msbin1(&xml).unwrap();
        let back = from_msbin1(&bin).unwrap();
        assert!(back.contains("WrappedSoap11"), "{back}");
        assert!(back.contains(r#"<SOAPAction xmlns="http://schemas.microsoft.com/netservices/2009/05/servicebus/web">"urn:check"</SOAPAction>"#) || back.contains("&quot;urn:check&quot;"), "{back}");
        assert!(!back.contains("dropped"));
        assert!(
            back.contains("<Binary>PHM6RW52ZWxvcGUvPg==</Binary>"),
            "{back}"
        );
        let resp = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action>POSTResponse</a:Action><StatusCode xmlns="{STATUS_NS}">201</StatusCode><X-Served-By xmlns="{WEB_NS}">legacy</X-Served-By></s:Header><s:Body><Binary>aGk=</Binary></s:Body></s:Envelope>"#
        );
        let p = parse_response(&resp).unwrap();
        assert_eq!(p.status, 201);
        assert_eq!(
            p.headers,
            vec![("X-Served-By".to_string(), "legacy".to_string())]
        );
        assert_eq!(p.body, b"hi");
        assert!(parse_response(&resp.replace(">201<", ">9999<")).is_err());
        let none = parse_response(r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body/></s:Envelope>"#).unwrap();
        assert_eq!(none.status, 202);
    }
}

//! What operators see: Prometheus `GET /metrics`, `GET /status.json` and the live status
//! page at `/`, all on the management address.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::json;

use crate::core::{entity_key, Relay, AUTH_REASONS, NOTICE_KINDS};
use crate::front::Body;

const PAGE: &str = include_str!("../assets/status.html");

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Serves the observability paths; `None` for anything else.
pub async fn serve(relay: &Relay, target: &str) -> Option<Response<Body>> {
    let path = target.split('?').next().unwrap_or("");
    Some(match path {
        "/" | "/index.html" => respond(200, "text/html; charset=utf-8", PAGE),
        "/metrics" => respond(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(relay),
        ),
        "/status.json" => respond(200, "application/json", status(relay).await.to_string()),
        _ => return None,
    })
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of this gateway.
pub fn metrics(relay: &Relay) -> String {
    let gw = esc(relay.store.gateway_id());
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let model = relay.model();
    let hcs: Vec<(String, String, String)> = model
        .iter()
        .flat_map(|ns| {
            ns.hybrid_connections.iter().map(|h| {
                (
                    ns.name.clone(),
                    h.name.clone(),
                    entity_key(&ns.name, &h.name),
                )
            })
        })
        .collect();
    let per_hc = |o: &mut String, name: &str, f: &dyn Fn(&str) -> u64| {
        for (ns, hc, key) in &hcs {
            let _ = writeln!(
                o,
                "{name}{{gateway=\"{gw}\",namespace=\"{}\",hybrid_connection=\"{}\"}} {}",
                esc(ns),
                esc(hc),
                f(key)
            );
        }
    };
    family(
        &mut o,
        "hyrelay_listeners",
        "gauge",
        "Listeners connected to this gateway, per hybrid connection.",
    );
    per_hc(&mut o, "hyrelay_listeners", &|k| {
        relay.listener_count(k) as u64
    });
    family(
        &mut o,
        "hyrelay_active_connections",
        "gauge",
        "Relayed WebSocket connections open on this gateway.",
    );
    per_hc(&mut o, "hyrelay_active_connections", &|k| {
        relay.stats(k).active.load(Ordering::Relaxed)
    });
    family(
        &mut o,
        "hyrelay_connects_total",
        "counter",
        "Relayed WebSocket connections established on this gateway.",
    );
    per_hc(&mut o, "hyrelay_connects_total", &|k| {
        relay.stats(k).connects.load(Ordering::Relaxed)
    });
    family(
        &mut o,
        "hyrelay_http_requests_total",
        "counter",
        "Relayed HTTP requests answered through this gateway.",
    );
    per_hc(&mut o, "hyrelay_http_requests_total", &|k| {
        relay.stats(k).requests.load(Ordering::Relaxed)
    });
    family(
        &mut o,
        "hyrelay_bytes_total",
        "counter",
        "Bytes relayed over WebSocket connections, by direction.",
    );
    for (ns, hc, key) in &hcs {
        let st = relay.stats(key);
        for (dir, v) in [
            ("to_listener", st.bytes_to_listener.load(Ordering::Relaxed)),
            ("to_sender", st.bytes_to_sender.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(
                o,
                "hyrelay_bytes_total{{gateway=\"{gw}\",namespace=\"{}\",hybrid_connection=\"{}\",direction=\"{dir}\"}} {v}",
                esc(ns),
                esc(hc)
            );
        }
    }
    let c = &relay.counters;
    for (name, help, v) in [
        (
            "hyrelay_listens_total",
            "Listener control channels opened.",
            &c.listens,
        ),
        (
            "hyrelay_refused_total",
            "Handshakes refused (authorization, unknown entity, quota, no listener).",
            &c.refused,
        ),
        (
            "hyrelay_throttled_total",
            "Requests refused by the failure rate limiter.",
            &c.throttled,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(
            o,
            "{name}{{gateway=\"{gw}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    family(
        &mut o,
        "hyrelay_auth_failures_total",
        "counter",
        "Refused tokens, by reason.",
    );
    for (i, reason) in AUTH_REASONS.iter().enumerate() {
        let _ = writeln!(
            o,
            "hyrelay_auth_failures_total{{gateway=\"{gw}\",reason=\"{reason}\"}} {}",
            c.auth_failures[i].load(Ordering::Relaxed)
        );
    }
    family(
        &mut o,
        "hyrelay_gateway_notices_total",
        "counter",
        "Notices received from other gateways (or this one's own pings), by kind.",
    );
    for (i, kind) in NOTICE_KINDS.iter().enumerate() {
        let _ = writeln!(
            o,
            "hyrelay_gateway_notices_total{{gateway=\"{gw}\",kind=\"{kind}\"}} {}",
            c.notices[i].load(Ordering::Relaxed)
        );
    }
    let h = relay.store.health();
    let kind = relay.store.kind();
    family(
        &mut o,
        "hyrelay_store_up",
        "gauge",
        "1 when the last gateway store operation succeeded.",
    );
    let _ = writeln!(
        o,
        "hyrelay_store_up{{gateway=\"{gw}\",store=\"{kind}\"}} {}",
        u8::from(h.up.load(Ordering::Relaxed))
    );
    family(
        &mut o,
        "hyrelay_store_errors_total",
        "counter",
        "Failed gateway store operations.",
    );
    let _ = writeln!(
        o,
        "hyrelay_store_errors_total{{gateway=\"{gw}\",store=\"{kind}\"}} {}",
        h.errors.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "hyrelay_store_round_trip_seconds",
        "summary",
        "Gateway store operation round-trip time.",
    );
    let _ = writeln!(
        o,
        "hyrelay_store_round_trip_seconds_sum{{gateway=\"{gw}\",store=\"{kind}\"}} {:.6}\nhyrelay_store_round_trip_seconds_count{{gateway=\"{gw}\",store=\"{kind}\"}} {}",
        h.rtt_us_total.load(Ordering::Relaxed) as f64 / 1e6,
        h.operations.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "hyrelay_uptime_seconds",
        "gauge",
        "Seconds since this gateway started.",
    );
    let _ = writeln!(
        o,
        "hyrelay_uptime_seconds{{gateway=\"{gw}\"}} {}",
        relay.started.elapsed().as_secs()
    );
    o
}

/// Everything the status page shows, listeners of every gateway included.
pub async fn status(relay: &Relay) -> serde_json::Value {
    let model = relay.model();
    let own = relay.store.gateway_id().to_string();
    let mut namespaces = Vec::new();
    for ns in model.iter() {
        let mut hcs = Vec::new();
        for h in &ns.hybrid_connections {
            let key = entity_key(&ns.name, &h.name);
            let (local, remote) = relay.all_listeners(&key).await;
            let mut ls: Vec<serde_json::Value> = local
                .iter()
                .map(|l| {
                    json!({
                        "id": l.tracking_id,
                        "gateway": own,
                        "remote": l.remote.to_string(),
                        "routed": l.routed.load(Ordering::Relaxed),
                        "connected_seconds": l.since.elapsed().as_secs(),
                    })
                })
                .collect();
            ls.extend(
                remote
                    .iter()
                    .map(|r| json!({"id": r.tracking_id, "gateway": r.gateway})),
            );
            let st = relay.stats(&key);
            hcs.push(json!({
                "name": h.name,
                "requires_client_authorization": h.requires_client_authorization,
                "listeners": ls,
                "active_connections": st.active.load(Ordering::Relaxed),
                "connects": st.connects.load(Ordering::Relaxed),
                "requests": st.requests.load(Ordering::Relaxed),
                "bytes_to_listener": st.bytes_to_listener.load(Ordering::Relaxed),
                "bytes_to_sender": st.bytes_to_sender.load(Ordering::Relaxed),
            }));
        }
        namespaces.push(json!({"name": ns.name, "hosts": ns.hosts, "hybrid_connections": hcs}));
    }
    let c = &relay.counters;
    let h = relay.store.health();
    json!({
        "gateway": {
            "id": own,
            "store": relay.store.kind(),
            "store_up": h.up.load(Ordering::Relaxed),
            "uptime_seconds": relay.started.elapsed().as_secs(),
        },
        "namespaces": namespaces,
        "totals": {
            "listeners": relay.total_listeners(),
            "active_connections": c.active_connections.load(Ordering::Relaxed),
            "connects": c.connects.load(Ordering::Relaxed),
            "requests": c.requests.load(Ordering::Relaxed),
            "relayed_bytes": c.bytes.load(Ordering::Relaxed),
            "refused": c.refused.load(Ordering::Relaxed),
        },
        "time_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
    })
}

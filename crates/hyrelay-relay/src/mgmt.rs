//! Management: operations on the run-time state (used offline by the CLI on a data
//! directory, and online through the HTTP API under `/$hyrelay/`), and the API itself.
//!
//! API (every call needs a namespace-scope token with Manage rights):
//! * `GET /$hyrelay/status` — listeners, counters.
//! * `GET /$hyrelay/wcfrelays`, `GET|PUT|DELETE /$hyrelay/wcfrelays/{name}` (`PUT` body:
//!   `{"relay_type": "nettcp", "requires_client_authorization": true}`)
//! * `GET /$hyrelay/hycos`, `GET|PUT|DELETE /$hyrelay/hycos/{name}` (`PUT` body:
//!   `{"requires_client_authorization": bool}`).
//! * `GET /$hyrelay/policies[?hyco=NAME]`, `PUT|DELETE /$hyrelay/policies/{name}[?hyco=NAME]`
//!   (`PUT` body: `{"rights": ["listen","send"]}`).
//! * `POST /$hyrelay/keys/{policy}/renew?which=primary|secondary[&hyco=NAME]`,
//!   `GET /$hyrelay/keys/{policy}[?hyco=NAME]`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyrelay_hc::sas::Rights;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::State;
use crate::core::{entity_key, now_secs, Relay};
use crate::front::{reply, Body, ConnInfo};
use crate::model::{authorize, HybridConnection, Namespace, Rule};

/// A management operation failed; carries the HTTP status to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(status: u16, message: impl Into<String>) -> OpError {
    OpError {
        status,
        message: message.into(),
    }
}

/// Validates an entity name: 1–260 chars of letters, digits, `.-_/`, no empty segments.
pub fn check_name(name: &str) -> Result<(), OpError> {
    let ok = !name.is_empty()
        && name.len() <= 260
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
        && !name.split('/').any(str::is_empty)
        && !name.starts_with('$');
    if ok {
        Ok(())
    } else {
        Err(err(400, format!("'{name}' is not a valid name: use 1-260 letters, digits, '-', '.', '_' and '/' between non-empty segments")))
    }
}

/// The state-file namespace for `ns_name`, created if missing (with the hosts of the merged view).
fn state_ns<'a>(state: &'a mut State, ns_name: &str) -> &'a mut Namespace {
    if let Some(i) = state
        .namespaces
        .iter()
        .position(|n| n.name.eq_ignore_ascii_case(ns_name))
    {
        return &mut state.namespaces[i];
    }
    state.namespaces.push(Namespace {
        name: ns_name.to_string(),
        hosts: Vec::new(),
        rules: Vec::new(),
        hybrid_connections: Vec::new(),
        wcf_relays: Vec::new(),
    });
    let n = state.namespaces.len() - 1;
    &mut state.namespaces[n]
}

/// Operations against the merged view `merged` (config + state), writing to `state`.
pub struct Ops<'a> {
    /// The merged entities (to check names and fixed entities).
    pub merged: &'a [Namespace],
    /// The state to change.
    pub state: &'a mut State,
    /// Namespace to act on.
    pub namespace: String,
}

/// A hybrid connection as shown by the CLI and API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HcView {
    /// Name.
    pub name: String,
    /// Senders need a token.
    pub requires_client_authorization: bool,
    /// Listeners connected (only known to a running relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_count: Option<usize>,
    /// Entity-level rules.
    pub policies: Vec<String>,
    /// Defined in the config file.
    pub fixed: bool,
}

/// A persistent WCF relay as shown by the CLI and API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WcfRelayView {
    /// Name.
    pub name: String,
    /// `nettcp`, `http`, `oneway` or `event`.
    pub relay_type: String,
    /// Senders need a token.
    pub requires_client_authorization: bool,
    /// Listeners registered (only known to a running relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_count: Option<usize>,
    /// Defined in the config file.
    pub fixed: bool,
}

impl From<&crate::model::WcfRelay> for WcfRelayView {
    fn from(w: &crate::model::WcfRelay) -> Self {
        WcfRelayView {
            name: w.name.clone(),
            relay_type: w.relay_type.clone(),
            requires_client_authorization: w.requires_client_authorization,
            listener_count: None,
            fixed: w.fixed,
        }
    }
}

/// Relay types `wcfrelay create` accepts (`--relay-type`).
pub const WCF_RELAY_TYPES: [&str; 4] = ["nettcp", "http", "oneway", "event"];

impl<'a> Ops<'a> {
    /// Creates a persistent WCF relay.
    pub fn create_wcf_relay(
        &mut self,
        name: &str,
        relay_type: &str,
        requires_client_authorization: bool,
    ) -> Result<WcfRelayView, OpError> {
        let name = name.trim_matches('/');
        check_name(name)?;
        let relay_type = relay_type.to_ascii_lowercase();
        if !WCF_RELAY_TYPES.contains(&relay_type.as_str()) {
            return Err(err(
                400,
                format!("relay type '{relay_type}' is not one of nettcp, http, oneway, event"),
            ));
        }
        let m = self.merged_ns()?;
        if m.wcf_relay(name).is_some() {
            return Err(err(409, format!("WCF relay '{name}' already exists")));
        }
        if m.hc(name).is_some() {
            return Err(err(
                409,
                format!("'{name}' is a hybrid connection; a WCF relay cannot have the same name"),
            ));
        }
        let w = crate::model::WcfRelay {
            name: name.to_string(),
            relay_type,
            requires_client_authorization,
            created_at: now_secs(),
            fixed: false,
        };
        let view = WcfRelayView::from(&w);
        state_ns(self.state, &self.namespace).wcf_relays.push(w);
        Ok(view)
    }

    /// Deletes a persistent WCF relay created at run time.
    pub fn delete_wcf_relay(&mut self, name: &str) -> Result<(), OpError> {
        let w = self
            .merged_ns()?
            .wcf_relay(name)
            .ok_or_else(|| err(404, format!("WCF relay '{name}' does not exist")))?;
        if w.fixed {
            return Err(err(
                409,
                format!("WCF relay '{name}' is defined in the configuration file; remove it there"),
            ));
        }
        state_ns(self.state, &self.namespace)
            .wcf_relays
            .retain(|x| !x.name.eq_ignore_ascii_case(name.trim_matches('/')));
        Ok(())
    }

    /// Lists persistent WCF relays.
    pub fn list_wcf_relays(&self) -> Result<Vec<WcfRelayView>, OpError> {
        Ok(self
            .merged_ns()?
            .wcf_relays
            .iter()
            .map(WcfRelayView::from)
            .collect())
    }

    fn merged_ns(&self) -> Result<&Namespace, OpError> {
        self.merged
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(&self.namespace))
            .ok_or_else(|| {
                err(
                    404,
                    format!("namespace '{}' does not exist", self.namespace),
                )
            })
    }

    /// Creates a hybrid connection.
    pub fn create_hc(
        &mut self,
        name: &str,
        requires_client_authorization: bool,
    ) -> Result<HcView, OpError> {
        let name = name.trim_matches('/');
        check_name(name)?;
        if self.merged_ns()?.hc(name).is_some() {
            return Err(err(
                409,
                format!("hybrid connection '{name}' already exists"),
            ));
        }
        let ns = state_ns(self.state, &self.namespace);
        ns.hybrid_connections.push(HybridConnection {
            name: name.to_string(),
            requires_client_authorization,
            rules: Vec::new(),
            user_metadata: String::new(),
            created_at: now_secs(),
            fixed: false,
        });
        Ok(HcView {
            name: name.to_string(),
            requires_client_authorization,
            listener_count: None,
            policies: vec![],
            fixed: false,
        })
    }

    /// Deletes a hybrid connection created at run time.
    pub fn delete_hc(&mut self, name: &str) -> Result<(), OpError> {
        let m = self.merged_ns()?;
        let hc = m
            .hc(name)
            .ok_or_else(|| err(404, format!("hybrid connection '{name}' does not exist")))?;
        if hc.fixed {
            return Err(err(409, format!("hybrid connection '{name}' is defined in the configuration file; remove it there")));
        }
        let ns = state_ns(self.state, &self.namespace);
        ns.hybrid_connections
            .retain(|h| !h.name.eq_ignore_ascii_case(name.trim_matches('/')));
        Ok(())
    }

    /// Lists hybrid connections.
    pub fn list_hcs(&self) -> Result<Vec<HcView>, OpError> {
        Ok(self
            .merged_ns()?
            .hybrid_connections
            .iter()
            .map(|h| HcView {
                name: h.name.clone(),
                requires_client_authorization: h.requires_client_authorization,
                listener_count: None,
                policies: h.rules.iter().map(|r| r.name.clone()).collect(),
                fixed: h.fixed,
            })
            .collect())
    }

    fn rules_mut(&mut self, hc: Option<&str>) -> Result<&mut Vec<Rule>, OpError> {
        if let Some(h) = hc {
            let m = self.merged_ns()?;
            let existing = m
                .hc(h)
                .ok_or_else(|| err(404, format!("hybrid connection '{h}' does not exist")))?
                .clone();
            let ns = state_ns(self.state, &self.namespace);
            if ns.hc(h).is_none() {
                // A configured entity: keep run-time rules in a state entry of the same name.
                ns.hybrid_connections.push(HybridConnection {
                    rules: Vec::new(),
                    fixed: false,
                    ..existing
                });
            }
            Ok(&mut ns
                .hc_mut(h)
                .ok_or_else(|| err(500, "state entry vanished"))?
                .rules)
        } else {
            Ok(&mut state_ns(self.state, &self.namespace).rules)
        }
    }

    fn merged_rules(&self, hc: Option<&str>) -> Result<Vec<Rule>, OpError> {
        let m = self.merged_ns()?;
        match hc {
            Some(h) => Ok(m
                .hc(h)
                .ok_or_else(|| err(404, format!("hybrid connection '{h}' does not exist")))?
                .rules
                .clone()),
            None => Ok(m.rules.clone()),
        }
    }

    /// Creates a policy (SAS rule) with fresh keys.
    pub fn create_policy(
        &mut self,
        name: &str,
        rights: Rights,
        hc: Option<&str>,
    ) -> Result<Rule, OpError> {
        if name.is_empty() || name.len() > 256 || name.contains(['&', '=', ' ']) {
            return Err(err(400, format!("'{name}' is not a valid policy name")));
        }
        if rights == Rights::NONE {
            return Err(err(
                400,
                "a policy needs at least one right (listen, send, manage)",
            ));
        }
        let existing = self.merged_rules(hc)?;
        if existing.iter().any(|r| r.name == name) {
            return Err(err(409, format!("policy '{name}' already exists")));
        }
        if existing.len() >= 12 {
            return Err(err(403, "at most 12 policies per namespace or entity"));
        }
        let rule = Rule::generate(name, rights);
        self.rules_mut(hc)?.push(rule.clone());
        Ok(rule)
    }

    /// Deletes a policy created at run time.
    pub fn delete_policy(&mut self, name: &str, hc: Option<&str>) -> Result<(), OpError> {
        let existing = self.merged_rules(hc)?;
        let r = existing
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| err(404, format!("policy '{name}' does not exist")))?;
        if r.fixed {
            return Err(err(
                409,
                format!("policy '{name}' is defined in the configuration file"),
            ));
        }
        self.rules_mut(hc)?.retain(|r| r.name != name);
        Ok(())
    }

    /// Lists policies.
    pub fn list_policies(&self, hc: Option<&str>) -> Result<Vec<Rule>, OpError> {
        self.merged_rules(hc)
    }

    /// Shows a policy with its keys.
    pub fn policy(&self, name: &str, hc: Option<&str>) -> Result<Rule, OpError> {
        self.merged_rules(hc)?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| err(404, format!("policy '{name}' does not exist")))
    }

    /// Regenerates the primary or secondary key.
    pub fn renew_key(
        &mut self,
        name: &str,
        hc: Option<&str>,
        secondary: bool,
    ) -> Result<Rule, OpError> {
        let r = self.policy(name, hc)?;
        if r.fixed {
            return Err(err(
                409,
                format!(
                    "policy '{name}' is defined in the configuration file; change its keys there"
                ),
            ));
        }
        let rules = self.rules_mut(hc)?;
        let rule = rules
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| err(404, format!("policy '{name}' does not exist")))?;
        if secondary {
            rule.secondary_key = crate::model::new_key();
        } else {
            rule.primary_key = crate::model::new_key();
        }
        Ok(rule.clone())
    }
}

/// JSON shape of a policy.
pub fn policy_json(r: &Rule) -> serde_json::Value {
    json!({
        "name": r.name,
        "rights": r.rights.names(),
        "primary_key": r.primary_key,
        "secondary_key": r.secondary_key,
        "fixed": r.fixed,
    })
}

fn json_reply(status: u16, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(v.to_string() + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query_param(q: &str, key: &str) -> Option<String> {
    q.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Status as JSON.
pub fn status_json(relay: &Relay) -> serde_json::Value {
    let model = relay.model();
    let c = &relay.counters;
    let mut hcs = Vec::new();
    for ns in model.iter() {
        for h in &ns.hybrid_connections {
            let key = entity_key(&ns.name, &h.name);
            let ls: Vec<_> = relay
                .listeners_of(&key)
                .iter()
                .map(|l| json!({"id": l.tracking_id, "remote": l.remote.to_string(), "routed": l.routed.load(Ordering::Relaxed), "connected_seconds": l.since.elapsed().as_secs()}))
                .collect();
            hcs.push(json!({"namespace": ns.name, "name": h.name, "requires_client_authorization": h.requires_client_authorization, "listeners": ls}));
        }
    }
    json!({
        "hybrid_connections": hcs,
        "listeners": relay.total_listeners(),
        "counters": {
            "listens": c.listens.load(Ordering::Relaxed),
            "connects": c.connects.load(Ordering::Relaxed),
            "requests": c.requests.load(Ordering::Relaxed),
            "refused": c.refused.load(Ordering::Relaxed),
            "throttled": c.throttled.load(Ordering::Relaxed),
            "relayed_bytes": c.bytes.load(Ordering::Relaxed),
            "active_connections": c.active_connections.load(Ordering::Relaxed),
        }
    })
}

/// Handles `/$hyrelay/…`.
pub async fn handle(
    relay: Arc<Relay>,
    conn: ConnInfo,
    req: Request<Incoming>,
    host: &str,
) -> Response<Body> {
    let Some(ns) = relay.namespace_for(host) else {
        return reply(404, &format!("No namespace is served at host '{host}'"));
    };
    let token = req
        .headers()
        .get("authorization")
        .or_else(|| req.headers().get("servicebusauthorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Err(e) = authorize(
        &ns,
        None,
        token.as_deref(),
        Rights::MANAGE,
        now_secs(),
        relay.opts.clock_skew.as_secs(),
    ) {
        relay.limiter.failed(conn.remote.ip(), "$hyrelay");
        return reply(e.status(), &format!("management API: {e}"));
    }
    let path = req
        .uri()
        .path()
        .trim_start_matches("/$hyrelay")
        .trim_matches('/')
        .to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(400, &format!("reading the request body: {e}")),
    };
    let hyco = query_param(&query, "hyco");
    let parts: Vec<&str> = path.splitn(2, '/').collect();
    let head = parts.first().copied().unwrap_or("");
    let rest = parts.get(1).copied().unwrap_or("").to_string();

    if head == "status" && method == Method::GET {
        return json_reply(200, status_json(&relay));
    }
    if !relay.can_manage() {
        return reply(
            501,
            "this relay keeps no data directory and no shared store: run-time management is off",
        );
    }
    let mut state = match relay.load_state().await {
        Ok(s) => s,
        Err(e) => return reply(500, &e),
    };
    let merged = relay.model();
    let mut ops = Ops {
        merged: &merged,
        state: &mut state,
        namespace: ns.name.clone(),
    };
    let result: Result<(u16, serde_json::Value, bool), OpError> = match (head, method.clone()) {
        ("hycos", Method::GET) if rest.is_empty() => ops.list_hcs().map(|mut v| {
            for h in &mut v {
                h.listener_count = Some(relay.listener_count(&entity_key(&ns.name, &h.name)));
            }
            (200, json!(v), false)
        }),
        ("hycos", Method::GET) => ops.list_hcs().and_then(|v| {
            let mut h = v
                .into_iter()
                .find(|h| h.name.eq_ignore_ascii_case(&rest))
                .ok_or_else(|| err(404, format!("hybrid connection '{rest}' does not exist")))?;
            h.listener_count = Some(relay.listener_count(&entity_key(&ns.name, &h.name)));
            Ok((200, json!(h), false))
        }),
        ("hycos", Method::PUT) => {
            let rca = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("requires_client_authorization")
                        .and_then(|b| b.as_bool())
                })
                .unwrap_or(true);
            ops.create_hc(&rest, rca).map(|v| (201, json!(v), true))
        }
        ("hycos", Method::DELETE) => ops
            .delete_hc(&rest)
            .map(|_| (200, json!({"deleted": rest}), true)),
        ("wcfrelays", Method::GET) => ops.list_wcf_relays().and_then(|v| {
            let count = |name: &str| {
                relay.wcf.get().map(|r| {
                    r.listeners(&format!(
                        "{}/{}",
                        ns.name.to_ascii_lowercase(),
                        name.to_ascii_lowercase()
                    ))
                    .len()
                })
            };
            if rest.is_empty() {
                let v: Vec<_> = v
                    .into_iter()
                    .map(|mut w| {
                        w.listener_count = count(&w.name);
                        w
                    })
                    .collect();
                return Ok((200, json!(v), false));
            }
            let mut w = v
                .into_iter()
                .find(|w| w.name.eq_ignore_ascii_case(&rest))
                .ok_or_else(|| err(404, format!("WCF relay '{rest}' does not exist")))?;
            w.listener_count = count(&w.name);
            Ok((200, json!(w), false))
        }),
        ("wcfrelays", Method::PUT) => {
            let v = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
            let rca = v
                .get("requires_client_authorization")
                .and_then(|b| b.as_bool())
                .unwrap_or(true);
            let ty = v
                .get("relay_type")
                .and_then(|t| t.as_str())
                .unwrap_or("nettcp")
                .to_string();
            ops.create_wcf_relay(&rest, &ty, rca)
                .map(|v| (201, json!(v), true))
        }
        ("wcfrelays", Method::DELETE) => ops
            .delete_wcf_relay(&rest)
            .map(|_| (200, json!({"deleted": rest}), true)),
        ("policies", Method::GET) if rest.is_empty() => {
            ops.list_policies(hyco.as_deref()).map(|v| {
                (
                    200,
                    json!(v.iter().map(policy_json).collect::<Vec<_>>()),
                    false,
                )
            })
        }
        ("policies", Method::GET) => ops
            .policy(&rest, hyco.as_deref())
            .map(|r| (200, policy_json(&r), false)),
        ("policies", Method::PUT) => {
            let rights = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("rights").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                .unwrap_or_default();
            match Rights::parse_list(&rights.join(",")) {
                Ok(r) => ops
                    .create_policy(&rest, r, hyco.as_deref())
                    .map(|r| (201, policy_json(&r), true)),
                Err(e) => Err(err(400, e)),
            }
        }
        ("policies", Method::DELETE) => ops
            .delete_policy(&rest, hyco.as_deref())
            .map(|_| (200, json!({"deleted": rest}), true)),
        ("keys", Method::GET) => ops
            .policy(&rest, hyco.as_deref())
            .map(|r| (200, policy_json(&r), false)),
        ("keys", Method::POST) => {
            let name = rest.trim_end_matches("/renew").to_string();
            let secondary = query_param(&query, "which").as_deref() == Some("secondary");
            ops.renew_key(&name, hyco.as_deref(), secondary)
                .map(|r| (200, policy_json(&r), true))
        }
        _ => Err(err(
            404,
            format!("no management operation {method} /$hyrelay/{path}"),
        )),
    };
    match result {
        Ok((status, v, changed)) => {
            if changed {
                if let Err(e) = relay.save_state(&state).await {
                    return reply(500, &e);
                }
            }
            json_reply(status, v)
        }
        Err(e) => reply(e.status, &e.message),
    }
}

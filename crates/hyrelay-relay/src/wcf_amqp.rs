//! The WCF Relay listener plane: AMQP 1.0 over TLS (port 5671), as `Microsoft.ServiceBus`
//! listeners of SDK 2.4 and later register (`../shared/protocols/wcf-relay/known.md` 5.1).
//!
//! Fidelity: the SASL exchange, the `:out`/`:in` link pair, the link properties
//! (`com.microsoft:swt`, `listener-type`, `dynamic-relay`), token renewal in `flow`
//! properties and the error conditions are **observed** (F2); the relay's `open` values
//! (idle time-out 60 s, max frame 65 536) and how a listener-type conflict is reported are
//! **inferred** (F3). Listeners are registered here; delivering one-way messages and
//! rendezvous notifications to them is the next step of issue #7.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyrelay_amqp::{AmqpError, Attach, ConnectionEvent, ServerConfig, ServerConnection, Value};
use hyrelay_hc::sas::Rights;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::core::{now_secs, Relay};
use crate::model::{authorize, HybridConnection, Namespace};

/// Azure's limit of listeners on one endpoint (documented).
pub const MAX_LISTENERS: usize = 25;

/// One registered WCF Relay listener (an AMQP link pair).
#[derive(Debug, Clone)]
pub struct WcfListener {
    /// Connection number.
    pub conn: u64,
    /// Link pair base name (the `:in`/`:out` suffixes removed).
    pub link: String,
    /// `Unicast`, `Multicast`, `RelayedConnection`, `DirectConnection`, `RelayedHttp`.
    pub listener_type: String,
    /// Token expiry (unix seconds).
    pub expiry: u64,
    /// Where deliveries for it go: its connection's task, with the link pair's base name.
    pub tx: mpsc::UnboundedSender<(String, Vec<u8>)>,
}

/// The WCF Relay listener registry: namespace/path → listeners.
pub struct WcfRegistry {
    inner: Mutex<HashMap<String, Vec<WcfListener>>>,
    conns: AtomicU64,
    next: AtomicU64,
    /// New AMQP connections per source address: Microsoft's 2.4 listener reconnects at once,
    /// without backoff, whatever the relay said (a storm against a refusing relay).
    storms: crate::core::FailureLimiter,
    storm_logged: Mutex<HashMap<std::net::IpAddr, Instant>>,
    /// NetTcpRelay clients waiting for their listener's `RelayedAccept`, by rendezvous id.
    rendezvous: Mutex<HashMap<String, crate::wcf_nettcp::PendingRelayed>>,
    /// What NetTcpRelay listeners are told to dial (set when the 9352 socket is served).
    pub advertise: std::sync::OnceLock<crate::wcf_nettcp::Advertise>,
    /// `[wcf_relay] extensions`: the paths between the two faces.
    pub extensions: std::sync::atomic::AtomicBool,
    /// `[wcf_relay] without_listener = "drop"`.
    pub drop_without_listener: std::sync::atomic::AtomicBool,
}

impl Default for WcfRegistry {
    fn default() -> Self {
        WcfRegistry {
            inner: Mutex::default(),
            conns: AtomicU64::new(0),
            next: AtomicU64::new(0),
            // A burst of 100 connections (a farm of listeners behind one address), then 10
            // per second, per source address.
            storms: crate::core::FailureLimiter::new(100.0, 10.0),
            storm_logged: Mutex::default(),
            rendezvous: Mutex::default(),
            advertise: std::sync::OnceLock::new(),
            extensions: std::sync::atomic::AtomicBool::new(true),
            drop_without_listener: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl WcfRegistry {
    /// Applies the `[wcf_relay]` switches for inferred and extension behaviour.
    pub fn configure(&self, extensions: bool, drop_without_listener: bool) {
        self.extensions.store(extensions, Ordering::Relaxed);
        self.drop_without_listener
            .store(drop_without_listener, Ordering::Relaxed);
    }

    /// Whether the paths between the faces are on.
    pub fn extensions_on(&self) -> bool {
        self.extensions.load(Ordering::Relaxed)
    }

    /// Whether a new connection from `ip` may proceed (and counts it).
    pub(crate) fn admit(&self, ip: std::net::IpAddr) -> bool {
        if !self.storms.allowed(ip, "amqp") {
            let now = Instant::now();
            if let Ok(mut m) = self.storm_logged.lock() {
                if m.get(&ip)
                    .is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60))
                {
                    m.insert(ip, now);
                    tracing::warn!(source = %ip, "AMQP reconnect storm: new connections from this address are refused (10/s after a burst of 100; logged once a minute)");
                }
            }
            return false;
        }
        self.storms.failed(ip, "amqp");
        true
    }

    /// Listeners on `key` (`namespace/path`, lower case).
    pub fn listeners(&self, key: &str) -> Vec<WcfListener> {
        self.inner
            .lock()
            .map(|m| m.get(key).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Delivers a wrapped one-way message to the listeners of `key`: one of them for
    /// `Unicast` (round robin), every one for `Multicast`. Returns how many got it.
    pub fn deliver(&self, key: &str, message: Vec<u8>) -> usize {
        let ls = self.listeners(key);
        if ls.is_empty() {
            return 0;
        }
        if ls[0].listener_type == "Multicast" {
            ls.iter()
                .filter(|l| l.tx.send((l.link.clone(), message.clone())).is_ok())
                .count()
        } else {
            let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
            for i in 0..ls.len() {
                let l = &ls[(start + i) % ls.len()];
                if l.tx.send((l.link.clone(), message.clone())).is_ok() {
                    return 1;
                }
            }
            0
        }
    }

    /// Sends `message` to one listener of `key` whose type is `listener_type`, picked at
    /// random as Azure does for NetTcpRelay; false when none could take it.
    pub fn deliver_typed(&self, key: &str, listener_type: &str, message: Vec<u8>) -> bool {
        let ls: Vec<WcfListener> = self
            .listeners(key)
            .into_iter()
            .filter(|l| l.listener_type == listener_type)
            .collect();
        if ls.is_empty() {
            return false;
        }
        let start = rand::random::<usize>() % ls.len();
        (0..ls.len()).any(|i| {
            let l = &ls[(start + i) % ls.len()];
            l.tx.send((l.link.clone(), message.clone())).is_ok()
        })
    }

    /// Whether `key` has a listener of `listener_type`.
    pub fn has_listener_type(&self, key: &str, listener_type: &str) -> bool {
        self.listeners(key)
            .iter()
            .any(|l| l.listener_type == listener_type)
    }

    /// Remembers a client waiting for `RelayedAccept{id}` (and forgets expired ones).
    pub fn add_rendezvous(&self, id: &str, p: crate::wcf_nettcp::PendingRelayed) {
        if let Ok(mut m) = self.rendezvous.lock() {
            let now = Instant::now();
            m.retain(|_, v| v.expires > now && !v.tx.is_closed());
            m.insert(id.to_string(), p);
        }
    }

    /// The client waiting for `id`, once: rendezvous ids are single use.
    pub fn take_rendezvous(&self, id: &str) -> Option<crate::wcf_nettcp::PendingRelayed> {
        let p = self.rendezvous.lock().ok()?.remove(id)?;
        (p.expires > Instant::now()).then_some(p)
    }

    fn add(&self, key: &str, l: WcfListener) -> Result<(), AmqpError> {
        let mut m = self
            .inner
            .lock()
            .map_err(|_| AmqpError::new("amqp:internal-error", "registry unavailable"))?;
        let v = m.entry(key.to_string()).or_default();
        if v.iter().any(|x| x.conn == l.conn && x.link == l.link) {
            return Ok(()); // the second link of the pair
        }
        if v.len() >= MAX_LISTENERS {
            return Err(AmqpError::new(
                "amqp:resource-limit-exceeded",
                format!("MaximumListenersPerEndpoint: {key} already has {MAX_LISTENERS} listeners"),
            ));
        }
        if let Some(other) = v.iter().find(|x| x.listener_type != l.listener_type) {
            return Err(AmqpError::new(
                "com.microsoft:address-already-in-use",
                format!(
                    "{key} is already used by {} listeners; this one is {}",
                    other.listener_type, l.listener_type
                ),
            ));
        }
        v.push(l);
        Ok(())
    }

    fn remove(&self, key: &str, conn: u64, link: &str) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(v) = m.get_mut(key) {
                v.retain(|x| !(x.conn == conn && x.link == link));
                if v.is_empty() {
                    m.remove(key);
                }
            }
        }
    }

    fn renew(&self, key: &str, conn: u64, link: &str, expiry: u64) {
        if let Ok(mut m) = self.inner.lock() {
            for l in m.get_mut(key).into_iter().flatten() {
                if l.conn == conn && l.link == link {
                    l.expiry = expiry;
                }
            }
        }
    }
}

/// The persistent WCF relay at `path` of namespace `ns`, as the relay's model has it now.
pub(crate) fn persistent_relay(
    relay: &Relay,
    ns: &Namespace,
    path: &str,
) -> Option<crate::model::WcfRelay> {
    relay
        .model()
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(&ns.name))
        .and_then(|n| n.wcf_relay(path).cloned())
}

/// Authorizes a sender (NetTcpRelay client, one-way sender) for `path`: a persistent relay
/// created with `--no-client-auth` needs no token; otherwise a Send token for the path.
/// Returns the token's expiry (`u64::MAX` when none is needed).
pub(crate) fn authorize_sender(
    relay: &Relay,
    ns: &Namespace,
    path: &str,
    token: Option<&str>,
) -> Result<u64, hyrelay_hc::sas::TokenError> {
    if persistent_relay(relay, ns, path).is_some_and(|w| !w.requires_client_authorization) {
        return Ok(u64::MAX / 2);
    }
    authorize_path(relay, ns, path, token, Rights::SEND)
}

/// The namespace an AMQP `open` hostname names: `{ns}-relay.{root}` → `{ns}.{root}` (or a
/// namespace of that name), else the host as given.
fn namespace_for_vhost(relay: &Relay, hostname: Option<&str>) -> Option<Namespace> {
    let h = hostname?;
    let h = h.split(':').next().unwrap_or(h);
    if let Some((first, rest)) = h.split_once('.') {
        if let Some(ns) = first.strip_suffix("-relay") {
            let plain = format!("{ns}.{rest}");
            if let Some(n) = relay.namespace_for(&plain) {
                return Some(n);
            }
            if let Some(n) = relay
                .model()
                .iter()
                .find(|n| n.name.eq_ignore_ascii_case(ns))
            {
                return Some(n.clone());
            }
        }
    }
    relay.namespace_for(h)
}

/// The path of an `sb://host/path/` link address.
fn path_of(address: &str) -> Option<String> {
    let rest = address.split_once("://").map(|(_, r)| r)?;
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    let path = path.split('?').next().unwrap_or("").trim_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

/// Authorizes `token` for `rights` on the WCF relay at `path`: entity rules do not exist
/// yet, so the namespace's rules decide, with the token's audience covering the path.
/// Returns the token's expiry.
pub(crate) fn authorize_path(
    relay: &Relay,
    ns: &Namespace,
    path: &str,
    token: Option<&str>,
    rights: Rights,
) -> Result<u64, hyrelay_hc::sas::TokenError> {
    let entity = HybridConnection {
        name: path.to_string(),
        requires_client_authorization: true,
        rules: Vec::new(),
        user_metadata: String::new(),
        created_at: 0,
        fixed: false,
    };
    authorize(
        ns,
        Some(&entity),
        token,
        rights,
        now_secs(),
        relay.opts.clock_skew.as_secs(),
    )
    .map(|a| a.expiry)
}

fn check_token(
    ns: &Namespace,
    path: &str,
    token: Option<&str>,
    relay: &Relay,
) -> Result<u64, AmqpError> {
    authorize_path(relay, ns, path, token, Rights::LISTEN)
        .map_err(|e| AmqpError::new("com.microsoft:auth-failed", e.to_string()))
}

struct LinkInfo {
    key: String,
    base: String,
    path: String,
    /// We send on it (the listener's `:in` link): deliveries go here.
    we_send: bool,
}

/// Serves the AMQP listener plane on `listener` (TLS when `tls` is given) forever.
pub async fn serve(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("amqp accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !registry.admit(remote.ip()) {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let relay = relay.clone();
        let registry = registry.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("amqp", peer = %remote);
        tokio::spawn(
            async move {
                match tls {
                    Some(acc) => {
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await {
                            Ok(Ok(s)) => run(relay, registry, s).await,
                            Ok(Err(e)) => tracing::info!(
                                "TLS handshake failed (port 5671 speaks AMQP over TLS): {e}"
                            ),
                            Err(_) => tracing::info!("TLS handshake timed out"),
                        }
                    }
                    None => run(relay, registry, tcp).await,
                }
            }
            .instrument(span),
        );
    }
}

/// Serves one AMQP connection on `io` (TLS on 5671, or a WebSocket bridged to a byte pipe).
pub async fn run<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    relay: Arc<Relay>,
    registry: Arc<WcfRegistry>,
    mut io: S,
) {
    let conn_id = registry.conns.fetch_add(1, Ordering::Relaxed) + 1;
    let grace = relay.opts.limits.token_grace;
    let mut c = ServerConnection::new(ServerConfig::default(), Instant::now());
    let mut ns: Option<Namespace> = None;
    let mut links: HashMap<(u16, u32), LinkInfo> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut next_expiry_check = Instant::now() + Duration::from_secs(1);
    let (dtx, mut drx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    // Deliveries waiting for credit, per link.
    let mut waiting: HashMap<(u16, u32), std::collections::VecDeque<Vec<u8>>> = HashMap::new();
    loop {
        let out = c.take_output();
        if !out.is_empty() && io.write_all(&out).await.is_err() {
            break;
        }
        if c.is_closed() {
            let _ = io.flush().await;
            break;
        }
        let mut delivery = None;
        let n = tokio::select! {
            r = io.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            d = drx.recv() => { delivery = d; 0 }
            _ = tokio::time::sleep_until(next_tick.into()) => 0,
        };
        let now = Instant::now();
        if let Some((base, msg)) = delivery {
            if let Some((k, _)) = links.iter().find(|(_, l)| l.base == base && l.we_send) {
                let q = waiting.entry(*k).or_default();
                if q.len() >= 10_000 {
                    tracing::warn!(link = %base, "listener is not granting credit: a one-way message was dropped");
                } else {
                    q.push_back(hyrelay_amqp::data_message(&msg));
                }
            }
        }
        if n > 0 {
            c.receive(&buf[..n], now);
        }
        next_tick = c.tick(now).min(now + Duration::from_secs(1));
        // Expired tokens, after the grace period: detach with auth-failed. Checked once a
        // second (the tick guarantees a wake-up), not on every read.
        let t = now_secs();
        let check_expiry = now >= next_expiry_check;
        if check_expiry {
            next_expiry_check = now + Duration::from_secs(1);
        }
        let expired: Vec<(u16, u32)> = links
            .iter()
            .filter(|_| check_expiry)
            .filter(|(_, li)| {
                registry.listeners(&li.key).iter().any(|l| {
                    l.conn == conn_id && l.link == li.base && l.expiry + grace.as_secs() < t
                })
            })
            .map(|(k, _)| *k)
            .collect();
        for (ch, h) in expired {
            if let Some(li) = links.remove(&(ch, h)) {
                registry.remove(&li.key, conn_id, &li.base);
                tracing::info!(path = %li.path, "listener token expired and was not renewed within the grace period: detached");
                c.detach(
                    ch,
                    h,
                    Some(&AmqpError::new(
                        "com.microsoft:auth-failed",
                        "the token expired and was not renewed",
                    )),
                    now,
                );
            }
        }
        // Send what the links have credit for, in order.
        for ((ch, h), q) in waiting.iter_mut() {
            while let Some(m) = q.front() {
                if c.transfer(*ch, *h, m, now).is_none() {
                    break;
                }
                q.pop_front();
            }
        }
        for ev in c.take_events() {
            match ev {
                ConnectionEvent::Authenticated { .. } => {}
                ConnectionEvent::Opened { hostname, .. } => {
                    match namespace_for_vhost(&relay, hostname.as_deref()) {
                        Some(n) => ns = Some(n),
                        None => {
                            tracing::info!(hostname = ?hostname, "AMQP open for a namespace this relay does not serve");
                            c.close(
                                Some(&AmqpError::new(
                                    "amqp:not-found",
                                    format!(
                                        "no namespace is served at '{}'",
                                        hostname.unwrap_or_default()
                                    ),
                                )),
                                now,
                            );
                        }
                    }
                }
                ConnectionEvent::Attach { channel, attach } => {
                    let Some(n) = ns.clone() else { continue };
                    match register(&relay, &registry, &n, conn_id, &attach, &dtx) {
                        Ok(li) => {
                            tracing::info!(path = %li.path, link = %attach.name, "WCF relay listener link attached");
                            c.accept_link(channel, &attach, 1000, Value::Null, now);
                            links.insert((channel, attach.handle), li);
                        }
                        Err(e) => {
                            tracing::info!(link = %attach.name, condition = %e.condition, "WCF relay listener refused: {}", e.description);
                            c.refuse_link(channel, &attach, &e, now);
                        }
                    }
                }
                ConnectionEvent::Flow {
                    channel,
                    handle: Some(h),
                    properties,
                    ..
                } => {
                    let Some(tok) = properties
                        .map_get("com.microsoft:swt")
                        .and_then(Value::as_str)
                    else {
                        continue;
                    };
                    let (Some(li), Some(n)) = (links.get(&(channel, h)), ns.as_ref()) else {
                        continue;
                    };
                    match check_token(n, &li.path, Some(tok), &relay) {
                        Ok(exp) => {
                            registry.renew(&li.key, conn_id, &li.base, exp);
                            tracing::debug!(path = %li.path, "listener token renewed");
                        }
                        Err(e) => {
                            // Both links of the pair go.
                            let base = li.base.clone();
                            let key = li.key.clone();
                            registry.remove(&key, conn_id, &base);
                            let pair: Vec<(u16, u32)> = links
                                .iter()
                                .filter(|(_, l)| l.base == base)
                                .map(|(k, _)| *k)
                                .collect();
                            for (ch, hh) in pair {
                                links.remove(&(ch, hh));
                                c.detach(ch, hh, Some(&e), now);
                            }
                            tracing::info!(path = %key, "token renewal refused: {}", e.description);
                        }
                    }
                }
                ConnectionEvent::Detached {
                    channel, handle, ..
                } => {
                    if let Some(li) = links.remove(&(channel, handle)) {
                        registry.remove(&li.key, conn_id, &li.base);
                    }
                }
                ConnectionEvent::Closed { error: Some(e) } => {
                    tracing::info!(condition = %e.condition, "AMQP connection closed: {}", e.description);
                }
                _ => {}
            }
        }
    }
    for li in links.values() {
        registry.remove(&li.key, conn_id, &li.base);
    }
}

fn register(
    relay: &Relay,
    registry: &WcfRegistry,
    ns: &Namespace,
    conn: u64,
    a: &Attach,
    tx: &mpsc::UnboundedSender<(String, Vec<u8>)>,
) -> Result<LinkInfo, AmqpError> {
    let address = a
        .address
        .as_deref()
        .ok_or_else(|| AmqpError::new("amqp:invalid-field", "the link has no sb:// address"))?;
    let path = path_of(address).ok_or_else(|| {
        AmqpError::new(
            "amqp:invalid-field",
            format!("'{address}' names no relay path"),
        )
    })?;
    let token = a.property("com.microsoft:swt").and_then(Value::as_str);
    let expiry = check_token(ns, &path, token, relay)?;
    let listener_type = a
        .property("com.microsoft:listener-type")
        .and_then(Value::as_str)
        .unwrap_or("RelayedConnection")
        .to_string();
    if ![
        "Unicast",
        "Multicast",
        "RelayedConnection",
        "DirectConnection",
        "RelayedHttp",
    ]
    .contains(&listener_type.as_str())
    {
        return Err(AmqpError::new(
            "amqp:invalid-field",
            format!("unknown listener type '{listener_type}'"),
        ));
    }
    let dynamic = a
        .property("com.microsoft:dynamic-relay")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    // The namespace as it is now (a persistent relay may have been created since `open`).
    let persistent = persistent_relay(relay, ns, &path);
    match &persistent {
        None if !dynamic => {
            return Err(AmqpError::new(
                "com.microsoft:relay-not-found",
                format!(
                    "no persistent WCF relay '{path}' exists in namespace '{}' (create it with `hyrelay wcfrelay create`, or register with dynamic-relay = true)",
                    ns.name
                ),
            ))
        }
        Some(w) if !w.listener_types().contains(&listener_type.as_str()) => {
            return Err(AmqpError::new(
                "com.microsoft:address-already-in-use",
                format!(
                    "WCF relay '{path}' is of type {}; a {listener_type} listener cannot register on it",
                    w.relay_type
                ),
            ))
        }
        _ => {}
    }
    let base = a
        .name
        .strip_suffix(":in")
        .or_else(|| a.name.strip_suffix(":out"))
        .unwrap_or(&a.name)
        .to_string();
    let key = format!(
        "{}/{}",
        ns.name.to_ascii_lowercase(),
        path.to_ascii_lowercase()
    );
    registry.add(
        &key,
        WcfListener {
            conn,
            link: base.clone(),
            listener_type,
            expiry,
            tx: tx.clone(),
        },
    )?;
    Ok(LinkInfo {
        key,
        base,
        path,
        we_send: a.peer_is_receiver,
    })
}

/// `wss://ns/$servicebus/websocket` with sub-protocol `wsrelayedamqp`: AMQP inside binary
/// WebSocket messages (F2: the listener's transport when TCP 5671 is not available). The
/// WebSocket is bridged to an in-memory byte pipe that [`run`] serves like a TLS socket.
pub async fn run_websocket(relay: Arc<Relay>, registry: Arc<WcfRegistry>, leg: hyrelay_net::Leg) {
    use hyrelay_net::splice::split;
    use hyrelay_net::ws::{FrameReader, FrameWriter, Role};
    use hyrelay_ws::OpCode;
    let (r, w) = split(leg.stream);
    let mut reader = FrameReader::new(r, leg.leftover, Role::Server, 1 << 20);
    let writer = Arc::new(tokio::sync::Mutex::new(FrameWriter::new(w, Role::Server)));
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut pipe_r, mut pipe_w) = tokio::io::split(ours);
    let amqp = tokio::spawn(run(relay, registry, theirs));
    let w2 = writer.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w2
                        .lock()
                        .await
                        .frame(true, OpCode::Binary, &buf[..n])
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = w2.lock().await.close(1000, "AMQP connection closed").await;
    });
    loop {
        let h = match reader.header().await {
            Ok(Some(h)) => h,
            _ => break,
        };
        let p = match reader.payload(1 << 20).await {
            Ok(p) => p,
            Err(_) => break,
        };
        match h.opcode {
            OpCode::Binary | OpCode::Continuation | OpCode::Text
                if pipe_w.write_all(&p).await.is_err() =>
            {
                break;
            }
            OpCode::Ping => {
                let _ = writer.lock().await.frame(true, OpCode::Pong, &p).await;
            }
            OpCode::Close => break,
            _ => {}
        }
    }
    let _ = pipe_w.shutdown().await;
    let _ = amqp.await;
    down.abort();
}

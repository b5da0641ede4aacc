//! The relay core: entity snapshot, listener registry, pending accepts and HTTP requests,
//! failure rate limiting and counters. The front-ends (Hybrid Connections here, WCF Relay
//! later) are thin layers over this.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyrelay_net::splice::WriteSide;
use hyrelay_net::ws::FrameWriter;
use rand::seq::SliceRandom;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};

use crate::config::{self, ConfigError, Limits, State};
use crate::model::Namespace;
use crate::store::{GatewayStore, MemoryStore, Notice, Registration};

use base64::Engine as _;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Writes a control message (and a binary body after it) to a local listener, back to back.
async fn write_control(
    h: &ListenerHandle,
    message: &str,
    body: Option<&[u8]>,
) -> Result<(), String> {
    let mut w = h.writer.lock().await;
    let r = match w.text(message).await {
        Ok(()) => match body {
            Some(b) => w.frame(true, hyrelay_ws::OpCode::Binary, b).await,
            None => Ok(()),
        },
        Err(e) => Err(e),
    };
    r.map_err(|e| format!("the listener's control channel failed: {e}"))
}

/// Seconds since 1970.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random GUID-shaped id (version 4 layout).
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random 128-bit nonce in hex.
pub fn new_nonce() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Key of an entity in the registry: `namespace/hc`, lower-case.
pub fn entity_key(ns: &str, hc: &str) -> String {
    format!("{}/{}", ns.to_ascii_lowercase(), hc.to_ascii_lowercase())
}

/// Signals the relay sends to a listener's control-channel task.
#[derive(Debug, Clone)]
pub enum ControlSignal {
    /// Close the channel with this code and reason.
    Close(u16, String),
}

/// A connected listener (one control channel).
pub struct ListenerHandle {
    /// Process-unique number.
    pub serial: u64,
    /// The listener's `sb-hc-id` (or a generated one).
    pub tracking_id: String,
    /// Registry key.
    pub entity: String,
    /// Namespace name.
    pub namespace: String,
    /// Hybrid connection name.
    pub hc: String,
    /// `ws://host:port` or `wss://host:port` as the listener reached us: rendezvous addresses
    /// start with this.
    pub base: String,
    /// Listener's address.
    pub remote: SocketAddr,
    /// The control channel's writer. Holding the lock keeps messages back to back.
    pub writer: tokio::sync::Mutex<FrameWriter<WriteSide>>,
    /// Signals to the channel's task.
    pub signals: mpsc::UnboundedSender<ControlSignal>,
    /// Token expiry (unix seconds); renewed by `renewToken`.
    pub expiry: AtomicU64,
    /// Connects and requests routed to it.
    pub routed: AtomicU64,
    /// When it connected.
    pub since: Instant,
}

/// What a listener did with an `accept`.
pub enum AcceptOutcome {
    /// It dialled the address: the relay answered it 101 and hands over its upgrade.
    Accepted {
        /// Sub-protocol the listener chose.
        protocol: Option<String>,
        /// The listener's upgraded connection, once hyper has written the 101.
        upgrade: OnUpgrade,
    },
    /// It rejected the sender with a status.
    Rejected {
        /// HTTP status for the sender.
        code: u16,
        /// Reason phrase.
        description: String,
    },
}

/// A sender waiting for its listener.
pub struct PendingAccept {
    /// Connection id.
    pub id: String,
    /// Entity key.
    pub entity: String,
    /// Listener chosen.
    pub listener: u64,
    /// Where the outcome goes.
    pub tx: oneshot::Sender<AcceptOutcome>,
    /// Deadline.
    pub expires: Instant,
}

/// The body of a relayed HTTP response.
pub enum ResponseBody {
    /// No body.
    Empty,
    /// The whole body (one frame).
    Full(Bytes),
    /// Chunks as they arrive; an `Err` aborts the response.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

/// The start of a relayed HTTP response.
pub struct ResponseStart {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: ResponseBody,
}

/// What must be sent on a rendezvous socket before responses can come back.
pub struct Delivery {
    /// The full `request` JSON.
    pub json: String,
    /// Body bytes already read from the client.
    pub prefix: Bytes,
    /// The rest of the client's body, if it was not complete.
    pub rest: Option<hyper::body::Incoming>,
    /// Whether a body message follows the JSON.
    pub has_body: bool,
}

/// An HTTP request waiting for its response.
pub struct PendingRequest {
    /// Request id.
    pub id: String,
    /// Entity key.
    pub entity: String,
    /// Listener chosen.
    pub listener: u64,
    /// Request to deliver over the rendezvous socket (rendezvous path only).
    pub delivery: Mutex<Option<Delivery>>,
    /// Where the response goes.
    pub response: Mutex<Option<oneshot::Sender<ResponseStart>>>,
}

/// Counters exported as metrics and on the status page.
#[derive(Default)]
pub struct Counters {
    /// Control channels opened.
    pub listens: AtomicU64,
    /// Relayed WebSocket connections established.
    pub connects: AtomicU64,
    /// Relayed HTTP requests answered by a listener.
    pub requests: AtomicU64,
    /// Handshakes refused (auth, not found, quota).
    pub refused: AtomicU64,
    /// Requests refused by the failure rate limiter.
    pub throttled: AtomicU64,
    /// Relayed payload bytes.
    pub bytes: AtomicU64,
    /// Relayed connections currently open.
    pub active_connections: AtomicU64,
    /// Refused tokens by reason (see [`AUTH_REASONS`]).
    pub auth_failures: [AtomicU64; 7],
    /// Notices received from other gateways, by kind (see [`NOTICE_KINDS`]).
    pub notices: [AtomicU64; 6],
}

/// Labels of [`Counters::notices`], in order.
pub const NOTICE_KINDS: [&str; 6] = [
    "deliver",
    "ack",
    "undeliverable",
    "response",
    "ping",
    "state_changed",
];

/// Labels of [`Counters::auth_failures`], in order.
pub const AUTH_REASONS: [&str; 7] = [
    "missing",
    "malformed",
    "unknown_rule",
    "invalid_signature",
    "expired",
    "wrong_audience",
    "missing_right",
];

/// Traffic of one hybrid connection on this gateway.
#[derive(Default)]
pub struct EntityStats {
    /// Relayed WebSocket connections established here.
    pub connects: AtomicU64,
    /// Relayed HTTP requests answered.
    pub requests: AtomicU64,
    /// Relayed connections open now.
    pub active: AtomicU64,
    /// Bytes from senders to listeners.
    pub bytes_to_listener: AtomicU64,
    /// Bytes from listeners to senders.
    pub bytes_to_sender: AtomicU64,
}

/// Per source-and-path failure limiter: a client whose handshakes keep failing (bad token,
/// unknown entity) is answered 429 without any further work once its bucket is empty; others
/// are unaffected.
pub struct FailureLimiter {
    buckets: Mutex<HashMap<(IpAddr, String), (f64, Instant)>>,
    burst: f64,
    per_sec: f64,
}

impl FailureLimiter {
    /// `burst` failures at once, refilled at `per_sec`.
    pub fn new(burst: f64, per_sec: f64) -> Self {
        FailureLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst,
            per_sec,
        }
    }

    fn level(&self, b: &mut (f64, Instant), now: Instant) {
        let dt = now.duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + dt * self.per_sec).min(self.burst);
        b.1 = now;
    }

    /// Whether this source may try again now.
    pub fn allowed(&self, ip: IpAddr, path: &str) -> bool {
        let Ok(mut m) = self.buckets.lock() else {
            return true;
        };
        let now = Instant::now();
        match m.get_mut(&(ip, path.to_ascii_lowercase())) {
            Some(b) => {
                self.level(b, now);
                b.0 >= 1.0
            }
            None => true,
        }
    }

    /// Records a failure.
    pub fn failed(&self, ip: IpAddr, path: &str) {
        let Ok(mut m) = self.buckets.lock() else {
            return;
        };
        let now = Instant::now();
        if m.len() > 100_000 {
            // Forget full buckets first; bounded memory under address spraying.
            let burst = self.burst;
            let per = self.per_sec;
            m.retain(|_, b| {
                let dt = now.duration_since(b.1).as_secs_f64();
                b.0 + dt * per < burst
            });
        }
        let b = m
            .entry((ip, path.to_ascii_lowercase()))
            .or_insert((self.burst, now));
        self.level(b, now);
        b.0 = (b.0 - 1.0).max(0.0);
    }
}

/// Options the relay runs with.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Limits.
    pub limits: Limits,
    /// Where run-time state is kept (None: memory only).
    pub data_dir: Option<PathBuf>,
    /// Namespaces from the configuration file (fixed).
    pub config_namespaces: Vec<Namespace>,
    /// Rendezvous base address of this gateway (`wss://host:port`); None: as the listener
    /// reached us.
    pub public_address: Option<String>,
    /// Tolerated clock skew for token expiry.
    pub clock_skew: Duration,
    /// Response deadline for relayed HTTP (60 s in Azure).
    pub response_timeout: Duration,
    /// This gateway's id (`[gateway] id`).
    pub gateway_id: String,
    /// How long a gateway waits for another to confirm that it handed a notice to its
    /// listener before trying another listener.
    pub relay_ack_timeout: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            limits: Limits::default(),
            data_dir: None,
            config_namespaces: Vec::new(),
            public_address: None,
            clock_skew: Duration::from_secs(60),
            response_timeout: Duration::from_secs(60),
            gateway_id: "local".into(),
            relay_ack_timeout: Duration::from_secs(2),
        }
    }
}

/// Where a sender is routed.
pub enum Route {
    /// A listener connected to this gateway.
    Local(Arc<ListenerHandle>),
    /// A listener connected to another gateway.
    Remote(Registration),
}

impl Route {
    /// The local listener serial, 0 for a remote one (serials start at 1).
    pub fn serial(&self) -> u64 {
        match self {
            Route::Local(h) => h.serial,
            Route::Remote(_) => 0,
        }
    }
    /// For logs: the listener's tracking id and gateway.
    pub fn describe(&self) -> String {
        match self {
            Route::Local(h) => format!("{} (this gateway)", h.tracking_id),
            Route::Remote(r) => format!("{} on gateway {}", r.tracking_id, r.gateway),
        }
    }
}

/// The shared relay state.
pub struct Relay {
    /// Options.
    pub opts: RelayOptions,
    model: RwLock<Arc<Vec<Namespace>>>,
    listeners: Mutex<HashMap<String, Vec<Arc<ListenerHandle>>>>,
    accepts: Mutex<HashMap<String, PendingAccept>>,
    requests: Mutex<HashMap<String, Arc<PendingRequest>>>,
    serial: AtomicU64,
    state_stamp: Mutex<Option<SystemTime>>,
    /// Failure limiter.
    pub limiter: FailureLimiter,
    /// Counters.
    pub counters: Counters,
    /// The gateway store (in-process unless several gateways share one).
    pub store: Arc<dyn GatewayStore>,
    /// Deliveries to other gateways waiting for their answer, by reference.
    waiters: Mutex<HashMap<String, oneshot::Sender<Result<(), String>>>>,
    /// Per hybrid connection traffic.
    stats: Mutex<HashMap<String, Arc<EntityStats>>>,
    /// Requests this gateway handed to one of its listeners for another gateway: request
    /// id → (that gateway, when).
    forwarded: Mutex<HashMap<String, (String, Instant)>>,
    /// When this gateway started.
    pub started: Instant,
    /// The WCF Relay face's listener registry, when that face is on.
    pub wcf: std::sync::OnceLock<Arc<crate::wcf_amqp::WcfRegistry>>,
    /// The namespaces of the configuration file now in force (starts as
    /// `opts.config_namespaces`; [`Relay::reconfigure`] replaces it).
    fixed: RwLock<Vec<Namespace>>,
}

impl Relay {
    /// Builds the relay and loads the state file.
    pub fn new(opts: RelayOptions) -> Result<Arc<Relay>, ConfigError> {
        let store = Arc::new(MemoryStore::new(opts.gateway_id.clone()));
        Self::with_store(opts, store, None)
    }

    /// Builds the relay on a given store; `state` (the store's run-time entities) replaces
    /// the data directory's state file when given.
    pub fn with_store(
        opts: RelayOptions,
        store: Arc<dyn GatewayStore>,
        state: Option<State>,
    ) -> Result<Arc<Relay>, ConfigError> {
        let r = Arc::new(Relay {
            fixed: RwLock::new(opts.config_namespaces.clone()),
            opts,
            model: RwLock::new(Arc::new(Vec::new())),
            listeners: Mutex::new(HashMap::new()),
            accepts: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
            state_stamp: Mutex::new(None),
            limiter: FailureLimiter::new(20.0, 5.0),
            counters: Counters::default(),
            store,
            waiters: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            forwarded: Mutex::new(HashMap::new()),
            started: Instant::now(),
            wcf: std::sync::OnceLock::new(),
        });
        match state {
            Some(st) => r.apply_state(&st),
            None => r.reload()?,
        }
        Ok(r)
    }

    /// The current entity snapshot.
    pub fn model(&self) -> Arc<Vec<Namespace>> {
        self.model.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The namespace serving `host`.
    pub fn namespace_for(&self, host: &str) -> Option<Namespace> {
        self.model().iter().find(|n| n.serves(host)).cloned()
    }

    fn fixed_namespaces(&self) -> Vec<Namespace> {
        self.fixed.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Puts the configuration file's namespaces (re-read on SIGHUP) in force, merged with
    /// the run-time state as at start-up. Listeners of hybrid connections that still exist
    /// stay connected; those of removed ones are closed with 1001; changed rules and keys
    /// apply to the next token checked.
    pub async fn reconfigure(&self, namespaces: Vec<Namespace>) -> Result<(), String> {
        let state = match (&self.opts.data_dir, self.store.shared()) {
            (_, true) => self.load_state().await?,
            (Some(d), false) => State::load(d).map_err(|e| e.to_string())?,
            (None, false) => State::default(),
        };
        if let Ok(mut f) = self.fixed.write() {
            *f = namespaces;
        }
        self.apply_state(&state);
        Ok(())
    }

    /// Applies run-time entities `state` (merged with the configuration's).
    pub fn apply_state(&self, state: &State) {
        self.apply(config::merge(self.fixed_namespaces(), state));
    }

    /// The run-time state: the shared store's when there is one, else the data directory's.
    pub async fn load_state(&self) -> Result<State, String> {
        if self.store.shared() {
            return self
                .store
                .load_state()
                .await
                .map(Option::unwrap_or_default)
                .map_err(|e| e.to_string());
        }
        match &self.opts.data_dir {
            Some(d) => State::load(d).map_err(|e| e.to_string()),
            None => Err("this relay keeps no data directory: run-time management is off".into()),
        }
    }

    /// Saves and applies the run-time state; with a shared store every gateway applies it.
    pub async fn save_state(&self, state: &State) -> Result<(), String> {
        if self.store.shared() {
            self.store
                .save_state(state)
                .await
                .map_err(|e| e.to_string())?;
            self.apply_state(state);
            return Ok(());
        }
        match &self.opts.data_dir {
            Some(d) => {
                state.save(d).map_err(|e| e.to_string())?;
                self.reload().map_err(|e| e.to_string())
            }
            None => Err("this relay keeps no data directory: run-time management is off".into()),
        }
    }

    /// True when run-time management can keep what it changes.
    pub fn can_manage(&self) -> bool {
        self.store.shared() || self.opts.data_dir.is_some()
    }

    /// Re-reads the state file and applies the result: listeners of deleted hybrid
    /// connections are closed with 1001.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let state = match &self.opts.data_dir {
            Some(d) => State::load(d)?,
            None => State::default(),
        };
        self.apply(config::merge(self.fixed_namespaces(), &state));
        if let Some(d) = &self.opts.data_dir {
            let stamp = std::fs::metadata(State::path(d))
                .and_then(|m| m.modified())
                .ok();
            if let Ok(mut s) = self.state_stamp.lock() {
                *s = stamp;
            }
        }
        Ok(())
    }

    /// Reloads if the state file changed on disk (called periodically).
    pub fn reload_if_changed(&self) -> Result<bool, ConfigError> {
        if self.store.shared() {
            // The store's state arrives by notice instead.
            return Ok(false);
        }
        let Some(d) = &self.opts.data_dir else {
            return Ok(false);
        };
        let stamp = std::fs::metadata(State::path(d))
            .and_then(|m| m.modified())
            .ok();
        let changed = self
            .state_stamp
            .lock()
            .map(|s| *s != stamp)
            .unwrap_or(false);
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    fn apply(&self, new: Vec<Namespace>) {
        let mut live = std::collections::HashSet::new();
        for ns in &new {
            for h in &ns.hybrid_connections {
                live.insert(entity_key(&ns.name, &h.name));
            }
        }
        if let Ok(mut m) = self.model.write() {
            *m = Arc::new(new);
        }
        let gone: Vec<Arc<ListenerHandle>> = match self.listeners.lock() {
            Ok(mut l) => {
                let keys: Vec<String> = l.keys().filter(|k| !live.contains(*k)).cloned().collect();
                keys.into_iter()
                    .flat_map(|k| l.remove(&k).unwrap_or_default())
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for h in gone {
            tracing::info!(entity = %h.entity, listener = %h.tracking_id, "hybrid connection deleted: closing its listener with 1001");
            let _ = h.signals.send(ControlSignal::Close(
                1001,
                format!("The hybrid connection '{}' was deleted", h.hc),
            ));
        }
    }

    /// Next serial number.
    pub fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a listener unless the entity is at its quota.
    pub fn register(&self, h: Arc<ListenerHandle>) -> Result<(), usize> {
        let mut l = self.listeners.lock().map_err(|_| 0usize)?;
        let v = l.entry(h.entity.clone()).or_default();
        if v.len() >= self.opts.limits.listeners_per_entity {
            return Err(v.len());
        }
        v.push(h);
        Ok(())
    }

    /// Removes a listener and fails everything that waited on it.
    pub fn unregister(&self, serial: u64, entity: &str) {
        if let Ok(mut l) = self.listeners.lock() {
            if let Some(v) = l.get_mut(entity) {
                v.retain(|h| h.serial != serial);
                if v.is_empty() {
                    l.remove(entity);
                }
            }
        }
        if let Ok(mut a) = self.accepts.lock() {
            a.retain(|_, p| p.listener != serial);
        }
        if let Ok(mut r) = self.requests.lock() {
            r.retain(|_, p| {
                p.listener != serial || p.response.lock().map(|x| x.is_none()).unwrap_or(true)
            });
        }
    }

    /// Number of listeners on an entity.
    pub fn listener_count(&self, entity: &str) -> usize {
        self.listeners
            .lock()
            .map(|l| l.get(entity).map_or(0, |v| v.len()))
            .unwrap_or(0)
    }

    /// All listeners of an entity.
    pub fn listeners_of(&self, entity: &str) -> Vec<Arc<ListenerHandle>> {
        self.listeners
            .lock()
            .map(|l| l.get(entity).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Picks a listener at random, honouring allow/deny lists of tracking ids.
    pub fn pick_listener(
        &self,
        entity: &str,
        allowed: Option<&[String]>,
        disallowed: Option<&[String]>,
    ) -> Option<Arc<ListenerHandle>> {
        let all = self.listeners_of(entity);
        let candidates: Vec<Arc<ListenerHandle>> = all
            .into_iter()
            .filter(|h| {
                let id = h.tracking_id.split('_').next().unwrap_or("");
                allowed.is_none_or(|a| a.iter().any(|x| x.eq_ignore_ascii_case(id)))
                    && disallowed.is_none_or(|d| !d.iter().any(|x| x.eq_ignore_ascii_case(id)))
            })
            .collect();
        let h = candidates.choose(&mut rand::thread_rng()).cloned();
        if let Some(h) = &h {
            h.routed.fetch_add(1, Ordering::Relaxed);
        }
        h
    }

    /// Stores a pending accept under its nonce.
    pub fn add_accept(&self, nonce: String, p: PendingAccept) {
        if let Ok(mut a) = self.accepts.lock() {
            let now = Instant::now();
            a.retain(|_, p| p.expires > now && !p.tx.is_closed());
            a.insert(nonce, p);
        }
    }

    /// Takes (single use) a pending accept.
    pub fn take_accept(&self, nonce: &str) -> Option<PendingAccept> {
        let p = self.accepts.lock().ok()?.remove(nonce)?;
        (p.expires > Instant::now()).then_some(p)
    }

    /// Drops a pending accept (timed out).
    pub fn drop_accept(&self, nonce: &str) {
        if let Ok(mut a) = self.accepts.lock() {
            a.remove(nonce);
        }
    }

    /// Stores a pending request.
    pub fn add_request(&self, p: Arc<PendingRequest>) {
        if let Ok(mut r) = self.requests.lock() {
            r.insert(p.id.clone(), p);
        }
    }

    /// Finds a pending request.
    pub fn request(&self, id: &str) -> Option<Arc<PendingRequest>> {
        self.requests.lock().ok()?.get(id).cloned()
    }

    /// Forgets a pending request.
    pub fn drop_request(&self, id: &str) {
        if let Ok(mut r) = self.requests.lock() {
            r.remove(id);
        }
    }

    /// This gateway's registration for listener `h`.
    pub fn registration(&self, h: &ListenerHandle) -> Registration {
        Registration {
            gateway: self.store.gateway_id().to_string(),
            instance: self.store.instance().to_string(),
            serial: h.serial,
            tracking_id: h.tracking_id.clone(),
        }
    }

    /// Publishes a new listener to the shared store (in the background).
    pub fn announce(self: &Arc<Self>, h: &ListenerHandle) {
        if !self.store.shared() {
            return;
        }
        let relay = self.clone();
        let regs = vec![(h.entity.clone(), self.registration(h))];
        tokio::spawn(async move {
            if let Err(e) = relay.store.refresh(&regs).await {
                tracing::warn!(entity = %regs[0].0, "listener not published to the gateway store yet: {e}");
            }
        });
    }

    /// Withdraws a listener from the shared store (in the background).
    pub fn withdraw(self: &Arc<Self>, h: &ListenerHandle) {
        if !self.store.shared() {
            return;
        }
        let relay = self.clone();
        let entity = h.entity.clone();
        let reg = self.registration(h);
        tokio::spawn(async move {
            if let Err(e) = relay.store.unregister(&entity, &reg).await {
                tracing::warn!(entity = %entity, "listener not withdrawn from the gateway store (it expires within the TTL): {e}");
            }
        });
    }

    /// Listeners of `entity` on every gateway (this one's from memory, the others' from
    /// the store; if the store fails, this gateway's alone).
    pub async fn all_listeners(
        &self,
        entity: &str,
    ) -> (Vec<Arc<ListenerHandle>>, Vec<Registration>) {
        let local = self.listeners_of(entity);
        if !self.store.shared() {
            return (local, Vec::new());
        }
        let own = self.store.gateway_id();
        let remote = match self.store.listeners(entity).await {
            Ok(v) => v.into_iter().filter(|r| r.gateway != own).collect(),
            Err(e) => {
                tracing::debug!(
                    entity,
                    "gateway store lookup failed, routing to this gateway's listeners only: {e}"
                );
                Vec::new()
            }
        };
        (local, remote)
    }

    /// Picks a listener on any gateway, at random, honouring allow/deny lists of tracking
    /// ids; `skip` holds remote registrations that already failed for this sender.
    pub async fn route(
        &self,
        entity: &str,
        allowed: Option<&[String]>,
        disallowed: Option<&[String]>,
        skip: &[Registration],
    ) -> Option<Route> {
        let ok = |id: &str| {
            let id = id.split('_').next().unwrap_or("");
            allowed.is_none_or(|a| a.iter().any(|x| x.eq_ignore_ascii_case(id)))
                && disallowed.is_none_or(|d| !d.iter().any(|x| x.eq_ignore_ascii_case(id)))
        };
        let (local, remote) = self.all_listeners(entity).await;
        let mut candidates: Vec<Route> = local
            .into_iter()
            .filter(|h| ok(&h.tracking_id))
            .map(Route::Local)
            .collect();
        candidates.extend(
            remote
                .into_iter()
                .filter(|r| ok(&r.tracking_id) && !skip.contains(r))
                .map(Route::Remote),
        );
        if candidates.is_empty() {
            return None;
        }
        let pick = rand::Rng::gen_range(&mut rand::thread_rng(), 0..candidates.len());
        let r = candidates.swap_remove(pick);
        if let Route::Local(h) = &r {
            h.routed.fetch_add(1, Ordering::Relaxed);
        }
        Some(r)
    }

    /// Hands control message `message` to the listener `route` names: written to its
    /// control channel here, or sent to its gateway, which confirms. An error says why
    /// the listener could not be reached (the caller tries another).
    pub async fn offer(&self, entity: &str, route: &Route, message: &str) -> Result<(), String> {
        self.offer_with(entity, route, message, None, None).await
    }

    /// [`offer`](Self::offer), followed by `body` as a binary message; `request` names the
    /// HTTP request whose response the listener will send on its control channel.
    pub async fn offer_with(
        &self,
        entity: &str,
        route: &Route,
        message: &str,
        body: Option<&[u8]>,
        request: Option<&str>,
    ) -> Result<(), String> {
        match route {
            Route::Local(h) => write_control(h, message, body).await,
            Route::Remote(reg) => {
                let reference = new_nonce();
                let (tx, rx) = oneshot::channel();
                if let Ok(mut w) = self.waiters.lock() {
                    w.insert(reference.clone(), tx);
                }
                let notice = Notice::Deliver {
                    from: self.store.gateway_id().to_string(),
                    reference: reference.clone(),
                    entity: entity.to_string(),
                    instance: reg.instance.clone(),
                    serial: reg.serial,
                    message: message.to_string(),
                    body: body.map(|b| B64.encode(b)),
                    request: request.map(str::to_string),
                };
                let sent = self.store.notify(&reg.gateway, &notice).await;
                let forget = || {
                    if let Ok(mut w) = self.waiters.lock() {
                        w.remove(&reference);
                    }
                };
                match sent {
                    Err(e) => {
                        forget();
                        return Err(e.to_string());
                    }
                    Ok(false) => {
                        forget();
                        // Nobody listens on that gateway's channel: it is gone. Drop its
                        // registration now rather than wait for the TTL.
                        let _ = self.store.unregister(entity, reg).await;
                        return Err(format!("gateway {} is gone", reg.gateway));
                    }
                    Ok(true) => {}
                }
                match tokio::time::timeout(self.opts.relay_ack_timeout, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the delivery was dropped".into()),
                    Err(_) => {
                        forget();
                        // Cut off or stuck: stop routing to this listener now. If its
                        // gateway is merely slow, its next refresh registers it again.
                        let _ = self.store.unregister(entity, reg).await;
                        Err(format!(
                            "gateway {} did not confirm within {:?}",
                            reg.gateway, self.opts.relay_ack_timeout
                        ))
                    }
                }
            }
        }
    }

    /// Acts on a notice from another gateway.
    pub async fn handle_notice(self: &Arc<Self>, n: Notice) {
        let kind = match &n {
            Notice::Deliver { .. } => 0,
            Notice::Ack { .. } => 1,
            Notice::Undeliverable { .. } => 2,
            Notice::Response { .. } => 3,
            Notice::Ping { .. } => 4,
            Notice::StateChanged { .. } => 5,
        };
        self.counters.notices[kind].fetch_add(1, Ordering::Relaxed);
        match n {
            Notice::Deliver {
                from,
                reference,
                entity,
                instance,
                serial,
                message,
                body,
                request,
            } => {
                let target = (instance == self.store.instance())
                    .then(|| {
                        self.listeners_of(&entity)
                            .into_iter()
                            .find(|h| h.serial == serial)
                    })
                    .flatten();
                let body = match body.map(|b| B64.decode(b)) {
                    Some(Ok(b)) => Some(b),
                    Some(Err(_)) => {
                        tracing::warn!(from = %from, "a delivery with a malformed body: ignored");
                        return;
                    }
                    None => None,
                };
                let answer = match target {
                    None => Notice::Undeliverable {
                        reference,
                        reason: format!(
                            "listener {serial} of {entity} is not connected to gateway {}",
                            self.store.gateway_id()
                        ),
                    },
                    Some(h) => {
                        h.routed.fetch_add(1, Ordering::Relaxed);
                        if let Some(id) = &request {
                            if let Ok(mut f) = self.forwarded.lock() {
                                let now = Instant::now();
                                let keep = self.opts.response_timeout;
                                f.retain(|_, (_, t)| now.duration_since(*t) < keep);
                                f.insert(id.clone(), (from.clone(), now));
                            }
                        }
                        match write_control(&h, &message, body.as_deref()).await {
                            Ok(()) => Notice::Ack { reference },
                            Err(reason) => Notice::Undeliverable { reference, reason },
                        }
                    }
                };
                if let Err(e) = self.store.notify(&from, &answer).await {
                    tracing::warn!(to = %from, "could not answer a delivery: {e}");
                }
            }
            Notice::Ack { reference } => {
                if let Some(tx) = self
                    .waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&reference))
                {
                    let _ = tx.send(Ok(()));
                }
            }
            Notice::Undeliverable { reference, reason } => {
                if let Some(tx) = self
                    .waiters
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(&reference))
                {
                    let _ = tx.send(Err(reason));
                }
            }
            Notice::Response {
                request,
                status,
                reason,
                headers,
                body,
            } => {
                let Some(p) = self.request(&request) else {
                    tracing::debug!(request = %request, "a forwarded response for an unknown or finished request: discarded");
                    return;
                };
                self.drop_request(&request);
                let body = match B64.decode(body) {
                    Ok(b) if b.is_empty() => ResponseBody::Empty,
                    Ok(b) => ResponseBody::Full(Bytes::from(b)),
                    Err(_) => {
                        tracing::warn!(request = %request, "a forwarded response with a malformed body");
                        return;
                    }
                };
                if let Some(tx) = p.response.lock().ok().and_then(|mut s| s.take()) {
                    let _ = tx.send(ResponseStart {
                        status,
                        reason,
                        headers,
                        body,
                    });
                }
            }
            Notice::Ping { .. } => {}
            Notice::StateChanged { from } => {
                if from == self.store.gateway_id() {
                    return;
                }
                match self.store.load_state().await {
                    Ok(st) => {
                        self.apply_state(&st.unwrap_or_default());
                        tracing::info!(by = %from, "entities changed on another gateway: applied");
                    }
                    Err(e) => tracing::warn!(
                        "entities changed on gateway {from} but could not be read: {e}"
                    ),
                }
            }
        }
    }

    /// Keeps this gateway's registrations alive in the store and answers notices from
    /// other gateways; runs for the life of the gateway.
    pub async fn run_gateway(self: Arc<Self>, mut notices: mpsc::UnboundedReceiver<Notice>) {
        let period = self.store.ttl() / 3;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = notices.recv() => {
                    let Some(n) = n else { return };
                    let relay = self.clone();
                    tokio::spawn(async move { relay.handle_notice(n).await });
                }
                _ = tick.tick() => {
                    let regs: Vec<(String, Registration)> = self
                        .listeners
                        .lock()
                        .map(|l| {
                            l.values()
                                .flatten()
                                .map(|h| (h.entity.clone(), self.registration(h)))
                                .collect()
                        })
                        .unwrap_or_default();
                    let relay = self.clone();
                    // A slow store must not hold up notices.
                    tokio::spawn(async move {
                        if let Err(e) = relay.store.refresh(&regs).await {
                            tracing::debug!("refresh failed: {e}");
                        }
                    });
                }
            }
        }
    }

    /// Traffic counters of `entity` (created on first use).
    pub fn stats(&self, entity: &str) -> Arc<EntityStats> {
        match self.stats.lock() {
            Ok(mut m) => m.entry(entity.to_string()).or_default().clone(),
            Err(_) => Arc::new(EntityStats::default()),
        }
    }

    /// Records a refused token.
    pub fn auth_failed(&self, reason: &str) {
        if let Some(i) = AUTH_REASONS.iter().position(|r| *r == reason) {
            self.counters.auth_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// If request `id` was delivered here for another gateway, that gateway (once).
    pub fn take_forwarded(&self, id: &str) -> Option<String> {
        self.forwarded.lock().ok()?.remove(id).map(|(g, _)| g)
    }

    /// Sends the response a local listener gave to a forwarded request back to the
    /// gateway that holds the sender.
    pub async fn forward_response(&self, gateway: &str, request: &str, start: ResponseStart) {
        let body = match start.body {
            ResponseBody::Empty => Vec::new(),
            ResponseBody::Full(b) => b.to_vec(),
            ResponseBody::Stream(mut rx) => {
                let mut v = Vec::new();
                while let Some(c) = rx.recv().await {
                    match c {
                        Ok(c) => v.extend_from_slice(&c),
                        Err(e) => {
                            tracing::info!(request, "forwarded response body failed: {e}");
                            return;
                        }
                    }
                }
                v
            }
        };
        let n = Notice::Response {
            request: request.to_string(),
            status: start.status,
            reason: start.reason,
            headers: start.headers,
            body: B64.encode(body),
        };
        if let Err(e) = self.store.notify(gateway, &n).await {
            tracing::warn!(to = %gateway, request, "could not send the response back: {e}");
        }
    }

    /// Total listeners connected.
    pub fn total_listeners(&self) -> usize {
        self.listeners
            .lock()
            .map(|l| l.values().map(|v| v.len()).sum())
            .unwrap_or(0)
    }
}

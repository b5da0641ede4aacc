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
}

impl Relay {
    /// Builds the relay and loads the state file.
    pub fn new(opts: RelayOptions) -> Result<Arc<Relay>, ConfigError> {
        let r = Arc::new(Relay {
            opts,
            model: RwLock::new(Arc::new(Vec::new())),
            listeners: Mutex::new(HashMap::new()),
            accepts: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
            state_stamp: Mutex::new(None),
            limiter: FailureLimiter::new(20.0, 5.0),
            counters: Counters::default(),
        });
        r.reload()?;
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

    /// Re-reads the state file and applies the result: listeners of deleted hybrid
    /// connections are closed with 1001.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let state = match &self.opts.data_dir {
            Some(d) => State::load(d)?,
            None => State::default(),
        };
        self.apply(config::merge(self.opts.config_namespaces.clone(), &state));
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

    /// Total listeners connected.
    pub fn total_listeners(&self) -> usize {
        self.listeners
            .lock()
            .map(|l| l.values().map(|v| v.len()).sum())
            .unwrap_or(0)
    }
}

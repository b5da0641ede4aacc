//! The gateway store: what several relay gateways share so that a sender on one gateway
//! reaches a listener connected to another (Azure Relay's "gateway store").
//!
//! [`MemoryStore`] is the single-gateway default: every listener is local, nothing is
//! shared. [`RedisStore`] keeps, in a Redis server:
//!
//! * `hyrelay:schema` — the layout version (`1`); a store holding another refuses to start;
//! * `hyrelay:v1:gw:<id>` — a gateway's liveness and instance id, with the registration TTL;
//! * `hyrelay:v1:reg:<namespace>/<hc>` — a sorted set of that hybrid connection's listeners
//!   (`gateway|instance|serial|tracking-id`), scored by the time (ms) they expire; live
//!   gateways push the score forward every third of the TTL, so a gateway that dies or is
//!   cut off stops being routed to within the TTL;
//! * `hyrelay:v1:gw:<id>:notices` — the channel a gateway subscribes to: deliver a control
//!   message to one of your listeners, its acknowledgement, pings;
//! * `hyrelay:v1:state` and channel `hyrelay:v1:state-changed` — entities and rules created
//!   at run time, seen by every gateway at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::State;

/// A boxed future, so that the store trait can be used as `dyn GatewayStore`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time.
    #[error("the gateway store did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis said no, or the connection failed.
    #[error("gateway store: {0}")]
    Redis(#[from] redis::RedisError),
    /// Data in the store is not what this build writes.
    #[error("gateway store: {0}")]
    Data(String),
}

/// One listener as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Gateway id the listener is connected to.
    pub gateway: String,
    /// That gateway process's instance id (changes on restart).
    pub instance: String,
    /// The listener's serial number on its gateway.
    pub serial: u64,
    /// The listener's tracking id (`sb-hc-id`), for AllowedListeners/DisallowedListeners.
    pub tracking_id: String,
}

impl Registration {
    fn member(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.gateway, self.instance, self.serial, self.tracking_id
        )
    }
    fn parse(m: &str) -> Option<Registration> {
        let mut p = m.splitn(4, '|');
        Some(Registration {
            gateway: p.next()?.to_string(),
            instance: p.next()?.to_string(),
            serial: p.next()?.parse().ok()?,
            tracking_id: p.next()?.to_string(),
        })
    }
}

/// Messages between gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Write `message` (a control-channel JSON text) to listener `serial` of `entity`,
    /// then answer `from` with [`Notice::Ack`] or [`Notice::Undeliverable`].
    Deliver {
        /// Sending gateway.
        from: String,
        /// Correlates the answer.
        reference: String,
        /// Entity key.
        entity: String,
        /// Target gateway instance (a restarted gateway refuses older notices).
        instance: String,
        /// Listener serial.
        serial: u64,
        /// The control message.
        message: String,
        /// A request body to send as a binary message right after it (base64).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// For an HTTP request on the control channel: its id. The listener answers on its
        /// control channel, so its gateway sends the response back as [`Notice::Response`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// The response to a request delivered with [`Notice::Deliver`]`{request}`.
    Response {
        /// Request id.
        request: String,
        /// Status code.
        status: u16,
        /// Reason phrase.
        #[serde(default)]
        reason: Option<String>,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body (base64).
        body: String,
    },
    /// The message was written to the listener's control channel.
    Ack {
        /// As in the Deliver.
        reference: String,
    },
    /// The listener is not here (any more).
    Undeliverable {
        /// As in the Deliver.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A gateway checking its own subscription.
    Ping {
        /// Sender.
        from: String,
    },
    /// Run-time entities changed.
    StateChanged {
        /// The gateway that changed them.
        from: String,
    },
}

/// Health of the store as metrics and the status page show it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The last operation succeeded.
    pub up: AtomicBool,
    /// Failed operations.
    pub errors: AtomicU64,
    /// Operations.
    pub operations: AtomicU64,
    /// Total round-trip time of the operations, microseconds.
    pub rtt_us_total: AtomicU64,
}

/// The store the gateways share.
pub trait GatewayStore: Send + Sync {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    /// True when other gateways may hold listeners (anything but the in-process store).
    fn shared(&self) -> bool;
    /// This gateway's id.
    fn gateway_id(&self) -> &str;
    /// This gateway process's instance id.
    fn instance(&self) -> &str;
    /// Health counters.
    fn health(&self) -> &StoreHealth;
    /// The registration TTL.
    fn ttl(&self) -> Duration;
    /// Adds (or refreshes) listeners: `(entity, registration)` pairs; also renews this
    /// gateway's liveness and checks its own subscription.
    fn refresh<'a>(
        &'a self,
        regs: &'a [(String, Registration)],
    ) -> BoxFut<'a, Result<(), StoreError>>;
    /// Removes a listener.
    fn unregister<'a>(
        &'a self,
        entity: &'a str,
        reg: &'a Registration,
    ) -> BoxFut<'a, Result<(), StoreError>>;
    /// The unexpired listeners of `entity` on every gateway.
    fn listeners<'a>(
        &'a self,
        entity: &'a str,
    ) -> BoxFut<'a, Result<Vec<Registration>, StoreError>>;
    /// Sends a notice to `gateway`; `Ok(false)` when no gateway of that id is listening.
    fn notify<'a>(
        &'a self,
        gateway: &'a str,
        notice: &'a Notice,
    ) -> BoxFut<'a, Result<bool, StoreError>>;
    /// The shared run-time state (None: nothing stored yet).
    fn load_state(&self) -> BoxFut<'_, Result<Option<State>, StoreError>>;
    /// Replaces the shared run-time state and tells every gateway.
    fn save_state<'a>(&'a self, state: &'a State) -> BoxFut<'a, Result<(), StoreError>>;
}

/// One gateway, nothing shared: the embedded default.
pub struct MemoryStore {
    id: String,
    health: StoreHealth,
}

impl MemoryStore {
    /// A store for gateway `id`.
    pub fn new(id: impl Into<String>) -> Self {
        let health = StoreHealth::default();
        health.up.store(true, Ordering::Relaxed);
        MemoryStore {
            id: id.into(),
            health,
        }
    }
}

impl GatewayStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn shared(&self) -> bool {
        false
    }
    fn gateway_id(&self) -> &str {
        &self.id
    }
    fn instance(&self) -> &str {
        "local"
    }
    fn health(&self) -> &StoreHealth {
        &self.health
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn refresh<'a>(
        &'a self,
        _: &'a [(String, Registration)],
    ) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn unregister<'a>(
        &'a self,
        _: &'a str,
        _: &'a Registration,
    ) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn listeners<'a>(&'a self, _: &'a str) -> BoxFut<'a, Result<Vec<Registration>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn notify<'a>(&'a self, _: &'a str, _: &'a Notice) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(async { Ok(false) })
    }
    fn load_state(&self) -> BoxFut<'_, Result<Option<State>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn save_state<'a>(&'a self, _: &'a State) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

const SCHEMA_KEY: &str = "hyrelay:schema";
const SCHEMA: &str = "1";
const PREFIX: &str = "hyrelay:v1:";
/// Longest a single store operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The shared store on a Redis server (the `redis` crate, tokio, reconnecting).
pub struct RedisStore {
    id: String,
    instance: String,
    ttl: Duration,
    client: redis::Client,
    conn: ConnectionManager,
    health: StoreHealth,
    /// When the subscription last delivered anything (pings arrive every ttl/3).
    last_heard: Arc<AtomicU64>,
    started: Instant,
}

impl RedisStore {
    /// Connects (failing fast with a clear message), checks the layout version, claims
    /// the gateway id and starts the subscription, whose notices go to `notices`.
    pub async fn connect(
        url: &str,
        id: &str,
        ttl: Duration,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Result<Arc<RedisStore>, String> {
        let shown = redact_url(url);
        let client = redis::Client::open(url)
            .map_err(|e| format!("[store] redis = \"{shown}\" is not a valid Redis URL: {e}"))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let conn = match tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(cfg),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("[store] redis = \"{shown}\": cannot connect: {e}")),
            Err(_) => {
                return Err(format!(
                    "[store] redis = \"{shown}\": no answer within 5 s (is redis-server running there?)"
                ))
            }
        };
        let mut instance = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut instance);
        let store = RedisStore {
            id: id.to_string(),
            instance: instance.iter().map(|b| format!("{b:02x}")).collect(),
            ttl,
            client,
            conn,
            health: StoreHealth::default(),
            last_heard: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
        };
        store.check_schema(&shown).await?;
        store.claim_id().await?;
        store.health.up.store(true, Ordering::Relaxed);
        let store = Arc::new(store);
        tokio::spawn(subscribe_loop(Arc::downgrade(&store), notices));
        Ok(store)
    }

    async fn check_schema(&self, shown: &str) -> Result<(), String> {
        let mut c = self.conn.clone();
        let set: bool = redis::cmd("SET")
            .arg(SCHEMA_KEY)
            .arg(SCHEMA)
            .arg("NX")
            .query_async::<Option<String>>(&mut c)
            .await
            .map_err(|e| format!("[store] redis = \"{shown}\": {e}"))?
            .is_some();
        if set {
            return Ok(());
        }
        let v: Option<String> = redis::cmd("GET")
            .arg(SCHEMA_KEY)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("[store] redis = \"{shown}\": {e}"))?;
        match v.as_deref() {
            Some(SCHEMA) => Ok(()),
            other => Err(format!(
                "[store] redis = \"{shown}\" holds data written by an incompatible version ({SCHEMA_KEY} = {other:?}, this build writes \"{SCHEMA}\"); use another database number or clear it"
            )),
        }
    }

    fn liveness_key(&self) -> String {
        format!("{PREFIX}gw:{}", self.id)
    }

    fn channel(gateway: &str) -> String {
        format!("{PREFIX}gw:{gateway}:notices")
    }

    async fn claim_id(&self) -> Result<(), String> {
        let mut c = self.conn.clone();
        let key = self.liveness_key();
        let ttl_ms = self.ttl.as_millis() as u64;
        let ok: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut c)
            .await
            .map_err(|e| format!("gateway store: {e}"))?;
        if ok.is_some() {
            return Ok(());
        }
        // The id is taken: by a gateway that is running (it is subscribed to its
        // channel), or by one that died less than a TTL ago (nobody is).
        let listening: i64 = redis::cmd("PUBLISH")
            .arg(Self::channel(&self.id))
            .arg(
                serde_json::to_string(&Notice::Ping {
                    from: self.id.clone(),
                })
                .unwrap_or_default(),
            )
            .query_async(&mut c)
            .await
            .map_err(|e| format!("gateway store: {e}"))?;
        if listening > 0 {
            return Err(format!(
                "[gateway] id = \"{}\" is already used by a running gateway; every gateway needs its own id",
                self.id
            ));
        }
        tracing::info!(gateway = %self.id, "taking over the gateway id from an instance that is gone");
        redis::cmd("SET")
            .arg(&key)
            .arg(&self.instance)
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| format!("gateway store: {e}"))
    }

    /// Runs one operation with the timeout, updating the health counters.
    async fn op<T>(
        &self,
        f: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        let t0 = Instant::now();
        let r = match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(OP_TIMEOUT)),
        };
        let h = &self.health;
        h.operations.fetch_add(1, Ordering::Relaxed);
        h.rtt_us_total
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        let was_up = h.up.swap(r.is_ok(), Ordering::Relaxed);
        match (&r, was_up) {
            (Err(e), true) => {
                h.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(gateway = %self.id, "GATEWAY STORE UNREACHABLE: {e}; serving only the listeners connected to this gateway until it is back");
            }
            (Err(_), false) => {
                h.errors.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(_), false) => {
                tracing::warn!(gateway = %self.id, "gateway store reachable again");
            }
            (Ok(_), true) => {}
        }
        r
    }

    /// True when the subscription has heard nothing for longer than a TTL (pings come
    /// every third of it), i.e. it is probably dead.
    fn subscription_stale(&self) -> bool {
        let heard = self.last_heard.load(Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        heard != 0 && now.saturating_sub(heard) > self.ttl.as_millis() as u64
    }
}

async fn subscribe_loop(store: std::sync::Weak<RedisStore>, tx: mpsc::UnboundedSender<Notice>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(s) = store.upgrade() else { return };
        let client = s.client.clone();
        let channels = [RedisStore::channel(&s.id), format!("{PREFIX}state-changed")];
        let last_heard = s.last_heard.clone();
        let started = s.started;
        let ttl = s.ttl;
        let id = s.id.clone();
        drop(s);
        let sub = async {
            let mut ps = client.get_async_pubsub().await?;
            for c in &channels {
                ps.subscribe(c).await?;
            }
            Ok::<_, redis::RedisError>(ps)
        };
        let mut ps = match tokio::time::timeout(Duration::from_secs(3), sub).await {
            Ok(Ok(ps)) => ps,
            Ok(Err(e)) => {
                tracing::warn!(gateway = %id, "gateway store subscription failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => {
                tracing::warn!(gateway = %id, "gateway store subscription timed out; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        tracing::info!(gateway = %id, "subscribed to {}", channels[0]);
        last_heard.store(
            started.elapsed().as_millis().max(1) as u64,
            Ordering::Relaxed,
        );
        let mut stream = ps.on_message();
        loop {
            // Our own pings arrive every third of the TTL: silence for a whole TTL means
            // the connection is dead even if no error was seen (a cut network).
            match tokio::time::timeout(ttl, stream.next()).await {
                Ok(Some(msg)) => {
                    last_heard.store(
                        started.elapsed().as_millis().max(1) as u64,
                        Ordering::Relaxed,
                    );
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Notice>(&text) {
                        Ok(n) => {
                            if tx.send(n).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(gateway = %id, "ignoring a malformed notice on {}: {e}", msg.get_channel_name())
                        }
                    }
                }
                Ok(None) => {
                    tracing::warn!(gateway = %id, "gateway store subscription closed; resubscribing");
                    break;
                }
                Err(_) => {
                    tracing::warn!(gateway = %id, "gateway store subscription silent for {ttl:?}; resubscribing");
                    break;
                }
            }
        }
    }
}

impl GatewayStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn shared(&self) -> bool {
        true
    }
    fn gateway_id(&self) -> &str {
        &self.id
    }
    fn instance(&self) -> &str {
        &self.instance
    }
    fn health(&self) -> &StoreHealth {
        &self.health
    }
    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn refresh<'a>(
        &'a self,
        regs: &'a [(String, Registration)],
    ) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let expires = now_ms() + self.ttl.as_millis() as u64;
            let ttl_ms = self.ttl.as_millis() as u64;
            let mut p = redis::pipe();
            p.cmd("SET")
                .arg(self.liveness_key())
                .arg(&self.instance)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            for (entity, r) in regs {
                let key = format!("{PREFIX}reg:{entity}");
                p.cmd("ZADD")
                    .arg(&key)
                    .arg(expires)
                    .arg(r.member())
                    .ignore();
                p.cmd("PEXPIRE").arg(&key).arg(ttl_ms * 2).ignore();
            }
            p.cmd("PUBLISH").arg(Self::channel(&self.id)).arg(
                serde_json::to_string(&Notice::Ping {
                    from: self.id.clone(),
                })
                .unwrap_or_default(),
            );
            let mut c = self.conn.clone();
            let (subscribers,): (i64,) = self.op(p.query_async(&mut c)).await?;
            if subscribers == 0 || self.subscription_stale() {
                tracing::warn!(gateway = %self.id, "this gateway's notice subscription is not active yet; notices may be missed until it is");
            }
            Ok(())
        })
    }

    fn unregister<'a>(
        &'a self,
        entity: &'a str,
        reg: &'a Registration,
    ) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            self.op(redis::cmd("ZREM")
                .arg(format!("{PREFIX}reg:{entity}"))
                .arg(reg.member())
                .query_async::<()>(&mut c))
                .await
        })
    }

    fn listeners<'a>(
        &'a self,
        entity: &'a str,
    ) -> BoxFut<'a, Result<Vec<Registration>, StoreError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let members: Vec<String> = self
                .op(redis::cmd("ZRANGEBYSCORE")
                    .arg(format!("{PREFIX}reg:{entity}"))
                    .arg(now_ms())
                    .arg("+inf")
                    .query_async(&mut c))
                .await?;
            Ok(members
                .iter()
                .filter_map(|m| Registration::parse(m))
                .collect())
        })
    }

    fn notify<'a>(
        &'a self,
        gateway: &'a str,
        notice: &'a Notice,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let text =
                serde_json::to_string(notice).map_err(|e| StoreError::Data(e.to_string()))?;
            let mut c = self.conn.clone();
            let n: i64 = self
                .op(redis::cmd("PUBLISH")
                    .arg(Self::channel(gateway))
                    .arg(text)
                    .query_async(&mut c))
                .await?;
            Ok(n > 0)
        })
    }

    fn load_state(&self) -> BoxFut<'_, Result<Option<State>, StoreError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<String> = self
                .op(redis::cmd("GET")
                    .arg(format!("{PREFIX}state"))
                    .query_async(&mut c))
                .await?;
            match v {
                None => Ok(None),
                Some(t) => serde_json::from_str(&t).map(Some).map_err(|e| {
                    StoreError::Data(format!(
                        "{PREFIX}state is not a state this build reads: {e}"
                    ))
                }),
            }
        })
    }

    fn save_state<'a>(&'a self, state: &'a State) -> BoxFut<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let text = serde_json::to_string(state).map_err(|e| StoreError::Data(e.to_string()))?;
            let changed = serde_json::to_string(&Notice::StateChanged {
                from: self.id.clone(),
            })
            .map_err(|e| StoreError::Data(e.to_string()))?;
            let mut c = self.conn.clone();
            let mut p = redis::pipe();
            p.cmd("SET")
                .arg(format!("{PREFIX}state"))
                .arg(text)
                .ignore();
            p.cmd("PUBLISH")
                .arg(format!("{PREFIX}state-changed"))
                .arg(changed)
                .ignore();
            self.op(p.query_async::<()>(&mut c)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_members_round_trip_even_with_bars_in_the_tracking_id() {
        let r = Registration {
            gateway: "gw-a".into(),
            instance: "00ff".into(),
            serial: 42,
            tracking_id: "id|with|bars".into(),
        };
        assert_eq!(Registration::parse(&r.member()), Some(r));
        assert_eq!(Registration::parse("gw|x|notanumber|t"), None);
    }

    #[test]
    fn notices_are_tagged_json() {
        let n = Notice::Ack {
            reference: "r1".into(),
        };
        let t = serde_json::to_string(&n).unwrap();
        assert_eq!(t, r#"{"kind":"ack","reference":"r1"}"#);
        assert_eq!(serde_json::from_str::<Notice>(&t).unwrap(), n);
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("redis://user:s3cret@10.0.0.5:6379/0"),
            "redis://user:***@10.0.0.5:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}

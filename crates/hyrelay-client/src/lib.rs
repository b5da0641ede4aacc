//! A Rust Hybrid Connections client, what `Microsoft.Azure.Relay` is for .NET.
//!
//! * [`RelayEndpoint`]: where the relay is and how to authenticate (connection string, or
//!   endpoint + rule + key, or a ready token).
//! * [`connect`]: a sender's relayed WebSocket ([`RelayedConnection`]).
//! * [`Listener`]: a control channel that stays up (reconnect with capped exponential
//!   backoff and jitter, token renewal before expiry, keep-alive Pings) and hands every
//!   accepted connection to a callback.
//! * [`pipe`]: joins a relayed connection and a byte stream (TCP, Unix socket), one binary
//!   message per read, with half-close both ways and abort propagation.
//!
//! Endpoint schemes: `wss://` and `ws://` are used as given; `sb://` means TLS (as in Azure),
//! except that a loopback relay that does not speak TLS on that port is reached in clear, so
//! the plain port of `hyrelay up` works with the connection string it prints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyrelay_hc::sas;
use hyrelay_hc::ConnectionString;
#[cfg(target_os = "linux")]
use hyrelay_net::kernel;
use hyrelay_net::splice::{split, ReadSide, WriteSide};
use hyrelay_net::ws::{client_handshake, FrameReader, FrameWriter, Role};
use hyrelay_net::Stream;
use hyrelay_ws::{CloseFrame, OpCode};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Client errors; each says what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay could not be reached.
    #[error("cannot reach the relay at {addr}: {source}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS failed.
    #[error("TLS to {addr} failed: {message}")]
    Tls {
        /// host:port.
        addr: String,
        /// Cause.
        message: String,
    },
    /// The relay refused the handshake.
    #[error("the relay refused {what} with {status}: {reason}")]
    Refused {
        /// listen / connect.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// Reason phrase (names the token or entity problem).
        reason: String,
    },
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The other end of a relayed connection refused it, or broke the in-tunnel protocol
    /// (for example azbridge's preamble answer).
    #[error("{0}")]
    Peer(String),
    /// IO during the session.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Whether retrying can help (401/403/404 are not retried by the listener loop).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ClientError::Refused { status: 404, .. } | ClientError::Config(_)
        )
    }
}

/// How tokens are made.
#[derive(Clone)]
pub enum TokenSource {
    /// Sign with a rule's key (renewable).
    Key {
        /// Rule name.
        name: String,
        /// Key text.
        key: String,
    },
    /// A pre-issued token (never renewed).
    Fixed(String),
    /// No token (hybrid connections with requiresClientAuthorization = false, senders only).
    None,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or tokens.
        match self {
            TokenSource::Key { name, .. } => write!(f, "Key({name}, ***)"),
            TokenSource::Fixed(_) => f.write_str("Fixed(***)"),
            TokenSource::None => f.write_str("None"),
        }
    }
}

/// Transport security choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// wss.
    Tls,
    /// ws.
    Plain,
    /// sb:// on a loopback host: TLS, falling back to clear when the port does not speak TLS.
    TlsOrLoopbackPlain,
}

/// Where the relay is and how to authenticate.
#[derive(Debug, Clone)]
pub struct RelayEndpoint {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Security.
    pub security: Security,
    /// Tokens.
    pub token: TokenSource,
    /// Token lifetime when signing.
    pub token_ttl: Duration,
    /// TLS client configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// `EntityPath` from the connection string.
    pub entity: Option<String>,
    /// Set once a `sb://` loopback endpoint turned out to speak clear WebSocket, so later
    /// connections do not pay for a failed TLS handshake first (shared by clones).
    plain_learned: Arc<std::sync::atomic::AtomicBool>,
    /// Transport connections dialled ahead of need (shared by clones).
    warm: Arc<Warm>,
    /// How many transport connections per address to keep dialled ahead where that pays
    /// (see `Warm`): from `HYRELAY_DIAL_AHEAD` (0 turns it off), else [`DIAL_AHEAD`].
    pub dial_ahead: usize,
}

/// How many transport connections per relay address are kept dialled ahead by default.
pub const DIAL_AHEAD: usize = 2;

fn dial_ahead_from_env() -> usize {
    std::env::var("HYRELAY_DIAL_AHEAD")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DIAL_AHEAD, |n| n.min(16))
}

/// A connection dialled ahead is dropped unused after this long, well inside a relay's
/// header read time-out (30 s for `hyrelay up`), and not replaced until the next use.
const WARM_MAX_AGE: Duration = Duration::from_secs(15);

/// Transport connections (TCP, and TLS where in use) dialled ahead of need, so a sender or a
/// rendezvous starts with its HTTP upgrade instead of a TCP and TLS handshake: two or three
/// round trips less over the Internet with TLS (used with TLS, or to another machine; not for
/// a clear loopback relay). Nothing is sent on them until used, so any relay, Azure's too,
/// only sees an idle connection. They are made only once an address has been used twice
/// lately (an idle bridge keeps none; a rendezvous host seen once gets none), at most
/// [`RelayEndpoint::dial_ahead`] per address, and each is used once.
#[derive(Default)]
struct Warm {
    state: std::sync::Mutex<WarmState>,
}

#[derive(Default)]
struct WarmState {
    idle: Vec<(String, std::time::Instant, Stream)>,
    dialling: Vec<String>,
    /// Addresses used lately (at most [`WARM_SEEN`]): dialling ahead starts at the second
    /// use of an address, so a relay that hands out a different rendezvous host each time
    /// never gets connections that nobody will use.
    seen: std::collections::VecDeque<String>,
}

/// How many recently used addresses [`WarmState::seen`] remembers.
const WARM_SEEN: usize = 32;

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map(|s| s.idle.len()).unwrap_or(0);
        write!(f, "Warm({n} idle)")
    }
}

impl Warm {
    /// An open, unused connection for `key`, if one is ready.
    fn take(&self, key: &str) -> Option<Stream> {
        let mut st = self.state.lock().ok()?;
        let now = std::time::Instant::now();
        st.idle
            .retain(|(_, at, s)| now.duration_since(*at) < WARM_MAX_AGE && s.idle_and_open());
        let i = st.idle.iter().position(|(k, _, _)| k == key)?;
        Some(st.idle.swap_remove(i).2)
    }

    /// Whether `key` was used before (and remembers it now).
    fn seen_before(&self, key: &str) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        if st.seen.iter().any(|k| k == key) {
            return true;
        }
        if st.seen.len() >= WARM_SEEN {
            st.seen.pop_front();
        }
        st.seen.push_back(key.to_string());
        false
    }

    /// Whether another connection for `key` should be dialled now, keeping at most `target`
    /// ready or on their way (and notes that it is).
    fn want(&self, key: &str, target: usize) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        let have = st.idle.iter().filter(|(k, _, _)| k == key).count()
            + st.dialling.iter().filter(|k| *k == key).count();
        if have >= target {
            return false;
        }
        st.dialling.push(key.to_string());
        true
    }

    fn done(&self, key: &str, s: Option<Stream>) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(i) = st.dialling.iter().position(|k| k == key) {
                st.dialling.swap_remove(i);
            }
            if let Some(s) = s {
                st.idle
                    .push((key.to_string(), std::time::Instant::now(), s));
            }
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "::1" || host == "[::1]"
}

impl RelayEndpoint {
    /// From an endpoint URI (`sb://`, `wss://`, `ws://`, host[:port]) and a token source.
    pub fn new(
        endpoint: &str,
        token: TokenSource,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<RelayEndpoint, ClientError> {
        let (scheme, rest) = endpoint.split_once("://").unwrap_or(("sb", endpoint));
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(ClientError::Config(format!(
                "endpoint '{endpoint}' has no host"
            )));
        }
        let scheme = scheme.to_ascii_lowercase();
        let default_port = if scheme == "ws" { 80 } else { 443 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h.to_string(),
                p.parse().map_err(|_| {
                    ClientError::Config(format!("endpoint '{endpoint}': bad port '{p}'"))
                })?,
            ),
            _ => (authority.to_string(), default_port),
        };
        let security = match scheme.as_str() {
            "ws" | "http" => Security::Plain,
            "wss" | "https" => Security::Tls,
            "sb" if is_loopback(&host) => Security::TlsOrLoopbackPlain,
            "sb" => Security::Tls,
            other => {
                return Err(ClientError::Config(format!(
                    "endpoint scheme '{other}' is not sb, wss or ws"
                )))
            }
        };
        Ok(RelayEndpoint {
            host,
            port,
            security,
            token,
            token_ttl: Duration::from_secs(3600),
            tls,
            entity: None,
            plain_learned: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            warm: Arc::default(),
            dial_ahead: dial_ahead_from_env(),
        })
    }

    /// From an Azure connection string.
    pub fn from_connection_string(
        cs: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<RelayEndpoint, ClientError> {
        let c = ConnectionString::parse(cs).map_err(|e| ClientError::Config(e.to_string()))?;
        let token = match (&c.key_name, &c.key, &c.signature) {
            (Some(n), Some(k), _) => TokenSource::Key {
                name: n.clone(),
                key: k.clone(),
            },
            (_, _, Some(s)) => TokenSource::Fixed(s.clone()),
            _ => TokenSource::None,
        };
        let mut e = RelayEndpoint::new(&format!("{}://{}", c.scheme, c.authority()), token, tls)?;
        e.entity = c.entity_path.clone();
        Ok(e)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// A token for `entity`, if the source makes one.
    pub fn token_for(&self, entity: &str) -> Option<(String, Option<u64>)> {
        match &self.token {
            TokenSource::Key { name, key } => {
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    + self.token_ttl.as_secs();
                let resource = format!("http://{}/{}", self.host, entity.trim_matches('/'));
                Some((sas::sign(&resource, name, key, exp), Some(exp)))
            }
            TokenSource::Fixed(t) => Some((t.clone(), None)),
            TokenSource::None => None,
        }
    }

    async fn dial_addr(&self, addr: &str, host: &str, tls: bool) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Unreachable {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| ClientError::Config(format!("bad host name {host}: {e}")))?;
        let s = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
        Ok(Stream::ClientTls(Box::new(s)))
    }

    /// Dials the transport to `addr`; for the relay's own address (`main`) on a `sb://`
    /// loopback endpoint, a port that does not speak TLS is learned and reached in clear.
    async fn dial(
        &self,
        addr: &str,
        host: &str,
        tls: bool,
        main: bool,
    ) -> Result<Stream, ClientError> {
        match self.dial_addr(addr, host, tls).await {
            Err(ClientError::Tls { .. })
                if main && self.security == Security::TlsOrLoopbackPlain =>
            {
                tracing::debug!("{addr} does not speak TLS: using clear WebSocket (loopback only)");
                self.plain_learned
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.dial_addr(addr, host, false).await
            }
            other => other,
        }
    }

    /// Dials one more transport connection to `addr` in the background for the next sender
    /// or rendezvous, unless enough are ready or on their way.
    fn dial_ahead(&self, addr: &str, host: &str, tls: bool) {
        let key = format!("{addr}|{host}|{tls}");
        if tokio::runtime::Handle::try_current().is_err()
            || !self.warm.seen_before(&key)
            || !self.warm.want(&key, self.dial_ahead)
        {
            return;
        }
        let (me, addr, host) = (self.clone(), addr.to_string(), host.to_string());
        tokio::spawn(async move {
            let s = me.dial_addr(&addr, &host, tls).await.ok();
            me.warm.done(&key, s);
        });
    }

    /// Opens a WebSocket to `target` (origin form) on the relay, or on the host/port/scheme
    /// of `url` when given (rendezvous addresses).
    async fn open(
        &self,
        target: &str,
        url: Option<&str>,
        headers: &[(String, String)],
        what: &'static str,
    ) -> Result<RelayedConnection, ClientError> {
        let (addr, host, tls, target) = match url {
            Some(u) => {
                let (scheme, rest) = u
                    .split_once("://")
                    .ok_or_else(|| ClientError::Config(format!("bad address {u}")))?;
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let tls = scheme.eq_ignore_ascii_case("wss");
                let addr = if authority
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    authority.to_string()
                } else {
                    format!("{authority}:{}", if tls { 443 } else { 80 })
                };
                let host = authority
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or_else(|| authority.to_string());
                (
                    addr,
                    host,
                    tls,
                    if path.is_empty() {
                        "/".to_string()
                    } else {
                        path.to_string()
                    },
                )
            }
            None => (
                self.addr(),
                self.host.clone(),
                self.security != Security::Plain,
                target.to_string(),
            ),
        };
        let learned_plain = url.is_none()
            && self.security == Security::TlsOrLoopbackPlain
            && self
                .plain_learned
                .load(std::sync::atomic::Ordering::Relaxed);
        // Senders, rendezvous and HTTP answers come in streams: their transport is dialled
        // ahead (see `Warm`) where a handshake costs round trips, that is with TLS or to
        // another machine. A clear loopback connect is cheaper than keeping one ready (5–10 %
        // more CPU per connection measured in a connection storm), and a control channel is
        // opened once.
        let use_tls = tls && !learned_plain;
        let ahead = self.dial_ahead > 0 && what != "listen" && (use_tls || !is_loopback(&host));
        let key = format!("{addr}|{host}|{use_tls}");
        let warmed = if ahead { self.warm.take(&key) } else { None };
        let was_warm = warmed.is_some();
        if was_warm {
            tracing::debug!("{what}: on a connection to {addr} dialled ahead");
        }
        let mut stream = match warmed {
            Some(s) => s,
            None => {
                self.dial(&addr, &host, tls && !learned_plain, url.is_none())
                    .await?
            }
        };
        if ahead {
            self.dial_ahead(&addr, &host, stream.is_tls());
        }
        let hs = match client_handshake(&mut stream, &addr, &target, headers).await {
            // The relay closed a connection dialled ahead just as it was used: nothing was
            // done on it, so a fresh one is as good.
            Err(_) if was_warm => {
                stream = self.dial(&addr, &host, stream.is_tls(), false).await?;
                client_handshake(&mut stream, &addr, &target, headers).await?
            }
            other => other?,
        };
        if hs.status != 101 {
            return Err(ClientError::Refused {
                what,
                status: hs.status,
                reason: hs.reason,
            });
        }
        let protocol = hs.header("sec-websocket-protocol").map(str::to_string);
        // Nobody between us and the relay can read the stream inside TLS or on loopback, so
        // the zero masking key is safe there (see `FrameWriter::set_zero_mask`).
        let private =
            stream.is_tls() || stream.tcp().peer_addr().is_ok_and(|a| a.ip().is_loopback());
        let (r, w) = split(stream);
        let mut writer = FrameWriter::new(w, Role::Client);
        writer.set_zero_mask(private);
        Ok(RelayedConnection {
            reader: FrameReader::new(r, hs.leftover, Role::Client, u64::MAX >> 1),
            writer,
            protocol,
        })
    }
}

/// A relayed WebSocket, seen from a client (sender, or listener after accept).
pub struct RelayedConnection {
    /// Frames in.
    pub reader: FrameReader<ReadSide>,
    /// Frames out.
    pub writer: FrameWriter<WriteSide>,
    /// Negotiated sub-protocol.
    pub protocol: Option<String>,
}

impl RelayedConnection {
    /// Reads the next complete binary or text message (up to `limit` bytes), answering Pings;
    /// `None` when the peer sent Close.
    pub async fn recv(&mut self, limit: usize) -> Result<Option<Bytes>, ClientError> {
        let mut msg: Vec<u8> = Vec::new();
        loop {
            let Some(h) = self.reader.header().await? else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "relay connection ended without Close",
                )
                .into());
            };
            match h.opcode {
                OpCode::Ping => {
                    let p = self.reader.payload(125).await?;
                    self.writer.frame(true, OpCode::Pong, &p).await?;
                }
                OpCode::Pong => {
                    self.reader.payload(125).await?;
                }
                OpCode::Close => {
                    self.reader.payload(125).await?;
                    return Ok(None);
                }
                _ => {
                    if msg.len() as u64 + h.len > limit as u64 {
                        return Err(ClientError::Config(format!(
                            "message larger than {limit} bytes"
                        )));
                    }
                    msg.extend_from_slice(&self.reader.payload(limit).await?);
                    if h.fin {
                        return Ok(Some(Bytes::from(msg)));
                    }
                }
            }
        }
    }

    /// Sends one binary message.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ClientError> {
        Ok(self.writer.frame(true, OpCode::Binary, data).await?)
    }
}

/// Opens a sender connection to `entity` (path suffix and query may follow the name).
pub async fn connect(
    ep: &RelayEndpoint,
    entity: &str,
    headers: &[(String, String)],
) -> Result<RelayedConnection, ClientError> {
    let name = entity.split(['/', '?']).next().unwrap_or(entity);
    let mut h: Vec<(String, String)> = headers.to_vec();
    if let Some((t, _)) = ep.token_for(name) {
        h.push(("ServiceBusAuthorization".into(), t));
    }
    let sep = if entity.contains('?') { '&' } else { '?' };
    ep.open(
        &format!("/$hc/{entity}{sep}sb-hc-action=connect"),
        None,
        &h,
        "connect",
    )
    .await
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Interval of keep-alive Pings on the control channel (azbridge `-a`, default 30 s).
    pub keep_alive: Duration,
    /// Largest reconnect delay.
    pub max_backoff: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            keep_alive: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// A Hybrid Connections listener.
pub struct Listener {
    ep: RelayEndpoint,
    entity: String,
    opts: ListenerOptions,
    requests: Option<RequestHandler>,
}

/// Largest relayed HTTP request or response body this client buffers.
pub const MAX_HTTP_BODY: usize = 64 * 1024 * 1024;

/// An HTTP request relayed to the listener.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Request id.
    pub id: String,
    /// Rendezvous address of the request (for large responses).
    pub address: String,
    /// Method.
    pub method: String,
    /// Origin-form target, including the hybrid connection name.
    pub target: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl HttpRequest {
    fn from_json(r: &serde_json::Value, body: Bytes) -> HttpRequest {
        let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        HttpRequest {
            id: s("id"),
            address: s("address"),
            method: s("method"),
            target: s("requestTarget"),
            headers: r
                .get("requestHeaders")
                .and_then(|h| h.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            body,
        }
    }
}

/// The listener's answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// Serves relayed HTTP requests.
pub type RequestHandler = Arc<
    dyn Fn(HttpRequest) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>>
        + Send
        + Sync,
>;

async fn read_message(
    reader: &mut FrameReader<ReadSide>,
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    limit: usize,
) -> Result<Bytes, ClientError> {
    let mut msg = Vec::new();
    loop {
        let Some(h) = reader.header().await? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection ended inside a body",
            )
            .into());
        };
        match h.opcode {
            OpCode::Ping => {
                let p = reader.payload(125).await?;
                writer.lock().await.frame(true, OpCode::Pong, &p).await?;
            }
            OpCode::Pong => {
                reader.payload(125).await?;
            }
            OpCode::Close => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed inside a body",
                )
                .into())
            }
            _ => {
                if msg.len() as u64 + h.len > limit as u64 {
                    return Err(ClientError::Config(format!(
                        "HTTP body larger than {limit} bytes"
                    )));
                }
                msg.extend_from_slice(&reader.payload(limit).await?);
                if h.fin {
                    return Ok(Bytes::from(msg));
                }
            }
        }
    }
}

fn response_json(req_id: &str, r: &HttpResponse) -> String {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({"response": {
        "requestId": req_id,
        "statusCode": r.status,
        "statusDescription": r.reason,
        "responseHeaders": headers,
        "body": !r.body.is_empty(),
    }})
    .to_string()
}

async fn send_response(
    w: &mut FrameWriter<WriteSide>,
    req_id: &str,
    r: &HttpResponse,
) -> Result<(), ClientError> {
    w.text(&response_json(req_id, r)).await?;
    if !r.body.is_empty() {
        w.frame(true, OpCode::Binary, &r.body).await?;
    }
    Ok(())
}

/// Sends a response on the control channel when small, else over a rendezvous socket.
async fn respond(
    ep: &RelayEndpoint,
    control: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    req: &HttpRequest,
    resp: HttpResponse,
) -> Result<(), ClientError> {
    if resp.body.len() + 4096 <= 64 * 1024 {
        return send_response(&mut *control.lock().await, &req.id, &resp).await;
    }
    let mut c = ep.open("", Some(&req.address), &[], "request").await?;
    send_response(&mut c.writer, &req.id, &resp).await?;
    // The relay closes the rendezvous after the response.
    let _ = tokio::time::timeout(Duration::from_secs(10), c.recv(1024)).await;
    Ok(())
}

async fn serve_rendezvous_request(
    ep: &RelayEndpoint,
    address: &str,
    handler: RequestHandler,
) -> Result<(), ClientError> {
    let c = ep.open("", Some(address), &[], "request").await?;
    let RelayedConnection {
        mut reader, writer, ..
    } = c;
    let writer = tokio::sync::Mutex::new(writer);
    let first = read_message(&mut reader, &writer, 64 * 1024).await?;
    let v: serde_json::Value = serde_json::from_slice(&first)
        .map_err(|e| ClientError::Config(format!("bad request JSON: {e}")))?;
    let r = v
        .get("request")
        .ok_or_else(|| ClientError::Config("expected a request command".into()))?;
    let body = if r.get("body").and_then(|b| b.as_bool()).unwrap_or(false) {
        read_message(&mut reader, &writer, MAX_HTTP_BODY).await?
    } else {
        Bytes::new()
    };
    let req = HttpRequest::from_json(r, body);
    let resp = handler(req.clone()).await;
    send_response(&mut *writer.lock().await, &req.id, &resp).await?;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        read_message(&mut reader, &writer, 1024),
    )
    .await;
    Ok(())
}

/// What the relay asked of the listener.
#[derive(Debug, Clone)]
pub struct AcceptRequest {
    /// Rendezvous address.
    pub address: String,
    /// Connection id.
    pub id: String,
    /// Sender's handshake headers.
    pub headers: serde_json::Map<String, serde_json::Value>,
}

impl Listener {
    /// A listener for `entity`.
    pub fn new(ep: RelayEndpoint, entity: &str, opts: ListenerOptions) -> Listener {
        Listener {
            ep,
            entity: entity.trim_matches('/').to_string(),
            opts,
            requests: None,
        }
    }

    /// Serves relayed HTTP requests with `h` (azbridge -H).
    pub fn with_requests(mut self, h: RequestHandler) -> Listener {
        self.requests = Some(h);
        self
    }

    /// Runs forever: keeps the control channel up and calls `on_accept` for every sender
    /// (the callback decides; [`Listener::accept`] joins it). Returns only on a permanent
    /// error (404: the hybrid connection does not exist).
    pub async fn run<F, Fut>(&self, on_accept: F) -> ClientError
    where
        F: Fn(AcceptRequest) -> Fut + Send + Sync + 'static + Clone,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        // Azure SDK delays, capped, with jitter; reset after a connection that stayed up.
        let steps = [0u64, 1, 2, 5, 10, 30];
        let mut attempt = 0usize;
        loop {
            let started = tokio::time::Instant::now();
            match self.session(on_accept.clone()).await {
                Err(e) if e.is_permanent() => return e,
                Err(e) => tracing::warn!(entity = %self.entity, "listener: {e}; reconnecting"),
                Ok(()) => {
                    tracing::info!(entity = %self.entity, "listener: control channel closed by the relay; reconnecting")
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                attempt = 0;
            }
            let base =
                Duration::from_secs(steps[attempt.min(steps.len() - 1)]).min(self.opts.max_backoff);
            let jitter = Duration::from_millis(
                rand::random::<u64>() % 250 + if base.is_zero() { 50 } else { 0 },
            );
            attempt += 1;
            tokio::time::sleep(base + jitter).await;
        }
    }

    async fn session<F, Fut>(&self, on_accept: F) -> Result<(), ClientError>
    where
        F: Fn(AcceptRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (token, expiry) = self.ep.token_for(&self.entity).ok_or_else(|| {
            ClientError::Config(
                "a listener needs a token: give a rule and key, a connection string or a SAS token"
                    .into(),
            )
        })?;
        let id = format!("{:032x}", rand::random::<u128>());
        let conn = self
            .ep
            .open(
                &format!("/$hc/{}?sb-hc-action=listen&sb-hc-id={id}", self.entity),
                None,
                &[("ServiceBusAuthorization".into(), token)],
                "listen",
            )
            .await?;
        tracing::info!(entity = %self.entity, relay = %self.ep.addr(), "listener online");
        let RelayedConnection {
            mut reader, writer, ..
        } = conn;
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let mut ping = tokio::time::interval(self.opts.keep_alive);
        ping.tick().await;
        let renew_in = expiry
            .map(|e| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Duration::from_secs(e.saturating_sub(now) * 4 / 5)
            })
            .unwrap_or(Duration::from_secs(u32::MAX as u64));
        let renew = tokio::time::sleep(renew_in);
        tokio::pin!(renew);
        loop {
            tokio::select! {
                h = reader.header() => {
                    let Some(h) = h? else { return Ok(()) };
                    match h.opcode {
                        OpCode::Text => {
                            let p = reader.payload(64 * 1024).await?;
                            let v: serde_json::Value = match serde_json::from_slice(&p) {
                                Ok(v) => v,
                                Err(e) => { tracing::warn!("relay sent invalid JSON: {e}"); continue; }
                            };
                            if let Some(a) = v.get("accept") {
                                let req = AcceptRequest {
                                    address: a.get("address").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                                    id: a.get("id").and_then(|x| x.as_str()).unwrap_or("").to_string(),
                                    headers: a.get("connectHeaders").and_then(|x| x.as_object()).cloned().unwrap_or_default(),
                                };
                                tokio::spawn(on_accept(req));
                            } else if let Some(r) = v.get("request") {
                                let Some(handler) = self.requests.clone() else {
                                    tracing::warn!("HTTP request received but this listener serves no HTTP; the sender will time out");
                                    continue;
                                };
                                if r.get("method").is_some() {
                                    // Complete request on the control channel; its body is the next message.
                                    let body = if r.get("body").and_then(|b| b.as_bool()).unwrap_or(false) {
                                        read_message(&mut reader, &writer, MAX_HTTP_BODY).await?
                                    } else {
                                        Bytes::new()
                                    };
                                    let req = HttpRequest::from_json(r, body);
                                    let (ep, w) = (self.ep.clone(), writer.clone());
                                    tokio::spawn(async move {
                                        let resp = handler(req.clone()).await;
                                        if let Err(e) = respond(&ep, &w, &req, resp).await {
                                            tracing::warn!(request = %req.id, "sending the response failed: {e}");
                                        }
                                    });
                                } else {
                                    let ep = self.ep.clone();
                                    let address = r.get("address").and_then(|a| a.as_str()).unwrap_or("").to_string();
                                    tokio::spawn(async move {
                                        if let Err(e) = serve_rendezvous_request(&ep, &address, handler).await {
                                            tracing::warn!("HTTP rendezvous failed: {e}");
                                        }
                                    });
                                }
                            } else {
                                tracing::debug!("ignoring control command {}", String::from_utf8_lossy(&p[..p.len().min(64)]));
                            }
                        }
                        OpCode::Ping => { let p = reader.payload(125).await?; writer.lock().await.frame(true, OpCode::Pong, &p).await?; }
                        OpCode::Close => {
                            let p = reader.payload(125).await?;
                            let c = CloseFrame::parse(&p);
                            let _ = writer.lock().await.close(1000, "").await;
                            return match c.and_then(|c| c.code) {
                                Some(1000) | None => Ok(()),
                                Some(code) => Err(ClientError::Refused { what: "listen", status: code, reason: c_reason(&p) }),
                            };
                        }
                        _ => { while reader.chunk(64 * 1024).await?.is_some() {} }
                    }
                }
                _ = ping.tick() => { writer.lock().await.frame(true, OpCode::Ping, b"").await?; }
                _ = &mut renew => {
                    if let Some((t, exp)) = self.ep.token_for(&self.entity) {
                        let msg = serde_json::json!({"renewToken": {"token": t}}).to_string();
                        writer.lock().await.text(&msg).await?;
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                        let next = exp.map(|e| e.saturating_sub(now) * 4 / 5).unwrap_or(3600);
                        renew.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(next.max(60)));
                    }
                }
            }
        }
    }

    /// Joins a sender: dials the rendezvous address.
    pub async fn accept(&self, req: &AcceptRequest) -> Result<RelayedConnection, ClientError> {
        accept(&self.ep, req).await
    }
}

fn c_reason(p: &[u8]) -> String {
    CloseFrame::parse(p).map(|c| c.reason).unwrap_or_default()
}

/// Dials a rendezvous address (accept).
pub async fn accept(
    ep: &RelayEndpoint,
    req: &AcceptRequest,
) -> Result<RelayedConnection, ClientError> {
    ep.open("", Some(&req.address), &[], "accept").await
}

/// Rejects a sender with a status (both parameter spellings are understood by hyrelay;
/// this uses the .NET one).
pub async fn reject(
    ep: &RelayEndpoint,
    req: &AcceptRequest,
    status: u16,
    description: &str,
) -> Result<(), ClientError> {
    let url = format!(
        "{}&sb-hc-statusCode={status}&sb-hc-statusDescription={}",
        req.address,
        sas::encode_component(description)
    );
    match ep.open("", Some(&url), &[], "reject").await {
        Err(ClientError::Refused { status: 410, .. }) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// How [`pipe`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeReport {
    /// Bytes from the stream to the relay.
    pub up: u64,
    /// Bytes from the relay to the stream.
    pub down: u64,
}

/// Joins a relayed connection and a byte stream until both directions are done. Each read
/// from the stream (up to 64 KiB) becomes one binary message; EOF becomes a Close
/// ("Shutdown") while the other direction keeps flowing; a Close from the relay shuts the
/// stream's write side. An error on either side ends both abruptly and is returned, so a
/// truncated transfer is never reported as success.
pub async fn pipe<S>(conn: RelayedConnection, stream: S) -> Result<PipeReport, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pipe_inner(conn, stream, None, None).await
}

/// Checks the first message the other end sends (azbridge's preamble answer), given `None`
/// if it closed instead. The pipe carries local bytes up at once but nothing down until the
/// check passes; an error ends the pipe abruptly and is returned.
pub type FirstAnswer<'a> = &'a (dyn Fn(Option<&[u8]>) -> Result<(), ClientError> + Send + Sync);

/// How long [`FirstAnswer`] waits for the other end's first message.
pub const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The signal from a pipe's down direction to its up direction that the answer passed.
#[allow(clippy::type_complexity)]
fn answered_channel(
    wanted: bool,
) -> (
    Option<tokio::sync::watch::Sender<bool>>,
    Option<tokio::sync::watch::Receiver<bool>>,
) {
    if !wanted {
        return (None, None);
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    (Some(tx), Some(rx))
}

/// Runs a pipe's up direction. If it fails while the other end's answer is still awaited,
/// the error waits for that answer: a refusal (which usually also breaks the up direction)
/// is then what the pipe reports, not the broken write it caused.
async fn up_until_answered<F>(
    up: F,
    answered: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<u64, ClientError>
where
    F: std::future::Future<Output = Result<u64, ClientError>>,
{
    let r = up.await;
    if let (Err(_), Some(mut rx)) = (&r, answered) {
        let _ = tokio::time::timeout(ANSWER_WAIT, rx.wait_for(|ok| *ok)).await;
    }
    r
}

/// If an answer is expected: reads and checks it, then tells the up direction it passed.
async fn await_answer(
    reader: &mut FrameReader<ReadSide>,
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    answer: Option<FirstAnswer<'_>>,
    answered: Option<tokio::sync::watch::Sender<bool>>,
) -> Result<(), ClientError> {
    if let Some(a) = answer {
        first_answer(reader, writer, a).await?;
        if let Some(tx) = answered {
            let _ = tx.send(true);
        }
    }
    Ok(())
}

/// Reads the other end's first message (up to 255 bytes, answering Pings) and checks it.
async fn first_answer(
    reader: &mut FrameReader<ReadSide>,
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    check: FirstAnswer<'_>,
) -> Result<(), ClientError> {
    let got = tokio::time::timeout(ANSWER_WAIT, async {
        let Some(h) = next_frame(
            reader,
            writer,
            "the relayed connection was aborted before the other end answered",
        )
        .await?
        else {
            return Ok(None);
        };
        if !h.fin || h.len > 255 {
            return Err(ClientError::Peer(format!(
                "the other end's first message is not a short answer ({} bytes{})",
                h.len,
                if h.fin { "" } else { ", fragmented" }
            )));
        }
        Ok(Some(reader.payload(255).await?))
    })
    .await
    .map_err(|_| {
        ClientError::Peer(format!(
            "the other end did not answer within {} s",
            ANSWER_WAIT.as_secs()
        ))
    })??;
    check(got.as_deref())
}

/// [`pipe`] for a socket whose descriptor is `fd`: when the relayed side fails, the socket is
/// reset (RST) instead of closed, so its peer sees an error rather than a clean, truncated end.
pub async fn pipe_socket<S>(conn: RelayedConnection, stream: S) -> Result<PipeReport, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static + std::os::fd::AsRawFd,
{
    pipe_socket_after(conn, stream, None).await
}

/// [`pipe_socket`] that checks the other end's first message before carrying anything down
/// (see [`FirstAnswer`]); local bytes go up without waiting for it.
pub async fn pipe_socket_after<S>(
    conn: RelayedConnection,
    stream: S,
    answer: Option<FirstAnswer<'_>>,
) -> Result<PipeReport, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static + std::os::fd::AsRawFd,
{
    let fd = stream.as_raw_fd();
    pipe_inner(conn, stream, Some(fd), answer).await
}

/// The next data frame's header on a relayed connection's way down, after answering control
/// frames on the way: `None` once the relay sent Close (the local write side is then shut
/// down); an end without Close is an error, so a truncated transfer never looks complete.
async fn next_data_frame<W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<ReadSide>,
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    sw: &mut W,
) -> Result<Option<hyrelay_ws::FrameHeader>, ClientError> {
    let h = next_frame(reader, writer, "the relayed connection was aborted").await?;
    if h.is_none() {
        sw.shutdown().await?;
    }
    Ok(h)
}

/// The next data frame's header, answering Pings and skipping Pongs on the way; `None` after
/// a Close (its payload read). An end without Close is the error `aborted`.
async fn next_frame(
    reader: &mut FrameReader<ReadSide>,
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
    aborted: &'static str,
) -> Result<Option<hyrelay_ws::FrameHeader>, ClientError> {
    loop {
        let Some(h) = reader.header().await? else {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                aborted,
            )));
        };
        match h.opcode {
            OpCode::Close => {
                reader.payload(125).await?;
                return Ok(None);
            }
            OpCode::Ping => {
                let p = reader.payload(125).await?;
                writer.lock().await.frame(true, OpCode::Pong, &p).await?;
            }
            OpCode::Pong => {
                reader.payload(125).await?;
            }
            _ => return Ok(Some(h)),
        }
    }
}

/// A pipe's read buffer for the local stream starts at this size, so a short exchange touches
/// (and zeroes) one page instead of sixteen: new connections are cheaper.
const UP_FIRST: usize = 4096;
/// ... and grows to this once a read fills it.
const UP_BUF: usize = 64 * 1024;

fn grow_if_full(buf: &mut Vec<u8>, n: usize) {
    if n == buf.len() && buf.len() < UP_BUF {
        buf.resize(UP_BUF, 0);
    }
}

/// One read from the local stream, sent on as one binary message; at end of stream a Close
/// ("Shutdown") goes instead and the answer is `None`.
async fn read_and_send<R: AsyncRead + Unpin>(
    sr: &mut R,
    buf: &mut [u8],
    writer: &tokio::sync::Mutex<FrameWriter<WriteSide>>,
) -> Result<Option<usize>, ClientError> {
    let n = sr.read(buf).await?;
    let mut w = writer.lock().await;
    if n == 0 {
        w.close(1000, "Shutdown").await?;
        return Ok(None);
    }
    w.frame_in_place(true, OpCode::Binary, &mut buf[..n])
        .await?;
    Ok(Some(n))
}

/// How a pipe's two directions ended: the report, or the first error after `abort` made the
/// local socket's end an abort rather than an orderly close.
fn finish(
    res: Result<(u64, u64), ClientError>,
    abort: impl FnOnce(),
) -> Result<PipeReport, ClientError> {
    match res {
        Ok((up, down)) => Ok(PipeReport { up, down }),
        Err(e) => {
            abort();
            Err(e)
        }
    }
}

/// Copies what is left of the current frame's payload to `sw`; returns how many bytes.
async fn copy_rest<W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<ReadSide>,
    sw: &mut W,
) -> Result<u64, ClientError> {
    let mut n = 0u64;
    while let Some(c) = reader.chunk(256 * 1024).await? {
        sw.write_all(&c).await?;
        n += c.len() as u64;
    }
    Ok(n)
}

/// [`pipe_socket`] for a TCP socket. Where both sockets are plain TCP (Linux) and payloads
/// cross untouched (loopback or the relay's TLS is not in play), bulk data never enters user
/// space: the kernel splices it between the sockets and only frame headers are written here.
/// Small messages keep the ordinary path (one read, one write), so latency does not suffer.
pub async fn pipe_tcp(
    conn: RelayedConnection,
    stream: tokio::net::TcpStream,
) -> Result<PipeReport, ClientError> {
    pipe_tcp_after(conn, stream, None).await
}

/// [`pipe_tcp`] that checks the other end's first message before carrying anything down
/// (see [`FirstAnswer`]); local bytes go up without waiting for it.
pub async fn pipe_tcp_after(
    conn: RelayedConnection,
    stream: tokio::net::TcpStream,
    answer: Option<FirstAnswer<'_>>,
) -> Result<PipeReport, ClientError> {
    #[cfg(target_os = "linux")]
    {
        let plain = matches!(conn.reader.get_ref(), ReadSide::Plain(_))
            && matches!(conn.writer.get_ref(), WriteSide::Plain(_))
            && conn.writer.payload_untouched();
        if plain {
            return pipe_kernel(conn, stream, answer).await;
        }
    }
    pipe_socket_after(conn, stream, answer).await
}

#[cfg(target_os = "linux")]
async fn pipe_kernel(
    conn: RelayedConnection,
    stream: tokio::net::TcpStream,
    answer: Option<FirstAnswer<'_>>,
) -> Result<PipeReport, ClientError> {
    // Pipes are made when bulk data first shows up (short connections never need them); if
    // the process is out of descriptors, that direction keeps the ordinary path.
    let (mut pipe_up, mut pipe_down) = (None::<kernel::Pipe>, None::<kernel::Pipe>);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let RelayedConnection {
        mut reader, writer, ..
    } = conn;
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let (mut sr, mut sw) = stream.into_split();
    let w2 = writer.clone();
    let (sr_ref, sw_ref) = (&mut sr, &mut sw);
    let (answered_tx, answered_rx) = answered_channel(answer.is_some());
    let up = async move {
        let sr = sr_ref;
        let mut buf = vec![0u8; UP_FIRST];
        let mut n_total = 0u64;
        // Start on the ordinary path; a read that fills the whole (grown) buffer says bulk
        // is flowing.
        let mut bulk = false;
        loop {
            if !bulk {
                let Some(n) = read_and_send(sr, &mut buf, &w2).await? else {
                    return Ok::<u64, ClientError>(n_total);
                };
                n_total += n as u64;
                bulk = n == UP_BUF;
                grow_if_full(&mut buf, n);
                continue;
            }
            if pipe_up.is_none() {
                pipe_up = kernel::Pipe::new().ok();
            }
            let Some(pipe_up) = pipe_up.as_mut() else {
                bulk = false;
                continue;
            };
            let cap = pipe_up.capacity();
            let n = kernel::fill(sr.as_ref(), pipe_up, cap).await?;
            let mut w = w2.lock().await;
            if n == 0 {
                w.close(1000, "Shutdown").await?;
                return Ok(n_total);
            }
            let (hb, hn) = w
                .untouched_header(true, OpCode::Binary, n)
                .expect("checked before choosing the kernel path");
            let WriteSide::Plain(ws) = w.get_ref() else {
                unreachable!("checked before choosing the kernel path")
            };
            kernel::send_more(ws.as_ref(), &hb[..hn]).await?;
            kernel::drain(ws.as_ref(), pipe_up).await?;
            n_total += n as u64;
            bulk = n as u64 >= kernel::MIN_SPLICE;
        }
    };
    let down = async move {
        let sw = sw_ref;
        let mut n_total = 0u64;
        await_answer(&mut reader, &writer, answer, answered_tx).await?;
        while let Some(h) = next_data_frame(&mut reader, &writer, sw).await? {
            while let Some(c) = reader.buffered_chunk(256 * 1024) {
                sw.write_all(&c).await?;
                n_total += c.len() as u64;
            }
            let rest = reader.remaining();
            if rest >= kernel::MIN_SPLICE
                && h.mask.is_none_or(|m| m == [0; 4])
                && (pipe_down.is_some() || {
                    pipe_down = kernel::Pipe::new().ok();
                    pipe_down.is_some()
                })
            {
                let ReadSide::Plain(rs) = reader.get_ref() else {
                    unreachable!("checked before choosing the kernel path")
                };
                let p = pipe_down.as_mut().expect("made just above");
                kernel::exact(rs.as_ref(), sw.as_ref(), p, rest).await?;
                reader.consumed_elsewhere(rest);
                n_total += rest;
            }
            n_total += copy_rest(&mut reader, sw).await?;
        }
        Ok(n_total)
    };
    finish(
        tokio::try_join!(up_until_answered(up, answered_rx), down),
        || {
            // The halves are still alive here, so `fd` is still this socket.
            hyrelay_net::stream::abort_fd(fd);
            // tokio's OwnedWriteHalf shuts down (FIN) when dropped; forget() skips that, so the
            // peer's first sign is the reset of the close, never an orderly end.
            sw.forget();
        },
    )
}

async fn pipe_inner<S>(
    conn: RelayedConnection,
    stream: S,
    fd: Option<std::os::fd::RawFd>,
    answer: Option<FirstAnswer<'_>>,
) -> Result<PipeReport, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let RelayedConnection {
        mut reader, writer, ..
    } = conn;
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let (mut sr, mut sw) = tokio::io::split(stream);
    let w2 = writer.clone();
    let (sr_ref, sw_ref) = (&mut sr, &mut sw);
    let (answered_tx, answered_rx) = answered_channel(answer.is_some());
    let up = async move {
        let sr = sr_ref;
        let mut buf = vec![0u8; UP_FIRST];
        let mut n_total = 0u64;
        while let Some(n) = read_and_send(sr, &mut buf, &w2).await? {
            n_total += n as u64;
            grow_if_full(&mut buf, n);
        }
        Ok::<u64, ClientError>(n_total)
    };
    let down = async move {
        let sw = sw_ref;
        let mut n_total = 0u64;
        await_answer(&mut reader, &writer, answer, answered_tx).await?;
        while next_data_frame(&mut reader, &writer, sw).await?.is_some() {
            n_total += copy_rest(&mut reader, sw).await?;
        }
        Ok(n_total)
    };
    finish(
        tokio::try_join!(up_until_answered(up, answered_rx), down),
        || {
            if let Some(fd) = fd {
                // The halves are still alive here, so `fd` is still this socket.
                hyrelay_net::stream::abort_fd(fd);
            }
        },
    )
}

/// azbridge's in-tunnel preamble, written by the sender: `01 00 {mode} {len} {port name}`.
pub fn preamble(port_name: &str, datagram: bool) -> Result<Vec<u8>, ClientError> {
    let name = port_name.as_bytes();
    if name.len() > 255 {
        return Err(ClientError::Config(format!(
            "port name '{port_name}' is longer than 255 bytes"
        )));
    }
    let mut v = vec![1, 0, u8::from(datagram), name.len() as u8];
    v.extend_from_slice(name);
    Ok(v)
}

/// Parses azbridge's preamble: (port name, datagram).
pub fn parse_preamble(b: &[u8]) -> Result<(String, bool), ClientError> {
    if b.len() < 4 || b[0] != 1 || b[1] != 0 || b[2] > 1 || b.len() != 4 + b[3] as usize {
        return Err(ClientError::Config(
            "not an azbridge preamble (01 00 mode len name)".into(),
        ));
    }
    let name = std::str::from_utf8(&b[4..])
        .map_err(|_| ClientError::Config("port name is not UTF-8".into()))?;
    Ok((name.to_string(), b[2] == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warm_connections_are_used_once_and_never_when_closed_or_old() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let w = Warm::default();
        let dial = || async { Stream::Plain(TcpStream::connect(addr).await.unwrap()) };
        // One ready connection: taken once, then none; another key gets nothing.
        assert!(w.want("a", 2));
        w.done("a", Some(dial().await));
        let (_kept, _) = l.accept().await.unwrap();
        assert!(w.take("b").is_none());
        assert!(w.take("a").is_some());
        assert!(w.take("a").is_none());
        // At most `target` per key, counting those still being dialled.
        assert!(w.want("a", 2) && w.want("a", 2) && !w.want("a", 2));
        assert!(!w.want("b", 0));
        w.done("a", None);
        w.done("a", None);
        // The relay closed it while it waited: dropped, not handed out.
        w.want("a", 2);
        w.done("a", Some(dial().await));
        let (closed, _) = l.accept().await.unwrap();
        drop(closed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(w.take("a").is_none(), "a closed connection was offered");
        // The relay sent bytes on a clear connection nobody asked yet: not usable either.
        w.want("a", 2);
        w.done("a", Some(dial().await));
        let (mut talky, _) = l.accept().await.unwrap();
        talky.write_all(b"HTTP/1.1 408\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            w.take("a").is_none(),
            "a connection with unread bytes was offered"
        );
        // Too old: dropped.
        w.want("a", 2);
        w.done("a", Some(dial().await));
        let (_kept2, _) = l.accept().await.unwrap();
        {
            let mut st = w.state.lock().unwrap();
            let at = &mut st.idle[0].1;
            *at = at.checked_sub(WARM_MAX_AGE).expect("clock older than 15 s");
        }
        assert!(w.take("a").is_none(), "an old connection was offered");
        assert!(w.state.lock().unwrap().idle.is_empty());
        // Dialling ahead starts at an address's second use; only the last WARM_SEEN count.
        assert!(!w.seen_before("h1") && w.seen_before("h1"));
        for i in 0..WARM_SEEN {
            w.seen_before(&format!("other{i}"));
        }
        assert!(
            !w.seen_before("h1"),
            "a forgotten address still counted as seen"
        );
    }

    #[test]
    fn preamble_roundtrip_and_bytes() {
        // The transcript in azbridge's documentation: stream mode, port name "rdp".
        assert_eq!(
            preamble("rdp", false).unwrap(),
            vec![1, 0, 0, 3, b'r', b'd', b'p']
        );
        assert_eq!(preamble("53", true).unwrap(), vec![1, 0, 1, 2, b'5', b'3']);
        assert_eq!(
            parse_preamble(&[1, 0, 0, 3, b'r', b'd', b'p']).unwrap(),
            ("rdp".into(), false)
        );
        assert!(parse_preamble(&[1, 0, 0, 4, b'r']).is_err());
        assert!(parse_preamble(&[2, 0, 0, 0]).is_err());
        assert!(preamble(&"x".repeat(256), false).is_err());
    }

    #[test]
    fn endpoints() {
        let tls = hyrelay_net::tls::client_config(&[], false).unwrap();
        let e = RelayEndpoint::from_connection_string(
            "Endpoint=sb://127.0.0.1:9080/;SharedAccessKeyName=R;SharedAccessKey=k=;EntityPath=hc",
            tls.clone(),
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.security),
            ("127.0.0.1", 9080, Security::TlsOrLoopbackPlain)
        );
        assert_eq!(e.entity.as_deref(), Some("hc"));
        let a = RelayEndpoint::new(
            "sb://ns.servicebus.windows.net/",
            TokenSource::None,
            tls.clone(),
        )
        .unwrap();
        assert_eq!((a.port, a.security), (443, Security::Tls));
        let w = RelayEndpoint::new("ws://localhost:1", TokenSource::None, tls.clone()).unwrap();
        assert_eq!(w.security, Security::Plain);
        assert!(RelayEndpoint::new("ftp://x", TokenSource::None, tls).is_err());
        assert_eq!(
            format!(
                "{:?}",
                TokenSource::Key {
                    name: "r".into(),
                    key: "secret".into()
                }
            ),
            "Key(r, ***)"
        );
    }
}

/// Largest UDP datagram carried (the 2-byte length prefix's range).
pub const MAX_DATAGRAM: usize = 65535;

/// Encodes a datagram as azbridge does inside a stream: 2-byte big-endian length + payload.
pub fn encode_datagram(d: &[u8], out: &mut Vec<u8>) -> Result<(), ClientError> {
    if d.len() > MAX_DATAGRAM {
        return Err(ClientError::Config(format!(
            "datagram of {} bytes is larger than {MAX_DATAGRAM}",
            d.len()
        )));
    }
    out.extend_from_slice(&(d.len() as u16).to_be_bytes());
    out.extend_from_slice(d);
    Ok(())
}

/// Splits a byte stream back into datagrams, whatever the message boundaries were.
#[derive(Debug, Default)]
pub struct DatagramDecoder {
    buf: Vec<u8>,
}

impl DatagramDecoder {
    /// Adds received bytes.
    pub fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The next complete datagram, if any.
    pub fn next_datagram(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < 2 {
            return None;
        }
        let n = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if self.buf.len() < 2 + n {
            return None;
        }
        let d = self.buf[2..2 + n].to_vec();
        self.buf.drain(..2 + n);
        Some(d)
    }
}

#[cfg(test)]
mod datagram_tests {
    use super::*;

    #[test]
    fn boundaries_survive_any_split() {
        let grams: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![], vec![7u8; 1500], b"last".to_vec()];
        let mut wire = Vec::new();
        for g in &grams {
            encode_datagram(g, &mut wire).unwrap();
        }
        for split in 1..wire.len() {
            let mut d = DatagramDecoder::default();
            let mut out = Vec::new();
            for chunk in wire.chunks(split) {
                d.push(chunk);
                while let Some(g) = d.next_datagram() {
                    out.push(g);
                }
            }
            assert_eq!(out, grams, "split {split}");
        }
        assert!(encode_datagram(&vec![0u8; 70000], &mut Vec::new()).is_err());
    }
}

/// Sends an HTTP request to a hybrid connection (the sender side of relayed HTTP):
/// `target` is the path below the hybrid connection, with an optional query, e.g.
/// `/customers/42?full=1`. The token goes in the `ServiceBusAuthorization` header.
pub async fn http_request(
    ep: &RelayEndpoint,
    entity: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<HttpResponse, ClientError> {
    use http_body_util::{BodyExt, Full};
    let entity = entity.trim_matches('/');
    let path = format!(
        "/{entity}{}",
        if target.is_empty() || target.starts_with(['/', '?']) {
            target.to_string()
        } else {
            format!("/{target}")
        }
    );
    let addr = ep.addr();
    let stream = match ep.security {
        Security::Plain => ep.dial_addr(&addr, &ep.host, false).await?,
        Security::Tls => ep.dial_addr(&addr, &ep.host, true).await?,
        Security::TlsOrLoopbackPlain => match ep.dial_addr(&addr, &ep.host, true).await {
            Err(ClientError::Tls { .. }) => ep.dial_addr(&addr, &ep.host, false).await?,
            other => other?,
        },
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(&path)
        .header("host", &addr);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some((t, _)) = ep.token_for(entity) {
        b = b.header("ServiceBusAuthorization", t);
    }
    let req = b
        .body(Full::new(body))
        .map_err(|e| ClientError::Config(format!("bad request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
    let status = resp.status().as_u16();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| resp.status().canonical_reason().map(str::to_string));
    let hdrs = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_HTTP_BODY)
        .collect()
        .await
        .map_err(|e| ClientError::Io(std::io::Error::other(e.to_string())))?
        .to_bytes();
    Ok(HttpResponse {
        status,
        reason,
        headers: hdrs,
        body,
    })
}

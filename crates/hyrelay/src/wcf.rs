//! The WCF side of `hyrelay bridge`: `--wcf NAME=net.tcp://…` exposes a net.tcp service as
//! hybrid connection NAME (Via and WS-Addressing To rewritten to the service's address);
//! `--wcf-local [ADDR:]PORT/PATH=NAME` gives legacy WCF clients a local net.tcp endpoint
//! that reaches hybrid connection NAME.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyrelay_client::{connect, pipe_socket, AcceptRequest, RelayEndpoint};
use hyrelay_nmf::FaultCode;
use hyrelay_wcf::{fault_record, peek_via, via_path, Inbound, InboundConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A service-side mapping: hybrid connection → net.tcp service.
#[derive(Debug, Clone)]
pub struct WcfService {
    pub hyco: String,
    pub address: String,
    /// host:port to dial.
    pub dial: String,
}

/// Counters per endpoint, for logs and `bridge status`.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub sessions: AtomicU64,
    pub active: AtomicU64,
    pub messages: AtomicU64,
    pub errors: AtomicU64,
}

/// Parse `NAME=net.tcp://host:port/path`.
pub fn parse_service(spec: &str) -> Result<WcfService> {
    let (name, addr) = spec
        .split_once('=')
        .with_context(|| format!("--wcf {spec:?}: expected NAME=net.tcp://host:port/path"))?;
    let rest = addr.strip_prefix("net.tcp://").with_context(|| {
        format!("--wcf {spec:?}: the service address must start with net.tcp://")
    })?;
    let hostport = rest.split('/').next().unwrap_or("");
    if name.is_empty() || hostport.is_empty() {
        bail!("--wcf {spec:?}: expected NAME=net.tcp://host:port/path");
    }
    let dial = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:808")
    };
    Ok(WcfService {
        hyco: name.to_owned(),
        address: addr.to_owned(),
        dial,
    })
}

/// A client-side mapping: local net.tcp path → hybrid connection.
#[derive(Debug, Clone)]
pub struct WcfLocal {
    pub listen: String,
    pub path: String,
    pub hyco: String,
}

/// Parse `[ADDR:]PORT/PATH=NAME`.
pub fn parse_local(spec: &str, gateway: bool) -> Result<WcfLocal> {
    let (left, name) = spec.rsplit_once('=').with_context(|| {
        format!("--wcf-local {spec:?}: expected [ADDR:]PORT/PATH=NAME, e.g. 127.0.0.1:9000/CreditCheck=credit-check")
    })?;
    let (addr, path) = match left.find('/') {
        Some(i) => (&left[..i], &left[i..]),
        None => (left, "/"),
    };
    let listen = if addr.parse::<u16>().is_ok() {
        format!("{}:{addr}", if gateway { "0.0.0.0" } else { "127.0.0.1" })
    } else {
        addr.to_owned()
    };
    if name.is_empty() || listen.is_empty() {
        bail!("--wcf-local {spec:?}: expected [ADDR:]PORT/PATH=NAME");
    }
    Ok(WcfLocal {
        listen,
        path: via_path(&format!("net.tcp://x{path}")),
        hyco: name.to_owned(),
    })
}

/// Wraps the socket to the service: bytes written go through the [`Inbound`] rewriter.
struct Rewriting {
    inner: TcpStream,
    inbound: Inbound,
    pending: Vec<u8>,
    sent: usize,
    stats: Arc<EndpointStats>,
    name: Arc<str>,
    counted: u64,
}

impl Rewriting {
    fn poll_drain(&mut self, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Rewriting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewriting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_drain(cx))?;
        let this = &mut *self;
        if let Err(e) = this.inbound.feed(buf) {
            this.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(endpoint = %this.name, "session aborted: {e}");
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            )));
        }
        let m = this.inbound.stats().messages;
        if m > this.counted {
            this.stats
                .messages
                .fetch_add(m - this.counted, Ordering::Relaxed);
            this.counted = m;
        }
        let out = this.inbound.take_output();
        this.pending.extend_from_slice(&out);
        // Accepted; what the socket does not take now goes out on the next write/flush.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        if let Err(e) = self.inbound.finish() {
            tracing::info!(endpoint = %self.name, "client ended inside a record: {e}");
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl std::os::fd::AsRawFd for Rewriting {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

/// Serve one relayed stream for a `--wcf` endpoint.
pub async fn serve_accept(
    ep: Arc<RelayEndpoint>,
    svc: Arc<WcfService>,
    stats: Arc<EndpointStats>,
    req: AcceptRequest,
) {
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    let name: Arc<str> = Arc::from(svc.hyco.as_str());
    let res: Result<()> = async {
        let mut c = hyrelay_client::accept(&ep, &req).await?;
        let mut inbound = Inbound::new(InboundConfig::new(&svc.address));
        // Read until the preamble named its encoding: refuse what cannot be bridged with
        // the framing fault .NET would send, before touching the service.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while inbound.preamble().is_none() {
            let msg = tokio::time::timeout_at(deadline, c.recv(64 * 1024))
                .await
                .context("no net.tcp preamble within 30 s")??;
            let Some(msg) = msg else {
                bail!("the client closed before its preamble was complete");
            };
            if let Err(e) = inbound.feed(&msg) {
                if let Some(f) = e.fault() {
                    let _ = c.send(&fault_record(f)).await;
                    let _ = c.writer.close(1000, "framing fault").await;
                }
                bail!("refused: {e}");
            }
        }
        let pre = inbound.preamble().cloned().unwrap_or_default();
        let s = match TcpStream::connect(&svc.dial).await {
            Ok(s) => s,
            Err(e) => {
                let _ = c.send(&fault_record(FaultCode::EndpointUnavailable)).await;
                let _ = c.writer.close(1000, "service unavailable").await;
                bail!(
                    "the service at {} ({}) is not reachable: {e}",
                    svc.address,
                    svc.dial
                );
            }
        };
        let _ = s.set_nodelay(true);
        tracing::info!(
            endpoint = %name,
            client_via = %pre.via,
            "session → {} (Via and To rewritten)",
            svc.address
        );
        let mut w = Rewriting {
            inner: s,
            inbound,
            pending: Vec::new(),
            sent: 0,
            stats: stats.clone(),
            name: name.clone(),
            counted: 0,
        };
        let first = w.inbound.take_output();
        w.inner.write_all(&first).await?;
        let report = pipe_socket(c, w).await?;
        tracing::debug!(endpoint = %name, up = report.up, down = report.down, "session closed");
        Ok(())
    }
    .await;
    stats.active.fetch_sub(1, Ordering::Relaxed);
    if let Err(e) = res {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(endpoint = %name, "{e:#}");
    }
}

/// Run the local net.tcp endpoints of `--wcf-local` on one listen address.
pub async fn run_local(
    ep: Arc<RelayEndpoint>,
    listen: String,
    routes: HashMap<String, String>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("--wcf-local: cannot listen on {listen}"))?;
    for (path, hyco) in &routes {
        tracing::info!("WCF clients at net.tcp://{listen}{path} → hybrid connection '{hyco}'");
    }
    let routes = Arc::new(routes);
    loop {
        let (s, peer) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        let ep = ep.clone();
        let routes = routes.clone();
        let listen = listen.clone();
        tokio::spawn(async move {
            if let Err(e) = local_session(ep, routes, s).await {
                tracing::warn!(%peer, local = %listen, "{e:#}");
            }
        });
    }
}

async fn local_session(
    ep: Arc<RelayEndpoint>,
    routes: Arc<HashMap<String, String>>,
    mut s: TcpStream,
) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let (via, _mode) = loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .context("no net.tcp preamble within 30 s")??;
        if n == 0 {
            bail!("client closed before its preamble");
        }
        head.extend_from_slice(&buf[..n]);
        match peek_via(&head, hyrelay_nmf::Limits::default()) {
            Ok(Some(v)) => break v,
            Ok(None) => continue,
            Err(e) => {
                if let Some(f) = e.server_fault() {
                    let _ = s.write_all(&fault_record(f)).await;
                }
                bail!("not a net.tcp client: {e}");
            }
        }
    };
    let path = via_path(&via);
    let Some(hyco) = routes.get(&path) else {
        // What a .NET service does for a Via it does not host.
        let _ = s
            .write_all(&fault_record(FaultCode::EndpointNotFound))
            .await;
        let _ = s.shutdown().await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let known: Vec<&String> = routes.keys().collect();
        bail!("no endpoint for Via {via} (path {path}; this address serves {known:?}): sent EndpointNotFound");
    };
    let mut c = match connect(&ep, hyco, &[]).await {
        Ok(c) => c,
        Err(e) => {
            let _ = s
                .write_all(&fault_record(FaultCode::EndpointUnavailable))
                .await;
            return Err(anyhow!("hybrid connection '{hyco}' for Via {via}: {e}"));
        }
    };
    c.send(&head).await?;
    tracing::debug!(%via, %hyco, "client session relayed");
    pipe_socket(c, s).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// HTTP text SOAP → net.tcp: relayed HTTP requests on a `--wcf` hybrid connection become
// calls on pooled duplex NMF sessions (binary, in-band dictionary) to the service.

/// One open net.tcp session to the service.
struct NetTcpSession {
    s: TcpStream,
    cs: hyrelay_nmf::ClientSession,
    c2s: hyrelay_nbfx::SessionDictionary,
    s2c: hyrelay_nbfx::SessionDictionary,
}

/// The session dictionary size .NET's binary encoder allows by default (MaxSessionSize).
const MAX_SESSION_SIZE: usize = 2048;
const MAX_REPLY: usize = 64 << 20;

impl NetTcpSession {
    async fn open(svc: &WcfService) -> Result<Self> {
        let s = TcpStream::connect(&svc.dial)
            .await
            .with_context(|| format!("the service at {} is not reachable", svc.address))?;
        let _ = s.set_nodelay(true);
        let mut cs = hyrelay_nmf::ClientSession::new(
            hyrelay_nmf::ClientConfig {
                mode: hyrelay_nmf::Mode::Duplex,
                via: svc.address.clone(),
                encoding: hyrelay_nmf::Encoding::Known(hyrelay_nmf::ENCODING_BINARY_SESSION),
                upgrade: None,
            },
            hyrelay_nmf::Limits {
                max_message_size: MAX_REPLY,
                ..Default::default()
            },
        );
        cs.start()?;
        let mut me = NetTcpSession {
            s,
            cs,
            c2s: hyrelay_nbfx::SessionDictionary::new(MAX_SESSION_SIZE),
            s2c: hyrelay_nbfx::SessionDictionary::new(MAX_REPLY),
        };
        me.flush().await?;
        match me.next_event(Duration::from_secs(30)).await? {
            hyrelay_nmf::ClientEvent::PreambleAck => Ok(me),
            other => bail!("the service answered the preamble with {other:?}"),
        }
    }

    async fn flush(&mut self) -> Result<()> {
        let out = self.cs.take_output();
        if !out.is_empty() {
            self.s.write_all(&out).await?;
        }
        Ok(())
    }

    async fn next_event(&mut self, timeout: Duration) -> Result<hyrelay_nmf::ClientEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(ev) = self.cs.poll_event()? {
                return Ok(ev);
            }
            let n = tokio::time::timeout_at(deadline, self.s.read(&mut buf))
                .await
                .map_err(|_| anyhow!("no answer from the service within {timeout:?}"))??;
            if n == 0 {
                self.cs.feed_eof()?;
                if let Some(ev) = self.cs.poll_event()? {
                    return Ok(ev);
                }
                bail!("the service closed the session");
            }
            self.cs.feed(&buf[..n]);
        }
    }

    /// Send one envelope (text XML) and return the service's answer as text XML.
    async fn call(&mut self, xml: &str, timeout: Duration) -> Result<String> {
        let msg = hyrelay_nbfx::xml_to_session_message(
            xml,
            &mut self.c2s,
            &hyrelay_nbfx::EncodeOptions::default(),
        )
        .context("cannot encode the request as binary XML")?;
        let mut payload = Vec::new();
        hyrelay_nbfx::write_session_message(&msg, &mut payload)?;
        self.cs.send_message(&payload)?;
        self.flush().await?;
        match self.next_event(timeout).await? {
            hyrelay_nmf::ClientEvent::Message(p) => {
                let limits = hyrelay_nbfx::Limits::buffered(MAX_REPLY);
                let m = hyrelay_nbfx::read_session_message(&p, &mut self.s2c, &limits)
                    .context("the service's reply is not valid binary XML")?;
                Ok(hyrelay_nbfx::records_to_xml(
                    &m.records,
                    hyrelay_nbfx::Dictionaries::with_session(&self.s2c),
                    &hyrelay_nbfx::XmlOptions::default(),
                )?)
            }
            other => bail!("the service ended the session instead of answering: {other:?}"),
        }
    }
}

/// Pooled sessions of one `--wcf` endpoint for HTTP SOAP callers.
pub struct SoapGateway {
    svc: Arc<WcfService>,
    stats: Arc<EndpointStats>,
    idle: tokio::sync::Mutex<Vec<NetTcpSession>>,
    timeout: Duration,
}

fn soap_response(status: u16, ct: &str, body: String) -> hyrelay_client::HttpResponse {
    hyrelay_client::HttpResponse {
        status,
        reason: None,
        headers: vec![("content-type".into(), ct.into())],
        body: bytes::Bytes::from(body),
    }
}

fn plain(status: u16, msg: String) -> hyrelay_client::HttpResponse {
    soap_response(status, "text/plain; charset=utf-8", msg + "\n")
}

impl SoapGateway {
    pub fn new(svc: Arc<WcfService>, stats: Arc<EndpointStats>) -> Arc<Self> {
        Arc::new(SoapGateway {
            svc,
            stats,
            idle: tokio::sync::Mutex::new(Vec::new()),
            timeout: Duration::from_secs(60),
        })
    }

    pub async fn handle(
        self: Arc<Self>,
        req: hyrelay_client::HttpRequest,
    ) -> hyrelay_client::HttpResponse {
        let name = self.svc.hyco.clone();
        let header = |k: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        if req.method == "GET" && req.target.to_ascii_lowercase().contains("?wsdl") {
            return plain(404, format!("hyrelay bridge: '{name}' bridges net.tcp; the service's metadata (WSDL) is not published over net.tcp. Point your tooling at the service's own HTTP metadata endpoint."));
        }
        if req.method != "POST" {
            return plain(
                405,
                format!("hyrelay bridge: '{name}' takes SOAP calls as POST"),
            );
        }
        let ct = header("content-type").unwrap_or("");
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return plain(400, "hyrelay bridge: the SOAP request is not UTF-8".into());
        };
        let mid = format!("urn:uuid:{}", uuid_v4());
        let conv = match hyrelay_wcf::soap::request_to_nettcp(
            ct,
            header("soapaction"),
            text,
            &self.svc.address,
            &mid,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(endpoint = %name, "HTTP request refused: {e}");
                let status = if e.0.contains("is not SOAP") {
                    415
                } else {
                    400
                };
                return plain(status, format!("hyrelay bridge: {e}"));
            }
        };
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let session = self.idle.lock().await.pop();
        let mut session = match session {
            Some(s) => s,
            None => match NetTcpSession::open(&self.svc).await {
                Ok(s) => s,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(endpoint = %name, "HTTP SOAP call {}: {e:#}", conv.action);
                    return plain(502, format!("hyrelay bridge: {e:#}"));
                }
            },
        };
        let reply = session.call(&conv.xml, self.timeout).await;
        let reply = match reply {
            Ok(x) => {
                self.idle.lock().await.push(session);
                x
            }
            Err(e) => {
                // The session may be out of step now: drop it.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(endpoint = %name, "HTTP SOAP call {}: {e:#}", conv.action);
                let status = if e.to_string().contains("no answer") {
                    504
                } else {
                    502
                };
                return plain(status, format!("hyrelay bridge: {e:#}"));
            }
        };
        match hyrelay_wcf::soap::reply_from_nettcp(&reply, conv.version) {
            Ok(r) => {
                tracing::debug!(endpoint = %name, action = %conv.action, fault = r.fault, "HTTP SOAP call");
                soap_response(
                    if r.fault { 500 } else { 200 },
                    conv.version.content_type(),
                    r.xml,
                )
            }
            Err(e) => plain(502, format!("hyrelay bridge: the service's reply: {e}")),
        }
    }
}

/// A random (version 4) UUID for message ids.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    for chunk in b.chunks_mut(8) {
        let r = std::collections::hash_map::RandomState::new();
        let v = std::hash::BuildHasher::hash_one(&r, std::time::SystemTime::now());
        chunk.copy_from_slice(&v.to_le_bytes());
    }
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

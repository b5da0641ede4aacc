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
    let dial = dial_address(addr).with_context(|| format!("--wcf {spec:?}"))?;
    if name.is_empty() {
        bail!("--wcf {spec:?}: expected NAME=net.tcp://host:port/path");
    }
    Ok(WcfService {
        hyco: name.to_owned(),
        address: addr.to_owned(),
        dial,
    })
}

/// `host:port` to dial for a net.tcp address (808, net.tcp's port, when none is given).
pub fn dial_address(addr: &str) -> Result<String> {
    let (hostport, _) = net_tcp_hostport(addr, "address")?;
    if hostport.is_empty() {
        bail!("{addr:?} names no host (expected net.tcp://host:port/path)");
    }
    Ok(
        if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport
        } else {
            format!("{hostport}:808")
        },
    )
}

/// A bare port listens on loopback (on every interface with -g / GatewayPorts).
fn listen_address(addr: &str, gateway: bool) -> String {
    if addr.parse::<u16>().is_ok() {
        format!("{}:{addr}", if gateway { "0.0.0.0" } else { "127.0.0.1" })
    } else {
        addr.to_owned()
    }
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
    let listen = listen_address(addr, gateway);
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
    pings: u64,
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
        let p = this.inbound.stats().pings_dropped;
        if p > this.pings {
            this.pings = p;
            tracing::debug!(endpoint = %this.name, dropped = p, "dropped a WCF Relay keep-alive Ping (a legacy NetTcpRelay client's; the service would fault on it)");
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
            pings: 0,
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

/// Where a local endpoint's sessions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Through the relay to the hybrid connection.
    Relayed { hyco: String },
    /// Straight to the on-premises service (before migration), Via and To rewritten.
    Direct { service: Arc<WcfService> },
}

impl PartialEq for WcfService {
    fn eq(&self, o: &Self) -> bool {
        self.hyco == o.hyco && self.address == o.address
    }
}
impl Eq for WcfService {}

/// Routes of one local listen address: Via path → (route, counters).
pub type Routes = Arc<std::sync::RwLock<HashMap<String, (Route, Arc<EndpointStats>)>>>;

/// Accept legacy WCF clients on `listener` and send each session where its Via path's
/// current route says. The table can change while sessions run; live sessions keep going.
pub async fn run_local(ep: Arc<RelayEndpoint>, listener: tokio::net::TcpListener, routes: Routes) {
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let (s, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(local = %listen, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
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

/// The next bytes of a client's preamble, which has 30 s to arrive.
async fn preamble_read(s: &mut TcpStream, buf: &mut [u8]) -> Result<usize> {
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(buf))
        .await
        .context("no net.tcp preamble within 30 s")??;
    if n == 0 {
        bail!("the client closed before its preamble was complete");
    }
    Ok(n)
}

async fn local_session(ep: Arc<RelayEndpoint>, routes: Routes, mut s: TcpStream) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let (via, _mode) = loop {
        let n = preamble_read(&mut s, &mut buf).await?;
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
    let found = routes.read().ok().and_then(|r| r.get(&path).cloned());
    let Some((route, stats)) = found else {
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
        let known: Vec<String> = routes
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        bail!("no endpoint for Via {via} (path {path}; this address serves {known:?}): sent EndpointNotFound");
    };
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    let res = match route {
        Route::Relayed { hyco } => relayed_session(&ep, &hyco, &via, head, s, &stats).await,
        Route::Direct { service } => direct_session(&service, head, s, &stats).await,
    };
    stats.active.fetch_sub(1, Ordering::Relaxed);
    if res.is_err() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

async fn relayed_session(
    ep: &RelayEndpoint,
    hyco: &str,
    via: &str,
    head: Vec<u8>,
    mut s: TcpStream,
    stats: &Arc<EndpointStats>,
) -> Result<()> {
    let mut c = match connect(ep, hyco, &[]).await {
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
    let counting = Counting::new(s, head, stats.clone());
    pipe_socket(c, counting).await?;
    Ok(())
}

/// `Mode: direct`: the bridge proxies to the on-premises service itself.
async fn direct_session(
    svc: &WcfService,
    head: Vec<u8>,
    mut s: TcpStream,
    stats: &Arc<EndpointStats>,
) -> Result<()> {
    let mut inbound = Inbound::new(InboundConfig::new(&svc.address));
    let mut pending = head;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = inbound.feed(&pending) {
            if let Some(f) = e.fault() {
                let _ = s.write_all(&fault_record(f)).await;
            }
            bail!("refused: {e}");
        }
        pending.clear();
        if inbound.preamble().is_some() {
            break;
        }
        let n = preamble_read(&mut s, &mut buf).await?;
        pending.extend_from_slice(&buf[..n]);
    }
    let t = match TcpStream::connect(&svc.dial).await {
        Ok(t) => t,
        Err(e) => {
            let _ = s
                .write_all(&fault_record(FaultCode::EndpointUnavailable))
                .await;
            bail!("the service at {} is not reachable: {e}", svc.address);
        }
    };
    let _ = t.set_nodelay(true);
    let mut w = Rewriting {
        inner: t,
        inbound,
        pending: Vec::new(),
        sent: 0,
        stats: stats.clone(),
        name: Arc::from(svc.address.as_str()),
        counted: 0,
        pings: 0,
    };
    let first = w.inbound.take_output();
    w.inner.write_all(&first).await?;
    tokio::io::copy_bidirectional(&mut s, &mut w).await?;
    Ok(())
}

/// Counts the client's messages (SizedEnvelope / UnsizedEnvelope records) as they pass.
struct Counting {
    inner: TcpStream,
    dec: hyrelay_nmf::Decoder,
    stats: Arc<EndpointStats>,
    broken: bool,
}

impl Counting {
    fn new(inner: TcpStream, head: Vec<u8>, stats: Arc<EndpointStats>) -> Self {
        let mut dec = hyrelay_nmf::Decoder::new(hyrelay_nmf::Limits {
            max_message_size: 64 << 20,
            ..Default::default()
        });
        dec.feed(&head);
        let mut me = Counting {
            inner,
            dec,
            stats,
            broken: false,
        };
        me.count();
        me
    }
    fn count(&mut self) {
        if self.broken {
            return;
        }
        loop {
            match self.dec.next_record() {
                Ok(Some(hyrelay_nmf::Record::SizedEnvelope(_)))
                | Ok(Some(hyrelay_nmf::Record::UnsizedEnvelopeEnd)) => {
                    self.stats.messages.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => {
                    // Counting stops; the bytes still flow (the service side judges them).
                    self.broken = true;
                    return;
                }
            }
        }
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        if !this.broken {
            this.dec.feed(&buf.filled()[before..]);
            this.count();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl std::os::fd::AsRawFd for Counting {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------------------
// The endpoint set: from --wcf/--wcf-local and the file's WcfEndpoints, applied and
// re-applied (file change, SIGHUP) without touching endpoints that did not change.

/// One endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// Expose a net.tcp service as a hybrid connection (service side).
    Service {
        svc: WcfService,
        soap: Option<hyrelay_wcf::soap::SoapVersion>,
    },
    /// A local net.tcp endpoint for legacy clients (client side).
    Local {
        listen: String,
        path: String,
        route: Route,
    },
}

fn net_tcp_hostport(addr: &str, what: &str) -> Result<(String, String)> {
    let rest = addr
        .strip_prefix("net.tcp://")
        .with_context(|| format!("{what} {addr:?} must start with net.tcp://"))?;
    let (hp, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((hp.to_owned(), path.to_owned()))
}

/// The endpoints of the command line and the file's `WcfEndpoints`.
pub fn collect_specs(
    cli_wcf: &[String],
    cli_local: &[String],
    file: &[crate::bridge_config::WcfEndpoint],
    gateway: bool,
) -> Result<Vec<EndpointSpec>> {
    let mut out = Vec::new();
    for w in cli_wcf {
        out.push(EndpointSpec::Service {
            svc: parse_service(w)?,
            soap: None,
        });
    }
    for l in cli_local {
        let l = parse_local(l, gateway)?;
        out.push(EndpointSpec::Local {
            listen: l.listen,
            path: l.path,
            route: Route::Relayed { hyco: l.hyco },
        });
    }
    for (i, e) in file.iter().enumerate() {
        let at = format!("WcfEndpoints[{i}] ({})", e.relay_name);
        let direct = match e.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("relayed") => false,
            Some("direct") => true,
            Some(other) => bail!("{at}: Mode must be relayed or direct, not {other:?}"),
        };
        let soap = match e.soap.as_ref().map(|v| v.text()).as_deref() {
            None => None,
            Some("1.1") => Some(hyrelay_wcf::soap::SoapVersion::Soap11),
            Some("1.2") => Some(hyrelay_wcf::soap::SoapVersion::Soap12),
            Some(other) => bail!("{at}: Soap must be 1.1 or 1.2, not {other:?}"),
        };
        match (&e.local, &e.service) {
            (None, Some(service)) => {
                if direct {
                    bail!("{at}: Mode: direct needs a Local address (the service side is always relayed)");
                }
                out.push(EndpointSpec::Service {
                    svc: parse_service(&format!("{}={service}", e.relay_name))?,
                    soap,
                });
            }
            (Some(local), service) => {
                let (hp, path) = net_tcp_hostport(local, "Local")?;
                let listen = listen_address(&hp, gateway);
                let route = if direct {
                    let service = service.as_deref().with_context(|| {
                        format!("{at}: Mode: direct needs the Service address to reach")
                    })?;
                    Route::Direct {
                        service: Arc::new(parse_service(&format!("{}={service}", e.relay_name))?),
                    }
                } else {
                    Route::Relayed {
                        hyco: e.relay_name.clone(),
                    }
                };
                out.push(EndpointSpec::Local {
                    listen,
                    path: via_path(&format!("net.tcp://x{path}")),
                    route,
                });
            }
            (None, None) => {
                bail!("{at}: give Service (expose a service) or Local (an endpoint for clients)")
            }
        }
    }
    Ok(out)
}

struct ServiceRun {
    task: tokio::task::JoinHandle<()>,
    stats: Arc<EndpointStats>,
}

struct LocalRun {
    task: tokio::task::JoinHandle<()>,
    routes: Routes,
}

/// The running endpoints.
pub struct Manager {
    ep: Arc<RelayEndpoint>,
    keep_alive: Duration,
    services: HashMap<(String, String, Option<hyrelay_wcf::soap::SoapVersion>), ServiceRun>,
    locals: HashMap<String, LocalRun>,
}

impl Manager {
    pub fn new(ep: Arc<RelayEndpoint>, keep_alive: Duration) -> Self {
        Manager {
            ep,
            keep_alive,
            services: HashMap::new(),
            locals: HashMap::new(),
        }
    }

    /// Make the running endpoints match `specs`. Endpoints that did not change keep their
    /// listeners and sessions; removed ones stop taking new sessions (live ones finish).
    pub async fn apply(&mut self, specs: &[EndpointSpec]) -> Result<()> {
        // Check and bind everything new first, so a bad change leaves the old set running.
        let mut want_local: HashMap<String, HashMap<String, Route>> = HashMap::new();
        let mut want_svc = Vec::new();
        for s in specs {
            match s {
                EndpointSpec::Service { svc, soap } => want_svc.push((svc.clone(), *soap)),
                EndpointSpec::Local {
                    listen,
                    path,
                    route,
                } => {
                    if want_local
                        .entry(listen.clone())
                        .or_default()
                        .insert(path.clone(), route.clone())
                        .is_some()
                    {
                        bail!("the local endpoint net.tcp://{listen}{path} is given twice");
                    }
                }
            }
        }
        let mut new_listeners = HashMap::new();
        for listen in want_local.keys() {
            if !self.locals.contains_key(listen) {
                let l = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} for WCF clients"))?;
                new_listeners.insert(listen.clone(), l);
            }
        }
        // Service side.
        let keys: Vec<_> = want_svc
            .iter()
            .map(|(s, soap)| (s.hyco.clone(), s.address.clone(), *soap))
            .collect();
        self.services.retain(|k, run| {
            let keep = keys.contains(k);
            if !keep {
                tracing::info!("WCF service endpoint '{}' → {} removed", k.0, k.1);
                run.task.abort();
            }
            keep
        });
        for (svc, soap) in want_svc {
            let key = (svc.hyco.clone(), svc.address.clone(), soap);
            if self.services.contains_key(&key) {
                continue;
            }
            tracing::info!(
                "WCF service: hybrid connection '{}' → {}",
                svc.hyco,
                svc.address
            );
            let svc = Arc::new(svc);
            let stats = Arc::new(EndpointStats::default());
            let gateway = SoapGateway::new(svc.clone(), stats.clone(), soap);
            let handler: hyrelay_client::RequestHandler =
                Arc::new(move |req| Box::pin(gateway.clone().handle(req)));
            let listener = hyrelay_client::Listener::new(
                (*self.ep).clone(),
                &svc.hyco,
                hyrelay_client::ListenerOptions {
                    keep_alive: self.keep_alive,
                    ..Default::default()
                },
            )
            .with_requests(handler);
            let ep = self.ep.clone();
            let (svc2, stats2) = (svc.clone(), stats.clone());
            let task = tokio::spawn(async move {
                let err = listener
                    .run(move |req| serve_accept(ep.clone(), svc2.clone(), stats2.clone(), req))
                    .await;
                tracing::error!("WCF listener for '{}' stopped: {err}", svc.hyco);
            });
            self.services.insert(key, ServiceRun { task, stats });
        }
        // Client side.
        self.locals.retain(|listen, run| {
            let keep = want_local.contains_key(listen);
            if !keep {
                tracing::info!("WCF client endpoints on {listen} removed");
                run.task.abort();
            }
            keep
        });
        for (listen, paths) in want_local {
            let routes: Routes = match self.locals.get(&listen) {
                Some(run) => run.routes.clone(),
                None => {
                    let routes: Routes = Default::default();
                    let l = new_listeners
                        .remove(&listen)
                        .context("internal: listener not bound")?;
                    let task = tokio::spawn(run_local(self.ep.clone(), l, routes.clone()));
                    self.locals.insert(
                        listen.clone(),
                        LocalRun {
                            task,
                            routes: routes.clone(),
                        },
                    );
                    routes
                }
            };
            let mut table = routes
                .write()
                .map_err(|_| anyhow!("route table poisoned"))?;
            table.retain(|p, _| paths.contains_key(p));
            for (path, route) in paths {
                let same = table.get(&path).is_some_and(|(r, _)| *r == route);
                if !same {
                    let what = match &route {
                        Route::Relayed { hyco } => format!("hybrid connection '{hyco}' (relayed)"),
                        Route::Direct { service } => format!("{} (direct)", service.address),
                    };
                    tracing::info!("WCF clients at net.tcp://{listen}{path} → {what}");
                    table.insert(path, (route, Arc::new(EndpointStats::default())));
                }
            }
        }
        Ok(())
    }

    /// Status of every endpoint as JSON.
    pub fn status(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut rows = Vec::new();
        for ((hyco, address, _), run) in &self.services {
            rows.push(serde_json::json!({
                "endpoint": hyco, "side": "service", "mode": "relayed", "target": address,
                "sessions": n(&run.stats.sessions), "active": n(&run.stats.active),
                "calls": n(&run.stats.messages), "errors": n(&run.stats.errors),
            }));
        }
        for (listen, run) in &self.locals {
            if let Ok(t) = run.routes.read() {
                for (path, (route, st)) in t.iter() {
                    let (mode, target) = match route {
                        Route::Relayed { hyco } => ("relayed", hyco.clone()),
                        Route::Direct { service } => ("direct", service.address.clone()),
                    };
                    rows.push(serde_json::json!({
                        "endpoint": format!("net.tcp://{listen}{path}"), "side": "client", "mode": mode, "target": target,
                        "sessions": n(&st.sessions), "active": n(&st.active),
                        "calls": n(&st.messages), "errors": n(&st.errors),
                    }));
                }
            }
        }
        rows.sort_by_key(|r| r["endpoint"].as_str().unwrap_or("").to_owned());
        serde_json::json!({ "endpoints": rows })
    }
}

/// Serve `GET /status` (JSON) on `addr` for `hyrelay bridge status`.
pub async fn serve_status(addr: String, mgr: Arc<tokio::sync::Mutex<Manager>>) -> Result<()> {
    let l = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on the status address {addr}"))?;
    tracing::info!("bridge status at http://{addr}/status");
    loop {
        let (mut s, _) = l.accept().await?;
        let mgr = mgr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            let body = mgr.lock().await.status().to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
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
    only: Option<hyrelay_wcf::soap::SoapVersion>,
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
    pub fn new(
        svc: Arc<WcfService>,
        stats: Arc<EndpointStats>,
        only: Option<hyrelay_wcf::soap::SoapVersion>,
    ) -> Arc<Self> {
        Arc::new(SoapGateway {
            svc,
            stats,
            idle: tokio::sync::Mutex::new(Vec::new()),
            timeout: Duration::from_secs(60),
            only,
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
        let mid = format!("urn:uuid:{}", hyrelay_relay::core::new_guid());
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
        if self.only.is_some_and(|v| v != conv.version) {
            return plain(
                415,
                format!(
                    "hyrelay bridge: '{name}' takes {} only (Soap: in the bridge configuration)",
                    match conv.version {
                        hyrelay_wcf::soap::SoapVersion::Soap11 => "SOAP 1.2",
                        hyrelay_wcf::soap::SoapVersion::Soap12 => "SOAP 1.1",
                    }
                ),
            );
        }
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

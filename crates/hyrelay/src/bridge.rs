//! `hyrelay bridge`: azbridge-style port forwarding over Hybrid Connections.
//!
//! `-L` (local forward, the sender side) binds local TCP ports or Unix sockets and carries
//! each connection to a hybrid connection; `-T` (remote forward, the listener side) takes
//! relayed connections and dials the target. Inside each relayed connection the first
//! message is azbridge's preamble (`01 00 mode len port-name`, answered `01 00 mode`), so a
//! real azbridge on the other end interoperates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyrelay_client::{
    connect, parse_preamble, pipe_socket_after, pipe_tcp_after, preamble, AcceptRequest,
    ClientError, FirstAnswer, Listener, ListenerOptions, PipeReport, RelayEndpoint,
    RelayedConnection, TokenSource,
};

/// A local socket a relayed connection is joined with: TCP takes the kernel-splice path where
/// it can, Unix sockets the ordinary one. `answer`, if given, checks the other end's first
/// message before anything is carried down.
trait PipeTo: Sized {
    fn pipe_to<'a>(
        self,
        c: RelayedConnection,
        answer: Option<FirstAnswer<'a>>,
    ) -> impl std::future::Future<Output = Result<PipeReport, ClientError>> + Send + 'a;
}

impl PipeTo for tokio::net::TcpStream {
    fn pipe_to<'a>(
        self,
        c: RelayedConnection,
        answer: Option<FirstAnswer<'a>>,
    ) -> impl std::future::Future<Output = Result<PipeReport, ClientError>> + Send + 'a {
        pipe_tcp_after(c, self, answer)
    }
}

impl PipeTo for tokio::net::UnixStream {
    fn pipe_to<'a>(
        self,
        c: RelayedConnection,
        answer: Option<FirstAnswer<'a>>,
    ) -> impl std::future::Future<Output = Result<PipeReport, ClientError>> + Send + 'a {
        pipe_socket_after(c, self, answer)
    }
}

#[derive(clap::Args, Debug)]
pub struct BridgeArgs {
    /// Local forward: [bind_addr:]port[/port_name]{;…}:relay, or socket_path[/port_name]:relay.
    /// Each accepted connection becomes one relayed connection to hybrid connection `relay`.
    #[arg(short = 'L', value_name = "SPEC")]
    local: Vec<String>,
    /// Remote forward: relay:[port_name/][host:]port{;…}, or relay:[port_name/]socket_path.
    /// Listens on hybrid connection `relay` and dials the target for each sender.
    #[arg(short = 'T', visible_short_alias = 'R', value_name = "SPEC")]
    remote: Vec<String>,
    /// Remote HTTP forward: relay:{http|https}/[host[/path]:]port. The relay's HTTP endpoint
    /// https://relay-host/relay/… becomes a reverse proxy to this local HTTP server.
    #[arg(short = 'H', value_name = "SPEC")]
    http: Vec<String>,
    /// Connection string (Endpoint, SharedAccessKeyName, SharedAccessKey or SharedAccessSignature).
    #[arg(
        short = 'x',
        long = "connection-string",
        env = "HYRELAY_CONNECTION_STRING",
        hide_env_values = true
    )]
    connection_string: Option<String>,
    /// Relay endpoint, e.g. sb://relay.example/ (with -K/-k or -s).
    #[arg(short = 'e', long = "endpoint")]
    endpoint: Option<String>,
    /// SAS rule name.
    #[arg(short = 'K', long = "key-name")]
    key_name: Option<String>,
    /// SAS key.
    #[arg(short = 'k', long = "key", hide_env_values = true)]
    key: Option<String>,
    /// Pre-issued SAS token.
    #[arg(short = 's', long = "signature")]
    signature: Option<String>,
    /// Keep-alive interval of listener control channels, seconds [default: 30, or the
    /// file's KeepAliveInterval].
    #[arg(short = 'a', long = "keep-alive")]
    keep_alive: Option<u64>,
    /// Gateway ports: let other hosts connect to -L ports (bind 0.0.0.0 instead of 127.0.0.1).
    #[arg(short = 'g', long = "gateway-ports")]
    gateway_ports: bool,
    /// Source address for outbound connections of -T (the file's top-level BindAddress).
    #[arg(short = 'b', long = "bind-address")]
    bind_address: Option<std::net::IpAddr>,
    /// azbridge configuration file (YAML: LocalForward, RemoteForward, AzureRelayConnectionString,
    /// …, and hyrelay's WcfEndpoints and StatusAddress); WcfEndpoints are re-applied when the
    /// file changes or on SIGHUP.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// CA certificate to trust for the relay's TLS (e.g. DATA_DIR/ca.pem of `hyrelay up`).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Expose a net.tcp WCF service as hybrid connection NAME: NAME=net.tcp://host:port/path.
    /// Each relayed session is dialled to the service with its Via and every envelope's
    /// WS-Addressing To rewritten to this address (what the service's filters expect).
    #[arg(long = "wcf", value_name = "NAME=net.tcp://HOST:PORT/PATH")]
    wcf: Vec<String>,
    /// Give legacy WCF clients a local net.tcp endpoint that reaches hybrid connection
    /// NAME: [ADDR:]PORT/PATH=NAME (e.g. 127.0.0.1:9000/CreditCheck=credit-check). Several
    /// paths may share a port; a client whose Via matches none gets EndpointNotFound.
    #[arg(long = "wcf-local", value_name = "[ADDR:]PORT/PATH=NAME")]
    wcf_local: Vec<String>,
    /// Serve the bridge's status (JSON, for `hyrelay bridge status`) on this address
    /// (also `StatusAddress:` in the file).
    #[arg(long = "status-address", value_name = "ADDR")]
    status_address: Option<String>,
    #[command(subcommand)]
    cmd: Option<BridgeCmd>,
}

#[derive(clap::Subcommand, Debug)]
pub enum BridgeCmd {
    /// Show each WCF endpoint of a running bridge: mode, sessions, calls, errors.
    Status {
        /// The bridge's status address (--status-address / StatusAddress:).
        #[arg(long, default_value = "127.0.0.1:9899", value_name = "ADDR")]
        address: String,
        /// Print the JSON as the bridge sends it.
        #[arg(long)]
        json: bool,
    },
}

/// Re-apply the file's WcfEndpoints when it changes or on SIGHUP.
async fn watch_config(
    path: PathBuf,
    mgr: Arc<tokio::sync::Mutex<crate::wcf::Manager>>,
    cli_wcf: Vec<String>,
    cli_local: Vec<String>,
    gateway: bool,
) {
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = mtime(&path);
    // What runs besides the WCF endpoints was set up from the file as it was at start-up.
    let running = crate::bridge_config::BridgeFile::load(&path).ok();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let by_signal = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
        };
        let now = mtime(&path);
        if !by_signal && now == last {
            continue;
        }
        last = now;
        let res = async {
            let f = crate::bridge_config::BridgeFile::load(&path)?;
            let specs = crate::wcf::collect_specs(&cli_wcf, &cli_local, &f.wcf_endpoints, gateway)?;
            mgr.lock().await.apply(&specs).await?;
            Ok::<_, anyhow::Error>(f)
        }
        .await;
        match res {
            Ok(f) => {
                tracing::info!("{}: WCF endpoints re-applied", path.display());
                let changed = running
                    .as_ref()
                    .map(|r| needs_restart(r, &f))
                    .unwrap_or_default();
                if !changed.is_empty() {
                    tracing::warn!(
                        "{}: {} changed; only WcfEndpoints are re-applied while the bridge runs, the rest takes effect after a restart",
                        path.display(),
                        changed.join(", ")
                    );
                }
            }
            Err(e) => tracing::error!(
                "{}: not applied, the running endpoints are unchanged: {e:#}",
                path.display()
            ),
        }
    }
}

/// The keys of a bridge file, other than WcfEndpoints, whose change needs a restart (names
/// only: values may hold keys).
fn needs_restart(
    a: &crate::bridge_config::BridgeFile,
    b: &crate::bridge_config::BridgeFile,
) -> Vec<&'static str> {
    let d = |x: &dyn std::fmt::Debug| format!("{x:?}");
    let credentials = |f: &crate::bridge_config::BridgeFile| {
        d(&(
            &f.azure_relay_connection_string,
            &f.azure_relay_endpoint,
            &f.azure_relay_shared_access_key_name,
            &f.azure_relay_shared_access_key,
            &f.azure_relay_shared_access_signature,
        ))
    };
    [
        ("LocalForward", d(&a.local_forward) != d(&b.local_forward)),
        (
            "RemoteForward",
            d(&a.remote_forward) != d(&b.remote_forward),
        ),
        ("StatusAddress", a.status_address != b.status_address),
        (
            "the AzureRelay* credentials",
            credentials(a) != credentials(b),
        ),
        ("BindAddress", a.bind_address != b.bind_address),
        ("GatewayPorts", a.gateway_ports != b.gateway_ports),
        (
            "KeepAliveInterval",
            a.keep_alive_interval != b.keep_alive_interval,
        ),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}

async fn status(address: &str, json: bool) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(address).await.with_context(|| {
        format!("no bridge status at {address} (start the bridge with --status-address or StatusAddress:)")
    })?;
    s.write_all(
        format!("GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    if json {
        println!("{body}");
        return Ok(());
    }
    let v: serde_json::Value =
        serde_json::from_str(body).context("the status answer is not JSON")?;
    println!(
        "{:<46} {:<7} {:<8} {:<42} {:>8} {:>6} {:>7} {:>6}",
        "ENDPOINT", "SIDE", "MODE", "TARGET", "SESSIONS", "ACTIVE", "CALLS", "ERRORS"
    );
    for r in v["endpoints"].as_array().into_iter().flatten() {
        println!(
            "{:<46} {:<7} {:<8} {:<42} {:>8} {:>6} {:>7} {:>6}",
            r["endpoint"].as_str().unwrap_or(""),
            r["side"].as_str().unwrap_or(""),
            r["mode"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or(""),
            r["sessions"].as_u64().unwrap_or(0),
            r["active"].as_u64().unwrap_or(0),
            r["calls"].as_u64().unwrap_or(0),
            r["errors"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    Tcp { addr: String, port_name: String },
    Udp { addr: String, port_name: String },
    Unix { path: PathBuf, port_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp { port_name: String, addr: String },
    Udp { port_name: String, addr: String },
    Unix { port_name: String, path: PathBuf },
}

impl Target {
    fn port_name(&self) -> &str {
        match self {
            Target::Tcp { port_name, .. }
            | Target::Udp { port_name, .. }
            | Target::Unix { port_name, .. } => port_name,
        }
    }
}

fn parse_local(spec: &str, gateway: bool) -> Result<(String, Vec<Local>)> {
    let (bindings, relay) = spec
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("-L '{spec}': expected [bind_addr:]port[/port_name]{{;…}}:relay"))?;
    if relay.is_empty() {
        bail!("-L '{spec}': the hybrid connection name after the last ':' is missing");
    }
    let mut out = Vec::new();
    for b in bindings.split(';') {
        // `[bind:]port/name` or `socket_path[/name]`; a socket path's port name is only split
        // off when what precedes it looks like a socket file (has an extension).
        let (main, name) = match b.rsplit_once('/') {
            Some((m, n)) if !m.is_empty() && !n.is_empty() => {
                let m_is_port = m
                    .rsplit(':')
                    .next()
                    .is_some_and(|p| p.trim_end_matches(['U', 'u']).parse::<u16>().is_ok());
                let m_is_socket = (m.starts_with('/') || m.starts_with('.'))
                    && PathBuf::from(m).extension().is_some();
                if m_is_port || m_is_socket {
                    (m, Some(n))
                } else {
                    (b, None)
                }
            }
            _ => (b, None),
        };
        let (host, port) = match main.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (
                if gateway {
                    "0.0.0.0".into()
                } else {
                    "127.0.0.1".into()
                },
                main,
            ),
        };
        if port.ends_with(['U', 'u']) {
            if let Ok(p) = port[..port.len() - 1].parse::<u16>() {
                let pn = name.map(str::to_string).unwrap_or_else(|| p.to_string());
                out.push(Local::Udp {
                    addr: format!("{host}:{p}"),
                    port_name: pn,
                });
                continue;
            }
        }
        match port.parse::<u16>() {
            Ok(p) => out.push(Local::Tcp {
                addr: format!("{host}:{p}"),
                port_name: name.unwrap_or(port).to_string(),
            }),
            Err(_) if main.contains('/') || main.starts_with('.') => {
                let pn = name.map(str::to_string).unwrap_or_else(|| {
                    PathBuf::from(main)
                        .file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or("socket")
                        .to_string()
                });
                out.push(Local::Unix {
                    path: PathBuf::from(main),
                    port_name: pn,
                })
            }
            Err(_) => bail!("-L '{b}': '{port}' is neither a port number nor a socket path"),
        }
    }
    Ok((relay.to_string(), out))
}

fn parse_remote(spec: &str) -> Result<(String, Vec<Target>)> {
    let (relay, bindings) = spec
        .split_once(':')
        .ok_or_else(|| anyhow!("-T '{spec}': expected relay:[port_name/][host:]port{{;…}}"))?;
    let mut out = Vec::new();
    for b in bindings.split(';') {
        let (name, rest) = match b.split_once('/') {
            Some((n, r)) if !n.is_empty() && !n.contains(':') && !b.starts_with('/') => {
                (Some(n), r)
            }
            _ => (None, b),
        };
        let udp = rest.ends_with(['U', 'u'])
            && rest[..rest.len() - 1]
                .rsplit(':')
                .next()
                .is_some_and(|p| p.parse::<u16>().is_ok());
        let rest = if udp { &rest[..rest.len() - 1] } else { rest };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => ("127.0.0.1", rest),
        };
        match port.parse::<u16>() {
            Ok(p) if udp => out.push(Target::Udp {
                port_name: name.unwrap_or(port).to_string(),
                addr: format!("{host}:{p}"),
            }),
            Ok(p) => out.push(Target::Tcp {
                port_name: name.unwrap_or(port).to_string(),
                addr: format!("{host}:{p}"),
            }),
            Err(_) if rest.contains('/') || name.is_some() => {
                // Socket paths are absolute: `relay:name/var/run/x.sock` is /var/run/x.sock.
                let path = if rest.starts_with('/') || rest.starts_with('.') {
                    PathBuf::from(rest)
                } else {
                    PathBuf::from(format!("/{rest}"))
                };
                out.push(Target::Unix {
                    port_name: name.map(str::to_string).unwrap_or_else(|| {
                        path.file_name()
                            .and_then(|f| f.to_str())
                            .unwrap_or("socket")
                            .to_string()
                    }),
                    path,
                })
            }
            Err(_) => bail!("-T '{b}': '{port}' is neither a port number nor a socket path"),
        }
    }
    Ok((relay.to_string(), out))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpTarget {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_http(spec: &str) -> Result<(String, HttpTarget)> {
    let err = || anyhow!("-H '{spec}': expected relay:{{http|https}}/[host[/path]:]port");
    let (relay, rest) = spec.split_once(':').ok_or_else(err)?;
    let (scheme, rest) = rest.split_once('/').ok_or_else(err)?;
    let tls = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err(err()),
    };
    let (hostpath, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => ("127.0.0.1", rest),
    };
    let port: u16 = port.parse().map_err(|_| err())?;
    let (host, path) = match hostpath.split_once('/') {
        Some((h, p)) => (h.to_string(), format!("/{}", p.trim_matches('/'))),
        None => (hostpath.to_string(), String::new()),
    };
    Ok((
        relay.to_string(),
        HttpTarget {
            tls,
            host,
            port,
            path,
        },
    ))
}

async fn proxy_http(
    t: Arc<HttpTarget>,
    relay: Arc<String>,
    tls: Arc<rustls::ClientConfig>,
    req: hyrelay_client::HttpRequest,
) -> hyrelay_client::HttpResponse {
    match proxy_http_inner(&t, &relay, tls, &req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target = %format!("{}:{}", t.host, t.port), "HTTP forward failed: {e:#}");
            hyrelay_client::HttpResponse {
                status: 502,
                reason: Some(format!(
                    "hyrelay bridge: the local HTTP server is not reachable: {e}"
                )),
                headers: vec![("content-type".into(), "text/plain".into())],
                body: bytes::Bytes::from(format!("{e:#}\n")),
            }
        }
    }
}

async fn proxy_http_inner(
    t: &HttpTarget,
    relay: &str,
    tls: Arc<rustls::ClientConfig>,
    req: &hyrelay_client::HttpRequest,
) -> Result<hyrelay_client::HttpResponse> {
    use http_body_util::{BodyExt, Full};
    // requestTarget carries the hybrid connection name: /relay/rest?q → {path}/rest?q
    let suffix = req
        .target
        .strip_prefix(&format!("/{relay}"))
        .unwrap_or(&req.target);
    let suffix = if suffix.is_empty() || suffix.starts_with('?') {
        format!("/{suffix}")
    } else {
        suffix.to_string()
    };
    let uri = format!("{}{}", t.path, suffix).replace("//", "/");
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())?;
        hyrelay_net::Stream::ClientTls(Box::new(
            tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?,
        ))
    } else {
        hyrelay_net::Stream::Plain(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(&uri);
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if [
            "host",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "content-length",
            "expect",
        ]
        .contains(&lk.as_str())
        {
            continue;
        }
        b = b.header(k.as_str(), v.as_str());
    }
    b = b.header("host", format!("{}:{}", t.host, t.port));
    let resp = tokio::time::timeout(
        Duration::from_secs(55),
        sender.send_request(b.body(Full::new(req.body.clone()))?),
    )
    .await
    .context("the local HTTP server did not answer within 55 s")??;
    let status = resp.status();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            ![
                "connection",
                "keep-alive",
                "transfer-encoding",
                "content-length",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = http_body_util::Limited::new(resp.into_body(), hyrelay_client::MAX_HTTP_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the local response: {e}"))?
        .to_bytes();
    Ok(hyrelay_client::HttpResponse {
        status: status.as_u16(),
        reason: status.canonical_reason().map(str::to_string),
        headers,
        body,
    })
}

/// Forwards of the file that carry their own `ConnectionString` / `NoAuthentication`.
#[derive(Default)]
struct OwnCredentials {
    local: Vec<(String, Option<String>, bool)>,
    remote: Vec<(String, Option<String>, bool)>,
    http: Vec<(String, Option<String>, bool)>,
}

impl OwnCredentials {
    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty() && self.http.is_empty()
    }
    fn first_cs(&self) -> Option<&str> {
        self.local
            .iter()
            .chain(&self.remote)
            .chain(&self.http)
            .find_map(|(_, cs, _)| cs.as_deref())
    }
}

/// The endpoint of one forward: its own connection string, else the bridge's; with
/// `no_auth` no token is sent (a hybrid connection created with client authorization off).
fn own_endpoint(a: &BridgeArgs, cs: Option<&str>, no_auth: bool) -> Result<RelayEndpoint> {
    let tls = hyrelay_net::tls::client_config(&a.ca.iter().cloned().collect::<Vec<_>>(), false)?;
    let base = match cs {
        Some(cs) => RelayEndpoint::from_connection_string(cs, tls.clone())?,
        None => endpoint(a)?,
    };
    if !no_auth {
        return Ok(base);
    }
    tracing::info!(
        "a forward connects to {} without a token (NoAuthentication)",
        base.addr()
    );
    Ok(RelayEndpoint::new(
        &format!("sb://{}/", base.addr()),
        TokenSource::None,
        tls,
    )?)
}

fn endpoint(a: &BridgeArgs) -> Result<RelayEndpoint> {
    let tls = hyrelay_net::tls::client_config(&a.ca.iter().cloned().collect::<Vec<_>>(), false)?;
    if let Some(cs) = &a.connection_string {
        return Ok(RelayEndpoint::from_connection_string(cs, tls)?);
    }
    let e = a
        .endpoint
        .as_deref()
        .context("give -x CONNECTION_STRING, or -e ENDPOINT with -K/-k or -s")?;
    let token = match (&a.key_name, &a.key, &a.signature) {
        (Some(n), Some(k), _) => TokenSource::Key {
            name: n.clone(),
            key: k.clone(),
        },
        (_, _, Some(s)) => TokenSource::Fixed(s.clone()),
        (None, None, None) => TokenSource::None,
        _ => bail!("-K and -k go together"),
    };
    Ok(RelayEndpoint::new(e, token, tls)?)
}

async fn run_local(ep: Arc<RelayEndpoint>, relay: String, l: Local) -> Result<()> {
    match l {
        Local::Tcp { addr, port_name } => {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("-L: cannot listen on {addr}"))?;
            tracing::info!(
                "forwarding tcp {addr} → hybrid connection '{relay}' port '{port_name}'"
            );
            loop {
                let (s, peer) = listener.accept().await?;
                let _ = s.set_nodelay(true);
                tokio::spawn(forward_out(
                    ep.clone(),
                    relay.clone(),
                    port_name.clone(),
                    s,
                    peer.to_string(),
                ));
            }
        }
        Local::Udp { addr, port_name } => {
            let sock = Arc::new(
                tokio::net::UdpSocket::bind(&addr)
                    .await
                    .with_context(|| format!("-L: cannot bind udp {addr}"))?,
            );
            tracing::info!(
                "forwarding udp {addr} → hybrid connection '{relay}' port '{port_name}'"
            );
            let routes: Arc<
                tokio::sync::Mutex<
                    std::collections::HashMap<
                        std::net::SocketAddr,
                        tokio::sync::mpsc::Sender<Vec<u8>>,
                    >,
                >,
            > = Default::default();
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await?;
                let mut r = routes.lock().await;
                let tx = match r.get(&peer).filter(|t| !t.is_closed()) {
                    Some(t) => t.clone(),
                    None => {
                        // One relayed connection per source endpoint ("route"), as azbridge does.
                        let (tx, rx) = tokio::sync::mpsc::channel(256);
                        r.insert(peer, tx.clone());
                        tokio::spawn(udp_route(
                            ep.clone(),
                            relay.clone(),
                            port_name.clone(),
                            sock.clone(),
                            peer,
                            rx,
                        ));
                        tx
                    }
                };
                drop(r);
                // A full route drops the datagram, like a full UDP socket buffer would.
                let _ = tx.try_send(buf[..n].to_vec());
            }
        }
        Local::Unix { path, port_name } => {
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("-L: cannot listen on {}", path.display()))?;
            tracing::info!(
                "forwarding unix {} → hybrid connection '{relay}' port '{port_name}'",
                path.display()
            );
            loop {
                let (s, _) = listener.accept().await?;
                tokio::spawn(forward_out(
                    ep.clone(),
                    relay.clone(),
                    port_name.clone(),
                    s,
                    path.display().to_string(),
                ));
            }
        }
    }
}

async fn forward_out<S>(
    ep: Arc<RelayEndpoint>,
    relay: String,
    port_name: String,
    s: S,
    from: String,
) where
    S: PipeTo + Send + 'static,
{
    let res: Result<hyrelay_client::PipeReport> = async {
        let mut c = connect(&ep, &relay, &[]).await?;
        c.send(&preamble(&port_name, false)?).await?;
        // The local client's bytes follow the preamble at once; nothing comes down until the
        // remote forwarder's answer says the port exists. That saves one end-to-end round
        // trip per connection (azbridge waits for the answer first); the remote end reads
        // the preamble as a stream prefix either way.
        let answer = |a: Option<&[u8]>| -> Result<(), ClientError> {
            Err(ClientError::Peer(match a {
                Some([1, 0, 0]) => return Ok(()),
                None => format!(
                    "the remote forwarder has no port '{port_name}' (it closed the connection)"
                ),
                Some([0, 0, 0]) => {
                    "the remote forwarder does not support this preamble version".into()
                }
                Some([0, 0, x]) => format!(
                    "the remote forwarder refused port '{port_name}' (mode mismatch {x:#x})"
                ),
                Some(other) => format!("unexpected preamble answer {other:?}"),
            }))
        };
        Ok(s.pipe_to(c, Some(&answer)).await?)
    }
    .await;
    match res {
        Ok(r) => tracing::debug!(%from, up = r.up, down = r.down, "forwarded connection closed"),
        Err(e) => tracing::warn!(%from, "forwarded connection failed: {e:#}"),
    }
}

/// Idle time after which a UDP route's relayed connection is closed (azbridge: 4 min).
const UDP_IDLE: Duration = Duration::from_secs(240);

async fn udp_route(
    ep: Arc<RelayEndpoint>,
    relay: String,
    port_name: String,
    sock: Arc<tokio::net::UdpSocket>,
    peer: std::net::SocketAddr,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    let res: Result<()> = async {
        let mut c = connect(&ep, &relay, &[]).await?;
        c.send(&preamble(&port_name, true)?).await?;
        let reply = c.recv(16).await?.ok_or_else(|| anyhow!("the remote forwarder has no port '{port_name}'"))?;
        if reply.as_ref() != [1, 0, 1] {
            bail!("the remote forwarder refused datagram port '{port_name}': {:?}", reply.as_ref());
        }
        let mut dec = hyrelay_client::DatagramDecoder::default();
        let mut out = Vec::with_capacity(65538);
        loop {
            tokio::select! {
                d = tokio::time::timeout(UDP_IDLE, rx.recv()) => match d {
                    Ok(Some(d)) => { out.clear(); hyrelay_client::encode_datagram(&d, &mut out)?; c.send(&out).await?; }
                    _ => { let _ = c.writer.close(1000, "idle").await; return Ok(()); }
                },
                m = c.recv(1 << 20) => match m? {
                    Some(b) => { dec.push(&b); while let Some(g) = dec.next_datagram() { sock.send_to(&g, peer).await?; } }
                    None => return Ok(()),
                },
            }
        }
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(%peer, "udp route failed: {e:#}");
    }
}

async fn udp_target(mut c: hyrelay_client::RelayedConnection, addr: &str) -> Result<()> {
    let target: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .context("udp target address")?;
    let local: std::net::SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(target).await?;
    c.send(&[1, 0, 1]).await?;
    let mut dec = hyrelay_client::DatagramDecoder::default();
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65538);
    loop {
        tokio::select! {
            m = tokio::time::timeout(UDP_IDLE, c.recv(1 << 20)) => match m {
                Ok(m) => match m? {
                    Some(b) => { dec.push(&b); while let Some(g) = dec.next_datagram() { let _ = sock.send(&g).await; } }
                    None => return Ok(()),
                },
                Err(_) => { let _ = c.writer.close(1000, "idle").await; return Ok(()); }
            },
            r = sock.recv(&mut buf) => {
                let n = r?;
                out.clear();
                hyrelay_client::encode_datagram(&buf[..n], &mut out)?;
                c.send(&out).await?;
            }
        }
    }
}

async fn handle_accept(
    ep: Arc<RelayEndpoint>,
    targets: Arc<Vec<Target>>,
    bind: Option<std::net::IpAddr>,
    req: AcceptRequest,
) {
    let res: Result<()> = async {
        let mut c = hyrelay_client::accept(&ep, &req).await?;
        let first = tokio::time::timeout(Duration::from_secs(30), c.recv(300))
            .await
            .context("sender sent no port preamble")??
            .ok_or_else(|| anyhow!("sender closed before the preamble"))?;
        let (name, datagram) = parse_preamble(&first)?;
        // Exact port-name match; a single numeric forwarder takes every numeric port (azbridge PR #55).
        let t = targets.iter().find(|t| t.port_name() == name).or_else(|| {
            let numeric: Vec<&Target> = targets
                .iter()
                .filter(|t| t.port_name().parse::<u16>().is_ok())
                .collect();
            (numeric.len() == 1 && name.parse::<u16>().is_ok()).then(|| numeric[0])
        });
        let Some(t) = t else {
            let _ = c.writer.close(1000, "no such port").await;
            bail!("no remote forward for port '{name}': closing, as azbridge does");
        };
        match (t, datagram) {
            (Target::Udp { addr, .. }, true) => return udp_target(c, addr).await,
            (Target::Udp { .. }, false) => {
                c.send(&[0, 0, 1]).await?;
                bail!("port '{name}' is a UDP port but the sender opened a stream");
            }
            (_, true) => {
                c.send(&[0, 0, 0xFF]).await?;
                bail!("port '{name}' is a stream port but the sender asked for datagrams");
            }
            _ => {}
        }
        match t {
            Target::Udp { .. } => unreachable_udp()?,
            Target::Tcp { addr, .. } => {
                let s = match bind {
                    Some(ip) => {
                        let target: std::net::SocketAddr = tokio::net::lookup_host(addr)
                            .await?
                            .next()
                            .context("target address")?;
                        let sock = if target.is_ipv4() {
                            tokio::net::TcpSocket::new_v4()?
                        } else {
                            tokio::net::TcpSocket::new_v6()?
                        };
                        sock.bind(std::net::SocketAddr::new(ip, 0))?;
                        sock.connect(target).await
                    }
                    None => tokio::net::TcpStream::connect(addr).await,
                }
                .with_context(|| format!("cannot connect to {addr}"))?;
                let _ = s.set_nodelay(true);
                c.send(&[1, 0, 0]).await?;
                s.pipe_to(c, None).await?;
            }
            Target::Unix { path, .. } => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(|| format!("cannot connect to {}", path.display()))?;
                c.send(&[1, 0, 0]).await?;
                s.pipe_to(c, None).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(id = %req.id, "remote forward: {e:#}");
    }
}

fn unreachable_udp() -> Result<()> {
    bail!("internal: UDP targets are handled above")
}

pub async fn run(mut a: BridgeArgs) -> Result<()> {
    if let Some(BridgeCmd::Status { address, json }) = &a.cmd {
        return status(address, *json).await;
    }
    let mut status_from_file = None;
    let mut file_wcf = Vec::new();
    let mut own = OwnCredentials::default();
    if let Some(path) = a.config.clone() {
        let f = crate::bridge_config::BridgeFile::load(&path)?;
        status_from_file = f.status_address.clone();
        file_wcf = f.wcf_endpoints.clone();
        // Command-line flags override the file.
        a.connection_string = a
            .connection_string
            .or(f.azure_relay_connection_string.clone());
        a.endpoint = a.endpoint.or(f.azure_relay_endpoint.clone());
        a.key_name = a.key_name.or(f.azure_relay_shared_access_key_name.clone());
        a.key = a.key.or(f.azure_relay_shared_access_key.clone());
        a.signature = a
            .signature
            .or(f.azure_relay_shared_access_signature.clone());
        a.gateway_ports |= f.gateway_ports;
        a.keep_alive = a.keep_alive.or(f.keep_alive_interval);
        if a.bind_address.is_none() {
            if let Some(b) = &f.bind_address {
                a.bind_address = Some(b.parse().map_err(|_| {
                    anyhow!(
                        "{}: BindAddress '{b}': expected an IP address (the source address of outbound connections, as -b)",
                        path.display()
                    )
                })?);
            }
        }
        for s in f.specs()? {
            use crate::bridge_config::Spec;
            match s {
                Spec::Local {
                    spec,
                    connection_string: None,
                    no_auth: false,
                } => a.local.push(spec),
                Spec::Remote {
                    spec,
                    connection_string: None,
                } => a.remote.push(spec),
                Spec::Http {
                    spec,
                    connection_string: None,
                } => a.http.push(spec),
                // A forward with its own ConnectionString (or NoAuthentication) gets its
                // own relay endpoint and credentials.
                Spec::Local {
                    spec,
                    connection_string,
                    no_auth,
                } => own.local.push((spec, connection_string, no_auth)),
                Spec::Remote {
                    spec,
                    connection_string,
                } => own.remote.push((spec, connection_string, false)),
                Spec::Http {
                    spec,
                    connection_string,
                } => own.http.push((spec, connection_string, false)),
            }
        }
    }
    if a.local.is_empty()
        && a.remote.is_empty()
        && a.http.is_empty()
        && own.is_empty()
        && a.wcf.is_empty()
        && a.wcf_local.is_empty()
        && a.config.is_none()
    {
        bail!("nothing to forward: give -L [bind:]port[/name]:relay, -T relay:[name/][host:]port, -H relay:http/[host:]port, --wcf NAME=net.tcp://host:port/path or --wcf-local [addr:]port/path=NAME");
    }
    let has_default = a.connection_string.is_some() || a.endpoint.is_some();
    let ep = Arc::new(if has_default || own.is_empty() {
        endpoint(&a)?
    } else {
        // Every forward has its own credentials: the first one stands in as the default.
        own_endpoint(&a, own.first_cs(), false)?
    });
    let with_ep =
        |list: &[(String, Option<String>, bool)]| -> Result<Vec<(String, Arc<RelayEndpoint>)>> {
            list.iter()
                .map(|(spec, cs, no_auth)| {
                    Ok((
                        spec.clone(),
                        Arc::new(
                            own_endpoint(&a, cs.as_deref(), *no_auth)
                                .with_context(|| format!("forward {spec}"))?,
                        ),
                    ))
                })
                .collect()
        };
    // Forwards of the command line and the file use the bridge's endpoint; those with
    // their own credentials use theirs.
    let with_default = |plain: &[String],
                        own: &[(String, Option<String>, bool)]|
     -> Result<Vec<(String, Arc<RelayEndpoint>)>> {
        Ok(plain
            .iter()
            .map(|s| (s.clone(), ep.clone()))
            .chain(with_ep(own)?)
            .collect())
    };
    let locals = with_default(&a.local, &own.local)?;
    let remotes = with_default(&a.remote, &own.remote)?;
    let https = with_default(&a.http, &own.http)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (spec, ep) in &locals {
        let (relay, bindings) = parse_local(spec, a.gateway_ports)?;
        for b in bindings {
            tasks.spawn(run_local(ep.clone(), relay.clone(), b));
        }
    }
    for (spec, ep) in &remotes {
        let (relay, targets) = parse_remote(spec)?;
        tracing::info!("remote forward: hybrid connection '{relay}' → {targets:?}");
        let targets = Arc::new(targets);
        let listener = Listener::new(
            (**ep).clone(),
            &relay,
            ListenerOptions {
                keep_alive: Duration::from_secs(a.keep_alive.unwrap_or(30).max(1)),
                ..Default::default()
            },
        );
        let ep2 = ep.clone();
        let bind = a.bind_address;
        tasks.spawn(async move {
            let err = listener
                .run(move |req| handle_accept(ep2.clone(), targets.clone(), bind, req))
                .await;
            Err(anyhow!("listener for '{relay}' stopped: {err}"))
        });
    }
    for (spec, ep) in &https {
        let (relay, target) = parse_http(spec)?;
        tracing::info!("remote HTTP forward: hybrid connection '{relay}' → {target:?}");
        let t = Arc::new(target);
        let r = Arc::new(relay.clone());
        let tls =
            hyrelay_net::tls::client_config(&a.ca.iter().cloned().collect::<Vec<_>>(), false)?;
        let handler: hyrelay_client::RequestHandler =
            Arc::new(move |req| Box::pin(proxy_http(t.clone(), r.clone(), tls.clone(), req)));
        let listener = Listener::new(
            (**ep).clone(),
            &relay,
            ListenerOptions {
                keep_alive: Duration::from_secs(a.keep_alive.unwrap_or(30).max(1)),
                ..Default::default()
            },
        )
        .with_requests(handler);
        let ep2 = ep.clone();
        tasks.spawn(async move {
            // WebSocket senders on an HTTP forward are rejected, as a -H azbridge does not serve them.
            let err = listener
                .run(move |req| {
                    let ep = ep2.clone();
                    async move {
                        let _ = hyrelay_client::reject(
                            &ep,
                            &req,
                            501,
                            "This hybrid connection serves HTTP only",
                        )
                        .await;
                    }
                })
                .await;
            Err(anyhow!("HTTP listener for '{relay}' stopped: {err}"))
        });
    }
    // WCF endpoints: command line plus the file's WcfEndpoints, re-applied on change.
    let specs = crate::wcf::collect_specs(&a.wcf, &a.wcf_local, &file_wcf, a.gateway_ports)?;
    let mgr = Arc::new(tokio::sync::Mutex::new(crate::wcf::Manager::new(
        ep.clone(),
        Duration::from_secs(a.keep_alive.unwrap_or(30).max(1)),
    )));
    mgr.lock().await.apply(&specs).await?;
    // The WCF endpoints run in tasks of their own: keep the bridge up while they exist.
    tasks.spawn(async move {
        std::future::pending::<()>().await;
        Ok(())
    });
    let status_addr = a.status_address.clone().or(status_from_file);
    if let Some(addr) = status_addr {
        tasks.spawn(crate::wcf::serve_status(addr, mgr.clone()));
    }
    if let Some(path) = a.config.clone() {
        let (cli_wcf, cli_local, gw) = (a.wcf.clone(), a.wcf_local.clone(), a.gateway_ports);
        let mgr = mgr.clone();
        tasks.spawn(async move {
            watch_config(path, mgr, cli_wcf, cli_local, gw).await;
            Ok(())
        });
    }
    println!("hyrelay bridge ready");
    tokio::select! {
        r = tasks.join_next() => match r {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow!("bridge task failed: {e}")),
            _ => Ok(()),
        },
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_specs() {
        let (r, b) = parse_local("13389/rdp:relay", false).unwrap();
        assert_eq!(r, "relay");
        assert_eq!(
            b,
            vec![Local::Tcp {
                addr: "127.0.0.1:13389".into(),
                port_name: "rdp".into()
            }]
        );
        let (_, b) = parse_local("127.0.0.8:16161/sql1;127.0.0.9:16161/sql2:db", false).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            Local::Tcp {
                addr: "127.0.0.9:16161".into(),
                port_name: "sql2".into()
            }
        );
        let (_, b) = parse_local("8080:web", true).unwrap();
        assert_eq!(
            b[0],
            Local::Tcp {
                addr: "0.0.0.0:8080".into(),
                port_name: "8080".into()
            }
        );
        let (_, b) = parse_local("/tmp/x.sock/sock1:relay", false).unwrap();
        assert_eq!(
            b[0],
            Local::Unix {
                path: "/tmp/x.sock".into(),
                port_name: "sock1".into()
            }
        );
        let (_, b) = parse_local("5353U/dns:relay", false).unwrap();
        assert_eq!(
            b[0],
            Local::Udp {
                addr: "127.0.0.1:5353".into(),
                port_name: "dns".into()
            }
        );
        assert!(parse_local("nope", false).is_err());
    }

    #[test]
    fn http_specs() {
        let (r, t) = parse_http("web:http/127.0.0.1:8080").unwrap();
        assert_eq!(r, "web");
        assert_eq!(
            t,
            HttpTarget {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                path: String::new()
            }
        );
        let (_, t) = parse_http("web:https/localhost/api/v1:8443").unwrap();
        assert_eq!(
            t,
            HttpTarget {
                tls: true,
                host: "localhost".into(),
                port: 8443,
                path: "/api/v1".into()
            }
        );
        let (_, t) = parse_http("web:http/3000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 3000));
        assert!(parse_http("web:ftp/1").is_err());
    }

    #[test]
    fn remote_specs() {
        let (r, t) = parse_remote("db:sql1/sql1.corp:16161;sql2/sql2.corp:16161").unwrap();
        assert_eq!(r, "db");
        assert_eq!(
            t[0],
            Target::Tcp {
                port_name: "sql1".into(),
                addr: "sql1.corp:16161".into()
            }
        );
        let (_, t) = parse_remote("relay:3389").unwrap();
        assert_eq!(
            t[0],
            Target::Tcp {
                port_name: "3389".into(),
                addr: "127.0.0.1:3389".into()
            }
        );
        let (_, t) = parse_remote("relay:rdp/10.0.0.1:3389").unwrap();
        assert_eq!(
            t[0],
            Target::Tcp {
                port_name: "rdp".into(),
                addr: "10.0.0.1:3389".into()
            }
        );
        let (_, t) = parse_remote("relay:s/var/run/x.sock").unwrap();
        assert_eq!(
            t[0],
            Target::Unix {
                port_name: "s".into(),
                path: "/var/run/x.sock".into()
            }
        );
        let (_, t) = parse_remote("relay:/run/y.sock").unwrap();
        assert_eq!(
            t[0],
            Target::Unix {
                port_name: "y.sock".into(),
                path: "/run/y.sock".into()
            }
        );
        let (_, t) = parse_remote("relay:dns/127.0.0.1:53U").unwrap();
        assert_eq!(
            t[0],
            Target::Udp {
                port_name: "dns".into(),
                addr: "127.0.0.1:53".into()
            }
        );
        assert!(parse_remote("relay").is_err());
    }
}

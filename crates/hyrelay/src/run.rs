//! `hyrelay up` and `hyrelay relay --config`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use hyrelay_hc::sas::Rights;
use hyrelay_net::tls;
use hyrelay_relay::config::{RelayConfig, State};
use hyrelay_relay::model::{Namespace, Rule};
use hyrelay_relay::server::{serve, watch_state, Endpoint};
use hyrelay_relay::store::{redact_url, GatewayStore, RedisStore};
use hyrelay_relay::{Relay, RelayOptions};

/// Name of the namespace `hyrelay up` creates.
pub const UP_NAMESPACE: &str = "hyrelay";
/// The all-rights rule every namespace starts with.
pub const ROOT_RULE: &str = "RootManageSharedAccessKey";

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where entities, keys and the development certificate are kept.
    #[arg(long, default_value = ".hyrelay", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address to listen on (and the host name printed in connection strings).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port for plain ws:// and http:// (development); 0 picks a free port.
    #[arg(long, default_value_t = 9080)]
    http_port: u16,
    /// Port for wss:// and https://; 0 picks a free port.
    #[arg(long, default_value_t = 9443)]
    https_port: u16,
    /// Port of the status page (/), Prometheus metrics (/metrics) and /status.json, on
    /// --host; 0 picks a free port. If the port is taken, the relay runs without them.
    #[arg(long, default_value_t = 9090)]
    management_port: u16,
    /// Also serve the legacy WCF Relay face on its real ports, on --host: AMQP listener
    /// registration on 5671 (TLS, the development certificate), NetOneway/NetEvent senders
    /// on 9350 (clear) and 9351 (TLS upgrade), NetTcpRelay connect/accept on 9352, the NAT probe on 9353 and the SBMP
    /// refusal on 9354.
    #[arg(long)]
    wcf_relay: bool,
}

#[derive(clap::Args)]
pub struct RelayArgs {
    /// The configuration file (TOML). SIGHUP re-reads it: namespaces, rules, keys and
    /// hybrid connections apply at once; other sections are reported as needing a restart.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Only validate the file and exit (0 and "ok" when valid; otherwise the error names
    /// the file, line and key): `--config FILE --check-config` or `--check-config FILE`.
    #[arg(long, value_name = "FILE")]
    check_config: Option<Option<PathBuf>>,
}

impl RelayArgs {
    /// The file to run or check, given once with --config or --check-config.
    fn file(&self) -> Result<PathBuf> {
        let check = self.check_config.clone().flatten();
        match (&self.config, check) {
            (Some(c), Some(k)) if *c != k => bail!(
                "--config {} and --check-config {} name two files; give the file once",
                c.display(),
                k.display()
            ),
            (Some(c), _) => Ok(c.clone()),
            (None, Some(k)) => Ok(k),
            (None, None) => bail!(
                "--check-config needs a file: --check-config FILE, or --config FILE --check-config"
            ),
        }
    }
}

fn load_or_init_up_state(dir: &Path) -> Result<State> {
    let mut state = State::load(dir)?;
    if !state.namespaces.iter().any(|n| n.name == UP_NAMESPACE) {
        state.namespaces.push(Namespace {
            name: UP_NAMESPACE.into(),
            hosts: Vec::new(),
            rules: vec![Rule::generate(ROOT_RULE, Rights::ALL)],
            hybrid_connections: Vec::new(),
            wcf_relays: Vec::new(),
        });
        state.save(dir)?;
        tracing::info!(dir = %dir.display(), "first start: created namespace '{UP_NAMESPACE}' with rule {ROOT_RULE}");
    }
    Ok(state)
}

pub async fn up(a: UpArgs) -> Result<()> {
    let ip: IpAddr = tokio::net::lookup_host((a.host.as_str(), 0))
        .await
        .with_context(|| format!("--host {} does not resolve", a.host))?
        .next()
        .map(|s| s.ip())
        .with_context(|| format!("--host {} has no address", a.host))?;
    let state = load_or_init_up_state(&a.data_dir)?;
    let (paths, created) = tls::ensure_dev_cert(&a.data_dir, std::slice::from_ref(&a.host))?;
    if created {
        tracing::info!(ca = %paths.ca.display(), "created a development certificate authority; trust this file to use wss:// and https://");
    }
    let (certs, key) = tls::load_pem(&paths.cert, &paths.key)?;
    let tls_cfg = tls::server_config(certs, key)?;
    let relay = Relay::new(RelayOptions {
        data_dir: Some(a.data_dir.clone()),
        ..Default::default()
    })?;
    let http = Endpoint::bind(SocketAddr::new(ip, a.http_port), None).await?;
    let https = Endpoint::bind(SocketAddr::new(ip, a.https_port), Some(tls_cfg.clone())).await?;
    let (hp, sp) = (http.local_addr()?.port(), https.local_addr()?.port());
    let mgmt = match Endpoint::bind_management(SocketAddr::new(ip, a.management_port)).await {
        Ok(ep) => Some(ep),
        Err(e) => {
            tracing::warn!("status page and metrics not served: {e}; pass --management-port 0 for any free port");
            None
        }
    };
    let mp = mgmt
        .as_ref()
        .and_then(|m| m.local_addr().ok())
        .map(|a| a.port());
    let mut wcf_lines = Vec::new();
    if a.wcf_relay {
        let registry = Arc::new(hyrelay_relay::wcf_amqp::WcfRegistry::default());
        let _ = relay.wcf.set(registry.clone());
        let bind = |port: u16, what: &'static str| {
            let addr = SocketAddr::new(ip, port);
            async move {
                tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!("--wcf-relay: cannot listen on {addr} ({what}); is another relay or an AMQP broker using it?")
                })
            }
        };
        let amqp = bind(5671, "AMQP listener registration").await?;
        let oneway = bind(9350, "NetOneway/NetEvent senders").await?;
        let oneway_tls = bind(9351, "NetOneway/NetEvent senders with TLS").await?;
        let nettcp = bind(9352, "NetTcpRelay connect/accept").await?;
        let probe = bind(9353, "NetTcpRelay probe").await?;
        let sbmp = bind(9354, "SBMP refusal").await?;
        wcf_lines.push(format!(
            "  WCF Relay:        amqps={} oneway={} oneway_tls={} nettcp={} probe={} sbmp={}",
            amqp.local_addr()?,
            oneway.local_addr()?,
            oneway_tls.local_addr()?,
            nettcp.local_addr()?,
            probe.local_addr()?,
            sbmp.local_addr()?
        ));
        tokio::spawn(hyrelay_relay::wcf_nettcp::serve(
            relay.clone(),
            registry.clone(),
            nettcp,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg.clone())),
            advertise(SocketAddr::new(ip, 9352), hp, sp),
        ));
        tokio::spawn(hyrelay_relay::wcf_nettcp::serve_probe(probe));
        tokio::spawn(hyrelay_relay::wcf_amqp::serve(
            relay.clone(),
            registry.clone(),
            amqp,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg.clone())),
        ));
        tokio::spawn(hyrelay_relay::wcf_oneway::serve(
            relay.clone(),
            registry.clone(),
            oneway,
            None,
        ));
        tokio::spawn(hyrelay_relay::wcf_oneway::serve(
            relay.clone(),
            registry,
            oneway_tls,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg.clone())),
        ));
        tokio::spawn(hyrelay_relay::wcf_oneway::serve_sbmp(sbmp));
    }
    let root = state
        .namespaces
        .iter()
        .find(|n| n.name == UP_NAMESPACE)
        .and_then(|n| n.rules.iter().find(|r| r.name == ROOT_RULE))
        .context("the data directory has no RootManageSharedAccessKey rule")?;
    let host = if a.host.contains(':') {
        format!("[{}]", a.host)
    } else {
        a.host.clone()
    };
    println!(
        "hyrelay relay, namespace '{UP_NAMESPACE}', data in {}",
        a.data_dir.display()
    );
    println!("  plain (ws/http):  Endpoint=sb://{host}:{hp}/;SharedAccessKeyName={ROOT_RULE};SharedAccessKey={}", root.primary_key);
    println!("  TLS (wss/https):  Endpoint=sb://{host}:{sp}/;SharedAccessKeyName={ROOT_RULE};SharedAccessKey={}", root.primary_key);
    println!("  trust for TLS:    {}", paths.ca.display());
    println!(
        "  add a hybrid connection:  hyrelay hyco create NAME --data-dir {}",
        a.data_dir.display()
    );
    if let Some(mp) = mp {
        println!("  status page:      http://{host}:{mp}/  (metrics: /metrics)");
    }
    for l in &wcf_lines {
        println!("{l}");
    }
    println!("hyrelay ready: http={host}:{hp} https={host}:{sp}");
    tracing::info!("listening on http://{host}:{hp} and https://{host}:{sp}");
    let mut eps = vec![http, https];
    eps.extend(mgmt);
    run_servers(relay, eps, None).await
}

/// The configuration file a relay runs from, and what it said at start-up, for SIGHUP.
struct ConfigFile {
    path: std::path::PathBuf,
    running: RelayConfig,
}

async fn run_servers(
    relay: Arc<Relay>,
    eps: Vec<Endpoint>,
    file: Option<ConfigFile>,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for ep in eps {
        tasks.spawn(serve(relay.clone(), ep));
    }
    tasks.spawn(watch_state(relay.clone()));
    tasks.spawn(on_hangup(relay.clone(), file));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted: shutting down");
        }
        _ = terminate() => {
            tracing::info!("terminated: shutting down");
        }
        _ = tasks.join_next() => bail!("a server task ended unexpectedly"),
    }
    Ok(())
}

/// Listeners connected to other gateways dial this gateway's public address: check that a
/// TCP connection to it opens (from here), now that our sockets are bound.
async fn check_public_address(public: &str) -> Result<()> {
    let (tls, rest) = match public.split_once("://") {
        Some(("wss", r)) => (true, r),
        Some(("ws", r)) => (false, r),
        _ => bail!("is not ws://HOST:PORT or wss://HOST:PORT"),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect(&target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("is not reachable from this gateway ({target}: {e}); listeners on other gateways dial it to reach senders here"),
        Err(_) => bail!("is not reachable from this gateway ({target}: no answer within 3 s); listeners on other gateways dial it to reach senders here"),
    }
}

/// SIGHUP: re-read the configuration file and put its namespaces, rules and hybrid
/// connections in force (listeners of entities that stay keep their connections). Sections
/// that need new sockets or a new store ([listen], [tls], [store], [gateway], [wcf_relay],
/// [limits], data_dir) are compared and named in a warning; a file that does not load is
/// refused and the running configuration stays. Without a file (`hyrelay up`), the data
/// directory's entities are re-read.
async fn on_hangup(relay: Arc<Relay>, file: Option<ConfigFile>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return std::future::pending().await;
    };
    let mut file = file;
    while hup.recv().await.is_some() {
        let Some(f) = file.as_mut() else {
            match relay.reload() {
                Ok(()) => tracing::info!("SIGHUP: entities re-read from the data directory"),
                Err(e) => {
                    tracing::error!("SIGHUP: the data directory's state was not applied: {e}")
                }
            }
            continue;
        };
        let loaded = RelayConfig::load(&f.path).and_then(|c| {
            let m = c.model(&f.path)?;
            Ok((c, m))
        });
        let (cfg, namespaces) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: the file was not applied, the running configuration stays: {e}"
                );
                continue;
            }
        };
        let (now, was) = (&cfg, &f.running);
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        let restart: Vec<&str> = [
            ("data_dir", differs(&now.data_dir, &was.data_dir)),
            ("[listen]", differs(&now.listen, &was.listen)),
            ("[tls]", differs(&now.tls, &was.tls)),
            ("[gateway]", differs(&now.gateway, &was.gateway)),
            ("[store]", differs(&now.store, &was.store)),
            ("[wcf_relay]", differs(&now.wcf_relay, &was.wcf_relay)),
            ("[limits]", differs(&now.limits, &was.limits)),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        let count = namespaces.len();
        match relay.reconfigure(namespaces).await {
            Ok(()) => tracing::info!(
                file = %f.path.display(),
                namespaces = count,
                "SIGHUP: configuration re-read; namespaces, rules and hybrid connections applied"
            ),
            Err(e) => {
                tracing::error!("SIGHUP: the run-time state could not be read ({e}); the running configuration stays");
                continue;
            }
        }
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: {} changed in {} and only take effect after a restart",
                restart.join(", "),
                f.path.display()
            );
        }
        // The namespaces are in force; what needs a restart is compared with start-up.
        f.running.namespaces = cfg.namespaces;
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

pub async fn relay(a: RelayArgs) -> Result<()> {
    let path = a.file()?;
    let cfg = RelayConfig::load(&path)?;
    let namespaces = cfg.model(&path)?;
    if a.check_config.is_some() {
        println!("{}: ok ({} namespaces)", path.display(), namespaces.len());
        return Ok(());
    }
    let file = ConfigFile {
        path: path.clone(),
        running: cfg.clone(),
    };
    let amqp_addr = cfg.wcf_relay.as_ref().and_then(|w| w.amqp);
    let oneway_addr = cfg.wcf_relay.as_ref().and_then(|w| w.oneway);
    let oneway_tls_addr = cfg.wcf_relay.as_ref().and_then(|w| w.oneway_tls);
    let sbmp_addr = cfg.wcf_relay.as_ref().and_then(|w| w.sbmp);
    let nettcp_addr = cfg.wcf_relay.as_ref().and_then(|w| w.nettcp);
    let probe_addr = cfg.wcf_relay.as_ref().and_then(|w| w.probe);
    let data_dir = cfg.data_dir.clone();
    let tls_cfg = match (
        &cfg.tls,
        cfg.listen
            .https
            .or(amqp_addr)
            .or(nettcp_addr)
            .or(oneway_tls_addr),
    ) {
        (_, None) => None,
        (Some(t), Some(_)) => {
            let (c, k) = tls::load_pem(&t.cert, &t.key)?;
            Some(tls::server_config(c, k)?)
        }
        (None, Some(addr)) => {
            let dir = data_dir.clone().context(
                "[listen] https or [wcf_relay] amqp without [tls] needs data_dir for the self-signed certificate",
            )?;
            let (p, _) = tls::ensure_dev_cert(&dir, &[addr.ip().to_string()])?;
            let (c, k) = tls::load_pem(&p.cert, &p.key)?;
            Some(tls::server_config(c, k)?)
        }
    };
    let first_port = cfg
        .listen
        .https
        .or(cfg.listen.http)
        .map(|a| a.port())
        .unwrap_or(0);
    let gateway_id = cfg.gateway.id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "gateway".into());
        format!("{host}-{first_port}")
    });
    let opts = RelayOptions {
        limits: cfg.limits.clone(),
        data_dir,
        config_namespaces: namespaces,
        public_address: cfg.gateway.public_address.clone(),
        gateway_id: gateway_id.clone(),
        ..Default::default()
    };
    // The relay's own ports are bound before it joins a shared store: a gateway that
    // cannot listen must fail without ever having been announced to the other gateways.
    let mut eps = Vec::new();
    let (mut http_port, mut https_port) = (0, 0);
    if let Some(addr) = cfg.listen.http {
        let ep = Endpoint::bind(addr, None).await?;
        http_port = ep.local_addr()?.port();
        eps.push(ep);
    }
    if let Some(addr) = cfg.listen.https {
        let ep = Endpoint::bind(addr, tls_cfg.clone()).await?;
        https_port = ep.local_addr()?.port();
        eps.push(ep);
    }
    let (relay, notices) = match &cfg.store.redis {
        None => (Relay::new(opts)?, None),
        Some(url) => {
            let ttl = cfg
                .store
                .registration_ttl
                .unwrap_or(std::time::Duration::from_secs(30));
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let store = RedisStore::connect(url, &gateway_id, ttl, tx)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let state = store
                .load_state()
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .unwrap_or_default();
            tracing::info!(gateway = %gateway_id, store = %redact_url(url), ttl = ?ttl, "gateway joined the shared store");
            (Relay::with_store(opts, store, Some(state))?, Some(rx))
        }
    };
    if let Some(rx) = notices {
        tokio::spawn(relay.clone().run_gateway(rx));
    }
    let mut amqp_bound = None;
    let registry = Arc::new(hyrelay_relay::wcf_amqp::WcfRegistry::default());
    if let Some(w) = &cfg.wcf_relay {
        registry.configure(
            w.extensions,
            w.without_listener == hyrelay_relay::config::WithoutListener::Drop,
        );
        let _ = relay.wcf.set(registry.clone());
    }
    let mut oneway_bound = None;
    if let Some(addr) = oneway_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] oneway: cannot listen on {addr}"))?;
        oneway_bound = Some(l.local_addr()?);
        tokio::spawn(hyrelay_relay::wcf_oneway::serve(
            relay.clone(),
            registry.clone(),
            l,
            None,
        ));
    }
    let mut oneway_tls_bound = None;
    if let Some(addr) = oneway_tls_addr {
        let acc = tls_cfg
            .clone()
            .map(tokio_rustls::TlsAcceptor::from)
            .context("[wcf_relay] oneway_tls needs a certificate")?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] oneway_tls: cannot listen on {addr}"))?;
        oneway_tls_bound = Some(l.local_addr()?);
        tokio::spawn(hyrelay_relay::wcf_oneway::serve(
            relay.clone(),
            registry.clone(),
            l,
            Some(acc),
        ));
    }
    let mut sbmp_bound = None;
    if let Some(addr) = sbmp_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] sbmp: cannot listen on {addr}"))?;
        sbmp_bound = Some(l.local_addr()?);
        tokio::spawn(hyrelay_relay::wcf_oneway::serve_sbmp(l));
    }
    let mut nettcp_bound = None;
    if let Some(addr) = nettcp_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] nettcp: cannot listen on {addr}"))?;
        let bound = l.local_addr()?;
        nettcp_bound = Some(bound);
        tokio::spawn(hyrelay_relay::wcf_nettcp::serve(
            relay.clone(),
            registry.clone(),
            l,
            tls_cfg.clone().map(tokio_rustls::TlsAcceptor::from),
            advertise(bound, http_port, https_port),
        ));
    }
    let mut probe_bound = None;
    if let Some(addr) = probe_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] probe: cannot listen on {addr}"))?;
        probe_bound = Some(l.local_addr()?);
        tokio::spawn(hyrelay_relay::wcf_nettcp::serve_probe(l));
    }
    if let (Some(addr), Some(tls_cfg)) = (amqp_addr, tls_cfg.clone()) {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[wcf_relay] amqp: cannot listen on {addr}"))?;
        amqp_bound = Some(l.local_addr()?);
        tokio::spawn(hyrelay_relay::wcf_amqp::serve(
            relay.clone(),
            registry.clone(),
            l,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg)),
        ));
    }
    if let Some(addr) = cfg.listen.management {
        eps.push(Endpoint::bind_management(addr).await?);
    }
    if let (Some(_), Some(public)) = (&cfg.store.redis, &cfg.gateway.public_address) {
        check_public_address(public).await.map_err(|e| {
            anyhow::anyhow!(
                "{}: [gateway] public_address = \"{public}\" {e}",
                path.display()
            )
        })?;
    }
    let addrs: Vec<String> = eps
        .iter()
        .filter_map(|e| e.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut addrs = addrs;
    if let Some(a) = amqp_bound {
        addrs.push(format!("amqps={a}"));
    }
    if let Some(a) = oneway_bound {
        addrs.push(format!("oneway={a}"));
    }
    if let Some(a) = oneway_tls_bound {
        addrs.push(format!("oneway_tls={a}"));
    }
    if let Some(a) = nettcp_bound {
        addrs.push(format!("nettcp={a}"));
    }
    if let Some(a) = probe_bound {
        addrs.push(format!("probe={a}"));
    }
    if let Some(a) = sbmp_bound {
        addrs.push(format!("sbmp={a}"));
    }
    println!("hyrelay ready: {}", addrs.join(" "));
    run_servers(relay, eps, Some(file)).await
}

/// What NetTcpRelay listeners are told to dial back: the 9352 socket's IPv4 address (an
/// unspecified bind address advertises loopback) and the relay's HTTP ports.
fn advertise(
    nettcp: SocketAddr,
    http_port: u16,
    https_port: u16,
) -> hyrelay_relay::wcf_nettcp::Advertise {
    let ip = match nettcp.ip() {
        IpAddr::V4(v4) if !v4.is_unspecified() => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        _ => std::net::Ipv4Addr::LOCALHOST,
    };
    if !nettcp.ip().is_ipv4() {
        tracing::warn!(bound = %nettcp, "NetTcpRelay listeners are told to dial IPv4 {ip} (the protocol carries IPv4 only)");
    }
    hyrelay_relay::wcf_nettcp::Advertise {
        ip,
        port: nettcp.port(),
        http_port,
        https_port,
    }
}

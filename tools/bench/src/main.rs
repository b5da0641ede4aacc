//! hyrelay-bench: relayed WebSocket performance next to a direct loopback WebSocket between
//! the same two programs, in the same run.
//!
//! It starts `hyrelay up` (the binary given by --relay-bin) on free ports, registers a
//! listener of its own on the relay, and runs each measurement twice: sender → its own
//! WebSocket server directly, and sender → relay → listener. Reports throughput (1 and 8
//! streams, plain and TLS), 64-byte round-trip p50/p99, new connections per second, relay
//! CPU-seconds per GB and relay RSS per idle relayed connection.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hyrelay_net::splice::{split, ReadSide, WriteSide};
use hyrelay_net::ws::{client_handshake, server_handshake, FrameReader, FrameWriter, Role};
use hyrelay_net::Stream;
use hyrelay_ws::OpCode;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;

mod gateways;

#[derive(Parser, Clone)]
#[command(about = "Relay vs direct loopback WebSocket benchmark")]
struct Args {
    /// The hyrelay binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/hyrelay")]
    relay_bin: PathBuf,
    /// Bytes per throughput run, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Round trips for the latency run.
    #[arg(long, default_value_t = 10000)]
    round_trips: usize,
    /// Seconds for the connection-rate run.
    #[arg(long, default_value_t = 3)]
    conn_seconds: u64,
    /// Idle relayed connections for the RSS measurement (each costs the relay two
    /// descriptors: keep it under half the hard NOFILE limit, 20 000 in this workplace).
    #[arg(long, default_value_t = 9500)]
    idle: usize,
    /// Run the scale-out benchmark instead: gateways on a real redis-server, same-gateway
    /// vs cross-gateway, and connect time with 1, 3 and 5 gateways.
    #[arg(long)]
    gateways: bool,
    /// The redis-server program for --gateways.
    #[arg(long, default_value = "/usr/bin/redis-server")]
    redis_server: PathBuf,
}

#[derive(Clone)]
struct Env {
    relay_addr: String,
    relay_tls_addr: String,
    direct_addr: String,
    direct_tls_addr: String,
    key: String,
    tls: Arc<rustls::ClientConfig>,
    relay_pid: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    Relayed,
}

type Conn = (FrameReader<ReadSide>, FrameWriter<WriteSide>);

fn token(env: &Env) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 7200;
    hyrelay_hc::sas::sign(
        "http://127.0.0.1/bench",
        "RootManageSharedAccessKey",
        &env.key,
        exp,
    )
}

async fn dial(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Stream> {
    // Spread source addresses over 127.0.0.0/8 so that tens of thousands of connections
    // (and TIME_WAIT leftovers of the rate test) do not exhaust one address's ephemeral ports.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let src = std::net::Ipv4Addr::new(127, 0, 1 + (n / 250 % 250) as u8, 1 + (n % 250) as u8);
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(std::net::SocketAddr::new(src.into(), 0))?;
    let target: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .context("address")?;
    let tcp = sock
        .connect(target)
        .await
        .with_context(|| format!("connect {addr} from {src}"))?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        None => Stream::Plain(tcp),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            Stream::ClientTls(Box::new(
                tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await?,
            ))
        }
    })
}

async fn open(env: &Env, path: Path, tls: bool, kind: &str) -> Result<Conn> {
    let (addr, target, headers) = match path {
        Path::Direct => (
            if tls {
                &env.direct_tls_addr
            } else {
                &env.direct_addr
            },
            format!("/{kind}"),
            vec![],
        ),
        Path::Relayed => (
            if tls {
                &env.relay_tls_addr
            } else {
                &env.relay_addr
            },
            format!("/$hc/bench/{kind}?sb-hc-action=connect"),
            vec![("ServiceBusAuthorization".to_string(), token(env))],
        ),
    };
    let mut s = dial(addr, tls.then_some(&env.tls)).await?;
    let r = client_handshake(&mut s, addr, &target, &headers).await?;
    if r.status != 101 {
        bail!("handshake to {addr}{target}: {} {}", r.status, r.reason);
    }
    let (rd, wr) = split(s);
    Ok((
        FrameReader::new(rd, r.leftover, Role::Client, u64::MAX >> 1),
        FrameWriter::new(wr, Role::Client),
    ))
}

/// Server side of every benchmark connection: `sink` counts bytes until Close and answers
/// Close; `echo` returns every frame.
async fn serve_ws(
    mut r: FrameReader<ReadSide>,
    mut w: FrameWriter<WriteSide>,
    kind: String,
) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(h) = r.header().await? else {
            return Ok(());
        };
        match h.opcode {
            OpCode::Close => {
                let p = r.payload(125).await?;
                w.frame(true, OpCode::Close, &p).await?;
                return Ok(());
            }
            OpCode::Ping => {
                let p = r.payload(125).await?;
                w.frame(true, OpCode::Pong, &p).await?;
            }
            _ if kind == "echo" => {
                buf.clear();
                while let Some(c) = r.chunk(1 << 20).await? {
                    buf.extend_from_slice(&c);
                }
                w.frame(h.fin, h.opcode, &buf).await?;
            }
            _ => while r.chunk(1 << 20).await?.is_some() {},
        }
    }
}

async fn direct_server(l: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut s = match tls {
                None => Stream::Plain(tcp),
                Some(a) => match a.accept(tcp).await {
                    Ok(t) => Stream::ServerTls(Box::new(t)),
                    Err(_) => return,
                },
            };
            let Ok((target, left)) = server_handshake(&mut s).await else {
                return;
            };
            let kind = target.trim_start_matches('/').to_string();
            let (rd, wr) = split(s);
            let _ = serve_ws(
                FrameReader::new(rd, left, Role::Server, u64::MAX >> 1),
                FrameWriter::new(wr, Role::Server),
                kind,
            )
            .await;
        });
    }
}

/// The relayed listener: a control channel that accepts every sender.
async fn relay_listener(env: Env, ready: tokio::sync::oneshot::Sender<()>) -> Result<()> {
    let mut s = dial(&env.relay_addr, None).await?;
    let r = client_handshake(
        &mut s,
        &env.relay_addr,
        "/$hc/bench?sb-hc-action=listen",
        &[("ServiceBusAuthorization".into(), token(&env))],
    )
    .await?;
    if r.status != 101 {
        bail!("listen refused: {} {}", r.status, r.reason);
    }
    let _ = ready.send(());
    let (rd, wr) = split(s);
    let mut reader = FrameReader::new(rd, r.leftover, Role::Client, u64::MAX >> 1);
    let _writer = FrameWriter::new(wr, Role::Client);
    loop {
        let Some(h) = reader.header().await? else {
            bail!("control channel closed")
        };
        let p = reader.payload(1 << 20).await?;
        if h.opcode != OpCode::Text {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&p)?;
        let Some(addr) = v
            .pointer("/accept/address")
            .and_then(|a| a.as_str())
            .map(str::to_string)
        else {
            continue;
        };
        let env2 = env.clone();
        tokio::spawn(async move {
            let rest = addr.trim_start_matches("ws://");
            let (host, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let kind = target
                .split('?')
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("sink")
                .to_string();
            let Ok(mut s) = dial(host, None).await else {
                return;
            };
            let Ok(r) = client_handshake(&mut s, host, target, &[]).await else {
                return;
            };
            if r.status != 101 {
                return;
            }
            let _ = &env2;
            let (rd, wr) = split(s);
            let _ = serve_ws(
                FrameReader::new(rd, r.leftover, Role::Client, u64::MAX >> 1),
                FrameWriter::new(wr, Role::Client),
                kind,
            )
            .await;
        });
    }
}

fn relay_cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after ")" start at index 3 (state); utime = 14, stime = 15 (1-based).
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

fn relay_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn throughput(
    env: &Env,
    path: Path,
    tls: bool,
    streams: usize,
    total: u64,
) -> Result<(f64, f64)> {
    let per = total / streams as u64;
    let frame = vec![0x5au8; 64 * 1024];
    let cpu0 = relay_cpu_ticks(env.relay_pid);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (mut r, mut w) = open(env, path, tls, "sink").await?;
        let frame = frame.clone();
        set.spawn(async move {
            let mut sent = 0u64;
            while sent < per {
                w.frame_noflush(true, OpCode::Binary, &frame).await?;
                sent += frame.len() as u64;
            }
            w.close(1000, "done").await?;
            // The sink answers Close only after it read everything.
            loop {
                let Some(h) = r.header().await? else {
                    bail!("ended without Close")
                };
                let _ = r.payload(1 << 20).await?;
                if h.opcode == OpCode::Close {
                    return Ok::<u64, anyhow::Error>(sent);
                }
            }
        });
    }
    let mut bytes = 0;
    while let Some(x) = set.join_next().await {
        bytes += x??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (relay_cpu_ticks(env.relay_pid) - cpu0) as f64 / 100.0;
    Ok((bytes as f64 / secs / 1e6, cpu / (bytes as f64 / 1e9)))
}

async fn latency(env: &Env, path: Path, n: usize) -> Result<(f64, f64)> {
    let (mut r, mut w) = open(env, path, false, "echo").await?;
    let msg = [7u8; 64];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        w.frame(true, OpCode::Binary, &msg).await?;
        let Some(_) = r.header().await? else {
            bail!("echo ended")
        };
        let p = r.payload(1024).await?;
        if p.len() != 64 {
            bail!("echo returned {} bytes", p.len());
        }
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    w.close(1000, "").await?;
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((samples[n / 2], samples[n * 99 / 100]))
}

async fn conn_rate(env: &Env, path: Path, secs: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let env = env.clone();
        let done = done.clone();
        set.spawn(async move {
            while Instant::now() < deadline {
                let (mut r, mut w) = open(&env, path, false, "echo").await?;
                w.close(1000, "").await?;
                while let Some(h) = r.header().await? {
                    let _ = r.payload(125).await?;
                    if h.opcode == OpCode::Close {
                        break;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(x) = set.join_next().await {
        x??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs as f64)
}

async fn idle_rss(env: &Env, n: usize) -> Result<(u64, u64, f64)> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = relay_rss_kib(env.relay_pid);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut r, mut w) = open(env, Path::Relayed, false, "echo").await?;
        w.frame(true, OpCode::Binary, b"hi").await?;
        r.header().await?;
        r.payload(16).await?;
        held.push((r, w));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = relay_rss_kib(env.relay_pid);
    drop(held);
    Ok((
        before,
        after,
        (after.saturating_sub(before)) as f64 / n as f64,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    // 10 000 idle relayed connections need ~20 000 descriptors here and in the relay (which
    // inherits the limit); root may raise the hard limit, others get what the hard limit allows.
    if rlimit::setrlimit(rlimit::Resource::NOFILE, 100_000, 100_000).is_err() {
        let _ = rlimit::increase_nofile_limit(100_000);
    }
    let dir = std::env::temp_dir().join(format!("hyrelay-bench-{}", std::process::id()));
    let mut child = tokio::process::Command::new(&a.relay_bin)
        .args(["up", "--data-dir"])
        .arg(&dir)
        .args([
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--management-port",
            "0",
        ])
        .env("HYRELAY_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", a.relay_bin.display()))?;
    let pid = child.id().context("relay pid")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut key, mut http, mut https) = (String::new(), String::new(), String::new());
    while let Some(l) = lines.next_line().await? {
        if key.is_empty() {
            if let Some(i) = l.find("SharedAccessKey=") {
                key = l[i + 16..].trim().to_string();
            }
        }
        if let Some(rest) = l.strip_prefix("hyrelay ready: ") {
            for p in rest.split_whitespace() {
                if let Some(v) = p.strip_prefix("http=") {
                    http = v.into();
                }
                if let Some(v) = p.strip_prefix("https=") {
                    https = v.into();
                }
            }
            break;
        }
    }
    let cs = format!(
        "Endpoint=sb://{http}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key}"
    );
    let st = std::process::Command::new(&a.relay_bin)
        .args(["hyco", "create", "bench", "-x", &cs])
        .output()?;
    if !st.status.success() {
        bail!(
            "hyco create failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let paths = hyrelay_net::tls::DevCertPaths::in_dir(&dir);
    let (certs, k) = hyrelay_net::tls::load_pem(&paths.cert, &paths.key)?;
    let server_tls = hyrelay_net::tls::server_config(certs, k)?;
    let client_tls = hyrelay_net::tls::client_config(std::slice::from_ref(&paths.ca), false)?;
    let dl = TcpListener::bind("127.0.0.1:0").await?;
    let dtl = TcpListener::bind("127.0.0.1:0").await?;
    let env = Env {
        relay_addr: http,
        relay_tls_addr: https,
        direct_addr: dl.local_addr()?.to_string(),
        direct_tls_addr: dtl.local_addr()?.to_string(),
        key,
        tls: client_tls,
        relay_pid: pid,
    };
    tokio::spawn(direct_server(dl, None));
    tokio::spawn(direct_server(
        dtl,
        Some(tokio_rustls::TlsAcceptor::from(server_tls)),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let e2 = env.clone();
    tokio::spawn(async move {
        if let Err(e) = relay_listener(e2, tx).await {
            eprintln!("listener: {e:#}");
        }
    });
    rx.await.context("listener did not come up")?;

    if a.gateways {
        let r = gateways::run(&a, env).await;
        let _ = child.kill().await;
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let total = a.mib << 20;
    println!(
        "hyrelay-bench: {} MiB per throughput run, relay pid {pid}, {} cores",
        a.mib,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("| measurement | direct | relayed | ratio | relay CPU-s/GB |");
    println!("|---|---|---|---|---|");
    for (tls, streams) in [(false, 1), (false, 8), (true, 1), (true, 8)] {
        let (d, _) = throughput(&env, Path::Direct, tls, streams, total).await?;
        let (r, cpu) = throughput(&env, Path::Relayed, tls, streams, total).await?;
        println!(
            "| throughput {} {} stream(s) MB/s | {d:.0} | {r:.0} | {:.2} | {cpu:.2} |",
            if tls { "TLS" } else { "plain" },
            streams,
            r / d
        );
    }
    let (d50, d99) = latency(&env, Path::Direct, a.round_trips).await?;
    let (r50, r99) = latency(&env, Path::Relayed, a.round_trips).await?;
    println!(
        "| 64 B round trip p50 µs | {d50:.0} | {r50:.0} | {:.2} | |",
        r50 / d50
    );
    println!(
        "| 64 B round trip p99 µs | {d99:.0} | {r99:.0} | {:.2} | |",
        r99 / d99
    );
    if a.idle > 0 {
        let (b, af, per) = idle_rss(&env, a.idle).await?;
        println!("| relay RSS per idle relayed connection | | {per:.2} KiB ({} idle: {b} → {af} KiB) | | |", a.idle);
    }
    let dc = conn_rate(&env, Path::Direct, a.conn_seconds).await?;
    let rc = conn_rate(&env, Path::Relayed, a.conn_seconds).await?;
    println!(
        "| new connections/s (16 concurrent) | {dc:.0} | {rc:.0} | {:.2} | |",
        rc / dc
    );
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! `hyrelay-bench --gateways`: scale-out on a real redis-server. A listener on gateway 1;
//! senders on gateway 1 (same gateway) and on another gateway (cross-gateway: the nine
//! steps), measured in the same run; then cross-gateway connect time with 1, 3 and 5
//! gateways running.

use std::path::Path as FsPath;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use super::{conn_rate, open, relay_listener, throughput, Args, Env, Path};

const KEY: &str = "YmVuY2gtZ2F0ZXdheS1rZXktZm9yLXNjYWxlLW91dC0wMDA=";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Gateway {
    child: Child,
    addr: String,
    pid: u32,
}

async fn start_gateway(bin: &FsPath, dir: &FsPath, id: &str, redis: &str) -> Result<Gateway> {
    let port = free_port()?;
    let cfg = dir.join(format!("{id}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"
[listen]
http = "127.0.0.1:{port}"
[gateway]
id = "{id}"
public_address = "ws://127.0.0.1:{port}"
[store]
redis = "{redis}"
[[namespaces]]
name = "bench"
hosts = ["127.0.0.1"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "{KEY}"
  [[namespaces.hybrid_connections]]
  name = "bench"
"#
        ),
    )?;
    let mut child = Command::new(bin)
        .args(["relay", "--config"])
        .arg(&cfg)
        .env("HYRELAY_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id().context("pid")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    while let Some(l) = lines.next_line().await? {
        if l.starts_with("hyrelay ready") {
            return Ok(Gateway {
                child,
                addr: format!("127.0.0.1:{port}"),
                pid,
            });
        }
    }
    bail!("gateway {id} exited before it was ready")
}

fn env_for(gw: &Gateway, base: &Env) -> Env {
    Env {
        relay_addr: gw.addr.clone(),
        relay_tls_addr: gw.addr.clone(),
        key: KEY.into(),
        relay_pid: gw.pid,
        ..base.clone()
    }
}

/// p50 and p99 of `n` sequential connect handshakes (sender → 101) through `env`.
async fn connect_times(env: &Env, n: usize) -> Result<(f64, f64)> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let (_r, mut w) = open(env, Path::Relayed, false, "echo").await?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        w.close(1000, "").await?;
        if i >= 20 {
            v.push(us);
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok((v[n / 2], v[n * 99 / 100]))
}

pub async fn run(a: &Args, base: Env) -> Result<()> {
    let redis_port = free_port()?;
    let mut redis = Command::new(&a.redis_server)
        .args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (apt install redis-server)",
                a.redis_server.display()
            )
        })?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", redis_port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = std::env::temp_dir().join(format!("hyrelay-gwbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut gws = vec![start_gateway(&a.relay_bin, &dir, "gw-1", &redis_url).await?];
    let listener_env = env_for(&gws[0], &base);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let le = listener_env.clone();
    tokio::spawn(async move {
        if let Err(e) = relay_listener(le, tx).await {
            eprintln!("listener: {e:#}");
        }
    });
    rx.await.context("listener did not come up")?;
    // Let the registration reach the store.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    println!(
        "\nscale-out: listener on gw-1, redis-server {redis_url}, {} MiB per throughput run",
        a.mib
    );
    println!("| gateways running | sender on | connect p50 µs | connect p99 µs |");
    println!("|---|---|---|---|");
    let n = 500;
    let (p50, p99) = connect_times(&listener_env, n).await?;
    println!("| 1 | gw-1 (same) | {p50:.0} | {p99:.0} |");
    for target in [3usize, 5] {
        while gws.len() < target {
            let id = format!("gw-{}", gws.len() + 1);
            gws.push(start_gateway(&a.relay_bin, &dir, &id, &redis_url).await?);
        }
        let e = env_for(&gws[target - 1], &base);
        let (p50, p99) = connect_times(&e, n).await?;
        println!("| {target} | gw-{target} (cross) | {p50:.0} | {p99:.0} |");
    }
    let same = listener_env.clone();
    let cross = env_for(&gws[1], &base);
    let total = a.mib << 20;
    println!("\n| measurement (5 gateways running) | same gateway | cross-gateway | ratio |");
    println!("|---|---|---|---|");
    let sc = conn_rate(&same, Path::Relayed, a.conn_seconds).await?;
    let cc = conn_rate(&cross, Path::Relayed, a.conn_seconds).await?;
    println!(
        "| new connections/s (16 concurrent) | {sc:.0} | {cc:.0} | {:.2} |",
        cc / sc
    );
    let (st, _) = throughput(&same, Path::Relayed, false, 1, total).await?;
    let (ct, _) = throughput(&cross, Path::Relayed, false, 1, total).await?;
    println!(
        "| throughput 1 stream MB/s | {st:.0} | {ct:.0} | {:.2} |",
        ct / st
    );
    let (s50, _) = connect_times(&same, n).await?;
    let (c50, _) = connect_times(&cross, n).await?;
    println!(
        "| connect p50 µs | {s50:.0} | {c50:.0} | {:.2} |",
        c50 / s50
    );
    for mut g in gws {
        let _ = g.child.kill().await;
    }
    let _ = redis.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

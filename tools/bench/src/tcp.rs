//! TCP tunnel benchmark: the same measurements against any address that reaches the sink —
//! directly, or through hyrelay's bridge, rathole or bore — so they compare in one run.
//!
//! `hyrelay-tcpbench sink --listen 127.0.0.1:PORT` serves: a connection's first byte picks
//! `b` (bulk: discard, then answer the byte count) or `e` (echo).
//! `hyrelay-tcpbench run --addr HOST:PORT [--pids P,P]` measures throughput with 1 and 8
//! streams, 64-byte round trips (p50/p99) and new connections per second, and, with
//! `--pids`, the CPU seconds those processes spent per GB moved. Prints one JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Sink {
        #[arg(long)]
        listen: String,
    },
    Run {
        #[arg(long)]
        addr: String,
        /// MiB per stream for the bulk tests.
        #[arg(long, default_value_t = 512)]
        mib: u64,
        #[arg(long, default_value_t = 5000)]
        round_trips: usize,
        #[arg(long, default_value_t = 3.0)]
        conn_seconds: f64,
        /// Processes whose CPU time counts as the tunnel's (comma separated PIDs).
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[arg(long, default_value = "")]
        label: String,
    },
}

async fn sink(listen: &str) -> Result<()> {
    let l = TcpListener::bind(listen).await?;
    println!("sink ready {}", l.local_addr()?);
    loop {
        let (mut s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            if s.read_exact(&mut kind).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 256 * 1024];
            match kind[0] {
                b'b' => {
                    let mut n = 0u64;
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k as u64,
                        }
                    }
                    let _ = s.write_all(&n.to_le_bytes()).await;
                }
                _ => loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if s.write_all(&buf[..k]).await.is_err() {
                                break;
                            }
                        }
                    }
                },
            }
        });
    }
}

fn cpu_seconds(pids: &[u32]) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .sum()
}

async fn bulk(addr: &str, bytes: u64) -> Result<u64> {
    let mut s = TcpStream::connect(addr).await?;
    let _ = s.set_nodelay(true);
    s.write_all(b"b").await?;
    let block = vec![7u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        s.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut got = [0u8; 8];
    s.read_exact(&mut got)
        .await
        .context("no byte count from the sink")?;
    let n = u64::from_le_bytes(got);
    if n != bytes {
        bail!("sink counted {n} bytes, sent {bytes}");
    }
    Ok(n)
}

async fn throughput(addr: &str, streams: usize, mib: u64) -> Result<f64> {
    let per = mib << 20;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let a = addr.to_owned();
        tasks.push(tokio::spawn(async move { bulk(&a, per).await }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64() / 1e9)
}

async fn round_trips(addr: &str, n: usize) -> Result<(f64, f64)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"e").await?;
    let msg = [42u8; 64];
    let mut back = [0u8; 64];
    // warm-up
    for _ in 0..100 {
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok((lat[n / 2], lat[n * 99 / 100]))
}

/// One client, one connection at a time: connect, 1-byte echo end to end, close. The p50 of
/// that is what a new connection costs in latency (the tunnel's whole setup path).
async fn setup_latency(addr: &str, n: usize) -> Result<f64> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(b"e!").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(lat[n / 2])
}

async fn connections(addr: &str, seconds: f64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (a, done) = (addr.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut s) = TcpStream::connect(&a).await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                if s.write_all(b"e!").await.is_err() {
                    continue;
                }
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / seconds)
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Sink { listen } => sink(&listen).await,
        Cmd::Run {
            addr,
            mib,
            round_trips: n,
            conn_seconds,
            pids,
            label,
        } => {
            // Reachability first: a tunnel that is not up yet gets a few seconds.
            let mut ok = false;
            for _ in 0..50 {
                if round_trips(&addr, 10).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !ok {
                bail!("{addr} does not reach the sink");
            }
            let cpu0 = cpu_seconds(&pids);
            let t1 = throughput(&addr, 1, mib).await?;
            let t8 = throughput(&addr, 8, mib / 4).await?;
            let cpu1 = cpu_seconds(&pids);
            let gb = (mib + 8 * (mib / 4)) as f64 * 1048576.0 / 1e9;
            let (p50, p99) = round_trips(&addr, n).await?;
            let setup = setup_latency(&addr, 500).await?;
            let cps = connections(&addr, conn_seconds).await?;
            println!(
                "{}",
                serde_json::json!({
                    "label": label, "addr": addr,
                    "gbps_1": t1, "gbps_8": t8, "rtt_p50_us": p50, "rtt_p99_us": p99,
                    "conn_per_s": cps, "setup_p50_us": setup,
                    "cpu_s_per_gb": if pids.is_empty() { serde_json::Value::Null } else { ((cpu1 - cpu0) / gb).into() },
                })
            );
            Ok(())
        }
    }
}

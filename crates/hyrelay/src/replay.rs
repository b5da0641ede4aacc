//! `hyrelay replay`: replay the client side of captured net.tcp sessions against a live
//! service and compare its answers with the captured ones, structurally.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyrelay_capture::{transcript, Connection, Dir, Entry, Segment, TranscriptOptions};
use hyrelay_wcf::{compare, Inbound, InboundConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Arguments of `replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Capture to replay: hyrelay JSON lines (`hyrelay capture`), pcap or pcapng.
    fixture: PathBuf,
    /// The service to replay against, e.g. net.tcp://127.0.0.1:8000/CreditCheck. The Via
    /// and every request's To are rewritten to it.
    #[arg(long, value_name = "net.tcp://HOST:PORT/PATH")]
    target: String,
    /// Only this connection of the capture.
    #[arg(long, value_name = "N")]
    conn: Option<u32>,
    /// How long to wait for each expected answer.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    timeout: humantime::Duration,
}

struct Outcome {
    requests: usize,
    answers: usize,
    mismatches: Vec<String>,
}

pub async fn replay(a: ReplayArgs) -> Result<bool> {
    let data =
        std::fs::read(&a.fixture).with_context(|| format!("reading {}", a.fixture.display()))?;
    let cap = hyrelay_capture::parse(&data, &hyrelay_capture::Limits::default())
        .with_context(|| format!("{} is not a readable capture", a.fixture.display()))?;
    let dial = crate::wcf::dial_address(&a.target).context("--target")?;
    let mut ok = true;
    let mut replayed = 0;
    for c in &cap.connections {
        if a.conn.is_some_and(|n| n != c.id) {
            continue;
        }
        let entries = transcript(c, &TranscriptOptions::default());
        let has_preamble = entries
            .iter()
            .any(|e| e.dir == Dir::C2S && e.record == "KnownEncoding");
        let mode = entries
            .iter()
            .find(|e| e.record == "Mode")
            .and_then(|e| e.byte);
        if !has_preamble || !matches!(mode, Some(1 | 2)) {
            println!(
                "connection {}: skipped (no complete duplex or singleton-unsized preamble)",
                c.id
            );
            continue;
        }
        if !entries
            .iter()
            .any(|e| e.dir == Dir::C2S && e.payload.is_some())
        {
            println!("connection {}: skipped (the client sent no message)", c.id);
            continue;
        }
        replayed += 1;
        match replay_one(c, &entries, &a.target, &dial, a.timeout.into()).await {
            Ok(o) if o.mismatches.is_empty() => println!(
                "connection {}: {} requests, {} answers, all match the capture",
                c.id, o.requests, o.answers
            ),
            Ok(o) => {
                ok = false;
                println!(
                    "connection {}: {} requests, {} answers, {} MISMATCHES",
                    c.id,
                    o.requests,
                    o.answers,
                    o.mismatches.len()
                );
                for m in &o.mismatches {
                    println!("{m}");
                }
            }
            Err(e) => {
                ok = false;
                println!("connection {}: FAILED: {e:#}", c.id);
            }
        }
    }
    if replayed == 0 {
        bail!("nothing to replay in {}", a.fixture.display());
    }
    Ok(ok)
}

/// Envelopes and framing records the service sent, decoded from `received`.
fn decode_answers(sent: &[u8], received: &[u8]) -> Vec<Entry> {
    let conn = Connection {
        id: 0,
        segments: vec![
            Segment {
                time: 0.0,
                dir: Dir::C2S,
                offset: 0,
                data: sent.to_vec(),
            },
            Segment {
                time: 0.0,
                dir: Dir::S2C,
                offset: 0,
                data: received.to_vec(),
            },
        ],
        ..Connection::default()
    };
    transcript(&conn, &TranscriptOptions::default())
        .into_iter()
        .filter(|e| e.dir == Dir::S2C && e.record != "Truncated")
        .collect()
}

async fn replay_one(
    c: &Connection,
    entries: &[Entry],
    target: &str,
    dial: &str,
    timeout: Duration,
) -> Result<Outcome> {
    let c2s = c.stream(Dir::C2S);
    // Captured answers and, for every client record, how many answer records had arrived
    // before the client's next record (the pacing of the original exchange).
    let expected: Vec<&Entry> = entries.iter().filter(|e| e.dir == Dir::S2C).collect();
    let mut steps: Vec<(&Entry, usize)> = Vec::new();
    let mut seen = 0;
    for e in entries {
        match e.dir {
            Dir::S2C => seen += 1,
            Dir::C2S => steps.push((e, 0)),
        }
        if let Some(last) = steps.last_mut() {
            last.1 = seen;
        }
    }
    // Answers seen before each step was sent = the count recorded at the previous step.
    let mut s = TcpStream::connect(dial)
        .await
        .with_context(|| format!("cannot connect to {dial}"))?;
    let _ = s.set_nodelay(true);
    let mut inbound = Inbound::new(InboundConfig::new(target));
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut requests = 0;
    let mut eof = false;
    for (i, (e, _)) in steps.iter().enumerate() {
        // wait until the answers the client had seen before this record have arrived
        let need = if i == 0 { 0 } else { steps[i - 1].1 };
        wait_for(
            &mut s,
            &sent,
            &mut received,
            &mut buf,
            need,
            timeout,
            &mut eof,
        )
        .await?;
        let bytes = &c2s[e.offset as usize..(e.offset + e.size) as usize];
        inbound
            .feed(bytes)
            .map_err(|err| anyhow::anyhow!("rewriting request at offset {}: {err}", e.offset))?;
        let out = inbound.take_output();
        if e.payload.is_some() {
            requests += 1;
        }
        if eof {
            break;
        }
        s.write_all(&out).await?;
        sent.extend_from_slice(&out);
    }
    let total = expected.len();
    wait_for(
        &mut s,
        &sent,
        &mut received,
        &mut buf,
        total,
        timeout,
        &mut eof,
    )
    .await?;
    let got = decode_answers(&sent, &received);
    let mut mismatches = Vec::new();
    for (k, exp) in expected.iter().enumerate() {
        let Some(g) = got.get(k) else {
            mismatches.push(format!(
                "  answer {k}: expected {} ({} bytes at capture offset {}), got nothing",
                exp.record, exp.size, exp.offset
            ));
            continue;
        };
        if g.record != exp.record {
            mismatches.push(format!(
                "  answer {k}: expected {}, got {} {}",
                exp.record,
                g.record,
                g.value.clone().unwrap_or_default()
            ));
            continue;
        }
        match (&exp.xml, &g.xml) {
            (Some(x), Some(y)) => {
                if let Some(d) = compare::diff(x, y) {
                    let action = y
                        .split("Action")
                        .nth(1)
                        .and_then(|r| r.split('>').nth(1))
                        .and_then(|r| r.split('<').next())
                        .unwrap_or("");
                    mismatches.push(format!("  answer {k} ({} {action}):\n{d}", g.record));
                }
            }
            (None, None) => {
                if exp.record == "Fault" && exp.value != g.value {
                    mismatches.push(format!(
                        "  answer {k}: fault {:?}, expected {:?}",
                        g.value, exp.value
                    ));
                }
            }
            _ => mismatches.push(format!(
                "  answer {k}: one side did not decode ({:?} / {:?})",
                exp.xml_error, g.xml_error
            )),
        }
    }
    for extra in got.iter().skip(expected.len()) {
        mismatches.push(format!(
            "  unexpected extra answer: {} {}",
            extra.record,
            extra.value.clone().unwrap_or_default()
        ));
    }
    Ok(Outcome {
        requests,
        answers: got.iter().filter(|e| e.payload.is_some()).count(),
        mismatches,
    })
}

/// Read from the service until `need` answer records decoded, the service closed, or the
/// timeout passed (then return; the comparison reports what is missing).
async fn wait_for(
    s: &mut TcpStream,
    sent: &[u8],
    received: &mut Vec<u8>,
    buf: &mut [u8],
    need: usize,
    timeout: Duration,
    eof: &mut bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !*eof && decode_answers(sent, received).len() < need {
        match tokio::time::timeout_at(deadline, s.read(buf)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => *eof = true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                tracing::info!("service connection ended: {e}");
                *eof = true;
            }
        }
    }
    Ok(())
}

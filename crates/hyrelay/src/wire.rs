//! `hyrelay nbfx …`, `hyrelay nmf …` and `hyrelay capture`: the WCF wire tools.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hyrelay_capture::jsonl;
use hyrelay_capture::transcript::{entry_json, render_text};
use hyrelay_capture::{Dir, TranscriptOptions};
use hyrelay_nbfx::{
    read_records, read_session_message, records_to_xml, xml_to_records, xml_to_session_message,
    Dictionaries, EncodeOptions, SessionDictionary, XmlOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// .NET Binary XML ([MC-NBFX] with the [MC-NBFS] static dictionary).
#[derive(clap::Subcommand)]
pub enum NbfxCmd {
    /// Binary XML on stdin → text XML on stdout, rendered the way .NET's reader prints it.
    ///
    /// Example: `hyrelay nbfx decode --session < msg.bin > msg.xml`
    Decode(NbfxDecodeArgs),
    /// Text XML on stdin → binary XML on stdout, choosing records the way .NET's writer
    /// does (static dictionary for SOAP/WS-Addressing names, typed records for typed text).
    ///
    /// Example: `hyrelay nbfx encode --session < msg.xml > msg.bin`
    Encode(NbfxEncodeArgs),
}

/// Arguments of `nbfx decode`.
#[derive(clap::Args)]
pub struct NbfxDecodeArgs {
    /// The input starts with an [MC-NBFSE] string table (a message of an
    /// `application/soap+msbinsession1` session, NMF encoding 0x08).
    #[arg(long)]
    session: bool,
    /// Indent the output for reading (changes whitespace-only text).
    #[arg(long)]
    indent: bool,
    /// Largest input accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    max_size: usize,
}

/// Arguments of `nbfx encode`.
#[derive(clap::Args)]
pub struct NbfxEncodeArgs {
    /// Write an [MC-NBFSE] string table first and put names that are not in the static
    /// dictionary into it (what a session's first message looks like).
    #[arg(long)]
    session: bool,
    /// Encode all text as strings (no typed records for numbers, booleans, GUIDs, ...).
    #[arg(long)]
    no_typed_text: bool,
}

/// .NET Message Framing ([MC-NMF], net.tcp).
#[derive(clap::Subcommand)]
pub enum NmfCmd {
    /// Decode the net.tcp sessions in a capture: pcap or pcapng (TCP is reassembled per
    /// connection, both directions) or hyrelay's JSON-lines format (`hyrelay capture`).
    ///
    /// Prints, per connection, every framing record with its direction, offset and size,
    /// and each envelope as indented XML with session-dictionary strings resolved. Exits
    /// with status 1 when some record could not be decoded (the transcript says where).
    ///
    /// Example: `tcpdump -i lo -w wcf.pcap port 8000` beside a WCF service, then
    /// `hyrelay nmf decode wcf.pcap`.
    Decode(NmfDecodeArgs),
}

/// Arguments of `nmf decode`.
#[derive(clap::Args)]
pub struct NmfDecodeArgs {
    /// Capture file (pcap, pcapng or hyrelay JSON lines); `-` reads stdin.
    file: PathBuf,
    /// JSON Lines instead of text: one object per record with conn, dir, offset, size,
    /// record, value and (envelopes) xml.
    #[arg(long)]
    json: bool,
    /// Only this connection.
    #[arg(long, value_name = "N")]
    conn: Option<u32>,
    /// List framing records only; do not decode envelopes.
    #[arg(long)]
    no_xml: bool,
    /// Largest envelope decoded, in bytes.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    max_message_size: usize,
}

/// Arguments of `capture`.
#[derive(clap::Args)]
pub struct CaptureArgs {
    /// Address to accept connections on, e.g. 127.0.0.1:9000.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Address to forward each connection to, e.g. 127.0.0.1:8000.
    #[arg(long, value_name = "ADDR")]
    target: String,
    /// Capture file to write (JSON lines; see fixtures/README.md). Appends if it exists.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Stop after this long (e.g. 30s); default: run until SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    duration: Option<humantime::Duration>,
}

fn read_stdin(max: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(max as u64 + 1)
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    if buf.len() > max {
        bail!("input is larger than --max-size {max} bytes");
    }
    Ok(buf)
}

pub fn nbfx(cmd: NbfxCmd) -> Result<()> {
    match cmd {
        NbfxCmd::Decode(a) => {
            let input = read_stdin(a.max_size)?;
            let limits = hyrelay_nbfx::Limits::buffered(a.max_size);
            let xml = if a.session {
                let mut session = SessionDictionary::new(a.max_size);
                let msg = read_session_message(&input, &mut session, &limits)
                    .context("invalid binary XML session message")?;
                records_to_xml(
                    &msg.records,
                    Dictionaries::with_session(&session),
                    &XmlOptions::default(),
                )?
            } else {
                let recs = read_records(&input, Dictionaries::static_only(), &limits)
                    .context("invalid binary XML")?;
                records_to_xml(&recs, Dictionaries::static_only(), &XmlOptions::default())?
            };
            let mut out = std::io::stdout().lock();
            if a.indent {
                out.write_all(hyrelay_capture::transcript::indent_xml(&xml).as_bytes())?;
            } else {
                out.write_all(xml.as_bytes())?;
            }
            out.write_all(b"\n")?;
            Ok(())
        }
        NbfxCmd::Encode(a) => {
            let input = read_stdin(64 << 20)?;
            let text = String::from_utf8(input).context("input is not UTF-8 text")?;
            let opts = EncodeOptions {
                infer_types: !a.no_typed_text,
                ..EncodeOptions::default()
            };
            let mut out = Vec::new();
            if a.session {
                let mut session = SessionDictionary::new(64 << 20);
                let msg = xml_to_session_message(&text, &mut session, &opts)
                    .context("cannot encode the XML")?;
                hyrelay_nbfx::write_session_message(&msg, &mut out)?;
            } else {
                let recs = xml_to_records(&text, None, &opts).context("cannot encode the XML")?;
                hyrelay_nbfx::write_records(&recs, &mut out)?;
            }
            std::io::stdout().lock().write_all(&out)?;
            Ok(())
        }
    }
}

pub fn nmf(cmd: NmfCmd) -> Result<bool> {
    let NmfCmd::Decode(a) = cmd;
    let limits = hyrelay_capture::Limits::default();
    let data = if a.file.as_os_str() == "-" {
        read_stdin(limits.max_file_bytes)?
    } else {
        std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let cap = hyrelay_capture::parse(&data, &limits)
        .with_context(|| format!("{} is not a readable capture", a.file.display()))?;
    let opts = TranscriptOptions {
        max_message_size: a.max_message_size,
        decode_envelopes: !a.no_xml,
        ..TranscriptOptions::default()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut clean = true;
    let mut shown = 0;
    for c in &cap.connections {
        if a.conn.is_some_and(|n| n != c.id) {
            continue;
        }
        shown += 1;
        let entries = hyrelay_capture::transcript(c, &opts);
        if entries
            .iter()
            .any(|e| matches!(e.record, "Error" | "Gap" | "Truncated") || e.xml_error.is_some())
        {
            clean = false;
        }
        if a.json {
            for e in &entries {
                writeln!(out, "{}", entry_json(e))?;
            }
        } else {
            writeln!(out, "{}", render_text(c, &entries))?;
        }
    }
    out.flush()?;
    if shown == 0 {
        match a.conn {
            Some(n) => bail!("the capture has no connection {n}"),
            None => eprintln!("note: the capture holds no TCP connection"),
        }
    }
    if let Some(at) = cap.cut_short_at {
        eprintln!(
            "note: the capture ends inside a record at byte {at} (cut short while being written?); everything before it is decoded"
        );
    }
    if cap.skipped_packets > 0 {
        eprintln!(
            "note: {} packets skipped (not TCP over IPv4/IPv6, or cut by the snap length)",
            cap.skipped_packets
        );
    }
    if !clean {
        eprintln!("some records could not be decoded; see Error/Gap/Truncated lines above");
    }
    Ok(clean)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A recording TCP proxy.
pub async fn capture(a: CaptureArgs) -> Result<()> {
    let listener = TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .with_context(|| format!("cannot open {}", a.out.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let out_name = a.out.display().to_string();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(file);
        while let Some(line) = rx.blocking_recv() {
            w.write_all(line.as_bytes())?;
            while let Ok(more) = rx.try_recv() {
                w.write_all(more.as_bytes())?;
            }
            w.flush()?;
        }
        w.flush()
    });
    eprintln!(
        "hyrelay capture: {} -> {}, writing {out_name}",
        listener.local_addr()?,
        a.target
    );
    // Until --duration passes, or SIGINT / SIGTERM (a script's background job has SIGINT
    // ignored, so SIGTERM matters).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    let duration = a.duration;
    let stop = async move {
        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::pin!(stop);
    let mut conn_id = 0u32;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            acc = listener.accept() => {
                let (inbound, peer) = match acc {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
                };
                conn_id += 1;
                let id = conn_id;
                let tx = tx.clone();
                let target = a.target.clone();
                tasks.spawn(async move {
                    let _ = tx.send(jsonl::open_line(now(), id, &peer.to_string(), &target));
                    let err = proxy_one(id, inbound, &target, &tx).await.err();
                    if let Some(e) = &err {
                        tracing::info!("connection {id} from {peer}: {e:#}");
                    }
                    let _ = tx.send(jsonl::close_line(now(), id, err.map(|e| format!("{e:#}")).as_deref()));
                });
            }
        }
    }
    tasks.shutdown().await;
    drop(tx);
    writer.await??;
    eprintln!("hyrelay capture: {conn_id} connections recorded in {out_name}");
    Ok(())
}

async fn proxy_one(
    id: u32,
    inbound: TcpStream,
    target: &str,
    tx: &mpsc::UnboundedSender<String>,
) -> Result<()> {
    let outbound = TcpStream::connect(target)
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let up = pump(id, Dir::C2S, ir, ow, tx);
    let down = pump(id, Dir::S2C, or, iw, tx);
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn pump(
    id: u32,
    dir: Dir,
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    tx: &mpsc::UnboundedSender<String>,
) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .await
            .with_context(|| format!("{} read", dir.as_str()))?;
        if n == 0 {
            let _ = tx.send(jsonl::eof_line(now(), id, dir, off));
            let _ = w.shutdown().await;
            return Ok(());
        }
        let _ = tx.send(jsonl::data_line(now(), id, dir, off, &buf[..n]));
        off += n as u64;
        w.write_all(&buf[..n])
            .await
            .with_context(|| format!("{} write", dir.as_str()))?;
    }
}

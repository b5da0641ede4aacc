//! WCF codec throughput on the largest captured envelope, with the PyPI `wcf` package
//! (python-wcfbin) timed on the very same bytes in the same run.
//!
//! `cargo run --release -p hyrelay-bench --bin hyrelay-codec-bench`

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hyrelay_capture::{parse, transcript, Dir, Limits, TranscriptOptions};
use hyrelay_nbfx::{
    read_session_message, records_to_xml, write_session_message, xml_to_records, Dictionaries,
    EncodeOptions, EventReader, SessionDictionary, SessionMessage, XmlOptions,
};

#[derive(Parser)]
struct Args {
    /// Capture whose largest binary-session envelope is measured.
    #[arg(long, default_value = "fixtures/captures/tcp-large/capture.jsonl")]
    capture: PathBuf,
    /// Python with the `wcf` package (tools/peers/oracles/setup.sh makes it).
    #[arg(long, default_value = "tools/peers/oracles/.venv/bin/python")]
    python: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Only run the decode measurement (for profiling).
    #[arg(long)]
    decode_only: bool,
}

fn rate<F: FnMut()>(bytes: usize, secs: f64, mut f: F) -> f64 {
    f();
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        f();
        n += 1;
    }
    (bytes as f64 * n as f64) / start.elapsed().as_secs_f64() / 1e6
}

const PY: &str = r#"
import io, sys, time, logging
logging.getLogger("wcf").setLevel(logging.ERROR)
from wcf.records.base import Record
from wcf.dictionary import dictionary
import wcf.records.elements, wcf.records.attributes, wcf.records.text
data = open(sys.argv[1], 'rb').read(); secs = float(sys.argv[2])
def mb31(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
        if not c & 0x80: return v, i
size, i = mb31(data, 0); end = i + size; k = 0
while i < end:
    n, i = mb31(data, i); dictionary[2 * k + 1] = data[i:i + n].decode('utf-8'); i += n; k += 1
doc = data[end:]
Record.parse(io.BytesIO(doc))
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < secs:
    Record.parse(io.BytesIO(doc)); n += 1
print(len(data) * n / (time.perf_counter() - t0) / 1e6)
"#;

fn main() -> Result<()> {
    let a = Args::parse();
    let cap = parse(
        &std::fs::read(&a.capture).with_context(|| format!("reading {}", a.capture.display()))?,
        &Limits::default(),
    )?;
    // The largest envelope, made self-contained: one string table with every session
    // string its direction had defined by then, then its document.
    let mut best: Option<(Vec<u8>, Vec<u8>)> = None; // (standalone payload, framing stream)
    for c in &cap.connections {
        let entries = transcript(c, &TranscriptOptions::default());
        for dir in [Dir::C2S, Dir::S2C] {
            let mut strings: Vec<String> = Vec::new();
            for e in entries.iter().filter(|e| e.dir == dir) {
                let Some(p) = &e.payload else { continue };
                strings.extend(e.strings.iter().cloned());
                if best.as_ref().is_none_or(|b| p.len() > b.0.len()) {
                    let mut s = SessionDictionary::new(64 << 20);
                    let mut table = Vec::new();
                    table.extend(hyrelay_nbfx::encode_table(
                        strings.iter().map(String::as_str),
                    ));
                    let _ = s.read_table(&table);
                    // the document is the payload after its own table
                    let mut tmp = SessionDictionary::new(64 << 20);
                    let (doc_at, _) = tmp.read_table(p)?;
                    let mut standalone = table;
                    standalone.extend_from_slice(&p[doc_at..]);
                    best = Some((standalone, c.stream(dir)));
                }
            }
        }
    }
    let Some((payload, stream)) = best else {
        bail!("no envelope in {}", a.capture.display())
    };
    let limits = hyrelay_nbfx::Limits::buffered(64 << 20);
    let mut sess = SessionDictionary::new(64 << 20);
    let msg =
        read_session_message(&payload, &mut sess, &limits).context("decoding the envelope")?;
    let xml = records_to_xml(
        &msg.records,
        Dictionaries::with_session(&sess),
        &XmlOptions::default(),
    )?;
    println!(
        "input: largest envelope of {} — {} bytes binary, {} session strings, {} records, {} bytes as XML",
        a.capture.display(),
        payload.len(),
        msg.table.len(),
        msg.records.len(),
        xml.len()
    );
    let n = payload.len();
    let events = rate(n, a.seconds, || {
        let mut s = SessionDictionary::new(64 << 20);
        let (doc, _) = s.read_table(&payload).unwrap();
        let mut r =
            EventReader::new(&payload[doc..], Dictionaries::with_session(&s), &limits).unwrap();
        r.visit(|ev| {
            std::hint::black_box(ev);
        })
        .unwrap();
    });
    let decode = rate(n, a.seconds, || {
        let mut s = SessionDictionary::new(64 << 20);
        std::hint::black_box(read_session_message(&payload, &mut s, &limits).unwrap());
    });
    if a.decode_only {
        println!("decode to events: {events:.0} MB/s; to records: {decode:.0} MB/s");
        return Ok(());
    }
    let to_xml = rate(n, a.seconds, || {
        let mut s = SessionDictionary::new(64 << 20);
        let m = read_session_message(&payload, &mut s, &limits).unwrap();
        std::hint::black_box(
            records_to_xml(
                &m.records,
                Dictionaries::with_session(&s),
                &XmlOptions::default(),
            )
            .unwrap(),
        );
    });
    let encode = rate(n, a.seconds, || {
        let mut out = Vec::with_capacity(n);
        write_session_message(&msg, &mut out).unwrap();
        std::hint::black_box(out);
    });
    let canonical = rate(n, a.seconds, || {
        let mut s = SessionDictionary::new(64 << 20);
        let recs = xml_to_records(&xml, Some(&mut s), &EncodeOptions::default()).unwrap();
        let m = SessionMessage {
            table: s.take_new_strings(),
            records: recs,
        };
        let mut out = Vec::with_capacity(n);
        write_session_message(&m, &mut out).unwrap();
        std::hint::black_box(out);
    });
    let framing = rate(stream.len(), a.seconds, || {
        let mut d = hyrelay_nmf::Decoder::new(hyrelay_nmf::Limits {
            max_message_size: 64 << 20,
            ..Default::default()
        });
        d.feed(&stream);
        while let Ok(Some(r)) = d.next_record() {
            std::hint::black_box(r);
        }
    });
    let oracle = if a.python.exists() {
        let tmp =
            std::env::temp_dir().join(format!("hyrelay-codec-bench-{}.bin", std::process::id()));
        std::fs::write(&tmp, &payload)?;
        let out = std::process::Command::new(&a.python)
            .arg("-c")
            .arg(PY)
            .arg(&tmp)
            .arg(a.seconds.max(3.0).to_string())
            .output()?;
        let _ = std::fs::remove_file(&tmp);
        if !out.status.success() {
            bail!(
                "wcf oracle failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()?)
    } else {
        eprintln!(
            "note: {} missing (run tools/peers/oracles/setup.sh); oracle not timed",
            a.python.display()
        );
        None
    };
    let mut o = std::io::stdout().lock();
    writeln!(o, "| measurement | MB/s |")?;
    writeln!(o, "|---|---:|")?;
    writeln!(
        o,
        "| hyrelay-nbfx decode to events (EventReader, borrowed) | {events:.0} |"
    )?;
    writeln!(o, "| hyrelay-nbfx decode to owned records | {decode:.0} |")?;
    writeln!(o, "| hyrelay-nbfx decode to text XML | {to_xml:.0} |")?;
    writeln!(o, "| hyrelay-nbfx lossless encode | {encode:.0} |")?;
    writeln!(
        o,
        "| hyrelay-nbfx canonical encode from text XML (MB of binary out) | {canonical:.0} |"
    )?;
    writeln!(
        o,
        "| hyrelay-nmf framing decode ({} byte stream) | {framing:.0} |",
        stream.len()
    )?;
    if let Some(w) = oracle {
        writeln!(o, "| PyPI wcf 0.5.5 Record.parse (same bytes) | {w:.2} |")?;
        writeln!(
            o,
            "\ndecode ratio hyrelay / wcf oracle: {:.0}x to events, {:.0}x to owned records",
            events / w,
            decode / w
        )?;
    }
    Ok(())
}

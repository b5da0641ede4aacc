//! NMF + binary SOAP transcripts of captured connections.

use hyrelay_nbfx::{
    read_records, read_session_message, records_to_xml, Dictionaries, SessionDictionary, XmlOptions,
};
use hyrelay_nmf::{known_encoding_content_type, Decoder, Mode, Record};

use crate::{Connection, Dir};

/// Options for [`transcript`].
#[derive(Debug, Clone, Copy)]
pub struct TranscriptOptions {
    /// Largest envelope decoded (framing limit). Default 64 MiB.
    pub max_message_size: usize,
    /// Largest session dictionary per direction, in bytes. Default 2 MiB.
    pub max_session_dictionary: usize,
    /// Decode envelopes to XML (otherwise only framing records are listed). Default true.
    pub decode_envelopes: bool,
}

impl Default for TranscriptOptions {
    fn default() -> Self {
        TranscriptOptions {
            max_message_size: 64 << 20,
            max_session_dictionary: 2 << 20,
            decode_envelopes: true,
        }
    }
}

/// One transcript line: a framing record (or an error, gap or opaque run) of one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Connection number.
    pub conn: u32,
    /// Direction.
    pub dir: Dir,
    /// Offset of the record's first byte in its direction's stream.
    pub offset: u64,
    /// Bytes the record occupies on the wire.
    pub size: u64,
    /// Capture time of the record's first byte.
    pub time: f64,
    /// Record name: `Version`, `Mode`, `Via`, `KnownEncoding`, `ExtensibleEncoding`,
    /// `PreambleEnd`, `PreambleAck`, `SizedEnvelope`, `UnsizedEnvelope`, `End`, `Fault`,
    /// `UpgradeRequest`, `UpgradeResponse`; `Opaque` (bytes after an upgrade), `Gap`
    /// (bytes the capture missed), `Error` (undecodable input), `Truncated` (the stream
    /// ended inside a record).
    pub record: &'static str,
    /// The record's value: Via URI, fault URI, upgrade protocol, encoding content type,
    /// mode name, version `1.0`; for errors the message.
    pub value: Option<String>,
    /// KnownEncoding / Mode byte.
    pub byte: Option<u8>,
    /// Envelope payload (after the framing size, chunks joined for unsized envelopes).
    pub payload: Option<Vec<u8>>,
    /// Strings the envelope's [MC-NBFSE] table added to the session dictionary.
    pub strings: Vec<String>,
    /// The envelope as text XML, when it decoded.
    pub xml: Option<String>,
    /// Why the envelope did not decode (framing went on).
    pub xml_error: Option<String>,
}

impl Entry {
    fn new(conn: &Connection, dir: Dir, offset: u64, size: u64, record: &'static str) -> Self {
        Entry {
            conn: conn.id,
            dir,
            offset,
            size,
            time: conn.time_at(dir, offset),
            record,
            value: None,
            byte: None,
            payload: None,
            strings: Vec::new(),
            xml: None,
            xml_error: None,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Enc {
    Unknown,
    Session,
    Binary,
    Text,
    Other,
}

fn enc_of(byte: u8) -> Enc {
    match byte {
        0x08 => Enc::Session,
        0x07 => Enc::Binary,
        0x00..=0x05 => Enc::Text,
        _ => Enc::Other,
    }
}

/// Decode both directions of `conn` and return the records merged in capture-time order
/// (client first on ties).
pub fn transcript(conn: &Connection, opts: &TranscriptOptions) -> Vec<Entry> {
    let (mut c2s, enc) = direction(conn, Dir::C2S, Enc::Unknown, opts);
    let (s2c, _) = direction(conn, Dir::S2C, enc, opts);
    c2s.extend(s2c);
    c2s.sort_by(|a, b| {
        a.time
            .partial_cmp(&b.time)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.dir.cmp(&b.dir))
            .then(a.offset.cmp(&b.offset))
    });
    c2s
}

fn direction(
    conn: &Connection,
    dir: Dir,
    mut enc: Enc,
    opts: &TranscriptOptions,
) -> (Vec<Entry>, Enc) {
    let mut out = Vec::new();
    let mut data = conn.stream(dir);
    // Decode only up to the first gap: after it, record boundaries are unknown.
    if let Some(&(_, off, len)) = conn.gaps.iter().find(|g| g.0 == dir) {
        data.truncate(off as usize);
        let mut e = Entry::new(conn, dir, off, len, "Gap");
        e.value = Some(format!("{len} bytes missing from the capture"));
        out.push(e);
    }
    let limits = hyrelay_nmf::Limits {
        max_message_size: opts.max_message_size,
        ..hyrelay_nmf::Limits::default()
    };
    let nbfx_limits = hyrelay_nbfx::Limits::buffered(opts.max_message_size);
    let mut session = SessionDictionary::new(opts.max_session_dictionary);
    let mut dec = Decoder::new(limits);
    dec.feed(&data);
    let mut start = 0u64;
    let mut pending_unsized: Option<(u64, Vec<u8>)> = None;
    loop {
        let rec = match dec.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                let mut en = Entry::new(conn, dir, start, data.len() as u64 - start, "Error");
                en.value = Some(e.to_string());
                out.push(en);
                return (out, enc);
            }
        };
        let end = dec.offset();
        let size = end - start;
        let mut e = Entry::new(conn, dir, start, size, "");
        match rec {
            Record::Version { major, minor } => {
                e.record = "Version";
                e.value = Some(format!("{major}.{minor}"));
            }
            Record::Mode(b) => {
                e.record = "Mode";
                e.byte = Some(b);
                e.value = Some(match Mode::from_byte(b) {
                    Some(m) => format!("{m:?}"),
                    None => format!("unknown {b:#04x}"),
                });
            }
            Record::Via(v) => {
                e.record = "Via";
                e.value = Some(v);
            }
            Record::KnownEncoding(b) => {
                e.record = "KnownEncoding";
                e.byte = Some(b);
                e.value = Some(
                    known_encoding_content_type(b)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("unknown {b:#04x}")),
                );
                if dir == Dir::C2S {
                    enc = enc_of(b);
                }
            }
            Record::ExtensibleEncoding(s) => {
                e.record = "ExtensibleEncoding";
                e.value = Some(s);
                enc = Enc::Other;
            }
            Record::PreambleEnd => e.record = "PreambleEnd",
            Record::PreambleAck => e.record = "PreambleAck",
            Record::End => e.record = "End",
            Record::Fault(f) => {
                e.record = "Fault";
                e.value = Some(f);
            }
            Record::UpgradeRequest(p) => {
                e.record = "UpgradeRequest";
                e.value = Some(p);
            }
            Record::UpgradeResponse => e.record = "UpgradeResponse",
            Record::SizedEnvelope(p) => {
                e.record = "SizedEnvelope";
                envelope(&mut e, p, enc, &mut session, &nbfx_limits, opts);
            }
            Record::UnsizedEnvelopeStart => {
                pending_unsized = Some((start, Vec::new()));
                start = end;
                continue;
            }
            Record::UnsizedChunk(c) => {
                if let Some((_, buf)) = pending_unsized.as_mut() {
                    buf.extend_from_slice(&c);
                }
                start = end;
                continue;
            }
            Record::UnsizedEnvelopeEnd => {
                let (s0, buf) = pending_unsized.take().unwrap_or((start, Vec::new()));
                e = Entry::new(conn, dir, s0, end - s0, "UnsizedEnvelope");
                envelope(&mut e, buf, enc, &mut session, &nbfx_limits, opts);
            }
        }
        out.push(e);
        start = end;
    }
    if dec.is_opaque() {
        let rest = data.len() as u64 - start;
        if rest > 0 {
            let mut e = Entry::new(conn, dir, start, rest, "Opaque");
            e.value = Some("upgraded stream (TLS / NegotiateStream), not decoded".into());
            out.push(e);
        }
    } else if start < data.len() as u64 {
        let mut e = Entry::new(conn, dir, start, data.len() as u64 - start, "Truncated");
        e.value = Some(match &pending_unsized {
            Some((s0, buf)) => format!(
                "stream ended inside the unsized envelope that began at offset {s0} ({} bytes so far)",
                buf.len()
            ),
            None => "stream ended inside a record".into(),
        });
        out.push(e);
    }
    (out, enc)
}

fn envelope(
    e: &mut Entry,
    payload: Vec<u8>,
    enc: Enc,
    session: &mut SessionDictionary,
    limits: &hyrelay_nbfx::Limits,
    opts: &TranscriptOptions,
) {
    if opts.decode_envelopes {
        let xml = match enc {
            Enc::Session => read_session_message(&payload, session, limits).and_then(|m| {
                e.strings = m.table;
                records_to_xml(
                    &m.records,
                    Dictionaries::with_session(session),
                    &XmlOptions::default(),
                )
            }),
            Enc::Binary => {
                read_records(&payload, Dictionaries::static_only(), limits).and_then(|r| {
                    records_to_xml(&r, Dictionaries::static_only(), &XmlOptions::default())
                })
            }
            Enc::Text => match String::from_utf8(payload.clone()) {
                Ok(s) => Ok(s),
                Err(_) => {
                    e.xml_error = Some("text encoding that is not UTF-8 is shown as bytes".into());
                    e.payload = Some(payload);
                    return;
                }
            },
            Enc::Unknown | Enc::Other => {
                e.xml_error = Some(
                    "envelope encoding not decoded (no known binary encoding announced)".into(),
                );
                e.payload = Some(payload);
                return;
            }
        };
        match xml {
            Ok(x) => e.xml = Some(x),
            Err(err) => e.xml_error = Some(err.to_string()),
        }
    }
    e.payload = Some(payload);
}

/// One JSON object (no newline) for an entry, as `hyrelay nmf decode --json` prints it.
pub fn entry_json(e: &Entry) -> String {
    let mut m = serde_json::Map::new();
    m.insert("conn".into(), e.conn.into());
    m.insert("dir".into(), e.dir.as_str().into());
    m.insert("offset".into(), e.offset.into());
    m.insert("size".into(), e.size.into());
    m.insert("t".into(), serde_json::Value::from(e.time));
    m.insert("record".into(), e.record.into());
    match e.record {
        "KnownEncoding" | "Mode" => {
            if let Some(b) = e.byte {
                m.insert("value".into(), b.into());
            }
            if let Some(v) = &e.value {
                let k = if e.record == "Mode" {
                    "mode"
                } else {
                    "content_type"
                };
                m.insert(k.into(), v.clone().into());
            }
        }
        _ => {
            if let Some(v) = &e.value {
                let k = if matches!(e.record, "Error" | "Truncated" | "Gap" | "Opaque") {
                    "error"
                } else {
                    "value"
                };
                m.insert(k.into(), v.clone().into());
            }
        }
    }
    if let Some(p) = &e.payload {
        m.insert("payload_size".into(), p.len().into());
    }
    if !e.strings.is_empty() {
        m.insert("strings".into(), e.strings.clone().into());
    }
    if let Some(x) = &e.xml {
        m.insert("xml".into(), x.clone().into());
    }
    if let Some(x) = &e.xml_error {
        m.insert("xml_error".into(), x.clone().into());
    }
    serde_json::Value::Object(m).to_string()
}

/// A readable transcript of one connection: a header, then one line per record with
/// direction, offset and size, and each envelope as indented XML.
pub fn render_text(conn: &Connection, entries: &[Entry]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== connection {}  {} -> {}  (c2s {} bytes, s2c {} bytes{}{})",
        conn.id,
        if conn.client.is_empty() {
            "?"
        } else {
            &conn.client
        },
        if conn.server.is_empty() {
            "?"
        } else {
            &conn.server
        },
        conn.len(Dir::C2S),
        conn.len(Dir::S2C),
        if conn.reset { ", reset" } else { "" },
        if conn.gaps.is_empty() {
            ""
        } else {
            ", with gaps"
        },
    );
    let t0 = entries.first().map(|e| e.time).unwrap_or(0.0);
    for e in entries {
        let arrow = match e.dir {
            Dir::C2S => "c2s >",
            Dir::S2C => "s2c <",
        };
        let mut line = format!(
            "{arrow} +{:>9.3}ms @{:<8} {:>7}B  {}",
            (e.time - t0) * 1000.0,
            e.offset,
            e.size,
            e.record
        );
        if let Some(v) = &e.value {
            let _ = write!(line, " {v}");
        }
        if let Some(p) = &e.payload {
            let _ = write!(line, " ({} byte payload", p.len());
            if !e.strings.is_empty() {
                let _ = write!(line, ", +{} session strings", e.strings.len());
            }
            line.push(')');
        }
        let _ = writeln!(s, "{line}");
        if !e.strings.is_empty() {
            let _ = writeln!(s, "      session strings: {:?}", e.strings);
        }
        if let Some(x) = &e.xml {
            for l in indent_xml(x).lines() {
                let _ = writeln!(s, "      {l}");
            }
        }
        if let Some(err) = &e.xml_error {
            let _ = writeln!(s, "      (envelope not decoded: {err})");
        }
    }
    s
}

/// Indent compact XML for reading (text content trimmed; the JSON form keeps it exact).
pub fn indent_xml(xml: &str) -> String {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    r.config_mut().trim_text(true);
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match r.read_event() {
            Ok(Event::Eof) => break,
            Ok(ev) => {
                if w.write_event(ev).is_err() {
                    return xml.to_owned();
                }
            }
            Err(_) => return xml.to_owned(),
        }
    }
    String::from_utf8(w.into_inner()).unwrap_or_else(|_| xml.to_owned())
}

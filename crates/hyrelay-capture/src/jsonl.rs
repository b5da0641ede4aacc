//! hyrelay's capture format: JSON lines, one event per line (see `fixtures/README.md`).
//!
//! ```text
//! {"t":1795423409.009444,"conn":1,"ev":"open","peer":"127.0.0.1:60922","target":"127.0.0.1:8000"}
//! {"t":...,"conn":1,"ev":"data","dir":"c2s","off":0,"len":47,"hex":"0001000102..."}
//! {"t":...,"conn":1,"ev":"eof","dir":"c2s","total":996}
//! {"t":...,"conn":1,"ev":"close"}
//! ```
//!
//! `off` is the offset within that connection and direction, so concatenating `hex` per
//! `(conn, dir)` in file order gives the exact stream. The format is the one the Mono
//! harness's recording proxy writes, so its captures read unchanged.

use std::collections::HashMap;

use serde::Deserialize;

use crate::{Capture, Connection, Dir, Error, Format, Limits, Segment};

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    t: f64,
    conn: u32,
    ev: String,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    off: Option<u64>,
    #[serde(default)]
    len: Option<u64>,
    #[serde(default)]
    hex: Option<String>,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn bad(offset: usize, message: impl Into<String>) -> Error {
    Error::Malformed {
        format: "JSON lines",
        offset: offset as u64,
        message: message.into(),
    }
}

/// Parse JSON-lines capture bytes. Offsets must be contiguous per direction (a capture
/// that lost bytes is refused, not silently shortened).
pub fn parse(data: &[u8], limits: &Limits) -> Result<Capture, Error> {
    let mut conns: Vec<Connection> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    let mut next_off: HashMap<(u32, Dir), u64> = HashMap::new();
    let mut pos = 0usize;
    for raw in data.split(|&b| b == b'\n') {
        let line_start = pos;
        pos += raw.len() + 1;
        if raw.len() > limits.max_record_bytes {
            return Err(Error::Limit {
                what: "JSON line length",
                max: limits.max_record_bytes as u64,
                offset: line_start as u64,
            });
        }
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let line: Line =
            serde_json::from_slice(raw).map_err(|e| bad(line_start, format!("{e}")))?;
        let slot = match index.get(&line.conn) {
            Some(&i) => i,
            None => {
                if conns.len() >= limits.max_connections {
                    return Err(Error::Limit {
                        what: "number of connections",
                        max: limits.max_connections as u64,
                        offset: line_start as u64,
                    });
                }
                conns.push(Connection {
                    id: line.conn,
                    ..Connection::default()
                });
                index.insert(line.conn, conns.len() - 1);
                conns.len() - 1
            }
        };
        let c = &mut conns[slot];
        let dir = match line.dir.as_deref() {
            None => None,
            Some("c2s") => Some(Dir::C2S),
            Some("s2c") => Some(Dir::S2C),
            Some(other) => {
                return Err(bad(
                    line_start,
                    format!("dir must be \"c2s\" or \"s2c\", not {other:?}"),
                ))
            }
        };
        match line.ev.as_str() {
            "open" => {
                c.client = line.peer.unwrap_or_default();
                c.server = line.target.unwrap_or_default();
            }
            "data" => {
                let dir = dir.ok_or_else(|| bad(line_start, "data line without dir"))?;
                let hexs = line
                    .hex
                    .ok_or_else(|| bad(line_start, "data line without hex"))?;
                let bytes = hex::decode(hexs.as_bytes())
                    .map_err(|e| bad(line_start, format!("hex: {e}")))?;
                if let Some(len) = line.len {
                    if len != bytes.len() as u64 {
                        return Err(bad(
                            line_start,
                            format!("len {len} but hex holds {} bytes", bytes.len()),
                        ));
                    }
                }
                let expect = next_off.entry((line.conn, dir)).or_insert(0);
                let off = line.off.unwrap_or(*expect);
                if off != *expect {
                    return Err(bad(
                        line_start,
                        format!(
                            "connection {} {}: offset {off} but {} bytes came before (bytes lost or reordered)",
                            line.conn,
                            dir.as_str(),
                            *expect
                        ),
                    ));
                }
                *expect += bytes.len() as u64;
                if *expect > limits.max_stream_bytes {
                    return Err(Error::Limit {
                        what: "bytes in one direction of a connection",
                        max: limits.max_stream_bytes,
                        offset: line_start as u64,
                    });
                }
                if !bytes.is_empty() {
                    c.segments.push(Segment {
                        time: line.t,
                        dir,
                        offset: off,
                        data: bytes,
                    });
                }
            }
            "eof" => {
                let dir = dir.ok_or_else(|| bad(line_start, "eof line without dir"))?;
                c.eof[dir as usize] = true;
            }
            "close" => {
                if line.error.is_some() {
                    c.reset = true;
                }
            }
            "reset" => c.reset = true,
            other => return Err(bad(line_start, format!("unknown event {other:?}"))),
        }
    }
    Ok(Capture {
        format: Format::JsonLines,
        connections: conns,
        skipped_packets: 0,
        cut_short_at: None,
    })
}

fn esc(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The `open` line of a connection.
pub fn open_line(t: f64, conn: u32, peer: &str, target: &str) -> String {
    format!(
        "{{\"t\":{t:.6},\"conn\":{conn},\"ev\":\"open\",\"peer\":{},\"target\":{}}}\n",
        esc(peer),
        esc(target)
    )
}

/// A `data` line.
pub fn data_line(t: f64, conn: u32, dir: Dir, off: u64, data: &[u8]) -> String {
    format!(
        "{{\"t\":{t:.6},\"conn\":{conn},\"ev\":\"data\",\"dir\":\"{}\",\"off\":{off},\"len\":{},\"hex\":\"{}\"}}\n",
        dir.as_str(),
        data.len(),
        hex::encode(data)
    )
}

/// An `eof` line (the side half-closed after `total` bytes).
pub fn eof_line(t: f64, conn: u32, dir: Dir, total: u64) -> String {
    format!(
        "{{\"t\":{t:.6},\"conn\":{conn},\"ev\":\"eof\",\"dir\":\"{}\",\"total\":{total}}}\n",
        dir.as_str()
    )
}

/// The `close` line; `error` when the connection ended abnormally (reset, I/O error).
pub fn close_line(t: f64, conn: u32, error: Option<&str>) -> String {
    match error {
        None => format!("{{\"t\":{t:.6},\"conn\":{conn},\"ev\":\"close\"}}\n"),
        Some(e) => format!(
            "{{\"t\":{t:.6},\"conn\":{conn},\"ev\":\"close\",\"error\":{}}}\n",
            esc(e)
        ),
    }
}

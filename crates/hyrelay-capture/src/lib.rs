//! Sans-IO readers for captured TCP traffic and transcripts of the WCF sessions in it.
//!
//! * [`parse`] reads a capture file's bytes — **pcap**, **pcapng** (TCP reassembled per
//!   connection, both directions) or hyrelay's own **JSON-lines** format (what
//!   `hyrelay capture` writes; see `fixtures/README.md`) — into [`Capture`]: connections,
//!   each with the bytes of both directions in arrival order.
//! * [`transcript`] decodes each connection as .NET Message Framing ([MC-NMF]) with its
//!   envelopes as binary SOAP ([MC-NBFX]/[MC-NBFS]/[MC-NBFSE]) and returns [`Entry`]s with
//!   offsets, sizes and the envelope as XML, session-dictionary strings resolved.
//! * [`jsonl`] formats the lines of the JSON-lines format.
//!
//! No I/O: every function takes bytes and returns values. Every parser has [`Limits`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod jsonl;
mod pcap;
mod reassembly;
pub mod transcript;

pub use transcript::{transcript, Entry, TranscriptOptions};

/// Direction of bytes within a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// From the side that opened the connection.
    C2S,
    /// From the side that accepted it.
    S2C,
}

impl Dir {
    /// `"c2s"` or `"s2c"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2S => "c2s",
            Dir::S2C => "s2c",
        }
    }
    /// The other direction.
    pub fn other(self) -> Dir {
        match self {
            Dir::C2S => Dir::S2C,
            Dir::S2C => Dir::C2S,
        }
    }
}

/// A run of bytes one side sent, as one read (JSON lines) or one TCP segment (pcap).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Capture time, seconds since the Unix epoch.
    pub time: f64,
    /// Direction.
    pub dir: Dir,
    /// Offset of the first byte within this direction's stream.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One TCP connection of a capture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection {
    /// Number within the capture (1, 2, ...; from the file for JSON lines).
    pub id: u32,
    /// The connecting side (`ip:port`), when known.
    pub client: String,
    /// The accepting side (`ip:port`), when known.
    pub server: String,
    /// Data in arrival order; per direction the offsets are contiguous.
    pub segments: Vec<Segment>,
    /// Orderly end (FIN / eof) seen per direction: `[c2s, s2c]`.
    pub eof: [bool; 2],
    /// A reset was seen.
    pub reset: bool,
    /// Bytes the capture missed (never retransmitted before the end): `(dir, offset, len)`.
    /// The stream after a gap continues at the later offset.
    pub gaps: Vec<(Dir, u64, u64)>,
}

impl Connection {
    /// All bytes of one direction.
    pub fn stream(&self, dir: Dir) -> Vec<u8> {
        let mut out = Vec::new();
        for s in self.segments.iter().filter(|s| s.dir == dir) {
            out.extend_from_slice(&s.data);
        }
        out
    }
    /// Total bytes of one direction.
    pub fn len(&self, dir: Dir) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.dir == dir)
            .map(|s| s.data.len() as u64)
            .sum()
    }
    /// The capture time of the byte at `offset` in `dir` (the segment that holds it).
    pub fn time_at(&self, dir: Dir, offset: u64) -> f64 {
        let mut last = self.segments.first().map(|s| s.time).unwrap_or(0.0);
        for s in self.segments.iter().filter(|s| s.dir == dir) {
            if s.offset > offset {
                break;
            }
            last = s.time;
        }
        last
    }
}

/// A parsed capture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capture {
    /// Which format the bytes were in.
    pub format: Format,
    /// Connections in the order they opened.
    pub connections: Vec<Connection>,
    /// Packets that were skipped (not IPv4/IPv6 TCP, or truncated by the snap length).
    pub skipped_packets: u64,
    /// pcap/pcapng: the file ends inside a record at this byte (cut short, as a capture
    /// copied while still being written is); the packets before it are all here.
    pub cut_short_at: Option<u64>,
}

/// Capture file format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// hyrelay's JSON lines.
    #[default]
    JsonLines,
    /// libpcap.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// Bounds on what a capture may make the parser hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest capture file. Default 1 GiB.
    pub max_file_bytes: usize,
    /// Most connections. Default 100 000.
    pub max_connections: usize,
    /// Most bytes of one direction of one connection. Default 256 MiB.
    pub max_stream_bytes: u64,
    /// Most out-of-order bytes held while waiting for a missing segment, per direction.
    /// Default 16 MiB.
    pub max_out_of_order_bytes: usize,
    /// Longest JSON line / largest pcap record or pcapng block. Default 16 MiB.
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 30,
            max_connections: 100_000,
            max_stream_bytes: 256 << 20,
            max_out_of_order_bytes: 16 << 20,
            max_record_bytes: 16 << 20,
        }
    }
}

/// What was wrong with a capture file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not pcap, pcapng or JSON lines.
    #[error("not a capture file: expected pcap, pcapng or hyrelay JSON lines (first bytes {0})")]
    UnknownFormat(String),
    /// Malformed content at a byte offset of the file.
    #[error("{format} at byte {offset}: {message}")]
    Malformed {
        /// `pcap`, `pcapng` or `JSON lines`.
        format: &'static str,
        /// Byte offset in the file.
        offset: u64,
        /// What was wrong.
        message: String,
    },
    /// A limit was exceeded.
    #[error("{what} exceeds the limit of {max} (at byte {offset} of the file)")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The limit.
        max: u64,
        /// Byte offset in the file.
        offset: u64,
    },
    /// A pcap link type this reader does not decode.
    #[error("unsupported link type {0} (supported: Ethernet 1, raw IP 101/228/229, Linux cooked 113/276, BSD loopback 0/108)")]
    LinkType(u32),
}

/// Parse a capture file: pcap and pcapng by their magic numbers, otherwise JSON lines.
pub fn parse(data: &[u8], limits: &Limits) -> Result<Capture, Error> {
    if data.len() > limits.max_file_bytes {
        return Err(Error::Limit {
            what: "capture file size",
            max: limits.max_file_bytes as u64,
            offset: 0,
        });
    }
    match data.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0x4d, 0x3c, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0x3c, 0x4d]) => pcap::parse_pcap(data, limits),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => pcap::parse_pcapng(data, limits),
        _ => {
            let first = data.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') || data.iter().all(|b| b.is_ascii_whitespace()) {
                jsonl::parse(data, limits)
            } else {
                let n = data.len().min(8);
                Err(Error::UnknownFormat(hex::encode(&data[..n])))
            }
        }
    }
}

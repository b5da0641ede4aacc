//! TCP stream reassembly: sequence numbers → contiguous byte streams per direction.
//!
//! Retransmissions and overlaps are trimmed against what was already delivered;
//! out-of-order segments wait (bounded) for the missing bytes; what never arrives is
//! recorded as a gap, never silently glued over.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::{Capture, Connection, Dir, Error, Format, Limits, Segment};

pub(crate) struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
    pub time: f64,
}

#[derive(Default)]
struct Half {
    /// Sequence number of stream offset 0 (set by SYN or the first segment seen).
    isn: Option<u32>,
    /// Next stream offset expected.
    next: u64,
    /// Held segments by stream offset.
    pending: BTreeMap<u64, (f64, Vec<u8>)>,
    pending_bytes: usize,
    fin: bool,
}

struct Flow {
    conn: Connection,
    client: SocketAddr,
    halves: [Half; 2],
    closed: bool,
}

pub(crate) struct Reassembler {
    limits: Limits,
    flows: Vec<Flow>,
    by_key: HashMap<(SocketAddr, SocketAddr), usize>,
    skipped: u64,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Reassembler {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            flows: Vec::new(),
            by_key: HashMap::new(),
            skipped: 0,
        }
    }

    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    pub fn segment(&mut self, s: TcpSegment<'_>, file_offset: usize) -> Result<(), Error> {
        let k = key(s.src, s.dst);
        let fresh_syn = s.syn && !s.ack;
        let idx = match self.by_key.get(&k) {
            Some(&i) if !(fresh_syn && self.flows[i].closed) => i,
            _ => {
                if self.flows.len() >= self.limits.max_connections {
                    return Err(Error::Limit {
                        what: "number of connections",
                        max: self.limits.max_connections as u64,
                        offset: file_offset as u64,
                    });
                }
                // The connecting side: the SYN's sender; with no SYN seen, the sender of
                // a SYN-ACK's peer, else the first sender.
                let client = if s.syn && s.ack { s.dst } else { s.src };
                let server = if client == s.src { s.dst } else { s.src };
                let id = self.flows.len() as u32 + 1;
                self.flows.push(Flow {
                    conn: Connection {
                        id,
                        client: client.to_string(),
                        server: server.to_string(),
                        ..Connection::default()
                    },
                    client,
                    halves: [Half::default(), Half::default()],
                    closed: false,
                });
                self.by_key.insert(k, self.flows.len() - 1);
                self.flows.len() - 1
            }
        };
        let limits = self.limits;
        let f = &mut self.flows[idx];
        let dir = if s.src == f.client {
            Dir::C2S
        } else {
            Dir::S2C
        };
        let h = &mut f.halves[dir as usize];
        if s.rst {
            f.conn.reset = true;
            f.closed = true;
            return Ok(());
        }
        if s.syn {
            h.isn = Some(s.seq.wrapping_add(1));
            return Ok(());
        }
        let isn = *h.isn.get_or_insert(s.seq);
        // Relative offset, unwrapping 32-bit sequence numbers around the expected point.
        let expected_seq = isn.wrapping_add(h.next as u32);
        let delta = s.seq.wrapping_sub(expected_seq) as i32 as i64;
        let rel = h.next as i64 + delta;
        if !s.payload.is_empty() {
            let end = rel + s.payload.len() as i64;
            if end as u64 > limits.max_stream_bytes {
                return Err(Error::Limit {
                    what: "bytes in one direction of a connection",
                    max: limits.max_stream_bytes,
                    offset: file_offset as u64,
                });
            }
            if end > h.next as i64 {
                let skip = (h.next as i64 - rel).max(0) as usize;
                let start = rel + skip as i64;
                let data = &s.payload[skip..];
                if start as u64 == h.next {
                    push(&mut f.conn, dir, s.time, h.next, data.to_vec());
                    h.next += data.len() as u64;
                    drain(&mut f.conn, dir, h);
                } else if !h.pending.contains_key(&(start as u64)) {
                    h.pending_bytes += data.len();
                    if h.pending_bytes > limits.max_out_of_order_bytes {
                        return Err(Error::Limit {
                            what: "out-of-order bytes waiting for a missing segment",
                            max: limits.max_out_of_order_bytes as u64,
                            offset: file_offset as u64,
                        });
                    }
                    h.pending.insert(start as u64, (s.time, data.to_vec()));
                }
            }
        }
        if s.fin {
            h.fin = true;
            f.conn.eof[dir as usize] = true;
            if f.halves[0].fin && f.halves[1].fin {
                f.closed = true;
            }
        }
        Ok(())
    }

    pub fn finish(mut self, format: Format) -> Capture {
        for f in &mut self.flows {
            for dir in [Dir::C2S, Dir::S2C] {
                let h = &mut f.halves[dir as usize];
                // Whatever still waits sits behind bytes the capture never saw.
                while let Some((&off, _)) = h.pending.iter().next() {
                    if off > h.next {
                        f.conn.gaps.push((dir, h.next, off - h.next));
                        h.next = off;
                    }
                    drain(&mut f.conn, dir, h);
                }
            }
        }
        Capture {
            format,
            connections: self.flows.into_iter().map(|f| f.conn).collect(),
            skipped_packets: self.skipped,
            cut_short_at: None,
        }
    }
}

fn push(conn: &mut Connection, dir: Dir, time: f64, offset: u64, data: Vec<u8>) {
    if !data.is_empty() {
        conn.segments.push(Segment {
            time,
            dir,
            offset,
            data,
        });
    }
}

/// Deliver held segments that now continue the stream.
fn drain(conn: &mut Connection, dir: Dir, h: &mut Half) {
    while let Some((&off, _)) = h.pending.iter().next() {
        if off > h.next {
            return;
        }
        let Some((time, data)) = h.pending.remove(&off) else {
            return;
        };
        h.pending_bytes -= data.len();
        let end = off + data.len() as u64;
        if end > h.next {
            let skip = (h.next - off) as usize;
            let tail = data[skip..].to_vec();
            let at = h.next;
            h.next = end;
            push(conn, dir, time, at, tail);
        }
    }
}

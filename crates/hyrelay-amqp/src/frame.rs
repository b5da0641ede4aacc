//! AMQP frames (part 2.3) and protocol headers.

use crate::codec::{decode_value, encode_value, Limits, Value};
use crate::Error;

/// Protocol id of plain AMQP in the protocol header (`AMQP 0 1 0 0`).
pub const PROTOCOL_AMQP: u8 = 0;
/// Protocol id of the SASL layer (`AMQP 3 1 0 0`).
pub const PROTOCOL_SASL: u8 = 3;

/// Frame type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// 0x00: AMQP.
    Amqp,
    /// 0x01: SASL.
    Sasl,
}

/// One frame: channel, the performative (or `None` for an empty heartbeat frame) and the
/// payload bytes after it (a transfer's message).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// AMQP or SASL.
    pub kind: FrameType,
    /// Channel.
    pub channel: u16,
    /// The body's first value: a described performative; `None` for heartbeats.
    pub body: Option<Value>,
    /// Bytes after the performative.
    pub payload: Vec<u8>,
}

/// Encodes a frame.
pub fn encode_frame(
    kind: FrameType,
    channel: u16,
    body: Option<&Value>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, 2, matches!(kind, FrameType::Sasl) as u8]);
    out.extend_from_slice(&channel.to_be_bytes());
    if let Some(b) = body {
        encode_value(b, out);
    }
    out.extend_from_slice(payload);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// What [`FrameDecoder::next`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A protocol header: its protocol id and version bytes.
    Header {
        /// 0 AMQP, 3 SASL (others are refused by the connection).
        protocol: u8,
        /// major, minor, revision.
        version: [u8; 3],
    },
    /// A frame.
    Frame(Frame),
}

/// Splits a byte stream into protocol headers and frames; accepts input in pieces of any size.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    consumed: u64,
    max_frame: u32,
    limits: Limits,
    expect_header: bool,
}

impl FrameDecoder {
    /// A decoder that first expects a protocol header, with `max_frame` as the largest frame.
    pub fn new(max_frame: u32, limits: Limits) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            consumed: 0,
            max_frame,
            limits,
            expect_header: true,
        }
    }
    /// Appends input.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// The next item parses a protocol header (after SASL, a new one follows).
    pub fn expect_header(&mut self) {
        self.expect_header = true;
    }
    /// Bytes consumed so far (for error offsets).
    pub fn offset(&self) -> u64 {
        self.consumed
    }
    /// The next complete item, `Ok(None)` when more input is needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Item>, Error> {
        let off = self.consumed as usize;
        if self.expect_header {
            if self.buf.len() < 8 {
                if !b"AMQP".starts_with(&self.buf[..self.buf.len().min(4)]) {
                    return Err(Error::Malformed {
                        offset: off,
                        reason: "not an AMQP protocol header".into(),
                    });
                }
                return Ok(None);
            }
            if &self.buf[..4] != b"AMQP" {
                return Err(Error::Malformed {
                    offset: off,
                    reason: "not an AMQP protocol header".into(),
                });
            }
            let item = Item::Header {
                protocol: self.buf[4],
                version: [self.buf[5], self.buf[6], self.buf[7]],
            };
            self.buf.drain(..8);
            self.consumed += 8;
            self.expect_header = false;
            return Ok(Some(item));
        }
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let doff = self.buf[4];
        let kind = match self.buf[5] {
            0 => FrameType::Amqp,
            1 => FrameType::Sasl,
            t => {
                return Err(Error::Malformed {
                    offset: off + 5,
                    reason: format!("unknown frame type {t}"),
                })
            }
        };
        if size < 8 || doff < 2 || (doff as u32) * 4 > size {
            return Err(Error::Malformed {
                offset: off,
                reason: format!("frame size {size} / data offset {doff} are inconsistent"),
            });
        }
        if size > self.max_frame {
            return Err(Error::Limit {
                offset: off,
                what: "frame size",
                value: size.into(),
                max: self.max_frame.into(),
            });
        }
        if self.buf.len() < size as usize {
            return Ok(None);
        }
        let channel = u16::from_be_bytes([self.buf[6], self.buf[7]]);
        let body_bytes = &self.buf[doff as usize * 4..size as usize];
        let (body, payload) = if body_bytes.is_empty() {
            (None, Vec::new())
        } else {
            let (v, n) = decode_value(body_bytes, &self.limits)
                .map_err(|e| shift(e, off + doff as usize * 4))?;
            (Some(v), body_bytes[n..].to_vec())
        };
        self.buf.drain(..size as usize);
        self.consumed += u64::from(size);
        Ok(Some(Item::Frame(Frame {
            kind,
            channel,
            body,
            payload,
        })))
    }
}

fn shift(e: Error, by: usize) -> Error {
    match e {
        Error::Truncated { offset } => Error::Truncated {
            offset: offset + by,
        },
        Error::UnknownConstructor { offset, byte } => Error::UnknownConstructor {
            offset: offset + by,
            byte,
        },
        Error::Limit {
            offset,
            what,
            value,
            max,
        } => Error::Limit {
            offset: offset + by,
            what,
            value,
            max,
        },
        Error::Malformed { offset, reason } => Error::Malformed {
            offset: offset + by,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_frames_in_any_split() {
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        encode_frame(
            FrameType::Sasl,
            0,
            Some(&Value::described(0x41, vec![Value::sym("EXTERNAL")])),
            &[],
            &mut bytes,
        );
        encode_frame(FrameType::Amqp, 7, None, &[], &mut bytes);
        for cut in 0..bytes.len() {
            let mut d = FrameDecoder::new(65536, Limits::default());
            let mut items = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                d.feed(part);
                while let Some(i) = d.next().unwrap() {
                    items.push(i);
                }
            }
            assert_eq!(items.len(), 3, "cut {cut}");
            assert_eq!(
                items[0],
                Item::Header {
                    protocol: 3,
                    version: [1, 0, 0]
                }
            );
            assert!(matches!(
                &items[2],
                Item::Frame(Frame {
                    channel: 7,
                    body: None,
                    ..
                })
            ));
        }
    }

    #[test]
    fn garbage_and_oversize_frames_are_refused() {
        let mut d = FrameDecoder::new(512, Limits::default());
        d.feed(b"GET / HTTP/1.1\r\n");
        assert!(d.next().is_err());
        let mut d = FrameDecoder::new(512, Limits::default());
        d.feed(b"AMQP\x00\x01\x00\x00");
        d.next().unwrap();
        d.feed(&[0, 0, 0x10, 0, 2, 0, 0, 0]);
        assert!(matches!(
            d.next(),
            Err(Error::Limit {
                what: "frame size",
                ..
            })
        ));
    }
}

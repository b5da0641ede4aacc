//! Sans-IO WebSocket (RFC 6455) framing, shaped for a relay.
//!
//! A relay forwards frames one by one without reassembling messages, so this crate works at
//! the frame level: [`FrameHeader::parse`] reads a header from a byte slice (or says how many
//! more bytes it needs), [`FrameHeader::encode`] writes one, [`apply_mask`] (un)masks payload
//! bytes at any offset into the frame, and [`accept_key`] answers a handshake. Messages,
//! fragmentation policy and control-frame replies are the caller's business.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};
use thiserror::Error;

/// Largest header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;
/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    /// From the 4-bit wire value.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0,
            OpCode::Text => 1,
            OpCode::Binary => 2,
            OpCode::Close => 8,
            OpCode::Ping => 9,
            OpCode::Pong => 10,
        }
    }

    /// Close, Ping or Pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A protocol violation in a frame header. Each maps to close code 1002 except
/// [`FrameError::TooLarge`] (1009).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// RSV1-3 set although no extension was negotiated.
    #[error("reserved bits set in frame header (no extension negotiated)")]
    ReservedBits,
    /// Opcode 3-7 or 0xB-0xF.
    #[error("unknown opcode {0:#x}")]
    UnknownOpCode(u8),
    /// A control frame with more than 125 bytes or without FIN.
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    /// 64-bit length with the top bit set, or non-minimal length encoding.
    #[error("invalid payload length encoding")]
    BadLength,
    /// A frame from a client without mask, or from a server with one.
    #[error("frame masking does not match the sender's role")]
    BadMask,
    /// Payload larger than the limit given to the parser.
    #[error("frame payload of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Limit.
        limit: u64,
    },
}

impl FrameError {
    /// The close code to send for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// What the peer must do about masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Frames must be masked (we are the server).
    Masked,
    /// Frames must not be masked (we are the client).
    Unmasked,
    /// Accept both.
    Either,
}

impl FrameHeader {
    /// Parses a header at the start of `buf`. `Ok(None)` means more bytes are needed;
    /// `Ok(Some((h, n)))` gives the header and its encoded size.
    pub fn parse(
        buf: &[u8],
        expect: Expect,
        max_payload: u64,
    ) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::UnknownOpCode(b0 & 0x0F))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (expect, masked) {
            (Expect::Masked, false) | (Expect::Unmasked, true) => return Err(FrameError::BadMask),
            _ => {}
        }
        let mut pos = 2;
        let len = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                pos = 4;
                let l = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if l < 126 {
                    return Err(FrameError::BadLength);
                }
                l
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                pos = 10;
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let l = u64::from_be_bytes(b);
                if l >> 63 != 0 || l <= 0xFFFF {
                    return Err(FrameError::BadLength);
                }
                l
            }
            l => l as u64,
        };
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD) {
            return Err(FrameError::BadControlFrame);
        }
        if len > max_payload {
            return Err(FrameError::TooLarge {
                len,
                limit: max_payload,
            });
        }
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(m)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                opcode,
                mask,
                len,
            },
            pos,
        )))
    }

    /// Encodes the header into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 }) | self.opcode.as_u8();
        let mbit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos;
        if self.len < 126 {
            out[1] = mbit | self.len as u8;
            pos = 2;
        } else if self.len <= 0xFFFF {
            out[1] = mbit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            pos = 4;
        } else {
            out[1] = mbit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            pos = 10;
        }
        if let Some(m) = self.mask {
            out[pos..pos + 4].copy_from_slice(&m);
            pos += 4;
        }
        pos
    }
}

/// XORs `data` with `mask`, where `data[0]` is payload byte number `offset` of the frame.
/// Works a machine word at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    if mask == [0; 4] {
        // A zero key (which hyrelay's own clients use where nobody in between can read the
        // stream) leaves the payload as it is.
        return;
    }
    let shift = (offset % 4) as usize;
    let m = [
        mask[shift % 4],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let m32 = u32::from_ne_bytes(m);
    let m64 = (m32 as u64) | ((m32 as u64) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    B64.encode(h.finalize())
}

/// A parsed Close payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Status code; `None` for an empty payload.
    pub code: Option<u16>,
    /// Reason text.
    pub reason: String,
}

impl CloseFrame {
    /// Parses a Close payload. Invalid payloads (1 byte, bad UTF-8) are reported as `None`.
    pub fn parse(payload: &[u8]) -> Option<CloseFrame> {
        match payload.len() {
            0 => Some(CloseFrame {
                code: None,
                reason: String::new(),
            }),
            1 => None,
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = std::str::from_utf8(&payload[2..]).ok()?.to_string();
                Some(CloseFrame {
                    code: Some(code),
                    reason,
                })
            }
        }
    }

    /// Encodes a Close payload, truncating the reason to fit 125 bytes on a char boundary.
    pub fn encode(code: u16, reason: &str) -> Vec<u8> {
        let mut r = reason;
        while r.len() > 123 {
            let mut cut = 123;
            while !r.is_char_boundary(cut) {
                cut -= 1;
            }
            r = &r[..cut];
        }
        let mut v = Vec::with_capacity(2 + r.len());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(r.as_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_examples() {
        // A single-frame masked text message "Hello".
        let mut b = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::parse(&b, Expect::Masked, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(n, 6);
        assert_eq!(h.len, 5);
        assert_eq!(h.opcode, OpCode::Text);
        apply_mask(&mut b[6..], h.mask.unwrap(), 0);
        assert_eq!(&b[6..], b"Hello");
    }

    #[test]
    fn errors() {
        assert_eq!(
            FrameHeader::parse(&[0xC1, 0x80], Expect::Either, 10),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x00], Expect::Either, 10),
            Err(FrameError::UnknownOpCode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00], Expect::Either, 10),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126], Expect::Either, 1000),
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x01], Expect::Masked, 10),
            Err(FrameError::BadMask)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x81, 0, 0, 0, 0], Expect::Unmasked, 10),
            Err(FrameError::BadMask)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0, 5], Expect::Either, 1000),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            FrameHeader::parse(
                &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Expect::Either,
                u64::MAX
            ),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 1, 0], Expect::Either, 100),
            Err(FrameError::TooLarge {
                len: 256,
                limit: 100
            })
        );
        assert_eq!(FrameHeader::parse(&[0x82], Expect::Either, 10), Ok(None));
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x81, 1], Expect::Masked, 10),
            Ok(None)
        );
    }

    #[test]
    fn close_payloads() {
        assert_eq!(
            CloseFrame::parse(&CloseFrame::encode(1008, "token expired")),
            Some(CloseFrame {
                code: Some(1008),
                reason: "token expired".into()
            })
        );
        assert_eq!(CloseFrame::parse(&[3]), None);
        assert_eq!(CloseFrame::parse(&[3, 232, 0xff]), None);
        assert!(CloseFrame::encode(1000, &"é".repeat(100)).len() <= 125);
    }

    proptest! {
        #[test]
        fn header_roundtrip(fin: bool, op in 0usize..6, len in prop_oneof![0u64..126, 126u64..65536, 65536u64..(1u64<<40)], mask: Option<[u8;4]>) {
            let ops = [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong];
            let opcode = ops[op];
            let len = if opcode.is_control() { len % 126 } else { len };
            let fin = fin || opcode.is_control();
            let h = FrameHeader { fin, opcode, mask, len };
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut out);
            // Every strict prefix needs more bytes; the whole header parses back.
            for i in 0..n {
                prop_assert_eq!(FrameHeader::parse(&out[..i], Expect::Either, u64::MAX), Ok(None));
            }
            prop_assert_eq!(FrameHeader::parse(&out[..n], Expect::Either, u64::MAX), Ok(Some((h, n))));
        }

        #[test]
        fn mask_at_any_offset(data in proptest::collection::vec(any::<u8>(), 0..300), mask: [u8;4], split in 0usize..300) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, mask, 0);
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split as u64);
            prop_assert_eq!(&whole, &parts);
            for (i, (x, y)) in data.iter().zip(whole.iter()).enumerate() {
                prop_assert_eq!(x ^ mask[i % 4], *y);
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::parse(&bytes, Expect::Either, 1 << 30);
        }
    }
}

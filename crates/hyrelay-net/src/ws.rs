//! Frame-level WebSocket reading and writing over any async byte stream.
//!
//! Used for control channels and HTTP rendezvous sockets, where the relay itself is an
//! endpoint. Relayed (joined) sockets use [`crate::splice`], which never looks at messages.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use hyrelay_ws::{apply_mask, CloseFrame, Expect, FrameHeader, OpCode, MAX_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Which end of the WebSocket we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the handshake: incoming frames are masked, outgoing are not.
    Server,
    /// We made the handshake: outgoing frames are masked.
    Client,
}

fn proto_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads frames, header first, then the payload in chunks.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    role: Role,
    max_frame: u64,
    current: Option<FrameHeader>,
    remaining: u64,
    offset: u64,
}

/// A whole control or data frame read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header.
    pub header: FrameHeader,
    /// Unmasked payload.
    pub payload: Bytes,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `io`; `leftover` are bytes already read past the HTTP handshake.
    pub fn new(io: R, leftover: Bytes, role: Role, max_frame: u64) -> Self {
        let mut buf = BytesMut::with_capacity(leftover.len().max(1024));
        buf.extend_from_slice(&leftover);
        FrameReader {
            io,
            buf,
            role,
            max_frame,
            current: None,
            remaining: 0,
            offset: 0,
        }
    }

    /// The inner reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(4096);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads the next frame header. Skips the rest of an unread payload first. `Ok(None)`
    /// means the stream ended cleanly between frames.
    pub async fn header(&mut self) -> io::Result<Option<FrameHeader>> {
        while self.current.is_some() {
            if self.chunk(64 * 1024).await?.is_none() {
                break;
            }
        }
        let expect = match self.role {
            Role::Server => Expect::Masked,
            Role::Client => Expect::Unmasked,
        };
        loop {
            match FrameHeader::parse(&self.buf, expect, self.max_frame).map_err(proto_err)? {
                Some((h, n)) => {
                    self.buf.advance(n);
                    self.remaining = h.len;
                    self.offset = 0;
                    self.current = Some(h);
                    return Ok(Some(h));
                }
                None => {
                    if self.fill().await? == 0 {
                        if self.buf.is_empty() {
                            return Ok(None);
                        }
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }

    /// The next piece (at most `max` bytes) of the current frame's payload, unmasked; `None`
    /// when the frame is complete.
    pub async fn chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        let Some(h) = self.current else {
            return Ok(None);
        };
        if self.remaining == 0 {
            self.current = None;
            return Ok(None);
        }
        if self.buf.is_empty() && self.fill().await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = (self.buf.len() as u64).min(self.remaining).min(max as u64) as usize;
        let mut b = self.buf.split_to(n);
        if let Some(m) = h.mask {
            apply_mask(&mut b, m, self.offset);
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(Some(b.freeze()))
    }

    /// The whole payload of the current frame, refusing more than `limit` bytes.
    pub async fn payload(&mut self, limit: usize) -> io::Result<Bytes> {
        if self.remaining > limit as u64 {
            return Err(proto_err(format!(
                "frame of {} bytes exceeds the {limit}-byte limit",
                self.remaining
            )));
        }
        let mut out = BytesMut::with_capacity(self.remaining as usize);
        while let Some(c) = self.chunk(usize::MAX).await? {
            out.extend_from_slice(&c);
        }
        Ok(out.freeze())
    }

    /// Reads one complete frame (header and payload, at most `limit` payload bytes).
    pub async fn frame(&mut self, limit: usize) -> io::Result<Option<Frame>> {
        let Some(header) = self.header().await? else {
            return Ok(None);
        };
        let payload = self.payload(limit).await?;
        Ok(Some(Frame { header, payload }))
    }
}

/// Writes frames.
pub struct FrameWriter<W> {
    io: W,
    role: Role,
    mask_seed: u32,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps `io`.
    pub fn new(io: W, role: Role) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0x9E37_79B9)
            | 1;
        FrameWriter {
            io,
            role,
            mask_seed: seed,
        }
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client => {
                // xorshift: masking keys only need to be unpredictable to scripts in browsers;
                // this keeps masking cheap.
                let mut x = self.mask_seed;
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                self.mask_seed = x;
                Some(x.to_ne_bytes())
            }
        }
    }

    /// Writes one frame and flushes.
    pub async fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        self.frame_noflush(fin, opcode, payload).await?;
        self.io.flush().await
    }

    /// Writes one frame without flushing.
    pub async fn frame_noflush(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> io::Result<()> {
        let mask = self.next_mask();
        let h = FrameHeader {
            fin,
            opcode,
            mask,
            len: payload.len() as u64,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        match mask {
            None => {
                if payload.len() <= 4096 {
                    let mut v = Vec::with_capacity(n + payload.len());
                    v.extend_from_slice(&hb[..n]);
                    v.extend_from_slice(payload);
                    self.io.write_all(&v).await
                } else {
                    self.io.write_all(&hb[..n]).await?;
                    self.io.write_all(payload).await
                }
            }
            Some(m) => {
                let mut v = Vec::with_capacity(n + payload.len());
                v.extend_from_slice(&hb[..n]);
                v.extend_from_slice(payload);
                apply_mask(&mut v[n..], m, 0);
                self.io.write_all(&v).await
            }
        }
    }

    /// Sends a text frame.
    pub async fn text(&mut self, s: &str) -> io::Result<()> {
        self.frame(true, OpCode::Text, s.as_bytes()).await
    }

    /// Sends a Close frame with a code and reason.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.frame(true, OpCode::Close, &CloseFrame::encode(code, reason))
            .await
    }

    /// Flushes.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Shuts the write side down.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

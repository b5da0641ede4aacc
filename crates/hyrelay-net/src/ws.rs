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

    /// The inner reader, shared.
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// Payload bytes of the current frame not yet delivered (0 between frames).
    pub fn remaining(&self) -> u64 {
        if self.current.is_some() {
            self.remaining
        } else {
            0
        }
    }

    /// The part of the current frame's payload that is already buffered (up to `max`
    /// bytes), unmasked, without reading; `None` when nothing of it is buffered.
    pub fn buffered_chunk(&mut self, max: usize) -> Option<Bytes> {
        let h = self.current?;
        let n = (self.buf.len() as u64).min(self.remaining).min(max as u64) as usize;
        if n == 0 {
            return None;
        }
        let mut b = self.buf.split_to(n);
        if let Some(m) = h.mask {
            apply_mask(&mut b, m, self.offset);
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Some(b.freeze())
    }

    /// Records that `n` payload bytes of the current frame were taken from the socket by
    /// someone else (the kernel splice); only valid once nothing of the frame is buffered.
    pub fn consumed_elsewhere(&mut self, n: u64) {
        debug_assert!(n <= self.remaining);
        self.offset += n;
        self.remaining -= n;
    }

    async fn fill(&mut self) -> io::Result<usize> {
        // Inside a large payload, read big (one syscall per up to 256 KiB); between frames
        // and for small ones, stay small so idle connections hold little memory.
        let want = if self.current.is_some() {
            (self.remaining as usize).clamp(4096, 256 * 1024)
        } else {
            4096
        };
        if self.buf.capacity() - self.buf.len() < want.min(512).max(want / 2) {
            self.buf.reserve(want);
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
    /// Client role: send the all-zero masking key.
    zero_mask: bool,
    /// Reused for small frames and for masking, so steady-state writes do not allocate.
    scratch: Vec<u8>,
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
            zero_mask: false,
            scratch: Vec::new(),
        }
    }

    /// Client role: use the all-zero masking key from now on. Masking exists so that scripts
    /// in a browser cannot make a WebSocket look like other traffic to proxies that read the
    /// stream; where nobody in between can read it (inside TLS, or on loopback) a zero key is
    /// just as valid on the wire and lets the relay move payloads without touching them.
    pub fn set_zero_mask(&mut self, on: bool) {
        self.zero_mask = on;
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }

    /// The inner writer, shared.
    pub fn get_ref(&self) -> &W {
        &self.io
    }

    /// Whether payloads go out as they are (server role, or the zero masking key).
    pub fn payload_untouched(&self) -> bool {
        self.role == Role::Server || self.zero_mask
    }

    /// The encoded header of a frame whose payload the caller sends itself, for writers whose
    /// payloads go out untouched (see [`Self::payload_untouched`]); `None` otherwise.
    pub fn untouched_header(
        &mut self,
        fin: bool,
        opcode: OpCode,
        len: usize,
    ) -> Option<([u8; MAX_HEADER_LEN], usize)> {
        if !self.payload_untouched() {
            return None;
        }
        let (_, hb, n) = self.header_for(fin, opcode, len);
        Some((hb, n))
    }

    /// Gives the inner writer back.
    pub fn into_inner(self) -> W {
        self.io
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Server => None,
            Role::Client if self.zero_mask => Some([0; 4]),
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

    /// The next frame's mask and encoded header (bytes `..n` of the array).
    fn header_for(
        &mut self,
        fin: bool,
        opcode: OpCode,
        len: usize,
    ) -> (Option<[u8; 4]>, [u8; MAX_HEADER_LEN], usize) {
        let mask = self.next_mask();
        let h = FrameHeader {
            fin,
            opcode,
            mask,
            len: len as u64,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        (mask, hb, n)
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
        let (mask, hb, n) = self.header_for(fin, opcode, payload.len());
        match mask {
            None if payload.len() > 4096 => {
                self.io.write_all(&hb[..n]).await?;
                self.io.write_all(payload).await
            }
            _ => {
                // One write per frame: header and (masked) payload in the reused buffer.
                self.scratch.clear();
                self.scratch.extend_from_slice(&hb[..n]);
                self.scratch.extend_from_slice(payload);
                if let Some(m) = mask {
                    apply_mask(&mut self.scratch[n..], m, 0);
                }
                let r = self.io.write_all(&self.scratch).await;
                if self.scratch.capacity() > 1 << 20 {
                    self.scratch = Vec::new();
                }
                r
            }
        }
    }

    /// Writes one frame whose payload the caller owns: it is masked in place (client role)
    /// and goes out with its header in one vectored write, without being copied.
    pub async fn frame_in_place(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &mut [u8],
    ) -> io::Result<()> {
        let (mask, hb, n) = self.header_for(fin, opcode, payload.len());
        if let Some(m) = mask {
            apply_mask(payload, m, 0);
        }
        let mut head: &[u8] = &hb[..n];
        let mut body: &[u8] = payload;
        while !head.is_empty() || !body.is_empty() {
            let bufs = [io::IoSlice::new(head), io::IoSlice::new(body)];
            let w = self.io.write_vectored(&bufs).await?;
            if w == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = w.min(head.len());
            head = &head[from_head..];
            body = &body[w - from_head..];
        }
        self.io.flush().await
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

/// The answer to a client handshake.
#[derive(Debug, Clone)]
pub struct HandshakeResponse {
    /// HTTP status (101 on success).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Response headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Bytes read past the response head (the first frames).
    pub leftover: Bytes,
}

impl HandshakeResponse {
    /// A header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Largest response or request head read by the handshake helpers.
pub const MAX_HEAD: usize = 32 * 1024;

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<(Vec<u8>, Bytes)> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf.split_to(i + 4);
            return Ok((head.to_vec(), buf.freeze()));
        }
        if buf.len() > MAX_HEAD {
            return Err(proto_err("HTTP head larger than 32 KiB"));
        }
        buf.reserve(1024);
        if s.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Performs a client WebSocket handshake for `target` (origin form) on an open stream.
/// A non-101 answer is returned, not an error, so callers can report the relay's status.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    target: &str,
    extra_headers: &[(String, String)],
) -> io::Result<HandshakeResponse> {
    let mut key_bytes = [0u8; 16];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, b) in key_bytes.iter_mut().enumerate() {
        *b = (seed >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(73);
    }
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let (head, leftover) = read_head(s).await?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _ = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| proto_err(format!("bad status line '{status_line}'")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let resp = HandshakeResponse {
        status,
        reason,
        headers,
        leftover,
    };
    if status == 101 {
        let expected = hyrelay_ws::accept_key(&key);
        if resp.header("sec-websocket-accept") != Some(expected.as_str()) {
            return Err(proto_err("server sent a wrong Sec-WebSocket-Accept"));
        }
    }
    Ok(resp)
}

/// Accepts a server-side WebSocket handshake on an open stream (for tests and benchmarks
/// that need a plain WebSocket server). Returns the request target and the leftover bytes.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> io::Result<(String, Bytes)> {
    let (head, leftover) = read_head(s).await?;
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let key = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| proto_err("no Sec-WebSocket-Key"))?;
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        hyrelay_ws::accept_key(&key)
    );
    s.write_all(resp.as_bytes()).await?;
    s.flush().await?;
    Ok((target, leftover))
}

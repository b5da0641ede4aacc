//! Frame-by-frame splicing of two server-side WebSocket legs.
//!
//! Both legs of a relayed connection are WebSocket clients of the relay, so every frame
//! arrives masked and must leave unmasked. The pump reads large chunks, unmasks payload in
//! place and rewrites the (four bytes shorter) header in place just before the payload, so a
//! frame goes out with one write and no copy. Messages are never reassembled and there is no
//! limit on fragments or frame sizes.
//!
//! Semantics:
//! * Ping is answered on the same leg (hop by hop); Pong is dropped.
//! * Close from one leg is forwarded to the other and ends only that direction: data keeps
//!   flowing the other way until that leg closes too (half-close).
//! * A leg that ends without Close (EOF, reset, protocol error) aborts the other leg with a
//!   TCP reset, so its reader sees an error and not an orderly end.
//! * Buffers are taken from a pool only while bytes are in flight, so idle plain-TCP
//!   connections hold no payload buffer.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyrelay_ws::{apply_mask, Expect, FrameHeader, OpCode, MAX_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::stream::{abort_fd, Stream};

/// Size of the forwarding buffers.
pub const BUF_SIZE: usize = 64 * 1024;
const POOL_MAX: usize = 256;

static POOL: StdMutex<Vec<Box<[u8]>>> = StdMutex::new(Vec::new());

pub(crate) fn take_buf() -> Box<[u8]> {
    if let Ok(mut p) = POOL.lock() {
        if let Some(b) = p.pop() {
            return b;
        }
    }
    vec![0u8; BUF_SIZE].into_boxed_slice()
}

pub(crate) fn give_buf(b: Box<[u8]>) {
    if let Ok(mut p) = POOL.lock() {
        if p.len() < POOL_MAX {
            p.push(b);
        }
    }
}

/// Read side of a split [`Stream`].
pub enum ReadSide {
    /// Plain TCP: readiness can be awaited without a buffer.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<Stream>),
}

/// Write side of a split [`Stream`].
pub enum WriteSide {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<Stream>),
}

/// Splits a stream into halves that can be used from two directions at once.
pub fn split(s: Stream) -> (ReadSide, WriteSide) {
    match s {
        Stream::Plain(t) => {
            let (r, w) = t.into_split();
            (ReadSide::Plain(r), WriteSide::Plain(w))
        }
        other => {
            let (r, w) = tokio::io::split(other);
            (ReadSide::Tls(r), WriteSide::Tls(w))
        }
    }
}

impl ReadSide {
    pub(crate) async fn wait_readable(&self) -> io::Result<()> {
        match self {
            ReadSide::Plain(r) => r.readable().await,
            ReadSide::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteSide::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(w) => w.is_write_vectored(),
            WriteSide::Tls(w) => w.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// One side of a relayed connection: an upgraded server-side WebSocket and the bytes already
/// read past its handshake.
pub struct Leg {
    /// The stream.
    pub stream: Stream,
    /// Bytes read past the HTTP handshake.
    pub leftover: Bytes,
}

/// How a relayed connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Both legs sent Close; both were shut down cleanly.
    Closed,
    /// A leg ended without Close (or broke the protocol); both were reset.
    Aborted(String),
}

/// Outcome of [`splice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceReport {
    /// How it ended.
    pub end: SpliceEnd,
    /// Payload bytes from leg A to leg B.
    pub a_to_b: u64,
    /// Payload bytes from leg B to leg A.
    pub b_to_a: u64,
}

enum DirEnd {
    Closed(u64),
}

struct FrameState {
    mask: Option<[u8; 4]>,
    remaining: u64,
    offset: u64,
}

async fn pump(
    mut r: ReadSide,
    leftover: Bytes,
    out: &Mutex<WriteSide>,
    back: &Mutex<WriteSide>,
) -> io::Result<DirEnd> {
    let mut buf: Option<Box<[u8]>> = None;
    let (mut start, mut end) = (0usize, 0usize);
    if !leftover.is_empty() {
        let mut b = take_buf();
        let n = leftover.len().min(BUF_SIZE);
        b[..n].copy_from_slice(&leftover[..n]);
        if leftover.len() > BUF_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many bytes pipelined behind the handshake",
            ));
        }
        end = n;
        buf = Some(b);
    }
    // An empty `Bytes` from hyper can still pin hyper's whole read buffer: let it go now.
    drop(leftover);
    let mut frame: Option<FrameState> = None;
    let mut guard: Option<tokio::sync::MutexGuard<'_, WriteSide>> = None;
    let mut total: u64 = 0;
    #[cfg(target_os = "linux")]
    let (mut kpipe, mut kpipe_ok): (Option<crate::kernel::Pipe>, bool) = (None, true);

    loop {
        if start == end {
            start = 0;

            if frame.is_none() {
                if let Some(b) = buf.take() {
                    give_buf(b);
                }
                r.wait_readable().await?;
            }
            let b = buf.get_or_insert_with(take_buf);
            let n = r.read(&mut b[..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            end = n;
        }
        let b = buf.get_or_insert_with(take_buf);

        if let Some(f) = frame.as_mut() {
            let take = ((end - start) as u64).min(f.remaining) as usize;
            if let Some(m) = f.mask {
                apply_mask(&mut b[start..start + take], m, f.offset);
            }
            let g = guard.as_mut().expect("guard held while inside a frame");
            g.write_all(&b[start..start + take]).await?;
            f.offset += take as u64;
            f.remaining -= take as u64;
            total += take as u64;
            start += take;
            if f.remaining == 0 {
                frame = None;
                if let Some(mut g) = guard.take() {
                    g.flush().await?;
                }
            }
            continue;
        }

        match FrameHeader::parse(&b[start..end], Expect::Masked, u64::MAX >> 1)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        {
            None => {
                // Need more header bytes: compact and read more.
                if start > 0 {
                    b.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                let n = r.read(&mut b[end..]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                end += n;
            }
            Some((h, n)) if h.opcode.is_control() => {
                let need = n + h.len as usize;
                if end - start < need {
                    if start > 0 {
                        b.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    let k = r.read(&mut b[end..]).await?;
                    if k == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    end += k;
                    continue;
                }
                let p = start + n..start + need;
                if let Some(m) = h.mask {
                    apply_mask(&mut b[p.clone()], m, 0);
                }
                let payload = &b[p];
                match h.opcode {
                    OpCode::Ping => {
                        let mut g = back.lock().await;
                        write_frame(&mut g, OpCode::Pong, payload).await?;
                    }
                    OpCode::Close => {
                        let mut g = out.lock().await;
                        write_frame(&mut g, OpCode::Close, payload).await?;
                        drop(g);
                        if let Some(bb) = buf.take() {
                            give_buf(bb);
                        }
                        return Ok(DirEnd::Closed(total));
                    }
                    _ => {}
                }
                start += need;
            }
            Some((h, n)) => {
                let out_h = FrameHeader {
                    fin: h.fin,
                    opcode: h.opcode,
                    mask: None,
                    len: h.len,
                };
                let mut hb = [0u8; MAX_HEADER_LEN];
                let hn = out_h.encode(&mut hb);
                // The unmasked header is never longer than the masked one it replaces.
                let hstart = start + n - hn;
                b[hstart..start + n].copy_from_slice(&hb[..hn]);
                let pstart = start + n;
                let take = ((end - pstart) as u64).min(h.len) as usize;
                if let Some(m) = h.mask {
                    apply_mask(&mut b[pstart..pstart + take], m, 0);
                }
                let mut g = out.lock().await;
                g.write_all(&b[hstart..pstart + take]).await?;
                total += take as u64;
                start = pstart + take;
                let remaining = h.len - take as u64;
                #[cfg(target_os = "linux")]
                if remaining >= crate::kernel::MIN_SPLICE
                    && h.mask.is_none_or(|m| m == [0; 4])
                    && kpipe_ok
                {
                    // The rest of an unmasked (or zero-masked) payload needs no change: the
                    // kernel moves it socket to socket without a copy through user space.
                    if let (ReadSide::Plain(rh), WriteSide::Plain(wh)) = (&r, &*g) {
                        if kpipe.is_none() {
                            kpipe = crate::kernel::Pipe::new().ok();
                            kpipe_ok = kpipe.is_some();
                        }
                        if let Some(p) = kpipe.as_mut() {
                            if let Some(bb) = buf.take() {
                                give_buf(bb);
                            }
                            crate::kernel::exact(rh.as_ref(), wh.as_ref(), p, remaining).await?;
                            total += remaining;
                            continue;
                        }
                    }
                }
                if remaining > 0 {
                    frame = Some(FrameState {
                        mask: h.mask,
                        remaining,
                        offset: take as u64,
                    });
                    guard = Some(g);
                } else if start == end {
                    g.flush().await?;
                }
            }
        }
    }
}

async fn write_frame(w: &mut WriteSide, op: OpCode, payload: &[u8]) -> io::Result<()> {
    let h = FrameHeader {
        fin: true,
        opcode: op,
        mask: None,
        len: payload.len() as u64,
    };
    let mut v = [0u8; MAX_HEADER_LEN + 125];
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut hb);
    v[..n].copy_from_slice(&hb[..n]);
    v[n..n + payload.len()].copy_from_slice(payload);
    w.write_all(&v[..n + payload.len()]).await?;
    w.flush().await
}

/// Joins two legs until both have closed or one has failed.
pub async fn splice(a: Leg, b: Leg) -> SpliceReport {
    let fa: RawFd = a.stream.raw_fd();
    let fb: RawFd = b.stream.raw_fd();
    let (ar, aw) = split(a.stream);
    let (br, bw) = split(b.stream);
    let aw = Mutex::new(aw);
    let bw = Mutex::new(bw);
    let mut d1 = Box::pin(pump(ar, a.leftover, &bw, &aw));
    let mut d2 = Box::pin(pump(br, b.leftover, &aw, &bw));
    let (mut r1, mut r2): (Option<u64>, Option<u64>) = (None, None);
    let failure: Option<String> = loop {
        tokio::select! {
            x = &mut d1, if r1.is_none() => match x {
                Ok(DirEnd::Closed(n)) => r1 = Some(n),
                Err(e) => break Some(format!("leg A: {e}")),
            },
            y = &mut d2, if r2.is_none() => match y {
                Ok(DirEnd::Closed(n)) => r2 = Some(n),
                Err(e) => break Some(format!("leg B: {e}")),
            },
        }
        if r1.is_some() && r2.is_some() {
            break None;
        }
    };
    match failure {
        Some(reason) => {
            abort_fd(fa);
            abort_fd(fb);
            // Drop the pumps (and their read halves), then make sure dropping the write halves
            // does not send a FIN first: tokio's OwnedWriteHalf shuts down on drop, forget()
            // leaves the close to the last half, which now resets.
            drop(d1);
            drop(d2);
            for w in [aw.into_inner(), bw.into_inner()] {
                if let WriteSide::Plain(w) = w {
                    w.forget();
                }
            }
            SpliceReport {
                end: SpliceEnd::Aborted(reason),
                a_to_b: r1.unwrap_or(0),
                b_to_a: r2.unwrap_or(0),
            }
        }
        None => {
            let _ = aw.lock().await.shutdown().await;
            let _ = bw.lock().await.shutdown().await;
            SpliceReport {
                end: SpliceEnd::Closed,
                a_to_b: r1.unwrap_or(0),
                b_to_a: r2.unwrap_or(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{FrameReader, FrameWriter, Role};
    use tokio::net::{TcpListener, TcpStream};

    /// (the relay's end, the client's end) of one leg.
    async fn leg() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (Stream::Plain(s), c)
    }

    /// A relay splicing two legs, and the client end of each.
    async fn relayed() -> (tokio::task::JoinHandle<SpliceReport>, TcpStream, TcpStream) {
        let (ra, ca) = leg().await;
        let (rb, cb) = leg().await;
        let relay = tokio::spawn(splice(
            Leg {
                stream: ra,
                leftover: Bytes::new(),
            },
            Leg {
                stream: rb,
                leftover: Bytes::new(),
            },
        ));
        (relay, ca, cb)
    }

    fn payload(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(seed) >> 3) as u8)
            .collect()
    }

    // Frames as a client sends them: big zero-masked ones take the kernel path in the relay,
    // randomly masked and small ones the copying path; all must arrive unmasked, whole, in
    // order, whatever path carried them.
    #[tokio::test]
    async fn mixed_frames_cross_byte_exact_both_ways() {
        let (relay, ca, cb) = relayed().await;
        let sizes = [3 << 20, 10, 200_000, 70_000, 1, 1 << 20, 16 * 1024, 65_535];
        let send = |w: tokio::net::tcp::OwnedWriteHalf, seed: u32| async move {
            let mut w = FrameWriter::new(w, Role::Client);
            for (i, n) in sizes.iter().enumerate() {
                // Even frames with the zero key, odd ones with a random key.
                w.set_zero_mask(i % 2 == 0);
                w.frame(true, OpCode::Binary, &payload(seed + i as u32, *n))
                    .await
                    .unwrap();
            }
            w.close(1000, "done").await.unwrap();
            w
        };
        let recv = |r: tokio::net::tcp::OwnedReadHalf, seed: u32| async move {
            let mut fr = FrameReader::new(r, Bytes::new(), Role::Client, u64::MAX >> 1);
            for (i, n) in sizes.iter().enumerate() {
                let f = fr.frame(8 << 20).await.unwrap().unwrap();
                assert_eq!(f.header.opcode, OpCode::Binary);
                assert!(
                    f.payload == payload(seed + i as u32, *n),
                    "frame {i} differs"
                );
            }
            let f = fr.frame(125).await.unwrap().unwrap();
            assert_eq!(f.header.opcode, OpCode::Close);
        };
        // Each client end sends its frames while reading what the other end sent.
        let (a_r, a_w) = ca.into_split();
        let (b_r, b_w) = cb.into_split();
        let (_wa, _wb, (), ()) =
            tokio::join!(send(a_w, 7), send(b_w, 13), recv(b_r, 7), recv(a_r, 13));
        let rep = relay.await.unwrap();
        assert_eq!(rep.end, SpliceEnd::Closed);
        let total: u64 = sizes.iter().map(|n| *n as u64).sum();
        assert_eq!((rep.a_to_b, rep.b_to_a), (total, total));
    }

    // A leg that ends inside a big zero-masked frame (the kernel path) aborts the other leg:
    // its reader sees an error, never a clean end after a short frame.
    #[tokio::test]
    async fn a_frame_cut_short_in_the_kernel_path_aborts_the_other_leg() {
        let (relay, ca, cb) = relayed().await;
        let (_ca_r, ca_w) = ca.into_split();
        let mut w = FrameWriter::new(ca_w, Role::Client);
        w.set_zero_mask(true);
        // Header for 1 MiB, then only 300 KB of it, then the socket closes.
        let (hb, hn) = w.untouched_header(true, OpCode::Binary, 1 << 20).unwrap();
        let inner = w.get_mut();
        inner.write_all(&hb[..hn]).await.unwrap();
        inner.write_all(&vec![5u8; 300_000]).await.unwrap();
        drop(w);
        drop(_ca_r);
        let (cb_r, _cb_w) = cb.into_split();
        let mut fr = FrameReader::new(cb_r, Bytes::new(), Role::Client, u64::MAX >> 1);
        let h = fr.header().await.unwrap().unwrap();
        assert_eq!(h.len, 1 << 20);
        let mut got = 0usize;
        let err = loop {
            match fr.chunk(1 << 20).await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => panic!("the frame ended cleanly after {got} bytes"),
                Err(e) => break e,
            }
        };
        assert!(got <= 300_000, "{got}");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ),
            "{err}"
        );
        assert!(matches!(relay.await.unwrap().end, SpliceEnd::Aborted(_)));
    }
}

//! Byte-for-byte splicing of two plain streams (TCP or TLS), for the WCF Relay face: after
//! the NetTcpRelay rendezvous both legs carry the end-to-end NMF stream without framing.
//!
//! Semantics match the WebSocket splice: an orderly end (EOF) of one leg shuts down writing
//! towards the other and the other direction keeps flowing (half-close); a failed leg (reset,
//! TLS error) resets the other, so its reader sees an error rather than an orderly end.
//! Buffers come from the shared pool only while bytes are in flight.

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hyrelay_ws::OpCode;
use tokio::sync::Mutex;

use crate::splice::{give_buf, split, take_buf, Leg, ReadSide, SpliceEnd, SpliceReport, WriteSide};
use crate::stream::{abort_fd, Stream};
use crate::ws::{FrameReader, FrameWriter, Role};

async fn copy_dir(mut r: ReadSide, leftover: Bytes, w: &mut WriteSide) -> io::Result<u64> {
    let mut total = leftover.len() as u64;
    if !leftover.is_empty() {
        w.write_all(&leftover).await?;
    }
    loop {
        r.wait_readable().await?;
        let mut buf = take_buf();
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                give_buf(buf);
                return Err(e);
            }
        };
        if n == 0 {
            give_buf(buf);
            w.shutdown().await?;
            return Ok(total);
        }
        let res = w.write_all(&buf[..n]).await;
        give_buf(buf);
        res?;
        total += n as u64;
    }
}

/// Joins two byte streams until both directions have ended or one has failed. `a_left` and
/// `b_left` are bytes already read from `a` and `b` past their handshakes; they are sent on
/// first.
pub async fn splice_bytes(a: Stream, a_left: Bytes, b: Stream, b_left: Bytes) -> SpliceReport {
    let fa: RawFd = a.raw_fd();
    let fb: RawFd = b.raw_fd();
    let (ar, mut aw) = split(a);
    let (br, mut bw) = split(b);
    let (ra, rb) = {
        let d1 = copy_dir(ar, a_left, &mut bw);
        let d2 = copy_dir(br, b_left, &mut aw);
        tokio::pin!(d1, d2);
        let (mut r1, mut r2): (Option<u64>, Option<u64>) = (None, None);
        let failure = loop {
            tokio::select! {
                x = &mut d1, if r1.is_none() => match x {
                    Ok(n) => r1 = Some(n),
                    Err(e) => break Some(format!("leg A: {e}")),
                },
                y = &mut d2, if r2.is_none() => match y {
                    Ok(n) => r2 = Some(n),
                    Err(e) => break Some(format!("leg B: {e}")),
                },
            }
            if r1.is_some() && r2.is_some() {
                break None;
            }
        };
        match failure {
            None => (Ok(()), (r1.unwrap_or(0), r2.unwrap_or(0))),
            Some(reason) => (Err(reason), (r1.unwrap_or(0), r2.unwrap_or(0))),
        }
    };
    let (a_to_b, b_to_a) = rb;
    match ra {
        Ok(()) => SpliceReport {
            end: SpliceEnd::Closed,
            a_to_b,
            b_to_a,
        },
        Err(reason) => {
            abort_fd(fa);
            abort_fd(fb);
            for w in [aw, bw] {
                if let WriteSide::Plain(w) = w {
                    w.forget();
                }
            }
            SpliceReport {
                end: SpliceEnd::Aborted(reason),
                a_to_b,
                b_to_a,
            }
        }
    }
}

/// The WebSocket leg's frames (their payloads) into the byte stream. A Close frame ends this
/// direction with a write shutdown of the byte stream; a Ping is answered on the leg.
async fn ws_to_bytes(
    mut r: FrameReader<ReadSide>,
    w: &mut WriteSide,
    back: &Mutex<FrameWriter<WriteSide>>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let Some(h) = r.header().await? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the WebSocket ended without a Close frame",
            ));
        };
        match h.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                while let Some(c) = r.chunk(256 * 1024).await? {
                    w.write_all(&c).await?;
                    total += c.len() as u64;
                }
            }
            OpCode::Ping => {
                let p = r.payload(125).await?;
                back.lock().await.frame(true, OpCode::Pong, &p).await?;
            }
            OpCode::Pong => {
                r.payload(125).await?;
            }
            OpCode::Close => {
                r.payload(125).await?;
                w.shutdown().await?;
                return Ok(total);
            }
        }
    }
}

/// The byte stream into binary frames, one per read; its end becomes a Close frame.
async fn bytes_to_ws(
    mut r: ReadSide,
    leftover: Bytes,
    w: &Mutex<FrameWriter<WriteSide>>,
) -> io::Result<u64> {
    let mut total = leftover.len() as u64;
    if !leftover.is_empty() {
        w.lock()
            .await
            .frame(true, OpCode::Binary, &leftover)
            .await?;
    }
    loop {
        r.wait_readable().await?;
        let mut buf = take_buf();
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                give_buf(buf);
                return Err(e);
            }
        };
        let res = if n == 0 {
            w.lock().await.close(1000, "").await
        } else {
            w.lock().await.frame(true, OpCode::Binary, &buf[..n]).await
        };
        give_buf(buf);
        res?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Joins a server-side WebSocket leg (a Hybrid Connections sender or listener, which masks
/// its frames) with a byte stream (a WCF Relay NetTcpRelay leg): frames' payloads become
/// bytes and bytes become binary frames; Close ⇄ orderly end, failures reset both. The
/// report's `a_to_b` counts WebSocket → bytes.
pub async fn splice_ws_bytes(ws: Leg, raw: Stream, raw_left: Bytes) -> SpliceReport {
    let fw: RawFd = ws.stream.raw_fd();
    let fr: RawFd = raw.raw_fd();
    let (wr, ww) = split(ws.stream);
    let (rr, mut rw) = split(raw);
    let ww = Mutex::new(FrameWriter::new(ww, Role::Server));
    let (res, counts) = {
        let d1 = ws_to_bytes(
            FrameReader::new(wr, ws.leftover, Role::Server, u64::MAX),
            &mut rw,
            &ww,
        );
        let d2 = bytes_to_ws(rr, raw_left, &ww);
        tokio::pin!(d1, d2);
        let (mut r1, mut r2): (Option<u64>, Option<u64>) = (None, None);
        let failure = loop {
            tokio::select! {
                x = &mut d1, if r1.is_none() => match x {
                    Ok(n) => r1 = Some(n),
                    Err(e) => break Some(format!("WebSocket leg: {e}")),
                },
                y = &mut d2, if r2.is_none() => match y {
                    Ok(n) => r2 = Some(n),
                    Err(e) => break Some(format!("byte leg: {e}")),
                },
            }
            if r1.is_some() && r2.is_some() {
                break None;
            }
        };
        (failure, (r1.unwrap_or(0), r2.unwrap_or(0)))
    };
    let (a_to_b, b_to_a) = counts;
    match res {
        None => {
            let _ = ww.into_inner().into_inner().shutdown().await;
            let _ = rw.shutdown().await;
            SpliceReport {
                end: SpliceEnd::Closed,
                a_to_b,
                b_to_a,
            }
        }
        Some(reason) => {
            abort_fd(fw);
            abort_fd(fr);
            for w in [ww.into_inner().into_inner(), rw] {
                if let WriteSide::Plain(w) = w {
                    w.forget();
                }
            }
            SpliceReport {
                end: SpliceEnd::Aborted(reason),
                a_to_b,
                b_to_a,
            }
        }
    }
}

/// A server-side WebSocket leg as a byte stream, for protocols that treat the WebSocket as
/// one (the WCF Relay's `wsrelayedconnection` and `wsrelayedoneway`): binary and text frame
/// payloads are the bytes read; every write goes out as one binary frame (Microsoft's
/// client needs unfragmented frames); Ping is answered; Close ends reading, and ending the
/// returned stream's writing sends Close. Costs one copy each way through an in-memory pipe.
pub fn ws_as_bytes(leg: Leg) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut pipe_r, mut pipe_w) = tokio::io::split(ours);
    let (r, w) = split(leg.stream);
    let writer = std::sync::Arc::new(Mutex::new(FrameWriter::new(w, Role::Server)));
    let w2 = writer.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w2
                        .lock()
                        .await
                        .frame(true, OpCode::Binary, &buf[..n])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = w2.lock().await.close(1000, "").await;
    });
    tokio::spawn(async move {
        let mut reader = FrameReader::new(r, leg.leftover, Role::Server, u64::MAX);
        loop {
            let h = match reader.header().await {
                Ok(Some(h)) => h,
                _ => break,
            };
            match h.opcode {
                OpCode::Binary | OpCode::Text | OpCode::Continuation => loop {
                    match reader.chunk(64 * 1024).await {
                        Ok(Some(c)) => {
                            if pipe_w.write_all(&c).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                },
                OpCode::Ping => {
                    let Ok(p) = reader.payload(125).await else {
                        return;
                    };
                    let _ = writer.lock().await.frame(true, OpCode::Pong, &p).await;
                }
                OpCode::Pong => {
                    let _ = reader.payload(125).await;
                }
                OpCode::Close => {
                    let _ = reader.payload(125).await;
                    break;
                }
            }
        }
        let _ = pipe_w.shutdown().await;
    });
    theirs
}

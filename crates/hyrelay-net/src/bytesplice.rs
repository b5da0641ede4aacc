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

use crate::splice::{give_buf, split, take_buf, ReadSide, SpliceEnd, SpliceReport, WriteSide};
use crate::stream::{abort_fd, Stream};

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
            None => (Ok(r1.unwrap_or(0)), r2.unwrap_or(0)),
            Some(reason) => (Err(reason), r2.unwrap_or(0)),
        }
    };
    match ra {
        Ok(a_to_b) => SpliceReport {
            end: SpliceEnd::Closed,
            a_to_b,
            b_to_a: rb,
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
                a_to_b: 0,
                b_to_a: rb,
            }
        }
    }
}

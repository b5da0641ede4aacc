//! Listener-side sockets: the control channel and HTTP rendezvous sockets.
//!
//! Both read the same things from a listener: `response` commands followed by one body
//! message, Pings (answered), Pongs (ignored) and Close. The control channel also takes
//! `renewToken` and watches token expiry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use hyrelay_hc::messages::{parse_listener_command, ListenerCommand};
use hyrelay_hc::sas::Rights;
use hyrelay_net::splice::{split, ReadSide, WriteSide};
use hyrelay_net::ws::{FrameReader, FrameWriter, Role};
use hyrelay_net::{Leg, Stream};
use hyrelay_ws::{CloseFrame, FrameHeader, OpCode};
use tokio::sync::{mpsc, Mutex};

use crate::core::{
    now_secs, ControlSignal, Delivery, ListenerHandle, PendingRequest, Relay, ResponseBody,
    ResponseStart,
};
use crate::model::authorize;

/// Largest single-frame response body kept in memory (larger ones are streamed).
const FULL_BODY_MAX: u64 = 8 * 1024 * 1024;
/// Idle time allowed between body frames.
const BODY_IDLE: Duration = Duration::from_secs(60);

/// Turns a hyper upgrade into a splice leg.
pub fn into_leg(up: Upgraded) -> Result<Leg, String> {
    match up.downcast::<TokioIo<Stream>>() {
        Ok(parts) => Ok(Leg {
            stream: parts.io.into_inner(),
            leftover: parts.read_buf,
        }),
        Err(_) => Err("upgraded connection is not a relay stream".into()),
    }
}

/// What the relay knows about a new control channel.
pub struct ListenMeta {
    /// Namespace.
    pub namespace: String,
    /// Hybrid connection.
    pub hc: String,
    /// Registry key.
    pub entity: String,
    /// Tracking id.
    pub tracking_id: String,
    /// Rendezvous base address.
    pub base: String,
    /// Listener address.
    pub remote: SocketAddr,
    /// Token expiry.
    pub expiry: u64,
}

type Reader = FrameReader<ReadSide>;
type Writer = Mutex<FrameWriter<WriteSide>>;

/// Runs a control channel until it ends.
pub async fn run_control(relay: Arc<Relay>, up: Upgraded, meta: ListenMeta) {
    let leg = match into_leg(up) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let (r, w) = split(leg.stream);
    let mut reader = FrameReader::new(r, leg.leftover, Role::Server, u64::MAX >> 1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = Arc::new(ListenerHandle {
        serial: relay.next_serial(),
        tracking_id: meta.tracking_id.clone(),
        entity: meta.entity.clone(),
        namespace: meta.namespace.clone(),
        hc: meta.hc.clone(),
        base: meta.base.clone(),
        remote: meta.remote,
        writer: Mutex::new(FrameWriter::new(w, Role::Server)),
        signals: tx,
        expiry: AtomicU64::new(meta.expiry),
        routed: AtomicU64::new(0),
        since: Instant::now(),
    });
    if let Err(n) = relay.register(handle.clone()) {
        tracing::warn!(entity = %meta.entity, "listener refused: {n} listeners already connected");
        let _ = handle
            .writer
            .lock()
            .await
            .close(
                1008,
                &format!(
                    "Listener quota exceeded: {n} listeners are connected to '{}'",
                    meta.hc
                ),
            )
            .await;
        return;
    }
    relay.counters.listens.fetch_add(1, Ordering::Relaxed);
    relay.announce(&handle);
    tracing::info!(entity = %meta.entity, listener = %meta.tracking_id, remote = %meta.remote, "listener connected");
    let outcome = serve(
        &relay,
        &mut reader,
        &handle.writer,
        Some((&handle, &mut rx)),
        false,
    )
    .await;
    relay.unregister(handle.serial, &handle.entity);
    relay.withdraw(&handle);
    match outcome {
        Ok(()) => {
            tracing::info!(entity = %meta.entity, listener = %meta.tracking_id, "listener disconnected")
        }
        Err(e) => {
            tracing::info!(entity = %meta.entity, listener = %meta.tracking_id, "listener control channel ended: {e}")
        }
    }
}

/// Runs an HTTP rendezvous socket opened by a listener for request `p`.
pub async fn run_rendezvous(relay: Arc<Relay>, up: Upgraded, p: Arc<PendingRequest>) {
    let leg = match into_leg(up) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let (r, w) = split(leg.stream);
    let mut reader = FrameReader::new(r, leg.leftover, Role::Server, u64::MAX >> 1);
    let writer = Arc::new(Mutex::new(FrameWriter::new(w, Role::Server)));
    let delivery = p.delivery.lock().ok().and_then(|mut d| d.take());
    if let Some(d) = delivery {
        let w2 = writer.clone();
        let id = p.id.clone();
        tokio::spawn(async move {
            if let Err(e) = deliver(&w2, d).await {
                tracing::debug!(request = %id, "delivering the request on the rendezvous failed: {e}");
            }
        });
    }
    let outcome = serve(&relay, &mut reader, &writer, None, true).await;
    if let Err(e) = outcome {
        tracing::debug!(request = %p.id, "rendezvous socket ended: {e}");
    }
}

async fn deliver(w: &Writer, d: Delivery) -> std::io::Result<()> {
    use http_body_util::BodyExt;
    let mut g = w.lock().await;
    g.text(&d.json).await?;
    if !d.has_body {
        return Ok(());
    }
    let mut first = true;
    if !d.prefix.is_empty() {
        g.frame_noflush(false, OpCode::Binary, &d.prefix).await?;
        first = false;
    }
    if let Some(mut rest) = d.rest {
        while let Some(f) = rest.frame().await {
            let f = f.map_err(|e| std::io::Error::new(std::io::ErrorKind::BrokenPipe, e))?;
            if let Ok(data) = f.into_data() {
                if data.is_empty() {
                    continue;
                }
                let op = if first {
                    OpCode::Binary
                } else {
                    OpCode::Continuation
                };
                g.frame(false, op, &data).await?;
                first = false;
            }
        }
    }
    let op = if first {
        OpCode::Binary
    } else {
        OpCode::Continuation
    };
    g.frame(true, op, &[]).await
}

async fn pong(w: &Writer, payload: &[u8]) -> Result<(), String> {
    w.lock()
        .await
        .frame(true, OpCode::Pong, payload)
        .await
        .map_err(|e| e.to_string())
}

/// Reads the next data frame header, answering control frames on the way. `Ok(None)`: the
/// peer closed (Close answered) or the stream ended.
async fn next_data_header(reader: &mut Reader, w: &Writer) -> Result<Option<FrameHeader>, String> {
    loop {
        let Some(h) = reader.header().await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        match h.opcode {
            OpCode::Ping => {
                let p = reader.payload(125).await.map_err(|e| e.to_string())?;
                pong(w, &p).await?;
            }
            OpCode::Pong => {
                reader.payload(125).await.map_err(|e| e.to_string())?;
            }
            OpCode::Close => {
                let p = reader.payload(125).await.map_err(|e| e.to_string())?;
                let code = CloseFrame::parse(&p).and_then(|c| c.code).unwrap_or(1000);
                let code = if code == 1005 || code == 1006 {
                    1000
                } else {
                    code
                };
                let _ = w.lock().await.close(code, "").await;
                return Ok(None);
            }
            _ => return Ok(Some(h)),
        }
    }
}

async fn serve(
    relay: &Arc<Relay>,
    reader: &mut Reader,
    w: &Writer,
    mut control: Option<(
        &Arc<ListenerHandle>,
        &mut mpsc::UnboundedReceiver<ControlSignal>,
    )>,
    close_after_response: bool,
) -> Result<(), String> {
    let grace = relay.opts.limits.token_grace;
    let limit = relay.opts.limits.control_message_bytes;
    loop {
        let header = match control.as_mut() {
            Some((handle, rx)) => {
                let exp = handle.expiry.load(Ordering::Relaxed);
                let deadline_secs = exp
                    .saturating_add(grace.as_secs())
                    .saturating_sub(now_secs());
                let sleep = tokio::time::sleep(Duration::from_secs(deadline_secs.max(1)));
                tokio::select! {
                    h = next_data_header(reader, w) => h?,
                    sig = rx.recv() => {
                        match sig {
                            Some(ControlSignal::Close(code, reason)) => {
                                let _ = w.lock().await.close(code, &reason).await;
                            }
                            None => {}
                        }
                        return Ok(());
                    }
                    _ = sleep => {
                        if now_secs() > handle.expiry.load(Ordering::Relaxed) + grace.as_secs() {
                            tracing::info!(entity = %handle.entity, listener = %handle.tracking_id, "listener token expired without renewal: closing with 1008");
                            let _ = w.lock().await.close(1008, "The token has expired; send renewToken before expiry").await;
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            None => next_data_header(reader, w).await?,
        };
        let Some(h) = header else {
            return Ok(());
        };
        match h.opcode {
            OpCode::Text => {
                let mut msg = BytesMut::new();
                msg.extend_from_slice(&reader.payload(limit).await.map_err(|e| e.to_string())?);
                let mut fin = h.fin;
                while !fin {
                    let Some(c) = next_data_header(reader, w).await? else {
                        return Ok(());
                    };
                    if c.opcode != OpCode::Continuation {
                        let _ = w
                            .lock()
                            .await
                            .close(1002, "expected a continuation frame")
                            .await;
                        return Err("protocol error: expected continuation".into());
                    }
                    if msg.len() as u64 + c.len > limit as u64 {
                        let _ = w
                            .lock()
                            .await
                            .close(1009, "control message too large")
                            .await;
                        return Err("control message too large".into());
                    }
                    msg.extend_from_slice(&reader.payload(limit).await.map_err(|e| e.to_string())?);
                    fin = c.fin;
                }
                let text = match std::str::from_utf8(&msg) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = w
                            .lock()
                            .await
                            .close(1007, "control message is not UTF-8")
                            .await;
                        return Err("invalid UTF-8 in a control message".into());
                    }
                };
                match parse_listener_command(text) {
                    Ok(ListenerCommand::Response(r)) => {
                        let target = relay.request(&r.request_id);
                        let sender = target
                            .as_ref()
                            .and_then(|p| p.response.lock().ok().and_then(|mut s| s.take()));
                        if target.is_some() {
                            relay.drop_request(&r.request_id);
                        }
                        // A response to a request this gateway delivered for another one:
                        // collect it and send it back there.
                        let (sender, forward) = match (sender, target.is_none()) {
                            (None, true) => match relay.take_forwarded(&r.request_id) {
                                Some(gw) => {
                                    let (tx, rx) = tokio::sync::oneshot::channel();
                                    let relay2 = relay.clone();
                                    let id = r.request_id.clone();
                                    tokio::spawn(async move {
                                        if let Ok(start) = rx.await {
                                            relay2.forward_response(&gw, &id, start).await;
                                        }
                                    });
                                    (Some(tx), true)
                                }
                                None => (None, false),
                            },
                            (s, _) => (s, false),
                        };
                        if sender.is_none() && !forward {
                            tracing::debug!(request = %r.request_id, "response for an unknown or finished request: discarded");
                        }
                        let start = |body| ResponseStart {
                            status: r.status_code,
                            reason: r.status_description.clone(),
                            headers: r.headers.clone(),
                            body,
                        };
                        if !r.body {
                            if let Some(s) = sender {
                                let _ = s.send(start(ResponseBody::Empty));
                            }
                        } else {
                            relay_body(reader, w, sender, start).await?;
                        }
                        relay.counters.requests.fetch_add(1, Ordering::Relaxed);
                        if let Some(p) = &target {
                            relay
                                .stats(&p.entity)
                                .requests
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        if close_after_response {
                            let _ = w.lock().await.close(1000, "response complete").await;
                            return Ok(());
                        }
                    }
                    Ok(ListenerCommand::RenewToken(tok)) => {
                        let Some((handle, _)) = control.as_ref() else {
                            continue;
                        };
                        let model = relay.model();
                        let ns = model.iter().find(|n| n.name == handle.namespace);
                        let hc = ns.and_then(|n| n.hc(&handle.hc));
                        let res = match ns {
                            Some(ns) => authorize(
                                ns,
                                hc,
                                Some(&tok),
                                Rights::LISTEN,
                                now_secs(),
                                relay.opts.clock_skew.as_secs(),
                            ),
                            None => Err(hyrelay_hc::sas::TokenError::Missing),
                        };
                        match res {
                            Ok(a) => {
                                handle.expiry.store(a.expiry, Ordering::Relaxed);
                                tracing::debug!(entity = %handle.entity, listener = %handle.tracking_id, "token renewed");
                            }
                            Err(e) => {
                                tracing::info!(entity = %handle.entity, listener = %handle.tracking_id, "renewToken rejected ({e}): closing with 1008");
                                let _ = w
                                    .lock()
                                    .await
                                    .close(1008, &format!("renewToken rejected: {e}"))
                                    .await;
                                return Ok(());
                            }
                        }
                    }
                    Ok(ListenerCommand::Unknown(name)) => {
                        tracing::debug!("ignoring unknown listener command '{name}'");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!("malformed control message from listener: {e}");
                    }
                }
            }
            _ => {
                // A binary message or stray continuation outside a response: skip it.
                while reader
                    .chunk(64 * 1024)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {}
            }
        }
    }
}

async fn relay_body(
    reader: &mut Reader,
    w: &Writer,
    sender: Option<tokio::sync::oneshot::Sender<ResponseStart>>,
    start: impl Fn(ResponseBody) -> ResponseStart,
) -> Result<(), String> {
    let first = tokio::time::timeout(BODY_IDLE, next_data_header(reader, w))
        .await
        .map_err(|_| "listener sent no response body within 60 s".to_string())??;
    let Some(mut h) = first else {
        return Ok(());
    };
    if h.fin && h.len <= FULL_BODY_MAX {
        let body = reader
            .payload(FULL_BODY_MAX as usize)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(s) = sender {
            let b = if body.is_empty() {
                ResponseBody::Empty
            } else {
                ResponseBody::Full(body)
            };
            let _ = s.send(start(b));
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    if let Some(s) = sender {
        let _ = s.send(start(ResponseBody::Stream(rx)));
    }
    loop {
        loop {
            let c = tokio::time::timeout(BODY_IDLE, reader.chunk(64 * 1024))
                .await
                .map_err(|_| "listener stalled for 60 s inside a response body".to_string());
            let c = match c {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::BrokenPipe,
                            e.to_string(),
                        )))
                        .await;
                    return Err(e.to_string());
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            e.clone(),
                        )))
                        .await;
                    return Err(e);
                }
            };
            match c {
                Some(c) => {
                    let _ = tx.send(Ok(c)).await;
                }
                None => break,
            }
        }
        if h.fin {
            return Ok(());
        }
        let next = tokio::time::timeout(BODY_IDLE, next_data_header(reader, w)).await;
        match next {
            Ok(Ok(Some(n))) if n.opcode == OpCode::Continuation => h = n,
            Ok(Ok(Some(_))) => {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "listener started a new message inside a response body",
                    )))
                    .await;
                return Err("protocol error: new message inside a body".into());
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "listener went away during the response body",
                    )))
                    .await;
                return Err("listener went away during a response body".into());
            }
        }
    }
}

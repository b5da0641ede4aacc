//! The server side of an AMQP 1.0 connection, sans-IO: feed it bytes and the time, take
//! the bytes it wants written and the events it found; answer link attaches yourself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::codec::{Limits, Value};
use crate::frame::{encode_frame, FrameDecoder, FrameType, Item, PROTOCOL_AMQP, PROTOCOL_SASL};
use crate::performative::{codes, AmqpError, Attach, Performative};
use crate::Error;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our container id in `open`.
    pub container_id: String,
    /// Largest frame we accept (and announce).
    pub max_frame: u32,
    /// Our idle time-out announced in `open`: a peer silent for twice this is dropped.
    pub idle_timeout: Duration,
    /// SASL mechanisms offered (the relay: EXTERNAL and ANONYMOUS; the token is in the link).
    pub mechanisms: Vec<String>,
    /// Refuse peers that skip SASL.
    pub require_sasl: bool,
    /// Decoding limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            container_id: "hyrelay".into(),
            max_frame: 65_536,
            idle_timeout: Duration::from_secs(60),
            mechanisms: vec!["EXTERNAL".into(), "ANONYMOUS".into()],
            require_sasl: false,
            limits: Limits::default(),
        }
    }
}

/// What the peer did.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEvent {
    /// SASL finished with this mechanism.
    Authenticated {
        /// Mechanism chosen.
        mechanism: String,
    },
    /// The peer opened the connection.
    Opened {
        /// The `hostname` field (the relay's virtual host `{ns}-relay.{root}`).
        hostname: Option<String>,
        /// The peer's container id.
        container_id: String,
    },
    /// The peer attached a link: answer with [`ServerConnection::accept_link`] or
    /// [`ServerConnection::refuse_link`].
    Attach {
        /// Session channel.
        channel: u16,
        /// The attach.
        attach: Attach,
    },
    /// A flow on a link (or the session when `handle` is `None`), with its properties.
    Flow {
        /// Session channel.
        channel: u16,
        /// Link handle.
        handle: Option<u32>,
        /// Credit the peer grants on a link we send on.
        link_credit: Option<u32>,
        /// The `properties` map (`Null` when absent): token renewal lives here.
        properties: Value,
    },
    /// A message the peer sent on one of its sending links (already accepted).
    Message {
        /// Session channel.
        channel: u16,
        /// Link handle.
        handle: u32,
        /// The message bytes (sections).
        payload: Vec<u8>,
    },
    /// The peer settled one of our deliveries.
    Disposition {
        /// Delivery id.
        delivery_id: u32,
        /// True for `accepted`.
        accepted: bool,
    },
    /// The peer detached a link.
    Detached {
        /// Session channel.
        channel: u16,
        /// Handle.
        handle: u32,
        /// The error it gave.
        error: Option<AmqpError>,
    },
    /// The connection is over (close exchanged, protocol error or idle time-out); write
    /// what is pending and shut the socket.
    Closed {
        /// Why, when it was not a plain close.
        error: Option<AmqpError>,
    },
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Header,
    Sasl,
    AmqpHeader,
    Open,
    Running,
    Closed,
}

#[derive(Debug, Default)]
struct Link {
    /// We send on it (the peer receives).
    we_send: bool,
    credit: u32,
    delivery_count: u32,
}

#[derive(Debug, Default)]
struct Session {
    remote_channel: u16,
    next_outgoing_id: u32,
    links: HashMap<u32, Link>,
}

/// One server-side AMQP connection.
pub struct ServerConnection {
    cfg: ServerConfig,
    dec: FrameDecoder,
    out: Vec<u8>,
    events: Vec<ConnectionEvent>,
    phase: Phase,
    sessions: HashMap<u16, Session>,
    next_delivery: u32,
    last_in: Instant,
    last_out: Instant,
    peer_idle: Option<Duration>,
}

fn perf(code: u64, fields: Vec<Value>) -> Value {
    // Trailing nulls may be omitted; keep the list as given.
    Value::described(code, fields)
}

impl ServerConnection {
    /// A connection that has just been accepted at `now`.
    pub fn new(cfg: ServerConfig, now: Instant) -> Self {
        let dec = FrameDecoder::new(cfg.max_frame, cfg.limits);
        ServerConnection {
            cfg,
            dec,
            out: Vec::new(),
            events: Vec::new(),
            phase: Phase::Header,
            sessions: HashMap::new(),
            next_delivery: 0,
            last_in: now,
            last_out: now,
            peer_idle: None,
        }
    }

    /// Bytes to write now (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Events found so far (drained).
    pub fn take_events(&mut self) -> Vec<ConnectionEvent> {
        std::mem::take(&mut self.events)
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn send(
        &mut self,
        kind: FrameType,
        channel: u16,
        body: Option<&Value>,
        payload: &[u8],
        now: Instant,
    ) {
        encode_frame(kind, channel, body, payload, &mut self.out);
        self.last_out = now;
    }

    fn fail(&mut self, condition: &str, description: String, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let err = AmqpError::new(condition, description);
        if matches!(self.phase, Phase::Open | Phase::Running) {
            let c = perf(codes::CLOSE, vec![err.to_value()]);
            self.send(FrameType::Amqp, 0, Some(&c), &[], now);
        }
        self.phase = Phase::Closed;
        self.events
            .push(ConnectionEvent::Closed { error: Some(err) });
    }

    /// Input from the peer at `now`.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_in = now;
        self.dec.feed(data);
        loop {
            let item = match self.dec.next() {
                Ok(Some(i)) => i,
                Ok(None) => return,
                Err(e) => {
                    if self.phase == Phase::Header {
                        // Not AMQP: say which protocol this is (part 2.2) and close.
                        self.out.extend_from_slice(b"AMQP\x03\x01\x00\x00");
                    }
                    let cond = match e {
                        Error::Limit {
                            what: "frame size", ..
                        } => "amqp:connection:framing-error",
                        _ => "amqp:decode-error",
                    };
                    self.fail(cond, e.to_string(), now);
                    return;
                }
            };
            self.item(item, now);
            if self.phase == Phase::Closed {
                return;
            }
        }
    }

    fn item(&mut self, item: Item, now: Instant) {
        match (self.phase, item) {
            (Phase::Header | Phase::AmqpHeader, Item::Header { protocol, version }) => {
                let ours_first = self.phase == Phase::Header;
                if version != [1, 0, 0]
                    || !(protocol == PROTOCOL_SASL && ours_first || protocol == PROTOCOL_AMQP)
                {
                    // Answer with the header we do speak, then close (part 2.2).
                    let p = if ours_first {
                        PROTOCOL_SASL
                    } else {
                        PROTOCOL_AMQP
                    };
                    self.out
                        .extend_from_slice(&[b'A', b'M', b'Q', b'P', p, 1, 0, 0]);
                    self.phase = Phase::Closed;
                    self.events.push(ConnectionEvent::Closed {
                        error: Some(AmqpError::new(
                            "amqp:not-implemented",
                            format!("protocol {protocol} version {version:?} is not served here"),
                        )),
                    });
                    return;
                }
                if protocol == PROTOCOL_AMQP && ours_first && self.cfg.require_sasl {
                    self.out.extend_from_slice(b"AMQP\x03\x01\x00\x00");
                    self.phase = Phase::Closed;
                    self.events.push(ConnectionEvent::Closed {
                        error: Some(AmqpError::new(
                            "amqp:unauthorized-access",
                            "SASL is required",
                        )),
                    });
                    return;
                }
                self.out
                    .extend_from_slice(&[b'A', b'M', b'Q', b'P', protocol, 1, 0, 0]);
                if protocol == PROTOCOL_SASL {
                    let mechs =
                        Value::Array(self.cfg.mechanisms.iter().map(|m| Value::sym(m)).collect());
                    let b = perf(codes::SASL_MECHANISMS, vec![mechs]);
                    self.send(FrameType::Sasl, 0, Some(&b), &[], now);
                    self.phase = Phase::Sasl;
                } else {
                    self.phase = Phase::Open;
                }
            }
            (Phase::Sasl, Item::Frame(f)) => {
                let p = f.body.as_ref().and_then(Performative::from_value);
                match p {
                    Some(p) if p.code == codes::SASL_INIT => {
                        let mech = p.field(0).as_str().unwrap_or("").to_string();
                        let ok = self.cfg.mechanisms.contains(&mech);
                        let b = perf(
                            codes::SASL_OUTCOME,
                            vec![Value::Ubyte(if ok { 0 } else { 1 })],
                        );
                        self.send(FrameType::Sasl, 0, Some(&b), &[], now);
                        if ok {
                            self.events
                                .push(ConnectionEvent::Authenticated { mechanism: mech });
                            self.phase = Phase::AmqpHeader;
                            self.dec.expect_header();
                        } else {
                            self.phase = Phase::Closed;
                            self.events.push(ConnectionEvent::Closed {
                                error: Some(AmqpError::new(
                                    "amqp:unauthorized-access",
                                    format!("SASL mechanism '{mech}' is not offered"),
                                )),
                            });
                        }
                    }
                    _ => {
                        self.phase = Phase::Closed;
                        self.events.push(ConnectionEvent::Closed {
                            error: Some(AmqpError::new("amqp:decode-error", "expected sasl-init")),
                        });
                    }
                }
            }
            (Phase::Open | Phase::Running, Item::Frame(f)) => {
                let Some(body) = f.body else {
                    return; // heartbeat
                };
                if f.kind != FrameType::Amqp {
                    self.fail(
                        "amqp:connection:framing-error",
                        "a SASL frame after SASL".into(),
                        now,
                    );
                    return;
                }
                let Some(p) = Performative::from_value(&body) else {
                    self.fail(
                        "amqp:decode-error",
                        "a frame body that is not a performative".into(),
                        now,
                    );
                    return;
                };
                self.performative(f.channel, p, f.payload, now);
            }
            (_, other) => {
                let what = match other {
                    Item::Header { .. } => "an unexpected protocol header",
                    Item::Frame(_) => "a frame before the protocol header",
                };
                self.fail("amqp:connection:framing-error", what.into(), now);
            }
        }
    }

    fn performative(&mut self, channel: u16, p: Performative, payload: Vec<u8>, now: Instant) {
        if self.phase == Phase::Open && p.code != codes::OPEN {
            self.fail(
                "amqp:connection:framing-error",
                "the first frame must be open".into(),
                now,
            );
            return;
        }
        match p.code {
            codes::OPEN => {
                if self.phase != Phase::Open {
                    self.fail("amqp:connection:framing-error", "a second open".into(), now);
                    return;
                }
                self.peer_idle = p
                    .field(4)
                    .as_u64()
                    .filter(|v| *v > 0)
                    .map(Duration::from_millis);
                let o = perf(
                    codes::OPEN,
                    vec![
                        Value::String(self.cfg.container_id.clone()),
                        Value::Null,
                        Value::Uint(self.cfg.max_frame),
                        Value::Ushort(255),
                        Value::Uint(self.cfg.idle_timeout.as_millis() as u32),
                    ],
                );
                self.send(FrameType::Amqp, 0, Some(&o), &[], now);
                self.phase = Phase::Running;
                self.events.push(ConnectionEvent::Opened {
                    hostname: p.field(1).as_str().map(str::to_string),
                    container_id: p.field(0).as_str().unwrap_or("").to_string(),
                });
            }
            codes::BEGIN => {
                if self.sessions.contains_key(&channel) || self.sessions.len() >= 256 {
                    self.fail(
                        "amqp:connection:framing-error",
                        format!("begin on channel {channel} in use or too many sessions"),
                        now,
                    );
                    return;
                }
                let b = perf(
                    codes::BEGIN,
                    vec![
                        Value::Ushort(channel),
                        Value::Uint(1),
                        Value::Uint(5000),
                        Value::Uint(5000),
                    ],
                );
                self.send(FrameType::Amqp, channel, Some(&b), &[], now);
                self.sessions.insert(
                    channel,
                    Session {
                        remote_channel: channel,
                        next_outgoing_id: 1,
                        links: HashMap::new(),
                    },
                );
            }
            codes::ATTACH => {
                let Some(a) = Attach::from_performative(&p) else {
                    self.fail("amqp:decode-error", "a malformed attach".into(), now);
                    return;
                };
                let Some(s) = self.sessions.get_mut(&channel) else {
                    self.fail(
                        "amqp:connection:framing-error",
                        format!("attach on channel {channel} without begin"),
                        now,
                    );
                    return;
                };
                if s.links.contains_key(&a.handle) || s.links.len() >= 1024 {
                    self.fail(
                        "amqp:session:handle-in-use",
                        format!("handle {} in use", a.handle),
                        now,
                    );
                    return;
                }
                s.links.insert(
                    a.handle,
                    Link {
                        we_send: a.peer_is_receiver,
                        ..Default::default()
                    },
                );
                self.events
                    .push(ConnectionEvent::Attach { channel, attach: a });
            }
            codes::FLOW => {
                let handle = p.field(4).as_u64().and_then(|h| u32::try_from(h).ok());
                let credit = p.field(6).as_u64().and_then(|c| u32::try_from(c).ok());
                if let (Some(h), Some(c)) = (handle, credit) {
                    if let Some(l) = self
                        .sessions
                        .get_mut(&channel)
                        .and_then(|s| s.links.get_mut(&h))
                    {
                        // credit = delivery-count(peer's view) + link-credit - our delivery-count
                        let peer_count = p.field(5).as_u64().unwrap_or(0) as u32;
                        l.credit = peer_count.wrapping_add(c).wrapping_sub(l.delivery_count);
                    }
                }
                self.events.push(ConnectionEvent::Flow {
                    channel,
                    handle,
                    link_credit: credit,
                    properties: p.field(10).clone(),
                });
            }
            codes::TRANSFER => {
                let handle = p.field(0).as_u64().unwrap_or(0) as u32;
                let settled = p.field(4).as_bool().unwrap_or(false);
                if !settled {
                    if let Some(id) = p.field(1).as_u64() {
                        let d = perf(
                            codes::DISPOSITION,
                            vec![
                                Value::Bool(true),
                                Value::Uint(id as u32),
                                Value::Null,
                                Value::Bool(true),
                                perf(codes::ACCEPTED, vec![]),
                            ],
                        );
                        self.send(FrameType::Amqp, channel, Some(&d), &[], now);
                    }
                }
                self.events.push(ConnectionEvent::Message {
                    channel,
                    handle,
                    payload,
                });
            }
            codes::DISPOSITION => {
                let first = p.field(1).as_u64().unwrap_or(0) as u32;
                let last = p.field(2).as_u64().map(|l| l as u32).unwrap_or(first);
                let accepted = p
                    .field(4)
                    .as_described_list()
                    .is_some_and(|(c, _)| c == codes::ACCEPTED);
                let mut id = first;
                loop {
                    self.events.push(ConnectionEvent::Disposition {
                        delivery_id: id,
                        accepted,
                    });
                    if id == last || last.wrapping_sub(first) > 10_000 {
                        break;
                    }
                    id = id.wrapping_add(1);
                }
            }
            codes::DETACH => {
                let handle = p.field(0).as_u64().unwrap_or(0) as u32;
                let error = AmqpError::from_value(p.field(2));
                if let Some(s) = self.sessions.get_mut(&channel) {
                    if s.links.remove(&handle).is_some() {
                        let d = perf(codes::DETACH, vec![Value::Uint(handle), Value::Bool(true)]);
                        self.send(FrameType::Amqp, channel, Some(&d), &[], now);
                    }
                }
                self.events.push(ConnectionEvent::Detached {
                    channel,
                    handle,
                    error,
                });
            }
            codes::END => {
                if let Some(s) = self.sessions.remove(&channel) {
                    for h in s.links.keys() {
                        self.events.push(ConnectionEvent::Detached {
                            channel,
                            handle: *h,
                            error: None,
                        });
                    }
                    let e = perf(codes::END, vec![]);
                    self.send(FrameType::Amqp, channel, Some(&e), &[], now);
                }
            }
            codes::CLOSE => {
                let c = perf(codes::CLOSE, vec![]);
                self.send(FrameType::Amqp, 0, Some(&c), &[], now);
                self.phase = Phase::Closed;
                self.events.push(ConnectionEvent::Closed {
                    error: AmqpError::from_value(p.field(0)),
                });
            }
            other => {
                self.fail(
                    "amqp:not-implemented",
                    format!("performative 0x{other:x}"),
                    now,
                );
            }
        }
    }

    /// Accepts an attached link: our attach back (role inverted, source and target
    /// mirrored) and, when the peer sends on it, `credit` to do so. `properties` go in our
    /// attach.
    pub fn accept_link(
        &mut self,
        channel: u16,
        a: &Attach,
        credit: u32,
        properties: Value,
        now: Instant,
    ) {
        let we_send = a.peer_is_receiver;
        let reply = perf(
            codes::ATTACH,
            vec![
                Value::String(a.name.clone()),
                Value::Uint(a.handle),
                Value::Bool(!a.peer_is_receiver),
                Value::Null,
                Value::Null,
                a.source.clone(),
                a.target.clone(),
                Value::Null,
                Value::Null,
                if we_send { Value::Uint(0) } else { Value::Null },
                Value::Null,
                Value::Null,
                Value::Null,
                properties,
            ],
        );
        let remote = self
            .sessions
            .get(&channel)
            .map(|s| s.remote_channel)
            .unwrap_or(channel);
        self.send(FrameType::Amqp, remote, Some(&reply), &[], now);
        if !we_send {
            let next_out = self
                .sessions
                .get(&channel)
                .map_or(1, |s| s.next_outgoing_id);
            let f = perf(
                codes::FLOW,
                vec![
                    Value::Uint(0),
                    Value::Uint(5000),
                    Value::Uint(next_out),
                    Value::Uint(5000),
                    Value::Uint(a.handle),
                    Value::Uint(0),
                    Value::Uint(credit),
                ],
            );
            self.send(FrameType::Amqp, remote, Some(&f), &[], now);
        }
    }

    /// Refuses an attached link: an attach with no source or target, then a detach that
    /// carries `error` (part 2.6.3).
    pub fn refuse_link(&mut self, channel: u16, a: &Attach, error: &AmqpError, now: Instant) {
        let reply = perf(
            codes::ATTACH,
            vec![
                Value::String(a.name.clone()),
                Value::Uint(a.handle),
                Value::Bool(!a.peer_is_receiver),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        );
        self.send(FrameType::Amqp, channel, Some(&reply), &[], now);
        self.detach(channel, a.handle, Some(error), now);
    }

    /// Detaches (closes) a link, with an error for the peer.
    pub fn detach(&mut self, channel: u16, handle: u32, error: Option<&AmqpError>, now: Instant) {
        if let Some(s) = self.sessions.get_mut(&channel) {
            s.links.remove(&handle);
        }
        let mut f = vec![Value::Uint(handle), Value::Bool(true)];
        if let Some(e) = error {
            f.push(e.to_value());
        }
        let d = perf(codes::DETACH, f);
        self.send(FrameType::Amqp, channel, Some(&d), &[], now);
    }

    /// Sends one message (already encoded sections) on a link the peer receives on;
    /// `None` when the peer has granted no credit. Returns the delivery id.
    pub fn transfer(
        &mut self,
        channel: u16,
        handle: u32,
        message: &[u8],
        now: Instant,
    ) -> Option<u32> {
        let s = self.sessions.get_mut(&channel)?;
        let l = s
            .links
            .get_mut(&handle)
            .filter(|l| l.we_send && l.credit > 0)?;
        l.credit -= 1;
        l.delivery_count = l.delivery_count.wrapping_add(1);
        s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
        let id = self.next_delivery;
        self.next_delivery = self.next_delivery.wrapping_add(1);
        let t = perf(
            codes::TRANSFER,
            vec![
                Value::Uint(handle),
                Value::Uint(id),
                Value::Binary(id.to_be_bytes().to_vec()),
                Value::Uint(0),
                Value::Bool(false),
            ],
        );
        let remote = s.remote_channel;
        self.send(FrameType::Amqp, remote, Some(&t), message, now);
        Some(id)
    }

    /// Link credit the peer has granted us on `handle`.
    pub fn credit(&self, channel: u16, handle: u32) -> u32 {
        self.sessions
            .get(&channel)
            .and_then(|s| s.links.get(&handle))
            .map_or(0, |l| l.credit)
    }

    /// Closes the connection with an error.
    pub fn close(&mut self, error: Option<&AmqpError>, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        let c = perf(
            codes::CLOSE,
            error.map(|e| vec![e.to_value()]).unwrap_or_default(),
        );
        self.send(FrameType::Amqp, 0, Some(&c), &[], now);
        self.phase = Phase::Closed;
        self.events.push(ConnectionEvent::Closed {
            error: error.cloned(),
        });
    }

    /// Time passes: heartbeats (an empty frame when we have been silent for half the
    /// peer's idle time-out) and the peer's own silence (twice ours closes it). Returns
    /// when to call again.
    pub fn tick(&mut self, now: Instant) -> Instant {
        if self.phase == Phase::Closed {
            return now + Duration::from_secs(3600);
        }
        if now.duration_since(self.last_in) > self.cfg.idle_timeout * 2 {
            self.fail(
                "amqp:resource-limit-exceeded",
                format!("no frame from the peer for {:?}", self.cfg.idle_timeout * 2),
                now,
            );
            return now + Duration::from_secs(3600);
        }
        let beat = self
            .peer_idle
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(30));
        if self.phase == Phase::Running && now.duration_since(self.last_out) >= beat {
            self.send(FrameType::Amqp, 0, None, &[], now);
        }
        let next_beat = self.last_out + beat;
        let next_idle = self.last_in + self.cfg.idle_timeout * 2;
        next_beat
            .min(next_idle)
            .max(now + Duration::from_millis(10))
    }
}

/// A message of one `data` section (how the relay delivers to listeners).
pub fn data_message(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::codec::encode_value(
        &Value::Described(
            Box::new(Value::Ulong(codes::DATA)),
            Box::new(Value::Binary(bytes.to_vec())),
        ),
        &mut out,
    );
    out
}

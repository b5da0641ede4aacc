//! Client and server framing-session state machines (sans-IO).
//!
//! Both follow the same pattern: [`feed`](ServerSession::feed) received bytes, call
//! `poll_event` until it returns `Ok(None)`, react to events with the action methods,
//! and send whatever [`take_output`](ServerSession::take_output) returns. Time is passed
//! in (`now`, any monotonic origin).

use core::time::Duration;

use crate::codec::{encode_record, Decoder};
use crate::{Encoding, Error, FaultCode, Limits, Mode, Record};

/// What the server learned from a complete preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preamble {
    /// Version (major, minor).
    pub version: (u8, u8),
    /// Mode.
    pub mode: Mode,
    /// Via URI as sent.
    pub via: String,
    /// Message encoding.
    pub encoding: Encoding,
    /// Upgrades that were performed (in order).
    pub upgrades: Vec<String>,
}

/// What a server accepts before asking the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Accepted modes; others get `UnsupportedMode`. Default: singleton-unsized and duplex
    /// (what .NET's TCP listener accepts).
    pub modes: Vec<Mode>,
    /// Offered upgrade protocols ([`UPGRADE_TLS`](crate::UPGRADE_TLS),
    /// [`UPGRADE_NEGOTIATE`](crate::UPGRADE_NEGOTIATE)); others get `UpgradeInvalid`.
    /// Default: none.
    pub upgrades: Vec<String>,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        ServerPolicy {
            modes: vec![Mode::SingletonUnsized, Mode::Duplex],
            upgrades: Vec::new(),
        }
    }
}

/// Events produced by [`ServerSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The preamble is complete: check the Via and encoding, then call
    /// [`ServerSession::accept_preamble`] or [`ServerSession::fault`]
    /// (`EndpointNotFound`, `ContentTypeInvalid`, ...).
    PreambleComplete(Preamble),
    /// The client asked for an upgrade the policy offers: call
    /// [`ServerSession::accept_upgrade`] (then run the protocol) or fault.
    UpgradeRequested(String),
    /// A complete message: a SizedEnvelope payload or an assembled UnsizedEnvelope.
    Message(Vec<u8>),
    /// Raw message bytes of a singleton-sized session.
    MessageBytes(Vec<u8>),
    /// The client closed its framing session (End record, or end of stream in
    /// singleton-sized mode). A new preamble may follow on the same connection.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SState {
    Version,
    Mode,
    Via,
    Encoding,
    Tail,
    AwaitUpgradeDecision,
    Upgrading,
    AwaitAccept,
    Established,
    Ended,
    Faulted,
    Failed,
}

impl SState {
    fn name(self) -> &'static str {
        match self {
            SState::Version => "expecting Version",
            SState::Mode => "expecting Mode",
            SState::Via => "expecting Via",
            SState::Encoding => "expecting encoding",
            SState::Tail => "expecting UpgradeRequest or PreambleEnd",
            SState::AwaitUpgradeDecision => "awaiting upgrade decision",
            SState::Upgrading => "upgrading",
            SState::AwaitAccept => "awaiting preamble decision",
            SState::Established => "established",
            SState::Ended => "ended",
            SState::Faulted => "faulted",
            SState::Failed => "failed",
        }
    }
    fn in_preamble(self) -> bool {
        matches!(
            self,
            SState::Version
                | SState::Mode
                | SState::Via
                | SState::Encoding
                | SState::Tail
                | SState::AwaitUpgradeDecision
                | SState::Upgrading
                | SState::AwaitAccept
        )
    }
}

/// True if `s` looks like an absolute URI (`scheme:rest`, no whitespace or controls).
pub(crate) fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Server side of one connection.
///
/// On an error, [`take_output`](Self::take_output) holds the Fault record when .NET would
/// send one ([`Error::server_fault`]): send it, shut down the sending direction, read and
/// discard up to 64 KiB, then close. Without a fault the connection is just aborted.
#[derive(Debug, Clone)]
pub struct ServerSession {
    limits: Limits,
    policy: ServerPolicy,
    decoder: Decoder,
    state: SState,
    out: Vec<u8>,
    started: Option<Duration>,
    version: (u8, u8),
    mode: Option<Mode>,
    via: String,
    upgrades: Vec<String>,
    /// Carried from the encoding record to PreambleEnd.
    encoding: Option<Encoding>,
    unsized_buf: Option<Vec<u8>>,
}

impl ServerSession {
    /// A server session for a freshly accepted connection.
    pub fn new(limits: Limits, policy: ServerPolicy) -> Self {
        ServerSession {
            limits,
            policy,
            decoder: Decoder::new(limits),
            state: SState::Version,
            out: Vec::new(),
            started: None,
            version: (0, 0),
            mode: None,
            via: String::new(),
            upgrades: Vec::new(),
            encoding: None,
            unsized_buf: None,
        }
    }

    /// Start the preamble timer (call when the connection is accepted).
    pub fn start(&mut self, now: Duration) {
        self.started = Some(now);
    }

    /// Fail with [`Error::PreambleTimeout`] if the preamble is still incomplete
    /// `limits.preamble_timeout` after [`start`](Self::start).
    pub fn check_timeout(&mut self, now: Duration) -> Result<(), Error> {
        if let Some(t0) = self.started {
            if self.state.in_preamble() && now.saturating_sub(t0) >= self.limits.preamble_timeout {
                self.state = SState::Failed;
                return Err(Error::PreambleTimeout {
                    offset: self.decoder.offset(),
                });
            }
        }
        Ok(())
    }

    /// When the preamble must be complete, for the caller's timer.
    pub fn preamble_deadline(&self) -> Option<Duration> {
        self.started
            .filter(|_| self.state.in_preamble())
            .map(|t| t + self.limits.preamble_timeout)
    }

    /// The negotiated mode, once known.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Buffer received bytes (decrypted bytes after an upgrade completed).
    pub fn feed(&mut self, data: &[u8]) {
        self.decoder.feed(data);
    }

    /// Bytes to send to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// Upgrade-protocol bytes received after accepting an upgrade (TLS records etc.).
    pub fn take_upgrade_bytes(&mut self) -> Vec<u8> {
        self.decoder.take_opaque()
    }

    fn state_err(&self) -> Error {
        Error::InvalidState {
            offset: self.decoder.offset(),
            state: self.state.name(),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        match e.server_fault() {
            Some(code) if self.state.in_preamble() || code == FaultCode::MaxMessageSizeExceeded => {
                encode_record(&Record::Fault(code.uri()), &mut self.out);
                self.state = SState::Faulted;
            }
            _ => self.state = SState::Failed,
        }
        e
    }

    /// Send a Fault record (e.g. `EndpointNotFound` after [`ServerEvent::PreambleComplete`]).
    /// The session is finished afterwards: shut down, drain, close.
    pub fn fault(&mut self, code: FaultCode) {
        encode_record(&Record::Fault(code.uri()), &mut self.out);
        self.state = SState::Faulted;
    }

    /// Accept the preamble: queues PreambleAck (modes 1 and 2) and starts delivering
    /// messages (already-pipelined envelopes are kept).
    pub fn accept_preamble(&mut self) -> Result<(), Error> {
        if self.state != SState::AwaitAccept {
            return Err(self.state_err());
        }
        match self.mode {
            Some(m) if m.has_preamble_ack() => encode_record(&Record::PreambleAck, &mut self.out),
            Some(Mode::SingletonSized) => self.decoder.enter_opaque(),
            _ => {}
        }
        self.state = SState::Established;
        Ok(())
    }

    /// Accept a requested upgrade: queues UpgradeResponse. Run the upgrade protocol over
    /// the raw connection (bytes already received: [`take_upgrade_bytes`](Self::take_upgrade_bytes)),
    /// then call [`upgrade_complete`](Self::upgrade_complete).
    pub fn accept_upgrade(&mut self) -> Result<(), Error> {
        if self.state != SState::AwaitUpgradeDecision {
            return Err(self.state_err());
        }
        encode_record(&Record::UpgradeResponse, &mut self.out);
        self.state = SState::Upgrading;
        Ok(())
    }

    /// The upgrade protocol is established: from now on feed decrypted bytes and encrypt
    /// the output. Framing continues (further UpgradeRequest or PreambleEnd).
    pub fn upgrade_complete(&mut self) -> Result<(), Error> {
        if self.state != SState::Upgrading {
            return Err(self.state_err());
        }
        self.decoder.resume();
        self.state = SState::Tail;
        Ok(())
    }

    /// Send a message: a SizedEnvelope in duplex mode, an UnsizedEnvelope (one chunk,
    /// then the terminator) in singleton-unsized mode.
    pub fn send_message(&mut self, payload: &[u8]) -> Result<(), Error> {
        if !matches!(self.state, SState::Established | SState::Ended) {
            return Err(self.state_err());
        }
        match self.mode {
            Some(Mode::Duplex) => {
                encode_record(&Record::SizedEnvelope(payload.to_vec()), &mut self.out)
            }
            Some(Mode::SingletonUnsized) => {
                encode_record(&Record::UnsizedEnvelopeStart, &mut self.out);
                if !payload.is_empty() {
                    encode_record(&Record::UnsizedChunk(payload.to_vec()), &mut self.out);
                }
                encode_record(&Record::UnsizedEnvelopeEnd, &mut self.out);
            }
            _ => return Err(self.state_err()),
        }
        Ok(())
    }

    /// Queue an End record (duplex close; end of a singleton reply).
    pub fn send_end(&mut self) -> Result<(), Error> {
        if !matches!(self.state, SState::Established | SState::Ended) {
            return Err(self.state_err());
        }
        encode_record(&Record::End, &mut self.out);
        Ok(())
    }

    /// The connection reached end of stream. In singleton-sized mode this ends the
    /// message (remaining bytes, then [`ServerEvent::End`]); after End, a fault or before
    /// any byte it is fine; anywhere else it is [`Error::PrematureEof`].
    pub fn feed_eof(&mut self) -> Result<Vec<ServerEvent>, Error> {
        let offset = self.decoder.offset() + self.decoder.buffered() as u64;
        match self.state {
            SState::Established if self.mode == Some(Mode::SingletonSized) => {
                let rest = self.decoder.take_opaque();
                self.state = SState::Ended;
                let mut ev = Vec::new();
                if !rest.is_empty() {
                    ev.push(ServerEvent::MessageBytes(rest));
                }
                ev.push(ServerEvent::End);
                Ok(ev)
            }
            SState::Ended | SState::Faulted | SState::Failed => Ok(Vec::new()),
            SState::Version if self.decoder.buffered() == 0 => Ok(Vec::new()),
            _ => {
                self.state = SState::Failed;
                Err(Error::PrematureEof { offset })
            }
        }
    }

    /// The next event, `Ok(None)` when more input (or an application decision) is needed.
    pub fn poll_event(&mut self) -> Result<Option<ServerEvent>, Error> {
        loop {
            match self.state {
                SState::AwaitUpgradeDecision
                | SState::Upgrading
                | SState::AwaitAccept
                | SState::Faulted => return Ok(None),
                SState::Failed => {
                    return Err(Error::Failed {
                        offset: self.decoder.offset(),
                    })
                }
                SState::Established if self.mode == Some(Mode::SingletonSized) => {
                    let b = self.decoder.take_opaque();
                    return Ok((!b.is_empty()).then_some(ServerEvent::MessageBytes(b)));
                }
                _ => {}
            }
            let off = self.decoder.offset();
            let rec = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            };
            if let Some(ev) = self.on_record(rec, off)? {
                return Ok(Some(ev));
            }
        }
    }

    fn unexpected(&mut self, rec: &Record, off: u64, reason: &'static str) -> Error {
        let e = Error::UnexpectedRecord {
            offset: off,
            record: rec.name(),
            reason,
        };
        self.fail(e)
    }

    fn on_record(&mut self, rec: Record, off: u64) -> Result<Option<ServerEvent>, Error> {
        match (self.state, rec) {
            (SState::Version | SState::Ended, Record::Version { major, minor }) => {
                if major != 1 {
                    return Err(self.fail(Error::UnsupportedVersion {
                        offset: off,
                        major,
                        minor,
                    }));
                }
                self.version = (major, minor);
                self.upgrades.clear();
                self.state = SState::Mode;
                Ok(None)
            }
            (SState::Mode, Record::Mode(b)) => match Mode::from_byte(b) {
                Some(m) if self.policy.modes.contains(&m) => {
                    self.mode = Some(m);
                    self.state = SState::Via;
                    Ok(None)
                }
                _ => Err(self.fail(Error::UnsupportedMode {
                    offset: off,
                    mode: b,
                })),
            },
            (SState::Via, Record::Via(v)) => {
                if !is_absolute_uri(&v) {
                    return Err(self.fail(Error::InvalidVia { offset: off }));
                }
                self.via = v;
                self.state = SState::Encoding;
                Ok(None)
            }
            (SState::Encoding, r @ (Record::KnownEncoding(_) | Record::ExtensibleEncoding(_))) => {
                let encoding = match r {
                    Record::KnownEncoding(v) => Encoding::Known(v),
                    Record::ExtensibleEncoding(s) => Encoding::Extensible(s),
                    _ => return Err(self.state_err()),
                };
                let mode = self.mode.ok_or_else(|| self.state_err())?;
                if mode.has_preamble_ack() {
                    self.state = SState::Tail;
                    self.encoding = Some(encoding);
                    Ok(None)
                } else {
                    self.state = SState::AwaitAccept;
                    Ok(Some(ServerEvent::PreambleComplete(self.preamble(encoding))))
                }
            }
            (SState::Tail, Record::UpgradeRequest(p)) => {
                if self.policy.upgrades.contains(&p) {
                    self.upgrades.push(p.clone());
                    self.state = SState::AwaitUpgradeDecision;
                    Ok(Some(ServerEvent::UpgradeRequested(p)))
                } else {
                    Err(self.fail(Error::UpgradeInvalid {
                        offset: off,
                        protocol: p,
                    }))
                }
            }
            (SState::Tail, Record::PreambleEnd) => {
                let encoding = self.encoding.take().ok_or_else(|| self.state_err())?;
                self.state = SState::AwaitAccept;
                Ok(Some(ServerEvent::PreambleComplete(self.preamble(encoding))))
            }
            (SState::Established, rec) => self.on_established(rec, off),
            (SState::Ended, rec) => Err(self.unexpected(
                &rec,
                off,
                "record after End (only a new Version may follow)",
            )),
            (_, rec) => Err(self.unexpected(&rec, off, "out of sequence in the preamble")),
        }
    }

    fn preamble(&self, encoding: Encoding) -> Preamble {
        Preamble {
            version: self.version,
            mode: self.mode.unwrap_or(Mode::Duplex),
            via: self.via.clone(),
            encoding,
            upgrades: self.upgrades.clone(),
        }
    }

    fn on_established(&mut self, rec: Record, off: u64) -> Result<Option<ServerEvent>, Error> {
        let mode = self.mode.unwrap_or(Mode::Duplex);
        match (mode, rec) {
            (Mode::Duplex | Mode::Simplex, Record::SizedEnvelope(b)) => {
                Ok(Some(ServerEvent::Message(b)))
            }
            (Mode::SingletonUnsized, Record::UnsizedEnvelopeStart)
                if self.unsized_buf.is_none() =>
            {
                self.unsized_buf = Some(Vec::new());
                Ok(None)
            }
            (Mode::SingletonUnsized, Record::UnsizedChunk(c)) => {
                if let Some(buf) = self.unsized_buf.as_mut() {
                    buf.extend_from_slice(&c);
                }
                Ok(None)
            }
            (Mode::SingletonUnsized, Record::UnsizedEnvelopeEnd) => {
                Ok(self.unsized_buf.take().map(ServerEvent::Message))
            }
            (_, Record::End) => {
                self.state = SState::Ended;
                self.unsized_buf = None;
                Ok(Some(ServerEvent::End))
            }
            (_, rec) => Err(self.unexpected(&rec, off, "not allowed in this mode")),
        }
    }
}

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Mode to request.
    pub mode: Mode,
    /// Via (absolute URI of the target endpoint).
    pub via: String,
    /// Message encoding.
    pub encoding: Encoding,
    /// Upgrade to request before PreambleEnd (modes 1 and 2 only).
    pub upgrade: Option<String>,
}

/// Events produced by [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server acknowledged the preamble: messages may be sent.
    PreambleAck,
    /// The server accepted the upgrade: run it over the raw connection (bytes already
    /// received: [`ClientSession::take_upgrade_bytes`]), then call
    /// [`ClientSession::upgrade_complete`].
    UpgradeAccepted,
    /// A complete message from the server.
    Message(Vec<u8>),
    /// The server ended the framing session.
    End,
    /// The server sent a fault; the session is over.
    Fault {
        /// The fault URI.
        uri: String,
        /// The standard code, if it is one.
        code: Option<FaultCode>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Idle,
    AwaitAck,
    AwaitUpgrade,
    Upgrading,
    Established,
    Ended,
    Faulted,
    Failed,
}

impl CState {
    fn name(self) -> &'static str {
        match self {
            CState::Idle => "idle",
            CState::AwaitAck => "awaiting PreambleAck",
            CState::AwaitUpgrade => "awaiting UpgradeResponse",
            CState::Upgrading => "upgrading",
            CState::Established => "established",
            CState::Ended => "ended",
            CState::Faulted => "faulted",
            CState::Failed => "failed",
        }
    }
}

/// Client side of one connection.
#[derive(Debug, Clone)]
pub struct ClientSession {
    config: ClientConfig,
    decoder: Decoder,
    state: CState,
    out: Vec<u8>,
    unsized_buf: Option<Vec<u8>>,
    sent_end: bool,
}

impl ClientSession {
    /// A client session; nothing is sent until [`start`](Self::start).
    pub fn new(config: ClientConfig, limits: Limits) -> Self {
        ClientSession {
            config,
            decoder: Decoder::new(limits),
            state: CState::Idle,
            out: Vec::new(),
            unsized_buf: None,
            sent_end: false,
        }
    }

    fn state_err(&self) -> Error {
        Error::InvalidState {
            offset: self.decoder.offset(),
            state: self.state.name(),
        }
    }

    /// Queue the preamble: Version 1.0, Mode, Via, encoding, then UpgradeRequest (if
    /// configured) or PreambleEnd for modes 1 and 2. Simplex and singleton-sized sessions
    /// are established at once. Also starts a new framing session on a reused connection
    /// after [`ClientEvent::End`].
    pub fn start(&mut self) -> Result<(), Error> {
        if !matches!(self.state, CState::Idle | CState::Ended) {
            return Err(self.state_err());
        }
        let c = &self.config;
        let mut recs = vec![
            Record::Version { major: 1, minor: 0 },
            Record::Mode(c.mode.to_byte()),
            Record::Via(c.via.clone()),
            match &c.encoding {
                Encoding::Known(v) => Record::KnownEncoding(*v),
                Encoding::Extensible(s) => Record::ExtensibleEncoding(s.clone()),
            },
        ];
        self.state = if c.mode.has_preamble_ack() {
            match &c.upgrade {
                Some(u) => {
                    recs.push(Record::UpgradeRequest(u.clone()));
                    CState::AwaitUpgrade
                }
                None => {
                    recs.push(Record::PreambleEnd);
                    CState::AwaitAck
                }
            }
        } else {
            CState::Established
        };
        for r in &recs {
            encode_record(r, &mut self.out);
        }
        self.sent_end = false;
        Ok(())
    }

    /// Buffer received bytes (decrypted bytes after an upgrade completed).
    pub fn feed(&mut self, data: &[u8]) {
        self.decoder.feed(data);
    }

    /// Bytes to send to the server.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// Upgrade-protocol bytes received after [`ClientEvent::UpgradeAccepted`].
    pub fn take_upgrade_bytes(&mut self) -> Vec<u8> {
        self.decoder.take_opaque()
    }

    /// The upgrade is established: queues PreambleEnd (to be sent inside the upgraded
    /// stream, like everything after it) and waits for PreambleAck.
    pub fn upgrade_complete(&mut self) -> Result<(), Error> {
        if self.state != CState::Upgrading {
            return Err(self.state_err());
        }
        self.decoder.resume();
        encode_record(&Record::PreambleEnd, &mut self.out);
        self.state = CState::AwaitAck;
        Ok(())
    }

    /// Queue a message: SizedEnvelope (duplex, simplex), UnsizedEnvelope with one chunk
    /// and terminator (singleton-unsized; follow with [`send_end`](Self::send_end) as
    /// .NET does), raw bytes (singleton-sized).
    pub fn send_message(&mut self, payload: &[u8]) -> Result<(), Error> {
        if self.state != CState::Established || self.sent_end {
            return Err(self.state_err());
        }
        match self.config.mode {
            Mode::Duplex | Mode::Simplex => {
                encode_record(&Record::SizedEnvelope(payload.to_vec()), &mut self.out)
            }
            Mode::SingletonUnsized => {
                encode_record(&Record::UnsizedEnvelopeStart, &mut self.out);
                if !payload.is_empty() {
                    encode_record(&Record::UnsizedChunk(payload.to_vec()), &mut self.out);
                }
                encode_record(&Record::UnsizedEnvelopeEnd, &mut self.out);
            }
            Mode::SingletonSized => self.out.extend_from_slice(payload),
        }
        Ok(())
    }

    /// Queue End (not used in singleton-sized mode, which ends by closing the connection).
    pub fn send_end(&mut self) -> Result<(), Error> {
        if self.state != CState::Established
            || self.sent_end
            || self.config.mode == Mode::SingletonSized
        {
            return Err(self.state_err());
        }
        encode_record(&Record::End, &mut self.out);
        self.sent_end = true;
        Ok(())
    }

    /// The connection reached end of stream. Fine after End, a fault, or once we sent End
    /// (Mono's server closes without End); otherwise [`Error::PrematureEof`].
    pub fn feed_eof(&mut self) -> Result<(), Error> {
        let offset = self.decoder.offset() + self.decoder.buffered() as u64;
        let clean = matches!(self.state, CState::Ended | CState::Faulted | CState::Idle)
            || (self.state == CState::Established && self.sent_end && self.unsized_buf.is_none());
        if clean && self.decoder.buffered() == 0 {
            self.state = CState::Ended;
            Ok(())
        } else {
            self.state = CState::Failed;
            Err(Error::PrematureEof { offset })
        }
    }

    /// The next event, `Ok(None)` when more input is needed.
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, Error> {
        loop {
            match self.state {
                CState::Idle | CState::Upgrading | CState::Faulted => return Ok(None),
                CState::Failed => {
                    return Err(Error::Failed {
                        offset: self.decoder.offset(),
                    })
                }
                _ => {}
            }
            let off = self.decoder.offset();
            let rec = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(None),
                Err(e) => {
                    let awaiting_reply =
                        matches!(self.state, CState::AwaitAck | CState::AwaitUpgrade);
                    self.state = CState::Failed;
                    return Err(match e {
                        Error::InvalidRecordType {
                            offset,
                            byte: b'H' | b'h',
                        } if awaiting_reply => Error::ServerIsHttp { offset },
                        e => e,
                    });
                }
            };
            if let Some(ev) = self.on_record(rec, off)? {
                return Ok(Some(ev));
            }
        }
    }

    fn on_record(&mut self, rec: Record, off: u64) -> Result<Option<ClientEvent>, Error> {
        if let Record::Fault(uri) = rec {
            self.state = CState::Faulted;
            let code = FaultCode::from_uri(&uri);
            return Ok(Some(ClientEvent::Fault { uri, code }));
        }
        let mode = self.config.mode;
        let ev = match (self.state, rec) {
            (CState::AwaitAck, Record::PreambleAck) => {
                self.state = CState::Established;
                Some(ClientEvent::PreambleAck)
            }
            (CState::AwaitUpgrade, Record::UpgradeResponse) => {
                self.state = CState::Upgrading;
                Some(ClientEvent::UpgradeAccepted)
            }
            (CState::Established, Record::SizedEnvelope(b)) if mode == Mode::Duplex => {
                Some(ClientEvent::Message(b))
            }
            (CState::Established, Record::UnsizedEnvelopeStart)
                if mode == Mode::SingletonUnsized && self.unsized_buf.is_none() =>
            {
                self.unsized_buf = Some(Vec::new());
                None
            }
            (CState::Established, Record::UnsizedChunk(c)) => {
                if let Some(b) = self.unsized_buf.as_mut() {
                    b.extend_from_slice(&c);
                }
                None
            }
            (CState::Established, Record::UnsizedEnvelopeEnd) => {
                self.unsized_buf.take().map(ClientEvent::Message)
            }
            (CState::Established, Record::End) if self.unsized_buf.is_none() => {
                self.state = CState::Ended;
                Some(ClientEvent::End)
            }
            (_, rec) => {
                self.state = CState::Failed;
                return Err(Error::UnexpectedRecord {
                    offset: off,
                    record: rec.name(),
                    reason: "not expected from the server here",
                });
            }
        };
        Ok(ev)
    }
}

//! Sans-IO pieces of the WCF bridge.
//!
//! * [`Inbound`]: the client→service direction of a net.tcp session passing through the
//!   bridge. It checks the preamble (mode, encoding, no stream upgrade), rewrites the `Via`
//!   to the service's address and the WS-Addressing `To` of every envelope, keeping the
//!   [MC-NBFSE] session dictionary in step (tables are forwarded unchanged; only the
//!   records that change are re-encoded, everything else passes byte for byte).
//! * [`peek_via`]: the Via of a preamble, to route a connection before anything is sent.
//! * [`envelope`]: reading and rewriting WS-Addressing headers of binary envelopes.
//! * [`relay`]: the WCF Relay's NetTcpRelay preamble and control messages, and the HTTP relay
//!   bindings' request/response mapping.
//!
//! The service→client direction needs no rewriting and is spliced as bytes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compare;
pub mod envelope;
pub mod relay;
pub mod soap;

use hyrelay_nbfx::SessionDictionary;
use hyrelay_nmf::{encode_record, Decoder, FaultCode, Mode, Record};

pub use envelope::{rewrite_to, PayloadEncoding, Rewrite};

/// Why a session cannot pass the bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed framing.
    #[error("framing: {0}")]
    Framing(#[from] hyrelay_nmf::Error),
    /// An envelope that does not decode as binary XML.
    #[error("envelope: {0}")]
    Envelope(hyrelay_nbfx::Error),
    /// A session-encoded envelope without a session dictionary (internal misuse).
    #[error("binary-session envelope without a session dictionary")]
    NoSession,
    /// The client asked for something the bridge does not carry; the fault tells it so.
    #[error("{reason}")]
    Refused {
        /// The framing fault to send back.
        fault: FaultCode,
        /// What to log.
        reason: String,
    },
}

impl Error {
    /// The framing fault to send to the client, when .NET would send one.
    pub fn fault(&self) -> Option<FaultCode> {
        match self {
            Error::Refused { fault, .. } => Some(*fault),
            Error::Framing(e) => e.server_fault(),
            Error::Envelope(_) | Error::NoSession => None,
        }
    }
}

/// The bytes of a Fault record carrying `code`.
pub fn fault_record(code: FaultCode) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&Record::Fault(code.uri()), &mut out);
    out
}

/// What [`Inbound`] saw of the preamble.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreambleInfo {
    /// Mode byte.
    pub mode: u8,
    /// The Via the client sent.
    pub via: String,
    /// KnownEncoding byte.
    pub encoding: u8,
}

/// Counters of an [`Inbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboundStats {
    /// Envelopes forwarded.
    pub messages: u64,
    /// Envelopes whose `To` was rewritten.
    pub rewritten: u64,
    /// Envelope bytes received.
    pub bytes: u64,
    /// WCF Relay keep-alive `Ping` messages dropped (see [`InboundConfig::drop_relay_pings`]).
    pub pings_dropped: u64,
}

/// Settings of an [`Inbound`].
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// The service's address: the Via sent to it and the `To` every envelope gets.
    pub service_address: String,
    /// Framing limits (max message size is checked on the size prefix).
    pub limits: hyrelay_nmf::Limits,
    /// Largest session dictionary, bytes.
    pub max_session_dictionary: usize,
    /// Drop messages whose Action is the bare word `Ping`: the keep-alive a legacy
    /// NetTcpRelay client sends after 30 s of silence, which Microsoft's relay listener
    /// swallows but a plain WCF service would answer with an ActionNotSupported fault. The
    /// strings a dropped message adds to the session dictionary are carried into the next
    /// forwarded message's table, so the service's dictionary stays the client's.
    pub drop_relay_pings: bool,
}

impl InboundConfig {
    /// Defaults for `service_address`: 64 MiB messages, 2 MiB dictionary.
    pub fn new(service_address: impl Into<String>) -> Self {
        InboundConfig {
            service_address: service_address.into(),
            limits: hyrelay_nmf::Limits {
                max_message_size: 64 << 20,
                ..hyrelay_nmf::Limits::default()
            },
            max_session_dictionary: 2 << 20,
            drop_relay_pings: true,
        }
    }
}

/// The client→service direction of a bridged net.tcp connection. Feed the client's bytes,
/// take the bytes for the service. Several framing sessions may follow one another on a
/// connection (a new preamble after End); each is checked and rewritten.
#[derive(Debug)]
pub struct Inbound {
    cfg: InboundConfig,
    dec: Decoder,
    out: Vec<u8>,
    session: SessionDictionary,
    encoding: Option<PayloadEncoding>,
    preamble: Option<PreambleInfo>,
    pending: PreambleInfo,
    streamed: Option<Vec<u8>>,
    /// String-table entries (their encoded bytes) of dropped messages, still owed to the
    /// service.
    owed_strings: Vec<u8>,
    stats: InboundStats,
    failed: bool,
}

impl Inbound {
    /// A new connection.
    pub fn new(cfg: InboundConfig) -> Self {
        let dec = Decoder::new(cfg.limits);
        let session = SessionDictionary::new(cfg.max_session_dictionary);
        Inbound {
            cfg,
            dec,
            out: Vec::new(),
            session,
            encoding: None,
            preamble: None,
            pending: PreambleInfo::default(),
            streamed: None,
            owed_strings: Vec::new(),
            stats: InboundStats::default(),
            failed: false,
        }
    }

    /// The preamble of the current framing session, once its encoding was seen.
    pub fn preamble(&self) -> Option<&PreambleInfo> {
        self.preamble.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> InboundStats {
        self.stats
    }

    /// Bytes ready for the service.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feed bytes from the client and process every complete record. On an error the
    /// connection cannot go on: send the error's [`Error::fault`] to the client (if any)
    /// and close.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Framing(hyrelay_nmf::Error::Failed {
                offset: self.dec.offset(),
            }));
        }
        self.dec.feed(data);
        let r = self.process();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// The client closed its side: an error if that cut a record in half.
    pub fn finish(&self) -> Result<(), Error> {
        self.dec.finish().map_err(Error::Framing)
    }

    fn process(&mut self) -> Result<(), Error> {
        while let Some(rec) = self.dec.next_record()? {
            match rec {
                Record::Version { major, .. } => {
                    if major != 1 {
                        return Err(Error::Refused {
                            fault: FaultCode::UnsupportedVersion,
                            reason: format!("framing version {major} is not 1"),
                        });
                    }
                    self.preamble = None;
                    self.pending = PreambleInfo::default();
                    self.emit(&rec);
                }
                Record::Mode(m) => {
                    match Mode::from_byte(m) {
                        Some(Mode::Duplex | Mode::SingletonUnsized | Mode::Simplex) => {}
                        _ => {
                            return Err(Error::Refused {
                                fault: FaultCode::UnsupportedMode,
                                reason: format!(
                                    "framing mode {m:#04x} is not bridged (duplex, simplex and singleton-unsized are)"
                                ),
                            })
                        }
                    }
                    self.pending.mode = m;
                    self.emit(&rec);
                }
                Record::Via(v) => {
                    self.pending.via = v;
                    self.emit(&Record::Via(self.cfg.service_address.clone()));
                }
                Record::KnownEncoding(e) => {
                    let enc = match e {
                        0x08 => PayloadEncoding::BinarySession,
                        0x07 => PayloadEncoding::Binary,
                        other => {
                            return Err(Error::Refused {
                                fault: FaultCode::ContentTypeInvalid,
                                reason: format!(
                                    "message encoding {other:#04x} ({}) is not bridged; use the binary encoding (NetTcpBinding's default)",
                                    hyrelay_nmf::known_encoding_content_type(other).unwrap_or("unknown")
                                ),
                            })
                        }
                    };
                    // A new framing session starts a new dictionary.
                    if self.encoding.is_some() {
                        self.session = SessionDictionary::new(self.cfg.max_session_dictionary);
                    }
                    self.encoding = Some(enc);
                    self.pending.encoding = e;
                    self.preamble = Some(self.pending.clone());
                    self.emit(&rec);
                }
                Record::ExtensibleEncoding(ct) => {
                    return Err(Error::Refused {
                        fault: FaultCode::ContentTypeInvalid,
                        reason: format!("message encoding {ct:?} is not bridged; use the binary encoding"),
                    })
                }
                Record::UpgradeRequest(p) => {
                    return Err(Error::Refused {
                        fault: FaultCode::UpgradeInvalid,
                        reason: format!(
                            "the client asked to upgrade the stream to {p:?}; the bridge cannot rewrite addresses inside an encrypted stream: configure the client's binding with SecurityMode.None toward the bridge (the relay hop is protected by TLS)"
                        ),
                    })
                }
                Record::SizedEnvelope(p) => {
                    if let Some(p) = self.rewrite(p)? {
                        self.emit(&Record::SizedEnvelope(p));
                    }
                }
                Record::UnsizedEnvelopeStart => self.streamed = Some(Vec::new()),
                Record::UnsizedChunk(c) => {
                    if let Some(b) = self.streamed.as_mut() {
                        b.extend_from_slice(&c);
                    }
                }
                Record::UnsizedEnvelopeEnd => {
                    let msg = self.streamed.take().unwrap_or_default();
                    let Some(msg) = self.rewrite(msg)? else {
                        continue;
                    };
                    self.out.push(0x05);
                    if !msg.is_empty() {
                        hyrelay_nmf::encode_size(msg.len() as u32, &mut self.out);
                        self.out.extend_from_slice(&msg);
                    }
                    self.out.push(0x00);
                }
                other => self.emit(&other),
            }
        }
        Ok(())
    }

    fn emit(&mut self, r: &Record) {
        encode_record(r, &mut self.out);
    }

    /// The message for the service, or `None` when it is dropped.
    fn rewrite(&mut self, payload: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        let enc = self.encoding.ok_or(Error::Refused {
            fault: FaultCode::ContentTypeInvalid,
            reason: "envelope before the preamble named an encoding".into(),
        })?;
        self.stats.messages += 1;
        self.stats.bytes += payload.len() as u64;
        let limits = hyrelay_nbfx::Limits::buffered(self.cfg.limits.max_message_size);
        let rw = rewrite_to(
            &payload,
            enc,
            Some(&mut self.session),
            Some(&self.cfg.service_address),
            &limits,
        )?;
        let session = enc == PayloadEncoding::BinarySession;
        if self.cfg.drop_relay_pings && rw.action.as_deref() == Some("Ping") {
            self.stats.pings_dropped += 1;
            if session {
                let (start, end) = table_strings(&payload)?;
                self.owed_strings.extend_from_slice(&payload[start..end]);
            }
            return Ok(None);
        }
        let out = match rw.payload {
            Some(p) => {
                self.stats.rewritten += 1;
                p
            }
            None => payload,
        };
        if session && !self.owed_strings.is_empty() {
            // The dropped messages' strings go first: session ids are given in order.
            let (start, end) = table_strings(&out)?;
            let mut merged = Vec::with_capacity(out.len() + self.owed_strings.len() + 5);
            let owed = std::mem::take(&mut self.owed_strings);
            hyrelay_nbfx::mb31::encode_mb31((owed.len() + end - start) as u32, &mut merged);
            merged.extend_from_slice(&owed);
            merged.extend_from_slice(&out[start..]);
            return Ok(Some(merged));
        }
        Ok(Some(out))
    }
}

/// Where the string entries of a binary-session message's table are: after the table's
/// MultiByteInt31 size, `size` bytes long.
fn table_strings(payload: &[u8]) -> Result<(usize, usize), Error> {
    use hyrelay_nbfx::mb31::{decode_mb31, Mb31};
    let eof = |offset| Error::Envelope(hyrelay_nbfx::Error::UnexpectedEof { offset });
    let (size, start) = match decode_mb31(payload, 0).map_err(Error::Envelope)? {
        Mb31::Value(v, n) => (v as usize, n),
        Mb31::Incomplete => return Err(eof(payload.len())),
    };
    let end = start + size;
    if end > payload.len() {
        return Err(eof(payload.len()));
    }
    Ok((start, end))
}

/// The Via of a preamble at the start of `data`: `Ok(Some((via, mode)))` once the Via
/// record is complete, `Ok(None)` while more bytes are needed.
pub fn peek_via(
    data: &[u8],
    limits: hyrelay_nmf::Limits,
) -> Result<Option<(String, u8)>, hyrelay_nmf::Error> {
    let mut d = Decoder::new(limits);
    d.feed(data);
    let mut mode = 0;
    while let Some(r) = d.next_record()? {
        match r {
            Record::Mode(m) => mode = m,
            Record::Via(v) => return Ok(Some((v, mode))),
            Record::Version { .. } => {}
            other => {
                return Err(hyrelay_nmf::Error::UnexpectedRecord {
                    offset: 0,
                    record: other.name(),
                    reason: "expected Version, Mode, Via",
                })
            }
        }
    }
    Ok(None)
}

/// The path of a net.tcp URI (`/CreditCheck` of `net.tcp://host:808/CreditCheck`),
/// without query, lower-cased (.NET matches Via paths case-insensitively).
pub fn via_path(uri: &str) -> String {
    let rest = uri.split_once("://").map(|x| x.1).unwrap_or(uri);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_ascii_lowercase()
    }
}

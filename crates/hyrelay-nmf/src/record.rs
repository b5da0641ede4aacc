//! [MC-NMF] records and constants.

/// Prefix of every framing fault URI.
pub const FAULT_NAMESPACE: &str = "http://schemas.microsoft.com/ws/2006/05/framing/faults/";

/// Framing mode (Mode record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 1: one unsized (chunked) message per framing session (TransferMode.Streamed).
    SingletonUnsized,
    /// 2: sized envelopes both ways (NetTcpBinding default).
    Duplex,
    /// 3: one-way sized envelopes, no PreambleEnd/PreambleAck.
    Simplex,
    /// 4: raw message octets until the connection closes, no PreambleEnd/PreambleAck.
    SingletonSized,
}

impl Mode {
    /// The mode for a Mode record byte.
    pub fn from_byte(b: u8) -> Option<Mode> {
        Some(match b {
            1 => Mode::SingletonUnsized,
            2 => Mode::Duplex,
            3 => Mode::Simplex,
            4 => Mode::SingletonSized,
            _ => return None,
        })
    }
    /// The Mode record byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Mode::SingletonUnsized => 1,
            Mode::Duplex => 2,
            Mode::Simplex => 3,
            Mode::SingletonSized => 4,
        }
    }
    /// True for modes whose preamble ends with PreambleEnd and is acknowledged.
    pub fn has_preamble_ack(self) -> bool {
        matches!(self, Mode::SingletonUnsized | Mode::Duplex)
    }
}

/// Content type of a KnownEncoding value (0x00–0x08 per [MC-NMF]; 0x09–0x0C are the
/// compressed binary encodings CoreWCF decodes). `None` for other values (.NET maps
/// those to `unknownNN` and fails the content-type check).
pub fn known_encoding_content_type(value: u8) -> Option<&'static str> {
    Some(match value {
        0x00 => "text/xml; charset=utf-8",
        0x01 => "text/xml; charset=utf16",
        0x02 => "text/xml; charset=unicodeFFFE",
        0x03 => "application/soap+xml; charset=utf-8",
        0x04 => "application/soap+xml; charset=utf16",
        0x05 => "application/soap+xml; charset=unicodeFFFE",
        0x06 => "multipart/related",
        0x07 => "application/soap+msbin1",
        0x08 => "application/soap+msbinsession1",
        0x09 => "application/soap+msbin1+gzip",
        0x0A => "application/soap+msbinsession1+gzip",
        0x0B => "application/soap+msbin1+deflate",
        0x0C => "application/soap+msbinsession1+deflate",
        _ => return None,
    })
}

/// KnownEncoding value for `application/soap+msbin1` (binary, static dictionary only).
pub const ENCODING_BINARY: u8 = 0x07;
/// KnownEncoding value for `application/soap+msbinsession1` (binary + session dictionary).
pub const ENCODING_BINARY_SESSION: u8 = 0x08;

/// The message encoding announced in the preamble.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// KnownEncoding record (0x03) with this value.
    Known(u8),
    /// ExtensibleEncoding record (0x04) with this MIME content type.
    Extensible(String),
}

impl Encoding {
    /// The content type string .NET compares (`unknownNN` for unknown known-encoding bytes).
    pub fn content_type(&self) -> String {
        match self {
            Encoding::Known(v) => known_encoding_content_type(*v)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("unknown{v:02X}")),
            Encoding::Extensible(s) => s.clone(),
        }
    }
}

/// Upgrade protocol name for TLS.
pub const UPGRADE_TLS: &str = "application/ssl-tls";
/// Upgrade protocol name for NegotiateStream ([MS-NNS]).
pub const UPGRADE_NEGOTIATE: &str = "application/negotiate";

/// The standard framing faults (suffixes of [`FAULT_NAMESPACE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultCode {
    /// No listener for the Via.
    EndpointNotFound,
    /// Encoding not supported by the endpoint.
    ContentTypeInvalid,
    /// ExtensibleEncoding / upgrade string longer than 256 bytes.
    ContentTypeTooLong,
    /// Via longer than 2048 bytes.
    ViaTooLong,
    /// Version major ≠ 1.
    UnsupportedVersion,
    /// Mode not accepted.
    UnsupportedMode,
    /// Upgrade not offered.
    UpgradeInvalid,
    /// SizedEnvelope larger than the maximum message size (`MaxMessageSizeExceededFault`).
    MaxMessageSizeExceeded,
    /// Server throttled.
    ServerTooBusy,
    /// Activation failed for the Via.
    ServiceActivationFailed,
    /// Port sharing could not dispatch the connection.
    ConnectionDispatchFailed,
    /// Endpoint paused or unavailable.
    EndpointUnavailable,
}

impl FaultCode {
    const ALL: [FaultCode; 12] = [
        FaultCode::EndpointNotFound,
        FaultCode::ContentTypeInvalid,
        FaultCode::ContentTypeTooLong,
        FaultCode::ViaTooLong,
        FaultCode::UnsupportedVersion,
        FaultCode::UnsupportedMode,
        FaultCode::UpgradeInvalid,
        FaultCode::MaxMessageSizeExceeded,
        FaultCode::ServerTooBusy,
        FaultCode::ServiceActivationFailed,
        FaultCode::ConnectionDispatchFailed,
        FaultCode::EndpointUnavailable,
    ];

    /// The suffix after [`FAULT_NAMESPACE`].
    pub fn name(self) -> &'static str {
        match self {
            FaultCode::EndpointNotFound => "EndpointNotFound",
            FaultCode::ContentTypeInvalid => "ContentTypeInvalid",
            FaultCode::ContentTypeTooLong => "ContentTypeTooLong",
            FaultCode::ViaTooLong => "ViaTooLong",
            FaultCode::UnsupportedVersion => "UnsupportedVersion",
            FaultCode::UnsupportedMode => "UnsupportedMode",
            FaultCode::UpgradeInvalid => "UpgradeInvalid",
            FaultCode::MaxMessageSizeExceeded => "MaxMessageSizeExceededFault",
            FaultCode::ServerTooBusy => "ServerTooBusy",
            FaultCode::ServiceActivationFailed => "ServiceActivationFailed",
            FaultCode::ConnectionDispatchFailed => "ConnectionDispatchFailed",
            FaultCode::EndpointUnavailable => "EndpointUnavailable",
        }
    }

    /// The full fault URI.
    pub fn uri(self) -> String {
        format!("{FAULT_NAMESPACE}{}", self.name())
    }

    /// The code for a fault URI, if it is one of the standard ones.
    pub fn from_uri(uri: &str) -> Option<FaultCode> {
        let name = uri.strip_prefix(FAULT_NAMESPACE)?;
        FaultCode::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One framing record. UnsizedEnvelope is split into start / chunk / end records so that a
/// decoder never has to hold a whole streamed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// 0x00 Version.
    Version {
        /// Major (1).
        major: u8,
        /// Minor (0).
        minor: u8,
    },
    /// 0x01 Mode with its raw byte (see [`Mode::from_byte`]).
    Mode(u8),
    /// 0x02 Via.
    Via(String),
    /// 0x03 KnownEncoding with its raw byte.
    KnownEncoding(u8),
    /// 0x04 ExtensibleEncoding.
    ExtensibleEncoding(String),
    /// 0x05: start of an UnsizedEnvelope.
    UnsizedEnvelopeStart,
    /// One chunk of an UnsizedEnvelope (never empty).
    UnsizedChunk(Vec<u8>),
    /// The `00` terminator of an UnsizedEnvelope.
    UnsizedEnvelopeEnd,
    /// 0x06 SizedEnvelope payload.
    SizedEnvelope(Vec<u8>),
    /// 0x07 End.
    End,
    /// 0x08 Fault with its URI.
    Fault(String),
    /// 0x09 UpgradeRequest with the protocol name.
    UpgradeRequest(String),
    /// 0x0A UpgradeResponse.
    UpgradeResponse,
    /// 0x0B PreambleAck.
    PreambleAck,
    /// 0x0C PreambleEnd.
    PreambleEnd,
}

impl Record {
    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Record::Version { .. } => "Version",
            Record::Mode(_) => "Mode",
            Record::Via(_) => "Via",
            Record::KnownEncoding(_) => "KnownEncoding",
            Record::ExtensibleEncoding(_) => "ExtensibleEncoding",
            Record::UnsizedEnvelopeStart => "UnsizedEnvelope",
            Record::UnsizedChunk(_) => "UnsizedEnvelope chunk",
            Record::UnsizedEnvelopeEnd => "UnsizedEnvelope terminator",
            Record::SizedEnvelope(_) => "SizedEnvelope",
            Record::End => "End",
            Record::Fault(_) => "Fault",
            Record::UpgradeRequest(_) => "UpgradeRequest",
            Record::UpgradeResponse => "UpgradeResponse",
            Record::PreambleAck => "PreambleAck",
            Record::PreambleEnd => "PreambleEnd",
        }
    }
}

/// Framing limits (.NET `TransportDefaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest SizedEnvelope payload / assembled unsized message. Default 65 536.
    pub max_message_size: usize,
    /// Largest Via in bytes. Default 2048.
    pub max_via: usize,
    /// Largest ExtensibleEncoding or UpgradeRequest string. Default 256.
    pub max_content_type: usize,
    /// Largest Fault string. Default 256.
    pub max_fault: usize,
    /// Time allowed for the whole preamble (server side). Default 30 s.
    pub preamble_timeout: core::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65_536,
            max_via: 2048,
            max_content_type: 256,
            max_fault: 256,
            preamble_timeout: core::time::Duration::from_secs(30),
        }
    }
}

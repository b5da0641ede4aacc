//! The crate's error type.

use crate::FaultCode;

/// Framing errors. Every variant carries `offset`: the absolute position in the byte
/// stream (as fed to the decoder or session) where the problem was detected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A byte that is not a record type (or not the one allowed here).
    #[error("invalid record type 0x{byte:02X} at offset {offset}")]
    InvalidRecordType {
        /// Offset of the type byte.
        offset: u64,
        /// The byte.
        byte: u8,
    },
    /// A record that is valid but not allowed in the current state.
    #[error("unexpected {record} record at offset {offset}: {reason}")]
    UnexpectedRecord {
        /// Offset of the type byte.
        offset: u64,
        /// Record name.
        record: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A record size integer with a fifth byte above 0x07 (`FramingSizeTooLarge`).
    #[error("invalid record size at offset {offset}")]
    InvalidSize {
        /// Offset of the size.
        offset: u64,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 at offset {offset}")]
    InvalidUtf8 {
        /// Offset of the string.
        offset: u64,
    },
    /// A string, chunk or envelope larger than its limit; checked on the size prefix
    /// before the body is read.
    #[error("{what} of {size} bytes exceeds the limit of {max} at offset {offset}")]
    TooLarge {
        /// Offset of the size prefix.
        offset: u64,
        /// What was too large.
        what: &'static str,
        /// Announced size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// An unsized envelope chunk of zero length where a chunk was required.
    #[error("empty unsized envelope at offset {offset}")]
    EmptyEnvelope {
        /// Offset.
        offset: u64,
    },
    /// Version major ≠ 1.
    #[error("unsupported framing version {major}.{minor} at offset {offset}")]
    UnsupportedVersion {
        /// Offset.
        offset: u64,
        /// Major.
        major: u8,
        /// Minor.
        minor: u8,
    },
    /// Mode not in 1–4 or not accepted by the server policy.
    #[error("unsupported mode {mode} at offset {offset}")]
    UnsupportedMode {
        /// Offset.
        offset: u64,
        /// The mode byte.
        mode: u8,
    },
    /// The Via is not an absolute URI.
    #[error("via is not an absolute URI at offset {offset}")]
    InvalidVia {
        /// Offset.
        offset: u64,
    },
    /// An upgrade was requested that the server does not offer.
    #[error("upgrade {protocol:?} not supported (offset {offset})")]
    UpgradeInvalid {
        /// Offset.
        offset: u64,
        /// Requested protocol.
        protocol: String,
    },
    /// The peer sent a Fault record.
    #[error("peer sent fault {uri} at offset {offset}")]
    Fault {
        /// Offset.
        offset: u64,
        /// The fault URI.
        uri: String,
    },
    /// The peer looks like an HTTP server (`H`/`h` where a framing reply was expected).
    #[error("expected a framing reply, got HTTP (offset {offset})")]
    ServerIsHttp {
        /// Offset.
        offset: u64,
    },
    /// The stream ended inside a record or before the exchange finished.
    #[error("premature end of stream at offset {offset}")]
    PrematureEof {
        /// Offset.
        offset: u64,
    },
    /// The preamble did not complete within the preamble timeout.
    #[error("preamble timeout (offset {offset})")]
    PreambleTimeout {
        /// Bytes received so far.
        offset: u64,
    },
    /// An operation that the session's state does not allow (API misuse).
    #[error("operation not allowed in state {state} (offset {offset})")]
    InvalidState {
        /// Stream offset.
        offset: u64,
        /// Current state.
        state: &'static str,
    },
    /// The session failed earlier and accepts nothing more.
    #[error("session already failed (offset {offset})")]
    Failed {
        /// Stream offset.
        offset: u64,
    },
}

impl Error {
    /// The stream offset of the error.
    pub fn offset(&self) -> u64 {
        match self {
            Error::InvalidRecordType { offset, .. }
            | Error::UnexpectedRecord { offset, .. }
            | Error::InvalidSize { offset }
            | Error::InvalidUtf8 { offset }
            | Error::TooLarge { offset, .. }
            | Error::EmptyEnvelope { offset }
            | Error::UnsupportedVersion { offset, .. }
            | Error::UnsupportedMode { offset, .. }
            | Error::InvalidVia { offset }
            | Error::UpgradeInvalid { offset, .. }
            | Error::Fault { offset, .. }
            | Error::ServerIsHttp { offset }
            | Error::PrematureEof { offset }
            | Error::PreambleTimeout { offset }
            | Error::InvalidState { offset, .. }
            | Error::Failed { offset } => *offset,
        }
    }

    /// The fault a server sends for this error, if .NET sends one (errors without a fault
    /// string just abort the connection).
    pub fn server_fault(&self) -> Option<FaultCode> {
        match self {
            Error::UnsupportedVersion { .. } => Some(FaultCode::UnsupportedVersion),
            Error::UnsupportedMode { .. } => Some(FaultCode::UnsupportedMode),
            Error::UpgradeInvalid { .. } => Some(FaultCode::UpgradeInvalid),
            Error::TooLarge { what, .. } => match *what {
                "via" => Some(FaultCode::ViaTooLong),
                "content type" | "upgrade protocol" => Some(FaultCode::ContentTypeTooLong),
                "sized envelope" | "unsized envelope" => Some(FaultCode::MaxMessageSizeExceeded),
                _ => None,
            },
            _ => None,
        }
    }
}

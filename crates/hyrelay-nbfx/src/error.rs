//! The crate's error type.

/// Which [`Limits`](crate::Limits) field a [`Error::LimitExceeded`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::max_depth`](crate::Limits::max_depth).
    Depth,
    /// [`Limits::max_string_bytes`](crate::Limits::max_string_bytes).
    StringBytes,
    /// [`Limits::max_array_length`](crate::Limits::max_array_length).
    ArrayLength,
    /// [`Limits::max_total_bytes`](crate::Limits::max_total_bytes).
    TotalBytes,
    /// [`Limits::max_attributes`](crate::Limits::max_attributes).
    Attributes,
    /// The session dictionary's size budget ([MC-NBFSE] `MaxSessionSize`).
    SessionSize,
}

impl core::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LimitKind::Depth => "max depth",
            LimitKind::StringBytes => "max string bytes",
            LimitKind::ArrayLength => "max array length",
            LimitKind::TotalBytes => "max total bytes",
            LimitKind::Attributes => "max attributes per element",
            LimitKind::SessionSize => "max session dictionary size",
        })
    }
}

/// Everything that can go wrong while reading, writing or converting binary XML.
///
/// Every variant carries `offset`: the byte offset in the input being decoded (binary
/// input for the reader and the session table, XML text for the canonical encoder) or
/// in the output being produced (for the writer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a record or with elements still open.
    #[error("unexpected end of input at offset {offset}")]
    UnexpectedEof {
        /// Offset where more bytes were needed.
        offset: usize,
    },
    /// A byte that is not a record type where a record was expected.
    #[error("invalid record type 0x{byte:02X} at offset {offset}")]
    InvalidRecord {
        /// Offset of the type byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A record that is valid in general but not at this position
    /// (attribute outside a start tag, WithEndElement text as an attribute value,
    /// EndElement with no open element, nested list, ...).
    #[error("record 0x{byte:02X} not allowed here at offset {offset}: {reason}")]
    UnexpectedRecord {
        /// Offset of the type byte.
        offset: usize,
        /// The record type byte.
        byte: u8,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// A MultiByteInt31 with a fifth byte above 0x07 (or longer than five bytes).
    #[error("invalid MultiByteInt31 at offset {offset}")]
    InvalidMb31 {
        /// Offset of the first byte of the integer.
        offset: usize,
    },
    /// A 32-bit length prefix that is negative.
    #[error("negative length {length} at offset {offset}")]
    NegativeLength {
        /// Offset of the length field.
        offset: usize,
        /// The decoded value.
        length: i32,
    },
    /// Invalid UTF-8 in a string.
    #[error("invalid UTF-8 at offset {offset}")]
    InvalidUtf8 {
        /// Offset of the string bytes.
        offset: usize,
    },
    /// Invalid UTF-16 (odd byte count or unpaired surrogate) in a UnicodeChars record.
    #[error("invalid UTF-16 at offset {offset}")]
    InvalidUtf16 {
        /// Offset of the string bytes.
        offset: usize,
    },
    /// An even dictionary key beyond the static dictionary.
    #[error("static dictionary key 0x{key:X} not defined (offset {offset})")]
    UndefinedStaticKey {
        /// Offset of the key.
        offset: usize,
        /// The wire key.
        key: u32,
    },
    /// An odd key whose id is not (yet) in the session dictionary, or any odd key when
    /// no session dictionary is in use.
    #[error("session dictionary key 0x{key:X} not defined (offset {offset})")]
    UndefinedSessionKey {
        /// Offset of the key.
        offset: usize,
        /// The wire key.
        key: u32,
    },
    /// A value that is structurally invalid (decimal flags, QName prefix index,
    /// DateTime ticks, array count or type, ...).
    #[error("invalid value at offset {offset}: {reason}")]
    InvalidValue {
        /// Offset of the value.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Document structure: no root, several roots, non-whitespace text outside the root,
    /// undeclared prefix.
    #[error("malformed document at offset {offset}: {reason}")]
    Malformed {
        /// Offset of the record that breaks the structure.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A configured limit was exceeded; checked before anything is allocated.
    #[error("{limit} exceeded at offset {offset}: {value} > {max}")]
    LimitExceeded {
        /// Offset of the record or length field.
        offset: usize,
        /// Which limit.
        limit: LimitKind,
        /// The requested amount.
        value: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The session dictionary failed earlier and refuses further messages.
    #[error("session dictionary is invalid after an earlier error (offset {offset})")]
    SessionPoisoned {
        /// Offset in the current payload (always 0).
        offset: usize,
    },
    /// A record that the writer cannot encode as given (string too long for its length tier,
    /// list nested in a list, array with no items, ...).
    #[error("cannot encode record at output offset {offset}: {reason}")]
    Unencodable {
        /// Output offset where the record would start.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Text XML could not be parsed.
    #[error("XML error at offset {offset}: {message}")]
    Xml {
        /// Byte offset in the XML text.
        offset: usize,
        /// Parser message.
        message: String,
    },
}

impl Error {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            Error::UnexpectedEof { offset }
            | Error::InvalidRecord { offset, .. }
            | Error::UnexpectedRecord { offset, .. }
            | Error::InvalidMb31 { offset }
            | Error::NegativeLength { offset, .. }
            | Error::InvalidUtf8 { offset }
            | Error::InvalidUtf16 { offset }
            | Error::UndefinedStaticKey { offset, .. }
            | Error::UndefinedSessionKey { offset, .. }
            | Error::InvalidValue { offset, .. }
            | Error::Malformed { offset, .. }
            | Error::LimitExceeded { offset, .. }
            | Error::SessionPoisoned { offset }
            | Error::Unencodable { offset, .. }
            | Error::Xml { offset, .. } => *offset,
        }
    }
}

impl Error {
    /// The same error with `by` added to its offset.
    pub fn shifted(mut self, by: usize) -> Self {
        match &mut self {
            Error::UnexpectedEof { offset }
            | Error::InvalidRecord { offset, .. }
            | Error::UnexpectedRecord { offset, .. }
            | Error::InvalidMb31 { offset }
            | Error::NegativeLength { offset, .. }
            | Error::InvalidUtf8 { offset }
            | Error::InvalidUtf16 { offset }
            | Error::UndefinedStaticKey { offset, .. }
            | Error::UndefinedSessionKey { offset, .. }
            | Error::InvalidValue { offset, .. }
            | Error::Malformed { offset, .. }
            | Error::LimitExceeded { offset, .. }
            | Error::SessionPoisoned { offset }
            | Error::Unencodable { offset, .. }
            | Error::Xml { offset, .. } => *offset = offset.saturating_add(by),
        }
        self
    }
}

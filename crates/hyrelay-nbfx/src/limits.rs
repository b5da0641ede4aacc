//! Reader limits.

/// Limits enforced by the reader. Every length, count and depth is compared against these
/// before anything is allocated.
///
/// [`Limits::default`] uses the .NET `XmlDictionaryReaderQuotas` defaults (which WCF applies
/// to streamed messages and to readers created directly) and the NetTcpBinding
/// `MaxReceivedMessageSize` (65 536) as the total size; [`Limits::buffered`] mirrors what
/// WCF uses for buffered messages (depth 128, everything else bounded only by the message
/// size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum element nesting depth (the root element is depth 1). Default 32.
    pub max_depth: usize,
    /// Maximum size of one string: UTF-8 bytes of a Chars record, name or comment,
    /// UTF-16 code units of a UnicodeChars record. Default 8192.
    pub max_string_bytes: usize,
    /// Maximum item count of an Array record, byte count of a Bytes record and item
    /// count of a list. Default 16 384.
    pub max_array_length: usize,
    /// Maximum size of the whole input in bytes. Default 65 536.
    pub max_total_bytes: usize,
    /// Maximum number of attribute records (including xmlns) on one element. Default 256.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_string_bytes: 8192,
            max_array_length: 16_384,
            max_total_bytes: 65_536,
            max_attributes: 256,
        }
    }
}

impl Limits {
    /// The quotas WCF applies to buffered messages: depth 128, every other limit equal to
    /// `max_message_size` (attributes: 4096).
    pub fn buffered(max_message_size: usize) -> Self {
        Limits {
            max_depth: 128,
            max_string_bytes: max_message_size,
            max_array_length: max_message_size,
            max_total_bytes: max_message_size,
            max_attributes: 4096,
        }
    }
}

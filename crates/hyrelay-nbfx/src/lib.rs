//! Sans-IO codec for .NET Binary XML as used by WCF over net.tcp:
//!
//! * [MC-NBFX] records: [`EventReader`] pulls borrowed [`Event`]s from bytes without
//!   allocating per record; [`read_records`] decodes bytes into owned [`Record`]s that keep
//!   the exact record kind, and [`write_records`] re-encodes them byte for byte.
//! * [MC-NBFS] static dictionary: [`static_string`], [`static_key`] (487 strings, even keys).
//! * [MC-NBFSE] session dictionary: [`SessionDictionary`] (one per direction, carried
//!   across messages), with [`read_session_message`] / [`write_session_message`] for
//!   payloads that start with a string table.
//! * Text XML: [`records_to_xml`] renders records the way the .NET reader does
//!   ([`text`] has the value formatting), and [`xml_to_records`] encodes text XML choosing
//!   records the way the .NET `XmlBinaryWriter` does.
//!
//! No I/O, no async: every function takes bytes or text and returns values.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod canonical;
mod dictionary;
mod error;
mod events;
mod limits;
pub mod mb31;
mod reader;
mod record;
mod static_table;
pub mod text;
mod writer;
mod xml;

pub use canonical::{xml_to_records, xml_to_session_message, EncodeOptions};
pub use dictionary::{
    encode_table, static_key, static_string, DictKey, Dictionaries, SessionDictionary,
    STATIC_DICTIONARY_LEN,
};
pub use error::{Error, LimitKind};
pub use events::{ArrayItemsRef, AttributeRef, ElementRef, Event, ListRef, TextRef, Utf16Ref};
pub use limits::Limits;
pub use reader::{read_records, EventReader};
pub use record::{
    Array, ArrayItems, Attribute, DateTime, Decimal, Element, Guid, NameRef, PrefixLetter,
    PrefixRef, Record, Text, TimeSpan, DATETIME_MAX_TICKS,
};
pub use writer::{encode_records, write_records};
pub use xml::{records_to_xml, XmlOptions};

/// One [MC-NBFSE] message: the strings its table adds to the session, then the document.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMessage {
    /// Strings added to the direction's session dictionary by this message, in order.
    pub table: Vec<String>,
    /// The binary XML document.
    pub records: Vec<Record>,
}

/// Decode an [MC-NBFSE] payload (the body of a SizedEnvelope on an
/// `application/soap+msbinsession1` session): apply its string table to `session`, then
/// read the document with the session's strings available.
///
/// A malformed or oversized table poisons `session` (see [`SessionDictionary`]); an error
/// in the document itself does not, since the table was applied completely. Error offsets
/// are relative to the start of `payload`.
pub fn read_session_message(
    payload: &[u8],
    session: &mut SessionDictionary,
    limits: &Limits,
) -> Result<SessionMessage, Error> {
    if payload.len() > limits.max_total_bytes {
        return Err(Error::LimitExceeded {
            offset: 0,
            limit: LimitKind::TotalBytes,
            value: payload.len() as u64,
            max: limits.max_total_bytes as u64,
        });
    }
    let (doc, table) = session.read_table(payload)?;
    let records = read_records(&payload[doc..], Dictionaries::with_session(session), limits)
        .map_err(|e| e.shifted(doc))?;
    Ok(SessionMessage { table, records })
}

/// Encode an [MC-NBFSE] payload: the string table of `msg.table`, then the records.
/// Lossless for messages produced by [`read_session_message`].
pub fn write_session_message(msg: &SessionMessage, out: &mut Vec<u8>) -> Result<(), Error> {
    out.extend_from_slice(&encode_table(msg.table.iter().map(String::as_str)));
    write_records(&msg.records, out)
}

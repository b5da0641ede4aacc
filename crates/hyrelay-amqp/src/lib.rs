//! A sans-IO subset of AMQP 1.0 (OASIS AMQP 1.0, parts 1–5) for the WCF Relay listener
//! plane: the type system ([`Value`], [`decode_value`], [`encode_value`]), frames
//! ([`FrameDecoder`], [`encode_frame`]), the performatives and SASL frames the relay uses
//! ([`Performative`]), and [`ServerConnection`], the server side of a connection: protocol
//! headers, SASL, open/begin, link attach, flow, transfer, disposition, detach, close and
//! heartbeats, driven by bytes in and events out.
//!
//! Why not an existing crate: the relay needs the server role, raw link `properties` on
//! `attach` and raw `flow.properties` (token renewal), and no I/O inside; the candidates
//! tie the connection to their own tokio tasks. This is only what the listener plane needs;
//! every parser has limits (frame size, nesting depth, element counts).
//!
//! No I/O, no async.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod connection;
mod frame;
mod performative;

pub use codec::{decode_value, encode_value, Limits, Value};
pub use connection::{data_message, ConnectionEvent, ServerConfig, ServerConnection};
pub use frame::{encode_frame, Frame, FrameDecoder, FrameType, Item, PROTOCOL_AMQP, PROTOCOL_SASL};
pub use performative::{codes, AmqpError, Attach, Performative};

/// What went wrong, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended inside a value.
    #[error("AMQP value truncated at byte {offset}")]
    Truncated {
        /// Where.
        offset: usize,
    },
    /// A constructor byte that AMQP does not define.
    #[error("unknown AMQP type constructor 0x{byte:02x} at byte {offset}")]
    UnknownConstructor {
        /// Where.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A limit was exceeded.
    #[error("AMQP {what} {value} exceeds the limit {max} at byte {offset}")]
    Limit {
        /// Where.
        offset: usize,
        /// Which limit.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// Structurally wrong input.
    #[error("malformed AMQP at byte {offset}: {reason}")]
    Malformed {
        /// Where.
        offset: usize,
        /// What.
        reason: String,
    },
}

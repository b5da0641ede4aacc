//! Sans-IO codec for .NET Message Framing ([MC-NMF], net.tcp):
//!
//! * [`Record`], [`Decoder`] (incremental, any byte split), [`encode_record`];
//! * [`ServerSession`] and [`ClientSession`]: preamble, modes (singleton-unsized, duplex,
//!   simplex, singleton-sized), upgrades (`application/ssl-tls`, `application/negotiate`),
//!   faults, limits, preamble timeout with time passed in by the caller.
//!
//! No I/O: feed received bytes in, take events and bytes to send out.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod error;
mod record;
mod session;

pub use codec::{decode_all, encode_record, encode_records, encode_size, Decoder, MB31_MAX};
pub use error::Error;
pub use record::{
    known_encoding_content_type, Encoding, FaultCode, Limits, Mode, Record, ENCODING_BINARY,
    ENCODING_BINARY_SESSION, FAULT_NAMESPACE, UPGRADE_NEGOTIATE, UPGRADE_TLS,
};
pub use session::{
    ClientConfig, ClientEvent, ClientSession, Preamble, ServerEvent, ServerPolicy, ServerSession,
};

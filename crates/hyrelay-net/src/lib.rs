//! Async plumbing shared by the relay, the client library and the bridge: one stream type for
//! TCP and TLS, rustls set-up, WebSocket frame reading/writing and the frame-by-frame splice.

pub mod bytesplice;
#[cfg(target_os = "linux")]
pub mod kernel;
pub mod splice;
pub mod stream;
pub mod tls;
pub mod ws;

pub use bytesplice::{splice_bytes, splice_ws_bytes, ws_as_bytes};
pub use splice::{splice, Leg, SpliceEnd, SpliceReport};
pub use stream::Stream;

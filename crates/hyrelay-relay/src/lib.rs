//! The hyrelay relay: core state shared by the front-ends, and the Hybrid Connections
//! WebSocket/HTTP front-end.

pub mod config;
pub mod core;
pub mod front;
pub mod mgmt;
pub mod model;
pub mod observe;
pub mod server;
pub mod socket;
pub mod store;
pub mod wcf_amqp;
pub mod wcf_http;
pub mod wcf_nettcp;
pub mod wcf_oneway;

pub use crate::core::{Relay, RelayOptions, Route};

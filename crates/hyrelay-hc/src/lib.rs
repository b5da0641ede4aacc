//! Sans-IO pieces of the Azure Relay Hybrid Connections protocol.
//!
//! * [`url`]: the `/$hc/{path}[/suffix]?sb-hc-action=…` grammar, query filtering and
//!   longest-prefix entity lookup.
//! * [`messages`]: the control-channel JSON commands (`accept`, `request`, `response`,
//!   `renewToken`).
//! * [`sas`]: Shared Access Signature tokens: signing, parsing, constant-time verification,
//!   audience rules and rights.
//! * [`connstr`]: Azure connection strings.
//!
//! Nothing here performs IO; time is always passed in.

pub mod connstr;
pub mod messages;
pub mod sas;
pub mod url;

pub use connstr::ConnectionString;
pub use sas::{Rights, SasToken};

//! The performatives and SASL frames the listener plane uses, as described lists.

use crate::codec::Value;

/// Descriptor codes (AMQP 1.0 parts 2, 3 and 5).
pub mod codes {
    /// open
    pub const OPEN: u64 = 0x10;
    /// begin
    pub const BEGIN: u64 = 0x11;
    /// attach
    pub const ATTACH: u64 = 0x12;
    /// flow
    pub const FLOW: u64 = 0x13;
    /// transfer
    pub const TRANSFER: u64 = 0x14;
    /// disposition
    pub const DISPOSITION: u64 = 0x15;
    /// detach
    pub const DETACH: u64 = 0x16;
    /// end
    pub const END: u64 = 0x17;
    /// close
    pub const CLOSE: u64 = 0x18;
    /// error
    pub const ERROR: u64 = 0x1d;
    /// accepted outcome
    pub const ACCEPTED: u64 = 0x24;
    /// rejected outcome
    pub const REJECTED: u64 = 0x25;
    /// released outcome
    pub const RELEASED: u64 = 0x26;
    /// source
    pub const SOURCE: u64 = 0x28;
    /// target
    pub const TARGET: u64 = 0x29;
    /// sasl-mechanisms
    pub const SASL_MECHANISMS: u64 = 0x40;
    /// sasl-init
    pub const SASL_INIT: u64 = 0x41;
    /// sasl-outcome
    pub const SASL_OUTCOME: u64 = 0x44;
    /// data section of a message
    pub const DATA: u64 = 0x75;
}

/// An AMQP error: condition symbol, description, info.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpError {
    /// e.g. `amqp:not-found`, `com.microsoft:auth-failed`.
    pub condition: String,
    /// Text for people.
    pub description: String,
}

impl AmqpError {
    /// An error with this condition and description.
    pub fn new(condition: &str, description: impl Into<String>) -> Self {
        AmqpError {
            condition: condition.into(),
            description: description.into(),
        }
    }
    /// As a described `error` value.
    pub fn to_value(&self) -> Value {
        Value::described(
            codes::ERROR,
            vec![
                Value::sym(&self.condition),
                Value::String(self.description.clone()),
            ],
        )
    }
    /// From a described `error` value.
    pub fn from_value(v: &Value) -> Option<AmqpError> {
        let (code, f) = v.as_described_list()?;
        (code == codes::ERROR).then(|| AmqpError {
            condition: f.first().and_then(Value::as_str).unwrap_or("").to_string(),
            description: f.get(1).and_then(Value::as_str).unwrap_or("").to_string(),
        })
    }
}

/// A decoded performative: its code and fields (missing trailing fields are `Null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Performative {
    /// Descriptor code.
    pub code: u64,
    /// Fields in order.
    pub fields: Vec<Value>,
}

impl Performative {
    /// From a frame body.
    pub fn from_value(v: &Value) -> Option<Performative> {
        let (code, f) = v.as_described_list()?;
        Some(Performative {
            code,
            fields: f.to_vec(),
        })
    }
    /// Field `i`, `Null` when absent.
    pub fn field(&self, i: usize) -> &Value {
        self.fields.get(i).unwrap_or(&Value::Null)
    }
}

/// The parts of an `attach` the relay looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Attach {
    /// Link name.
    pub name: String,
    /// The peer's handle.
    pub handle: u32,
    /// True when the peer is the receiver (we send on this link).
    pub peer_is_receiver: bool,
    /// The address: the source's for a receiving peer, the target's for a sending one.
    pub address: Option<String>,
    /// The link properties map (`Null` when absent).
    pub properties: Value,
    /// The raw source and target values (mirrored in our reply).
    pub source: Value,
    /// Target.
    pub target: Value,
}

impl Attach {
    /// From an attach performative.
    pub fn from_performative(p: &Performative) -> Option<Attach> {
        if p.code != codes::ATTACH {
            return None;
        }
        let peer_is_receiver = p.field(2).as_bool()?;
        let source = p.field(5).clone();
        let target = p.field(6).clone();
        let addr_of = |t: &Value| {
            t.as_described_list()
                .and_then(|(_, f)| f.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Attach {
            name: p.field(0).as_str()?.to_string(),
            handle: u32::try_from(p.field(1).as_u64()?).ok()?,
            peer_is_receiver,
            address: if peer_is_receiver {
                addr_of(&source)
            } else {
                addr_of(&target)
            },
            properties: p.field(13).clone(),
            source,
            target,
        })
    }
    /// A link property by name.
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.properties.map_get(key)
    }
}

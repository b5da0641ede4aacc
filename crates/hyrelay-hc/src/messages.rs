//! Control-channel JSON commands.
//!
//! Relay → listener: only `accept` and `request` are ever sent (Java listeners tear the channel
//! down on anything else). Listener → relay: `response` and `renewToken`; anything else is
//! reported as [`ListenerCommand::Unknown`] and ignored by the relay.

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Largest control message accepted from a listener, in bytes (the .NET client's buffer).
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;

/// `{address, port}` of the remote party.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// IP address as text.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

/// The `accept` command.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accept {
    /// Rendezvous address the listener dials (verbatim, no token).
    pub address: String,
    /// Connection id.
    pub id: String,
    /// Every handshake header of the sender (values joined with `, `).
    #[serde(rename = "connectHeaders")]
    pub connect_headers: Map<String, Value>,
    /// Sender's address.
    #[serde(rename = "remoteEndpoint")]
    pub remote_endpoint: RemoteEndpoint,
}

/// The `request` command, in full form (control channel or first frame on a rendezvous) or as a
/// rendezvous-only notice (only `address` and `id`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Request {
    /// Rendezvous address for this request.
    pub address: String,
    /// Request id, echoed as `response.requestId`.
    pub id: String,
    /// Origin-form target including the entity name, `sb-hc-*` pairs removed.
    #[serde(rename = "requestTarget", skip_serializing_if = "Option::is_none")]
    pub request_target: Option<String>,
    /// HTTP method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Sender's address.
    #[serde(rename = "remoteEndpoint", skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
    /// Request headers.
    #[serde(rename = "requestHeaders", skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<Map<String, Value>>,
    /// Whether one binary message with the body follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<bool>,
}

impl Request {
    /// A rendezvous-only notice: neither `method` nor `body` (see the protocol notes: .NET and
    /// Java key on `body`, hyco-https on `method`).
    pub fn notice(address: String, id: String) -> Request {
        Request {
            address,
            id,
            request_target: None,
            method: None,
            remote_endpoint: None,
            request_headers: None,
            body: None,
        }
    }
}

/// Serializes `{"accept":{…}}`.
pub fn encode_accept(a: &Accept) -> String {
    serde_json::json!({ "accept": a }).to_string()
}

/// Serializes `{"request":{…}}`.
pub fn encode_request(r: &Request) -> String {
    serde_json::json!({ "request": r }).to_string()
}

/// A `response` from a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Id of the request answered.
    pub request_id: String,
    /// Status code (number or numeric string on the wire).
    pub status_code: u16,
    /// Reason phrase.
    pub status_description: Option<String>,
    /// Headers; a header with several values appears several times.
    pub headers: Vec<(String, String)>,
    /// Whether one binary message with the body follows.
    pub body: bool,
}

/// What a listener sent on a control channel or rendezvous socket.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ListenerCommand {
    /// An HTTP response.
    Response(Response),
    /// A new token for the control channel.
    RenewToken(String),
    /// Any other command (name given); ignored.
    Unknown(String),
}

/// A listener message that cannot be understood.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// Larger than [`MAX_CONTROL_MESSAGE`].
    #[error("control message of {0} bytes exceeds the {MAX_CONTROL_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Not JSON.
    #[error("control message is not valid JSON: {0}")]
    Json(String),
    /// Not an object with one key.
    #[error("control message must be a JSON object with exactly one command key")]
    Shape,
    /// A field is missing or of the wrong type.
    #[error("'{command}' command: {problem}")]
    Field {
        /// Command name.
        command: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn field_err(command: &'static str, problem: impl Into<String>) -> MessageError {
    MessageError::Field {
        command,
        problem: problem.into(),
    }
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a text message from a listener.
pub fn parse_listener_command(text: &str) -> Result<ListenerCommand, MessageError> {
    if text.len() > MAX_CONTROL_MESSAGE {
        return Err(MessageError::TooLarge(text.len()));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| MessageError::Json(e.to_string()))?;
    let Value::Object(obj) = v else {
        return Err(MessageError::Shape);
    };
    if obj.len() != 1 {
        return Err(MessageError::Shape);
    }
    let (name, body) = obj.into_iter().next().ok_or(MessageError::Shape)?;
    match name.as_str() {
        "response" => {
            let Value::Object(r) = body else {
                return Err(field_err("response", "value must be an object"));
            };
            let request_id = r
                .get("requestId")
                .and_then(value_to_string)
                .ok_or_else(|| field_err("response", "missing 'requestId'"))?;
            let status_code = match r.get("statusCode") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .filter(|c| (100..=999).contains(c))
            .ok_or_else(|| field_err("response", "'statusCode' must be a number 100..999"))?
                as u16;
            let status_description = r.get("statusDescription").and_then(value_to_string);
            let mut headers = Vec::new();
            if let Some(Value::Object(h)) = r.get("responseHeaders") {
                for (k, v) in h {
                    match v {
                        Value::Array(items) => {
                            for i in items {
                                if let Some(s) = value_to_string(i) {
                                    headers.push((k.clone(), s));
                                }
                            }
                        }
                        Value::Null => {}
                        other => {
                            if let Some(s) = value_to_string(other) {
                                headers.push((k.clone(), s));
                            }
                        }
                    }
                }
            }
            let body = match r.get("body") {
                Some(Value::Bool(b)) => *b,
                None | Some(Value::Null) => false,
                Some(_) => return Err(field_err("response", "'body' must be a boolean")),
            };
            Ok(ListenerCommand::Response(Response {
                request_id,
                status_code,
                status_description,
                headers,
                body,
            }))
        }
        "renewToken" => {
            let token = body
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| field_err("renewToken", "missing 'token' string"))?;
            Ok(ListenerCommand::RenewToken(token.to_string()))
        }
        other => Ok(ListenerCommand::Unknown(other.chars().take(64).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_number_or_string() {
        let a = parse_listener_command(r#"{"response":{"requestId":"1","statusCode":200,"statusDescription":"OK","responseHeaders":{"content-type":"text/plain","set-cookie":["a=1","b=2"]},"body":true}}"#).unwrap();
        let ListenerCommand::Response(r) = a else {
            panic!("not a response")
        };
        assert_eq!(r.status_code, 200);
        assert!(r.body);
        assert_eq!(r.headers.len(), 3);
        let b = parse_listener_command(
            r#"{"response":{"requestId":"1","statusCode":"404","body":false}}"#,
        )
        .unwrap();
        assert!(matches!(
            b,
            ListenerCommand::Response(Response {
                status_code: 404,
                body: false,
                ..
            })
        ));
    }

    #[test]
    fn renew_and_unknown() {
        assert_eq!(
            parse_listener_command(r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#)
                .unwrap(),
            ListenerCommand::RenewToken("SharedAccessSignature x".into())
        );
        assert_eq!(
            parse_listener_command(r#"{"ping":{}}"#).unwrap(),
            ListenerCommand::Unknown("ping".into())
        );
    }

    #[test]
    fn bad_messages() {
        assert!(matches!(
            parse_listener_command("{"),
            Err(MessageError::Json(_))
        ));
        assert_eq!(parse_listener_command("[]"), Err(MessageError::Shape));
        assert_eq!(
            parse_listener_command(r#"{"a":1,"b":2}"#),
            Err(MessageError::Shape)
        );
        assert!(matches!(
            parse_listener_command(r#"{"response":{"statusCode":200}}"#),
            Err(MessageError::Field { .. })
        ));
        assert!(matches!(
            parse_listener_command(r#"{"response":{"requestId":"x","statusCode":"abc"}}"#),
            Err(MessageError::Field { .. })
        ));
        assert!(matches!(
            parse_listener_command(&" ".repeat(70000)),
            Err(MessageError::TooLarge(_))
        ));
    }

    #[test]
    fn notice_has_neither_method_nor_body() {
        let s = encode_request(&Request::notice("ws://x".into(), "id1".into()));
        assert_eq!(s, r#"{"request":{"address":"ws://x","id":"id1"}}"#);
    }
}

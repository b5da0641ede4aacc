//! The WCF Relay's own messages, sans-IO: the NetTcpRelay rendezvous (`connect`/`probe`
//! preamble, length-prefixed msbin1 control envelopes: `RelayedConnect`, `RelayedAccept`,
//! replies, faults) and the HTTP relay bindings' request/response mapping.
//!
//! Sources (see the deviation register, crates/hyrelay-relay/WCF-RELAY.md): the preamble, the
//! control messages and the HTTP mapping are observed in Microsoft's client (F2); reply
//! shapes, fault codes, the framing the relay chooses towards HTTP listeners and the
//! `<Binary>` body element are inferred (F3).

use std::net::Ipv4Addr;

use base64::Engine as _;
use hyrelay_nbfx::{
    encode_records, read_records, records_to_xml, xml_to_records, Dictionaries, EncodeOptions,
    XmlOptions,
};
use quick_xml::events::Event as XmlEvent;

/// The connect contract's namespace.
pub const CONNECT_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect";
/// Relay fault codes' namespace.
pub const RELAY_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/relay";

/// The relayed-connect contract's namespace.
pub const RELAYEDCONNECT_NS: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/relayedconnect";
/// Largest rendezvous control message (the client's own encoder quota).
pub const MAX_CONTROL: usize = 65_536;

/// SOAP 1.2.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing 1.0.
pub const WSA10: &str = "http://www.w3.org/2005/08/addressing";

/// What the relay tells listeners to dial back (the `RelayedConnect` notification fields).
#[derive(Debug, Clone)]
pub struct Advertise {
    /// `IpAddress` / `IpPort`: where 9352 is reachable (IPv4 only, as in Azure).
    pub ip: Ipv4Addr,
    /// Port of the NetTcpRelay socket.
    pub port: u16,
    /// `HttpPort` (the relay's plain HTTP port, 0 when none).
    pub http_port: u16,
    /// `HttpsPort`.
    pub https_port: u16,
}

/// .NET's `IPAddress(long)` form: the first octet in the lowest byte.
pub fn ipv4_as_long(ip: Ipv4Addr) -> i64 {
    u32::from_le_bytes(ip.octets()) as i64
}

/// The relay's SOAP fault for rendezvous messages: the top-level code is the relay's fault
/// name (what Microsoft's client inspects), with an empty detail element of the same name.
pub fn relay_fault_xml(relates_to: Option<&str>, code: &str, reason: &str) -> String {
    let rel = relates_to
        .filter(|r| !r.is_empty())
        .map(|r| format!("<a:RelatesTo>{}</a:RelatesTo>", esc(r)))
        .unwrap_or_default();
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{RELAY_NS}/FaultAction</a:Action>{rel}</s:Header><s:Body><s:Fault><s:Code><s:Value xmlns:r="{RELAY_NS}">r:{code}</s:Value></s:Code><s:Reason><s:Text xml:lang="en-US">{}</s:Text></s:Reason><s:Detail><r:{code} xmlns:r="{RELAY_NS}"/></s:Detail></s:Fault></s:Body></s:Envelope>"#,
        esc(reason)
    )
}

/// A reply envelope of the rendezvous (`RelayedConnectReply`, `RelayedAcceptReply`).
pub fn reply_envelope(action: &str, relates_to: Option<&str>, body: &str) -> String {
    let rel = relates_to
        .filter(|r| !r.is_empty())
        .map(|r| format!("<a:RelatesTo>{}</a:RelatesTo>", esc(r)))
        .unwrap_or_default();
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{}</a:Action>{rel}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        esc(action)
    )
}

/// The notification's inner envelope (before the `OnewaySend` wrapper).
pub fn relayed_connect_xml(to: &str, id: &str, adv: &Advertise, dns: &str) -> String {
    let ip = ipv4_as_long(adv.ip);
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA10}"><s:Header><a:Action s:mustUnderstand="1">{RELAYEDCONNECT_NS}/RelayedConnect</a:Action><a:To s:mustUnderstand="1">{}</a:To></s:Header><s:Body><RelayedConnect xmlns="{RELAYEDCONNECT_NS}"><Id>{id}</Id><IpAddress>{ip}</IpAddress><IpPort>{}</IpPort><HttpAddress>{ip}</HttpAddress><HttpPort>{}</HttpPort><HttpsAddress>{ip}</HttpsAddress><HttpsPort>{}</HttpsPort><InstanceDnsAddress>{}</InstanceDnsAddress></RelayedConnect></s:Body></s:Envelope>"#,
        esc(to),
        adv.port,
        adv.http_port,
        adv.https_port,
        esc(dns)
    )
}

/// Text XML → msbin1 (non-session binary XML).
pub fn to_msbin1(xml: &str) -> Result<Vec<u8>, String> {
    xml_to_records(xml, None, &EncodeOptions::default())
        .and_then(|r| encode_records(&r))
        .map_err(|e| e.to_string())
}

/// msbin1 → text XML, with the control-message limits.
pub fn from_msbin1(bytes: &[u8]) -> Result<String, String> {
    let limits = hyrelay_nbfx::Limits::buffered(MAX_CONTROL);
    let records =
        read_records(bytes, Dictionaries::static_only(), &limits).map_err(|e| e.to_string())?;
    records_to_xml(
        &records,
        Dictionaries::static_only(),
        &XmlOptions::default(),
    )
    .map_err(|e| e.to_string())
}

/// The last segment of an Action (`…/RelayedConnect` → `RelayedConnect`).
pub fn action_word(action: &str) -> &str {
    action.rsplit('/').next().unwrap_or(action)
}

/// `sb://host[:port]/path/` → (host, path).
pub fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.split_once("://")?.1;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = strip_port(host).to_string();
    let path = path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .to_string();
    Some((host, path))
}

/// HTTP request headers, as SOAP headers.
pub const WEB_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/web";
/// `BodyFormat`.
pub const BODY_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/body";
/// `StatusCode`.
pub const STATUS_NS: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/statuscode";

/// Whether `name` can be an XML element name as written (HTTP header names are tokens; a
/// few characters of tokens are not name characters).
fn xml_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// The request envelope for the listener.
pub fn http_request_xml(
    message_id: &str,
    method: &str,
    to: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> String {
    let ct = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let soap_action = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("soapaction"));
    let format = if ct.starts_with("application/soap+xml") {
        "WrappedSoap12"
    } else if ct.starts_with("text/xml") && soap_action {
        "WrappedSoap11"
    } else {
        "Raw"
    };
    let mut h = String::new();
    for (n, v) in headers {
        if xml_name(n) {
            h.push_str(&format!(r#"<{n} xmlns="{WEB_NS}">{}</{n}>"#, esc(v)));
        }
    }
    let body_xml = if body.is_empty() {
        String::new()
    } else {
        format!(
            "<Binary>{}</Binary>",
            base64::engine::general_purpose::STANDARD.encode(body)
        )
    };
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">{}</a:Action><a:MessageID>urn:uuid:{}</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">{}</a:To>{h}<HttpAddress xmlns="{WEB_NS}">{}</HttpAddress><BodyFormat xmlns="{BODY_NS}">{format}</BodyFormat></s:Header><s:Body>{body_xml}</s:Body></s:Envelope>"#,
        esc(method),
        esc(message_id),
        esc(to),
        esc(url)
    )
}

/// What the listener answered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResponseParts {
    /// `StatusCode` (202 when absent).
    pub status: u16,
    /// `FaultReason`.
    pub reason: Option<String>,
    /// Headers in the web namespace.
    pub headers: Vec<(String, String)>,
    /// Body bytes (`<Binary>` base64, or the body element's text).
    pub body: Vec<u8>,
}

/// Reads the listener's response envelope (text XML).
pub fn parse_http_response(xml: &str) -> Result<ResponseParts, String> {
    let mut out = ResponseParts {
        status: 202,
        ..Default::default()
    };
    let mut r = quick_xml::NsReader::from_str(xml);
    let mut stack: Vec<(String, String)> = Vec::new(); // (namespace, local)
    let mut text = String::new();
    loop {
        match r.read_resolved_event() {
            Ok((ns, XmlEvent::Start(e))) => {
                let nsv = match ns {
                    quick_xml::name::ResolveResult::Bound(n) => {
                        String::from_utf8_lossy(n.as_ref()).into_owned()
                    }
                    _ => String::new(),
                };
                stack.push((
                    nsv,
                    String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                ));
                text.clear();
            }
            Ok((_, XmlEvent::Text(t))) => {
                text.push_str(&t.unescape().map_err(|e| e.to_string())?);
            }
            Ok((_, XmlEvent::End(_))) => {
                let Some((ns, local)) = stack.pop() else {
                    break;
                };
                let in_header = stack.len() == 2 && stack[1].1 == "Header";
                let in_body = stack.len() == 2 && stack[1].1 == "Body";
                if in_header && ns == STATUS_NS && local == "StatusCode" {
                    out.status = text
                        .trim()
                        .parse()
                        .map_err(|_| format!("StatusCode '{}' is not a number", text.trim()))?;
                } else if in_header && ns == WEB_NS && local == "FaultReason" {
                    out.reason = Some(text.clone());
                } else if in_header && ns == WEB_NS && local != "HttpAddress" {
                    out.headers.push((local, text.clone()));
                } else if in_body && local == "Binary" {
                    out.body = base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|e| format!("the Binary body is not base64: {e}"))?;
                } else if in_body {
                    out.body = text.clone().into_bytes();
                }
                text.clear();
            }
            Ok((_, XmlEvent::Eof)) => break,
            Err(e) => return Err(e.to_string()),
            _ => {}
        }
    }
    if !(100..=599).contains(&out.status) {
        return Err(format!("StatusCode {} is not an HTTP status", out.status));
    }
    Ok(out)
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// Longest preamble type string (`connect`, `probe`).
pub const MAX_PREAMBLE_TYPE: usize = 16;
/// Longest target URI in a `connect` preamble.
pub const MAX_PREAMBLE_VIA: usize = 4096;

/// A complete NetTcpRelay preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// `probe` + message type (1: the relay's address, 2: the client's as seen).
    Probe(i32),
    /// `connect` + target URI + security flag (`true`: TLS follows).
    Connect {
        /// The target URI (`sb://ns/path` for clients, `sb://ip:port/` for listeners).
        via: String,
        /// Flag byte `01`.
        tls: bool,
    },
}

/// Why a preamble was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// A length prefix outside its limit.
    #[error("{what}: length {len} is outside 0..={max}")]
    Length {
        /// Which field.
        what: &'static str,
        /// The length sent.
        len: i32,
        /// The limit.
        max: usize,
    },
    /// Not `connect` or `probe`.
    #[error("not a NetTcpRelay preamble: type '{0}' (expected 'connect' or 'probe')")]
    UnknownType(String),
    /// The URI is not UTF-8.
    #[error("the target URI is not UTF-8")]
    NotUtf8,
    /// A flag byte other than 00 or 01.
    #[error("wrong security flag byte 0x{0:02x} after the target URI (expected 00 or 01)")]
    Flag(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    TypeLen,
    Type(usize),
    ViaLen,
    Via(usize),
    Flag,
    ProbeKind,
    Done,
}

/// Reads a preamble without ever asking for a byte past it (TLS may follow the flag byte):
/// read exactly [`want`](Self::want) bytes and [`feed`](Self::feed) them, until it returns
/// the preamble.
#[derive(Debug)]
pub struct PreambleReader {
    state: PState,
    via: String,
}

impl Default for PreambleReader {
    fn default() -> Self {
        PreambleReader {
            state: PState::TypeLen,
            via: String::new(),
        }
    }
}

fn length(b: &[u8], what: &'static str, max: usize) -> Result<usize, PreambleError> {
    let len = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if len < 0 || len as usize > max {
        return Err(PreambleError::Length { what, len, max });
    }
    Ok(len as usize)
}

impl PreambleReader {
    /// How many bytes to read next (0 once done).
    pub fn want(&self) -> usize {
        match self.state {
            PState::TypeLen | PState::ViaLen | PState::ProbeKind => 4,
            PState::Type(n) | PState::Via(n) => n,
            PState::Flag => 1,
            PState::Done => 0,
        }
    }

    /// Feeds exactly [`want`](Self::want) bytes (fewer is a caller bug and is refused as a
    /// length error; zero-length fields need an empty slice).
    pub fn feed(&mut self, b: &[u8]) -> Result<Option<Preamble>, PreambleError> {
        if b.len() != self.want() {
            return Err(PreambleError::Length {
                what: "read",
                len: b.len() as i32,
                max: self.want(),
            });
        }
        match self.state {
            PState::TypeLen => {
                self.state = PState::Type(length(b, "preamble type", MAX_PREAMBLE_TYPE)?)
            }
            PState::Type(_) => match b {
                b"connect" => self.state = PState::ViaLen,
                b"probe" => self.state = PState::ProbeKind,
                other => {
                    return Err(PreambleError::UnknownType(
                        String::from_utf8_lossy(other).escape_debug().to_string(),
                    ))
                }
            },
            PState::ViaLen => self.state = PState::Via(length(b, "target URI", MAX_PREAMBLE_VIA)?),
            PState::Via(_) => {
                self.via = String::from_utf8(b.to_vec()).map_err(|_| PreambleError::NotUtf8)?;
                self.state = PState::Flag;
            }
            PState::Flag => {
                let tls = match b[0] {
                    0 => false,
                    1 => true,
                    f => return Err(PreambleError::Flag(f)),
                };
                self.state = PState::Done;
                return Ok(Some(Preamble::Connect {
                    via: std::mem::take(&mut self.via),
                    tls,
                }));
            }
            PState::ProbeKind => {
                self.state = PState::Done;
                return Ok(Some(Preamble::Probe(i32::from_le_bytes([
                    b[0], b[1], b[2], b[3],
                ]))));
            }
            PState::Done => {}
        }
        Ok(None)
    }
}

/// Reads a preamble from a complete buffer (tests, fuzzing): the preamble and the bytes used.
pub fn parse_preamble(mut data: &[u8]) -> Result<Option<(Preamble, usize)>, PreambleError> {
    let total = data.len();
    let mut r = PreambleReader::default();
    loop {
        let w = r.want();
        if data.len() < w {
            return Ok(None);
        }
        let (now, rest) = data.split_at(w);
        data = rest;
        if let Some(p) = r.feed(now)? {
            return Ok(Some((p, total - data.len())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_form_of_an_address_puts_the_first_octet_lowest() {
        // known.md: 2748520724 = 20.25.211.163.
        assert_eq!(ipv4_as_long(Ipv4Addr::new(20, 25, 211, 163)), 2_748_520_724);
        assert_eq!(ipv4_as_long(Ipv4Addr::new(127, 0, 0, 1)), 16_777_343);
    }

    #[test]
    fn control_messages_round_trip_through_msbin1() {
        let adv = Advertise {
            ip: Ipv4Addr::LOCALHOST,
            port: 9352,
            http_port: 80,
            https_port: 443,
        };
        for xml in [
            relayed_connect_xml(
                "sb://contoso.relay.local/echo/",
                "0b6c0e0e-1b7c-4b9e-9d57-4a6c5c6b7d3e",
                &adv,
                "contoso.relay.local",
            ),
            relay_fault_xml(Some("urn:uuid:1"), "EndpointNotFoundFault", "no listener"),
            reply_envelope(
                "RelayedAcceptReply",
                None,
                r#"<anyType xmlns="http://schemas.microsoft.com/2003/10/Serialization/"/>"#,
            ),
        ] {
            let bin = to_msbin1(&xml).unwrap();
            assert_eq!(
                bin[0], 0x56,
                "starts with s:Envelope from the static dictionary"
            );
            let back = from_msbin1(&bin).unwrap();
            assert_eq!(to_msbin1(&back).unwrap(), bin);
        }
        let x =
            from_msbin1(&to_msbin1(&relayed_connect_xml("sb://h/p/", "abc", &adv, "h")).unwrap())
                .unwrap();
        let t: Vec<Option<String>> = [
            "<Id>abc</Id>",
            "<IpAddress>16777343</IpAddress>",
            "<IpPort>9352</IpPort>",
        ]
        .iter()
        .map(|p| {
            x.contains(p)
                .then(|| p.split(['>', '<']).nth(2).unwrap().to_string())
        })
        .collect();
        assert_eq!(
            t,
            vec![
                Some("abc".into()),
                Some("16777343".into()),
                Some("9352".into())
            ]
        );
    }

    #[test]
    fn uris_split_into_host_and_path() {
        assert_eq!(
            split_uri("sb://ns.host:9352/a/b/"),
            Some(("ns.host".into(), "a/b".into()))
        );
        assert_eq!(
            split_uri("sb://ns.host"),
            Some(("ns.host".into(), String::new()))
        );
        assert_eq!(split_uri("nonsense"), None);
    }

    #[test]
    fn a_request_maps_to_the_documented_headers_and_back() {
        let xml = http_request_xml(
            "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a",
            "POST",
            "sb://contoso/cc/",
            "http://contoso/cc?x=1",
            &[
                ("Content-Type".into(), "text/xml; charset=utf-8".into()),
                ("SOAPAction".into(), "\"urn:check\"".into()),
                ("Weird:Name".into(), "dropped".into()),
            ],
            b"<s:Envelope/>",
        );
        let bin = to_msbin1(&xml).unwrap();
        let back = from_msbin1(&bin).unwrap();
        assert!(back.contains("WrappedSoap11"), "{back}");
        assert!(back.contains(r#"<SOAPAction xmlns="http://schemas.microsoft.com/netservices/2009/05/servicebus/web">"urn:check"</SOAPAction>"#) || back.contains("&quot;urn:check&quot;"), "{back}");
        assert!(!back.contains("dropped"));
        assert!(
            back.contains("<Binary>PHM6RW52ZWxvcGUvPg==</Binary>"),
            "{back}"
        );
        let resp = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action>POSTResponse</a:Action><StatusCode xmlns="{STATUS_NS}">201</StatusCode><X-Served-By xmlns="{WEB_NS}">legacy</X-Served-By></s:Header><s:Body><Binary>aGk=</Binary></s:Body></s:Envelope>"#
        );
        let p = parse_http_response(&resp).unwrap();
        assert_eq!(p.status, 201);
        assert_eq!(
            p.headers,
            vec![("X-Served-By".to_string(), "legacy".to_string())]
        );
        assert_eq!(p.body, b"hi");
        assert!(parse_http_response(&resp.replace(">201<", ">9999<")).is_err());
        let none = parse_http_response(r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body/></s:Envelope>"#).unwrap();
        assert_eq!(none.status, 202);
    }

    #[test]
    fn preambles_parse_as_the_notes_describe() {
        let mut b = vec![7, 0, 0, 0];
        b.extend_from_slice(b"connect");
        b.extend_from_slice(&20i32.to_le_bytes());
        b.extend_from_slice(b"sb://127.0.0.1:9352/");
        b.push(1);
        b.extend_from_slice(b"\x16\x03\x01"); // TLS follows: not consumed
        assert_eq!(
            parse_preamble(&b).unwrap(),
            Some((
                Preamble::Connect {
                    via: "sb://127.0.0.1:9352/".into(),
                    tls: true
                },
                36
            ))
        );
        assert_eq!(parse_preamble(&b[..20]).unwrap(), None);
        let mut p = vec![5, 0, 0, 0];
        p.extend_from_slice(b"probe");
        p.extend_from_slice(&2i32.to_le_bytes());
        assert_eq!(parse_preamble(&p).unwrap(), Some((Preamble::Probe(2), 13)));
        let mut bad = b[..35].to_vec();
        bad.push(7);
        assert_eq!(parse_preamble(&bad), Err(PreambleError::Flag(7)));
        assert!(matches!(
            parse_preamble(b"GET / HTTP/1.1\r\n"),
            Err(PreambleError::Length { .. })
        ));
        assert!(matches!(
            parse_preamble(&[5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o']),
            Err(PreambleError::UnknownType(_))
        ));
    }

    proptest::proptest! {
        /// Any bytes: a preamble, a clear error, or a request for more; never a panic, and
        /// never more consumed than given.
        #[test]
        fn any_bytes_are_a_preamble_an_error_or_incomplete(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(Some((_, used))) = parse_preamble(&data) {
                proptest::prop_assert!(used <= data.len());
            }
        }

        /// A well-formed connect preamble always parses back to what was written.
        #[test]
        fn connect_preambles_round_trip(via in "[a-z0-9:/.]{0,80}", tls in proptest::bool::ANY) {
            let mut b = vec![7, 0, 0, 0];
            b.extend_from_slice(b"connect");
            b.extend_from_slice(&(via.len() as i32).to_le_bytes());
            b.extend_from_slice(via.as_bytes());
            b.push(tls as u8);
            proptest::prop_assert_eq!(parse_preamble(&b).unwrap(), Some((Preamble::Connect { via: via.clone(), tls }, b.len())));
        }

        /// Any text given as a listener's HTTP response: parts or an error, never a panic.
        #[test]
        fn any_response_text_is_parts_or_an_error(s in ".{0,200}") {
            let _ = parse_http_response(&s);
            let _ = parse_http_response(&format!("<s:Envelope xmlns:s=\"{SOAP12}\"><s:Header>{s}</s:Header><s:Body>{s}</s:Body></s:Envelope>"));
        }
    }
}

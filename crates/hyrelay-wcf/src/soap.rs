//! Text SOAP over HTTP ⇄ the SOAP 1.2 + WS-Addressing 1.0 envelopes a net.tcp service
//! expects: what lets plain HTTP clients that know nothing of WCF call a net.tcp service.

use quick_xml::events::Event;

/// SOAP 1.1 envelope namespace.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA10: &str = crate::envelope::WSA10;
const WSA04: &str = crate::envelope::WSA04;
const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// The SOAP version of an HTTP request (and of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    /// `text/xml` with a `SOAPAction` header.
    Soap11,
    /// `application/soap+xml`, the action in the content type or a WS-Addressing header.
    Soap12,
}

impl SoapVersion {
    /// The response content type.
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml; charset=utf-8",
            SoapVersion::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// Why an HTTP request is not a SOAP call the bridge can carry (answered with 400/415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SoapError(pub String);

fn err(s: impl Into<String>) -> SoapError {
    SoapError(s.into())
}

/// A request converted for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// SOAP 1.2 + WS-Addressing 1.0 envelope as text XML.
    pub xml: String,
    /// The SOAP version to answer in.
    pub version: SoapVersion,
    /// The action.
    pub action: String,
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn param<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"'))
    })
}

/// What [`parse_envelope`] found: the envelope's prefix and namespace declarations, and
/// the byte ranges of the header blocks and of the body's content.
struct Parsed {
    prefix: String,
    ns: String,
    decls: Vec<(String, String)>,
    /// (range, local name, namespace, text)
    headers: Vec<(std::ops::Range<usize>, String, String, String)>,
    body: Option<std::ops::Range<usize>>,
}

fn split_qname(q: &[u8]) -> (String, String) {
    let q = String::from_utf8_lossy(q);
    match q.split_once(':') {
        Some((p, l)) => (p.to_owned(), l.to_owned()),
        None => (String::new(), q.into_owned()),
    }
}

fn xmlns_of(e: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
    e.attributes()
        .flatten()
        .filter_map(|a| {
            let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let v = a.unescape_value().ok()?.into_owned();
            if k == "xmlns" {
                Some((String::new(), v))
            } else {
                k.strip_prefix("xmlns:").map(|p| (p.to_owned(), v))
            }
        })
        .collect()
}

/// A header block being read: start offset, prefix, local name, its own xmlns.
type HeaderStart = (usize, String, String, Vec<(String, String)>);

fn parse_envelope(xml: &str, max_depth: usize) -> Result<Parsed, SoapError> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    let mut p = Parsed {
        prefix: String::new(),
        ns: String::new(),
        decls: Vec::new(),
        headers: Vec::new(),
        body: None,
    };
    let mut in_header = false;
    let mut body_start = None;
    let mut header_start: Option<HeaderStart> = None;
    let mut text = String::new();
    loop {
        let before = r.buffer_position() as usize;
        let ev = r
            .read_event()
            .map_err(|e| err(format!("the request body is not XML: {e}")))?;
        let after = r.buffer_position() as usize;
        match ev {
            Event::Start(e) | Event::Empty(e) if depth == 0 => {
                let (prefix, local) = split_qname(e.name().as_ref());
                let decls = xmlns_of(&e);
                let ns = decls
                    .iter()
                    .find(|(pp, _)| *pp == prefix)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                if local != "Envelope" || (ns != SOAP11 && ns != SOAP12) {
                    return Err(err(format!(
                        "the request is not a SOAP envelope (root element {local} in namespace {ns:?})"
                    )));
                }
                p.prefix = prefix;
                p.ns = ns;
                p.decls = decls;
                if matches!(ev_kind(&r, xml, before), Some(true)) {
                    break;
                }
                depth = 1;
            }
            Event::Start(e) => {
                depth += 1;
                if depth > max_depth {
                    return Err(err(format!(
                        "the envelope is nested deeper than {max_depth}"
                    )));
                }
                let (prefix, local) = split_qname(e.name().as_ref());
                if depth == 2 && prefix == p.prefix {
                    match local.as_str() {
                        "Header" => in_header = true,
                        "Body" => body_start = Some(after),
                        _ => {}
                    }
                } else if depth == 3 && in_header {
                    header_start = Some((before, prefix, local, xmlns_of(&e)));
                    text.clear();
                }
            }
            Event::Empty(e) => {
                if depth == 1 {
                    let (prefix, local) = split_qname(e.name().as_ref());
                    if prefix == p.prefix && local == "Body" {
                        p.body = Some(after..after);
                    }
                } else if depth == 2 && in_header {
                    let (prefix, local) = split_qname(e.name().as_ref());
                    let ns = resolve(&prefix, &xmlns_of(&e), &p.decls);
                    p.headers.push((before..after, local, ns, String::new()));
                }
            }
            Event::Text(t) if header_start.is_some() && depth == 3 => {
                text.push_str(&t.unescape().map(|c| c.into_owned()).unwrap_or_default());
            }
            Event::End(_) => {
                if depth == 3 && in_header {
                    if let Some((start, prefix, local, own)) = header_start.take() {
                        let ns = resolve(&prefix, &own, &p.decls);
                        p.headers
                            .push((start..after, local, ns, text.trim().to_owned()));
                    }
                } else if depth == 2 {
                    if in_header {
                        in_header = false;
                    } else if let Some(s) = body_start.take() {
                        p.body = Some(s..before);
                    }
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Event::Eof => return Err(err("the SOAP envelope is incomplete")),
            _ => {}
        }
    }
    if p.body.is_none() {
        return Err(err("the SOAP envelope has no Body"));
    }
    Ok(p)
}

/// `Some(true)` when the event that started at `at` was an empty element.
fn ev_kind(_r: &quick_xml::Reader<&[u8]>, xml: &str, at: usize) -> Option<bool> {
    let rest = &xml[at..];
    let end = rest.find('>')?;
    Some(rest[..end].ends_with('/'))
}

fn resolve(prefix: &str, own: &[(String, String)], env: &[(String, String)]) -> String {
    own.iter()
        .chain(env.iter())
        .find(|(p, _)| p == prefix)
        .map(|(_, n)| n.clone())
        .unwrap_or_default()
}

/// Convert an HTTP SOAP request (SOAP 1.1 or 1.2) to the SOAP 1.2 + WS-Addressing 1.0
/// envelope a net.tcp service expects, addressed to `service_address`. Action: the
/// request's WS-Addressing Action, else the content type's `action`, else `SOAPAction`.
pub fn request_to_nettcp(
    content_type: &str,
    soap_action: Option<&str>,
    body: &str,
    service_address: &str,
    message_id: &str,
) -> Result<Converted, SoapError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let declared = match mime.as_str() {
        "application/soap+xml" => SoapVersion::Soap12,
        "text/xml" => SoapVersion::Soap11,
        other => {
            return Err(err(format!(
                "content type {other:?} is not SOAP: use application/soap+xml (SOAP 1.2) or text/xml with SOAPAction (SOAP 1.1)"
            )))
        }
    };
    let p = parse_envelope(body, 128)?;
    let version = if p.ns == SOAP12 {
        SoapVersion::Soap12
    } else {
        SoapVersion::Soap11
    };
    if version != declared {
        return Err(err(format!(
            "content type {mime} does not match the envelope's SOAP version ({})",
            p.ns
        )));
    }
    let mut action = None;
    let mut kept = String::new();
    for (range, local, ns, text) in &p.headers {
        if ns == WSA10 || ns == WSA04 {
            if local == "Action" {
                action = Some(text.clone());
            }
            continue; // the bridge writes its own addressing headers
        }
        kept.push_str(&body[range.clone()]);
    }
    let action = action
        .or_else(|| param(content_type, "action").map(str::to_owned))
        .or_else(|| soap_action.map(|a| a.trim().trim_matches('"').to_owned()))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            err("no SOAP action: give a SOAPAction header (SOAP 1.1) or action=\"…\" in the content type (SOAP 1.2)")
        })?;
    let mut decls = String::new();
    for (prefix, ns) in &p.decls {
        if prefix == "s" || prefix == "a" || (prefix.is_empty() && (ns == SOAP11 || ns == SOAP12)) {
            continue;
        }
        if ns == SOAP11 || ns == SOAP12 {
            // the request's own envelope prefix, now bound to SOAP 1.2
            decls.push_str(&format!(" xmlns:{prefix}=\"{SOAP12}\""));
            continue;
        }
        if prefix.is_empty() {
            decls.push_str(&format!(" xmlns=\"{}\"", escape(ns)));
        } else {
            decls.push_str(&format!(" xmlns:{prefix}=\"{}\"", escape(ns)));
        }
    }
    let body_inner = &body[p.body.clone().unwrap_or(0..0)];
    let xml = format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA10}\"{decls}><s:Header>\
<a:Action s:mustUnderstand=\"1\">{}</a:Action><a:MessageID>{}</a:MessageID>\
<a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>\
<a:To s:mustUnderstand=\"1\">{}</a:To>{kept}</s:Header><s:Body>{body_inner}</s:Body></s:Envelope>",
        escape(&action),
        escape(message_id),
        escape(service_address),
    );
    Ok(Converted {
        xml,
        version,
        action,
    })
}

/// A reply for the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Text XML.
    pub xml: String,
    /// The body is a SOAP fault (HTTP status 500).
    pub fault: bool,
}

/// Convert the service's SOAP 1.2 reply (text XML decoded from binary) for a client that
/// spoke `version`: as is for SOAP 1.2; for SOAP 1.1 the body in a SOAP 1.1 envelope,
/// without the WS-Addressing headers, and faults in the SOAP 1.1 form.
pub fn reply_from_nettcp(xml: &str, version: SoapVersion) -> Result<Reply, SoapError> {
    let p = parse_envelope(xml, 256)?;
    let inner = &xml[p.body.clone().unwrap_or(0..0)];
    let fault = first_child_is_fault(inner);
    match version {
        SoapVersion::Soap12 => Ok(Reply {
            xml: xml.to_owned(),
            fault,
        }),
        SoapVersion::Soap11 => {
            let mut decls = String::new();
            for (prefix, ns) in &p.decls {
                if prefix == "s" || ns == SOAP12 || ns == SOAP11 || prefix.is_empty() {
                    continue;
                }
                decls.push_str(&format!(" xmlns:{prefix}=\"{}\"", escape(ns)));
            }
            let body = if fault {
                fault_11(inner)
            } else {
                inner.to_owned()
            };
            Ok(Reply {
                xml: format!(
                    "<s:Envelope xmlns:s=\"{SOAP11}\"{decls}><s:Body>{body}</s:Body></s:Envelope>"
                ),
                fault,
            })
        }
    }
}

fn first_child_is_fault(inner: &str) -> bool {
    let mut r = quick_xml::Reader::from_str(inner);
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return split_qname(e.name().as_ref()).1 == "Fault";
            }
            Ok(Event::Eof) | Err(_) => return false,
            _ => {}
        }
    }
}

/// SOAP 1.2 fault (`Code/Value`, `Reason/Text`, `Detail`) → SOAP 1.1 (`faultcode`,
/// `faultstring`, `detail`).
fn fault_11(inner: &str) -> String {
    let mut r = quick_xml::Reader::from_str(inner);
    let mut path: Vec<String> = Vec::new();
    let mut code = String::new();
    let mut reason = String::new();
    let mut detail = String::new();
    let mut detail_start = None;
    loop {
        let before = r.buffer_position() as usize;
        let ev = match r.read_event() {
            Ok(e) => e,
            Err(_) => break,
        };
        let after = r.buffer_position() as usize;
        match ev {
            Event::Start(e) => {
                let local = split_qname(e.name().as_ref()).1;
                if local == "Detail" && path.len() == 1 {
                    detail_start = Some(after);
                }
                path.push(local);
            }
            Event::End(_) => {
                if path.len() == 2 && path[1] == "Detail" {
                    if let Some(s) = detail_start.take() {
                        detail = inner[s..before].to_owned();
                    }
                }
                path.pop();
            }
            Event::Text(t) => {
                let v = t.unescape().map(|c| c.into_owned()).unwrap_or_default();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    ["Fault", "Code", "Value"] if code.is_empty() => code = v,
                    ["Fault", "Reason", "Text"] if reason.is_empty() => reason = v,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let local = code.rsplit(':').next().unwrap_or("");
    let code11 = match local {
        "Sender" => "s:Client",
        "Receiver" => "s:Server",
        "VersionMismatch" => "s:VersionMismatch",
        "MustUnderstand" => "s:MustUnderstand",
        _ => "s:Server",
    };
    let mut out = format!(
        "<s:Fault><faultcode>{code11}</faultcode><faultstring>{}</faultstring>",
        escape(&reason)
    );
    if !detail.is_empty() {
        out.push_str(&format!("<detail>{detail}</detail>"));
    }
    out.push_str("</s:Fault>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ11: &str = r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cc="http://schemas.example.org/creditcheck/2024"><soap:Body><cc:CheckCredit><cc:customerId>CUST-7</cc:customerId><cc:amount>10.5</cc:amount></cc:CheckCredit></soap:Body></soap:Envelope>"#;

    #[test]
    fn soap11_request_becomes_soap12_with_addressing() {
        let c = request_to_nettcp(
            "text/xml; charset=utf-8",
            Some("\"urn:act\""),
            REQ11,
            "net.tcp://h:1/CC",
            "urn:uuid:1",
        )
        .unwrap();
        assert_eq!(c.version, SoapVersion::Soap11);
        assert_eq!(c.action, "urn:act");
        assert!(
            c.xml
                .contains("<a:Action s:mustUnderstand=\"1\">urn:act</a:Action>"),
            "{}",
            c.xml
        );
        assert!(c
            .xml
            .contains("<a:To s:mustUnderstand=\"1\">net.tcp://h:1/CC</a:To>"));
        assert!(c
            .xml
            .contains("xmlns:cc=\"http://schemas.example.org/creditcheck/2024\""));
        assert!(c
            .xml
            .contains("<s:Body><cc:CheckCredit><cc:customerId>CUST-7</cc:customerId>"));
        assert!(!c.xml.contains(SOAP11));
    }

    #[test]
    fn soap12_action_from_content_type_or_header() {
        let req = REQ11.replace(SOAP11, SOAP12);
        let c = request_to_nettcp(
            "application/soap+xml; charset=utf-8; action=\"urn:x\"",
            None,
            &req,
            "net.tcp://h/",
            "m",
        )
        .unwrap();
        assert_eq!(c.action, "urn:x");
        let with_wsa = req.replace(
            "<soap:Body>",
            "<soap:Header><w:Action xmlns:w=\"http://www.w3.org/2005/08/addressing\">urn:from-header</w:Action><k:Custom xmlns:k=\"urn:k\">1</k:Custom></soap:Header><soap:Body>",
        );
        let c = request_to_nettcp("application/soap+xml", None, &with_wsa, "net.tcp://h/", "m")
            .unwrap();
        assert_eq!(c.action, "urn:from-header");
        assert!(
            c.xml.contains("<k:Custom xmlns:k=\"urn:k\">1</k:Custom>"),
            "{}",
            c.xml
        );
        assert_eq!(
            c.xml.matches("Action").count(),
            2,
            "only the bridge's Action: {}",
            c.xml
        );
    }

    #[test]
    fn bad_requests_say_why() {
        assert!(request_to_nettcp("application/json", None, "{}", "x", "m")
            .unwrap_err()
            .0
            .contains("not SOAP"));
        assert!(request_to_nettcp("text/xml", None, REQ11, "x", "m")
            .unwrap_err()
            .0
            .contains("SOAPAction"));
        assert!(request_to_nettcp("text/xml", Some("a"), "<x/>", "x", "m")
            .unwrap_err()
            .0
            .contains("not a SOAP envelope"));
        assert!(
            request_to_nettcp("application/soap+xml", Some("a"), REQ11, "x", "m")
                .unwrap_err()
                .0
                .contains("does not match")
        );
        assert!(request_to_nettcp(
            "text/xml",
            Some("a"),
            "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>",
            "x",
            "m"
        )
        .is_err());
    }

    #[test]
    fn soap12_fault_becomes_soap11_fault() {
        let reply = format!(
            "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA10}\"><s:Header><a:Action s:mustUnderstand=\"1\">x</a:Action></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en\">amount too high</s:Text></s:Reason><s:Detail><E xmlns=\"urn:e\">1</E></s:Detail></s:Fault></s:Body></s:Envelope>"
        );
        let r = reply_from_nettcp(&reply, SoapVersion::Soap11).unwrap();
        assert!(r.fault);
        assert!(r.xml.contains("<faultcode>s:Server</faultcode><faultstring>amount too high</faultstring><detail><E xmlns=\"urn:e\">1</E></detail>"), "{}", r.xml);
        assert!(r.xml.contains(SOAP11) && !r.xml.contains("Action"));
        let r12 = reply_from_nettcp(&reply, SoapVersion::Soap12).unwrap();
        assert!(r12.fault);
        assert_eq!(r12.xml, reply);
    }
}

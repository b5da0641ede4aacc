//! Reading and rewriting the WS-Addressing headers of binary SOAP envelopes.

use hyrelay_nbfx::{
    read_records, write_records, Dictionaries, Limits, NameRef, PrefixRef, Record,
    SessionDictionary, Text,
};

use crate::Error;

/// WS-Addressing 1.0.
pub const WSA10: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Addressing August 2004.
pub const WSA04: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";

/// How a message's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadEncoding {
    /// `application/soap+msbinsession1` (NMF 0x08): [MC-NBFSE] table, then [MC-NBFX].
    BinarySession,
    /// `application/soap+msbin1` (NMF 0x07): [MC-NBFX] with the static dictionary only.
    Binary,
}

/// What [`rewrite_to`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewrite {
    /// The new payload, or `None` when the message already said what it should (the
    /// original bytes pass unchanged).
    pub payload: Option<Vec<u8>>,
    /// The `To` header as received (`None`: the message had none).
    pub old_to: Option<String>,
    /// The `Action` header.
    pub action: Option<String>,
}

fn resolve<'a>(n: NameRef<'a>, d: &Dictionaries<'a>) -> Option<&'a str> {
    match n {
        NameRef::Inline(s) => Some(s),
        NameRef::Dict(k) => d.resolve(k, 0).ok(),
    }
}

fn prefix_str(p: PrefixRef<'_>) -> String {
    match p {
        PrefixRef::None => String::new(),
        PrefixRef::Str(s) => s.to_owned(),
        PrefixRef::Letter(l) => l.as_char().to_string(),
    }
}

fn text_of(t: &Text, d: &Dictionaries<'_>) -> Option<String> {
    match t {
        Text::Chars8(s) | Text::Chars16(s) | Text::Chars32(s) => Some(s.clone()),
        Text::UnicodeChars8(s) | Text::UnicodeChars16(s) | Text::UnicodeChars32(s) => {
            Some(s.clone())
        }
        Text::Empty => Some(String::new()),
        Text::Dictionary(k) => d.resolve(*k, 0).ok().map(str::to_owned),
        _ => None,
    }
}

fn chars(s: &str) -> Text {
    match s.len() {
        0..=0xFF => Text::Chars8(s.to_owned()),
        0x100..=0xFFFF => Text::Chars16(s.to_owned()),
        _ => Text::Chars32(s.to_owned()),
    }
}

/// A WS-Addressing header of the envelope: its element's record index and the records of
/// its text content.
#[derive(Debug)]
struct Header {
    local: String,
    /// Index of the first content record and one past the last (EndElement excluded).
    content: (usize, usize),
    /// Content ends with a TextWithEndElement (no separate EndElement record).
    with_end: bool,
    value: Option<String>,
}

/// Find the WS-Addressing headers (`Envelope/Header/*` in a WS-Addressing namespace).
fn addressing_headers(records: &[Record], d: &Dictionaries<'_>) -> Vec<Header> {
    let mut out = Vec::new();
    // Namespace scopes: (depth, prefix, ns)
    let mut scopes: Vec<(usize, String, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let mut in_header = false;
    while i < records.len() {
        match &records[i] {
            Record::Element(e) => {
                depth += 1;
                // attributes (xmlns) first
                let mut j = i + 1;
                while let Some(Record::Attribute(a)) = records.get(j) {
                    if let Some((p, ns)) = a.xmlns() {
                        if let Some(ns) = resolve(ns, d) {
                            scopes.push((depth, p.to_owned(), ns.to_owned()));
                        }
                    }
                    j += 1;
                }
                let prefix = prefix_str(e.prefix());
                let ns = scopes
                    .iter()
                    .rev()
                    .find(|(_, p, _)| *p == prefix)
                    .map(|(_, _, n)| n.as_str())
                    .unwrap_or("");
                let local = resolve(e.name(), d).unwrap_or("");
                if depth == 2 && local == "Header" {
                    in_header = true;
                }
                if depth == 3 && in_header && (ns == WSA10 || ns == WSA04) {
                    // content: text records up to the matching end
                    let start = j;
                    let mut k = j;
                    let mut value = String::new();
                    let mut simple = true;
                    let mut with_end = false;
                    loop {
                        match records.get(k) {
                            Some(Record::Text(t)) => {
                                match text_of(t, d) {
                                    Some(s) => value.push_str(&s),
                                    None => simple = false,
                                }
                                k += 1;
                            }
                            Some(Record::TextWithEndElement(t)) => {
                                match text_of(t, d) {
                                    Some(s) => value.push_str(&s),
                                    None => simple = false,
                                }
                                with_end = true;
                                k += 1;
                                break;
                            }
                            Some(Record::EndElement) => break,
                            _ => {
                                simple = false;
                                break;
                            }
                        }
                    }
                    out.push(Header {
                        local: local.to_owned(),
                        content: (start, if with_end { k - 1 } else { k }),
                        with_end,
                        value: simple.then_some(value),
                    });
                }
                i = j;
                continue;
            }
            Record::TextWithEndElement(_) | Record::EndElement => {
                scopes.retain(|(dd, _, _)| *dd < depth);
                if depth == 2 {
                    in_header = false;
                }
                depth = depth.saturating_sub(1);
            }
            Record::Array(_) => {}
            _ => {}
        }
        i += 1;
    }
    out
}

fn split_payload(
    payload: &[u8],
    encoding: PayloadEncoding,
    session: Option<&mut SessionDictionary>,
) -> Result<usize, Error> {
    match encoding {
        PayloadEncoding::Binary => Ok(0),
        PayloadEncoding::BinarySession => {
            let s = session.ok_or(Error::NoSession)?;
            Ok(s.read_table(payload).map_err(Error::Envelope)?.0)
        }
    }
}

/// Read the `To` and `Action` of a message and, when `To` differs from `new_to`, rewrite
/// it; every other record keeps its bytes. With [`PayloadEncoding::BinarySession`] the
/// message's string table is applied to `session` (the table is forwarded unchanged, so
/// the receiver's dictionary stays the same as the sender's).
pub fn rewrite_to(
    payload: &[u8],
    encoding: PayloadEncoding,
    session: Option<&mut SessionDictionary>,
    new_to: Option<&str>,
    limits: &Limits,
) -> Result<Rewrite, Error> {
    let mut session = session;
    let doc = split_payload(payload, encoding, session.as_deref_mut())?;
    let dicts = match (&session, encoding) {
        (Some(s), PayloadEncoding::BinarySession) => Dictionaries::with_session(s),
        _ => Dictionaries::static_only(),
    };
    let mut records = read_records(&payload[doc..], dicts, limits)
        .map_err(|e| Error::Envelope(e.shifted(doc)))?;
    let headers = addressing_headers(&records, &dicts);
    let mut rw = Rewrite::default();
    let mut to_idx = None;
    for h in &headers {
        match h.local.as_str() {
            "To" => {
                rw.old_to = h.value.clone();
                to_idx = Some(h);
            }
            "Action" => rw.action = h.value.clone(),
            _ => {}
        }
    }
    if let (Some(h), Some(new_to)) = (to_idx, new_to) {
        if h.value.as_deref() != Some(new_to) {
            let (a, b) = h.content;
            let b = if h.with_end { b + 1 } else { b };
            let replacement = if h.with_end {
                Record::TextWithEndElement(chars(new_to))
            } else {
                Record::Text(chars(new_to))
            };
            records.splice(a..b, [replacement]);
            let mut out = payload[..doc].to_vec();
            write_records(&records, &mut out).map_err(Error::Envelope)?;
            rw.payload = Some(out);
        }
    }
    Ok(rw)
}

/// Read the WS-Addressing headers of a message (local name → text value), applying its
/// string table to `session` for binary-session payloads.
pub fn addressing(
    payload: &[u8],
    encoding: PayloadEncoding,
    session: Option<&mut SessionDictionary>,
    limits: &Limits,
) -> Result<Vec<(String, String)>, Error> {
    let mut session = session;
    let doc = split_payload(payload, encoding, session.as_deref_mut())?;
    let dicts = match (&session, encoding) {
        (Some(s), PayloadEncoding::BinarySession) => Dictionaries::with_session(s),
        _ => Dictionaries::static_only(),
    };
    let records = read_records(&payload[doc..], dicts, limits)
        .map_err(|e| Error::Envelope(e.shifted(doc)))?;
    Ok(addressing_headers(&records, &dicts)
        .into_iter()
        .filter_map(|h| h.value.map(|v| (h.local, v)))
        .collect())
}

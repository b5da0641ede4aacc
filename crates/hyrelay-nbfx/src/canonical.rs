//! Text XML → records, choosing records the way the .NET `XmlBinaryWriter` does.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::record::*;
use crate::text::{format_double, format_float, format_guid, parse_guid};
use crate::{static_key, DictKey, Error, SessionDictionary, SessionMessage};

/// Options for [`xml_to_records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Use static-dictionary records where WCF would: namespace URIs that are [MC-NBFS]
    /// strings, and local names, text values and QNames of elements/attributes that live in
    /// such a well-known namespace (SOAP, WS-Addressing, ...). Names in other namespaces
    /// stay inline (or go to the session dictionary when one is given), because .NET
    /// never searches the static table for plain strings. Default `true`.
    pub static_dictionary: bool,
    /// Encode text that a typed record renders back to exactly as that record:
    /// `true`/`false`, integers (Int8…Int64, UInt64), floats/doubles in .NET "R" form,
    /// lower-case GUIDs, `urn:uuid:` UniqueIds, and `p:Name` QNames whose local name is in
    /// the static dictionary. With `false` only the string rules apply (`""` → Empty,
    /// `"0"`/`"1"` → Zero/One, else Chars/UnicodeChars). Default `true`.
    pub infer_types: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            static_dictionary: true,
            infer_types: true,
        }
    }
}

/// Encode text XML as binary XML records.
///
/// Names: a prefix `""` gives the Short* record, a single letter `a`–`z` the Prefix*A–Z
/// record, other prefixes the record with an explicit prefix string; the Dictionary
/// variant is used when the local name (or namespace URI for xmlns) is in the static
/// dictionary, or, when `session` is given, could be added to it. Text that is the last
/// thing before an end tag uses the WithEndElement form. Comments are kept; the XML
/// declaration, processing instructions and DOCTYPE are dropped; CDATA becomes text.
/// Whitespace outside the root element is dropped.
pub fn xml_to_records(
    xml: &str,
    session: Option<&mut SessionDictionary>,
    opts: &EncodeOptions,
) -> Result<Vec<Record>, Error> {
    let mut reader = Reader::from_str(xml);
    let cfg = reader.config_mut();
    cfg.expand_empty_elements = true;
    cfg.check_end_names = true;
    let mut enc = Encoder {
        records: Vec::new(),
        session,
        opts: *opts,
        depth: 0,
        root_done: false,
        pending: String::new(),
        scopes: Vec::new(),
    };
    loop {
        let offset = reader.buffer_position() as usize;
        let ev = reader.read_event().map_err(|e| Error::Xml {
            offset: reader.error_position() as usize,
            message: e.to_string(),
        })?;
        match ev {
            Event::Start(e) => enc.start(&e, offset)?,
            Event::Empty(e) => {
                enc.start(&e, offset)?;
                enc.end();
            }
            Event::End(_) => enc.end(),
            Event::Text(t) => {
                let raw = utf8(&t, offset)?;
                let s = unescape(&normalize_newlines(raw), offset)?;
                enc.text(&s, offset)?;
            }
            Event::CData(t) => {
                let raw = utf8(&t, offset)?;
                enc.text(&normalize_newlines(raw), offset)?;
            }
            Event::Comment(t) => {
                let raw = utf8(&t, offset)?;
                enc.flush_text();
                enc.records
                    .push(Record::Comment(normalize_newlines(raw).into_owned()));
            }
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if enc.depth != 0 {
        return Err(Error::Xml {
            offset: xml.len(),
            message: "unclosed element".into(),
        });
    }
    if !enc.root_done {
        return Err(Error::Xml {
            offset: xml.len(),
            message: "no root element".into(),
        });
    }
    Ok(enc.records)
}

/// Encode text XML as one [MC-NBFSE] message: names not in the static dictionary are
/// added to `session` (within its budget) and the message's table lists the new ones.
/// Write it with [`write_session_message`](crate::write_session_message).
pub fn xml_to_session_message(
    xml: &str,
    session: &mut SessionDictionary,
    opts: &EncodeOptions,
) -> Result<SessionMessage, Error> {
    let records = xml_to_records(xml, Some(session), opts)?;
    Ok(SessionMessage {
        table: session.take_new_strings(),
        records,
    })
}

fn utf8(b: &[u8], offset: usize) -> Result<&str, Error> {
    core::str::from_utf8(b).map_err(|_| Error::InvalidUtf8 { offset })
}

fn unescape(s: &str, offset: usize) -> Result<String, Error> {
    quick_xml::escape::unescape(s)
        .map(Cow::into_owned)
        .map_err(|e| Error::Xml {
            offset,
            message: e.to_string(),
        })
}

/// XML end-of-line handling: `\r\n` and lone `\r` become `\n`.
fn normalize_newlines(s: &str) -> Cow<'_, str> {
    if !s.contains('\r') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Attribute-value normalisation for CDATA attributes: literal whitespace → space.
fn normalize_attribute(s: &str) -> String {
    normalize_newlines(s).replace(['\n', '\t'], " ")
}

fn is_xml_whitespace(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

struct Encoder<'s> {
    records: Vec<Record>,
    session: Option<&'s mut SessionDictionary>,
    opts: EncodeOptions,
    depth: usize,
    root_done: bool,
    pending: String,
    /// Per open element: its namespace declarations and whether its namespace is a
    /// "well-known" one (a static dictionary string).
    scopes: Vec<(Vec<(String, String)>, bool)>,
}

/// True for namespace URIs that are static dictionary strings: the only namespaces whose
/// names WCF writes as static XmlDictionaryStrings.
fn is_known_ns(ns: &str) -> bool {
    !ns.is_empty() && static_key(ns).is_some()
}

impl Encoder<'_> {
    /// Dictionary key for a name or namespace: the static entry when `known` (the name
    /// belongs to a well-known namespace) and present, else a session string if a session
    /// is in use and has room.
    fn dict(&mut self, s: &str, known: bool) -> Option<DictKey> {
        if s.is_empty() {
            return None;
        }
        if self.opts.static_dictionary && known {
            if let Some(k) = static_key(s) {
                return Some(DictKey(k));
            }
        }
        self.session
            .as_deref_mut()
            .and_then(|sd| sd.intern(s))
            .map(DictKey::from_session_id)
    }

    fn resolve_ns(&self, prefix: &str, own: &[(String, String)]) -> Option<String> {
        if prefix == "xml" {
            return Some("http://www.w3.org/XML/1998/namespace".into());
        }
        own.iter()
            .chain(self.scopes.iter().rev().flat_map(|(d, _)| d.iter()))
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| ns.clone())
    }

    fn in_known_ns(&self) -> bool {
        self.scopes.last().is_some_and(|(_, k)| *k)
    }

    fn flush_text(&mut self) {
        if !self.pending.is_empty() {
            let s = std::mem::take(&mut self.pending);
            let t = choose_text(&s, &self.opts, self.in_known_ns());
            self.records.push(Record::Text(t));
        }
    }

    fn text(&mut self, s: &str, offset: usize) -> Result<(), Error> {
        if self.depth == 0 {
            if !is_xml_whitespace(s) {
                return Err(Error::Xml {
                    offset,
                    message: "non-whitespace text outside the root element".into(),
                });
            }
            return Ok(());
        }
        self.pending.push_str(s);
        Ok(())
    }

    fn end(&mut self) {
        if self.pending.is_empty() {
            self.records.push(Record::EndElement);
        } else {
            let s = std::mem::take(&mut self.pending);
            let t = choose_text(&s, &self.opts, self.in_known_ns());
            // .NET folds the EndElement into the text record only for text it wrote in
            // one piece: strings of at most 85 UTF-16 units (longer ones are written
            // through a length-prefixed path that does not remember the record offset).
            let long_string = matches!(
                t,
                Text::Chars8(_)
                    | Text::Chars16(_)
                    | Text::Chars32(_)
                    | Text::UnicodeChars8(_)
                    | Text::UnicodeChars16(_)
                    | Text::UnicodeChars32(_)
            ) && s.encode_utf16().count() > 85;
            if long_string {
                self.records.push(Record::Text(t));
                self.records.push(Record::EndElement);
            } else {
                self.records.push(Record::TextWithEndElement(t));
            }
        }
        self.scopes.pop();
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.root_done = true;
        }
    }

    fn start(&mut self, e: &BytesStart<'_>, offset: usize) -> Result<(), Error> {
        if self.depth == 0 && self.root_done {
            return Err(Error::Xml {
                offset,
                message: "more than one root element".into(),
            });
        }
        self.flush_text();
        let qname = utf8(e.name().into_inner(), offset)?.to_owned();
        let mut attrs = Vec::new();
        let mut decls = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| Error::Xml {
                offset,
                message: err.to_string(),
            })?;
            let key = utf8(a.key.into_inner(), offset)?.to_owned();
            let raw = utf8(&a.value, offset)?;
            let value = unescape(&normalize_attribute(raw), offset)?;
            if key == "xmlns" {
                decls.push((String::new(), value.clone()));
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                decls.push((p.to_owned(), value.clone()));
            }
            attrs.push((key, value));
        }
        let (prefix, local) = split_qname(&qname);
        let known = self
            .resolve_ns(prefix, &decls)
            .is_some_and(|ns| is_known_ns(&ns));
        let element = match (prefix, self.dict(local, known)) {
            ("", Some(k)) => Element::ShortDictionary { name: k },
            ("", None) => Element::Short { name: local.into() },
            (p, k) => match (PrefixLetter::from_prefix(p), k) {
                (Some(l), Some(k)) => Element::PrefixDictionary { prefix: l, name: k },
                (Some(l), None) => Element::PrefixLetter {
                    prefix: l,
                    name: local.into(),
                },
                (None, Some(k)) => Element::Dictionary {
                    prefix: p.into(),
                    name: k,
                },
                (None, None) => Element::Prefixed {
                    prefix: p.into(),
                    name: local.into(),
                },
            },
        };
        self.records.push(Record::Element(element));
        for (key, value) in attrs {
            let rec = if key == "xmlns" {
                match self.dict(&value, true) {
                    Some(k) => Attribute::ShortDictionaryXmlns { ns: k },
                    None => Attribute::ShortXmlns { ns: value },
                }
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                match self.dict(&value, true) {
                    Some(k) => Attribute::DictionaryXmlns {
                        prefix: p.into(),
                        ns: k,
                    },
                    None => Attribute::Xmlns {
                        prefix: p.into(),
                        ns: value,
                    },
                }
            } else {
                let (p, local) = split_qname(&key);
                let attr_known = !p.is_empty()
                    && self
                        .resolve_ns(p, &decls)
                        .is_some_and(|ns| is_known_ns(&ns));
                let v = choose_text(&value, &self.opts, attr_known || (p.is_empty() && known));
                match (p, self.dict(local, attr_known)) {
                    ("", Some(k)) => Attribute::ShortDictionary { name: k, value: v },
                    ("", None) => Attribute::Short {
                        name: local.into(),
                        value: v,
                    },
                    (p, k) => match (PrefixLetter::from_prefix(p), k) {
                        (Some(l), Some(k)) => Attribute::PrefixDictionary {
                            prefix: l,
                            name: k,
                            value: v,
                        },
                        (Some(l), None) => Attribute::PrefixLetter {
                            prefix: l,
                            name: local.into(),
                            value: v,
                        },
                        (None, Some(k)) => Attribute::Dictionary {
                            prefix: p.into(),
                            name: k,
                            value: v,
                        },
                        (None, None) => Attribute::Prefixed {
                            prefix: p.into(),
                            name: local.into(),
                            value: v,
                        },
                    },
                }
            };
            self.records.push(Record::Attribute(rec));
        }
        self.scopes.push((decls, known));
        self.depth += 1;
        Ok(())
    }
}

fn split_qname(q: &str) -> (&str, &str) {
    q.split_once(':').unwrap_or(("", q))
}

fn is_canonical_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0"
}

/// The record .NET would write for string `s` (see [`EncodeOptions`]).
///
/// `known_ns`: the text belongs to an element (or attribute) in a well-known namespace;
/// only then are DictionaryText and QNameDictionaryText considered, as WCF uses them for
/// XmlDictionaryString values (addressing URIs, fault codes).
pub(crate) fn choose_text(s: &str, opts: &EncodeOptions, known_ns: bool) -> Text {
    match s {
        "" => return Text::Empty,
        "0" => return Text::Zero,
        "1" => return Text::One,
        _ => {}
    }
    let dict = opts.static_dictionary && known_ns;
    if opts.infer_types {
        if let Some(t) = infer(s, dict) {
            return t;
        }
    }
    if dict {
        if let Some(k) = static_key(s) {
            return Text::Dictionary(DictKey(k));
        }
    }
    chars_text(s)
}

fn infer(s: &str, dict: bool) -> Option<Text> {
    match s {
        "true" => return Some(Text::True),
        "false" => return Some(Text::False),
        _ => {}
    }
    if is_canonical_integer(s) {
        if let Ok(v) = s.parse::<i64>() {
            return Some(if let Ok(v) = i8::try_from(v) {
                Text::Int8(v)
            } else if let Ok(v) = i16::try_from(v) {
                Text::Int16(v)
            } else if let Ok(v) = i32::try_from(v) {
                Text::Int32(v)
            } else {
                Text::Int64(v)
            });
        }
        return s.parse::<u64>().ok().map(Text::UInt64);
    }
    if s.len() <= 32 && s.bytes().any(|b| matches!(b, b'.' | b'E' | b'I' | b'N')) {
        if let Ok(v) = s.parse::<f64>() {
            if format_double(v) == s {
                let f = v as f32;
                if v.is_finite() && f64::from(f) == v && format_float(f) == s {
                    return Some(Text::Float(f));
                }
                return Some(Text::Double(v));
            }
        }
    }
    if let Some(g) = parse_guid(s) {
        if format_guid(g) == s {
            return Some(Text::Guid(g));
        }
    }
    if let Some(rest) = s.strip_prefix("urn:uuid:") {
        if let Some(g) = parse_guid(rest) {
            if format_guid(g) == rest {
                return Some(Text::UniqueId(g));
            }
        }
    }
    if dict {
        if let Some((p, local)) = s.split_once(':') {
            if let (Some(l), Some(k)) = (PrefixLetter::from_prefix(p), static_key(local)) {
                if !local.is_empty() {
                    return Some(Text::QNameDictionary {
                        prefix: l,
                        name: DictKey(k),
                    });
                }
            }
        }
    }
    None
}

/// Chars or UnicodeChars text with the smallest length tier, as .NET chooses it.
pub(crate) fn chars_text(s: &str) -> Text {
    let units = s.encode_utf16().count();
    // .NET: UTF-8 unless `utf8_len / 2 > utf16_units`.
    if s.len() / 2 > units {
        let n = units * 2;
        if n < 0x100 {
            Text::UnicodeChars8(s.into())
        } else if n < 0x1_0000 {
            Text::UnicodeChars16(s.into())
        } else {
            Text::UnicodeChars32(s.into())
        }
    } else if s.len() < 0x100 {
        Text::Chars8(s.into())
    } else if s.len() < 0x1_0000 {
        Text::Chars16(s.into())
    } else {
        Text::Chars32(s.into())
    }
}

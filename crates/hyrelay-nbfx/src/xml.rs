//! Records → text XML, the way the .NET reader + `XmlWriter` print them.

use base64::Engine as _;

use crate::record::*;
use crate::text::{
    format_datetime, format_decimal, format_double, format_float, format_guid, format_timespan,
};
use crate::{Dictionaries, Error};

/// Options for [`records_to_xml`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XmlOptions {
    /// Offset from UTC, in minutes, used to render DateTime values of local kind (the .NET
    /// reader uses the reading machine's zone; a sans-IO codec is told). Default 0.
    pub local_offset_minutes: i32,
}

/// Render `records` as text XML: no declaration, UTF-8, attributes in record order,
/// empty elements as `<a></a>`, Array records expanded to one element per item.
///
/// Typed values use .NET's text forms (see [`crate::text`]). Errors (unresolvable
/// dictionary keys, unbalanced records) carry the offset in the XML produced so far.
pub fn records_to_xml(
    records: &[Record],
    dicts: Dictionaries<'_>,
    opts: &XmlOptions,
) -> Result<String, Error> {
    let mut w = XmlOut {
        out: String::new(),
        stack: Vec::new(),
        start_open: false,
        dicts,
        opts,
    };
    for r in records {
        w.record(r)?;
    }
    if !w.stack.is_empty() {
        return Err(Error::UnexpectedEof {
            offset: w.out.len(),
        });
    }
    Ok(w.out)
}

/// The text value of `t` as the .NET reader returns it.
pub(crate) fn text_value(
    t: &Text,
    dicts: Dictionaries<'_>,
    opts: &XmlOptions,
    offset: usize,
) -> Result<String, Error> {
    Ok(match t {
        Text::Zero => "0".into(),
        Text::One => "1".into(),
        Text::False => "false".into(),
        Text::True => "true".into(),
        Text::Int8(v) => v.to_string(),
        Text::Int16(v) => v.to_string(),
        Text::Int32(v) => v.to_string(),
        Text::Int64(v) => v.to_string(),
        Text::UInt64(v) => v.to_string(),
        Text::Float(v) => format_float(*v),
        Text::Double(v) => format_double(*v),
        Text::Decimal(d) => format_decimal(*d),
        Text::DateTime(d) => format_datetime(*d, opts.local_offset_minutes),
        Text::Chars8(s)
        | Text::Chars16(s)
        | Text::Chars32(s)
        | Text::UnicodeChars8(s)
        | Text::UnicodeChars16(s)
        | Text::UnicodeChars32(s) => s.clone(),
        Text::Bytes8(b) | Text::Bytes16(b) | Text::Bytes32(b) => {
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Text::List(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for it in items {
                parts.push(text_value(it, dicts, opts, offset)?);
            }
            parts.join(" ")
        }
        Text::Empty => String::new(),
        Text::Dictionary(k) => dicts.resolve(*k, offset)?.to_owned(),
        Text::UniqueId(g) => format!("urn:uuid:{}", format_guid(*g)),
        Text::TimeSpan(t) => format_timespan(*t),
        Text::Guid(g) => format_guid(*g),
        Text::Bool(b) => if *b != 0 { "true" } else { "false" }.into(),
        Text::QNameDictionary { prefix, name } => {
            format!("{}:{}", prefix.as_char(), dicts.resolve(*name, offset)?)
        }
    })
}

fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
}

struct XmlOut<'a, 'd> {
    out: String,
    stack: Vec<String>,
    start_open: bool,
    dicts: Dictionaries<'d>,
    opts: &'a XmlOptions,
}

impl XmlOut<'_, '_> {
    fn name(&self, p: PrefixRef<'_>, n: NameRef<'_>) -> Result<String, Error> {
        let local = match n {
            NameRef::Inline(s) => s,
            NameRef::Dict(k) => self.dicts.resolve(k, self.out.len())?,
        };
        Ok(match p {
            PrefixRef::None => local.to_owned(),
            PrefixRef::Str("") => local.to_owned(),
            PrefixRef::Str(p) => format!("{p}:{local}"),
            PrefixRef::Letter(l) => format!("{}:{local}", l.as_char()),
        })
    }

    fn close_start(&mut self) {
        if self.start_open {
            self.out.push('>');
            self.start_open = false;
        }
    }

    fn value(&self, t: &Text) -> Result<String, Error> {
        text_value(t, self.dicts, self.opts, self.out.len())
    }

    fn attribute(&mut self, a: &Attribute) -> Result<(), Error> {
        let (qname, value) = if let Some((prefix, ns)) = a.xmlns() {
            let ns = match ns {
                NameRef::Inline(s) => s.to_owned(),
                NameRef::Dict(k) => self.dicts.resolve(k, self.out.len())?.to_owned(),
            };
            let q = if prefix.is_empty() {
                "xmlns".to_owned()
            } else {
                format!("xmlns:{prefix}")
            };
            (q, ns)
        } else if let Some((p, n, v)) = a.plain() {
            (self.name(p, n)?, self.value(v)?)
        } else {
            return Ok(());
        };
        self.out.push(' ');
        self.out.push_str(&qname);
        self.out.push_str("=\"");
        escape_into(&mut self.out, &value, true);
        self.out.push('"');
        Ok(())
    }

    fn start(&mut self, e: &Element) -> Result<String, Error> {
        self.close_start();
        let q = self.name(e.prefix(), e.name())?;
        self.out.push('<');
        self.out.push_str(&q);
        self.start_open = true;
        Ok(q)
    }

    fn end(&mut self) -> Result<(), Error> {
        let q = self.stack.pop().ok_or(Error::Malformed {
            offset: self.out.len(),
            reason: "EndElement with no open element".into(),
        })?;
        self.close_start();
        self.out.push_str("</");
        self.out.push_str(&q);
        self.out.push('>');
        Ok(())
    }

    fn record(&mut self, r: &Record) -> Result<(), Error> {
        match r {
            Record::Element(e) => {
                let q = self.start(e)?;
                self.stack.push(q);
            }
            Record::Attribute(a) => {
                if !self.start_open {
                    return Err(Error::Malformed {
                        offset: self.out.len(),
                        reason: "attribute outside a start tag".into(),
                    });
                }
                self.attribute(a)?;
            }
            Record::EndElement => self.end()?,
            Record::Comment(c) => {
                self.close_start();
                self.out.push_str("<!--");
                self.out.push_str(c);
                self.out.push_str("-->");
            }
            Record::Array(a) => {
                for i in 0..a.items.len() {
                    let q = self.start(&a.element)?;
                    for at in &a.attributes {
                        self.attribute(at)?;
                    }
                    self.close_start();
                    if let Some(item) = a.items.item(i) {
                        let v = self.value(&item)?;
                        escape_into(&mut self.out, &v, false);
                    }
                    self.out.push_str("</");
                    self.out.push_str(&q);
                    self.out.push('>');
                }
            }
            Record::Text(t) => {
                self.close_start();
                let v = self.value(t)?;
                escape_into(&mut self.out, &v, false);
            }
            Record::TextWithEndElement(t) => {
                self.close_start();
                let v = self.value(t)?;
                escape_into(&mut self.out, &v, false);
                self.end()?;
            }
        }
        Ok(())
    }
}

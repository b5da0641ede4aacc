//! Lossless binary XML writer: [`Record`]s → bytes.

use crate::mb31::{encode_mb31, MB31_MAX};
use crate::record::*;
use crate::{DictKey, Error};

/// Encode `records` exactly as given (each record keeps its kind), appending to `out`.
///
/// For input produced by [`read_records`](crate::read_records) this reproduces the original
/// bytes, except that non-minimal MultiByteInt31 encodings (accepted when reading, never
/// produced by .NET) are written in minimal form. The writer checks encodability (string
/// lengths against their length tier, list nesting, non-empty arrays), not document
/// structure.
pub fn write_records(records: &[Record], out: &mut Vec<u8>) -> Result<(), Error> {
    for r in records {
        write_record(r, out)?;
    }
    Ok(())
}

/// [`write_records`] into a new vector.
pub fn encode_records(records: &[Record]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write_records(records, &mut out)?;
    Ok(out)
}

fn unencodable(out: &[u8], reason: &'static str) -> Error {
    Error::Unencodable {
        offset: out.len(),
        reason,
    }
}

fn string(s: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    if s.len() > MB31_MAX as usize {
        return Err(unencodable(out, "string longer than 2^31-1 bytes"));
    }
    encode_mb31(s.len() as u32, out);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn key(k: DictKey, out: &mut Vec<u8>) -> Result<(), Error> {
    if k.0 > MB31_MAX {
        return Err(unencodable(out, "dictionary key above 2^31-1"));
    }
    encode_mb31(k.0, out);
    Ok(())
}

fn write_record(r: &Record, out: &mut Vec<u8>) -> Result<(), Error> {
    match r {
        Record::EndElement => out.push(0x01),
        Record::Comment(s) => {
            out.push(0x02);
            string(s, out)?;
        }
        Record::Array(a) => {
            if a.items.is_empty() {
                return Err(unencodable(out, "array with no items"));
            }
            if a.items.len() > MB31_MAX as usize {
                return Err(unencodable(out, "array count above 2^31-1"));
            }
            out.push(0x03);
            write_element(&a.element, out)?;
            for at in &a.attributes {
                write_attribute(at, out)?;
            }
            out.push(0x01);
            out.push(a.items.item_type());
            encode_mb31(a.items.len() as u32, out);
            write_items(&a.items, out);
        }
        Record::Element(e) => write_element(e, out)?,
        Record::Attribute(a) => write_attribute(a, out)?,
        Record::Text(t) => write_text(t, false, out)?,
        Record::TextWithEndElement(t) => write_text(t, true, out)?,
    }
    Ok(())
}

fn write_items(items: &ArrayItems, out: &mut Vec<u8>) {
    match items {
        ArrayItems::Bool(v) => out.extend_from_slice(v),
        ArrayItems::Int16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayItems::Int32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayItems::Int64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayItems::Float(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayItems::Double(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        ArrayItems::Decimal(v) => v.iter().for_each(|d| decimal(d, out)),
        ArrayItems::DateTime(v) => v
            .iter()
            .for_each(|d| out.extend_from_slice(&d.0.to_le_bytes())),
        ArrayItems::TimeSpan(v) => v
            .iter()
            .for_each(|d| out.extend_from_slice(&d.0.to_le_bytes())),
        ArrayItems::Guid(v) => v.iter().for_each(|g| out.extend_from_slice(&g.0)),
    }
}

fn decimal(d: &Decimal, out: &mut Vec<u8>) {
    out.extend_from_slice(&d.flags.to_le_bytes());
    out.extend_from_slice(&d.hi.to_le_bytes());
    out.extend_from_slice(&d.lo.to_le_bytes());
}

fn write_element(e: &Element, out: &mut Vec<u8>) -> Result<(), Error> {
    match e {
        Element::Short { name } => {
            out.push(0x40);
            string(name, out)
        }
        Element::Prefixed { prefix, name } => {
            out.push(0x41);
            string(prefix, out)?;
            string(name, out)
        }
        Element::ShortDictionary { name } => {
            out.push(0x42);
            key(*name, out)
        }
        Element::Dictionary { prefix, name } => {
            out.push(0x43);
            string(prefix, out)?;
            key(*name, out)
        }
        Element::PrefixDictionary { prefix, name } => {
            out.push(0x44 + prefix.index());
            key(*name, out)
        }
        Element::PrefixLetter { prefix, name } => {
            out.push(0x5E + prefix.index());
            string(name, out)
        }
    }
}

fn write_attribute(a: &Attribute, out: &mut Vec<u8>) -> Result<(), Error> {
    match a {
        Attribute::Short { name, value } => {
            out.push(0x04);
            string(name, out)?;
            write_text(value, false, out)
        }
        Attribute::Prefixed {
            prefix,
            name,
            value,
        } => {
            out.push(0x05);
            string(prefix, out)?;
            string(name, out)?;
            write_text(value, false, out)
        }
        Attribute::ShortDictionary { name, value } => {
            out.push(0x06);
            key(*name, out)?;
            write_text(value, false, out)
        }
        Attribute::Dictionary {
            prefix,
            name,
            value,
        } => {
            out.push(0x07);
            string(prefix, out)?;
            key(*name, out)?;
            write_text(value, false, out)
        }
        Attribute::ShortXmlns { ns } => {
            out.push(0x08);
            string(ns, out)
        }
        Attribute::Xmlns { prefix, ns } => {
            out.push(0x09);
            string(prefix, out)?;
            string(ns, out)
        }
        Attribute::ShortDictionaryXmlns { ns } => {
            out.push(0x0A);
            key(*ns, out)
        }
        Attribute::DictionaryXmlns { prefix, ns } => {
            out.push(0x0B);
            string(prefix, out)?;
            key(*ns, out)
        }
        Attribute::PrefixDictionary {
            prefix,
            name,
            value,
        } => {
            out.push(0x0C + prefix.index());
            key(*name, out)?;
            write_text(value, false, out)
        }
        Attribute::PrefixLetter {
            prefix,
            name,
            value,
        } => {
            out.push(0x26 + prefix.index());
            string(name, out)?;
            write_text(value, false, out)
        }
    }
}

fn len_prefixed(
    bytes: &[u8],
    tier: u8,
    out: &mut Vec<u8>,
    reason: &'static str,
) -> Result<(), Error> {
    let n = bytes.len();
    match tier {
        1 => {
            let n = u8::try_from(n).map_err(|_| unencodable(out, reason))?;
            out.push(n);
        }
        2 => {
            let n = u16::try_from(n).map_err(|_| unencodable(out, reason))?;
            out.extend_from_slice(&n.to_le_bytes());
        }
        _ => {
            let n = i32::try_from(n).map_err(|_| unencodable(out, reason))?;
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

pub(crate) fn write_text(t: &Text, with_end: bool, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    let ty = t.record_type();
    if with_end && matches!(t, Text::List(_)) {
        return Err(unencodable(out, "a list has no WithEndElement form"));
    }
    out.push(if with_end { ty | 1 } else { ty });
    let too_long = "text too long for its length tier";
    let r = match t {
        Text::Zero | Text::One | Text::False | Text::True | Text::Empty => Ok(()),
        Text::Int8(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Int16(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Int32(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Int64(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::UInt64(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Float(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Double(v) => {
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Text::Decimal(d) => {
            decimal(d, out);
            Ok(())
        }
        Text::DateTime(d) => {
            out.extend_from_slice(&d.0.to_le_bytes());
            Ok(())
        }
        Text::TimeSpan(d) => {
            out.extend_from_slice(&d.0.to_le_bytes());
            Ok(())
        }
        Text::Chars8(s) => len_prefixed(s.as_bytes(), 1, out, too_long),
        Text::Chars16(s) => len_prefixed(s.as_bytes(), 2, out, too_long),
        Text::Chars32(s) => len_prefixed(s.as_bytes(), 4, out, too_long),
        Text::Bytes8(b) => len_prefixed(b, 1, out, too_long),
        Text::Bytes16(b) => len_prefixed(b, 2, out, too_long),
        Text::Bytes32(b) => len_prefixed(b, 4, out, too_long),
        Text::UnicodeChars8(s) => len_prefixed(&utf16(s), 1, out, too_long),
        Text::UnicodeChars16(s) => len_prefixed(&utf16(s), 2, out, too_long),
        Text::UnicodeChars32(s) => len_prefixed(&utf16(s), 4, out, too_long),
        Text::List(items) => {
            for it in items {
                if matches!(it, Text::List(_)) {
                    return Err(unencodable(out, "list nested in a list"));
                }
                write_text(it, false, out)?;
            }
            out.push(0xA6);
            Ok(())
        }
        Text::Dictionary(k) => key(*k, out),
        Text::UniqueId(g) | Text::Guid(g) => {
            out.extend_from_slice(&g.0);
            Ok(())
        }
        Text::Bool(b) => {
            out.push(*b);
            Ok(())
        }
        Text::QNameDictionary { prefix, name } => {
            out.push(prefix.index());
            key(*name, out)
        }
    };
    if r.is_err() {
        out.truncate(start);
    }
    r
}

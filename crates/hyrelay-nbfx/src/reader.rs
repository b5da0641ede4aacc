//! Binary XML reader: bytes → [`Record`]s.

use crate::mb31::{decode_mb31, Mb31};
use crate::record::*;
use crate::{DictKey, Dictionaries, Error, LimitKind, Limits};

/// Decode one binary XML document (an NBFX/NBFS payload, or the part of an NBFSE payload
/// after the string table) into records.
///
/// The document must contain exactly one root element, close every element, and obey
/// `limits`; dictionary keys must resolve in `dicts`. Truncated input is an
/// [`Error::UnexpectedEof`]: the envelope length is always known, so there is no
/// "need more" state at this layer.
pub fn read_records(
    input: &[u8],
    dicts: Dictionaries<'_>,
    limits: &Limits,
) -> Result<Vec<Record>, Error> {
    if input.len() > limits.max_total_bytes {
        return Err(Error::LimitExceeded {
            offset: 0,
            limit: LimitKind::TotalBytes,
            value: input.len() as u64,
            max: limits.max_total_bytes as u64,
        });
    }
    let mut r = Reader {
        data: input,
        pos: 0,
        dicts,
        limits,
        scopes: Vec::new(),
        root_seen: false,
        // Real envelopes average ~40 bytes per record: start near that instead of
        // regrowing from empty, without reserving megabytes that are never touched.
        records: Vec::with_capacity(input.len() / 48),
    };
    r.run()?;
    Ok(r.records)
}

struct Reader<'a, 'd> {
    data: &'a [u8],
    pos: usize,
    dicts: Dictionaries<'d>,
    limits: &'a Limits,
    /// Prefixes declared by each open element.
    scopes: Vec<Vec<String>>,
    root_seen: bool,
    records: Vec<Record>,
}

fn is_whitespace_text(t: &Text) -> bool {
    let ws = |s: &str| s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    match t {
        Text::Chars8(s)
        | Text::Chars16(s)
        | Text::Chars32(s)
        | Text::UnicodeChars8(s)
        | Text::UnicodeChars16(s)
        | Text::UnicodeChars32(s) => ws(s),
        Text::Empty => true,
        _ => false,
    }
}

impl Reader<'_, '_> {
    fn eof(&self) -> Error {
        Error::UnexpectedEof {
            offset: self.data.len(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn u8(&mut self) -> Result<u8, Error> {
        let b = self.peek().ok_or_else(|| self.eof())?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.eof())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn mb31(&mut self) -> Result<u32, Error> {
        let off = self.pos;
        match decode_mb31(&self.data[self.pos..], off)? {
            Mb31::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            Mb31::Incomplete => Err(self.eof()),
        }
    }

    fn check_string_len(&self, off: usize, len: usize) -> Result<(), Error> {
        if len > self.limits.max_string_bytes {
            return Err(Error::LimitExceeded {
                offset: off,
                limit: LimitKind::StringBytes,
                value: len as u64,
                max: self.limits.max_string_bytes as u64,
            });
        }
        Ok(())
    }

    fn utf8(&mut self, len: usize, len_off: usize) -> Result<String, Error> {
        self.check_string_len(len_off, len)?;
        let off = self.pos;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Error::InvalidUtf8 { offset: off })
    }

    /// MB31-length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<String, Error> {
        let off = self.pos;
        let len = self.mb31()? as usize;
        self.utf8(len, off)
    }

    fn dict_key(&mut self) -> Result<DictKey, Error> {
        let off = self.pos;
        let key = DictKey(self.mb31()?);
        self.dicts.resolve(key, off)?;
        Ok(key)
    }

    fn len32(&mut self) -> Result<usize, Error> {
        let off = self.pos;
        let v = i32::from_le_bytes(self.array::<4>()?);
        usize::try_from(v).map_err(|_| Error::NegativeLength {
            offset: off,
            length: v,
        })
    }

    fn bytes(&mut self, len: usize, len_off: usize) -> Result<Vec<u8>, Error> {
        if len > self.limits.max_array_length {
            return Err(Error::LimitExceeded {
                offset: len_off,
                limit: LimitKind::ArrayLength,
                value: len as u64,
                max: self.limits.max_array_length as u64,
            });
        }
        Ok(self.take(len)?.to_vec())
    }

    fn utf16(&mut self, len: usize, len_off: usize) -> Result<String, Error> {
        if len % 2 != 0 {
            return Err(Error::InvalidUtf16 { offset: len_off });
        }
        self.check_string_len(len_off, len / 2)?;
        let off = self.pos;
        let bytes = self.take(len)?;
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| Error::InvalidUtf16 { offset: off })
    }

    fn guid(&mut self) -> Result<Guid, Error> {
        Ok(Guid(self.array::<16>()?))
    }

    fn decimal(&mut self) -> Result<Decimal, Error> {
        let off = self.pos;
        let flags = u32::from_le_bytes(self.array::<4>()?);
        let hi = u32::from_le_bytes(self.array::<4>()?);
        let lo = u64::from_le_bytes(self.array::<8>()?);
        let d = Decimal { flags, hi, lo };
        if !d.is_valid() {
            return Err(Error::InvalidValue {
                offset: off,
                reason: "decimal with reserved flag bits or scale above 28",
            });
        }
        Ok(d)
    }

    fn datetime(&mut self) -> Result<DateTime, Error> {
        let off = self.pos;
        let d = DateTime(u64::from_le_bytes(self.array::<8>()?));
        if !d.is_valid() {
            return Err(Error::InvalidValue {
                offset: off,
                reason: "DateTime ticks out of range",
            });
        }
        Ok(d)
    }

    /// Payload of the text record whose even type byte is `t` (type byte already consumed).
    fn text(&mut self, t: u8, off: usize, in_list: bool) -> Result<Text, Error> {
        Ok(match t {
            0x80 => Text::Zero,
            0x82 => Text::One,
            0x84 => Text::False,
            0x86 => Text::True,
            0x88 => Text::Int8(i8::from_le_bytes(self.array::<1>()?)),
            0x8A => Text::Int16(i16::from_le_bytes(self.array::<2>()?)),
            0x8C => Text::Int32(i32::from_le_bytes(self.array::<4>()?)),
            0x8E => Text::Int64(i64::from_le_bytes(self.array::<8>()?)),
            0x90 => Text::Float(f32::from_le_bytes(self.array::<4>()?)),
            0x92 => Text::Double(f64::from_le_bytes(self.array::<8>()?)),
            0x94 => Text::Decimal(self.decimal()?),
            0x96 => Text::DateTime(self.datetime()?),
            0x98 => {
                let lo = self.pos;
                let n = self.u8()? as usize;
                Text::Chars8(self.utf8(n, lo)?)
            }
            0x9A => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                Text::Chars16(self.utf8(n, lo)?)
            }
            0x9C => {
                let lo = self.pos;
                let n = self.len32()?;
                Text::Chars32(self.utf8(n, lo)?)
            }
            0x9E => {
                let lo = self.pos;
                let n = self.u8()? as usize;
                Text::Bytes8(self.bytes(n, lo)?)
            }
            0xA0 => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                Text::Bytes16(self.bytes(n, lo)?)
            }
            0xA2 => {
                let lo = self.pos;
                let n = self.len32()?;
                Text::Bytes32(self.bytes(n, lo)?)
            }
            0xA4 => {
                if in_list {
                    return Err(Error::UnexpectedRecord {
                        offset: off,
                        byte: t,
                        reason: "list nested in a list",
                    });
                }
                let mut items = Vec::new();
                loop {
                    let ioff = self.pos;
                    let b = self.u8()?;
                    if b == 0xA6 {
                        break;
                    }
                    if !(0x80..=0xBD).contains(&b) {
                        return Err(Error::InvalidRecord {
                            offset: ioff,
                            byte: b,
                        });
                    }
                    if b & 1 != 0 {
                        return Err(Error::UnexpectedRecord {
                            offset: ioff,
                            byte: b,
                            reason: "WithEndElement text inside a list",
                        });
                    }
                    if items.len() >= self.limits.max_array_length {
                        return Err(Error::LimitExceeded {
                            offset: ioff,
                            limit: LimitKind::ArrayLength,
                            value: items.len() as u64 + 1,
                            max: self.limits.max_array_length as u64,
                        });
                    }
                    items.push(self.text(b, ioff, true)?);
                }
                Text::List(items)
            }
            0xA8 => Text::Empty,
            0xAA => Text::Dictionary(self.dict_key()?),
            0xAC => Text::UniqueId(self.guid()?),
            0xAE => Text::TimeSpan(TimeSpan(i64::from_le_bytes(self.array::<8>()?))),
            0xB0 => Text::Guid(self.guid()?),
            0xB2 => Text::UInt64(u64::from_le_bytes(self.array::<8>()?)),
            0xB4 => Text::Bool(self.u8()?),
            0xB6 => {
                let lo = self.pos;
                let n = self.u8()? as usize;
                Text::UnicodeChars8(self.utf16(n, lo)?)
            }
            0xB8 => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                Text::UnicodeChars16(self.utf16(n, lo)?)
            }
            0xBA => {
                let lo = self.pos;
                let n = self.len32()?;
                Text::UnicodeChars32(self.utf16(n, lo)?)
            }
            0xBC => {
                let po = self.pos;
                let p = self.u8()?;
                let prefix = PrefixLetter::new(p).ok_or(Error::InvalidValue {
                    offset: po,
                    reason: "QName prefix index above 25",
                })?;
                Text::QNameDictionary {
                    prefix,
                    name: self.dict_key()?,
                }
            }
            0xA6 => {
                return Err(Error::UnexpectedRecord {
                    offset: off,
                    byte: t,
                    reason: "EndListText without StartListText",
                })
            }
            _ => {
                return Err(Error::InvalidRecord {
                    offset: off,
                    byte: t,
                })
            }
        })
    }

    /// Attribute value: exactly one even text record.
    fn attribute_value(&mut self) -> Result<Text, Error> {
        let off = self.pos;
        let b = self.u8()?;
        if !(0x80..=0xBD).contains(&b) || b == 0xA5 || b == 0xA7 {
            return Err(Error::InvalidRecord {
                offset: off,
                byte: b,
            });
        }
        if b & 1 != 0 {
            return Err(Error::UnexpectedRecord {
                offset: off,
                byte: b,
                reason: "WithEndElement text as an attribute value",
            });
        }
        self.text(b, off, false)
    }

    fn element_body(&mut self, b: u8) -> Result<Element, Error> {
        Ok(match b {
            0x40 => Element::Short {
                name: self.string()?,
            },
            0x41 => {
                let prefix = self.string()?;
                Element::Prefixed {
                    prefix,
                    name: self.string()?,
                }
            }
            0x42 => Element::ShortDictionary {
                name: self.dict_key()?,
            },
            0x43 => {
                let prefix = self.string()?;
                Element::Dictionary {
                    prefix,
                    name: self.dict_key()?,
                }
            }
            0x44..=0x5D => Element::PrefixDictionary {
                prefix: letter(b - 0x44),
                name: self.dict_key()?,
            },
            _ => Element::PrefixLetter {
                prefix: letter(b.saturating_sub(0x5E)),
                name: self.string()?,
            },
        })
    }

    fn attribute_body(&mut self, b: u8) -> Result<Attribute, Error> {
        Ok(match b {
            0x04 => {
                let name = self.string()?;
                Attribute::Short {
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x05 => {
                let prefix = self.string()?;
                let name = self.string()?;
                Attribute::Prefixed {
                    prefix,
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x06 => {
                let name = self.dict_key()?;
                Attribute::ShortDictionary {
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x07 => {
                let prefix = self.string()?;
                let name = self.dict_key()?;
                Attribute::Dictionary {
                    prefix,
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x08 => Attribute::ShortXmlns { ns: self.string()? },
            0x09 => {
                let prefix = self.string()?;
                Attribute::Xmlns {
                    prefix,
                    ns: self.string()?,
                }
            }
            0x0A => Attribute::ShortDictionaryXmlns {
                ns: self.dict_key()?,
            },
            0x0B => {
                let prefix = self.string()?;
                Attribute::DictionaryXmlns {
                    prefix,
                    ns: self.dict_key()?,
                }
            }
            0x0C..=0x25 => {
                let name = self.dict_key()?;
                Attribute::PrefixDictionary {
                    prefix: letter(b - 0x0C),
                    name,
                    value: self.attribute_value()?,
                }
            }
            _ => {
                let name = self.string()?;
                Attribute::PrefixLetter {
                    prefix: letter(b.saturating_sub(0x26)),
                    name,
                    value: self.attribute_value()?,
                }
            }
        })
    }

    fn is_declared(&self, prefix: &str, own: &[String]) -> bool {
        // Prefixes are short: a byte loop beats a memcmp call; innermost scopes first.
        let eq = |p: &String| p.as_bytes().iter().eq(prefix.as_bytes());
        prefix == "xml" || own.iter().any(eq) || self.scopes.iter().rev().any(|s| s.iter().any(eq))
    }

    fn check_prefix(&self, p: PrefixRef<'_>, own: &[String], off: usize) -> Result<(), Error> {
        let mut letter_buf = [0u8; 4];
        let s: &str = match p {
            PrefixRef::None => return Ok(()),
            PrefixRef::Str(s) => s,
            PrefixRef::Letter(l) => l.as_char().encode_utf8(&mut letter_buf),
        };
        if s.is_empty() || self.is_declared(s, own) {
            Ok(())
        } else {
            Err(Error::Malformed {
                offset: off,
                reason: format!("undeclared prefix '{s}'"),
            })
        }
    }

    /// Element record `b` (consumed, at `off`) and its attributes; checks depth, attribute
    /// count and prefix declarations. Returns the prefixes it declares.
    fn start_tag(
        &mut self,
        b: u8,
        off: usize,
    ) -> Result<(Element, Vec<Attribute>, Vec<String>), Error> {
        let depth = self.scopes.len() + 1;
        if depth > self.limits.max_depth {
            return Err(Error::LimitExceeded {
                offset: off,
                limit: LimitKind::Depth,
                value: depth as u64,
                max: self.limits.max_depth as u64,
            });
        }
        let element = self.element_body(b)?;
        let mut attributes = Vec::new();
        let mut declared = Vec::new();
        let mut checks = Vec::new();
        while let Some(ab @ 0x04..=0x3F) = self.peek() {
            let aoff = self.pos;
            self.pos += 1;
            if attributes.len() >= self.limits.max_attributes {
                return Err(Error::LimitExceeded {
                    offset: aoff,
                    limit: LimitKind::Attributes,
                    value: attributes.len() as u64 + 1,
                    max: self.limits.max_attributes as u64,
                });
            }
            let a = self.attribute_body(ab)?;
            if let Some((p, _)) = a.xmlns() {
                declared.push(p.to_owned());
            }
            if a.plain().is_some() {
                checks.push(aoff);
            }
            attributes.push(a);
        }
        self.check_prefix(element.prefix(), &declared, off)?;
        let mut ci = checks.iter();
        for a in &attributes {
            if let Some((p, _, _)) = a.plain() {
                let aoff = ci.next().copied().unwrap_or(off);
                self.check_prefix(p, &declared, aoff)?;
            }
        }
        Ok((element, attributes, declared))
    }

    fn array_items(&mut self, t: u8, count: usize, toff: usize) -> Result<ArrayItems, Error> {
        let size = match t {
            0xB5 => 1,
            0x8B => 2,
            0x8D | 0x91 => 4,
            0x8F | 0x93 | 0x97 | 0xAF => 8,
            0x95 | 0xB1 => 16,
            _ => {
                return Err(Error::InvalidValue {
                    offset: toff,
                    reason: "invalid array item type",
                })
            }
        };
        // Bound the allocation by what is actually present.
        let need = count.checked_mul(size).ok_or_else(|| self.eof())?;
        if need > self.data.len() - self.pos {
            return Err(self.eof());
        }
        macro_rules! items {
            ($variant:ident, $ty:ty, $n:literal) => {{
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(<$ty>::from_le_bytes(self.array::<$n>()?));
                }
                ArrayItems::$variant(v)
            }};
        }
        Ok(match t {
            0xB5 => ArrayItems::Bool(self.take(count)?.to_vec()),
            0x8B => items!(Int16, i16, 2),
            0x8D => items!(Int32, i32, 4),
            0x8F => items!(Int64, i64, 8),
            0x91 => items!(Float, f32, 4),
            0x93 => items!(Double, f64, 8),
            0x95 => {
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(self.decimal()?);
                }
                ArrayItems::Decimal(v)
            }
            0x97 => {
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(self.datetime()?);
                }
                ArrayItems::DateTime(v)
            }
            0xAF => {
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(TimeSpan(i64::from_le_bytes(self.array::<8>()?)));
                }
                ArrayItems::TimeSpan(v)
            }
            _ => {
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(self.guid()?);
                }
                ArrayItems::Guid(v)
            }
        })
    }

    fn array_record(&mut self, off: usize) -> Result<(), Error> {
        if self.scopes.is_empty() && self.root_seen {
            return Err(Error::Malformed {
                offset: off,
                reason: "more than one root element".into(),
            });
        }
        let eoff = self.pos;
        let eb = self.u8()?;
        match eb {
            0x40..=0x77 => {}
            0x03 => {
                return Err(Error::UnexpectedRecord {
                    offset: eoff,
                    byte: eb,
                    reason: "array nested in an array",
                })
            }
            _ => {
                return Err(Error::UnexpectedRecord {
                    offset: eoff,
                    byte: eb,
                    reason: "array must start with an element record",
                })
            }
        }
        let (element, attributes, _) = self.start_tag(eb, eoff)?;
        let endoff = self.pos;
        let end = self.u8()?;
        if end != 0x01 {
            return Err(Error::UnexpectedRecord {
                offset: endoff,
                byte: end,
                reason: "array element must be empty (EndElement before the item type)",
            });
        }
        let toff = self.pos;
        let t = self.u8()?;
        let coff = self.pos;
        let count = self.mb31()? as usize;
        if count == 0 {
            return Err(Error::InvalidValue {
                offset: coff,
                reason: "array count must be at least 1",
            });
        }
        if count > self.limits.max_array_length {
            return Err(Error::LimitExceeded {
                offset: coff,
                limit: LimitKind::ArrayLength,
                value: count as u64,
                max: self.limits.max_array_length as u64,
            });
        }
        let items = self.array_items(t, count, toff)?;
        self.root_seen = true;
        self.records.push(Record::Array(Box::new(Array {
            element,
            attributes,
            items,
        })));
        Ok(())
    }

    fn run(&mut self) -> Result<(), Error> {
        while self.pos < self.data.len() {
            let off = self.pos;
            let b = self.u8()?;
            match b {
                0x01 => {
                    if self.scopes.pop().is_none() {
                        return Err(Error::UnexpectedRecord {
                            offset: off,
                            byte: b,
                            reason: "EndElement with no open element",
                        });
                    }
                    self.records.push(Record::EndElement);
                }
                0x02 => {
                    let s = self.string()?;
                    self.records.push(Record::Comment(s));
                }
                0x03 => self.array_record(off)?,
                0x04..=0x3F => {
                    return Err(Error::UnexpectedRecord {
                        offset: off,
                        byte: b,
                        reason: "attribute record outside a start tag",
                    })
                }
                0x40..=0x77 => {
                    if self.scopes.is_empty() && self.root_seen {
                        return Err(Error::Malformed {
                            offset: off,
                            reason: "more than one root element".into(),
                        });
                    }
                    let (element, attributes, declared) = self.start_tag(b, off)?;
                    self.records.push(Record::Element(element));
                    self.records
                        .extend(attributes.into_iter().map(Record::Attribute));
                    self.scopes.push(declared);
                    self.root_seen = true;
                }
                0x80..=0xBD if b != 0xA5 && b != 0xA7 => {
                    let with_end = b & 1 != 0;
                    let value = self.text(b & !1, off, false)?;
                    if self.scopes.is_empty() {
                        if with_end {
                            return Err(Error::UnexpectedRecord {
                                offset: off,
                                byte: b,
                                reason: "WithEndElement text with no open element",
                            });
                        }
                        if !is_whitespace_text(&value) {
                            return Err(Error::Malformed {
                                offset: off,
                                reason: "non-whitespace text outside the root element".into(),
                            });
                        }
                    }
                    if with_end {
                        self.scopes.pop();
                        self.records.push(Record::TextWithEndElement(value));
                    } else {
                        self.records.push(Record::Text(value));
                    }
                }
                _ => {
                    return Err(Error::InvalidRecord {
                        offset: off,
                        byte: b,
                    })
                }
            }
        }
        if !self.scopes.is_empty() {
            return Err(self.eof());
        }
        if !self.root_seen {
            return Err(Error::Malformed {
                offset: self.data.len(),
                reason: "no root element".into(),
            });
        }
        Ok(())
    }
}

fn letter(i: u8) -> PrefixLetter {
    // Callers pass values in 0..26 derived from the record type ranges.
    PrefixLetter::wrapping(i)
}

//! Binary XML reader: bytes → [`Event`]s (borrowed, no allocation per record) and, on
//! top of them, bytes → owned [`Record`]s.

use crate::events::*;
use crate::mb31::{decode_mb31, Mb31};
use crate::record::*;
use crate::{DictKey, Dictionaries, Error, LimitKind, Limits};

/// Decode one binary XML document (an NBFX/NBFS payload, or the part of an NBFSE payload
/// after the string table) into records.
///
/// The document must contain exactly one root element, close every element, and obey
/// `limits`; dictionary keys must resolve in `dicts`. Truncated input is an
/// [`Error::UnexpectedEof`]: the envelope length is always known, so there is no
/// "need more" state at this layer. This is [`EventReader`] with every event made owned.
pub fn read_records(
    input: &[u8],
    dicts: Dictionaries<'_>,
    limits: &Limits,
) -> Result<Vec<Record>, Error> {
    let mut r = EventReader::new(input, dicts, limits)?;
    // Real envelopes average ~40 bytes per record: start near that instead of
    // regrowing from empty, without reserving megabytes that are never touched.
    let mut records = Vec::with_capacity(input.len() / 48);
    let mut array: Option<(Element, Vec<Attribute>)> = None;
    r.visit(|ev| match ev {
        Event::Element(e) => records.push(Record::Element(e.to_owned())),
        Event::Attribute(a) => match &mut array {
            Some((_, attrs)) => attrs.push(a.to_owned()),
            None => records.push(Record::Attribute(a.to_owned())),
        },
        Event::EndElement => records.push(Record::EndElement),
        Event::Comment(s) => records.push(Record::Comment(s.to_owned())),
        Event::ArrayStart(e) => array = Some((e.to_owned(), Vec::new())),
        Event::ArrayItems(items) => {
            if let Some((element, attributes)) = array.take() {
                records.push(Record::Array(Box::new(Array {
                    element,
                    attributes,
                    items: items.to_owned(),
                })));
            }
        }
        Event::Text(t) => records.push(Record::Text(t.to_owned())),
        Event::TextWithEndElement(t) => records.push(Record::TextWithEndElement(t.to_owned())),
    })?;
    Ok(records)
}

/// A pull reader over one binary XML document: each [`next_event`](Self::next_event)
/// decodes one record and returns it borrowed from the input.
///
/// It checks exactly what [`read_records`] checks (that function is this reader plus
/// `to_owned`), with the same errors at the same offsets, but allocates nothing per
/// record: strings are validated in place, UTF-16 and list texts are validated and left
/// encoded. After an error it yields nothing more.
pub struct EventReader<'a, 'd> {
    c: Cursor<'a, 'd>,
    /// Prefixes declared by the open elements, innermost last.
    prefixes: Vec<&'a str>,
    /// For each open element, where its declarations start in `prefixes`.
    scopes: Vec<usize>,
    root_seen: bool,
    /// The attributes of the start tag just read (with their offsets), handed out one
    /// event at a time; the buffer is reused for every tag.
    pending: Vec<(AttributeRef<'a>, usize)>,
    pending_at: usize,
    array_items: Option<ArrayItemsRef<'a>>,
    done: bool,
}

const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];

impl<'a, 'd> EventReader<'a, 'd> {
    /// A reader over `input`; fails at once if it is larger than `limits.max_total_bytes`.
    pub fn new(
        input: &'a [u8],
        dicts: Dictionaries<'d>,
        limits: &'d Limits,
    ) -> Result<Self, Error> {
        if input.len() > limits.max_total_bytes {
            return Err(Error::LimitExceeded {
                offset: 0,
                limit: LimitKind::TotalBytes,
                value: input.len() as u64,
                max: limits.max_total_bytes as u64,
            });
        }
        Ok(EventReader {
            c: Cursor {
                data: input,
                pos: 0,
                dicts: Some(dicts),
                limits,
            },
            prefixes: Vec::new(),
            scopes: Vec::new(),
            root_seen: false,
            pending: Vec::new(),
            pending_at: 0,
            array_items: None,
            done: false,
        })
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> usize {
        self.c.pos
    }

    /// Current element depth (0 outside the root).
    pub fn depth(&self) -> usize {
        self.scopes.len()
    }

    /// The next event; `Ok(None)` once the document has ended properly.
    pub fn next_event(&mut self) -> Result<Option<Event<'a>>, Error> {
        if self.done {
            return Ok(None);
        }
        let r = self.step();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r
    }

    #[inline(always)]
    /// Read the rest of the document, handing each event to `f`: the same events as
    /// repeated [`next_event`](Self::next_event) calls, in a loop the compiler can fuse
    /// with `f` (the fastest way to walk a whole document).
    pub fn visit(&mut self, mut f: impl FnMut(Event<'a>)) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        loop {
            match self.step() {
                Ok(Some(ev)) => f(ev),
                Ok(None) => {
                    self.done = true;
                    return Ok(());
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    fn step(&mut self) -> Result<Option<Event<'a>>, Error> {
        if let Some(&(a, _)) = self.pending.get(self.pending_at) {
            self.pending_at += 1;
            return Ok(Some(Event::Attribute(a)));
        }
        if self.array_items.is_some() {
            if let Some(items) = self.array_items.take() {
                return Ok(Some(Event::ArrayItems(items)));
            }
        }
        if self.c.pos >= self.c.data.len() {
            if !self.scopes.is_empty() {
                return Err(self.c.eof());
            }
            if !self.root_seen {
                return Err(Error::Malformed {
                    offset: self.c.data.len(),
                    reason: "no root element".into(),
                });
            }
            return Ok(None);
        }
        let off = self.c.pos;
        let b = self.c.byte()?;
        Ok(Some(match b {
            0x01 => {
                let Some(mark) = self.scopes.pop() else {
                    return Err(Error::UnexpectedRecord {
                        offset: off,
                        byte: b,
                        reason: "EndElement with no open element",
                    });
                };
                self.prefixes.truncate(mark);
                Event::EndElement
            }
            0x02 => Event::Comment(self.c.string()?),
            0x03 => self.array_record(off)?,
            0x04..=0x3F => {
                return Err(Error::UnexpectedRecord {
                    offset: off,
                    byte: b,
                    reason: "attribute record outside a start tag",
                })
            }
            0x40..=0x77 => {
                self.check_single_root(off)?;
                let (element, mark) = self.start_tag(b, off)?;
                self.scopes.push(mark);
                self.root_seen = true;
                Event::Element(element)
            }
            0x80..=0xBD if b != 0xA5 && b != 0xA7 => {
                let with_end = b & 1 != 0;
                // Chars8Text is most of the text in real envelopes: decode it here
                // rather than through the general text dispatch.
                let value = if b & !1 == 0x98 {
                    let lo = self.c.pos;
                    let n = self.c.byte()? as usize;
                    TextRef::Chars8(self.c.utf8(n, lo)?)
                } else {
                    self.c.text(b & !1, off, false)?
                };
                if self.scopes.is_empty() {
                    if with_end {
                        return Err(Error::UnexpectedRecord {
                            offset: off,
                            byte: b,
                            reason: "WithEndElement text with no open element",
                        });
                    }
                    if !value.is_whitespace() {
                        return Err(Error::Malformed {
                            offset: off,
                            reason: "non-whitespace text outside the root element".into(),
                        });
                    }
                }
                if with_end {
                    if let Some(mark) = self.scopes.pop() {
                        self.prefixes.truncate(mark);
                    }
                    Event::TextWithEndElement(value)
                } else {
                    Event::Text(value)
                }
            }
            _ => {
                return Err(Error::InvalidRecord {
                    offset: off,
                    byte: b,
                })
            }
        }))
    }

    #[inline]
    fn check_single_root(&self, off: usize) -> Result<(), Error> {
        if self.scopes.is_empty() && self.root_seen {
            return Err(Error::Malformed {
                offset: off,
                reason: "more than one root element".into(),
            });
        }
        Ok(())
    }

    #[inline]
    fn is_declared(&self, prefix: &str) -> bool {
        // Prefixes are short: a byte loop beats a memcmp call; innermost scopes first.
        prefix == "xml"
            || self
                .prefixes
                .iter()
                .rev()
                .any(|p| p.as_bytes().iter().eq(prefix.as_bytes()))
    }

    #[inline]
    fn check_prefix(&self, p: PrefixRef<'_>, off: usize) -> Result<(), Error> {
        let s: &str = match p {
            PrefixRef::None => return Ok(()),
            PrefixRef::Str(s) => s,
            PrefixRef::Letter(l) => LETTERS[usize::from(l.index())],
        };
        if s.is_empty() || self.is_declared(s) {
            Ok(())
        } else {
            Err(Error::Malformed {
                offset: off,
                reason: format!("undeclared prefix '{s}'"),
            })
        }
    }

    /// Element record `b` (consumed, at `off`) and its attributes, which go to
    /// `pending`; checks depth, attribute count and prefix declarations. The prefixes it
    /// declares are pushed onto `prefixes`; returns the element and where they start.
    #[inline]
    fn start_tag(&mut self, b: u8, off: usize) -> Result<(ElementRef<'a>, usize), Error> {
        let depth = self.scopes.len() + 1;
        let limits = self.c.limits;
        if depth > limits.max_depth {
            return Err(Error::LimitExceeded {
                offset: off,
                limit: LimitKind::Depth,
                value: depth as u64,
                max: limits.max_depth as u64,
            });
        }
        let element = self.c.element_body(b)?;
        self.pending.clear();
        self.pending_at = 0;
        let mark = self.prefixes.len();
        while let Some(ab @ 0x04..=0x3F) = self.c.peek() {
            let aoff = self.c.pos;
            self.c.pos += 1;
            if self.pending.len() >= limits.max_attributes {
                return Err(Error::LimitExceeded {
                    offset: aoff,
                    limit: LimitKind::Attributes,
                    value: self.pending.len() as u64 + 1,
                    max: limits.max_attributes as u64,
                });
            }
            let a = self.c.attribute_body(ab)?;
            if let Some((p, _)) = a.xmlns() {
                self.prefixes.push(p);
            }
            self.pending.push((a, aoff));
        }
        self.check_prefix(element.prefix(), off)?;
        for &(a, aoff) in &self.pending {
            if let Some((p, _, _)) = a.plain() {
                self.check_prefix(p, aoff)?;
            }
        }
        Ok((element, mark))
    }

    fn array_record(&mut self, off: usize) -> Result<Event<'a>, Error> {
        self.check_single_root(off)?;
        let eoff = self.c.pos;
        let eb = self.c.byte()?;
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
        let (element, mark) = self.start_tag(eb, eoff)?;
        // An array's element is complete within the record: its declarations end here.
        self.prefixes.truncate(mark);
        let endoff = self.c.pos;
        let end = self.c.byte()?;
        if end != 0x01 {
            return Err(Error::UnexpectedRecord {
                offset: endoff,
                byte: end,
                reason: "array element must be empty (EndElement before the item type)",
            });
        }
        let toff = self.c.pos;
        let t = self.c.byte()?;
        let coff = self.c.pos;
        let count = self.c.mb31()? as usize;
        if count == 0 {
            return Err(Error::InvalidValue {
                offset: coff,
                reason: "array count must be at least 1",
            });
        }
        let limits = self.c.limits;
        if count > limits.max_array_length {
            return Err(Error::LimitExceeded {
                offset: coff,
                limit: LimitKind::ArrayLength,
                value: count as u64,
                max: limits.max_array_length as u64,
            });
        }
        self.array_items = Some(self.c.array_items(t, count, toff)?);
        self.root_seen = true;
        Ok(Event::ArrayStart(element))
    }
}

impl<'a, 'd> Iterator for EventReader<'a, 'd> {
    type Item = Result<Event<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Limits for re-walking bytes the reader has already checked.
static UNLIMITED: Limits = Limits {
    max_depth: usize::MAX,
    max_string_bytes: usize::MAX,
    max_array_length: usize::MAX,
    max_total_bytes: usize::MAX,
    max_attributes: usize::MAX,
};

/// Position in the input plus what values are checked against.
pub(crate) struct Cursor<'a, 'd> {
    data: &'a [u8],
    pos: usize,
    /// `None` when re-walking validated bytes: dictionary keys are not resolved again.
    dicts: Option<Dictionaries<'d>>,
    limits: &'d Limits,
}

impl<'a> Cursor<'a, 'static> {
    /// A cursor over bytes that an [`EventReader`] already validated.
    pub(crate) fn trusted(data: &'a [u8]) -> Self {
        Cursor {
            data,
            pos: 0,
            dicts: None,
            limits: &UNLIMITED,
        }
    }
}

impl<'a> Cursor<'a, '_> {
    fn eof(&self) -> Error {
        Error::UnexpectedEof {
            offset: self.data.len(),
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> Result<u8, Error> {
        let b = self.peek().ok_or_else(|| self.eof())?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.eof())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
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

    #[inline]
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

    #[inline]
    fn utf8(&mut self, len: usize, len_off: usize) -> Result<&'a str, Error> {
        self.check_string_len(len_off, len)?;
        let off = self.pos;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 { offset: off })
    }

    /// MB31-length-prefixed UTF-8 string.
    #[inline]
    fn string(&mut self) -> Result<&'a str, Error> {
        let off = self.pos;
        let len = self.mb31()? as usize;
        self.utf8(len, off)
    }

    #[inline]
    fn dict_key(&mut self) -> Result<DictKey, Error> {
        let off = self.pos;
        let key = DictKey(self.mb31()?);
        if let Some(d) = &self.dicts {
            d.resolve(key, off)?;
        }
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

    fn bytes(&mut self, len: usize, len_off: usize) -> Result<&'a [u8], Error> {
        if len > self.limits.max_array_length {
            return Err(Error::LimitExceeded {
                offset: len_off,
                limit: LimitKind::ArrayLength,
                value: len as u64,
                max: self.limits.max_array_length as u64,
            });
        }
        self.take(len)
    }

    fn utf16(&mut self, len: usize, len_off: usize) -> Result<Utf16Ref<'a>, Error> {
        if len % 2 != 0 {
            return Err(Error::InvalidUtf16 { offset: len_off });
        }
        self.check_string_len(len_off, len / 2)?;
        let off = self.pos;
        let bytes = self.take(len)?;
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        if char::decode_utf16(units).any(|c| c.is_err()) {
            return Err(Error::InvalidUtf16 { offset: off });
        }
        Ok(Utf16Ref(bytes))
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

    /// A list item of validated bytes (type byte already consumed).
    pub(crate) fn text_trusted(&mut self, t: u8) -> Result<TextRef<'a>, Error> {
        let off = self.pos;
        self.text(t, off, true)
    }

    /// Payload of the text record whose even type byte is `t` (type byte already consumed).
    fn text(&mut self, t: u8, off: usize, in_list: bool) -> Result<TextRef<'a>, Error> {
        Ok(match t {
            0x80 => TextRef::Zero,
            0x82 => TextRef::One,
            0x84 => TextRef::False,
            0x86 => TextRef::True,
            0x88 => TextRef::Int8(i8::from_le_bytes(self.array::<1>()?)),
            0x8A => TextRef::Int16(i16::from_le_bytes(self.array::<2>()?)),
            0x8C => TextRef::Int32(i32::from_le_bytes(self.array::<4>()?)),
            0x8E => TextRef::Int64(i64::from_le_bytes(self.array::<8>()?)),
            0x90 => TextRef::Float(f32::from_le_bytes(self.array::<4>()?)),
            0x92 => TextRef::Double(f64::from_le_bytes(self.array::<8>()?)),
            0x94 => TextRef::Decimal(self.decimal()?),
            0x96 => TextRef::DateTime(self.datetime()?),
            0x98 => {
                let lo = self.pos;
                let n = self.byte()? as usize;
                TextRef::Chars8(self.utf8(n, lo)?)
            }
            0x9A => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                TextRef::Chars16(self.utf8(n, lo)?)
            }
            0x9C => {
                let lo = self.pos;
                let n = self.len32()?;
                TextRef::Chars32(self.utf8(n, lo)?)
            }
            0x9E => {
                let lo = self.pos;
                let n = self.byte()? as usize;
                TextRef::Bytes8(self.bytes(n, lo)?)
            }
            0xA0 => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                TextRef::Bytes16(self.bytes(n, lo)?)
            }
            0xA2 => {
                let lo = self.pos;
                let n = self.len32()?;
                TextRef::Bytes32(self.bytes(n, lo)?)
            }
            0xA4 => {
                if in_list {
                    return Err(Error::UnexpectedRecord {
                        offset: off,
                        byte: t,
                        reason: "list nested in a list",
                    });
                }
                let start = self.pos;
                let mut count = 0usize;
                loop {
                    let ioff = self.pos;
                    let b = self.byte()?;
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
                    if count >= self.limits.max_array_length {
                        return Err(Error::LimitExceeded {
                            offset: ioff,
                            limit: LimitKind::ArrayLength,
                            value: count as u64 + 1,
                            max: self.limits.max_array_length as u64,
                        });
                    }
                    self.text(b, ioff, true)?;
                    count += 1;
                }
                TextRef::List(ListRef {
                    bytes: &self.data[start..self.pos - 1],
                    count,
                })
            }
            0xA8 => TextRef::Empty,
            0xAA => TextRef::Dictionary(self.dict_key()?),
            0xAC => TextRef::UniqueId(self.guid()?),
            0xAE => TextRef::TimeSpan(TimeSpan(i64::from_le_bytes(self.array::<8>()?))),
            0xB0 => TextRef::Guid(self.guid()?),
            0xB2 => TextRef::UInt64(u64::from_le_bytes(self.array::<8>()?)),
            0xB4 => TextRef::Bool(self.byte()?),
            0xB6 => {
                let lo = self.pos;
                let n = self.byte()? as usize;
                TextRef::UnicodeChars8(self.utf16(n, lo)?)
            }
            0xB8 => {
                let lo = self.pos;
                let n = u16::from_le_bytes(self.array::<2>()?) as usize;
                TextRef::UnicodeChars16(self.utf16(n, lo)?)
            }
            0xBA => {
                let lo = self.pos;
                let n = self.len32()?;
                TextRef::UnicodeChars32(self.utf16(n, lo)?)
            }
            0xBC => {
                let po = self.pos;
                let p = self.byte()?;
                let prefix = PrefixLetter::new(p).ok_or(Error::InvalidValue {
                    offset: po,
                    reason: "QName prefix index above 25",
                })?;
                TextRef::QNameDictionary {
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
    fn attribute_value(&mut self) -> Result<TextRef<'a>, Error> {
        let off = self.pos;
        let b = self.byte()?;
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

    #[inline]
    fn element_body(&mut self, b: u8) -> Result<ElementRef<'a>, Error> {
        Ok(match b {
            0x40 => ElementRef::Short {
                name: self.string()?,
            },
            0x41 => {
                let prefix = self.string()?;
                ElementRef::Prefixed {
                    prefix,
                    name: self.string()?,
                }
            }
            0x42 => ElementRef::ShortDictionary {
                name: self.dict_key()?,
            },
            0x43 => {
                let prefix = self.string()?;
                ElementRef::Dictionary {
                    prefix,
                    name: self.dict_key()?,
                }
            }
            0x44..=0x5D => ElementRef::PrefixDictionary {
                prefix: letter(b - 0x44),
                name: self.dict_key()?,
            },
            _ => ElementRef::PrefixLetter {
                prefix: letter(b.saturating_sub(0x5E)),
                name: self.string()?,
            },
        })
    }

    fn attribute_body(&mut self, b: u8) -> Result<AttributeRef<'a>, Error> {
        Ok(match b {
            0x04 => {
                let name = self.string()?;
                AttributeRef::Short {
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x05 => {
                let prefix = self.string()?;
                let name = self.string()?;
                AttributeRef::Prefixed {
                    prefix,
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x06 => {
                let name = self.dict_key()?;
                AttributeRef::ShortDictionary {
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x07 => {
                let prefix = self.string()?;
                let name = self.dict_key()?;
                AttributeRef::Dictionary {
                    prefix,
                    name,
                    value: self.attribute_value()?,
                }
            }
            0x08 => AttributeRef::ShortXmlns { ns: self.string()? },
            0x09 => {
                let prefix = self.string()?;
                AttributeRef::Xmlns {
                    prefix,
                    ns: self.string()?,
                }
            }
            0x0A => AttributeRef::ShortDictionaryXmlns {
                ns: self.dict_key()?,
            },
            0x0B => {
                let prefix = self.string()?;
                AttributeRef::DictionaryXmlns {
                    prefix,
                    ns: self.dict_key()?,
                }
            }
            0x0C..=0x25 => {
                let name = self.dict_key()?;
                AttributeRef::PrefixDictionary {
                    prefix: letter(b - 0x0C),
                    name,
                    value: self.attribute_value()?,
                }
            }
            _ => {
                let name = self.string()?;
                AttributeRef::PrefixLetter {
                    prefix: letter(b.saturating_sub(0x26)),
                    name,
                    value: self.attribute_value()?,
                }
            }
        })
    }

    fn array_items(
        &mut self,
        t: u8,
        count: usize,
        toff: usize,
    ) -> Result<ArrayItemsRef<'a>, Error> {
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
        let need = count.checked_mul(size).ok_or_else(|| self.eof())?;
        if need > self.data.len() - self.pos {
            return Err(self.eof());
        }
        let start = self.pos;
        match t {
            0x95 => {
                for _ in 0..count {
                    self.decimal()?;
                }
            }
            0x97 => {
                for _ in 0..count {
                    self.datetime()?;
                }
            }
            _ => {
                self.take(need)?;
            }
        }
        Ok(ArrayItemsRef {
            item_type: t,
            count,
            bytes: &self.data[start..self.pos],
        })
    }
}

fn letter(i: u8) -> PrefixLetter {
    // Callers pass values in 0..26 derived from the record type ranges.
    PrefixLetter::wrapping(i)
}

//! The borrowed event model: what [`EventReader`](crate::EventReader) yields. Every
//! string and byte run points into the input, so reading a document allocates nothing
//! per record; `to_owned` on each type gives the [`Record`](crate::Record) model.

use crate::record::*;
use crate::DictKey;

/// A text value borrowed from the input; mirrors [`Text`] variant for variant.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)] // each variant is the same-named variant of `Text`
pub enum TextRef<'a> {
    Zero,
    One,
    False,
    True,
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    Decimal(Decimal),
    DateTime(DateTime),
    Chars8(&'a str),
    Chars16(&'a str),
    Chars32(&'a str),
    Bytes8(&'a [u8]),
    Bytes16(&'a [u8]),
    Bytes32(&'a [u8]),
    /// The items, already validated; [`ListRef::items`] walks them.
    List(ListRef<'a>),
    Empty,
    Dictionary(DictKey),
    UniqueId(Guid),
    TimeSpan(TimeSpan),
    Guid(Guid),
    UInt64(u64),
    Bool(u8),
    /// UTF-16LE bytes, already validated.
    UnicodeChars8(Utf16Ref<'a>),
    UnicodeChars16(Utf16Ref<'a>),
    UnicodeChars32(Utf16Ref<'a>),
    QNameDictionary {
        prefix: PrefixLetter,
        name: DictKey,
    },
}

/// The validated UTF-16LE payload of a UnicodeChars record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf16Ref<'a>(pub(crate) &'a [u8]);

impl Utf16Ref<'_> {
    /// The raw little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0
    }
    /// Decoded text (the reader checked it is valid UTF-16).
    pub fn decode(&self) -> String {
        let units = self
            .0
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }
}

/// The items of a list text (between StartListText and EndListText), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRef<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) count: usize,
}

impl<'a> ListRef<'a> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.count
    }
    /// True for `<a></a>`-style empty lists.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The items in order.
    pub fn items(&self) -> impl Iterator<Item = TextRef<'a>> + 'a {
        let mut c = crate::reader::Cursor::trusted(self.bytes);
        (0..self.count).filter_map(move |_| {
            let b = c.byte().ok()?;
            c.text_trusted(b).ok()
        })
    }
}

impl TextRef<'_> {
    /// The owned value.
    pub fn to_owned(&self) -> Text {
        match *self {
            TextRef::Zero => Text::Zero,
            TextRef::One => Text::One,
            TextRef::False => Text::False,
            TextRef::True => Text::True,
            TextRef::Int8(v) => Text::Int8(v),
            TextRef::Int16(v) => Text::Int16(v),
            TextRef::Int32(v) => Text::Int32(v),
            TextRef::Int64(v) => Text::Int64(v),
            TextRef::Float(v) => Text::Float(v),
            TextRef::Double(v) => Text::Double(v),
            TextRef::Decimal(v) => Text::Decimal(v),
            TextRef::DateTime(v) => Text::DateTime(v),
            TextRef::Chars8(s) => Text::Chars8(s.to_owned()),
            TextRef::Chars16(s) => Text::Chars16(s.to_owned()),
            TextRef::Chars32(s) => Text::Chars32(s.to_owned()),
            TextRef::Bytes8(b) => Text::Bytes8(b.to_vec()),
            TextRef::Bytes16(b) => Text::Bytes16(b.to_vec()),
            TextRef::Bytes32(b) => Text::Bytes32(b.to_vec()),
            TextRef::List(l) => Text::List(l.items().map(|t| t.to_owned()).collect()),
            TextRef::Empty => Text::Empty,
            TextRef::Dictionary(k) => Text::Dictionary(k),
            TextRef::UniqueId(g) => Text::UniqueId(g),
            TextRef::TimeSpan(t) => Text::TimeSpan(t),
            TextRef::Guid(g) => Text::Guid(g),
            TextRef::UInt64(v) => Text::UInt64(v),
            TextRef::Bool(v) => Text::Bool(v),
            TextRef::UnicodeChars8(u) => Text::UnicodeChars8(u.decode()),
            TextRef::UnicodeChars16(u) => Text::UnicodeChars16(u.decode()),
            TextRef::UnicodeChars32(u) => Text::UnicodeChars32(u.decode()),
            TextRef::QNameDictionary { prefix, name } => Text::QNameDictionary { prefix, name },
        }
    }

    /// Whitespace-only character text (or EmptyText): the only text allowed outside the
    /// root element.
    pub fn is_whitespace(&self) -> bool {
        let ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
        match self {
            TextRef::Chars8(s) | TextRef::Chars16(s) | TextRef::Chars32(s) => s.chars().all(ws),
            TextRef::UnicodeChars8(u) | TextRef::UnicodeChars16(u) | TextRef::UnicodeChars32(u) => {
                u.0.chunks_exact(2)
                    .all(|c| c[1] == 0 && ws(char::from(c[0])))
            }
            TextRef::Empty => true,
            _ => false,
        }
    }
}

/// An element record borrowed from the input; mirrors [`Element`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ElementRef<'a> {
    Short { name: &'a str },
    Prefixed { prefix: &'a str, name: &'a str },
    ShortDictionary { name: DictKey },
    Dictionary { prefix: &'a str, name: DictKey },
    PrefixDictionary { prefix: PrefixLetter, name: DictKey },
    PrefixLetter { prefix: PrefixLetter, name: &'a str },
}

impl<'a> ElementRef<'a> {
    /// The element's prefix.
    pub fn prefix(&self) -> PrefixRef<'a> {
        match *self {
            ElementRef::Short { .. } | ElementRef::ShortDictionary { .. } => PrefixRef::None,
            ElementRef::Prefixed { prefix, .. } | ElementRef::Dictionary { prefix, .. } => {
                PrefixRef::Str(prefix)
            }
            ElementRef::PrefixDictionary { prefix, .. }
            | ElementRef::PrefixLetter { prefix, .. } => PrefixRef::Letter(prefix),
        }
    }
    /// The element's local name.
    pub fn name(&self) -> NameRef<'a> {
        match *self {
            ElementRef::Short { name }
            | ElementRef::Prefixed { name, .. }
            | ElementRef::PrefixLetter { name, .. } => NameRef::Inline(name),
            ElementRef::ShortDictionary { name }
            | ElementRef::Dictionary { name, .. }
            | ElementRef::PrefixDictionary { name, .. } => NameRef::Dict(name),
        }
    }
    /// The owned record.
    pub fn to_owned(&self) -> Element {
        match *self {
            ElementRef::Short { name } => Element::Short { name: name.into() },
            ElementRef::Prefixed { prefix, name } => Element::Prefixed {
                prefix: prefix.into(),
                name: name.into(),
            },
            ElementRef::ShortDictionary { name } => Element::ShortDictionary { name },
            ElementRef::Dictionary { prefix, name } => Element::Dictionary {
                prefix: prefix.into(),
                name,
            },
            ElementRef::PrefixDictionary { prefix, name } => {
                Element::PrefixDictionary { prefix, name }
            }
            ElementRef::PrefixLetter { prefix, name } => Element::PrefixLetter {
                prefix,
                name: name.into(),
            },
        }
    }
}

/// An attribute record borrowed from the input; mirrors [`Attribute`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum AttributeRef<'a> {
    Short {
        name: &'a str,
        value: TextRef<'a>,
    },
    Prefixed {
        prefix: &'a str,
        name: &'a str,
        value: TextRef<'a>,
    },
    ShortDictionary {
        name: DictKey,
        value: TextRef<'a>,
    },
    Dictionary {
        prefix: &'a str,
        name: DictKey,
        value: TextRef<'a>,
    },
    ShortXmlns {
        ns: &'a str,
    },
    Xmlns {
        prefix: &'a str,
        ns: &'a str,
    },
    ShortDictionaryXmlns {
        ns: DictKey,
    },
    DictionaryXmlns {
        prefix: &'a str,
        ns: DictKey,
    },
    PrefixDictionary {
        prefix: PrefixLetter,
        name: DictKey,
        value: TextRef<'a>,
    },
    PrefixLetter {
        prefix: PrefixLetter,
        name: &'a str,
        value: TextRef<'a>,
    },
}

impl<'a> AttributeRef<'a> {
    /// For namespace declarations: `Some((declared prefix, ns))`, prefix `""` for the default.
    pub fn xmlns(&self) -> Option<(&'a str, NameRef<'a>)> {
        match *self {
            AttributeRef::ShortXmlns { ns } => Some(("", NameRef::Inline(ns))),
            AttributeRef::Xmlns { prefix, ns } => Some((prefix, NameRef::Inline(ns))),
            AttributeRef::ShortDictionaryXmlns { ns } => Some(("", NameRef::Dict(ns))),
            AttributeRef::DictionaryXmlns { prefix, ns } => Some((prefix, NameRef::Dict(ns))),
            _ => None,
        }
    }
    /// For ordinary attributes: `Some((prefix, name, value))`.
    pub fn plain(&self) -> Option<(PrefixRef<'a>, NameRef<'a>, TextRef<'a>)> {
        match *self {
            AttributeRef::Short { name, value } => {
                Some((PrefixRef::None, NameRef::Inline(name), value))
            }
            AttributeRef::Prefixed {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Str(prefix), NameRef::Inline(name), value)),
            AttributeRef::ShortDictionary { name, value } => {
                Some((PrefixRef::None, NameRef::Dict(name), value))
            }
            AttributeRef::Dictionary {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Str(prefix), NameRef::Dict(name), value)),
            AttributeRef::PrefixDictionary {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Letter(prefix), NameRef::Dict(name), value)),
            AttributeRef::PrefixLetter {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Letter(prefix), NameRef::Inline(name), value)),
            _ => None,
        }
    }
    /// The owned record.
    pub fn to_owned(&self) -> Attribute {
        match *self {
            AttributeRef::Short { name, value } => Attribute::Short {
                name: name.into(),
                value: value.to_owned(),
            },
            AttributeRef::Prefixed {
                prefix,
                name,
                value,
            } => Attribute::Prefixed {
                prefix: prefix.into(),
                name: name.into(),
                value: value.to_owned(),
            },
            AttributeRef::ShortDictionary { name, value } => Attribute::ShortDictionary {
                name,
                value: value.to_owned(),
            },
            AttributeRef::Dictionary {
                prefix,
                name,
                value,
            } => Attribute::Dictionary {
                prefix: prefix.into(),
                name,
                value: value.to_owned(),
            },
            AttributeRef::ShortXmlns { ns } => Attribute::ShortXmlns { ns: ns.into() },
            AttributeRef::Xmlns { prefix, ns } => Attribute::Xmlns {
                prefix: prefix.into(),
                ns: ns.into(),
            },
            AttributeRef::ShortDictionaryXmlns { ns } => Attribute::ShortDictionaryXmlns { ns },
            AttributeRef::DictionaryXmlns { prefix, ns } => Attribute::DictionaryXmlns {
                prefix: prefix.into(),
                ns,
            },
            AttributeRef::PrefixDictionary {
                prefix,
                name,
                value,
            } => Attribute::PrefixDictionary {
                prefix,
                name,
                value: value.to_owned(),
            },
            AttributeRef::PrefixLetter {
                prefix,
                name,
                value,
            } => Attribute::PrefixLetter {
                prefix,
                name: name.into(),
                value: value.to_owned(),
            },
        }
    }
}

/// The items of an Array record, validated, as their raw little-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayItemsRef<'a> {
    pub(crate) item_type: u8,
    pub(crate) count: usize,
    pub(crate) bytes: &'a [u8],
}

impl ArrayItemsRef<'_> {
    /// The item type byte (the odd WithEndElement byte).
    pub fn item_type(&self) -> u8 {
        self.item_type
    }
    /// Number of items (at least one).
    pub fn len(&self) -> usize {
        self.count
    }
    /// Never true for a record read from the wire.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The raw item bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
    }
    /// The owned items.
    pub fn to_owned(&self) -> ArrayItems {
        fn each<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        let b = self.bytes;
        match self.item_type {
            0xB5 => ArrayItems::Bool(b.to_vec()),
            0x8B => ArrayItems::Int16(each(b, i16::from_le_bytes)),
            0x8D => ArrayItems::Int32(each(b, i32::from_le_bytes)),
            0x8F => ArrayItems::Int64(each(b, i64::from_le_bytes)),
            0x91 => ArrayItems::Float(each(b, f32::from_le_bytes)),
            0x93 => ArrayItems::Double(each(b, f64::from_le_bytes)),
            0x95 => ArrayItems::Decimal(each(b, |a: [u8; 16]| Decimal {
                flags: u32::from_le_bytes([a[0], a[1], a[2], a[3]]),
                hi: u32::from_le_bytes([a[4], a[5], a[6], a[7]]),
                lo: u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
            })),
            0x97 => ArrayItems::DateTime(each(b, |a| DateTime(u64::from_le_bytes(a)))),
            0xAF => ArrayItems::TimeSpan(each(b, |a| TimeSpan(i64::from_le_bytes(a)))),
            _ => ArrayItems::Guid(each(b, Guid)),
        }
    }
}

/// One step of a document, as [`EventReader::next_event`](crate::EventReader::next_event)
/// yields it.
///
/// A start tag is [`Event::Element`] followed by one [`Event::Attribute`] per attribute
/// record; the reader has already checked the whole tag (depth, attribute count, every
/// prefix declared) before the element event is returned. An Array record is
/// [`Event::ArrayStart`], its attributes, then [`Event::ArrayItems`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// An element record.
    Element(ElementRef<'a>),
    /// An attribute record of the element (or array) just started.
    Attribute(AttributeRef<'a>),
    /// 0x01 EndElement.
    EndElement,
    /// 0x02 Comment.
    Comment(&'a str),
    /// 0x03 Array: its element record.
    ArrayStart(ElementRef<'a>),
    /// The items that end an Array record.
    ArrayItems(ArrayItemsRef<'a>),
    /// An even text record.
    Text(TextRef<'a>),
    /// An odd text record: the text, then the end of the enclosing element.
    TextWithEndElement(TextRef<'a>),
}

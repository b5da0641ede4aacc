//! The record model: one value per [MC-NBFX] record, keeping the exact record kind so
//! that [`write_records`](crate::write_records) reproduces the input bytes.

use crate::DictKey;

/// A single-letter prefix `a`–`z`, as used by the PrefixElement/PrefixAttribute record
/// families and QNameDictionaryText.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixLetter(u8);

impl PrefixLetter {
    /// Letter number `index` (0 = `a`); `None` unless `index < 26`.
    pub fn new(index: u8) -> Option<Self> {
        (index < 26).then_some(PrefixLetter(index))
    }
    /// Letter `index % 26` (for indices known to be in range).
    pub(crate) fn wrapping(index: u8) -> Self {
        PrefixLetter(index % 26)
    }
    /// The letter for a one-character prefix `a`–`z`.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix.as_bytes() {
            [b @ b'a'..=b'z'] => Some(PrefixLetter(b - b'a')),
            _ => None,
        }
    }
    /// 0 for `a` … 25 for `z`.
    pub fn index(self) -> u8 {
        self.0
    }
    /// The prefix character.
    pub fn as_char(self) -> char {
        char::from(b'a' + self.0)
    }
}

/// A 128-bit GUID in `Guid.ToByteArray()` (wire) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

/// A .NET `System.Decimal` as carried by DecimalText (OLE DECIMAL layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Bits 16–23: scale (0–28); bit 31: sign; all other bits zero.
    pub flags: u32,
    /// Bits 64–95 of the 96-bit mantissa.
    pub hi: u32,
    /// Bits 0–63 of the mantissa.
    pub lo: u64,
}

impl Decimal {
    /// The scale (number of fraction digits).
    pub fn scale(self) -> u32 {
        (self.flags >> 16) & 0xFF
    }
    /// True when the sign bit is set.
    pub fn is_negative(self) -> bool {
        self.flags & 0x8000_0000 != 0
    }
    /// The 96-bit mantissa.
    pub fn mantissa(self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }
    /// True if flags are valid (no reserved bits, scale ≤ 28).
    pub fn is_valid(self) -> bool {
        self.flags & 0x7F00_FFFF == 0 && self.scale() <= 28
    }
}

/// A .NET `DateTime` in `DateTime.ToBinary()` form: bits 0–61 ticks (100 ns since
/// 0001-01-01), bits 62–63 kind (0 unspecified, 1 UTC, 2/3 local stored as UTC ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime(pub u64);

/// Largest valid `DateTime` tick count (9999-12-31T23:59:59.9999999).
pub const DATETIME_MAX_TICKS: u64 = 3_155_378_975_999_999_999;

impl DateTime {
    /// The 62-bit tick field.
    pub fn ticks(self) -> u64 {
        self.0 & 0x3FFF_FFFF_FFFF_FFFF
    }
    /// The kind bits (0 unspecified, 1 UTC, 2 local, 3 local ambiguous-DST).
    pub fn kind(self) -> u8 {
        (self.0 >> 62) as u8
    }
    /// True if the value is one .NET's `DateTime.FromBinary` accepts.
    pub fn is_valid(self) -> bool {
        match self.kind() {
            0 | 1 => self.ticks() <= DATETIME_MAX_TICKS,
            _ => true,
        }
    }
}

/// A .NET `TimeSpan` in ticks (100 ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeSpan(pub i64);

/// A text value: the payload of one text record (the record byte is this variant's even
/// byte, or the odd byte when carried by [`Record::TextWithEndElement`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// 0x80 ZeroText, `0`.
    Zero,
    /// 0x82 OneText, `1`.
    One,
    /// 0x84 FalseText.
    False,
    /// 0x86 TrueText.
    True,
    /// 0x88 Int8Text.
    Int8(i8),
    /// 0x8A Int16Text.
    Int16(i16),
    /// 0x8C Int32Text.
    Int32(i32),
    /// 0x8E Int64Text.
    Int64(i64),
    /// 0x90 FloatText.
    Float(f32),
    /// 0x92 DoubleText.
    Double(f64),
    /// 0x94 DecimalText.
    Decimal(Decimal),
    /// 0x96 DateTimeText.
    DateTime(DateTime),
    /// 0x98 Chars8Text (≤ 255 UTF-8 bytes).
    Chars8(String),
    /// 0x9A Chars16Text (≤ 65 535 UTF-8 bytes).
    Chars16(String),
    /// 0x9C Chars32Text.
    Chars32(String),
    /// 0x9E Bytes8Text.
    Bytes8(Vec<u8>),
    /// 0xA0 Bytes16Text.
    Bytes16(Vec<u8>),
    /// 0xA2 Bytes32Text.
    Bytes32(Vec<u8>),
    /// 0xA4 StartListText, the items, 0xA6 EndListText. Items are never lists.
    List(Vec<Text>),
    /// 0xA8 EmptyText.
    Empty,
    /// 0xAA DictionaryText.
    Dictionary(DictKey),
    /// 0xAC UniqueIdText, rendered `urn:uuid:<guid>`.
    UniqueId(Guid),
    /// 0xAE TimeSpanText.
    TimeSpan(TimeSpan),
    /// 0xB0 GuidText.
    Guid(Guid),
    /// 0xB2 UInt64Text.
    UInt64(u64),
    /// 0xB4 BoolText; the raw byte (0 = false, anything else = true) is kept.
    Bool(u8),
    /// 0xB6 UnicodeChars8Text (UTF-16LE, ≤ 255 bytes).
    UnicodeChars8(String),
    /// 0xB8 UnicodeChars16Text.
    UnicodeChars16(String),
    /// 0xBA UnicodeChars32Text.
    UnicodeChars32(String),
    /// 0xBC QNameDictionaryText: prefix letter + dictionary local name.
    QNameDictionary {
        /// The prefix.
        prefix: PrefixLetter,
        /// The local name.
        name: DictKey,
    },
}

impl Text {
    /// The even record type byte of this value.
    pub fn record_type(&self) -> u8 {
        match self {
            Text::Zero => 0x80,
            Text::One => 0x82,
            Text::False => 0x84,
            Text::True => 0x86,
            Text::Int8(_) => 0x88,
            Text::Int16(_) => 0x8A,
            Text::Int32(_) => 0x8C,
            Text::Int64(_) => 0x8E,
            Text::Float(_) => 0x90,
            Text::Double(_) => 0x92,
            Text::Decimal(_) => 0x94,
            Text::DateTime(_) => 0x96,
            Text::Chars8(_) => 0x98,
            Text::Chars16(_) => 0x9A,
            Text::Chars32(_) => 0x9C,
            Text::Bytes8(_) => 0x9E,
            Text::Bytes16(_) => 0xA0,
            Text::Bytes32(_) => 0xA2,
            Text::List(_) => 0xA4,
            Text::Empty => 0xA8,
            Text::Dictionary(_) => 0xAA,
            Text::UniqueId(_) => 0xAC,
            Text::TimeSpan(_) => 0xAE,
            Text::Guid(_) => 0xB0,
            Text::UInt64(_) => 0xB2,
            Text::Bool(_) => 0xB4,
            Text::UnicodeChars8(_) => 0xB6,
            Text::UnicodeChars16(_) => 0xB8,
            Text::UnicodeChars32(_) => 0xBA,
            Text::QNameDictionary { .. } => 0xBC,
        }
    }
}

/// An element record (0x40–0x77).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// 0x40 ShortElement: `<name>`.
    Short {
        /// Local name.
        name: String,
    },
    /// 0x41 Element: `<prefix:name>`.
    Prefixed {
        /// Prefix.
        prefix: String,
        /// Local name.
        name: String,
    },
    /// 0x42 ShortDictionaryElement.
    ShortDictionary {
        /// Local name.
        name: DictKey,
    },
    /// 0x43 DictionaryElement.
    Dictionary {
        /// Prefix.
        prefix: String,
        /// Local name.
        name: DictKey,
    },
    /// 0x44–0x5D PrefixDictionaryElementA–Z.
    PrefixDictionary {
        /// Prefix letter.
        prefix: PrefixLetter,
        /// Local name.
        name: DictKey,
    },
    /// 0x5E–0x77 PrefixElementA–Z.
    PrefixLetter {
        /// Prefix letter.
        prefix: PrefixLetter,
        /// Local name.
        name: String,
    },
}

/// A name that is either inline or a dictionary reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRef<'a> {
    /// Inline string.
    Inline(&'a str),
    /// Dictionary key.
    Dict(DictKey),
}

/// A prefix: none, a string, or a single letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixRef<'a> {
    /// No prefix.
    None,
    /// Explicit prefix string.
    Str(&'a str),
    /// Letter `a`–`z`.
    Letter(PrefixLetter),
}

impl Element {
    /// The element's prefix.
    pub fn prefix(&self) -> PrefixRef<'_> {
        match self {
            Element::Short { .. } | Element::ShortDictionary { .. } => PrefixRef::None,
            Element::Prefixed { prefix, .. } | Element::Dictionary { prefix, .. } => {
                PrefixRef::Str(prefix)
            }
            Element::PrefixDictionary { prefix, .. } | Element::PrefixLetter { prefix, .. } => {
                PrefixRef::Letter(*prefix)
            }
        }
    }
    /// The element's local name.
    pub fn name(&self) -> NameRef<'_> {
        match self {
            Element::Short { name } | Element::Prefixed { name, .. } => NameRef::Inline(name),
            Element::PrefixLetter { name, .. } => NameRef::Inline(name),
            Element::ShortDictionary { name }
            | Element::Dictionary { name, .. }
            | Element::PrefixDictionary { name, .. } => NameRef::Dict(*name),
        }
    }
}

/// An attribute record (0x04–0x3F), namespace declarations included.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// 0x04 ShortAttribute: `name="value"`.
    Short {
        /// Local name.
        name: String,
        /// Value.
        value: Text,
    },
    /// 0x05 Attribute: `prefix:name="value"`.
    Prefixed {
        /// Prefix.
        prefix: String,
        /// Local name.
        name: String,
        /// Value.
        value: Text,
    },
    /// 0x06 ShortDictionaryAttribute.
    ShortDictionary {
        /// Local name.
        name: DictKey,
        /// Value.
        value: Text,
    },
    /// 0x07 DictionaryAttribute.
    Dictionary {
        /// Prefix.
        prefix: String,
        /// Local name.
        name: DictKey,
        /// Value.
        value: Text,
    },
    /// 0x08 ShortXmlnsAttribute: `xmlns="ns"`.
    ShortXmlns {
        /// Namespace URI.
        ns: String,
    },
    /// 0x09 XmlnsAttribute: `xmlns:prefix="ns"`.
    Xmlns {
        /// Declared prefix.
        prefix: String,
        /// Namespace URI.
        ns: String,
    },
    /// 0x0A ShortDictionaryXmlnsAttribute.
    ShortDictionaryXmlns {
        /// Namespace URI.
        ns: DictKey,
    },
    /// 0x0B DictionaryXmlnsAttribute.
    DictionaryXmlns {
        /// Declared prefix.
        prefix: String,
        /// Namespace URI.
        ns: DictKey,
    },
    /// 0x0C–0x25 PrefixDictionaryAttributeA–Z.
    PrefixDictionary {
        /// Prefix letter.
        prefix: PrefixLetter,
        /// Local name.
        name: DictKey,
        /// Value.
        value: Text,
    },
    /// 0x26–0x3F PrefixAttributeA–Z.
    PrefixLetter {
        /// Prefix letter.
        prefix: PrefixLetter,
        /// Local name.
        name: String,
        /// Value.
        value: Text,
    },
}

impl Attribute {
    /// For namespace declarations: `Some((declared prefix, ns))`, prefix `""` for the default.
    pub fn xmlns(&self) -> Option<(&str, NameRef<'_>)> {
        match self {
            Attribute::ShortXmlns { ns } => Some(("", NameRef::Inline(ns))),
            Attribute::Xmlns { prefix, ns } => Some((prefix, NameRef::Inline(ns))),
            Attribute::ShortDictionaryXmlns { ns } => Some(("", NameRef::Dict(*ns))),
            Attribute::DictionaryXmlns { prefix, ns } => Some((prefix, NameRef::Dict(*ns))),
            _ => None,
        }
    }
    /// For ordinary attributes: `Some((prefix, name, value))`.
    pub fn plain(&self) -> Option<(PrefixRef<'_>, NameRef<'_>, &Text)> {
        match self {
            Attribute::Short { name, value } => {
                Some((PrefixRef::None, NameRef::Inline(name), value))
            }
            Attribute::Prefixed {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Str(prefix), NameRef::Inline(name), value)),
            Attribute::ShortDictionary { name, value } => {
                Some((PrefixRef::None, NameRef::Dict(*name), value))
            }
            Attribute::Dictionary {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Str(prefix), NameRef::Dict(*name), value)),
            Attribute::PrefixDictionary {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Letter(*prefix), NameRef::Dict(*name), value)),
            Attribute::PrefixLetter {
                prefix,
                name,
                value,
            } => Some((PrefixRef::Letter(*prefix), NameRef::Inline(name), value)),
            _ => None,
        }
    }
}

/// Items of an Array record (the item type byte is the odd WithEndElement byte).
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayItems {
    /// 0xB5, one byte per item (raw byte kept).
    Bool(Vec<u8>),
    /// 0x8B.
    Int16(Vec<i16>),
    /// 0x8D.
    Int32(Vec<i32>),
    /// 0x8F.
    Int64(Vec<i64>),
    /// 0x91.
    Float(Vec<f32>),
    /// 0x93.
    Double(Vec<f64>),
    /// 0x95.
    Decimal(Vec<Decimal>),
    /// 0x97.
    DateTime(Vec<DateTime>),
    /// 0xAF.
    TimeSpan(Vec<TimeSpan>),
    /// 0xB1.
    Guid(Vec<Guid>),
}

impl ArrayItems {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            ArrayItems::Bool(v) => v.len(),
            ArrayItems::Int16(v) => v.len(),
            ArrayItems::Int32(v) => v.len(),
            ArrayItems::Int64(v) => v.len(),
            ArrayItems::Float(v) => v.len(),
            ArrayItems::Double(v) => v.len(),
            ArrayItems::Decimal(v) => v.len(),
            ArrayItems::DateTime(v) => v.len(),
            ArrayItems::TimeSpan(v) => v.len(),
            ArrayItems::Guid(v) => v.len(),
        }
    }
    /// True when there are no items (never valid on the wire).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The item type byte.
    pub fn item_type(&self) -> u8 {
        match self {
            ArrayItems::Bool(_) => 0xB5,
            ArrayItems::Int16(_) => 0x8B,
            ArrayItems::Int32(_) => 0x8D,
            ArrayItems::Int64(_) => 0x8F,
            ArrayItems::Float(_) => 0x91,
            ArrayItems::Double(_) => 0x93,
            ArrayItems::Decimal(_) => 0x95,
            ArrayItems::DateTime(_) => 0x97,
            ArrayItems::TimeSpan(_) => 0xAF,
            ArrayItems::Guid(_) => 0xB1,
        }
    }
    /// Item `i` as a text value.
    pub fn item(&self, i: usize) -> Option<Text> {
        Some(match self {
            ArrayItems::Bool(v) => Text::Bool(*v.get(i)?),
            ArrayItems::Int16(v) => Text::Int16(*v.get(i)?),
            ArrayItems::Int32(v) => Text::Int32(*v.get(i)?),
            ArrayItems::Int64(v) => Text::Int64(*v.get(i)?),
            ArrayItems::Float(v) => Text::Float(*v.get(i)?),
            ArrayItems::Double(v) => Text::Double(*v.get(i)?),
            ArrayItems::Decimal(v) => Text::Decimal(*v.get(i)?),
            ArrayItems::DateTime(v) => Text::DateTime(*v.get(i)?),
            ArrayItems::TimeSpan(v) => Text::TimeSpan(*v.get(i)?),
            ArrayItems::Guid(v) => Text::Guid(*v.get(i)?),
        })
    }
}

/// An Array record (0x03): `count` sibling elements with the same name and attributes,
/// each holding one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The element record.
    pub element: Element,
    /// Its attribute records.
    pub attributes: Vec<Attribute>,
    /// The items (at least one).
    pub items: ArrayItems,
}

/// One [MC-NBFX] record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An element record; its attributes follow as [`Record::Attribute`]s.
    Element(Element),
    /// An attribute record; only directly after an element or another attribute.
    Attribute(Attribute),
    /// 0x01 EndElement.
    EndElement,
    /// 0x02 Comment.
    Comment(String),
    /// 0x03 Array.
    Array(Box<Array>),
    /// An even text record.
    Text(Text),
    /// An odd text record: the text and the end of the enclosing element.
    TextWithEndElement(Text),
}

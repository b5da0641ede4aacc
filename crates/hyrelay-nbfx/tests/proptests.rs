//! Property tests: generated valid documents survive encode → decode unchanged, and the
//! reader never panics on arbitrary bytes.

use hyrelay_nbfx::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn key() -> impl Strategy<Value = DictKey> {
    (0u32..STATIC_DICTIONARY_LEN as u32).prop_map(DictKey::from_static_index)
}

fn letter() -> impl Strategy<Value = PrefixLetter> {
    (0u8..26).prop_map(|i| PrefixLetter::new(i).expect("< 26"))
}

fn guid() -> impl Strategy<Value = Guid> {
    any::<[u8; 16]>().prop_map(Guid)
}

fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN != NaN", |f| !f.is_nan())
}

fn double() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan())
}

fn decimal() -> impl Strategy<Value = Decimal> {
    (0u32..=28, any::<bool>(), any::<u32>(), any::<u64>()).prop_map(|(scale, neg, hi, lo)| {
        Decimal {
            flags: (scale << 16) | if neg { 0x8000_0000 } else { 0 },
            hi,
            lo,
        }
    })
}

fn datetime() -> impl Strategy<Value = DateTime> {
    (0u64..=DATETIME_MAX_TICKS, 0u64..4).prop_map(|(t, k)| DateTime(t | (k << 62)))
}

/// Any single (non-list) text value.
fn value() -> impl Strategy<Value = Text> {
    let s = "[ -~]{0,40}";
    prop_oneof![
        Just(Text::Zero),
        Just(Text::One),
        Just(Text::False),
        Just(Text::True),
        Just(Text::Empty),
        any::<i8>().prop_map(Text::Int8),
        any::<i16>().prop_map(Text::Int16),
        any::<i32>().prop_map(Text::Int32),
        any::<i64>().prop_map(Text::Int64),
        any::<u64>().prop_map(Text::UInt64),
        float().prop_map(Text::Float),
        double().prop_map(Text::Double),
        decimal().prop_map(Text::Decimal),
        datetime().prop_map(Text::DateTime),
        any::<i64>().prop_map(|t| Text::TimeSpan(TimeSpan(t))),
        s.prop_map(Text::Chars8),
        s.prop_map(Text::Chars16),
        s.prop_map(Text::Chars32),
        "\\PC{0,20}".prop_map(Text::UnicodeChars8),
        "\\PC{0,20}".prop_map(Text::UnicodeChars16),
        "\\PC{0,20}".prop_map(Text::UnicodeChars32),
        vec(any::<u8>(), 0..20).prop_map(Text::Bytes8),
        vec(any::<u8>(), 0..20).prop_map(Text::Bytes16),
        vec(any::<u8>(), 0..20).prop_map(Text::Bytes32),
        key().prop_map(Text::Dictionary),
        guid().prop_map(Text::UniqueId),
        guid().prop_map(Text::Guid),
        any::<u8>().prop_map(Text::Bool),
        (letter(), key()).prop_map(|(prefix, name)| Text::QNameDictionary { prefix, name }),
    ]
}

fn attr_value() -> impl Strategy<Value = Text> {
    prop_oneof![4 => value(), 1 => vec(value(), 0..4).prop_map(Text::List)]
}

#[derive(Debug, Clone)]
enum Prefix {
    None,
    Letter(PrefixLetter),
    Str(String),
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        Just(Prefix::None),
        letter().prop_map(Prefix::Letter),
        "[a-z]{2,5}".prop_map(Prefix::Str),
    ]
}

/// An element record with its attribute records; the prefix (if any) is declared on the
/// element itself, so the document is namespace-well-formed.
fn start_tag() -> impl Strategy<Value = (Element, Vec<Attribute>)> {
    let name = "[a-zA-Z_][a-zA-Z0-9_]{0,8}";
    (
        prefix(),
        any::<bool>(),
        name,
        key(),
        vec((0u8..5, name, key(), attr_value()), 0..4),
        "[ -~]{0,30}",
        key(),
    )
        .prop_map(|(p, dict, n, k, attrs, ns, nsk)| {
            let mut out = Vec::new();
            let element = match (&p, dict) {
                (Prefix::None, false) => Element::Short { name: n },
                (Prefix::None, true) => Element::ShortDictionary { name: k },
                (Prefix::Letter(l), false) => Element::PrefixLetter {
                    prefix: *l,
                    name: n,
                },
                (Prefix::Letter(l), true) => Element::PrefixDictionary {
                    prefix: *l,
                    name: k,
                },
                (Prefix::Str(s), false) => Element::Prefixed {
                    prefix: s.clone(),
                    name: n,
                },
                (Prefix::Str(s), true) => Element::Dictionary {
                    prefix: s.clone(),
                    name: k,
                },
            };
            for (kind, an, ak, v) in attrs {
                out.push(match (kind, &p) {
                    (0, _) => Attribute::Short { name: an, value: v },
                    (1, _) => Attribute::ShortDictionary { name: ak, value: v },
                    (2, Prefix::Letter(l)) => Attribute::PrefixLetter {
                        prefix: *l,
                        name: an,
                        value: v,
                    },
                    (3, Prefix::Letter(l)) => Attribute::PrefixDictionary {
                        prefix: *l,
                        name: ak,
                        value: v,
                    },
                    (2, Prefix::Str(s)) => Attribute::Prefixed {
                        prefix: s.clone(),
                        name: an,
                        value: v,
                    },
                    (3, Prefix::Str(s)) => Attribute::Dictionary {
                        prefix: s.clone(),
                        name: ak,
                        value: v,
                    },
                    (4, _) => Attribute::Prefixed {
                        prefix: "xml".into(),
                        name: an,
                        value: v,
                    },
                    _ => Attribute::ShortXmlns { ns: ns.clone() },
                });
            }
            match (&p, dict) {
                (Prefix::None, _) => {}
                (Prefix::Letter(l), false) => out.push(Attribute::Xmlns {
                    prefix: l.as_char().to_string(),
                    ns,
                }),
                (Prefix::Letter(l), true) => out.push(Attribute::DictionaryXmlns {
                    prefix: l.as_char().to_string(),
                    ns: nsk,
                }),
                (Prefix::Str(s), _) => out.push(Attribute::Xmlns {
                    prefix: s.clone(),
                    ns,
                }),
            }
            (element, out)
        })
}

fn array() -> impl Strategy<Value = Record> {
    let items = prop_oneof![
        vec(any::<u8>(), 1..5).prop_map(ArrayItems::Bool),
        vec(any::<i16>(), 1..5).prop_map(ArrayItems::Int16),
        vec(any::<i32>(), 1..5).prop_map(ArrayItems::Int32),
        vec(any::<i64>(), 1..5).prop_map(ArrayItems::Int64),
        vec(float(), 1..5).prop_map(ArrayItems::Float),
        vec(double(), 1..5).prop_map(ArrayItems::Double),
        vec(decimal(), 1..5).prop_map(ArrayItems::Decimal),
        vec(datetime(), 1..5).prop_map(ArrayItems::DateTime),
        vec(any::<i64>().prop_map(TimeSpan), 1..5).prop_map(ArrayItems::TimeSpan),
        vec(guid(), 1..5).prop_map(ArrayItems::Guid),
    ];
    (start_tag(), items).prop_map(|((element, attributes), items)| {
        Record::Array(Box::new(Array {
            element,
            attributes,
            items,
        }))
    })
}

fn push_element(out: &mut Vec<Record>, tag: (Element, Vec<Attribute>)) {
    out.push(Record::Element(tag.0));
    out.extend(tag.1.into_iter().map(Record::Attribute));
}

/// A whole element: start tag, content, end (EndElement or a WithEndElement text).
fn element() -> impl Strategy<Value = Vec<Record>> {
    let leaf = (start_tag(), proptest::option::of(value()), any::<bool>()).prop_map(
        |(tag, text, fold)| {
            let mut out = Vec::new();
            push_element(&mut out, tag);
            match (text, fold) {
                (Some(t), true) => out.push(Record::TextWithEndElement(t)),
                (Some(t), false) => {
                    out.push(Record::Text(t));
                    out.push(Record::EndElement);
                }
                (None, _) => out.push(Record::EndElement),
            }
            out
        },
    );
    leaf.prop_recursive(4, 48, 6, |inner| {
        let child = prop_oneof![
            3 => inner,
            2 => value().prop_map(|t| vec![Record::Text(t)]),
            1 => vec(value(), 1..4).prop_map(|t| vec![Record::Text(Text::List(t))]),
            1 => "[ -~]{0,20}".prop_map(|c| vec![Record::Comment(c)]),
            1 => array().prop_map(|a| vec![a]),
        ];
        (start_tag(), vec(child, 0..6)).prop_map(|(tag, children)| {
            let mut out = Vec::new();
            push_element(&mut out, tag);
            for c in children {
                out.extend(c);
            }
            out.push(Record::EndElement);
            out
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_encode_roundtrip(doc in element()) {
        let bytes = encode_records(&doc).unwrap();
        let back = read_records(&bytes, Dictionaries::static_only(), &Limits::buffered(1 << 20)).unwrap();
        prop_assert_eq!(&back, &doc);
        prop_assert_eq!(encode_records(&back).unwrap(), bytes);
        // Rendering never fails on a valid document.
        records_to_xml(&back, Dictionaries::static_only(), &XmlOptions::default()).unwrap();
    }

    #[test]
    fn reader_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let _ = read_records(&bytes, Dictionaries::static_only(), &Limits::default());
        let mut s = SessionDictionary::default();
        let _ = read_session_message(&bytes, &mut s, &Limits::default());
    }

    #[test]
    fn mutated_valid_documents_never_panic(doc in element(), idx in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode_records(&doc).unwrap();
        let i = idx % bytes.len();
        bytes[i] = byte;
        if let Ok(recs) = read_records(&bytes, Dictionaries::static_only(), &Limits::buffered(1 << 20)) {
            let _ = records_to_xml(&recs, Dictionaries::static_only(), &XmlOptions::default());
        }
    }
}

//! The borrowed event reader: pulling events one at a time and visiting them in a loop
//! give the same events and the same errors, on every vector and every cut of it; an
//! error ends the document; strings come straight out of the input.

use std::fs;
use std::path::{Path, PathBuf};

use hyrelay_nbfx::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nbfx")
}

/// Every `.bin` under fixtures/nbfx except the NBFSE session messages (those need
/// their table read first).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["nbfx", "nbfs", "malformed"] {
        let Ok(rd) = fs::read_dir(fixtures().join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().into_string().unwrap();
            if n.ends_with(".bin") {
                out.push((format!("{dir}/{n}"), fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 40, "only {} vectors", out.len());
    out
}

fn pulled(bin: &[u8], limits: &Limits) -> (Vec<String>, Option<Error>) {
    let mut r = EventReader::new(bin, Dictionaries::static_only(), limits).unwrap();
    let mut evs = Vec::new();
    loop {
        match r.next_event() {
            Ok(Some(e)) => evs.push(format!("{e:?}")),
            Ok(None) => return (evs, None),
            Err(e) => {
                // An error is final: the reader yields nothing more.
                assert_eq!(r.next_event().unwrap(), None);
                return (evs, Some(e));
            }
        }
    }
}

fn visited(bin: &[u8], limits: &Limits) -> (Vec<String>, Option<Error>) {
    let mut r = EventReader::new(bin, Dictionaries::static_only(), limits).unwrap();
    let mut evs = Vec::new();
    let err = r.visit(|e| evs.push(format!("{e:?}"))).err();
    (evs, err)
}

#[test]
fn pull_and_visit_agree_on_every_cut_of_every_vector() {
    let limits = Limits::buffered(1 << 20);
    let mut checked = 0;
    for (name, bin) in corpus() {
        let step = if bin.len() > 4096 { 61 } else { 1 };
        for cut in (0..=bin.len()).step_by(step) {
            let p = pulled(&bin[..cut], &limits);
            let v = visited(&bin[..cut], &limits);
            assert_eq!(p, v, "{name} cut at {cut}");
            // The owned reader fails exactly where the event reader fails.
            let owned = read_records(&bin[..cut], Dictionaries::static_only(), &limits);
            assert_eq!(owned.err(), p.1, "{name} cut at {cut}");
            checked += 1;
        }
    }
    assert!(checked > 5000, "{checked}");
}

#[test]
fn events_borrow_their_strings_from_the_input() {
    // <a xmlns:p="urn:x" p:b="text">hello</a>, written with inline-string records.
    let doc = encode_records(&[
        Record::Element(Element::Short { name: "a".into() }),
        Record::Attribute(Attribute::Xmlns {
            prefix: "p".into(),
            ns: "urn:x".into(),
        }),
        Record::Attribute(Attribute::Prefixed {
            prefix: "p".into(),
            name: "b".into(),
            value: Text::Chars8("text".into()),
        }),
        Record::TextWithEndElement(Text::Chars8("hello".into())),
    ])
    .unwrap();
    let limits = Limits::default();
    let mut r = EventReader::new(&doc, Dictionaries::static_only(), &limits).unwrap();
    let range = doc.as_ptr_range();
    let inside = |s: &str| range.contains(&s.as_ptr());
    let Some(Event::Element(ElementRef::Short { name })) = r.next_event().unwrap() else {
        panic!("element first")
    };
    assert!(name == "a" && inside(name));
    assert_eq!(r.depth(), 1);
    let Some(Event::Attribute(AttributeRef::Xmlns { prefix, ns })) = r.next_event().unwrap() else {
        panic!("xmlns second")
    };
    assert!(prefix == "p" && ns == "urn:x" && inside(ns));
    let Some(Event::Attribute(a)) = r.next_event().unwrap() else {
        panic!("attribute third")
    };
    let Some((PrefixRef::Str("p"), NameRef::Inline("b"), TextRef::Chars8(v))) = a.plain() else {
        panic!("{a:?}")
    };
    assert!(v == "text" && inside(v));
    let Some(Event::TextWithEndElement(TextRef::Chars8(t))) = r.next_event().unwrap() else {
        panic!("text last")
    };
    assert!(t == "hello" && inside(t));
    assert_eq!(r.depth(), 0);
    assert_eq!(r.next_event().unwrap(), None);
    assert_eq!(r.offset(), doc.len());
}

#[test]
fn an_undeclared_prefix_is_caught_before_the_element_is_handed_out() {
    // <p:a/> with no xmlns:p: the start tag is checked whole, so no event comes first.
    let doc = encode_records(&[
        Record::Element(Element::Prefixed {
            prefix: "p".into(),
            name: "a".into(),
        }),
        Record::EndElement,
    ])
    .unwrap();
    let limits = Limits::default();
    let (evs, err) = pulled(&doc, &limits);
    assert!(evs.is_empty(), "{evs:?}");
    assert!(
        matches!(&err, Some(Error::Malformed { offset: 0, reason }) if reason.contains("'p'")),
        "{err:?}"
    );
}

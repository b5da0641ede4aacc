#![no_main]
//! Binary XML: reading never panics and stays within the limits; whatever reads back
//! re-encodes to the same records, and to the same bytes unless the input used
//! non-minimal multi-byte lengths (which .NET's reader also accepts and no writer
//! produces; re-encoding writes them minimal, so the output is then shorter). Whatever
//! reads back renders as XML. The first byte picks plain
//! [MC-NBFX] or an [MC-NBFSE] session message. The event reader, pulled one event at a
//! time, yields as many events as visiting does and fails with the same error.
use hyrelay_nbfx::{
    read_records, read_session_message, records_to_xml, write_records, write_session_message,
    Dictionaries, EventReader, Limits, SessionDictionary, XmlOptions,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let limits = Limits::default();
    if mode & 1 == 0 {
        if let Ok(mut pull) = EventReader::new(input, Dictionaries::static_only(), &limits) {
            let mut n = 0usize;
            let pulled = loop {
                match pull.next_event() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            let mut visit = EventReader::new(input, Dictionaries::static_only(), &limits).unwrap();
            let mut m = 0usize;
            let visited = visit.visit(|_| m += 1).err();
            assert_eq!((n, &pulled), (m, &visited));
            assert_eq!(
                read_records(input, Dictionaries::static_only(), &limits).err(),
                pulled
            );
        }
        if let Ok(recs) = read_records(input, Dictionaries::static_only(), &limits) {
            let mut out = Vec::new();
            write_records(&recs, &mut out).expect("re-encode");
            if out != input {
                assert!(out.len() < input.len(), "re-encoding differs but is not a shortening");
                // Compared as bytes: records holding NaN are never == themselves.
                let again = read_records(&out, Dictionaries::static_only(), &limits).expect("re-read");
                let mut out2 = Vec::new();
                write_records(&again, &mut out2).expect("re-encode");
                assert_eq!(out2, out);
            }
            let _ = records_to_xml(&recs, Dictionaries::static_only(), &XmlOptions::default());
        }
    } else {
        let mut session = SessionDictionary::new(64 * 1024);
        if let Ok(msg) = read_session_message(input, &mut session, &limits) {
            let mut out = Vec::new();
            write_session_message(&msg, &mut out).expect("re-encode");
            if out != input {
                assert!(out.len() < input.len(), "re-encoding differs but is not a shortening");
                let mut s2 = SessionDictionary::new(64 * 1024);
                let again = read_session_message(&out, &mut s2, &limits).expect("re-read");
                let mut out2 = Vec::new();
                write_session_message(&again, &mut out2).expect("re-encode");
                assert_eq!(out2, out);
            }
            let _ = records_to_xml(&msg.records, Dictionaries::with_session(&session), &XmlOptions::default());
        }
    }
});

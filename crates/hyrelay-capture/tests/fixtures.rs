//! Every committed capture of real WCF traffic decodes completely, every envelope
//! re-encodes to the very same bytes, and the committed transcripts are what the decoder
//! prints today.

use std::path::{Path, PathBuf};

use hyrelay_capture::transcript::render_text;
use hyrelay_capture::{parse, transcript, Dir, Limits, TranscriptOptions};
use hyrelay_nbfx::{
    read_records, read_session_message, write_records, write_session_message, Dictionaries,
    SessionDictionary,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn capture_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("captures"), root().join("nbfx/mono-captures")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("jsonl" | "pcap" | "pcapng")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_capture_decodes_and_every_envelope_reencodes_byte_exact() {
    let files = capture_files();
    assert!(files.len() >= 7, "captures missing: {files:?}");
    let opts = TranscriptOptions::default();
    let limits = hyrelay_nbfx::Limits::buffered(64 << 20);
    let mut envelopes = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let cap =
            parse(&data, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            !cap.connections.is_empty(),
            "{}: no connections",
            f.display()
        );
        for c in &cap.connections {
            let entries = transcript(c, &opts);
            let session_encoding = entries
                .iter()
                .any(|e| e.record == "KnownEncoding" && e.byte == Some(0x08));
            let mut sessions = [
                SessionDictionary::new(opts.max_session_dictionary),
                SessionDictionary::new(opts.max_session_dictionary),
            ];
            for dir in [Dir::C2S, Dir::S2C] {
                for e in entries.iter().filter(|e| e.dir == dir) {
                    assert!(
                        !matches!(e.record, "Error" | "Gap"),
                        "{} conn {} {}: {} at {}: {:?}",
                        f.display(),
                        c.id,
                        dir.as_str(),
                        e.record,
                        e.offset,
                        e.value
                    );
                    assert!(
                        e.xml_error.is_none(),
                        "{} conn {}: envelope at {} did not decode: {:?}",
                        f.display(),
                        c.id,
                        e.offset,
                        e.xml_error
                    );
                    let Some(payload) = &e.payload else { continue };
                    let mut out = Vec::new();
                    if session_encoding {
                        let msg =
                            read_session_message(payload, &mut sessions[dir as usize], &limits)
                                .unwrap();
                        write_session_message(&msg, &mut out).unwrap();
                    } else {
                        let recs =
                            read_records(payload, Dictionaries::static_only(), &limits).unwrap();
                        write_records(&recs, &mut out).unwrap();
                    }
                    assert!(
                        out == *payload,
                        "{} conn {} {} envelope at {}: re-encoding differs",
                        f.display(),
                        c.id,
                        dir.as_str(),
                        e.offset
                    );
                    envelopes += 1;
                }
            }
        }
    }
    assert!(envelopes > 40, "only {envelopes} envelopes checked");
}

/// `fixtures/captures/<case>/transcript.txt` is the text `hyrelay nmf decode` prints for
/// the capture beside it (regenerate with `tools/record-fixtures --transcripts-only`).
#[test]
fn committed_transcripts_match_the_decoder() {
    let dir = root().join("captures");
    let mut checked = 0;
    for case in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let t = case.path().join("transcript.txt");
        let Ok(expected) = std::fs::read_to_string(&t) else {
            continue;
        };
        let cap_file = ["capture.jsonl", "capture.pcap", "capture.pcapng"]
            .iter()
            .map(|n| case.path().join(n))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{}: no capture file", case.path().display()));
        let cap = parse(&std::fs::read(&cap_file).unwrap(), &Limits::default()).unwrap();
        let mut got = String::new();
        for c in &cap.connections {
            got.push_str(&render_text(
                c,
                &transcript(c, &TranscriptOptions::default()),
            ));
            got.push('\n');
        }
        assert!(
            got == expected,
            "{} differs from the decoder's output",
            t.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} transcripts under {}",
        dir.display()
    );
}

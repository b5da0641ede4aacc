//! The inbound rewriter on real Mono sessions: Via and To change, nothing else does, and
//! the result is the same however the bytes are split.

use std::path::Path;

use hyrelay_capture::{parse, transcript, Capture, Dir, Limits, TranscriptOptions};
use hyrelay_wcf::{Inbound, InboundConfig};

fn capture(name: &str) -> Capture {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/nbfx/mono-captures")
        .join(name);
    parse(&std::fs::read(p).unwrap(), &Limits::default()).unwrap()
}

fn run(stream: &[u8], target: &str, chunk: usize) -> (Vec<u8>, hyrelay_wcf::InboundStats) {
    let mut ib = Inbound::new(InboundConfig::new(target));
    let mut out = Vec::new();
    for c in stream.chunks(chunk.max(1)) {
        ib.feed(c).unwrap();
        out.extend(ib.take_output());
    }
    ib.finish().unwrap();
    (out, ib.stats())
}

fn c2s_transcript(bytes: Vec<u8>) -> Vec<hyrelay_capture::Entry> {
    let conn = hyrelay_capture::Connection {
        id: 1,
        segments: vec![hyrelay_capture::Segment {
            time: 0.0,
            dir: Dir::C2S,
            offset: 0,
            data: bytes,
        }],
        ..Default::default()
    };
    transcript(&conn, &TranscriptOptions::default())
}

#[test]
fn via_and_to_are_rewritten_and_nothing_else() {
    for name in [
        "tcp-3calls.jsonl",
        "tcp-profile.jsonl",
        "duplex.jsonl",
        "streamed-newconn.jsonl",
    ] {
        let cap = capture(name);
        for c in &cap.connections {
            let input = c.stream(Dir::C2S);
            if input.is_empty() {
                continue;
            }
            let target = "net.tcp://10.1.2.3:8123/Moved/CreditCheck";
            let (out, stats) = run(&input, target, usize::MAX);
            let before = c2s_transcript(input.clone());
            let after = c2s_transcript(out.clone());
            assert_eq!(before.len(), after.len(), "{name}");
            let mut rewritten = 0;
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(b.record, a.record);
                match b.record {
                    "Via" => assert_eq!(a.value.as_deref(), Some(target)),
                    "SizedEnvelope" | "UnsizedEnvelope" => {
                        let bx = b.xml.as_ref().unwrap();
                        let ax = a.xml.as_ref().unwrap();
                        let old_to = bx
                            .split("<a:To s:mustUnderstand=\"1\">")
                            .nth(1)
                            .and_then(|r| r.split("</a:To>").next());
                        if let Some(old) = old_to {
                            assert_eq!(ax, &bx.replace(old, target), "{name}: only To changes");
                            rewritten += 1;
                        } else {
                            assert_eq!(ax, bx);
                        }
                        // same session strings: the tables are forwarded as they were
                        assert_eq!(a.strings, b.strings);
                    }
                    _ => assert_eq!(a.value, b.value),
                }
            }
            assert_eq!(stats.rewritten, rewritten as u64, "{name}");
            assert!(stats.messages >= stats.rewritten);
            // byte-by-byte feeding gives the same bytes
            assert_eq!(run(&input, target, 1).0, out, "{name}: split-invariant");
            assert_eq!(run(&input, target, 7).0, out, "{name}: split-invariant");
        }
    }
}

#[test]
fn envelopes_already_addressed_right_pass_byte_exact() {
    let cap = capture("tcp-3calls.jsonl");
    let input = cap.connections[0].stream(Dir::C2S);
    let entries = c2s_transcript(input.clone());
    let to = entries
        .iter()
        .find_map(|e| {
            e.xml
                .as_ref()?
                .split("<a:To s:mustUnderstand=\"1\">")
                .nth(1)?
                .split("</a:To>")
                .next()
                .map(str::to_owned)
        })
        .unwrap();
    let via = entries
        .iter()
        .find(|e| e.record == "Via")
        .unwrap()
        .value
        .clone()
        .unwrap();
    let (out, stats) = run(&input, &to, usize::MAX);
    assert_eq!(stats.rewritten, 0);
    // only the Via record differs
    let expected: Vec<u8> = {
        let s = String::from_utf8_lossy(&input).into_owned();
        assert!(s.contains(&via));
        let mut v = Vec::new();
        let at = input
            .windows(via.len())
            .position(|w| w == via.as_bytes())
            .unwrap();
        v.extend_from_slice(&input[..at - 1]);
        v.push(to.len() as u8);
        v.extend_from_slice(to.as_bytes());
        v.extend_from_slice(&input[at + via.len()..]);
        v
    };
    assert_eq!(out, expected);
}

#[test]
fn upgrades_and_foreign_encodings_are_refused_with_the_right_fault() {
    use hyrelay_nmf::FaultCode;
    let tls = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/nbfx/nmf/nmf-upgrade-tls.c2s.bin"),
    )
    .unwrap();
    let mut ib = Inbound::new(InboundConfig::new("net.tcp://127.0.0.1:1/x"));
    let err = ib.feed(&tls).unwrap_err();
    assert_eq!(err.fault(), Some(FaultCode::UpgradeInvalid), "{err}");
    assert!(err.to_string().contains("SecurityMode.None"));
    // text encoding 0x03
    let pre = [
        0x00, 1, 0, 0x01, 0x02, 0x02, 0x05, b'n', b'e', b't', b':', b'x', 0x03, 0x03,
    ];
    let mut ib = Inbound::new(InboundConfig::new("net.tcp://127.0.0.1:1/x"));
    let err = ib.feed(&pre).unwrap_err();
    assert_eq!(err.fault(), Some(FaultCode::ContentTypeInvalid));
    // oversize envelope: refused on the size prefix
    let mut cfg = InboundConfig::new("net.tcp://127.0.0.1:1/x");
    cfg.limits.max_message_size = 1000;
    let mut ib = Inbound::new(cfg);
    let mut big = vec![
        0x00, 1, 0, 0x01, 0x02, 0x02, 0x05, b'n', b'e', b't', b':', b'x', 0x03, 0x08, 0x0c, 0x06,
    ];
    hyrelay_nmf::encode_size(5000, &mut big);
    let err = ib.feed(&big).unwrap_err();
    assert_eq!(
        err.fault(),
        Some(FaultCode::MaxMessageSizeExceeded),
        "{err}"
    );
}

#[test]
fn via_paths_compare_like_dotnet() {
    assert_eq!(
        hyrelay_wcf::via_path("net.tcp://h:9000/CreditCheck/"),
        "/creditcheck"
    );
    assert_eq!(hyrelay_wcf::via_path("net.tcp://h:9000"), "/");
    assert_eq!(hyrelay_wcf::via_path("net.tcp://h/a/B?x=1"), "/a/b");
}

/// A legacy NetTcpRelay client's keep-alive `Ping` (Action `Ping`, body `Ping` in the relay's
/// connect namespace) is dropped before a plain WCF service sees it; the strings it added to
/// the session dictionary reach the service with the next message, so that message decodes
/// on the service's side exactly as the client wrote it.
#[test]
fn relay_pings_are_dropped_and_their_strings_carried_to_the_next_message() {
    use hyrelay_nbfx::{
        read_session_message, records_to_xml, write_session_message, xml_to_session_message,
        Dictionaries, EncodeOptions, Limits as XLimits, SessionDictionary, XmlOptions,
    };
    use hyrelay_nmf::{encode_record, Record};
    const CONNECT: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect";
    let env = |action: &str, to: &str, body: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">{action}</a:Action><a:To s:mustUnderstand="1">{to}</a:To></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        )
    };
    let via = "sb://contoso.servicebus.windows.net/creditcheck";
    let target = "net.tcp://127.0.0.1:8000/CreditCheck";
    let ping = env("Ping", via, &format!(r#"<Ping xmlns="{CONNECT}"/>"#));
    let call = env(
        "urn:credit/Check",
        via,
        &format!(r#"<Check xmlns="{CONNECT}"><Ping>still here</Ping></Check>"#),
    );
    let mut client = SessionDictionary::new(1 << 20);
    let mut stream = Vec::new();
    for r in [
        Record::Version { major: 1, minor: 0 },
        Record::Mode(2),
        Record::Via(via.into()),
        Record::KnownEncoding(8),
        Record::PreambleEnd,
    ] {
        encode_record(&r, &mut stream);
    }
    let mut tables = Vec::new();
    for xml in [&ping, &call, &ping] {
        let m = xml_to_session_message(xml, &mut client, &EncodeOptions::default()).unwrap();
        tables.push(m.table.clone());
        let mut payload = Vec::new();
        write_session_message(&m, &mut payload).unwrap();
        encode_record(&Record::SizedEnvelope(payload), &mut stream);
    }
    assert!(
        tables[0].iter().any(|t| t == CONNECT) && !tables[1].iter().any(|t| t == CONNECT),
        "the call relies on the ping's strings: {tables:?}"
    );
    for chunk in [1, 7, 4096] {
        let (out, stats) = run(&stream, target, chunk);
        assert_eq!(stats.pings_dropped, 2);
        let envelopes: Vec<Vec<u8>> = hyrelay_nmf::decode_all(&out, hyrelay_nmf::Limits::default())
            .unwrap()
            .0
            .into_iter()
            .filter_map(|r| match r {
                Record::SizedEnvelope(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(envelopes.len(), 1, "only the call reaches the service");
        let mut service = SessionDictionary::new(1 << 20);
        let m = read_session_message(&envelopes[0], &mut service, &XLimits::default()).unwrap();
        assert_eq!(
            m.table,
            [tables[0].clone(), tables[1].clone()].concat(),
            "the ping's strings come first, with the call's"
        );
        let xml = records_to_xml(
            &m.records,
            Dictionaries::with_session(&service),
            &XmlOptions::default(),
        )
        .unwrap();
        assert!(
            xml.contains("<Ping>still here</Ping>") && xml.contains(CONNECT),
            "{xml}"
        );
        assert!(xml.contains(&format!(">{target}</a:To>")), "{xml}");
    }
}

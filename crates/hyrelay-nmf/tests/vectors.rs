//! Framing tests driven by `fixtures/nbfx/nmf`, `fixtures/nbfx/malformed` and the Mono
//! captures in `fixtures/nbfx/mono-captures`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyrelay_nmf::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nbfx")
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every framing stream vector (`*.c2s.bin` / `*.s2c.bin`) in `nmf/`.
fn streams() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(fixtures().join("nmf"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("2c.bin") || n.ends_with("2s.bin"))
        .filter(|n| n.contains(".c2s.") || n.contains(".s2c."))
        .map(|n| n.trim_end_matches(".bin").to_owned())
        .collect();
    v.sort();
    v
}

fn big() -> Limits {
    Limits {
        max_message_size: 1 << 20,
        ..Limits::default()
    }
}

/// Decode with one `feed` per chunk of `sizes` (cycled), collecting records and their
/// starting offsets.
fn decode_split(data: &[u8], split: &dyn Fn(usize) -> usize) -> Result<Vec<(u64, Record)>, Error> {
    let mut d = Decoder::new(big());
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    loop {
        loop {
            let off = d.offset();
            match d.next_record()? {
                Some(r) => out.push((off, r)),
                None => break,
            }
        }
        if pos >= data.len() {
            break;
        }
        let n = split(i).max(1).min(data.len() - pos);
        d.feed(&data[pos..pos + n]);
        pos += n;
        i += 1;
    }
    d.finish()?;
    Ok(out)
}

#[test]
fn streams_decode_identically_for_every_split_and_reencode() {
    let names = streams();
    assert!(names.len() >= 14, "{names:?}");
    for n in &names {
        let data = read(&format!("nmf/{n}.bin"));
        let whole = decode_split(&data, &|_| usize::MAX).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(!whole.is_empty(), "{n}");
        let one = decode_split(&data, &|_| 1).unwrap();
        assert_eq!(one, whole, "{n}: byte at a time");
        for cut in 1..data.len() {
            let two = decode_split(&data, &|i| if i == 0 { cut } else { usize::MAX }).unwrap();
            assert_eq!(two, whole, "{n}: split at {cut}");
        }
        let recs: Vec<Record> = whole.into_iter().map(|(_, r)| r).collect();
        assert_eq!(encode_records(&recs), data, "{n}: re-encode");
    }
}

/// Offsets and type bytes from the `.txt` listings.
#[test]
fn streams_match_their_listings() {
    for n in streams() {
        let p = fixtures().join(format!("nmf/{n}.txt"));
        let Ok(txt) = fs::read_to_string(&p) else {
            continue;
        };
        let expected: Vec<(u64, u8)> = txt
            .lines()
            .filter_map(|l| {
                let l = l.strip_prefix('@')?;
                let mut it = l.split_whitespace();
                let off = it.next()?.parse().ok()?;
                let ty = u8::from_str_radix(it.next()?, 16).ok()?;
                Some((off, ty))
            })
            .collect();
        let data = read(&format!("nmf/{n}.bin"));
        let got: Vec<(u64, u8)> = decode_split(&data, &|_| usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|(_, r)| !matches!(r, Record::UnsizedChunk(_) | Record::UnsizedEnvelopeEnd))
            .map(|(off, _)| (off, data[off as usize]))
            .collect();
        assert_eq!(got, expected, "{n}");
    }
}

#[test]
fn every_prefix_is_need_more_or_error_never_panic() {
    let mut all: Vec<(String, Vec<u8>)> = streams()
        .into_iter()
        .map(|n| {
            let d = read(&format!("nmf/{n}.bin"));
            (n, d)
        })
        .collect();
    for m in [
        "bad-nmf-mode-5.c2s",
        "bad-nmf-size-5byte-overflow.c2s",
        "bad-nmf-unsized-in-duplex.c2s",
        "bad-nmf-version-2.c2s",
        "bad-nmf-via-not-uri.c2s",
        "bad-nmf-http-instead.s2c",
    ] {
        all.push((m.into(), read(&format!("malformed/{m}.bin"))));
    }
    for (n, data) in &all {
        for cut in 0..data.len() {
            // Either a clean error, or records so far and an incomplete tail at finish().
            if let Ok((recs, stop)) = decode_all(&data[..cut], big()) {
                assert_eq!(encode_records(&recs).len() as u64, stop, "{n} cut {cut}");
            }
        }
    }
}

#[test]
fn fault_vectors_carry_standard_uris() {
    for (n, code) in [
        (
            "nmf-fault-endpointnotfound.s2c",
            FaultCode::EndpointNotFound,
        ),
        (
            "nmf-fault-contenttypeinvalid.s2c",
            FaultCode::ContentTypeInvalid,
        ),
        (
            "nmf-fault-maxmessagesize.s2c",
            FaultCode::MaxMessageSizeExceeded,
        ),
    ] {
        let data = read(&format!("nmf/{n}.bin"));
        let (recs, _) = decode_all(&data, Limits::default()).unwrap();
        assert_eq!(recs, vec![Record::Fault(code.uri())], "{n}");
        let mut c = client(Mode::Duplex, None);
        c.feed(&data);
        assert_eq!(
            c.poll_event().unwrap(),
            Some(ClientEvent::Fault {
                uri: code.uri(),
                code: Some(code)
            })
        );
    }
    assert_eq!(
        FaultCode::from_uri("http://schemas.microsoft.com/ws/2006/05/framing/faults/ViaNotFound"),
        None
    );
}

fn server(policy: ServerPolicy, limits: Limits) -> ServerSession {
    let mut s = ServerSession::new(limits, policy);
    s.start(Duration::ZERO);
    s
}

fn client(mode: Mode, upgrade: Option<&str>) -> ClientSession {
    let mut c = ClientSession::new(
        ClientConfig {
            mode,
            via: "net.tcp://localhost:8080/svc".into(),
            encoding: Encoding::Known(ENCODING_BINARY_SESSION),
            upgrade: upgrade.map(str::to_owned),
        },
        Limits::default(),
    );
    c.start().unwrap();
    c
}

fn drain_server(s: &mut ServerSession) -> Result<Vec<ServerEvent>, Error> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_event()? {
        v.push(e);
    }
    Ok(v)
}

#[test]
fn server_duplex_session_vector() {
    let c2s = read("nmf/nmf-duplex-session-localhost8080.c2s.bin");
    let mut s = server(ServerPolicy::default(), Limits::default());
    s.feed(&c2s); // everything at once: envelopes pipelined behind PreambleEnd
    let ev = drain_server(&mut s).unwrap();
    let [ServerEvent::PreambleComplete(p)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(p.mode, Mode::Duplex);
    assert_eq!(p.via, "net.tcp://localhost:8080/svc");
    assert_eq!(p.encoding, Encoding::Known(8));
    s.accept_preamble().unwrap();
    let ev = drain_server(&mut s).unwrap();
    let sizes: Vec<usize> = ev
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Message(m) => Some(m.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [151, 77, 86]);
    assert_eq!(ev.last(), Some(&ServerEvent::End));
    assert_eq!(read("nbfse/nbfse-session-msg1.bin").len(), 151);
    s.send_end().unwrap();
    assert_eq!(
        s.take_output(),
        read("nmf/nmf-duplex-session-localhost8080.s2c.bin")
    );
    assert!(s.feed_eof().unwrap().is_empty());
}

#[test]
fn client_duplex_preamble_matches_vector() {
    let mut c = client(Mode::Duplex, None);
    assert_eq!(
        c.take_output(),
        read("nmf/nmf-duplex-preamble-localhost8080.c2s.bin")
    );
    assert!(c.send_message(b"x").is_err(), "no message before the ack");
    c.feed(&[0x0B, 0x06, 0x02, b'h', b'i', 0x07]);
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::PreambleAck));
    assert_eq!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Message(b"hi".to_vec()))
    );
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::End));
    assert_eq!(c.poll_event().unwrap(), None);
    c.feed_eof().unwrap();
}

#[test]
fn client_and_server_talk_in_every_mode() {
    for mode in [
        Mode::SingletonUnsized,
        Mode::Duplex,
        Mode::Simplex,
        Mode::SingletonSized,
    ] {
        let policy = ServerPolicy {
            modes: vec![
                Mode::SingletonUnsized,
                Mode::Duplex,
                Mode::Simplex,
                Mode::SingletonSized,
            ],
            upgrades: vec![],
        };
        let mut s = server(policy, Limits::default());
        let mut c = client(mode, None);
        s.feed(&c.take_output());
        let ev = drain_server(&mut s).unwrap();
        assert!(
            matches!(&ev[..], [ServerEvent::PreambleComplete(p)] if p.mode == mode),
            "{mode:?}"
        );
        s.accept_preamble().unwrap();
        let ack = s.take_output();
        c.feed(&ack);
        if mode.has_preamble_ack() {
            assert_eq!(ack, [0x0B]);
            assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::PreambleAck));
        } else {
            assert!(ack.is_empty());
        }
        c.send_message(b"request").unwrap();
        if mode != Mode::SingletonSized {
            c.send_end().unwrap();
        }
        s.feed(&c.take_output());
        let mut ev = drain_server(&mut s).unwrap();
        if mode == Mode::SingletonSized {
            ev.extend(s.feed_eof().unwrap());
            assert_eq!(
                ev,
                [
                    ServerEvent::MessageBytes(b"request".to_vec()),
                    ServerEvent::End
                ]
            );
            continue;
        }
        assert_eq!(
            ev,
            [ServerEvent::Message(b"request".to_vec()), ServerEvent::End],
            "{mode:?}"
        );
        if mode == Mode::Simplex {
            assert!(s.send_message(b"no").is_err());
            continue;
        }
        s.send_message(b"reply").unwrap();
        s.send_end().unwrap();
        c.feed(&s.take_output());
        assert_eq!(
            c.poll_event().unwrap(),
            Some(ClientEvent::Message(b"reply".to_vec()))
        );
        assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::End));
        // Connection reuse: a new framing session on the same connection.
        c.start().unwrap();
        s.feed(&c.take_output());
        assert!(matches!(
            &drain_server(&mut s).unwrap()[..],
            [ServerEvent::PreambleComplete(_)]
        ));
    }
}

#[test]
fn mono_singleton_streamed_capture() {
    let c2s = read("nmf/nmf-mono-singleton-streamed.c2s.bin");
    let s2c = read("nmf/nmf-mono-singleton-streamed.s2c.bin");
    let mut s = server(ServerPolicy::default(), Limits::default());
    for b in &c2s {
        s.feed(&[*b]);
        for e in drain_server(&mut s).unwrap() {
            if let ServerEvent::PreambleComplete(p) = e {
                assert_eq!(p.mode, Mode::SingletonUnsized);
                assert_eq!(p.encoding, Encoding::Known(ENCODING_BINARY));
                s.accept_preamble().unwrap();
            } else if let ServerEvent::Message(m) = e {
                assert_eq!(m, read("nmf/nmf-mono-singleton-streamed-c2s-msg1.bin"));
                s.send_message(&read("nmf/nmf-mono-singleton-streamed-s2c-msg1.bin"))
                    .unwrap();
                s.send_end().unwrap();
            }
        }
    }
    assert_eq!(s.take_output(), s2c);
    // The client side of the same exchange.
    let mut c = ClientSession::new(
        ClientConfig {
            mode: Mode::SingletonUnsized,
            via: "net.tcp://127.0.0.1:18606/CreditCheck/Streamed".into(),
            encoding: Encoding::Known(ENCODING_BINARY),
            upgrade: None,
        },
        Limits::default(),
    );
    c.start().unwrap();
    c.feed(&s2c);
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::PreambleAck));
    c.send_message(&read("nmf/nmf-mono-singleton-streamed-c2s-msg1.bin"))
        .unwrap();
    c.send_end().unwrap();
    assert_eq!(c.take_output(), c2s);
    assert_eq!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Message(read(
            "nmf/nmf-mono-singleton-streamed-s2c-msg1.bin"
        )))
    );
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::End));
}

#[test]
fn upgrade_tls_flow() {
    let c2s = read("nmf/nmf-upgrade-tls.c2s.bin");
    let mut c = client(Mode::Duplex, Some(UPGRADE_TLS));
    let mut s = server(
        ServerPolicy {
            upgrades: vec![UPGRADE_TLS.into()],
            ..ServerPolicy::default()
        },
        Limits::default(),
    );
    let pre = c.take_output();
    assert_eq!(&pre[pre.len() - 21..], &c2s[c2s.len() - 21..]);
    // The client's TLS ClientHello follows the request immediately.
    s.feed(&pre);
    s.feed(&[0x16, 0x03, 0x01]);
    assert_eq!(
        drain_server(&mut s).unwrap(),
        [ServerEvent::UpgradeRequested(UPGRADE_TLS.into())]
    );
    s.accept_upgrade().unwrap();
    let resp = s.take_output();
    assert_eq!(resp, read("nmf/nmf-upgrade-tls.s2c.bin"));
    assert_eq!(s.take_upgrade_bytes(), [0x16, 0x03, 0x01]);
    c.feed(&resp);
    c.feed(&[0x16, 0x03, 0x03]); // ServerHello: opaque, not framing
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::UpgradeAccepted));
    assert_eq!(c.poll_event().unwrap(), None);
    assert_eq!(c.take_upgrade_bytes(), [0x16, 0x03, 0x03]);
    // TLS established: framing continues inside it.
    s.upgrade_complete().unwrap();
    c.upgrade_complete().unwrap();
    s.feed(&c.take_output());
    let ev = drain_server(&mut s).unwrap();
    assert!(matches!(&ev[..], [ServerEvent::PreambleComplete(p)] if p.upgrades == [UPGRADE_TLS]));
    s.accept_preamble().unwrap();
    c.feed(&s.take_output());
    assert_eq!(c.poll_event().unwrap(), Some(ClientEvent::PreambleAck));
}

#[test]
fn negotiate_preamble_and_upgrade_refused() {
    let mut s = server(ServerPolicy::default(), Limits::default());
    let mut c = client(Mode::Duplex, Some(UPGRADE_NEGOTIATE));
    s.feed(&c.take_output());
    let err = drain_server(&mut s).unwrap_err();
    assert!(matches!(err, Error::UpgradeInvalid { .. }), "{err}");
    let out = s.take_output();
    assert_eq!(
        decode_all(&out, Limits::default()).unwrap().0,
        [Record::Fault(FaultCode::UpgradeInvalid.uri())]
    );
    c.feed(&out);
    assert!(matches!(
        c.poll_event().unwrap(),
        Some(ClientEvent::Fault {
            code: Some(FaultCode::UpgradeInvalid),
            ..
        })
    ));
}

fn server_result(data: &[u8], limits: Limits) -> (Result<Vec<ServerEvent>, Error>, Vec<u8>) {
    let mut s = server(ServerPolicy::default(), limits);
    s.feed(data);
    let mut all = Vec::new();
    let r = loop {
        match s.poll_event() {
            Ok(Some(ServerEvent::PreambleComplete(p))) => {
                s.accept_preamble().unwrap();
                all.push(ServerEvent::PreambleComplete(p));
            }
            Ok(Some(e)) => all.push(e),
            Ok(None) => break Ok(all),
            Err(e) => break Err(e),
        }
    };
    let out = s.take_output();
    (r, out)
}

fn fault_of(out: &[u8]) -> Option<FaultCode> {
    let (recs, _) = decode_all(out, Limits::default()).ok()?;
    match recs.last()? {
        Record::Fault(u) => FaultCode::from_uri(u),
        _ => None,
    }
}

#[test]
fn malformed_streams_get_fault_or_abort() {
    let l = Limits::default();
    let (r, out) = server_result(&read("malformed/bad-nmf-version-2.c2s.bin"), l);
    assert!(matches!(
        r,
        Err(Error::UnsupportedVersion {
            offset: 0,
            major: 2,
            ..
        })
    ));
    assert_eq!(fault_of(&out), Some(FaultCode::UnsupportedVersion));

    let (r, out) = server_result(&read("malformed/bad-nmf-mode-5.c2s.bin"), l);
    assert!(matches!(
        r,
        Err(Error::UnsupportedMode { offset: 3, mode: 5 })
    ));
    assert_eq!(fault_of(&out), Some(FaultCode::UnsupportedMode));

    let (r, out) = server_result(&read("malformed/bad-nmf-via-not-uri.c2s.bin"), l);
    assert!(matches!(r, Err(Error::InvalidVia { offset: 5 })), "{r:?}");
    assert!(out.is_empty(), "abort without fault");

    let (r, out) = server_result(&read("malformed/bad-nmf-size-5byte-overflow.c2s.bin"), l);
    assert!(matches!(r, Err(Error::InvalidSize { offset: 39 })), "{r:?}");
    assert_eq!(out, [0x0B], "ack only, then abort");

    let (r, out) = server_result(&read("malformed/bad-nmf-unsized-in-duplex.c2s.bin"), l);
    assert!(
        matches!(r, Err(Error::UnexpectedRecord { offset: 38, .. })),
        "{r:?}"
    );
    assert_eq!(out, [0x0B]);

    // Simplex and singleton-sized are refused by the default (TCP listener) policy.
    let mut c = client(Mode::Simplex, None);
    let (r, out) = server_result(&c.take_output(), l);
    assert!(matches!(r, Err(Error::UnsupportedMode { mode: 3, .. })));
    assert_eq!(fault_of(&out), Some(FaultCode::UnsupportedMode));
}

#[test]
fn client_detects_http() {
    let mut c = client(Mode::Duplex, None);
    c.feed(&read("malformed/bad-nmf-http-instead.s2c.bin"));
    assert_eq!(c.poll_event(), Err(Error::ServerIsHttp { offset: 0 }));
}

#[test]
fn size_limits_are_checked_before_the_body() {
    // SizedEnvelope above the limit: fault as soon as the size prefix is in.
    let limits = Limits {
        max_message_size: 100,
        ..Limits::default()
    };
    let mut c = client(Mode::Duplex, None);
    let mut s = server(ServerPolicy::default(), limits);
    s.feed(&c.take_output());
    drain_server(&mut s).unwrap();
    s.accept_preamble().unwrap();
    assert_eq!(s.take_output(), [0x0B]);
    s.feed(&[0x06, 0x97, 0x01]); // size 151, no body yet
    let err = drain_server(&mut s).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 151,
                max: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        s.take_output(),
        read("nmf/nmf-fault-maxmessagesize.s2c.bin")
    );

    // Via longer than 2048 bytes.
    let long_via = format!("net.tcp://h/{}", "a".repeat(2040));
    let mut pre = vec![0, 1, 0, 1, 2];
    encode_record(&Record::Via(long_via), &mut Vec::new());
    let mut tmp = Vec::new();
    encode_record(
        &Record::Via(format!("net.tcp://h/{}", "a".repeat(2040))),
        &mut tmp,
    );
    pre.extend_from_slice(&tmp[..6]); // type, 2-byte size, 3 bytes: size checked first
    let (r, out) = server_result(&pre, Limits::default());
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                what: "via",
                size: 2052,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(fault_of(&out), Some(FaultCode::ViaTooLong));

    // Content type longer than 256 bytes.
    let mut pre = Vec::new();
    for r in [
        Record::Version { major: 1, minor: 0 },
        Record::Mode(2),
        Record::Via("net.tcp://h/x".into()),
        Record::ExtensibleEncoding("x".repeat(257)),
    ] {
        encode_record(&r, &mut pre);
    }
    let (r, out) = server_result(&pre, Limits::default());
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                what: "content type",
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(fault_of(&out), Some(FaultCode::ContentTypeTooLong));

    // Exactly at the limits is fine.
    let mut pre = Vec::new();
    for r in [
        Record::Version { major: 1, minor: 0 },
        Record::Mode(2),
        Record::Via(format!("net.tcp://h/{}", "a".repeat(2048 - 12))),
        Record::ExtensibleEncoding("x".repeat(256)),
        Record::PreambleEnd,
    ] {
        encode_record(&r, &mut pre);
    }
    let (r, _) = server_result(&pre, Limits::default());
    assert!(matches!(
        &r.unwrap()[..],
        [ServerEvent::PreambleComplete(_)]
    ));
}

#[test]
fn preamble_timeout_uses_the_passed_in_clock() {
    let mut s = ServerSession::new(Limits::default(), ServerPolicy::default());
    s.start(Duration::from_secs(100));
    s.feed(&[0x00, 0x01, 0x00, 0x01]);
    drain_server(&mut s).unwrap();
    assert_eq!(s.preamble_deadline(), Some(Duration::from_secs(130)));
    s.check_timeout(Duration::from_secs(129)).unwrap();
    let err = s.check_timeout(Duration::from_secs(130)).unwrap_err();
    assert!(matches!(err, Error::PreambleTimeout { offset: 3 }), "{err}");
    assert!(s.poll_event().is_err());
    // Once established, the timer no longer applies.
    let mut s = server(ServerPolicy::default(), Limits::default());
    let mut c = client(Mode::Duplex, None);
    s.feed(&c.take_output());
    drain_server(&mut s).unwrap();
    s.accept_preamble().unwrap();
    s.check_timeout(Duration::from_secs(3600)).unwrap();
}

#[test]
fn eof_handling() {
    let mut s = server(ServerPolicy::default(), Limits::default());
    s.feed(&[0x00, 0x01]);
    drain_server(&mut s).unwrap();
    assert!(matches!(
        s.feed_eof(),
        Err(Error::PrematureEof { offset: 2 })
    ));
    // Mono's server never sends End: EOF after our End is clean for the client.
    let mut c = client(Mode::Duplex, None);
    c.feed(&[0x0B]);
    c.poll_event().unwrap();
    c.send_end().unwrap();
    c.feed_eof().unwrap();
    let mut c = client(Mode::Duplex, None);
    c.feed(&[0x0B]);
    c.poll_event().unwrap();
    assert!(c.feed_eof().is_err());
}

/// Replays the Mono harness captures (JSON lines with hex data per direction) through the
/// decoder and decodes every envelope with the NBFX crate, session tables per direction.
#[test]
fn mono_captures_replay_through_framing_and_nbfx() {
    let dir = fixtures().join("mono-captures");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    assert!(files.len() >= 7);
    let mut messages = 0;
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        // conn -> (c2s bytes, s2c bytes)
        let mut conns: std::collections::BTreeMap<u64, (Vec<u8>, Vec<u8>)> = Default::default();
        for line in text.lines() {
            let field = |k: &str| -> Option<&str> {
                let i = line.find(&format!("\"{k}\": "))? + k.len() + 4;
                let rest = &line[i..];
                let rest = rest.strip_prefix('"').unwrap_or(rest);
                let end = rest.find(['"', ',', '}']).unwrap_or(rest.len());
                Some(&rest[..end])
            };
            if field("ev") != Some("data") {
                continue;
            }
            let conn: u64 = field("conn").unwrap().parse().unwrap();
            let hex = field("hex").unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let e = conns.entry(conn).or_default();
            if field("dir") == Some("c2s") {
                e.0.extend(bytes)
            } else {
                e.1.extend(bytes)
            }
        }
        for (conn, (c2s, s2c)) in conns {
            // The encoding is announced in the client's preamble and applies both ways.
            let session_encoding = decode_all(&c2s, big())
                .map(|(r, _)| r.contains(&Record::KnownEncoding(ENCODING_BINARY_SESSION)))
                .unwrap_or(false);
            for (dir, data) in [("c2s", &c2s), ("s2c", &s2c)] {
                let (recs, _) =
                    decode_all(data, big()).unwrap_or_else(|e| panic!("{f:?} {conn} {dir}: {e}"));
                assert_eq!(encode_records(&recs), *data);
                let mut session = hyrelay_nbfx::SessionDictionary::default();
                let nbfx_limits = hyrelay_nbfx::Limits::buffered(1 << 20);
                let mut unsized_msg = Vec::new();
                for r in &recs {
                    let payload = match r {
                        Record::SizedEnvelope(p) => p.clone(),
                        Record::UnsizedChunk(c) => {
                            unsized_msg.extend_from_slice(c);
                            continue;
                        }
                        Record::UnsizedEnvelopeEnd => std::mem::take(&mut unsized_msg),
                        _ => continue,
                    };
                    let ok = if session_encoding {
                        hyrelay_nbfx::read_session_message(&payload, &mut session, &nbfx_limits)
                            .map(|_| ())
                    } else {
                        hyrelay_nbfx::read_records(
                            &payload,
                            hyrelay_nbfx::Dictionaries::static_only(),
                            &nbfx_limits,
                        )
                        .map(|_| ())
                    };
                    ok.unwrap_or_else(|e| panic!("{f:?} conn {conn} {dir}: {e}"));
                    messages += 1;
                }
            }
        }
    }
    assert!(messages >= 20, "{messages}");
}

//! Reassembly properties over synthetic pcap/pcapng files: whatever the segmentation,
//! reordering and retransmission, each direction's bytes come out exactly as sent.

use hyrelay_capture::{parse, Dir, Error, Format, Limits};
use proptest::prelude::*;

struct Pkt {
    from_client: bool,
    seq: u32,
    flags: u8,
    payload: Vec<u8>,
}

const CLIENT: ([u8; 4], u16) = ([127, 0, 0, 1], 50123);
const SERVER: ([u8; 4], u16) = ([127, 0, 0, 2], 8000);

fn frame(p: &Pkt) -> Vec<u8> {
    let (src, dst) = if p.from_client {
        (CLIENT, SERVER)
    } else {
        (SERVER, CLIENT)
    };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 20 + p.payload.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&src.0);
    ip.extend_from_slice(&dst.0);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&p.seq.to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&[0x50, p.flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(&p.payload);
    f
}

fn pcap(pkts: &[Pkt]) -> Vec<u8> {
    let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, p) in pkts.iter().enumerate() {
        let f = frame(p);
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

fn block(btype: u32, body: &[u8]) -> Vec<u8> {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    let mut b = btype.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend(std::iter::repeat(0).take(pad));
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn pcapng(pkts: &[Pkt]) -> Vec<u8> {
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut out = block(0x0A0D_0D0A, &shb);
    let mut idb = vec![1, 0, 0, 0];
    idb.extend_from_slice(&65535u32.to_le_bytes());
    // if_tsresol = 9 (nanoseconds), then end of options
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(block(1, &idb));
    for (i, p) in pkts.iter().enumerate() {
        let f = frame(p);
        let ts = (1_700_000_000u64 + i as u64) * 1_000_000_000;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(&f);
        out.extend(block(6, &epb));
    }
    out
}

/// Split `data` at `cuts`, starting at sequence number `isn + 1`.
fn segments(data: &[u8], cuts: &[usize], isn: u32, from_client: bool) -> Vec<Pkt> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Pkt {
            from_client,
            seq: isn.wrapping_add(1).wrapping_add(w[0] as u32),
            flags: 0x18,
            payload: data[w[0]..w[1]].to_vec(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn reassembles_whatever_the_segmentation(
        c2s in proptest::collection::vec(any::<u8>(), 0..3000),
        s2c in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts_a in proptest::collection::vec(any::<usize>(), 0..12),
        cuts_b in proptest::collection::vec(any::<usize>(), 0..12),
        isn_a in any::<u32>(),
        isn_b in any::<u32>(),
        swaps in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..6),
        dups in proptest::collection::vec(any::<usize>(), 0..4),
        ng in any::<bool>(),
    ) {
        let mut pkts = vec![
            Pkt { from_client: true, seq: isn_a, flags: 0x02, payload: vec![] },
            Pkt { from_client: false, seq: isn_b, flags: 0x12, payload: vec![] },
        ];
        let mut data = segments(&c2s, &cuts_a, isn_a, true);
        data.extend(segments(&s2c, &cuts_b, isn_b, false));
        // retransmissions and reordering
        for d in &dups {
            if !data.is_empty() {
                let p = &data[d % data.len()];
                let copy = Pkt { from_client: p.from_client, seq: p.seq, flags: p.flags, payload: p.payload.clone() };
                data.push(copy);
            }
        }
        for (i, j) in &swaps {
            if !data.is_empty() {
                let n = data.len();
                data.swap(i % n, j % n);
            }
        }
        pkts.extend(data);
        pkts.push(Pkt { from_client: true, seq: isn_a.wrapping_add(1).wrapping_add(c2s.len() as u32), flags: 0x11, payload: vec![] });
        let file = if ng { pcapng(&pkts) } else { pcap(&pkts) };
        let cap = parse(&file, &Limits::default()).unwrap();
        prop_assert_eq!(cap.format, if ng { Format::Pcapng } else { Format::Pcap });
        prop_assert_eq!(cap.connections.len(), 1);
        let c = &cap.connections[0];
        prop_assert_eq!(&c.client, "127.0.0.1:50123");
        prop_assert_eq!(c.stream(Dir::C2S), c2s);
        prop_assert_eq!(c.stream(Dir::S2C), s2c);
        prop_assert!(c.gaps.is_empty());
        prop_assert!(c.eof[0]);
    }

    #[test]
    fn every_prefix_is_an_error_or_a_shorter_capture(cut in 0usize..4000, ng in any::<bool>()) {
        let payload: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let pkts = vec![
            Pkt { from_client: true, seq: 7, flags: 0x02, payload: vec![] },
            Pkt { from_client: true, seq: 8, flags: 0x18, payload: payload.clone() },
            Pkt { from_client: false, seq: 90, flags: 0x18, payload: payload.clone() },
        ];
        let file = if ng { pcapng(&pkts) } else { pcap(&pkts) };
        let cut = cut % (file.len() + 1);
        match parse(&file[..cut], &Limits::default()) {
            Ok(cap) => {
                for c in &cap.connections {
                    prop_assert!(payload.starts_with(&c.stream(Dir::C2S)));
                }
            }
            Err(e) => {
                let ok = matches!(e, Error::Malformed { .. } | Error::UnknownFormat(_));
                prop_assert!(ok, "unexpected error {}", e);
            }
        }
    }
}

#[test]
fn a_missing_segment_is_a_gap_not_glued_over() {
    let pkts = vec![
        Pkt {
            from_client: true,
            seq: 99,
            flags: 0x02,
            payload: vec![],
        },
        Pkt {
            from_client: true,
            seq: 100,
            flags: 0x18,
            payload: b"abc".to_vec(),
        },
        Pkt {
            from_client: true,
            seq: 106,
            flags: 0x18,
            payload: b"ghi".to_vec(),
        },
    ];
    let cap = parse(&pcap(&pkts), &Limits::default()).unwrap();
    let c = &cap.connections[0];
    assert_eq!(c.gaps, vec![(Dir::C2S, 3, 3)]);
    assert_eq!(c.stream(Dir::C2S), b"abcghi");
    // The transcript stops at the gap and says so.
    let t = hyrelay_capture::transcript(c, &Default::default());
    assert!(t.iter().any(|e| e.record == "Gap" && e.offset == 3));
}

#[test]
fn out_of_order_bytes_are_bounded() {
    let limits = Limits {
        max_out_of_order_bytes: 1000,
        ..Limits::default()
    };
    let mut pkts = vec![Pkt {
        from_client: true,
        seq: 0,
        flags: 0x02,
        payload: vec![],
    }];
    for i in 0..5u32 {
        pkts.push(Pkt {
            from_client: true,
            seq: 1000 + i * 400,
            flags: 0x18,
            payload: vec![1; 400],
        });
    }
    let err = parse(&pcap(&pkts), &limits).unwrap_err();
    assert!(
        matches!(err, Error::Limit { what, .. } if what.contains("out-of-order")),
        "{err}"
    );
}

#[test]
fn unknown_files_and_link_types_are_named() {
    let err = parse(b"GET / HTTP/1.1\r\n", &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("not a capture file"), "{err}");
    let mut f = pcap(&[]);
    f[20] = 147; // DLT_USER0
    let err = parse(&f, &Limits::default()).unwrap_err();
    assert_eq!(err, Error::LinkType(147));
}

#[test]
fn jsonl_that_lost_bytes_is_refused() {
    let good = "{\"t\":1,\"conn\":1,\"ev\":\"data\",\"dir\":\"c2s\",\"off\":0,\"len\":2,\"hex\":\"0001\"}\n";
    let lost =
        "{\"t\":1,\"conn\":1,\"ev\":\"data\",\"dir\":\"c2s\",\"off\":5,\"len\":1,\"hex\":\"00\"}\n";
    let cap = parse(good.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(cap.connections[0].stream(Dir::C2S), vec![0, 1]);
    let err = parse(format!("{good}{lost}").as_bytes(), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("bytes lost"), "{err}");
}

#[test]
fn a_capture_cut_short_keeps_what_came_before_and_says_where() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/captures/tcp-pcap/capture.pcap");
    let full = std::fs::read(path).unwrap();
    let whole = parse(&full, &Limits::default()).unwrap();
    assert_eq!(whole.cut_short_at, None);
    let cut = parse(&full[..full.len() - 7], &Limits::default()).unwrap();
    let at = cut.cut_short_at.expect("cut noticed") as usize;
    assert!(at < full.len() - 7 && at > 24);
    let a = whole.connections[0].stream(Dir::C2S);
    let b = cut.connections[0].stream(Dir::C2S);
    assert!(a.starts_with(&b) && !b.is_empty());
}

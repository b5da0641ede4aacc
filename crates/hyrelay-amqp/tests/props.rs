//! Property tests: values round-trip; arbitrary bytes never panic the decoder or the
//! connection; a connection sees the same events whatever the input's split.

use std::time::Instant;

use hyrelay_amqp::*;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = hyrelay_amqp::Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        any::<u32>().prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        any::<char>().prop_map(Value::Char),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
        ".{0,40}".prop_map(Value::String),
        "[a-z:.-]{0,30}".prop_map(Value::Symbol),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
            (any::<u64>(), proptest::collection::vec(inner.clone(), 0..6))
                .prop_map(|(c, f)| Value::described(c, f)),
            proptest::collection::vec(any::<u32>(), 1..6)
                .prop_map(|v| Value::Array(v.into_iter().map(Value::Uint).collect())),
            proptest::collection::vec("[a-z]{1,8}", 1..4)
                .prop_map(|v| Value::Array(v.into_iter().map(Value::Symbol).collect())),
        ]
    })
}

fn events_for(chunks: &[&[u8]]) -> (Vec<ConnectionEvent>, Vec<u8>) {
    let now = Instant::now();
    let mut c = ServerConnection::new(ServerConfig::default(), now);
    let mut evs = Vec::new();
    let mut out = Vec::new();
    for ch in chunks {
        c.receive(ch, now);
        evs.extend(c.take_events());
        out.extend(c.take_output());
    }
    (evs, out)
}

/// A listener's opening as a client writes it: SASL EXTERNAL, open, begin, attach.
fn client_bytes() -> Vec<u8> {
    let mut b = b"AMQP\x03\x01\x00\x00".to_vec();
    encode_frame(
        FrameType::Sasl,
        0,
        Some(&Value::described(
            codes::SASL_INIT,
            vec![Value::sym("EXTERNAL")],
        )),
        &[],
        &mut b,
    );
    b.extend_from_slice(b"AMQP\x00\x01\x00\x00");
    encode_frame(
        FrameType::Amqp,
        0,
        Some(&Value::described(
            codes::OPEN,
            vec![
                Value::String("c".into()),
                Value::String("contoso-relay.example".into()),
            ],
        )),
        &[],
        &mut b,
    );
    encode_frame(
        FrameType::Amqp,
        0,
        Some(&Value::described(
            codes::BEGIN,
            vec![
                Value::Null,
                Value::Uint(1),
                Value::Uint(100),
                Value::Uint(100),
            ],
        )),
        &[],
        &mut b,
    );
    let props = Value::Map(vec![(
        Value::sym("com.microsoft:swt"),
        Value::String("SharedAccessSignature sr=x".into()),
    )]);
    let source = Value::described(
        codes::SOURCE,
        vec![Value::String("sb://contoso.example/orders/".into())],
    );
    let mut fields = vec![
        Value::String("RelayLink_1:in".into()),
        Value::Uint(0),
        Value::Bool(true),
    ];
    fields.extend([
        Value::Null,
        Value::Null,
        source,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        props,
    ]);
    encode_frame(
        FrameType::Amqp,
        0,
        Some(&Value::described(codes::ATTACH, fields)),
        &[],
        &mut b,
    );
    encode_frame(FrameType::Amqp, 0, None, &[], &mut b);
    b
}

#[test]
fn a_listener_opening_yields_open_and_attach_with_its_properties() {
    let b = client_bytes();
    let (evs, out) = events_for(&[&b]);
    assert_eq!(
        evs[0],
        ConnectionEvent::Authenticated {
            mechanism: "EXTERNAL".into()
        }
    );
    assert!(
        matches!(&evs[1], ConnectionEvent::Opened { hostname: Some(h), .. } if h == "contoso-relay.example")
    );
    let ConnectionEvent::Attach { attach, .. } = &evs[2] else {
        panic!("{evs:?}")
    };
    assert!(attach.peer_is_receiver);
    assert_eq!(
        attach.address.as_deref(),
        Some("sb://contoso.example/orders/")
    );
    assert_eq!(
        attach.property("com.microsoft:swt").and_then(Value::as_str),
        Some("SharedAccessSignature sr=x")
    );
    // The server spoke both protocol headers, offered its mechanisms, and answered open and begin.
    assert!(out.starts_with(b"AMQP\x03\x01\x00\x00"));
    assert_eq!(out.windows(8).filter(|w| w.starts_with(b"AMQP")).count(), 2);
}

#[test]
fn idle_peers_are_dropped_and_silence_is_filled_with_heartbeats() {
    let t0 = Instant::now();
    let mut c = ServerConnection::new(ServerConfig::default(), t0);
    let b = client_bytes();
    c.receive(&b, t0);
    c.take_output();
    c.take_events();
    c.tick(t0 + std::time::Duration::from_secs(31));
    assert_eq!(
        c.take_output(),
        [0, 0, 0, 8, 2, 0, 0, 0],
        "an empty frame after 30 s of silence"
    );
    c.tick(t0 + std::time::Duration::from_secs(121));
    assert!(c.is_closed());
    assert!(
        matches!(c.take_events().last(), Some(ConnectionEvent::Closed { error: Some(e) }) if e.condition == "amqp:resource-limit-exceeded")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip(v in value()) {
        let mut b = Vec::new();
        encode_value(&v, &mut b);
        let (back, n) = decode_value(&b, &Limits::default()).unwrap();
        prop_assert_eq!(n, b.len());
        prop_assert_eq!(back, v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_value(&b, &Limits::default());
        let mut with_header = b"AMQP\x03\x01\x00\x00".to_vec();
        with_header.extend_from_slice(&b);
        let _ = events_for(&[&with_header]);
    }

    #[test]
    fn every_split_gives_the_same_events(cut in 0usize..400) {
        let b = client_bytes();
        let cut = cut.min(b.len());
        let whole = events_for(&[&b]);
        let split = events_for(&[&b[..cut], &b[cut..]]);
        prop_assert_eq!(whole, split);
    }
}

/// Writes the fuzz seeds (`cargo test -p hyrelay-amqp -- --ignored write_fuzz_seeds`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fuzz-seeds/amqp_connection");
    std::fs::create_dir_all(&dir).unwrap();
    let b = client_bytes();
    for (name, cut) in [("listener-open", 0u8), ("listener-open-split-40", 40)] {
        let mut s = vec![cut];
        s.extend_from_slice(&b);
        std::fs::write(dir.join(name), s).unwrap();
    }
    let mut v = Vec::new();
    encode_value(
        &Value::Map(vec![(
            Value::sym("com.microsoft:swt"),
            Value::String("t".into()),
        )]),
        &mut v,
    );
    let mut s = vec![0x80];
    s.extend_from_slice(&v);
    std::fs::write(dir.join("value-map"), s).unwrap();
}

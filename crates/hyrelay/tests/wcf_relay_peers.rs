//! Clean-room WCF Relay peers in Rust, written from the protocol notes (known.md 5.1 listener
//! registration over AMQP, 5.2 NetTcpRelay, 5.3 probe, 5.4 one-way senders) with the project's
//! codecs only — binary XML (`hyrelay-nbfx`), AMQP 1.0 frames and types (`hyrelay-amqp`), NMF
//! framing (`hyrelay-nmf`), SAS signing (`hyrelay-hc`) — never the relay's own code. Each
//! message is written here as text from the notes. They run against the `hyrelay relay`
//! binary: a NetTcpRelay listener (AMQP link pair, notification, rendezvous over TLS), a
//! NetTcpRelay client, a NetEvent sender and subscriber, a probe client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyrelay_amqp::{
    codes, encode_frame, FrameDecoder, FrameType, Item, Limits, Performative, Value,
};
use hyrelay_nbfx::{
    encode_records, read_records, read_session_message, records_to_xml, write_session_message,
    xml_to_records, xml_to_session_message, Dictionaries, EncodeOptions, SessionDictionary,
    XmlOptions,
};
use hyrelay_nmf::{ClientConfig, ClientEvent, ClientSession, Encoding, Mode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "cnVzdC1jbGVhbi1yb29tLXBlZXJzLWZvci10aGUtcmVsYXk=";
const HOST: &str = "contoso.relay.local";
const CONNECT_NS: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect";
const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA: &str = "http://www.w3.org/2005/08/addressing";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Relay {
    child: Child,
    dir: PathBuf,
    amqp: u16,
    nettcp: u16,
    probe: u16,
    oneway: u16,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port for the relay to bind, taken below the kernel's ephemeral range (32768+):
/// a port from `bind(0)` can be taken by any outgoing connection before the relay binds
/// it. Ports are handed out in order from a per-process start, each checked by binding.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LO: u32 = 15000;
    const HI: u32 = 32000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        LO + (std::process::id().wrapping_mul(2654435761) % (HI - LO)),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..500 {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (LO + (p - LO) % (HI - LO)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LO}-{HI}")
}

fn start_relay() -> Relay {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir =
        std::env::temp_dir().join(format!("hyrelay-rust-peers-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (amqp, nettcp, probe, oneway) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"data_dir = "{d}/data"
[listen]
http = "127.0.0.1:0"
[wcf_relay]
amqp = "127.0.0.1:{amqp}"
nettcp = "127.0.0.1:{nettcp}"
probe = "127.0.0.1:{probe}"
oneway = "127.0.0.1:{oneway}"
[[namespaces]]
name = "contoso"
hosts = ["{HOST}", "127.0.0.1", "localhost"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "{KEY}"
"#,
        d = dir.display()
    );
    let file = dir.join("relay.toml");
    std::fs::write(&file, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyrelay"))
        .args(["relay", "--config"])
        .arg(&file)
        .env("HYRELAY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let l = lines
            .next()
            .expect("relay exited before it was ready")
            .unwrap();
        if l.starts_with("hyrelay ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Relay {
        child,
        dir,
        amqp,
        nettcp,
        probe,
        oneway,
    }
}

impl Relay {
    /// The development CA the relay wrote into its data directory.
    fn ca(&self) -> PathBuf {
        self.dir.join("data").join("ca.pem")
    }
}

fn tls_connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    let cfg = hyrelay_net::tls::client_config(&[ca.to_path_buf()], false).unwrap();
    let mut cfg = (*cfg).clone();
    cfg.alpn_protocols.clear();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn tls(ca: &std::path::Path, tcp: TcpStream) -> Box<dyn Io> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    Box::new(tls_connector(ca).connect(name, tcp).await.unwrap())
}

fn token(path: &str) -> String {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    hyrelay_hc::sas::sign(
        &format!("http://{HOST}/{path}"),
        "RootManageSharedAccessKey",
        KEY,
        expiry,
    )
}

fn msbin1(xml: &str) -> Vec<u8> {
    encode_records(&xml_to_records(xml, None, &EncodeOptions::default()).unwrap()).unwrap()
}

fn text_of(bytes: &[u8]) -> String {
    let limits = hyrelay_nbfx::Limits::buffered(1 << 20);
    let r = read_records(bytes, Dictionaries::static_only(), &limits).unwrap();
    records_to_xml(&r, Dictionaries::static_only(), &XmlOptions::default()).unwrap()
}

/// The text of the first element `name` (no nesting inside it).
fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}"))?;
    let open_end = xml[start..].find('>')? + start + 1;
    let close = xml[open_end..].find("</")? + open_end;
    Some(xml[open_end..close].to_string())
}

fn token_header(path: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(token(path));
    format!(
        r#"<RelayAccessToken xmlns="{CONNECT_NS}"><wsse:BinarySecurityToken xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" ValueType="http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0">{b64}</wsse:BinarySecurityToken></RelayAccessToken>"#
    )
}

// ---- AMQP 1.0 listener (known.md 5.1) --------------------------------------------------

struct Amqp {
    io: Box<dyn Io>,
    dec: FrameDecoder,
}

impl Amqp {
    async fn send(&mut self, kind: FrameType, body: Value) {
        let mut out = Vec::new();
        encode_frame(kind, 0, Some(&body), &[], &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn next(&mut self) -> Item {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(it) = self.dec.next().unwrap() {
                return it;
            }
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the relay closed the AMQP connection");
            self.dec.feed(&buf[..n]);
        }
    }

    async fn performative(&mut self) -> (Performative, Vec<u8>) {
        loop {
            if let Item::Frame(f) = self.next().await {
                if let Some(b) = f.body {
                    return (Performative::from_value(&b).unwrap(), f.payload);
                }
            }
        }
    }

    /// SASL ANONYMOUS (the token travels in the links), open with the `-relay` virtual host,
    /// begin, and the `:out`/`:in` link pair with the relay's link properties.
    async fn register(relay: &Relay, path: &str, listener_type: &str) -> Amqp {
        let tcp = TcpStream::connect(("127.0.0.1", relay.amqp)).await.unwrap();
        let mut a = Amqp {
            io: tls(&relay.ca(), tcp).await,
            dec: FrameDecoder::new(65536, Limits::default()),
        };
        a.io.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
        assert!(matches!(a.next().await, Item::Header { protocol: 3, .. }));
        let (mechs, _) = a.performative().await;
        assert_eq!(mechs.code, codes::SASL_MECHANISMS);
        a.send(
            FrameType::Sasl,
            Value::described(codes::SASL_INIT, vec![Value::sym("ANONYMOUS")]),
        )
        .await;
        let (outcome, _) = a.performative().await;
        assert_eq!(outcome.code, codes::SASL_OUTCOME);
        assert_eq!(outcome.field(0).as_u64(), Some(0), "SASL ok");
        a.dec.expect_header();
        a.io.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
        assert!(matches!(a.next().await, Item::Header { protocol: 0, .. }));
        a.send(
            FrameType::Amqp,
            Value::described(
                codes::OPEN,
                vec![
                    Value::String("RelayConnection_rust-peer".into()),
                    Value::String("contoso-relay.relay.local".into()),
                    Value::Uint(65536),
                ],
            ),
        )
        .await;
        a.send(
            FrameType::Amqp,
            Value::described(
                codes::BEGIN,
                vec![
                    Value::Null,
                    Value::Uint(0),
                    Value::Uint(5000),
                    Value::Uint(5000),
                ],
            ),
        )
        .await;
        let props = Value::Map(vec![
            (Value::sym("com.microsoft:swt"), Value::String(token(path))),
            (
                Value::sym("com.microsoft:listener-type"),
                Value::String(listener_type.into()),
            ),
            (Value::sym("com.microsoft:dynamic-relay"), Value::Bool(true)),
        ]);
        let address = Value::String(format!("sb://{HOST}/{path}/"));
        for (handle, suffix, receiver) in [(0u32, "in", true), (1u32, "out", false)] {
            let mut f = vec![
                Value::String(format!("RelayLink_rust:{suffix}")),
                Value::Uint(handle),
                Value::Bool(receiver),
                Value::Null,
                Value::Null,
                Value::described(codes::SOURCE, vec![address.clone()]),
                Value::described(codes::TARGET, vec![address.clone()]),
            ];
            f.extend([
                Value::Null,
                Value::Null,
                Value::Uint(0),
                Value::Null,
                Value::Null,
                Value::Null,
            ]);
            f.push(props.clone());
            a.send(FrameType::Amqp, Value::described(codes::ATTACH, f))
                .await;
        }
        // Credit on the receiving link.
        a.send(
            FrameType::Amqp,
            Value::described(
                codes::FLOW,
                vec![
                    Value::Uint(0),
                    Value::Uint(5000),
                    Value::Uint(0),
                    Value::Uint(5000),
                    Value::Uint(0),
                    Value::Uint(0),
                    Value::Uint(1000),
                ],
            ),
        )
        .await;
        // The relay's open, begin and both attaches.
        let mut attached = 0;
        while attached < 2 {
            let (p, _) = a.performative().await;
            assert_ne!(p.code, codes::DETACH, "link refused: {p:?}");
            assert_ne!(p.code, codes::CLOSE, "connection refused: {p:?}");
            if p.code == codes::ATTACH {
                attached += 1;
            }
        }
        a
    }

    /// The next message on the `:in` link (settled as accepted): its single data section.
    async fn message(&mut self) -> Vec<u8> {
        loop {
            let (p, payload) = self.performative().await;
            if p.code != codes::TRANSFER {
                continue;
            }
            let id = p.field(1).as_u64().unwrap_or(0);
            self.send(
                FrameType::Amqp,
                Value::described(
                    codes::DISPOSITION,
                    vec![
                        Value::Bool(true),
                        Value::Uint(id as u32),
                        Value::Null,
                        Value::Bool(true),
                        Value::described(codes::ACCEPTED, vec![]),
                    ],
                ),
            )
            .await;
            let (v, _) = hyrelay_amqp::decode_value(&payload, &Limits::default()).unwrap();
            match v {
                Value::Described(d, body) if *d == Value::Ulong(codes::DATA) => match *body {
                    Value::Binary(b) => return b,
                    other => panic!("data section holds {other:?}"),
                },
                other => panic!("not a data section: {other:?}"),
            }
        }
    }
}

/// The `OnewaySend` wrapper's payload, as text.
fn unwrap_oneway(wrapper: &[u8]) -> (String, String) {
    let outer = text_of(wrapper);
    let b64 = element(&outer, "OnewaySend").expect("an OnewaySend body");
    let inner = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    (outer, text_of(&inner))
}

// ---- NetTcpRelay rendezvous (known.md 5.2) ----------------------------------------------

/// `connect` + target + flag 01, TLS, one length-prefixed envelope; returns the stream and
/// the reply's text.
async fn rendezvous(
    ca: &std::path::Path,
    addr: (&str, u16),
    via: &str,
    envelope: &str,
) -> (Box<dyn Io>, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut pre = Vec::new();
    pre.extend_from_slice(&7i32.to_le_bytes());
    pre.extend_from_slice(b"connect");
    pre.extend_from_slice(&(via.len() as i32).to_le_bytes());
    pre.extend_from_slice(via.as_bytes());
    pre.push(1);
    tcp.write_all(&pre).await.unwrap();
    let mut io = tls(ca, tcp).await;
    let body = msbin1(envelope);
    io.write_all(&(body.len() as i32).to_le_bytes())
        .await
        .unwrap();
    io.write_all(&body).await.unwrap();
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; i32::from_le_bytes(len) as usize];
    io.read_exact(&mut reply).await.unwrap();
    (io, text_of(&reply))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_nettcprelay_client_and_listener_meet_through_the_relay() {
    let relay = start_relay();
    let mut listener = Amqp::register(&relay, "echo", "RelayedConnection").await;
    let nettcp = relay.nettcp;
    let listener_task = tokio::spawn({
        let ca = relay.ca();
        async move {
            let wrapper = listener.message().await;
            let (outer, inner) = unwrap_oneway(&wrapper);
            assert!(
                outer.contains(&format!("{CONNECT_NS}/OnewaySend")),
                "{outer}"
            );
            assert!(
                inner.contains("/relayedconnect/RelayedConnect</a:Action>"),
                "{inner}"
            );
            let id = element(&inner, "Id").unwrap();
            let ip: i64 = element(&inner, "IpAddress").unwrap().parse().unwrap();
            let port: u16 = element(&inner, "IpPort").unwrap().parse().unwrap();
            let ip = std::net::Ipv4Addr::from((ip as u32).to_le_bytes());
            assert_eq!((ip, port), (std::net::Ipv4Addr::LOCALHOST, nettcp));
            let accept = format!(
                r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">RelayedAccept</a:Action><a:To s:mustUnderstand="1">http://schemas.microsoft.com/2005/12/ServiceModel/Addressing/Anonymous</a:To></s:Header><s:Body><RelayedAccept xmlns="{CONNECT_NS}"><Id>{id}</Id></RelayedAccept></s:Body></s:Envelope>"#
            );
            let (mut io, reply) = rendezvous(
                &ca,
                ("127.0.0.1", port),
                &format!("sb://{ip}:{port}/"),
                &accept,
            )
            .await;
            assert!(reply.contains(">RelayedAcceptReply</a:Action>"), "{reply}");
            // Echo until the client's FIN, then end too.
            let mut buf = vec![0u8; 65536];
            loop {
                let n = io.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n]).await.unwrap();
            }
            io.shutdown().await.unwrap();
        }
    });
    let connect = format!(
        r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">RelayedConnect</a:Action>{}<a:MessageID>urn:uuid:6f1d2c3b-4a59-4876-9a5b-1c2d3e4f5a6b</a:MessageID><a:To s:mustUnderstand="1">sb://{HOST}/echo/</a:To></s:Header><s:Body><Connect xmlns="{CONNECT_NS}"><Uri>sb://{HOST}/echo/</Uri></Connect></s:Body></s:Envelope>"#,
        token_header("echo")
    );
    let (io, reply) = rendezvous(
        &relay.ca(),
        ("127.0.0.1", relay.nettcp),
        &format!("sb://{HOST}/echo/"),
        &connect,
    )
    .await;
    assert!(!reply.contains("Fault"), "{reply}");
    assert!(
        reply.contains("urn:uuid:6f1d2c3b-4a59-4876-9a5b-1c2d3e4f5a6b"),
        "the reply relates to the request: {reply}"
    );
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(io);
    let writer = tokio::spawn({
        let data = data.clone();
        async move {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        }
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(
        back == data,
        "2 MB echoed byte for byte, then an orderly end"
    );
    listener_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_probe_client_sees_its_own_address() {
    let relay = start_relay();
    let mut tcp = TcpStream::connect(("127.0.0.1", relay.probe))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap().port();
    let mut req = 5i32.to_le_bytes().to_vec();
    req.extend_from_slice(b"probe");
    req.extend_from_slice(&2i32.to_le_bytes());
    tcp.write_all(&req).await.unwrap();
    let mut ans = [0u8; 12];
    tcp.read_exact(&mut ans).await.unwrap();
    let ip = i64::from_le_bytes(ans[..8].try_into().unwrap());
    let port = i32::from_le_bytes(ans[8..].try_into().unwrap());
    assert_eq!(
        std::net::Ipv4Addr::from((ip as u32).to_le_bytes()),
        std::net::Ipv4Addr::LOCALHOST
    );
    assert_eq!(port as u16, local);
}

/// A NetEvent sender (known.md 5.4): NMF duplex session, binary session encoding, `Connect`
/// with the token, then messages, each answered; two Rust subscribers get every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_netevent_sender_reaches_two_rust_subscribers() {
    let relay = start_relay();
    let mut subs = Vec::new();
    for _ in 0..2 {
        subs.push(Amqp::register(&relay, "events", "Multicast").await);
    }
    let via = format!("sb://{HOST}/events");
    let mut tcp = TcpStream::connect(("127.0.0.1", relay.oneway))
        .await
        .unwrap();
    let mut s = ClientSession::new(
        ClientConfig {
            mode: Mode::Duplex,
            via: via.clone(),
            encoding: Encoding::Known(0x08),
            upgrade: None,
        },
        hyrelay_nmf::Limits::default(),
    );
    s.start().unwrap();
    let mut out_dict = SessionDictionary::new(1 << 20);
    let mut in_dict = SessionDictionary::new(1 << 20);
    let mut buf = vec![0u8; 65536];
    let msgs = [
        format!(
            r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">{CONNECT_NS}/Connect</a:Action>{}<a:MessageID>urn:uuid:00000000-0000-4000-8000-000000000001</a:MessageID><a:To s:mustUnderstand="1">{via}</a:To></s:Header><s:Body><Connect xmlns="{CONNECT_NS}"><Uri>{via}</Uri></Connect></s:Body></s:Envelope>"#,
            token_header("events")
        ),
        format!(
            r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">urn:rust/Audit</a:Action><a:MessageID>urn:uuid:00000000-0000-4000-8000-000000000002</a:MessageID><a:To s:mustUnderstand="1">{via}</a:To></s:Header><s:Body><Audit xmlns="urn:rust">first</Audit></s:Body></s:Envelope>"#
        ),
        format!(
            r#"<s:Envelope xmlns:s="{SOAP}" xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">urn:rust/Audit</a:Action><a:MessageID>urn:uuid:00000000-0000-4000-8000-000000000003</a:MessageID><a:To s:mustUnderstand="1">{via}</a:To></s:Header><s:Body><Audit xmlns="urn:rust">second</Audit></s:Body></s:Envelope>"#
        ),
    ];
    let mut next = 0;
    let mut replies = Vec::new();
    while replies.len() < msgs.len() {
        let out = s.take_output();
        if !out.is_empty() {
            tcp.write_all(&out).await.unwrap();
        }
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the relay ended the session");
        s.feed(&buf[..n]);
        while let Some(ev) = s.poll_event().unwrap() {
            match ev {
                ClientEvent::PreambleAck => {}
                ClientEvent::Message(m) => {
                    let r = read_session_message(
                        &m,
                        &mut in_dict,
                        &hyrelay_nbfx::Limits::buffered(1 << 20),
                    )
                    .unwrap();
                    replies.push(
                        records_to_xml(
                            &r.records,
                            Dictionaries::with_session(&in_dict),
                            &XmlOptions::default(),
                        )
                        .unwrap(),
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // One message at a time, each after the previous reply (the first after the ack).
        if next < msgs.len() && next == replies.len() {
            let m = xml_to_session_message(&msgs[next], &mut out_dict, &EncodeOptions::default())
                .unwrap();
            let mut payload = Vec::new();
            write_session_message(&m, &mut payload).unwrap();
            s.send_message(&payload).unwrap();
            next += 1;
        }
    }
    for r in &replies {
        assert!(!r.contains("Fault"), "{r}");
    }
    assert!(
        replies[0].contains("urn:uuid:00000000-0000-4000-8000-000000000001"),
        "{}",
        replies[0]
    );
    for sub in &mut subs {
        let mut got = Vec::new();
        for _ in 0..2 {
            let w = tokio::time::timeout(Duration::from_secs(10), sub.message())
                .await
                .unwrap();
            got.push(element(&unwrap_oneway(&w).1, "Audit").unwrap());
        }
        assert_eq!(got, ["first", "second"], "every subscriber, in order");
    }
}

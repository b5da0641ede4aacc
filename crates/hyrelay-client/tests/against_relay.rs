//! The client library against an in-process hyrelay relay: a listener serving WebSocket
//! senders and HTTP requests (control channel and rendezvous paths), and the sender side.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyrelay_client::{
    connect, http_request, HttpResponse, Listener, ListenerOptions, RelayEndpoint, TokenSource,
};
use hyrelay_hc::sas::Rights;
use hyrelay_relay::config::State;
use hyrelay_relay::model::{HybridConnection, Namespace, Rule};
use hyrelay_relay::server::{serve, Endpoint};
use hyrelay_relay::{Relay, RelayOptions};

async fn relay() -> (String, String) {
    relay_with(RelayOptions::default()).await
}

async fn relay_with(opts: RelayOptions) -> (String, String) {
    let rule = Rule::generate("Root", Rights::ALL);
    let key = rule.primary_key.clone();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hyrelay-client-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    State {
        namespaces: vec![Namespace {
            name: "t".into(),
            hosts: vec![],
            rules: vec![rule],
            wcf_relays: Vec::new(),
            hybrid_connections: vec![HybridConnection {
                name: "svc".into(),
                requires_client_authorization: true,
                rules: vec![],
                user_metadata: String::new(),
                created_at: 0,
                fixed: false,
            }],
        }],
    }
    .save(&dir)
    .unwrap();
    let r = Relay::new(RelayOptions {
        data_dir: Some(dir),
        ..opts
    })
    .unwrap();
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let addr = ep.local_addr().unwrap().to_string();
    tokio::spawn(serve(r, ep));
    (addr, key)
}

/// The relay at `addr`, with the Root rule's key.
fn endpoint(addr: &str, key: String) -> RelayEndpoint {
    let tls = hyrelay_net::tls::client_config(&[], false).unwrap();
    RelayEndpoint::new(
        &format!("sb://{addr}/"),
        TokenSource::Key {
            name: "Root".into(),
            key,
        },
        tls,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_serves_websocket_and_http_senders() {
    let (addr, key) = relay().await;
    let ep = endpoint(&addr, key);
    let ep2 = ep.clone();
    let handler: hyrelay_client::RequestHandler = Arc::new(|req| {
        Box::pin(async move {
            let body = if req.target.ends_with("/big") {
                Bytes::from(vec![b'z'; 200_000])
            } else {
                Bytes::from(format!("{} {} {}", req.method, req.target, req.body.len()))
            };
            HttpResponse {
                status: 201,
                reason: Some("Made".into()),
                headers: vec![("x-from".into(), "listener".into())],
                body,
            }
        })
    });
    let listener =
        Listener::new(ep.clone(), "svc", ListenerOptions::default()).with_requests(handler);
    tokio::spawn(async move {
        listener
            .run(move |req| {
                let ep = ep2.clone();
                async move {
                    let mut c = hyrelay_client::accept(&ep, &req).await.unwrap();
                    while let Ok(Some(m)) = c.recv(1 << 20).await {
                        let mut out = b"echo:".to_vec();
                        out.extend_from_slice(&m);
                        c.send(&out).await.unwrap();
                    }
                    let _ = c.writer.close(1000, "").await;
                }
            })
            .await
    });
    // Wait for the listener, then use it as a WebSocket sender.
    let mut c = None;
    for _ in 0..50 {
        match connect(&ep, "svc", &[]).await {
            Ok(x) => {
                c = Some(x);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut c = c.expect("listener came online");
    c.send(b"hello").await.unwrap();
    assert_eq!(c.recv(1024).await.unwrap().unwrap().as_ref(), b"echo:hello");
    c.writer.close(1000, "bye").await.unwrap();
    assert!(c.recv(1024).await.unwrap().is_none());

    // HTTP: small (control channel), large request (rendezvous), large response (rendezvous).
    let r = http_request(
        &ep,
        "svc",
        "POST",
        "/orders?x=1",
        &[],
        Bytes::from_static(b"abc"),
    )
    .await
    .unwrap();
    assert_eq!((r.status, r.reason.as_deref()), (201, Some("Made")));
    assert_eq!(r.body.as_ref(), b"POST /svc/orders?x=1 3");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "x-from" && v == "listener"));
    let big = Bytes::from(vec![1u8; 300_000]);
    let r = http_request(&ep, "svc", "PUT", "/blob", &[], big)
        .await
        .unwrap();
    assert_eq!(r.body.as_ref(), b"PUT /svc/blob 300000");
    let r = http_request(&ep, "svc", "GET", "/big", &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.body.len(), 200_000);

    // Wrong key: the relay's 401 reaches the caller with its reason.
    let bad = RelayEndpoint::new(
        &format!("ws://{addr}/"),
        TokenSource::Key {
            name: "Root".into(),
            key: "nope".into(),
        },
        hyrelay_net::tls::client_config(&[], false).unwrap(),
    )
    .unwrap();
    match connect(&bad, "svc", &[]).await {
        Err(hyrelay_client::ClientError::Refused { status, reason, .. }) => {
            assert_eq!(status, 401);
            assert!(reason.contains("invalid signature"), "{reason}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }
}

/// A listener that takes an HTTP request and never answers: the sender gets 504 with the
/// relay's reason once the response timeout (60 s by default, 400 ms here) has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_gives_504() {
    let (addr, key) = relay_with(RelayOptions {
        response_timeout: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let ep = endpoint(&addr, key);
    let handler: hyrelay_client::RequestHandler = Arc::new(|_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            HttpResponse {
                status: 200,
                reason: None,
                headers: vec![],
                body: Bytes::new(),
            }
        })
    });
    let listener =
        Listener::new(ep.clone(), "svc", ListenerOptions::default()).with_requests(handler);
    tokio::spawn(async move { listener.run(|_req| async {}).await });
    let mut got = None;
    for _ in 0..50 {
        let t = std::time::Instant::now();
        let r = http_request(&ep, "svc", "GET", "/slow", &[], Bytes::new())
            .await
            .unwrap();
        if r.status == 404 {
            // the listener is not online yet
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        got = Some((r, t.elapsed()));
        break;
    }
    let (r, took) = got.expect("listener came online");
    assert_eq!(r.status, 504, "{:?}", r.reason);
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .contains("did not respond")
            || String::from_utf8_lossy(&r.body).contains("did not respond"),
        "{:?} {:?}",
        r.reason,
        r.body
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

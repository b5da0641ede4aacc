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
    let rule = Rule::generate("Root", Rights::ALL);
    let key = rule.primary_key.clone();
    let dir = std::env::temp_dir().join(format!("hyrelay-client-test-{}", std::process::id()));
    State {
        namespaces: vec![Namespace {
            name: "t".into(),
            hosts: vec![],
            rules: vec![rule],
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
        ..Default::default()
    })
    .unwrap();
    let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let addr = ep.local_addr().unwrap().to_string();
    tokio::spawn(serve(r, ep));
    (addr, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_serves_websocket_and_http_senders() {
    let (addr, key) = relay().await;
    let tls = hyrelay_net::tls::client_config(&[], false).unwrap();
    let ep = RelayEndpoint::new(
        &format!("sb://{addr}/"),
        TokenSource::Key {
            name: "Root".into(),
            key,
        },
        tls,
    )
    .unwrap();
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

//! Property tests for the Hybrid Connections grammar and SAS tokens.

use hyrelay_hc::sas::{encode_component, sign, Audience, SasToken};
use hyrelay_hc::url::{parse_target, strip_reserved, Action};
use proptest::prelude::*;

fn seg() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}"
}

proptest! {
    /// Application query pairs survive in order; every sb-hc-*=value pair is removed and the
    /// relay's own parameters are extracted.
    #[test]
    fn app_query_kept_reserved_removed(
        path in proptest::collection::vec(seg(), 1..4),
        app in proptest::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9%+]{0,6}"), 0..5),
        id in "[a-f0-9-]{1,20}",
    ) {
        let app_q: Vec<String> = app.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut q = app_q.clone();
        q.insert(q.len() / 2, "sb-hc-action=connect".into());
        q.push(format!("sb-hc-id={id}"));
        let target = format!("/$hc/{}?{}", path.join("/"), q.join("&"));
        let t = parse_target(&target).unwrap();
        prop_assert_eq!(t.action, Some(Action::Connect));
        prop_assert_eq!(t.path, path.join("/"));
        prop_assert_eq!(t.id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(t.app_query, app_q.join("&"));
    }

    /// strip_reserved is idempotent and never leaves a reserved pair.
    #[test]
    fn strip_idempotent(q in "[a-zA-Z0=&-]{0,40}") {
        let once = strip_reserved(&q);
        prop_assert_eq!(strip_reserved(&once), once.clone());
        for p in once.split('&') {
            if let Some((k, _)) = p.split_once('=') {
                prop_assert!(!k.to_ascii_lowercase().starts_with("sb-hc-"));
            }
        }
    }

    /// Tokens made by sign() verify with their key only, keep their expiry and their
    /// audience, whatever the resource text.
    #[test]
    fn sign_verify(resource in "(http|sb|wss)://[a-z0-9.]{1,10}(:[0-9]{1,5})?(/[a-zA-Z0-9 $._-]{1,8}){0,3}/?",
                   key in "[A-Za-z0-9+/=]{1,44}", other in "[A-Za-z0-9+/=]{1,44}", se in 0u64..4_000_000_000) {
        let t = SasToken::parse(&sign(&resource, "rule", &key, se)).unwrap();
        prop_assert!(t.signature_matches(&key));
        prop_assert_eq!(t.signature_matches(&other), key == other);
        prop_assert_eq!(t.expiry, se);
        prop_assert_eq!(&t.resource, &resource);
        prop_assert_eq!(t.raw_resource, encode_component(&resource));
    }

    /// An audience covers exactly its own path and the paths below it.
    #[test]
    fn audience_prefix(a in proptest::collection::vec(seg(), 0..3), b in proptest::collection::vec(seg(), 1..4)) {
        let aud = Audience::parse(&format!("sb://ns/{}", a.join("/")));
        let entity = b.join("/");
        let expect = a.is_empty() || {
            let al: Vec<String> = a.iter().map(|s| s.to_ascii_lowercase()).collect();
            let bl: Vec<String> = b.iter().map(|s| s.to_ascii_lowercase()).collect();
            bl.len() >= al.len() && bl[..al.len()] == al[..]
        };
        prop_assert_eq!(aud.covers_path(&entity), expect);
    }

    /// Arbitrary text never panics the parsers.
    #[test]
    fn parsers_total(s in ".{0,200}") {
        let _ = parse_target(&s);
        let _ = SasToken::parse(&s);
        let _ = hyrelay_hc::ConnectionString::parse(&s);
        let _ = hyrelay_hc::messages::parse_listener_command(&s);
    }
}

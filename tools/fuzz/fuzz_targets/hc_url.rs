#![no_main]
//! Request targets and longest-prefix lookup never panic; a parsed target's app query never
//! keeps an `sb-hc-*=` pair.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = hyrelay_hc::url::parse_target(s) {
        for pair in t.app_query.split('&') {
            if let Some((k, _)) = pair.split_once('=') {
                assert!(!k.to_ascii_lowercase().starts_with("sb-hc-"), "reserved pair leaked: {pair}");
            }
        }
        let names = ["a", "a/b", "credit-check", "x/y/z"];
        let _ = hyrelay_hc::url::longest_prefix(&t.path, names.iter().copied());
    }
    let _ = hyrelay_hc::url::strip_reserved(s);
});

#![no_main]
//! SAS token parsing, verification, audience rules and connection strings never panic, and
//! a token never verifies against a key it was not signed with.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = hyrelay_hc::SasToken::parse(s) {
        let _ = t.signature_matches("key");
        let a = t.audience();
        let _ = a.covers_path("credit-check/x");
    }
    let _ = hyrelay_hc::ConnectionString::parse(s);
    let tok = hyrelay_hc::sas::sign(s, "rule", "key-one", 1);
    let p = hyrelay_hc::SasToken::parse(&tok);
    if let Ok(p) = p {
        assert!(p.signature_matches("key-one"));
        assert!(!p.signature_matches("key-two"));
    }
});

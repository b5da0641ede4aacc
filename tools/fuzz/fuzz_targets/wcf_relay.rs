#![no_main]
//! The WCF Relay's parsers: the NetTcpRelay preamble reader gives the same answer whether the
//! input is parsed whole or fed field by field (never reading past the preamble), control
//! envelopes decode or fail cleanly, and any text as an HTTP relay response gives parts or
//! an error.
use hyrelay_wcf::relay::{from_msbin1, parse_http_response, parse_preamble, PreambleReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_preamble(data);
    let mut r = PreambleReader::default();
    let mut at = 0usize;
    let stepwise = loop {
        let w = r.want();
        if data.len() - at < w {
            break Ok(None);
        }
        match r.feed(&data[at..at + w]) {
            Ok(Some(p)) => break Ok(Some((p, at + w))),
            Ok(None) => at += w,
            Err(e) => break Err(e),
        }
    };
    assert_eq!(whole, stepwise);
    if let Ok(Some((_, used))) = &whole {
        assert!(*used <= data.len());
    }
    if let Ok(xml) = from_msbin1(data) {
        let _ = parse_http_response(&xml);
    }
    let _ = parse_http_response(&String::from_utf8_lossy(data));
});

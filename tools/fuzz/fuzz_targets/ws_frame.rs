#![no_main]
//! WebSocket frame headers: parsing never panics, respects the payload limit, and a parsed
//! header re-encodes to the same bytes (for minimal encodings, which the parser enforces).
use hyrelay_ws::{Expect, FrameHeader, MAX_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, n))) = FrameHeader::parse(data, Expect::Either, 1 << 20) {
        assert!(h.len <= 1 << 20);
        let mut out = [0u8; MAX_HEADER_LEN];
        let m = h.encode(&mut out);
        assert_eq!(&out[..m], &data[..n]);
    }
    let _ = hyrelay_ws::CloseFrame::parse(data);
    let mut d = data.to_vec();
    hyrelay_ws::apply_mask(&mut d, [1, 2, 3, 4], data.len() as u64);
});

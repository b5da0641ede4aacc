#![no_main]
//! Listener control messages: any input gives a command or a typed error.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = hyrelay_hc::messages::parse_listener_command(s);
    }
});

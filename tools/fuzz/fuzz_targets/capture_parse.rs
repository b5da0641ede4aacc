#![no_main]
//! Capture files (pcap, pcapng, JSON lines): parsing never panics and stays within the
//! limits; transcripts of whatever parses never panic.
use hyrelay_capture::{parse, transcript, Limits, TranscriptOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_stream_bytes: 1 << 20,
        max_out_of_order_bytes: 1 << 20,
        max_record_bytes: 1 << 20,
        ..Limits::default()
    };
    if let Ok(cap) = parse(data, &limits) {
        for c in cap.connections.iter().take(16) {
            let _ = transcript(c, &TranscriptOptions { max_message_size: 1 << 20, ..Default::default() });
        }
    }
});

#![no_main]
//! AMQP 1.0 listener plane: any bytes, in any split (the first byte picks the cut), after a
//! valid SASL header or not, never panic the value decoder or the server connection, and the
//! connection gives the same events and output whatever the split.
use std::time::Instant;

use hyrelay_amqp::{decode_value, Limits, ServerConfig, ServerConnection};
use libfuzzer_sys::fuzz_target;

fn run(chunks: &[&[u8]], now: Instant) -> (String, Vec<u8>) {
    let mut c = ServerConnection::new(ServerConfig::default(), now);
    let mut evs = String::new();
    let mut out = Vec::new();
    for ch in chunks {
        c.receive(ch, now);
        for e in c.take_events() {
            evs.push_str(&format!("{e:?}\n"));
        }
        out.extend(c.take_output());
    }
    (evs, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let _ = decode_value(rest, &Limits::default());
    let mut input = if cut & 0x80 != 0 { b"AMQP\x03\x01\x00\x00".to_vec() } else { Vec::new() };
    input.extend_from_slice(rest);
    let now = Instant::now();
    let at = (cut as usize & 0x7f).min(input.len());
    assert_eq!(run(&[&input], now), run(&[&input[..at], &input[at..]], now));
});

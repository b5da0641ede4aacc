#![no_main]
//! Framing: the decoder never panics, gives the same records whether fed at once or in
//! two pieces, and the server session state machine never panics on any input.
use hyrelay_nmf::{Decoder, Limits, ServerPolicy, ServerSession};
use libfuzzer_sys::fuzz_target;

fn records(parts: &[&[u8]]) -> (Vec<hyrelay_nmf::Record>, Option<u64>) {
    let mut d = Decoder::new(Limits::default());
    let mut out = Vec::new();
    for p in parts {
        d.feed(p);
        loop {
            match d.next_record() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => return (out, Some(format!("{e}").len() as u64)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else { return };
    let at = usize::from(cut) % (input.len() + 1);
    let whole = records(&[input]);
    let split = records(&[&input[..at], &input[at..]]);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1.is_some(), split.1.is_some());
    let mut s = ServerSession::new(Limits::default(), ServerPolicy::default());
    s.start(std::time::Duration::ZERO);
    s.feed(input);
    for _ in 0..10_000 {
        match s.poll_event() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let _ = s.take_output();
});

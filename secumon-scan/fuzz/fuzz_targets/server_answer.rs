//! Whatever a server sends after our ClientHello: the parser must never panic, loop or
//! allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let (answer, _done) = secumon_scan::tls::parse_answer(bytes);
    // What it extracts can only come from the input.
    assert!(answer.certificates.iter().map(Vec::len).sum::<usize>() <= bytes.len());
});

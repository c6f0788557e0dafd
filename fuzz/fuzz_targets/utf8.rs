//! Incremental UTF-8 validation against `std`, with the input split at two fuzzer-chosen points,
//! and the fast unmask against the scalar reference at a fuzzer-chosen phase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast_protocol::mask::{apply_mask, apply_mask_scalar};
use tickcast_protocol::utf8::Utf8Validator;

fuzz_target!(|data: &[u8]| {
    let [a, b, bytes @ ..] = data else { return };
    let i = usize::from(*a) % (bytes.len() + 1);
    let j = (i + usize::from(*b)).min(bytes.len());
    let mut v = Utf8Validator::new();
    let ok = v.feed(&bytes[..i]).and_then(|()| v.feed(&bytes[i..j]));
    let ok = ok.and_then(|()| v.feed(&bytes[j..])).and_then(|()| v.finish());
    assert_eq!(ok.is_ok(), std::str::from_utf8(bytes).is_ok());

    let mask = [*a, *b, 0x5a, 0xc3];
    let mut fast = bytes.to_vec();
    let mut slow = bytes.to_vec();
    apply_mask(&mut fast[i..], mask, j);
    apply_mask_scalar(&mut slow[i..], mask, j);
    assert_eq!(fast, slow);
});

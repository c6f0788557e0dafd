//! The chunked request-body decoder: no input may panic, a decoded body never exceeds the
//! limit nor the input, and every prefix of a complete body is incomplete (or an error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast_protocol::http::decode_chunked;

fuzz_target!(|data: &[u8]| {
    let max_body = 1024;
    let mut body = Vec::new();
    if let Ok(Some(used)) = decode_chunked(data, max_body, &mut body) {
        assert!(used <= data.len());
        assert!(body.len() <= max_body && body.len() <= used);
        let complete = body.clone();
        let cut = data.len() % used.max(1);
        if cut < used {
            assert!(!matches!(decode_chunked(&data[..cut], max_body, &mut body), Ok(Some(_))));
        }
        assert_eq!(decode_chunked(&data[..used], max_body, &mut body), Ok(Some(used)));
        assert_eq!(body, complete);
    }
});

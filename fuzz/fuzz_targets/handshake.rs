//! The HTTP request parser, the §4.2.1 validation and the client's response check: no input
//! may panic, and an incomplete head must parse like its complete form once completed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast_protocol::handshake::{
    ClientHandshake, is_upgrade_request, validate_upgrade, write_accept_response,
};
use tickcast_protocol::http::{HeaderLimits, parse_request};

fuzz_target!(|data: &[u8]| {
    let limits = HeaderLimits { max_bytes: 4096, max_headers: 24 };
    if let Ok(Some(req)) = parse_request(data, &limits) {
        assert!(req.header_len <= data.len());
        let _ = (req.path(), req.query(), req.keep_alive(), is_upgrade_request(&req));
        let mut out = Vec::new();
        match validate_upgrade(&req) {
            Ok(up) => write_accept_response(&mut out, &up, up.protocols.first().map(|s| &s[..])),
            Err(e) => e.write_response(&mut out),
        }
        // Every prefix of a complete head is incomplete or (for the full head) the same.
        let cut = data.len() % (req.header_len + 1);
        if cut < req.header_len {
            assert!(matches!(parse_request(&data[..cut], &limits), Ok(None) | Err(_)));
        }
    }
    let (client, _) = ClientHandshake::new("h", "/", [7; 16], &[("Sec-WebSocket-Protocol", "a")]);
    if let Ok(Some(n)) = client.parse_response(data) {
        assert!(n <= data.len());
    }
});

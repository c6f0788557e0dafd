use super::*;
use crate::http::{HeaderLimits, parse_request};

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
// The value printed in RFC 6455 §1.3 (base64 of sha1(key + GUID), checked independently).
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn req(head: &str) -> Request {
    parse_request(head.as_bytes(), &HeaderLimits::default()).unwrap().unwrap()
}

fn valid(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[test]
fn rfc_1_3_accept_key() {
    assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
}

#[test]
fn rfc_1_2_request_is_accepted() {
    let r = req(&valid(
        "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n",
    ));
    assert!(is_upgrade_request(&r));
    let up = validate_upgrade(&r).unwrap();
    assert_eq!(up.key, RFC_KEY);
    assert_eq!(up.origin.as_deref(), Some("http://example.com"));
    assert_eq!(up.protocols, ["chat", "superchat"]);
    assert_eq!(up.extensions, ["permessage-deflate; client_max_window_bits", "x-foo"]);
    let mut out = Vec::new();
    write_accept_response(&mut out, &up, Some("chat"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {RFC_ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        )
    );
}

#[test]
fn tokens_are_case_insensitive_lists() {
    let head = valid("")
        .replace("Upgrade: websocket", "upgrade: foo, WebSocket")
        .replace("Connection: Upgrade", "Connection: keep-alive\r\nCONNECTION: upgrade");
    assert!(validate_upgrade(&req(&head)).is_ok());
}

#[test]
fn every_check_has_an_error() {
    use HandshakeError as E;
    let cases: Vec<(String, E, u16)> = vec![
        (valid("").replace("GET", "POST"), E::NotGet, 405),
        (valid("").replace("HTTP/1.1", "HTTP/1.0"), E::NotHttp11, 400),
        (valid("").replace("Host: server.example.com\r\n", ""), E::MissingHost, 400),
        (valid("Host: b\r\n"), E::DuplicateHeader("host"), 400),
        (valid("").replace("Upgrade: websocket\r\n", ""), E::NotUpgrade, 426),
        (valid("").replace("Upgrade: websocket", "Upgrade: h2c"), E::NotUpgrade, 426),
        (valid("").replace("Connection: Upgrade", "Connection: close"), E::MissingConnectionUpgrade, 400),
        (valid("").replace(&format!("Sec-WebSocket-Key: {RFC_KEY}\r\n"), ""), E::MissingKey, 400),
        (valid("").replace(RFC_KEY, "dGhlIHNhbXBsZSBub25jZQ"), E::BadKey, 400),
        (valid("").replace(RFC_KEY, "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), E::BadKey, 400),
        (valid("").replace(RFC_KEY, "dGhlIHNhbXBsZSBub25j"), E::BadKey, 400),
        (valid("").replace(RFC_KEY, "!!!!!!!!!!!!!!!!!!!!!!=="), E::BadKey, 400),
        (valid(&format!("Sec-WebSocket-Key: {RFC_KEY}\r\n")), E::DuplicateHeader("sec-websocket-key"), 400),
        (valid("").replace("Version: 13", "Version: 8"), E::UnsupportedVersion, 426),
        (valid("").replace("Sec-WebSocket-Version: 13\r\n", ""), E::UnsupportedVersion, 426),
    ];
    for (head, err, status) in cases {
        let got = validate_upgrade(&req(&head)).unwrap_err();
        assert_eq!(got, err, "{head}");
        assert_eq!(got.status(), status);
        let mut out = Vec::new();
        got.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        if status == 426 {
            assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        }
        if status == 405 {
            assert!(text.contains("Allow: GET\r\n"));
        }
    }
    assert_eq!(HandshakeError::Http(HttpError::HeadersTooLarge).status(), 431);
}

#[test]
fn client_round_trip() {
    let key_bytes = *b"the sample nonce";
    let (client, request) =
        ClientHandshake::new("server.example.com", "/chat", key_bytes, &[("Sec-WebSocket-Protocol", "chat")]);
    let r = parse_request(&request, &HeaderLimits::default()).unwrap().unwrap();
    let up = validate_upgrade(&r).unwrap();
    assert_eq!(up.key, RFC_KEY);
    let mut resp = Vec::new();
    write_accept_response(&mut resp, &up, Some("chat"));
    let head_len = resp.len();
    resp.extend_from_slice(b"\x81\x00");
    for cut in 0..head_len {
        assert_eq!(client.parse_response(&resp[..cut]), Ok(None));
    }
    assert_eq!(client.parse_response(&resp), Ok(Some(head_len)));
}

#[test]
fn client_rejects_bad_responses() {
    use HandshakeError as E;
    let (client, _) = ClientHandshake::new("h", "/", *b"the sample nonce", &[]);
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n"
    );
    let check = |head: String, err: E| {
        assert_eq!(client.parse_response(format!("{head}\r\n").as_bytes()), Err(err), "{head}");
    };
    assert_eq!(client.parse_response(format!("{ok}\r\n").as_bytes()), Ok(Some(ok.len() + 2)));
    check(ok.replace("101 Switching Protocols", "200 OK"), E::BadStatus(200));
    check(ok.replace("Upgrade: websocket\r\n", ""), E::NotUpgrade);
    check(ok.replace("Connection: Upgrade", "Connection: close"), E::MissingConnectionUpgrade);
    check(ok.replace(RFC_ACCEPT, "AAAA"), E::BadAccept);
    check(format!("{ok}Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n"), E::BadAccept);
    check(format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n"), E::UnexpectedExtension);
    check(format!("{ok}Sec-WebSocket-Protocol: chat\r\n"), E::UnexpectedProtocol);
    assert!(matches!(client.parse_response(b"garbage\r\n\r\n"), Err(E::Http(_))));
    let huge = [b"HTTP/1.1 101 OK\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
    assert_eq!(client.parse_response(&huge), Err(E::Http(HttpError::HeadersTooLarge)));
}

//! WebSocket behaviour of the real binary, checked with an independent client
//! (tokio-tungstenite) and, for frames no library would send, with hand-built bytes.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Server, closed_within, masked, raw_ws, read_close_code, read_frame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

async fn connect(server: &Server) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(server.ws_url("/echo")).await.expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

use common::{Ws, next_message as next};

/// A fresh client still gets served: run after every bad input.
async fn assert_still_serving(server: &Server) {
    let mut ws = connect(server).await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    ws.close(None).await.unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn echoes_text_and_binary_from_0_bytes_to_1_mib() {
    let server = Server::start(&["--threads", "1"]);
    rt().block_on(async {
        let mut ws = connect(&server).await;
        for size in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000, 1 << 20] {
            let text: String = (0..size).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            ws.send(Message::text(text.clone())).await.unwrap();
            assert!(next(&mut ws).await == Message::text(text), "text of {size} bytes differs");
            let bin: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            ws.send(Message::binary(bin.clone())).await.unwrap();
            assert!(next(&mut ws).await == Message::binary(bin), "binary of {size} bytes differs");
        }
        ws.close(None).await.unwrap();
    });
}

#[test]
fn fragmented_message_with_interleaved_pings() {
    let server = Server::start(&["--threads", "1"]);
    rt().block_on(async {
        let mut ws = connect(&server).await;
        ws.send(Message::Frame(Frame::message("frag", OpCode::Data(Data::Text), false))).await.unwrap();
        ws.send(Message::Ping("p1".into())).await.unwrap();
        ws.send(Message::Frame(Frame::message("men", OpCode::Data(Data::Continue), false))).await.unwrap();
        ws.send(Message::Ping("p2".into())).await.unwrap();
        ws.send(Message::Frame(Frame::message("ted", OpCode::Data(Data::Continue), true))).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let msg =
                tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
            got.push(msg);
        }
        assert_eq!(
            got,
            vec![Message::Pong("p1".into()), Message::Pong("p2".into()), Message::text("fragmented")]
        );
    });
}

#[test]
fn close_handshake_echoes_the_code() {
    let server = Server::start(&["--threads", "1"]);
    rt().block_on(async {
        for code in [CloseCode::Normal, CloseCode::Away, CloseCode::Library(4000)] {
            let mut ws = connect(&server).await;
            ws.send(Message::Close(Some(CloseFrame { code, reason: "bye".into() }))).await.unwrap();
            match next(&mut ws).await {
                Message::Close(Some(frame)) => assert_eq!(frame.code, code),
                other => panic!("expected a close, got {other:?}"),
            }
            // Then the server closes TCP: the stream ends.
            let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap();
            assert!(end.is_none() || matches!(end, Some(Err(_))), "{end:?}");
        }
        assert_still_serving(&server).await;
    });
}

#[test]
fn bad_frames_get_their_close_codes() {
    let server = Server::start(&["--threads", "1", "--echo-max-message", "1KiB"]);
    let unmasked = {
        let mut v = vec![0x81, 0x02];
        v.extend_from_slice(b"hi");
        v
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked client frame", unmasked, 1002),
        ("invalid UTF-8", masked(0x81, &[0xce, 0xba, 0xff, 0xfe]), 1007),
        ("oversized message", masked(0x82, &[0; 2048]), 1009),
        ("reserved bits", masked(0xc1, b"x"), 1002),
        ("unknown opcode", masked(0x83, b"x"), 1002),
        ("continuation without start", masked(0x80, b"x"), 1002),
        ("fragmented ping", masked(0x09, b"x"), 1002),
        ("close with 1 byte payload", masked(0x88, &[3]), 1002),
        ("close with invalid code", masked(0x88, &[0x03, 0xed]), 1002), // 1005
    ];
    for (name, frame, code) in cases {
        let mut s = raw_ws(server.addr, "/echo");
        s.write_all(&frame).unwrap();
        assert_eq!(read_close_code(&mut s), code, "{name}");
        assert!(closed_within(&mut s, Duration::from_secs(5)), "{name}: TCP not closed");
    }
    assert!(server.metric("tickcast_protocol_errors_total") >= 9);
    rt().block_on(assert_still_serving(&server));
}

#[test]
fn handshake_errors_get_http_statuses() {
    let server = Server::start(&["--threads", "1", "--max-header-bytes", "1KiB"]);
    let base = "Host: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (format!("GET /echo HTTP/1.1\r\n{base}Sec-WebSocket-Version: 12\r\n\r\n"), "HTTP/1.1 426", "version"),
        (format!("POST /echo HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"), "HTTP/1.1 405", "method"),
        (
            "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n".to_string(),
            "HTTP/1.1 400",
            "bad key",
        ),
        (format!("GET /echo HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(2000)), "HTTP/1.1 431", "head too large"),
        ("GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 404", "unknown path"),
        ("GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 426", "no upgrade"),
        ("DELETE /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), "HTTP/1.1 405", "healthz method"),
        ("GARBAGE\r\n\r\n".to_string(), "HTTP/1.1 400", "garbage"),
    ];
    for (req, status, name) in cases {
        let resp = server.http(&req);
        assert!(resp.starts_with(status), "{name}: {resp}");
    }
    let ok = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok\n"), "{ok}");
    rt().block_on(assert_still_serving(&server));
}

#[test]
fn server_pings_idle_clients_and_drops_silent_ones() {
    let server = Server::start(&["--threads", "1", "--idle-timeout", "500ms", "--pong-timeout", "500ms"]);
    // A client that never answers: pinged, then dropped.
    let mut silent = raw_ws(server.addr, "/echo");
    let (op, _) = read_frame(&mut silent).expect("a ping");
    assert_eq!(op, 9);
    assert!(closed_within(&mut silent, Duration::from_secs(5)), "silent client not dropped");
    assert_eq!(server.metric("tickcast_idle_timeouts_total"), 1);
    // A client that answers (tungstenite pongs automatically) stays.
    rt().block_on(async {
        let mut ws = connect(&server).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
        let mut pings = 0;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(Ok(Message::Ping(_)))) =
                tokio::time::timeout(Duration::from_millis(200), ws.next()).await
            {
                pings += 1;
            }
        }
        assert!(pings >= 2, "expected repeated pings, got {pings}");
        ws.send(Message::text("alive")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("alive"));
    });
}

#[test]
fn a_client_that_sends_faster_than_it_reads_is_paused_not_dropped() {
    let server = Server::start(&["--threads", "1", "--send-queue-limit", "64KiB"]);
    let mut s = raw_ws(server.addr, "/echo");
    let mut reader = s.try_clone().unwrap();
    const FRAMES: usize = 4000;
    const SIZE: usize = 4096;
    let writer = std::thread::spawn(move || {
        for i in 0..FRAMES {
            let payload = vec![(i % 251) as u8; SIZE];
            s.write_all(&masked(0x82, &payload)).unwrap();
        }
        s
    });
    // Let the writer get far ahead: the server must stop reading rather than queue it all.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..FRAMES {
        let (op, payload) = read_frame(&mut reader).expect("every echo arrives");
        assert_eq!(op, 2);
        assert!(payload.len() == SIZE && payload[0] == (i % 251) as u8, "echo {i} out of order");
    }
    let _s = writer.join().unwrap();
    assert!(server.metric("tickcast_read_pauses_total") >= 1, "reading was never paused");
    assert_eq!(server.metric("tickcast_slow_consumer_closes_total"), 0);
}

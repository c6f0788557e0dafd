//! The connection state machine driven with byte vectors: no ring, no sockets.

use super::*;
use tickcast_protocol::frame::write_client_frame;
use tickcast_protocol::handshake::ClientHandshake;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The limits every test here runs with (small, so limits are easy to reach).
static HTTP: std::sync::LazyLock<crate::http::HttpOptions> = std::sync::LazyLock::new(Default::default);

fn env(stats: &WorkerStats) -> Env<'_> {
    Env {
        header_limits: HeaderLimits { max_bytes: 1024, max_headers: 16 },
        echo_limits: Limits { max_frame: 1024, max_message: 2048 },
        ws_limits: Limits { max_frame: 1024, max_message: 1024 },
        max_body: 1024,
        send_queue_limit: 4096,
        stats,
        metrics: &|_| "metrics here\n".to_string(),
        publish: None,
        http: &HTTP,
    }
}

struct Harness {
    conn: Conn,
    stats: WorkerStats,
}

impl Harness {
    fn new() -> Self {
        let mut conn = Conn::default();
        conn.open(0);
        Self { conn, stats: WorkerStats::default() }
    }

    fn feed(&mut self, data: &[u8]) {
        self.conn.on_data(data, &env(&self.stats));
    }

    /// Everything queued for the peer, as the peer would read it; the queue is then emptied.
    fn take_output(&mut self) -> Vec<u8> {
        let out: Vec<u8> = self.conn.sendq.segments().flat_map(|s| s.iter().copied()).collect();
        self.conn.sendq.advance(out.len());
        out
    }

    fn upgrade(&mut self) {
        self.upgrade_to("/echo", Endpoint::Echo);
    }

    fn upgrade_to(&mut self, path: &str, endpoint: Endpoint) {
        let (hs, request) = ClientHandshake::new("localhost", path, [7; 16], &[]);
        self.feed(&request);
        let out = self.take_output();
        assert_eq!(hs.parse_response(&out).unwrap(), Some(out.len()), "{}", String::from_utf8_lossy(&out));
        assert_eq!(self.conn.phase, Phase::Open(endpoint));
    }

    /// Decodes the server's frames.
    fn messages(&mut self) -> Vec<Message> {
        let out = self.take_output();
        let mut dec = MessageDecoder::new(Role::Client, Limits { max_frame: 1 << 20, max_message: 1 << 20 });
        let mut rest = &out[..];
        let mut msgs = Vec::new();
        while !rest.is_empty() {
            let (used, msg) = dec.decode(rest).expect("server frames decode");
            rest = &rest[used..];
            msgs.extend(msg);
        }
        msgs
    }
}

fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_client_frame(&mut v, opcode, payload, MASK);
    v
}

fn close_code(msg: &Message) -> Option<u16> {
    match msg {
        Message::Close(Some(c)) => Some(c.code.0),
        _ => None,
    }
}

#[test]
fn healthz_keep_alive_and_pipelining() {
    let mut h = Harness::new();
    h.feed(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = String::from_utf8(h.take_output()).unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert_eq!(h.conn.phase, Phase::Http);
    h.feed(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let out = String::from_utf8(h.take_output()).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert_eq!(h.conn.phase, Phase::Draining);
}

#[test]
fn request_split_across_reads_is_buffered_then_released() {
    let mut h = Harness::new();
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for chunk in req.chunks(5) {
        h.feed(chunk);
    }
    assert!(String::from_utf8(h.take_output()).unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(h.conn.buffered_bytes(), 0);
}

#[test]
fn oversized_head_gets_431() {
    let mut h = Harness::new();
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    req.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 40).flatten());
    h.feed(&req);
    let out = String::from_utf8(h.take_output()).unwrap();
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert_eq!(h.conn.phase, Phase::Draining);
}

#[test]
fn bad_handshakes_get_their_status() {
    let cases: [(&[u8], &str); 3] = [
        (b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426"),
        (
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "HTTP/1.1 426",
        ),
        (
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (req, status) in cases {
        let mut h = Harness::new();
        h.feed(req);
        let out = String::from_utf8(h.take_output()).unwrap();
        assert!(out.starts_with(status), "{out}");
        assert_eq!(h.conn.phase, Phase::Draining);
    }
}

#[test]
fn echo_text_binary_and_ping() {
    let mut h = Harness::new();
    h.upgrade();
    let mut input = client_frame(OpCode::Text, b"hello");
    input.extend(client_frame(OpCode::Binary, &[0, 1, 2]));
    input.extend(client_frame(OpCode::Ping, b"p"));
    h.feed(&input);
    assert_eq!(
        h.messages(),
        vec![
            Message::Text(Bytes::from_static(b"hello")),
            Message::Binary(Bytes::from_static(&[0, 1, 2])),
            Message::Pong(Bytes::from_static(b"p")),
        ]
    );
    assert!(h.conn.decoder.as_ref().unwrap().is_idle());
}

#[test]
fn frames_right_behind_the_upgrade_request_are_served() {
    let mut h = Harness::new();
    let (_, mut input) = ClientHandshake::new("localhost", "/echo", [9; 16], &[]);
    input.extend(client_frame(OpCode::Text, b"early"));
    h.feed(&input);
    let out = h.take_output();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(out.ends_with(b"early"));
    assert_eq!(out.len(), head_end + 2 + 5);
}

#[test]
fn close_is_echoed_then_draining() {
    let mut h = Harness::new();
    h.upgrade();
    h.feed(&client_frame(OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']));
    assert_eq!(h.messages().iter().map(close_code).collect::<Vec<_>>(), vec![Some(1000)]);
    assert_eq!(h.conn.phase, Phase::Draining);
    // Anything after the close is ignored.
    h.feed(&client_frame(OpCode::Text, b"late"));
    assert!(h.take_output().is_empty());
}

#[test]
fn protocol_errors_map_to_close_codes() {
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (unmasked, 1002),
        (client_frame(OpCode::Text, &[0xff, 0xfe]), 1007),
        (client_frame(OpCode::Binary, &[0; 1500]), 1009),
        (client_frame(OpCode::Close, &[0x03]), 1002),
    ];
    for (input, code) in cases {
        let mut h = Harness::new();
        h.upgrade();
        h.feed(&input);
        let msgs = h.messages();
        assert_eq!(msgs.iter().map(close_code).collect::<Vec<_>>(), vec![Some(code)], "{msgs:?}");
        assert_eq!(h.conn.phase, Phase::Draining);
        assert_eq!(h.stats.protocol_errors.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn echo_replies_past_the_limit_pause_reading_instead_of_dropping() {
    let mut h = Harness::new();
    h.upgrade();
    let frame = client_frame(OpCode::Binary, &[1; 1000]);
    for _ in 0..10 {
        h.feed(&frame); // the peer does not read its echoes
    }
    assert!(h.conn.read_paused, "reading must pause past the limit");
    assert_eq!(h.conn.phase, Phase::Open(Endpoint::Echo));
    let msgs = h.messages();
    assert_eq!(msgs.len(), 10, "every echo is kept");
    assert_eq!(h.stats.slow_consumer_closes.load(Ordering::Relaxed), 0);
}

#[test]
fn slow_consumer_of_server_frames_is_closed_with_1013_and_queue_stays_bounded() {
    let mut h = Harness::new();
    h.upgrade();
    let stats = WorkerStats::default();
    let env = env(&stats);
    let frame = frame::server_frame(OpCode::Text, &[b'x'; 1000]);
    let mut accepted = 0;
    while h.conn.queue(frame.clone(), &env) {
        accepted += 1;
        assert!(accepted < 100, "the queue never filled");
    }
    assert!(h.conn.sendq.pending_bytes() <= 4096 + 128);
    assert_eq!(stats.slow_consumer_closes.load(Ordering::Relaxed), 1);
    assert_eq!(h.conn.phase, Phase::Draining);
    let msgs = h.messages();
    assert_eq!(msgs.last().and_then(close_code), Some(1013));
}

#[test]
fn server_initiated_close_waits_for_the_peer() {
    let mut h = Harness::new();
    h.upgrade();
    h.conn.start_close(CloseCode::GOING_AWAY, "bye");
    assert_eq!(h.messages().iter().map(close_code).collect::<Vec<_>>(), vec![Some(1001)]);
    assert_eq!(h.conn.phase, Phase::Closing);
    h.feed(&client_frame(OpCode::Text, b"ignored"));
    assert!(h.take_output().is_empty());
    h.feed(&client_frame(OpCode::Close, &[0x03, 0xe9]));
    assert!(h.take_output().is_empty(), "no second close frame");
    assert_eq!(h.conn.phase, Phase::Draining);
}

#[test]
fn released_slot_owns_no_memory_and_bumps_generation() {
    let mut h = Harness::new();
    h.upgrade();
    let generation = h.conn.generation;
    h.conn.release();
    assert!(!h.conn.in_use);
    assert!(h.conn.decoder.is_none() && h.conn.head.capacity() == 0 && h.conn.sendq.is_empty());
    h.conn.open(5);
    assert_eq!(h.conn.generation, generation + 1);
    assert!(std::mem::size_of::<Conn>() <= 256, "Conn is {} bytes", std::mem::size_of::<Conn>());
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = data;
        for &c in cuts {
            if rest.is_empty() {
                break;
            }
            let n = c.min(rest.len());
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            out.push(rest.to_vec());
        }
        out
    }

    proptest! {
        /// Whatever bytes arrive, in whatever pieces, before or after the upgrade, the
        /// connection answers or fails them by the RFC, never panics, and keeps its buffers
        /// within the limits.
        #[test]
        fn arbitrary_input_never_panics(
            upgraded in 0u8..3,
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(1usize..700, 0..12),
        ) {
            let mut h = Harness::new();
            match upgraded {
                1 => h.upgrade(),
                2 => h.upgrade_to("/ws?channels=a,b.*&since=a:3", Endpoint::Ws),
                _ => {}
            }
            for piece in chunks(&data, &cuts) {
                h.feed(&piece);
                prop_assert!(h.conn.buffered_bytes() <= 4096, "buffered {}", h.conn.buffered_bytes());
                let _ = h.take_output();
            }
        }

        /// Valid requests and frames mixed with junk: still no panic.
        #[test]
        fn near_valid_input_never_panics(
            junk in proptest::collection::vec(any::<u8>(), 0..64),
            at in 0usize..200,
        ) {
            let mut h = Harness::new();
            h.upgrade_to("/ws", Endpoint::Ws);
            let mut input = client_frame(OpCode::Text, br#"{"type":"subscribe","channels":["a"]}"#);
            input.extend(client_frame(OpCode::Ping, b"x"));
            let at = at.min(input.len());
            input.splice(at..at, junk);
            h.feed(&input);
            let _ = h.take_output();
        }
    }
}

/// Drives `io::next_ops` as the worker does after an event, recording the ops as started.
fn next(h: &mut Harness) -> super::io::Ops {
    let ops = super::io::next_ops(&h.conn.io, h.conn.wants());
    h.conn.io.begin(ops);
    ops
}

/// The ring's part, played by hand: a request that asks to close gets its answer out, then
/// our FIN, reading on until the peer's EOF, then exactly one close.
#[test]
fn a_closing_request_flushes_then_fins_then_closes_on_eof() {
    use super::io::{Ops, Recv};
    let mut h = Harness::new();
    assert_eq!(next(&mut h), Ops { arm_recv: true, ..Ops::default() });
    assert!(h.conn.io.arm_now(h.conn.wants().read));
    h.feed(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(h.conn.phase, Phase::Draining);
    assert_eq!(next(&mut h), Ops { list_send: true, ..Ops::default() }, "the answer first, no FIN yet");
    assert!(h.conn.io.flush_now(h.conn.wants()));
    h.conn.io.sending(crate::runtime::sendpool::NO_SEND_BUF);
    let pending = h.conn.sendq.pending_bytes();
    assert_eq!(next(&mut h), Ops::default(), "nothing while the send is in flight");
    h.conn.io.send_done();
    assert_eq!(h.conn.on_sent(pending as i32, 4096), pending);
    assert_eq!(next(&mut h), Ops { shutdown: true, ..Ops::default() });
    assert_eq!(h.conn.io.recv, Recv::Armed, "reading goes on until EOF");
    // EOF: the receive's final completion (result 0) gives up the connection.
    h.conn.io.recv_ended();
    h.conn.abort();
    assert_eq!(next(&mut h), Ops { close: true, ..Ops::default() });
    assert_eq!(next(&mut h), Ops::default(), "closed once");
}

/// Echo replies past the send-queue limit cancel the receive; it is armed again once the
/// replies drained to half the limit and the cancelled receive ended.
#[test]
fn paused_reading_cancels_the_receive_and_resumes_after_the_drain() {
    use super::io::Ops;
    let mut h = Harness::new();
    h.upgrade();
    next(&mut h);
    assert!(h.conn.io.arm_now(true));
    let frame = client_frame(OpCode::Binary, &[1; 1000]);
    for _ in 0..10 {
        h.feed(&frame);
    }
    assert!(h.conn.read_paused);
    let ops = next(&mut h);
    assert_eq!(ops, Ops { cancel_recv: true, list_send: true, ..Ops::default() });
    h.conn.io.recv_ended(); // ECANCELED, final
    assert_eq!(next(&mut h), Ops::default(), "still paused: not re-armed");
    assert!(h.conn.io.flush_now(h.conn.wants()));
    h.conn.io.sending(0);
    h.conn.io.send_done();
    let pending = h.conn.sendq.pending_bytes();
    h.conn.on_sent(pending as i32, 4096);
    assert!(!h.conn.read_paused, "drained below half the limit");
    assert_eq!(next(&mut h), Ops { arm_recv: true, ..Ops::default() });
}

/// A send error gives the connection up; the queue goes once the kernel is done with it.
#[test]
fn a_failed_send_tears_down() {
    let mut h = Harness::new();
    h.upgrade();
    h.conn.io.sending(0);
    h.conn.reply(
        &Control::Error { id: None, code: ErrorCode::BadRequest, message: "x".into() },
        &env(&h.stats),
    );
    h.conn.io.send_done();
    assert_eq!(h.conn.on_sent(-libc::EPIPE, 4096), 0);
    assert_eq!(h.conn.phase, Phase::Teardown);
    assert!(h.conn.sendq.is_empty(), "nothing is kept for a peer that is gone");
    assert_eq!(next(&mut h), super::io::Ops { close: true, ..Default::default() });
}

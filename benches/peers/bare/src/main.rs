//! `peer-bare`: the kernel's cost floor for a WebSocket broadcast, "with no WebSocket logic at
//! all". One thread, one epoll (mio) loop, blocking nothing:
//!
//! * `GET /ws` (query ignored): the RFC 6455 handshake (`tickcast_protocol::handshake`), then the
//!   connection is a subscriber. What it sends is read and discarded; EOF closes it.
//! * `POST /publish` or `POST /publish/<anything>`: the body is framed ONCE as a text frame
//!   (`tickcast_protocol::frame::server_frame`) and written with ONE `write` syscall per
//!   subscriber, in subscription order; answers `{"seq":N}`. HTTP/1.1 keep-alive, pipelined
//!   requests are answered in order.
//! * `GET /echo`: echoes every data frame (text, binary, continuation: same opcode and FIN),
//!   answers pings with pongs and a close with a close.
//! * `GET /healthz`: `ok`.
//!
//! Slow subscribers: nothing is queued in user space except the unsent tail of a frame the
//! kernel accepted only in part. A subscriber is disconnected when its socket send buffer cannot
//! take a frame at all (`EAGAIN`), or when the next frame is published while the tail of the
//! previous one is still waiting: it is then more than a whole kernel send buffer behind.
//! No coalescing (one `write` per frame per subscriber), no ping/pong timers, no UTF-8 checks.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tickcast_protocol::frame::{self, HeaderStatus, MAX_HEADER_LEN, OpCode, Role};
use tickcast_protocol::handshake::{self, HandshakeError};
use tickcast_protocol::http::{self, HeaderLimits};
use tickcast_protocol::mask::apply_mask;

/// Largest publish body accepted (bytes).
const BODY_MAX_BYTES: usize = 1024 * 1024;
/// Largest frame accepted on `/echo` (bytes).
const ECHO_MAX_FRAME: u64 = 16 * 1024 * 1024;
const LISTENER: Token = Token(usize::MAX);

#[derive(Parser, Debug)]
#[command(version, about = "Bare broadcast peer: one frame built once, one write per subscriber")]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 9005)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
}

enum State {
    /// Before an upgrade: plain HTTP/1.1 requests (publish, healthz) or the handshake.
    Http { buf: Vec<u8>, out: Vec<u8>, close: bool },
    /// A subscriber: its index in `Server::subs` and the unsent tail of a partial write.
    Sub { pos: usize, tail: Option<(Bytes, usize)> },
    /// An echo connection: undecoded input and unsent output.
    Echo { buf: Vec<u8>, out: Vec<u8>, close: bool },
}

struct Conn {
    stream: TcpStream,
    state: State,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots of the subscribers, in subscription order.
    subs: Vec<usize>,
    seq: u64,
    scratch: Box<[u8]>,
    /// Subscribers disconnected because they could not keep up.
    dropped_slow: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile_limit();
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let mut server = Server {
        poll: Poll::new()?,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        subs: Vec::new(),
        seq: 0,
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        dropped_slow: 0,
    };
    server.poll.registry().register(&mut server.listener, LISTENER, Interest::READABLE)?;
    println!("peer-bare listening on {}", server.listener.local_addr()?);
    server.run()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (10,000+ subscribers need it).
fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read above; failure leaves the limit unchanged.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

impl Server {
    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept();
                    continue;
                }
                let slot = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(slot);
                }
                if event.is_writable() {
                    self.on_writable(slot);
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    // Edge-triggered; HTTP and echo connections want both directions.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self.poll.registry().register(&mut stream, Token(slot), interest).is_err() {
                        self.free.push(slot);
                        continue;
                    }
                    let state = State::Http { buf: Vec::new(), out: Vec::new(), close: false };
                    self.conns[slot] = Some(Conn { stream, state });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Out of descriptors and the like: keep serving the connections we have.
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let State::Sub { pos, .. } = conn.state {
            self.subs.swap_remove(pos);
            if let Some(&moved) = self.subs.get(pos)
                && let Some(Conn { state: State::Sub { pos: p, .. }, .. }) = &mut self.conns[moved]
            {
                *p = pos;
            }
        }
        self.free.push(slot);
        // Dropping the stream closes the socket, which also removes it from the epoll set.
    }

    /// Reads everything available into `buf`. `Ok(false)`: the peer closed its side.
    fn fill(stream: &mut TcpStream, scratch: &mut [u8], buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
        loop {
            match stream.read(scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    buf.extend_from_slice(&scratch[..n]);
                    if buf.len() > limit {
                        return Err(io::Error::new(ErrorKind::InvalidData, "input too large"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn on_readable(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        match &mut conn.state {
            State::Sub { .. } => {
                // Whatever a subscriber sends is discarded; EOF or an error closes it.
                loop {
                    match conn.stream.read(&mut self.scratch) {
                        Ok(0) => return self.close(slot),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return self.close(slot),
                    }
                }
            }
            State::Echo { buf, out, close } => {
                let open = Self::fill(&mut conn.stream, &mut self.scratch, buf, ECHO_MAX_FRAME as usize + 64);
                let ok = matches!(open, Ok(true)) && echo_frames(buf, out, close).is_ok();
                if !ok {
                    return self.close(slot);
                }
                self.flush_out(slot);
            }
            State::Http { buf, .. } => {
                let limit = BODY_MAX_BYTES + HeaderLimits::default().max_bytes + 64 * 1024;
                match Self::fill(&mut conn.stream, &mut self.scratch, buf, limit) {
                    Ok(true) => self.serve_http(slot),
                    Ok(false) => {
                        // Answer what was complete, then close.
                        self.serve_http(slot);
                        self.close(slot);
                    }
                    Err(_) => self.close(slot),
                }
            }
        }
    }

    /// Answers every complete request in the buffer (pipelining), upgrading on a handshake.
    fn serve_http(&mut self, slot: usize) {
        let mut bodies = Vec::new();
        let mut upgrade_to = None;
        {
            let Some(Conn { state: State::Http { buf, out, close }, .. }) = &mut self.conns[slot] else {
                return;
            };
            let limits = HeaderLimits::default();
            while !*close {
                let req = match http::parse_request(buf, &limits) {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(e) => {
                        HandshakeError::Http(e).write_response(out);
                        *close = true;
                        break;
                    }
                };
                let path = req.path();
                if handshake::is_upgrade_request(&req) {
                    let echo = match path {
                        "/ws" => false,
                        "/echo" => true,
                        _ => {
                            http::write_response(out, 404, &[], b"", false);
                            *close = true;
                            break;
                        }
                    };
                    match handshake::validate_upgrade(&req) {
                        Ok(upgrade) => {
                            handshake::write_accept_response(out, &upgrade, None);
                            buf.drain(..req.header_len);
                            upgrade_to = Some(echo);
                        }
                        Err(e) => {
                            e.write_response(out);
                            *close = true;
                        }
                    }
                    break;
                }
                let content_length = match req.header("content-length").map(parse_len) {
                    None => 0,
                    Some(Some(n)) if n <= BODY_MAX_BYTES => n,
                    Some(_) => {
                        http::write_response(out, 413, &[], b"", false);
                        *close = true;
                        break;
                    }
                };
                let end = req.header_len + content_length;
                if buf.len() < end {
                    break;
                }
                let keep_alive = req.keep_alive();
                if req.method == "POST" && (path == "/publish" || path.starts_with("/publish/")) {
                    self.seq += 1;
                    bodies.push(frame::server_frame(OpCode::Text, &buf[req.header_len..end]));
                    let mut answer = Vec::with_capacity(32);
                    answer.extend_from_slice(b"{\"seq\":");
                    answer.extend_from_slice(self.seq.to_string().as_bytes());
                    answer.push(b'}');
                    http::write_response(
                        out,
                        200,
                        &[("Content-Type", "application/json")],
                        &answer,
                        keep_alive,
                    );
                } else if path == "/healthz" {
                    http::write_response(out, 200, &[("Content-Type", "text/plain")], b"ok", keep_alive);
                } else {
                    http::write_response(out, 404, &[], b"", keep_alive);
                }
                buf.drain(..end);
                *close |= !keep_alive;
            }
        }
        // Broadcast before answering the publisher.
        for frame in bodies {
            self.broadcast(&frame);
        }
        if let Some(echo) = upgrade_to {
            self.upgrade(slot, echo);
        }
        self.flush_out(slot);
    }

    fn upgrade(&mut self, slot: usize, echo: bool) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let State::Http { buf, out, .. } = &mut conn.state else {
            return;
        };
        let (buf, out) = (std::mem::take(buf), std::mem::take(out));
        if echo {
            conn.state = State::Echo { buf, out, close: false };
            // Frames that came with the handshake.
            if let State::Echo { buf, out, close } = &mut conn.state
                && echo_frames(buf, out, close).is_err()
            {
                self.close(slot);
            }
            return;
        }
        // The 101 is tiny and the socket fresh: it goes out whole (else the client is broken).
        let sent = matches!(conn.stream.write(&out), Ok(n) if n == out.len());
        if !sent {
            return self.close(slot);
        }
        // A subscriber only wants writable events while the tail of a partial write waits.
        if self.poll.registry().reregister(&mut conn.stream, Token(slot), Interest::READABLE).is_err() {
            return self.close(slot);
        }
        conn.state = State::Sub { pos: self.subs.len(), tail: None };
        self.subs.push(slot);
    }

    /// One `write` per subscriber of the same frame.
    fn broadcast(&mut self, frame: &Bytes) {
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        for &slot in &self.subs {
            let Some(Conn { stream, state: State::Sub { tail, .. } }) = &mut self.conns[slot] else {
                continue;
            };
            if tail.is_some() {
                // Still behind by a whole send buffer from the previous frame.
                slow.push(slot);
                continue;
            }
            loop {
                match stream.write(frame) {
                    Ok(n) if n == frame.len() => break,
                    Ok(n) => {
                        *tail = Some((frame.clone(), n));
                        // Ask for a writable event only while a tail waits.
                        let both = Interest::READABLE | Interest::WRITABLE;
                        if self.poll.registry().reregister(stream, Token(slot), both).is_err() {
                            gone.push(slot);
                        }
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // The kernel buffer is full: the subscriber is too slow.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        slow.push(slot);
                        break;
                    }
                    // The peer is gone (reset, broken pipe): not a slow consumer.
                    Err(_) => {
                        gone.push(slot);
                        break;
                    }
                }
            }
        }
        if !slow.is_empty() {
            self.dropped_slow += slow.len() as u64;
            eprintln!(
                "peer-bare: disconnected {} slow subscriber(s) whose send buffer was full ({} in all)",
                slow.len(),
                self.dropped_slow
            );
        }
        for slot in slow.into_iter().chain(gone) {
            self.close(slot);
        }
    }

    fn on_writable(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let State::Sub { tail, .. } = &mut conn.state {
            let Some((frame, off)) = tail else {
                return;
            };
            loop {
                match conn.stream.write(&frame[*off..]) {
                    Ok(n) if *off + n == frame.len() => {
                        *tail = None;
                        let readable = Interest::READABLE;
                        if self.poll.registry().reregister(&mut conn.stream, Token(slot), readable).is_err() {
                            self.close(slot);
                        }
                        return;
                    }
                    Ok(n) => *off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return self.close(slot),
                }
            }
        }
        self.flush_out(slot);
    }

    /// Writes the pending output of an HTTP or echo connection; closes it when it asked to be.
    fn flush_out(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (out, close) = match &mut conn.state {
            State::Http { out, close, .. } | State::Echo { out, close, .. } => (out, *close),
            State::Sub { .. } => return,
        };
        let mut written = 0;
        while written < out.len() {
            match conn.stream.write(&out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(slot),
            }
        }
        out.drain(..written);
        if close && out.is_empty() {
            self.close(slot);
        }
    }
}

fn parse_len(v: &[u8]) -> Option<usize> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// Echoes every complete client frame in `buf` into `out`: data frames as they came (opcode and
/// FIN kept), pings as pongs, a close as a close (then `close` is set). Errors close the socket.
fn echo_frames(buf: &mut Vec<u8>, out: &mut Vec<u8>, close: &mut bool) -> Result<(), ()> {
    let mut start = 0;
    while !*close {
        let (header, header_len) = match frame::decode_header(&buf[start..], Role::Server, ECHO_MAX_FRAME) {
            Ok(HeaderStatus::Complete { header, header_len }) => (header, header_len),
            Ok(HeaderStatus::Incomplete { .. }) => break,
            Err(_) => return Err(()),
        };
        let len = usize::try_from(header.payload_len).map_err(|_| ())?;
        let end = start + header_len + len;
        if buf.len() < end {
            break;
        }
        let payload = &mut buf[start + header_len..end];
        if let Some(mask) = header.mask {
            apply_mask(payload, mask, 0);
        }
        let (fin, opcode) = match header.opcode {
            OpCode::Pong => {
                start = end;
                continue;
            }
            OpCode::Ping => (true, OpCode::Pong),
            OpCode::Close => {
                *close = true;
                (true, OpCode::Close)
            }
            op => (header.fin, op),
        };
        let mut head = [0; MAX_HEADER_LEN];
        let n = frame::encode_header(&mut head, fin, opcode, None, len as u64);
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(payload);
        start = end;
    }
    buf.drain(..start);
    Ok(())
}

//! The per-connection state machine: HTTP request -> WebSocket open (or an SSE stream, or a
//! parked long-poll) -> closing -> draining -> teardown. Pure: it consumes received bytes and
//! fills the connection's send queue. Its I/O state and the ops that follow from it are in
//! [`io`], deadlines and timer policy in [`lifecycle`], the TLS seam in [`transport`]; the
//! worker (`runtime::worker`) only carries their decisions out.

use std::sync::Arc;

use bytes::Bytes;
#[cfg(test)]
use std::sync::atomic::Ordering;
use tickcast_protocol::envelope::{ClientOp, Control, ErrorCode};
use tickcast_protocol::frame::{self, OpCode};
use tickcast_protocol::http::{self as proto_http, HeaderLimits, Request};
use tickcast_protocol::{CloseCode, Limits, Message, MessageDecoder, Role};

use crate::http::{self, Decision, Endpoint, HttpOptions};
use crate::metrics::{self, WorkerStats};
use crate::poll::PollRequest;
use crate::publish::PublishGate;
use crate::sendq::{FrameMeta, Offer, SendQueue, SlowConsumerPolicy};

pub mod io;
pub mod lifecycle;
pub mod transport;

use io::IoState;
use lifecycle::Gauge;
use transport::Plain;

/// Where a connection is in its life. Transitions happen only in this module (and
/// [`Conn::abort`], the worker's way to give up on a connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading an HTTP request: the first one, or the next on a keep-alive connection.
    Http,
    /// WebSocket open on an endpoint.
    Open(Endpoint),
    /// An SSE stream (`/sse`): receives broadcast messages as events until either side closes.
    Sse,
    /// A long-poll waiting for news (`Conn::poll` holds the request); back to `Http` once
    /// answered.
    LongPoll,
    /// We sent a close frame and wait for the peer's (input is still parsed, data ignored).
    Closing,
    /// Nothing more to say: flush the queue, shut down our side, read until EOF or timeout.
    Draining,
    /// Given up: outstanding ops are cancelled, then the descriptor is closed.
    Teardown,
}

/// Everything a connection needs from its worker to process input.
pub struct Env<'a> {
    pub header_limits: HeaderLimits,
    pub echo_limits: Limits,
    /// Limits for client messages on `/ws`.
    pub ws_limits: Limits,
    /// Largest request body (`/publish`); 413 past it.
    pub max_body: usize,
    pub send_queue_limit: usize,
    pub stats: &'a WorkerStats,
    pub metrics: &'a dyn Fn(metrics::Format) -> String,
    /// The publish endpoints (absent where publishing is not served, e.g. unit tests).
    pub publish: Option<&'a PublishGate<'a>>,
    pub http: &'a HttpOptions,
}

/// What a connection asked for, carried out by the worker (which owns the subscriber table and
/// the hub) right after the bytes that carried it were parsed.
#[derive(Debug)]
pub enum Op {
    /// A `/ws` control message (or the URL subscription of `/ws` and `/sse`).
    Client(ClientOp),
    /// Park the long-poll in `Conn::poll` until news or its deadline.
    Park,
}

/// A connection's subscriptions, boxed so connections that never subscribe carry one pointer.
#[derive(Default, Debug)]
pub struct ConnSubs {
    /// Channel ids this connection receives.
    pub channels: Vec<u32>,
    /// Prefix patterns (`ticker.*`) this connection subscribed to.
    pub patterns: Vec<String>,
    /// An SSE stream of several channels: its position on each, for its event ids.
    pub sse_ids: Option<Box<crate::sse::SseIds>>,
}

impl ConnSubs {
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// Connection state kept in the worker's slab. Small on purpose: an idle WebSocket connection
/// owns no heap memory (no read buffer, empty send queue, idle decoder).
pub struct Conn {
    pub generation: u32,
    pub in_use: bool,
    pub phase: Phase,
    /// What the connection has in flight on the ring (receive, send, close); the worker turns
    /// it into ops with [`io::next_ops`].
    pub io: IoState,
    /// A server ping awaits any sign of life.
    pub ping_outstanding: bool,
    /// The gauge this connection is counted in until released (WebSocket or SSE).
    pub gauge: Option<Gauge>,
    /// Replies backed up past the send-queue limit: stop receiving until they drain.
    pub read_paused: bool,
    /// Accepted on a listener bound to a loopback address (may publish without a token).
    pub loopback: bool,
    /// Between the wire and the protocol (where TLS goes; a zero-sized pass-through today).
    pub transport: Plain,
    /// Subscriptions (only `/ws` and `/sse` connections that subscribed have any).
    pub subs: Option<Box<ConnSubs>>,
    /// The long-poll being served (phase `LongPoll`).
    pub poll: Option<Box<PollRequest>>,
    /// Counts this connection's long-polls: parked entries of earlier ones are stale.
    pub park_round: u32,
    /// Operations parsed but not yet carried out (see [`Op`]).
    pub ops: Vec<Op>,
    /// The one deadline that matters now (handshake, idle, pong or close); timer wheel entries
    /// that do not match it are stale.
    pub deadline_tick: u64,
    pub last_rx_tick: u64,
    /// An HTTP request head that spans several reads (empty, unallocated, otherwise).
    head: Vec<u8>,
    decoder: Option<MessageDecoder>,
    pub sendq: SendQueue,
}

impl Default for Conn {
    fn default() -> Self {
        Self {
            generation: 0,
            in_use: false,
            phase: Phase::Teardown,
            io: IoState::default(),
            ping_outstanding: false,
            gauge: None,
            read_paused: false,
            loopback: false,
            transport: Plain,
            subs: None,
            poll: None,
            park_round: 0,
            ops: Vec::new(),
            deadline_tick: 0,
            last_rx_tick: 0,
            head: Vec::new(),
            decoder: None,
            sendq: SendQueue::default(),
        }
    }
}

impl Conn {
    /// Makes a free slot a fresh connection (next generation) in the `Http` phase.
    pub fn open(&mut self, now_tick: u64) {
        let generation = self.generation.wrapping_add(1) & crate::runtime::token::GENERATION_MASK;
        *self =
            Self { generation, in_use: true, phase: Phase::Http, last_rx_tick: now_tick, ..Self::default() };
    }

    /// Frees the slot, releasing every allocation; the generation survives for the next user.
    pub fn release(&mut self) {
        let generation = self.generation;
        *self = Self { generation, ..Self::default() };
    }

    /// Holds the connection a token of `generation` was submitted for (a late completion of
    /// the slot's previous connection does not).
    pub fn is_current(&self, generation: u32) -> bool {
        self.in_use && self.generation == generation
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.phase, Phase::Open(_) | Phase::Closing)
    }

    /// An open `/ws` connection or an SSE stream: the kinds that receive broadcast messages.
    pub fn is_subscriber(&self) -> bool {
        matches!(self.phase, Phase::Open(Endpoint::Ws) | Phase::Sse)
    }

    /// A control message in this connection's wire format: a WebSocket text frame, or an SSE
    /// event named by its type.
    pub fn control_bytes(&self, control: &Control) -> Bytes {
        if self.phase == Phase::Sse {
            tickcast_protocol::fallback::control_event(control)
        } else {
            frame::server_frame(OpCode::Text, &control.to_json())
        }
    }

    /// Holds a partial message or request (so it owns a buffer right now).
    pub fn buffered_bytes(&self) -> usize {
        self.head.len() + self.decoder.as_ref().map_or(0, MessageDecoder::buffered_len)
    }

    /// Handles bytes received from the peer.
    pub fn on_data(&mut self, data: &[u8], env: &Env<'_>) {
        metrics::add(&env.stats.bytes_in, data.len() as u64);
        match self.phase {
            Phase::Http => self.on_http(data, env),
            Phase::Open(_) | Phase::Closing => self.on_websocket(data, env),
            // Requests pipelined behind a long-poll wait for its answer (bounded).
            Phase::LongPoll => {
                if self.head.len() + data.len() > env.header_limits.max_bytes + env.max_body {
                    self.refuse(431, "too much pipelined behind a long-poll\n", env);
                } else {
                    self.head.extend_from_slice(data);
                }
            }
            // An SSE client has nothing to say; Draining: the conversation is over. Bytes are
            // read only to notice EOF.
            Phase::Sse | Phase::Draining | Phase::Teardown => {}
        }
    }

    /// Answers the parked long-poll and goes back to reading requests (parsing any that were
    /// pipelined behind it).
    pub fn answer_poll(&mut self, parts: Vec<Bytes>, keep_alive: bool, env: &Env<'_>) {
        self.poll = None;
        self.park_round = self.park_round.wrapping_add(1);
        for part in parts {
            self.sendq.push_unbounded(part);
        }
        metrics::inc(&env.stats.http_requests);
        if !keep_alive {
            self.phase = Phase::Draining;
            return;
        }
        self.phase = Phase::Http;
        if !self.head.is_empty() {
            let head = std::mem::take(&mut self.head);
            self.on_http(&head, env);
        }
    }

    fn on_http(&mut self, data: &[u8], env: &Env<'_>) {
        if self.head.is_empty() {
            let used = self.parse_requests(data, env);
            if matches!(self.phase, Phase::Http | Phase::LongPoll) && used < data.len() {
                self.head = data[used..].to_vec(); // a request still arriving, or pipelined
            }
        } else {
            // Appends and keeps the same buffer: a large body arriving in many reads is copied
            // once, not once per read.
            let mut head = std::mem::take(&mut self.head);
            head.extend_from_slice(data);
            let used = self.parse_requests(&head, env);
            if matches!(self.phase, Phase::Http | Phase::LongPoll) && used < head.len() {
                head.drain(..used);
                self.head = head;
            }
        }
    }

    /// Parses and answers every complete request in `buf` (pipelining); returns the bytes
    /// consumed (the rest is a request still arriving: a head, or a body).
    fn parse_requests(&mut self, all: &[u8], env: &Env<'_>) -> usize {
        let mut buf = all;
        while self.phase == Phase::Http && !buf.is_empty() {
            let consumed = all.len() - buf.len();
            let req = match proto_http::parse_request(buf, &env.header_limits) {
                Ok(Some(req)) => req,
                Ok(None) => return consumed,
                Err(err) => {
                    self.refuse(err.status(), "bad request\n", env);
                    return all.len();
                }
            };
            let mut chunked = Vec::new();
            let total = match body_length(&req) {
                Ok(Body::Length(n)) if n > env.max_body => {
                    self.refuse(413, "request body too large\n", env);
                    return all.len();
                }
                Ok(Body::Length(n)) => req.header_len + n,
                Ok(Body::Chunked) => {
                    let rest = &buf[req.header_len..];
                    match proto_http::decode_chunked(rest, env.max_body, &mut chunked) {
                        Ok(Some(used)) => req.header_len + used,
                        Ok(None) => return consumed, // the body is still arriving
                        Err(err) => {
                            self.refuse(err.status(), &format!("{err}\n"), env);
                            return all.len();
                        }
                    }
                }
                Err((status, message)) => {
                    self.refuse(status, message, env);
                    return all.len();
                }
            };
            if buf.len() < total {
                return consumed; // the body is still arriving
            }
            let body = if req.header("transfer-encoding").is_some() {
                &chunked[..]
            } else {
                &buf[req.header_len..total]
            };
            buf = &buf[total..];
            let ctx = http::Context { metrics: env.metrics, publish: env.publish, options: env.http };
            match http::route(&req, body, &ctx) {
                Decision::Respond { response, keep_alive } => {
                    if (200..300).contains(&http_status(&response)) {
                        metrics::inc(&env.stats.http_requests);
                    } else {
                        metrics::inc(&env.stats.handshake_failures);
                    }
                    self.sendq.push_unbounded(response);
                    if !keep_alive {
                        self.phase = Phase::Draining;
                    }
                }
                Decision::RespondParts { parts, keep_alive } => {
                    // A poll answer (always 200): bounded by `--max-answer-bytes` and the
                    // worker's answer budget, so pushed past the send-queue limit.
                    metrics::inc(&env.stats.http_requests);
                    for part in parts {
                        self.sendq.push_unbounded(part);
                    }
                    if !keep_alive {
                        self.phase = Phase::Draining;
                    }
                }
                Decision::Upgrade { response, endpoint, subscribe } => {
                    self.sendq.push_unbounded(response);
                    self.phase = Phase::Open(endpoint);
                    let limits = match endpoint {
                        Endpoint::Echo => env.echo_limits,
                        Endpoint::Ws => env.ws_limits,
                    };
                    self.decoder = Some(MessageDecoder::new(Role::Server, limits));
                    if let Some(sub) = subscribe {
                        let op = ClientOp::Subscribe { id: None, channels: sub.channels, since: sub.since };
                        self.ops.push(Op::Client(op));
                    }
                    // A client may send frames right behind its upgrade request.
                    if !buf.is_empty() {
                        self.on_websocket(buf, env);
                    }
                    return all.len();
                }
                Decision::Stream { head, subscribe } => {
                    metrics::inc(&env.stats.http_requests);
                    self.sendq.push_unbounded(head);
                    self.phase = Phase::Sse;
                    let op = ClientOp::Subscribe {
                        id: None,
                        channels: subscribe.channels,
                        since: subscribe.since,
                    };
                    self.ops.push(Op::Client(op));
                    return all.len(); // nothing a client sends after it matters
                }
                Decision::Park(request) => {
                    self.poll = Some(request);
                    self.phase = Phase::LongPoll;
                    self.ops.push(Op::Park);
                    return all.len() - buf.len(); // pipelined requests wait for the answer
                }
            }
        }
        all.len() - buf.len()
    }

    /// Answers a request we cannot serve and closes once the answer is out.
    fn refuse(&mut self, status: u16, message: &str, env: &Env<'_>) {
        metrics::inc(&env.stats.handshake_failures);
        let mut out = Vec::with_capacity(128 + message.len());
        proto_http::write_response(&mut out, status, &[], message.as_bytes(), false);
        self.sendq.push_unbounded(Bytes::from(out));
        self.phase = Phase::Draining;
    }

    fn on_websocket(&mut self, mut data: &[u8], env: &Env<'_>) {
        while !data.is_empty() && matches!(self.phase, Phase::Open(_) | Phase::Closing) {
            let Some(decoder) = self.decoder.as_mut() else { return };
            match decoder.decode(data) {
                Ok((used, message)) => {
                    data = data.get(used..).unwrap_or_default();
                    match message {
                        Some(message) => self.on_message(message, env),
                        None if used == 0 => return, // defensive: no progress, wait for more
                        None => {}
                    }
                }
                Err(err) => {
                    metrics::inc(&env.stats.protocol_errors);
                    self.fail(err.close_code(), &err.to_string());
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, message: Message, env: &Env<'_>) {
        metrics::inc(&env.stats.messages_in);
        let endpoint = match self.phase {
            Phase::Open(endpoint) => endpoint,
            Phase::Closing => {
                // We already sent our close: only the peer's close matters now.
                if matches!(message, Message::Close(_)) {
                    self.phase = Phase::Draining;
                }
                return;
            }
            _ => return,
        };
        match message {
            Message::Text(payload) if endpoint == Endpoint::Ws => match ClientOp::parse(&payload) {
                Ok(op) => self.ops.push(Op::Client(op)),
                Err(error) => self.reply(&error, env),
            },
            Message::Binary(_) if endpoint == Endpoint::Ws => {
                let message = "binary messages are not understood on /ws: send JSON control messages as text";
                self.reply(
                    &Control::Error { id: None, code: ErrorCode::BadRequest, message: message.into() },
                    env,
                );
            }
            Message::Text(payload) => self.queue_data(endpoint, OpCode::Text, &payload, env),
            Message::Binary(payload) => self.queue_data(endpoint, OpCode::Binary, &payload, env),
            Message::Ping(payload) => {
                let pong = frame::server_frame(OpCode::Pong, &payload);
                self.queue_reply(pong, env);
            }
            Message::Pong(_) => {}
            Message::Close(close) => {
                // Echo the peer's status code (RFC 6455 §5.5.1), then we close TCP first.
                let reply = match close {
                    Some(c) => frame::server_close_frame(c.code, ""),
                    None => frame::server_frame(OpCode::Close, &[]),
                };
                self.sendq.push_unbounded(reply);
                metrics::inc(&env.stats.frames_out);
                self.phase = Phase::Draining;
            }
        }
    }

    fn queue_data(&mut self, endpoint: Endpoint, opcode: OpCode, payload: &[u8], env: &Env<'_>) {
        match endpoint {
            Endpoint::Echo => {
                let frame = frame::server_frame(opcode, payload);
                self.queue_reply(frame, env);
            }
            Endpoint::Ws => {} // handled in on_message
        }
    }

    /// Sends a control message (ack, error, notice) in the connection's wire format.
    pub fn reply(&mut self, control: &Control, env: &Env<'_>) {
        self.queue_reply(self.control_bytes(control), env);
    }

    /// Takes the operations parsed so far, for the worker to carry out.
    pub fn take_ops(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.ops)
    }

    /// Offers a broadcast frame under the channel's slow-consumer policy: past the send-queue
    /// limit the oldest queued messages are dropped (and the client told exactly which, in a
    /// `gap` notice placed where they were), or superseded messages are conflated, or the
    /// connection is closed with 1013. Every outcome is counted.
    pub fn offer_broadcast(
        &mut self,
        frame: Bytes,
        meta: FrameMeta,
        policy: SlowConsumerPolicy,
        limit: usize,
        stats: &WorkerStats,
        names: &dyn Fn(u32) -> Option<Arc<str>>,
    ) {
        match self.sendq.offer(frame, meta, policy, limit) {
            Offer::Queued => metrics::inc(&stats.frames_out),
            Offer::QueuedAfterDrops(dropped) => {
                metrics::inc(&stats.frames_out);
                for d in dropped.iter().rev() {
                    metrics::add(&stats.dropped_messages, d.to - d.from + 1);
                    metrics::inc(&stats.gap_notices);
                    let channel = names(d.channel_id).map_or_else(String::new, |n| n.to_string());
                    let notice = Control::Gap { channel, from: d.from, to: d.to };
                    self.sendq.push_front_unbounded(self.control_bytes(&notice));
                }
            }
            Offer::QueuedAfterConflating(n) => {
                metrics::inc(&stats.frames_out);
                metrics::add(&stats.conflated_messages, n as u64);
            }
            Offer::Overflow => {
                metrics::inc(&stats.slow_consumer_closes);
                self.sendq.clear_unstarted();
                self.fail(CloseCode::TRY_AGAIN_LATER, "slow consumer: send queue limit exceeded");
            }
        }
    }

    /// Queues a reply the client asked for (an echo, a pong). Replies are never dropped: past
    /// the send-queue limit the connection stops reading instead, so TCP flow control pushes
    /// back on a client that sends faster than it reads (the worker resumes reading once the
    /// queue drained to half the limit).
    fn queue_reply(&mut self, frame: Bytes, env: &Env<'_>) {
        self.sendq.push_unbounded(frame);
        metrics::inc(&env.stats.frames_out);
        if self.sendq.pending_bytes() > env.send_queue_limit && !self.read_paused {
            self.read_paused = true;
            metrics::inc(&env.stats.read_pauses);
        }
    }

    /// Queues a frame within the send-queue limit; past it the peer is a slow consumer: its
    /// unsent frames are dropped and it is closed with 1013.
    pub fn queue(&mut self, frame: Bytes, env: &Env<'_>) -> bool {
        if self.sendq.push(frame, env.send_queue_limit).is_ok() {
            metrics::inc(&env.stats.frames_out);
            return true;
        }
        metrics::inc(&env.stats.slow_consumer_closes);
        self.sendq.clear_unstarted();
        self.fail(CloseCode::TRY_AGAIN_LATER, "send queue limit exceeded");
        false
    }

    /// Fails the connection (RFC 6455 §7.1.7): send a close frame with `code`, stop reading
    /// messages, and close once it is out.
    pub fn fail(&mut self, code: CloseCode, reason: &str) {
        if matches!(self.phase, Phase::Open(_)) {
            self.sendq.push_unbounded(frame::server_close_frame(code, reason));
        }
        if self.phase != Phase::Teardown {
            self.phase = Phase::Draining;
        }
    }

    /// Starts a server-initiated close (shutdown, policy): send a close frame and wait for the
    /// peer's answer (bounded by the close timeout). Plain HTTP connections just finish.
    pub fn start_close(&mut self, code: CloseCode, reason: &str) {
        match self.phase {
            Phase::Open(_) => {
                self.sendq.push_unbounded(frame::server_close_frame(code, reason));
                self.phase = Phase::Closing;
            }
            Phase::Http | Phase::Sse | Phase::LongPoll => self.phase = Phase::Draining,
            Phase::Closing | Phase::Draining | Phase::Teardown => {}
        }
    }

    /// Keeps a quiet SSE stream alive (a comment line; nothing to answer).
    pub fn heartbeat(&mut self, env: &Env<'_>) {
        self.queue(Bytes::from_static(tickcast_protocol::fallback::SSE_HEARTBEAT), env);
    }

    /// Sends a ping to a silent client.
    pub fn ping(&mut self, env: &Env<'_>) {
        metrics::inc(&env.stats.pings_sent);
        self.ping_outstanding = true;
        self.queue(frame::server_frame(OpCode::Ping, b""), env);
    }

    /// Gives up on the connection: the worker cancels its ops and closes the descriptor.
    pub fn abort(&mut self) {
        self.phase = Phase::Teardown;
        if !self.io.send_in_flight() {
            self.sendq = SendQueue::default();
        }
        self.head = Vec::new();
        self.decoder = None;
    }
}

/// How a request's body is delimited.
enum Body {
    Length(usize),
    Chunked,
}

/// The body a request announces: `Transfer-Encoding: chunked` (and nothing else), or
/// `Content-Length` (one, numeric), or none (RFC 9112 §6.3).
fn body_length(req: &Request) -> Result<Body, (u16, &'static str)> {
    if let Some(te) = req.header("transfer-encoding") {
        // Both framings at once is how requests get smuggled past proxies: refuse it.
        if req.header("content-length").is_some() {
            return Err((400, "Transfer-Encoding and Content-Length together\n"));
        }
        if req.headers_named("transfer-encoding").count() > 1
            || !te.trim_ascii().eq_ignore_ascii_case(b"chunked")
        {
            return Err((501, "only Transfer-Encoding: chunked is supported\n"));
        }
        return Ok(Body::Chunked);
    }
    let mut lengths = req.headers_named("content-length");
    let Some(value) = lengths.next() else { return Ok(Body::Length(0)) };
    if lengths.next().is_some() {
        return Err((400, "more than one Content-Length\n"));
    }
    std::str::from_utf8(value)
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map(Body::Length)
        .ok_or((400, "invalid Content-Length\n"))
}

/// The status code of a response we wrote ("HTTP/1.1 NNN ...").
fn http_status(response: &[u8]) -> u16 {
    response.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests;

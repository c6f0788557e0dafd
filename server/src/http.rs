//! Routing of a connection's HTTP requests: which WebSocket endpoint an upgrade goes to, the
//! SSE streams, polls and long-polls, and the answers to plain requests. Takes a parsed request
//! (and its body), returns what to send and what next.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tickcast_protocol::envelope::ErrorCode;
use tickcast_protocol::http::{self, Request};
use tickcast_protocol::position::Position;
use tickcast_protocol::{fallback, handshake};

use crate::poll::{self, PollLimits, PollRequest};
use crate::publish::{self, Answer, PublishGate};
use crate::query::{Refusal, query_pairs};

/// WebSocket endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/echo`: every message comes back unchanged (conformance suites, round-trip measurements).
    Echo,
    /// `/ws`: channel subscriptions (URL and control messages) and client publishing.
    Ws,
}

/// Channels asked for in the upgrade URL: `/ws?channels=a,b.*&since=a:12`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UrlSubscription {
    pub channels: Vec<String>,
    pub since: BTreeMap<String, Position>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Send `response`; keep reading requests if `keep_alive`, else close after it is sent.
    Respond { response: Bytes, keep_alive: bool },
    /// The same, as several buffers sent in order (a poll answer: the history's envelopes are
    /// sent as the shared bytes they are, never copied).
    RespondParts { parts: Vec<Bytes>, keep_alive: bool },
    /// Send the 101 response and switch the connection to WebSocket on `endpoint`.
    Upgrade { response: Bytes, endpoint: Endpoint, subscribe: Option<UrlSubscription> },
    /// Send the event-stream head and subscribe: the connection is an SSE stream from now on.
    Stream { head: Bytes, subscribe: UrlSubscription },
    /// A long-poll with nothing to answer yet: park it until a message or its timeout.
    Park(Box<PollRequest>),
}

/// The HTTP side's settings, resolved once per worker from the configuration.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Origins allowed to read answers from another origin (CORS); `*` allows every origin.
    pub cors_origins: Vec<String>,
    /// Most channels per subscription request (`/sse`, `/poll`, `/longpoll`).
    pub max_subscriptions: usize,
    /// Most messages and bytes in one poll answer.
    pub poll_limits: poll::AnswerLimits,
    /// Bytes of poll answers this worker may hold for clients that have not read them.
    pub answer_budget: poll::AnswerBudget,
    pub longpoll_default_timeout: Duration,
    pub longpoll_max_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            max_subscriptions: 256,
            poll_limits: poll::AnswerLimits::default(),
            answer_budget: poll::AnswerBudget::default(),
            longpoll_default_timeout: Duration::from_secs(25),
            longpoll_max_timeout: Duration::from_secs(60),
        }
    }
}

/// Routing input that is not part of the request.
pub struct Context<'a> {
    /// Metrics text for `/metrics`, in the format the scraper asked for.
    pub metrics: &'a dyn Fn(crate::metrics::Format) -> String,
    /// The publish endpoints' hub and rules (absent in tests of plain routing).
    pub publish: Option<&'a PublishGate<'a>>,
    pub options: &'a HttpOptions,
}

const DEMO_HTML: &[u8] = include_bytes!("../static/index.html");
const DEMO_JS: &[u8] = include_bytes!("../static/app.js");
const DEMO_CSS: &[u8] = include_bytes!("../static/app.css");

/// Parses `channels=a,b&since=a:12,b:3` (other parameters are ignored).
pub fn parse_ws_query(query: Option<&str>) -> Result<Option<UrlSubscription>, String> {
    let Some(query) = query else { return Ok(None) };
    let mut sub = UrlSubscription::default();
    for (key, value) in query_pairs(query).map_err(|r| r.message)? {
        match key {
            "channels" => sub.channels.extend(value.split(',').filter(|c| !c.is_empty()).map(str::to_owned)),
            "since" => fallback::parse_positions(&value, &mut sub.since)?,
            _ => {}
        }
    }
    Ok((!sub.channels.is_empty()).then_some(sub))
}

fn answer(a: Answer, cors: &[(&str, &str)], keep_alive: bool) -> Decision {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(a.headers);
    headers.extend_from_slice(cors);
    respond(a.status, &headers, &a.body, keep_alive)
}

/// A JSON error answer: `{"error":{"code":...,"message":...}}`.
fn refusal(r: &Refusal, cors: &[(&str, &str)], keep_alive: bool) -> Decision {
    let body = serde_json::json!({ "error": { "code": r.code, "message": r.message } });
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(cors);
    respond(r.status, &headers, body.to_string().as_bytes(), keep_alive)
}

/// The CORS answer headers for this request's `Origin`, when `--cors-origin` allows it.
fn cors_headers<'a>(req: &Request, options: &'a HttpOptions) -> Vec<(&'static str, &'a str)> {
    let Some(origin) = req.header("origin") else { return Vec::new() };
    let allowed = options.cors_origins.iter().find(|o| *o == "*" || o.as_bytes() == origin);
    match allowed {
        Some(o) if o == "*" => vec![("Access-Control-Allow-Origin", "*")],
        // Echoing one of several allowed origins: caches must key on Origin.
        Some(o) => vec![("Access-Control-Allow-Origin", o.as_str()), ("Vary", "Origin")],
        None => Vec::new(),
    }
}

/// `OPTIONS`: what the resource allows, and a CORS preflight answer when the origin may.
fn options(req: &Request, allow: &str, ctx: &Context<'_>, keep_alive: bool) -> Decision {
    let mut headers = vec![("Allow", allow)];
    let cors = cors_headers(req, ctx.options);
    if !cors.is_empty() {
        headers.extend_from_slice(&cors);
        headers.push(("Access-Control-Allow-Methods", allow));
        headers.push(("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID"));
        headers.push(("Access-Control-Max-Age", "600"));
    }
    respond(204, &headers, b"", keep_alive)
}

/// `GET /sse`: validates the subscription, then the stream starts (or a JSON error).
fn route_sse(req: &Request, ctx: &Context<'_>, keep_alive: bool) -> Decision {
    let cors = cors_headers(req, ctx.options);
    if req.method != "GET" {
        return respond(405, &[("Allow", "GET, OPTIONS")], b"open the stream with GET\n", keep_alive);
    }
    let bad = |message: String| Refusal { status: 400, code: ErrorCode::BadRequest, message };
    let mut sub = match parse_ws_query(req.query()) {
        Ok(Some(sub)) => sub,
        Ok(None) => return refusal(&bad("name the channels: ?channels=a,b".into()), &cors, keep_alive),
        Err(message) => return refusal(&bad(message), &cors, keep_alive),
    };
    // A reconnecting EventSource sends the id of the last event it got: resume from there.
    if let Some(last) = req.header("last-event-id") {
        let parsed = std::str::from_utf8(last)
            .map_err(|_| "Last-Event-ID is not UTF-8".to_string())
            .and_then(|text| fallback::parse_positions(text, &mut sub.since));
        if let Err(message) = parsed {
            return refusal(&bad(message), &cors, keep_alive);
        }
    }
    if let Err(r) = check_names(&sub.channels, ctx.options.max_subscriptions) {
        return refusal(&r, &cors, keep_alive);
    }
    let mut head = Vec::with_capacity(256);
    fallback::write_sse_head(&mut head, &cors);
    head.extend_from_slice(fallback::SSE_RETRY);
    Decision::Stream { head: Bytes::from(head), subscribe: sub }
}

/// Checks names and patterns before a stream starts, so mistakes get a 400 rather than an
/// error event on an open stream.
fn check_names(names: &[String], max: usize) -> Result<(), Refusal> {
    if names.len() > max {
        let message = format!("at most {max} channels and patterns per connection");
        return Err(Refusal { status: 400, code: ErrorCode::TooManySubscriptions, message });
    }
    for name in names {
        let checked = if name.contains('*') {
            crate::hub::Pattern::parse(name, false).map(|_| ()).map_err(|e| (e.code(), e.to_string()))
        } else {
            crate::hub::validate_name(name).map_err(|e| (ErrorCode::InvalidChannel, e.to_string()))
        };
        if let Err((code, message)) = checked {
            return Err(Refusal { status: 400, code, message });
        }
    }
    Ok(())
}

/// `GET /poll` and `GET /longpoll`: an answer from history now, or (long-poll with nothing
/// new) a parked request.
fn route_poll(req: &Request, ctx: &Context<'_>, longpoll: bool, keep_alive: bool) -> Decision {
    let cors = cors_headers(req, ctx.options);
    let Some(gate) = ctx.publish else {
        return respond(404, &[], b"not found\n", keep_alive);
    };
    if req.method != "GET" {
        return respond(405, &[("Allow", "GET, OPTIONS")], b"poll with GET\n", keep_alive);
    }
    let limits = PollLimits {
        max_channels: ctx.options.max_subscriptions,
        default_timeout: ctx.options.longpoll_default_timeout,
        max_timeout: ctx.options.longpoll_max_timeout,
    };
    let mut request = match poll::parse(req.query(), gate.hub, limits, longpoll) {
        Ok(r) => r,
        Err(r) => return refusal(&r, &cors, keep_alive),
    };
    request.keep_alive = keep_alive;
    request.headers = cors.iter().map(|&(name, value)| (name, value.to_owned())).collect();
    let mut scratch = Vec::new();
    let answer = poll::answer(&request, ctx.options.poll_limits, &mut scratch);
    if longpoll && !answer.has_news && !request.timeout.is_zero() {
        return Decision::Park(Box::new(request));
    }
    poll_response(&request, answer, &ctx.options.answer_budget, gate.stats)
}

/// The `200` answer to a poll or long-poll, or `503` when the worker's answer budget is full
/// (clients that do not read their answers hold it).
pub fn poll_response(
    request: &PollRequest,
    answer: poll::Answer,
    budget: &poll::AnswerBudget,
    stats: &crate::metrics::WorkerStats,
) -> Decision {
    let mut headers = vec![("Content-Type", "application/json"), ("Cache-Control", "no-store")];
    headers.extend(request.headers.iter().map(|(name, value)| (*name, value.as_str())));
    let messages = answer.messages as u64;
    let mut head = Vec::with_capacity(256);
    http::write_response_head(&mut head, 200, &headers, answer.body_len, request.keep_alive);
    match answer.into_response(head, budget) {
        Some(parts) => {
            crate::metrics::add(&stats.deliveries, messages);
            Decision::RespondParts { parts, keep_alive: request.keep_alive }
        }
        None => {
            crate::metrics::inc(&stats.answers_refused);
            let busy = Refusal {
                status: 503,
                code: ErrorCode::Overloaded,
                message: "too many answers are waiting for their clients to read them; try again".into(),
            };
            let mut extra = vec![("Retry-After", "1")];
            extra.extend(request.headers.iter().map(|(name, value)| (*name, value.as_str())));
            refusal(&busy, &extra, request.keep_alive)
        }
    }
}

/// `POST /publish[/<channel>]`.
fn route_publish(
    req: &Request,
    body: &[u8],
    channel: Option<&str>,
    keep_alive: bool,
    ctx: &Context<'_>,
) -> Decision {
    let Some(gate) = ctx.publish else {
        return respond(404, &[], b"not found\n", keep_alive);
    };
    if req.method == "OPTIONS" {
        return options(req, "POST, OPTIONS", ctx, keep_alive);
    }
    if req.method != "POST" {
        return respond(405, &[("Allow", "POST, OPTIONS")], b"publish with POST\n", keep_alive);
    }
    let cors = cors_headers(req, ctx.options);
    if let Err(refusal) = gate.authorize(req) {
        return answer(refusal, &cors, keep_alive);
    }
    let result = match channel {
        Some(channel) => publish::publish_one(gate, channel, body),
        None => publish::publish_batch(gate, body),
    };
    answer(result, &cors, keep_alive)
}

fn respond(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Decision {
    let mut out = Vec::with_capacity(128 + body.len());
    http::write_response(&mut out, status, headers, body, keep_alive);
    Decision::Respond { response: Bytes::from(out), keep_alive }
}

/// Plain-HTTP responses for GET/HEAD-only resources.
fn resource(req: &Request, keep_alive: bool, content_type: &str, body: &[u8]) -> Decision {
    match req.method.as_str() {
        "OPTIONS" => respond(204, &[("Allow", "GET, HEAD, OPTIONS")], b"", keep_alive),
        "GET" => respond(200, &[("Content-Type", content_type)], body, keep_alive),
        "HEAD" => {
            // HEAD carries the GET's Content-Length without the body.
            let mut out = Vec::with_capacity(128);
            http::write_response(&mut out, 200, &[("Content-Type", content_type)], body, keep_alive);
            out.truncate(out.len() - body.len());
            Decision::Respond { response: Bytes::from(out), keep_alive }
        }
        _ => respond(405, &[("Allow", "GET, HEAD, OPTIONS")], b"method not allowed\n", keep_alive),
    }
}

/// Decides what a request gets. `body` is the request's body (the connection read it whole,
/// by `Content-Length` or chunked); a body sent elsewhere than `/publish` was not meant for
/// us, so that connection closes after the answer.
pub fn route(req: &Request, body: &[u8], ctx: &Context<'_>) -> Decision {
    let path = req.path();
    if path == "/publish" || path.starts_with("/publish/") {
        let channel = path.strip_prefix("/publish/");
        return route_publish(req, body, channel, req.keep_alive(), ctx);
    }
    let keep_alive = req.keep_alive() && body.is_empty();
    let fallback = match path {
        "/sse" => Some((None, "GET, OPTIONS")),
        "/poll" => Some((Some(false), "GET, OPTIONS")),
        "/longpoll" => Some((Some(true), "GET, OPTIONS")),
        _ => None,
    };
    if let Some((poll, allow)) = fallback {
        if req.method == "OPTIONS" {
            return options(req, allow, ctx, keep_alive);
        }
        return match poll {
            None => route_sse(req, ctx, keep_alive),
            Some(longpoll) => route_poll(req, ctx, longpoll, keep_alive),
        };
    }

    let endpoint = match path {
        "/echo" => Some(Endpoint::Echo),
        "/ws" => Some(Endpoint::Ws),
        "/healthz" => return resource(req, keep_alive, "text/plain; charset=utf-8", b"ok\n"),
        // The live demo page: plain files compiled into the binary (no build step).
        "/" | "/index.html" => return resource(req, keep_alive, "text/html; charset=utf-8", DEMO_HTML),
        "/app.js" => return resource(req, keep_alive, "text/javascript; charset=utf-8", DEMO_JS),
        "/app.css" => return resource(req, keep_alive, "text/css; charset=utf-8", DEMO_CSS),
        "/metrics" => {
            let format = crate::metrics::Format::negotiate(req.header("accept"));
            let text = (ctx.metrics)(format);
            return resource(req, keep_alive, format.content_type(), text.as_bytes());
        }
        _ => None,
    };
    let Some(endpoint) = endpoint else {
        return respond(404, &[("Content-Type", "text/plain; charset=utf-8")], b"not found\n", keep_alive);
    };
    if !handshake::is_upgrade_request(req) {
        return respond(
            426,
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            b"this endpoint speaks WebSocket only\n",
            false,
        );
    }
    let subscribe = match endpoint {
        Endpoint::Ws => match parse_ws_query(req.query()) {
            Ok(sub) => sub,
            Err(message) => return respond(400, &[], format!("{message}\n").as_bytes(), false),
        },
        Endpoint::Echo => None,
    };
    match handshake::validate_upgrade(req) {
        Ok(upgrade) => {
            let mut out = Vec::with_capacity(160);
            handshake::write_accept_response(&mut out, &upgrade, None);
            Decision::Upgrade { response: Bytes::from(out), endpoint, subscribe }
        }
        Err(err) => {
            let mut out = Vec::with_capacity(160);
            err.write_response(&mut out);
            Decision::Respond { response: Bytes::from(out), keep_alive: false }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_query() {
        assert_eq!(parse_ws_query(None), Ok(None));
        assert_eq!(parse_ws_query(Some("x=1")), Ok(None));
        let sub = parse_ws_query(Some("channels=a,ticker.*&since=a:12")).unwrap().unwrap();
        assert_eq!(sub.channels, vec!["a", "ticker.*"]);
        assert_eq!(sub.since.get("a"), Some(&Position::seq(12)));
        let sub = parse_ws_query(Some("channels=a%2Cb&since=a%3A3%2Cb%3A4")).unwrap().unwrap();
        assert_eq!(sub.channels, vec!["a", "b"]);
        assert_eq!(sub.since.len(), 2);
        assert!(parse_ws_query(Some("channels=a&since=a:x")).is_err());
        assert!(parse_ws_query(Some("channels=a&since=a")).is_err());
        assert!(parse_ws_query(Some("channels=%zz")).is_err());
    }
}

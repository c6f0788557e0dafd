//! Routing of a connection's HTTP requests: which WebSocket endpoint an upgrade goes to, and the
//! answers to plain requests. Takes a parsed request (and its body), returns what to send and
//! what next.

use std::collections::BTreeMap;

use bytes::Bytes;
use tickcast_protocol::handshake;
use tickcast_protocol::http::{self, Request};

use crate::publish::{self, Answer, PublishGate};

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
    pub since: BTreeMap<String, u64>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Send `response`; keep reading requests if `keep_alive`, else close after it is sent.
    Respond { response: Bytes, keep_alive: bool },
    /// Send the 101 response and switch the connection to WebSocket on `endpoint`.
    Upgrade { response: Bytes, endpoint: Endpoint, subscribe: Option<UrlSubscription> },
}

/// Routing input that is not part of the request.
pub struct Context<'a> {
    /// Metrics text for `/metrics`.
    pub metrics: &'a dyn Fn() -> String,
    /// The publish endpoints' hub and rules (absent in tests of plain routing).
    pub publish: Option<&'a PublishGate<'a>>,
}

const DEMO_HTML: &[u8] = include_bytes!("../static/index.html");
const DEMO_JS: &[u8] = include_bytes!("../static/app.js");
const DEMO_CSS: &[u8] = include_bytes!("../static/app.css");

/// Decodes the few escapes a channel list may carry (`%2C`, `%3A`, `%2A`, ...).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `channels=a,b&since=a:12,b:3` (other parameters are ignored).
pub fn parse_ws_query(query: Option<&str>) -> Result<Option<UrlSubscription>, String> {
    let Some(query) = query else { return Ok(None) };
    let mut sub = UrlSubscription::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| format!("bad escape in {key}"))?;
        match key {
            "channels" => sub.channels.extend(value.split(',').filter(|c| !c.is_empty()).map(str::to_owned)),
            "since" => {
                for item in value.split(',').filter(|c| !c.is_empty()) {
                    let (channel, seq) = item
                        .rsplit_once(':')
                        .and_then(|(c, n)| Some((c, n.parse::<u64>().ok()?)))
                        .ok_or_else(|| format!("since expects channel:seq pairs, got {item:?}"))?;
                    sub.since.insert(channel.to_owned(), seq);
                }
            }
            _ => {}
        }
    }
    Ok((!sub.channels.is_empty()).then_some(sub))
}

fn answer(a: Answer, keep_alive: bool) -> Decision {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(a.headers);
    respond(a.status, &headers, &a.body, keep_alive)
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
    if req.method != "POST" {
        return respond(405, &[("Allow", "POST")], b"publish with POST\n", keep_alive);
    }
    if let Err(refusal) = gate.authorize(req) {
        return answer(refusal, keep_alive);
    }
    let result = match channel {
        Some(channel) => publish::publish_one(gate, channel, body),
        None => publish::publish_batch(gate, body),
    };
    answer(result, keep_alive)
}

fn respond(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Decision {
    let mut out = Vec::with_capacity(128 + body.len());
    http::write_response(&mut out, status, headers, body, keep_alive);
    Decision::Respond { response: Bytes::from(out), keep_alive }
}

/// Plain-HTTP responses for GET/HEAD-only resources.
fn resource(req: &Request, keep_alive: bool, content_type: &str, body: &[u8]) -> Decision {
    match req.method.as_str() {
        "GET" => respond(200, &[("Content-Type", content_type)], body, keep_alive),
        "HEAD" => {
            // HEAD carries the GET's Content-Length without the body.
            let mut out = Vec::with_capacity(128);
            http::write_response(&mut out, 200, &[("Content-Type", content_type)], body, keep_alive);
            out.truncate(out.len() - body.len());
            Decision::Respond { response: Bytes::from(out), keep_alive }
        }
        _ => respond(405, &[("Allow", "GET, HEAD")], b"method not allowed\n", keep_alive),
    }
}

/// Decides what a request gets. `body` is the request's body (the connection read
/// `Content-Length` bytes of it); requests with a body elsewhere than `/publish` are answered
/// and the connection closed, since their body was not meant for us.
pub fn route(req: &Request, body: &[u8], ctx: &Context<'_>) -> Decision {
    let path = req.path();
    if path == "/publish" || path.starts_with("/publish/") {
        let channel = path.strip_prefix("/publish/");
        return route_publish(req, body, channel, req.keep_alive(), ctx);
    }
    let has_body = !body.is_empty() || req.header("transfer-encoding").is_some();
    let keep_alive = req.keep_alive() && !has_body;

    let endpoint = match path {
        "/echo" => Some(Endpoint::Echo),
        "/ws" => Some(Endpoint::Ws),
        "/healthz" => return resource(req, keep_alive, "text/plain; charset=utf-8", b"ok\n"),
        // The live demo page: plain files compiled into the binary (no build step).
        "/" | "/index.html" => return resource(req, keep_alive, "text/html; charset=utf-8", DEMO_HTML),
        "/app.js" => return resource(req, keep_alive, "text/javascript; charset=utf-8", DEMO_JS),
        "/app.css" => return resource(req, keep_alive, "text/css; charset=utf-8", DEMO_CSS),
        "/metrics" => {
            let text = (ctx.metrics)();
            return resource(req, keep_alive, "text/plain; version=0.0.4; charset=utf-8", text.as_bytes());
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
        assert_eq!(sub.since.get("a"), Some(&12));
        let sub = parse_ws_query(Some("channels=a%2Cb&since=a%3A3%2Cb%3A4")).unwrap().unwrap();
        assert_eq!(sub.channels, vec!["a", "b"]);
        assert_eq!(sub.since.len(), 2);
        assert!(parse_ws_query(Some("channels=a&since=a:x")).is_err());
        assert!(parse_ws_query(Some("channels=a&since=a")).is_err());
        assert!(parse_ws_query(Some("channels=%zz")).is_err());
    }
}

//! Routing of a connection's HTTP requests: which WebSocket endpoint an upgrade goes to, and the
//! answers to plain requests. Pure: takes a parsed request, returns what to send and what next.

use bytes::Bytes;
use tickcast_protocol::handshake;
use tickcast_protocol::http::{self, Request};

/// WebSocket endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/echo`: every message comes back unchanged (conformance suites, round-trip measurements).
    Echo,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Send `response`; keep reading requests if `keep_alive`, else close after it is sent.
    Respond { response: Bytes, keep_alive: bool },
    /// Send the 101 response and switch the connection to WebSocket on `endpoint`.
    Upgrade { response: Bytes, endpoint: Endpoint },
}

/// Routing input that is not part of the request: metrics text for `/metrics`.
pub struct Context<'a> {
    pub metrics: &'a dyn Fn() -> String,
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

/// Decides what a request gets.
pub fn route(req: &Request, ctx: &Context<'_>) -> Decision {
    // A request with a body we do not read would desynchronise a keep-alive stream: answer it
    // and close instead.
    let has_body = req.header("transfer-encoding").is_some()
        || req.header("content-length").is_some_and(|v| v.iter().any(|&b| b != b'0'));
    let keep_alive = req.keep_alive() && !has_body;

    let endpoint = match req.path() {
        "/echo" => Some(Endpoint::Echo),
        "/healthz" => return resource(req, keep_alive, "text/plain; charset=utf-8", b"ok\n"),
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
    match handshake::validate_upgrade(req) {
        Ok(upgrade) => {
            let mut out = Vec::with_capacity(160);
            handshake::write_accept_response(&mut out, &upgrade, None);
            Decision::Upgrade { response: Bytes::from(out), endpoint }
        }
        Err(err) => {
            let mut out = Vec::with_capacity(160);
            err.write_response(&mut out);
            Decision::Respond { response: Bytes::from(out), keep_alive: false }
        }
    }
}

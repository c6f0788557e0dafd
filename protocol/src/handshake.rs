//! The opening handshake (RFC 6455 §4): server-side validation of the upgrade request and the
//! 101 response, and the client side used by the load generator.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::http::{self, HttpError, Request, has_token, write_header, write_status_line};

/// The GUID appended to the key before hashing (§1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

/// `Sec-WebSocket-Accept` for `key`: base64(sha1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let raw = accept_key_bytes(key);
    String::from_utf8_lossy(&raw).into_owned()
}

/// [`accept_key`] without allocating.
pub fn accept_key_bytes(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut out = [0; ACCEPT_LEN];
    // 20 bytes always encode to exactly 28, so this cannot fail.
    let _ = STANDARD.encode_slice(digest, &mut out);
    out
}

/// A validated upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key` as sent (24 base64 characters).
    pub key: String,
    /// `Origin`, for the caller's allow-list (browsers always send it).
    pub origin: Option<String>,
    /// Requested subprotocols (`Sec-WebSocket-Protocol`), in the client's order of preference.
    pub protocols: Vec<String>,
    /// Offered extensions (`Sec-WebSocket-Extensions`), each with its parameters, e.g.
    /// `permessage-deflate; client_max_window_bits`. None is accepted yet.
    pub extensions: Vec<String>,
}

/// Why an upgrade request (server side) or a 101 response (client side) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Method other than GET (405, with `Allow: GET`).
    NotGet,
    /// HTTP/1.0 (400).
    NotHttp11,
    /// No `Host` header (400).
    MissingHost,
    /// A header that must appear once appeared several times (400).
    DuplicateHeader(&'static str),
    /// No `websocket` token in `Upgrade` (426 with `Upgrade: websocket`: a plain request to a
    /// WebSocket endpoint is told which protocol it needs).
    NotUpgrade,
    /// No `Upgrade` token in `Connection` (400).
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` (400).
    MissingKey,
    /// A key that does not decode to 16 bytes (400).
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13 (426 with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The head itself was malformed or too large (400, 414, 431).
    Http(HttpError),
    /// Client side: the response status was not 101.
    BadStatus(u16),
    /// Client side: `Sec-WebSocket-Accept` missing or wrong.
    BadAccept,
    /// Client side: the server selected an extension the client did not offer.
    UnexpectedExtension,
    /// Client side: the server selected a subprotocol the client did not offer.
    UnexpectedProtocol,
}

impl HandshakeError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotGet => 405,
            Self::NotUpgrade | Self::UnsupportedVersion => 426,
            Self::Http(e) => e.status(),
            _ => 400,
        }
    }

    /// Appends the complete error response (with `Connection: close`).
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let extra: &[(&str, &str)] = match self {
            Self::NotGet => &[("Allow", "GET")],
            Self::NotUpgrade => &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            Self::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        };
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
        headers.extend_from_slice(extra);
        let body = format!("{self}\n");
        http::write_response(out, self.status(), &headers, body.as_bytes(), false);
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotGet => f.write_str("a WebSocket handshake must use GET"),
            Self::NotHttp11 => f.write_str("a WebSocket handshake needs HTTP/1.1"),
            Self::MissingHost => f.write_str("missing Host header"),
            Self::DuplicateHeader(h) => write!(f, "duplicate {h} header"),
            Self::NotUpgrade => f.write_str("expected Upgrade: websocket"),
            Self::MissingConnectionUpgrade => f.write_str("expected Connection: Upgrade"),
            Self::MissingKey => f.write_str("missing Sec-WebSocket-Key"),
            Self::BadKey => f.write_str("Sec-WebSocket-Key must be 16 bytes in base64"),
            Self::UnsupportedVersion => f.write_str("only Sec-WebSocket-Version 13 is supported"),
            Self::Http(e) => e.fmt(f),
            Self::BadStatus(s) => write!(f, "expected status 101, got {s}"),
            Self::BadAccept => f.write_str("missing or wrong Sec-WebSocket-Accept"),
            Self::UnexpectedExtension => f.write_str("server selected an extension not offered"),
            Self::UnexpectedProtocol => f.write_str("server selected a subprotocol not offered"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<HttpError> for HandshakeError {
    fn from(e: HttpError) -> Self {
        Self::Http(e)
    }
}

/// Whether the request asks for a WebSocket upgrade (its `Upgrade` lists `websocket`), so a
/// router can tell WebSocket from plain HTTP before validating.
pub fn is_upgrade_request(req: &Request) -> bool {
    req.has_token("upgrade", "websocket")
}

/// Performs every check of §4.2.1 on a request, in the RFC's order.
pub fn validate_upgrade(req: &Request) -> Result<Upgrade, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if req.minor_version < 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if single(req, "host")?.is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !is_upgrade_request(req) {
        return Err(HandshakeError::NotUpgrade);
    }
    if !req.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let key = single(req, "sec-websocket-key")?.ok_or(HandshakeError::MissingKey)?;
    let mut decoded = [0u8; 18]; // room for a too-long key to be detected, not truncated
    match STANDARD.decode_slice(key.trim_ascii(), &mut decoded) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if single(req, "sec-websocket-version")?.map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(Upgrade {
        key: String::from_utf8_lossy(key.trim_ascii()).into_owned(),
        origin: req.header("origin").map(|o| String::from_utf8_lossy(o).into_owned()),
        protocols: list(req, "sec-websocket-protocol"),
        extensions: list(req, "sec-websocket-extensions"),
    })
}

/// The header's value when it appears at most once.
fn single<'a>(req: &'a Request, name: &'static str) -> Result<Option<&'a [u8]>, HandshakeError> {
    let mut all = req.headers_named(name);
    let first = all.next();
    if all.next().is_some() {
        return Err(HandshakeError::DuplicateHeader(name));
    }
    Ok(first)
}

/// The non-empty items of a comma-separated header across all its occurrences.
fn list(req: &Request, name: &str) -> Vec<String> {
    req.headers_named(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// Appends the `101 Switching Protocols` response, selecting `protocol` (which should be one of
/// `upgrade.protocols`) when given.
pub fn write_accept_response(out: &mut Vec<u8>, upgrade: &Upgrade, protocol: Option<&str>) {
    write_status_line(out, 101);
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    write_header(out, "Sec-WebSocket-Accept", &accept_key_bytes(upgrade.key.as_bytes()));
    if let Some(p) = protocol {
        write_header(out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The client side of the handshake: builds the request, then validates the server's 101.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    accept: [u8; ACCEPT_LEN],
    /// Subprotocols offered through `extra_headers`.
    offered_protocols: Vec<String>,
}

/// Largest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 8192;

impl ClientHandshake {
    /// Builds the upgrade request for `path_and_query` on `host`. `key_bytes` must be random
    /// (the caller supplies them: this crate has no randomness). `extra_headers` are added as
    /// given (e.g. `Origin`, `Sec-WebSocket-Protocol`).
    pub fn new(
        host: &str,
        path_and_query: &str,
        key_bytes: [u8; 16],
        extra_headers: &[(&str, &str)],
    ) -> (Self, Vec<u8>) {
        let key = STANDARD.encode(key_bytes);
        let mut req = Vec::with_capacity(160 + path_and_query.len() + host.len());
        req.extend_from_slice(b"GET ");
        req.extend_from_slice(path_and_query.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\n");
        write_header(&mut req, "Host", host.as_bytes());
        req.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        write_header(&mut req, "Sec-WebSocket-Key", key.as_bytes());
        req.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
        let mut offered_protocols = Vec::new();
        for (name, value) in extra_headers {
            write_header(&mut req, name, value.as_bytes());
            if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                offered_protocols.extend(value.split(',').map(|p| p.trim().to_owned()));
            }
        }
        req.extend_from_slice(b"\r\n");
        (Self { accept: accept_key_bytes(key.as_bytes()), offered_protocols }, req)
    }

    /// Validates the response head at the start of `buf` (§4.1). `Ok(None)`: incomplete, read
    /// more. `Ok(Some(n))`: the handshake succeeded and frames start at `buf[n..]`.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(HttpError::HeadersTooLarge.into());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge.into()),
            Err(_) => return Err(HttpError::BadRequest("malformed response").into()),
        };
        let code = resp.code.unwrap_or_default();
        if code != 101 {
            return Err(HandshakeError::BadStatus(code));
        }
        let headers = |name: &'static str| {
            resp.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
        };
        if !headers("upgrade").any(|v| has_token(v, "websocket")) {
            return Err(HandshakeError::NotUpgrade);
        }
        if !headers("connection").any(|v| has_token(v, "upgrade")) {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let mut accept = headers("sec-websocket-accept");
        if accept.next().map(<[u8]>::trim_ascii) != Some(&self.accept[..]) || accept.next().is_some() {
            return Err(HandshakeError::BadAccept);
        }
        if headers("sec-websocket-extensions").next().is_some() {
            return Err(HandshakeError::UnexpectedExtension);
        }
        for p in headers("sec-websocket-protocol") {
            let p = p.trim_ascii();
            if !self.offered_protocols.iter().any(|o| o.as_bytes() == p) {
                return Err(HandshakeError::UnexpectedProtocol);
            }
        }
        Ok(Some(len))
    }
}

#[cfg(test)]
mod tests;

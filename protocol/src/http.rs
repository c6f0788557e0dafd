//! The small HTTP/1.1 layer: parsing the first request on a connection (with `httparse`,
//! incrementally, under size limits) and writing small responses.

use crate::decimal::write_u64;

/// Limits on a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeaderLimits {
    /// Largest request head (request line + headers + final CRLF CRLF), default 8192 bytes:
    /// the usual server default (nginx, Node), and what bounds a pending handshake's buffer.
    pub max_bytes: usize,
    /// Most header fields, default 32: a WebSocket handshake from a browser sends about 15.
    pub max_headers: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        Self { max_bytes: 8192, max_headers: 32 }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/ws?channels=a,b`.
    pub target: String,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Length of the head including the final CRLF CRLF; a body (if any) starts here.
    pub header_len: usize,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }

    /// Every header named `name` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| &v[..])
    }

    /// The path: the target up to `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether the comma-separated token list of `header` (all its occurrences) contains
    /// `token`, compared case-insensitively (RFC 7230 §7).
    pub fn has_token(&self, header: &str, token: &str) -> bool {
        self.headers_named(header).any(|v| has_token(v, token))
    }

    /// Whether the connection persists after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.minor_version >= 1 {
            !self.has_token("connection", "close")
        } else {
            self.has_token("connection", "keep-alive")
        }
    }
}

/// Whether the comma-separated list `value` contains `token` (case-insensitive, OWS trimmed).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Why a request head was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request (400).
    BadRequest(&'static str),
    /// Head larger than `max_bytes` or more than `max_headers` fields (431).
    HeadersTooLarge,
    /// The request line alone exceeds `max_bytes` (414).
    UriTooLong,
    /// A request body larger than allowed (413).
    BodyTooLarge,
}

impl HttpError {
    /// The response status.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::HeadersTooLarge => 431,
            Self::UriTooLong => 414,
            Self::BodyTooLarge => 413,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::HeadersTooLarge => f.write_str("request header fields too large"),
            Self::UriTooLong => f.write_str("URI too long"),
            Self::BodyTooLarge => f.write_str("request body too large"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Header slots on the stack; larger `max_headers` fall back to the heap.
const STACK_HEADERS: usize = 64;

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more and call
/// again with the longer buffer (until it exceeds `max_bytes`, which is an error).
pub fn parse_request(buf: &[u8], limits: &HeaderLimits) -> Result<Option<Request>, HttpError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => {
            Err(too_large(buf, limits.max_bytes))
        }
        Ok(httparse::Status::Complete(len)) => Ok(Some(Request {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            minor_version: req.version.unwrap_or_default(),
            headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
            header_len: len,
        })),
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
            Err(too_large(buf, limits.max_bytes))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeadersTooLarge),
        Err(e) => Err(HttpError::BadRequest(parse_error(e))),
    }
}

/// 414 when not even the request line fits, 431 otherwise.
fn too_large(buf: &[u8], max_bytes: usize) -> HttpError {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) if end < max_bytes => HttpError::HeadersTooLarge,
        _ => HttpError::UriTooLong,
    }
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method",
        httparse::Error::Version => "invalid HTTP version",
        _ => "malformed request",
    }
}

/// Longest trailer section accepted after a chunked body (trailers are read and ignored).
const MAX_TRAILERS: usize = 4096;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_SIZE_LINE: usize = 1024;

/// Where a [`ChunkedDecoder`] is in the body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailer,
    /// The body is complete.
    Done,
}

/// An incremental decoder of `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), for both
/// sides: fed whatever bytes have arrived, it appends the data, says how many input bytes it
/// used (the rest is an incomplete line: feed it again with more), and never needs the whole
/// body at once, so a server's request body, a poll answer and an endless SSE stream all use
/// it. Chunk extensions and trailer fields are skipped.
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// Data bytes decoded so far (bounded by `feed`'s `max_body`).
    body_len: u64,
    /// Trailer bytes read so far (bounded by `MAX_TRAILERS`).
    trailer_len: usize,
}

impl ChunkedDecoder {
    /// The terminating chunk and the trailers have been read: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Decodes as much of `input` as possible, appending the data to `out`; returns the bytes of
    /// `input` used. Errors: a bad size line or missing CRLF (400), more than `max_body` data
    /// bytes in all (413), trailers over 4 KiB (431). Nothing is used after the body ends.
    pub fn feed(&mut self, input: &[u8], max_body: usize, out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut at = 0;
        // Each turn consumes input or returns.
        loop {
            let rest = &input[at..];
            match self.state {
                Chunk::Done => return Ok(at),
                Chunk::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    at += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                }
                Chunk::DataEnd => match rest.get(..2) {
                    None if rest.first().is_none_or(|&b| b == b'\r') => return Ok(at),
                    Some(b"\r\n") => {
                        at += 2;
                        self.state = Chunk::Size;
                    }
                    _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
                },
                Chunk::Size => {
                    let (used, size) = match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete(c)) => c,
                        Ok(httparse::Status::Partial) if rest.len() > MAX_SIZE_LINE => {
                            return Err(HttpError::BadRequest("chunk size line too long"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(at),
                        Err(_) => return Err(HttpError::BadRequest("invalid chunk size")),
                    };
                    at += used;
                    if size > (max_body as u64).saturating_sub(self.body_len) {
                        return Err(HttpError::BodyTooLarge);
                    }
                    self.body_len += size;
                    self.state = if size == 0 { Chunk::Trailer } else { Chunk::Data(size) };
                }
                Chunk::Trailer => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_len + rest.len() > MAX_TRAILERS {
                            return Err(HttpError::HeadersTooLarge);
                        }
                        return Ok(at);
                    };
                    at += eol + 2;
                    self.trailer_len += eol + 2;
                    if eol == 0 {
                        self.state = Chunk::Done;
                    } else if self.trailer_len > MAX_TRAILERS {
                        return Err(HttpError::HeadersTooLarge);
                    }
                }
            }
        }
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1) from the start of `buf`,
/// appending the data to `body`. `Ok(None)`: incomplete, call again with more bytes (from the
/// start: `body` is cleared first). `Ok(Some(n))`: the body ended after `n` bytes of `buf`.
/// Chunk extensions and trailer fields are skipped. (A [`ChunkedDecoder`] from the start.)
pub fn decode_chunked(buf: &[u8], max_body: usize, body: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
    body.clear();
    let mut decoder = ChunkedDecoder::default();
    let used = decoder.feed(buf, max_body, body)?;
    Ok(decoder.is_done().then_some(used))
}

/// The standard reason phrase of the statuses tickcast sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends a complete response: status line, `headers`, `Content-Length` (always), and
/// `Connection: close` when `!keep_alive`, then `body`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) {
    write_response_head(out, status, headers, body.len(), keep_alive);
    out.extend_from_slice(body);
}

/// Appends a response's head for a body of `body_len` bytes that the caller sends itself (as
/// several shared buffers, say): everything [`write_response`] writes but the body.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body_len: usize,
    keep_alive: bool,
) {
    write_status_line(out, status);
    for (name, value) in headers {
        write_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    write_u64(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a status line (`HTTP/1.1 200 OK`).
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one header field.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /ws?channels=a,b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nconnection: foo\r\n\r\nBODY";

    #[test]
    fn parses_incrementally() {
        let limits = HeaderLimits::default();
        let head_len = REQ.len() - 4;
        for cut in 0..head_len {
            assert_eq!(parse_request(&REQ[..cut], &limits).map(|r| r.is_some()), Ok(false));
        }
        let req = parse_request(REQ, &limits).unwrap().unwrap();
        assert_eq!(req.header_len, head_len);
        assert_eq!((req.method.as_str(), req.path(), req.query()), ("GET", "/ws", Some("channels=a,b")));
        assert_eq!(req.header("HOST"), Some(&b"x"[..]));
        assert!(req.has_token("Connection", "upgrade"));
        assert!(req.has_token("Connection", "FOO"));
        assert!(!req.has_token("Connection", "close"));
        assert!(req.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        let l = HeaderLimits::default();
        let r = |s: &[u8]| parse_request(s, &l).unwrap().unwrap();
        assert!(!r(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!r(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(r(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert_eq!(r(b"GET / HTTP/1.0\r\n\r\n").query(), None);
    }

    #[test]
    fn limits_and_errors() {
        let l = HeaderLimits { max_bytes: 64, max_headers: 2 };
        let long_line = [b"GET /".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse_request(&long_line, &l).unwrap_err(), HttpError::UriTooLong);
        // Also when the rest of the request arrived with it.
        let whole = [b"GET /".as_slice(), &[b'a'; 100], b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
        assert_eq!(parse_request(&whole, &l).unwrap_err(), HttpError::UriTooLong);
        let long_head = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse_request(&long_head, &l).unwrap_err(), HttpError::HeadersTooLarge);
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_request(many, &l).unwrap_err().status(), 431);
        let complete_but_big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 60], b"\r\n\r\n"].concat();
        assert_eq!(parse_request(&complete_but_big, &l).unwrap_err(), HttpError::HeadersTooLarge);
        let bad = parse_request(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", &l).unwrap_err();
        assert_eq!(bad.status(), 400);
        assert_eq!(parse_request(b"GET / HTTP/2.0\r\n\r\n", &l).unwrap_err().status(), 400);
        let big = HeaderLimits { max_bytes: 1 << 16, max_headers: 100 };
        assert!(parse_request(many, &big).unwrap().is_some());
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        write_response(&mut out, 200, &[("Content-Type", "text/plain")], b"ok", false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        out.clear();
        write_response(&mut out, 404, &[], b"", true);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(reason_phrase(999), "Unknown");
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let wire = b"4\r\nWiki\r\n6;ext\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut d = ChunkedDecoder::default();
            let mut out = Vec::new();
            let mut pending = wire[..split].to_vec();
            let used = d.feed(&pending, usize::MAX, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&wire[split..]);
            let used = d.feed(&pending, usize::MAX, &mut out).unwrap();
            assert_eq!(&pending[used..], b"NEXT", "split at {split}");
            assert!(d.is_done());
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split at {split}");
        }
        let junk = |input: &[u8]| ChunkedDecoder::default().feed(input, usize::MAX, &mut Vec::new());
        assert!(junk(b"zz\r\n").is_err());
        assert!(junk(b"1\r\nabc").is_err());
        assert!(junk(b"1\r\na\n").is_err());
        assert!(junk(&[b'1'; 2000]).is_err());
        // An endless body is fine without a limit, refused past one.
        let mut d = ChunkedDecoder::default();
        for _ in 0..1000 {
            assert_eq!(d.feed(b"3\r\nabc\r\n", usize::MAX, &mut Vec::new()), Ok(8));
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.feed(b"3\r\nabc\r\n", 5, &mut Vec::new()), Ok(8));
        assert_eq!(d.feed(b"3\r\nabc\r\n", 5, &mut Vec::new()), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn chunked_bodies() {
        let mut body = Vec::new();
        let wire = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(decode_chunked(wire, 1024, &mut body), Ok(Some(wire.len() - 4)));
        assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
        // Every strict prefix is incomplete, never an error.
        for cut in 0..wire.len() - 4 {
            assert_eq!(decode_chunked(&wire[..cut], 1024, &mut body), Ok(None), "cut {cut}");
        }
        assert_eq!(decode_chunked(b"0\r\n\r\n", 0, &mut body), Ok(Some(5)));
        assert!(body.is_empty());
        assert_eq!(decode_chunked(b"5\r\nhello\r\n0\r\n\r\n", 4, &mut body), Err(HttpError::BodyTooLarge));
        assert_eq!(decode_chunked(b"ffffffffffffffff\r\n", 4, &mut body), Err(HttpError::BodyTooLarge));
        assert_eq!(decode_chunked(b"zz\r\n", 4, &mut body).unwrap_err().status(), 400);
        assert_eq!(decode_chunked(b"2\r\nabXY", 4, &mut body).unwrap_err().status(), 400);
        let endless_trailer = [b"0\r\nX: ".as_slice(), &[b'a'; 5000]].concat();
        assert_eq!(decode_chunked(&endless_trailer, 4, &mut body).unwrap_err().status(), 431);
    }
}

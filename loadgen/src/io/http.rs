//! HTTP/1.1 client pieces: the keep-alive publisher (`POST /publish/<channel>`), a one
//! request at a time keep-alive client for polling, and response parsing with `httparse`
//! (`Content-Length` and chunked bodies; the protocol crate's `http::decode_chunked` decodes the
//! latter).

use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::rc::Rc;

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

use crate::plan::Target;

/// Builds a `POST` request with `body`.
pub fn post_request(out: &mut Vec<u8>, target: &Target, path: &str, body: &[u8]) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        target.authority(),
        body.len()
    );
    out.extend_from_slice(body);
}

/// Builds a `GET` request (keep-alive) with extra header lines (each ending in `\r\n`).
pub fn get_request(out: &mut Vec<u8>, target: &Target, path: &str, extra_headers: &str) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra_headers}\r\n", target.authority());
}

/// Largest response body accepted (a poll answer after a long stall can be big, not this big).
pub const BODY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes (a streaming answer without length, e.g. SSE over HTTP/1.0).
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub head_len: usize,
    pub framing: Framing,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(buf)? else {
        return Ok(None);
    };
    let status = response.code.unwrap_or(0);
    let mut framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if std::str::from_utf8(h.value)?.to_ascii_lowercase().contains("chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let len: usize = std::str::from_utf8(h.value)?.trim().parse()?;
            anyhow::ensure!(len <= BODY_MAX_BYTES, "response body of {len} bytes");
            framing = Framing::Length(len);
        }
    }
    Ok(Some(Head { status, head_len, framing }))
}

/// One complete response: status, where it ends in the buffer, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Head plus body length.
    pub total_len: usize,
    pub body: Body,
}

/// A response body: in place in the buffer, or decoded from chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Range(Range<usize>),
    Decoded(Vec<u8>),
}

impl ResponseHead {
    /// The body, given the buffer the response was parsed from.
    pub fn body<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match &self.body {
            Body::Range(r) => &buf[r.clone()],
            Body::Decoded(v) => v,
        }
    }
}

/// Parses one complete response (head and body, `Content-Length` or chunked) from the start of
/// `buf`; `Ok(None)` while incomplete. A body delimited by the end of the connection is not a
/// complete response on a keep-alive connection: an error.
pub fn parse_response(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    match head.framing {
        Framing::Length(len) => {
            let total_len = head.head_len + len;
            if buf.len() < total_len {
                return Ok(None);
            }
            let body = Body::Range(head.head_len..total_len);
            Ok(Some(ResponseHead { status: head.status, total_len, body }))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            let decoded =
                tickcast_protocol::http::decode_chunked(&buf[head.head_len..], BODY_MAX_BYTES, &mut body)
                    .map_err(|e| anyhow::anyhow!("chunked body: {e}"))?;
            let Some(used) = decoded else {
                return Ok(None);
            };
            let total_len = head.head_len + used;
            Ok(Some(ResponseHead { status: head.status, total_len, body: Body::Decoded(body) }))
        }
        Framing::UntilClose => anyhow::bail!("response without Content-Length on a keep-alive connection"),
    }
}

/// A keep-alive client that sends one request at a time (poll, longpoll) and counts every
/// byte both ways, HTTP overhead included.
pub struct HttpClient {
    stream: TcpStream,
    rx: Vec<u8>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Wall-clock time (ns) the last read completed.
    pub last_read_ns: u64,
}

impl HttpClient {
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> io::Result<HttpClient> {
        let stream = crate::io::net::connect(target.addr, source).await?;
        Ok(HttpClient {
            stream,
            rx: Vec::with_capacity(16 * 1024),
            bytes_received: 0,
            bytes_sent: 0,
            last_read_ns: 0,
        })
    }

    /// Sends a whole request; returns the buffer for reuse.
    pub async fn send(&mut self, request: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let len = request.len() as u64;
        let (result, request) = self.stream.write_all(request).await;
        if result.is_ok() {
            self.bytes_sent += len;
        }
        (result, request)
    }

    /// Reads one complete response; its body is copied out. `Ok(None)`: the server closed.
    pub async fn read_response(&mut self) -> anyhow::Result<Option<(u16, Vec<u8>)>> {
        loop {
            if let Some(response) = parse_response(&self.rx)? {
                let out = (response.status, response.body(&self.rx).to_vec());
                self.rx.drain(..response.total_len);
                return Ok(Some(out));
            }
            anyhow::ensure!(self.rx.len() <= BODY_MAX_BYTES + 64 * 1024, "response too large");
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let n = super::read_append(&self.stream, &mut self.rx, 16 * 1024).await?;
        self.last_read_ns = crate::time::now_ns();
        self.bytes_received += n as u64;
        Ok(n)
    }
}

/// A keep-alive HTTP connection that pipelines requests: the writer never waits for answers
/// (an open-loop publisher), a reader task counts them.
pub struct HttpConn {
    pub stream: Rc<TcpStream>,
}

impl HttpConn {
    pub async fn connect(target: &Target) -> io::Result<HttpConn> {
        let stream = crate::io::net::connect(target.addr, None).await?;
        Ok(HttpConn { stream: Rc::new(stream) })
    }

    /// Writes a whole request buffer; returns it for reuse.
    pub async fn send(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.stream.write_all(buf).await
    }

    /// Reads responses until `stop` says so or the connection ends, calling `on_response` for
    /// each one.
    pub async fn read_responses(
        stream: Rc<TcpStream>,
        mut on_response: impl FnMut(ResponseHead),
    ) -> anyhow::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
        loop {
            let mut consumed = 0;
            while let Some(head) = parse_response(&buf[consumed..])? {
                consumed += head.total_len;
                on_response(head);
            }
            buf.drain(..consumed);
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let (len, cap) = (buf.len(), buf.capacity());
            let (result, slice) = stream.read(buf.slice(len..cap)).await;
            buf = slice.into_inner();
            if result? == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_responses() {
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{\"seq\":1}HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        let first = parse_response(two).unwrap().unwrap();
        assert_eq!(first.status, 200);
        let second = parse_response(&two[first.total_len..]).unwrap().unwrap();
        assert_eq!(second.status, 404);
        assert_eq!(first.total_len + second.total_len, two.len());
        assert_eq!(parse_response(&two[..first.total_len - 1]).unwrap(), None);
        assert_eq!(first.body(two), b"{\"seq\":1}");
    }

    #[test]
    fn chunked_and_bad_responses() {
        let r =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\nHTTP";
        let head = parse_response(r).unwrap().unwrap();
        assert_eq!(head.body(r), b"abcde");
        assert_eq!(head.total_len, r.len() - 4);
        assert_eq!(parse_response(&r[..r.len() - 8]).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        let mut req = Vec::new();
        let target = crate::plan::Target::parse("http://127.0.0.1:1", None).unwrap();
        get_request(&mut req, &target, "/poll?channels=a", "Accept: application/json\r\n");
        assert_eq!(
            req,
            b"GET /poll?channels=a HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: application/json\r\n\r\n"
        );
    }
}

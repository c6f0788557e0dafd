//! HTTP/1.1 client pieces: the keep-alive publisher (`POST /publish/<channel>`) and response
//! parsing with `httparse`.

use std::io;
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

/// One parsed response: status and where it ends in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Head plus body length.
    pub total_len: usize,
}

/// Parses one complete response (head and `Content-Length` body) from the start of `buf`;
/// `Ok(None)` while incomplete. Chunked bodies are not used by the publish endpoint.
pub fn parse_response(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(buf)? else {
        return Ok(None);
    };
    let mut body_len = 0usize;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)?.trim().parse()?;
        }
    }
    let total_len = head_len + body_len;
    if buf.len() < total_len {
        return Ok(None);
    }
    Ok(Some(ResponseHead { status: response.code.unwrap_or(0), total_len }))
}

/// A keep-alive HTTP connection that pipelines requests: the writer never waits for answers
/// (an open-loop publisher), a reader task counts them.
pub struct HttpConn {
    pub stream: Rc<TcpStream>,
}

impl HttpConn {
    pub async fn connect(target: &Target) -> io::Result<HttpConn> {
        let stream = crate::net::connect(target.addr, None).await?;
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
    }
}

//! Server-Sent Events (`GET /sse?channels=...`): opening the stream (with `Last-Event-ID` on a
//! reconnect) and parsing events out of it, chunked or not.
//!
//! Assumed events (docs/protocol.md): `id: <channel>:<seq>`, `event: message` (or no `event`
//! line), `data: <envelope>`; gaps as `event: gap` with the gap object as `data`. The parser
//! follows the HTML event-stream rules that matter here: `\n` or `\r\n` line ends, several
//! `data:` lines joined by `\n`, `:` comments (keep-alives) ignored, an event dispatched on an
//! empty line.

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use tokio_uring::net::TcpStream;

use super::http::{Framing, get_request, parse_head};
use super::ws::OpenTimes;
use crate::plan::Target;
use tickcast_protocol::http::ChunkedDecoder;

/// Longest line or event accepted (bytes).
const EVENT_MAX_BYTES: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:` field; empty means `message`.
    pub kind: String,
    pub data: Vec<u8>,
}

/// Splits an event stream into events, remembering the last `id:`.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    kind: String,
    data: Vec<u8>,
    has_data: bool,
    /// The last `id:` field seen.
    pub last_id: Option<String>,
}

impl Parser {
    /// A parser for a new stream that remembers this one's last `id:`.
    pub fn resumed(&self) -> Parser {
        Parser { last_id: self.last_id.clone(), ..Parser::default() }
    }

    /// Feeds decoded stream bytes; calls `on_event` for each complete event.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(Event, Option<&str>),
    ) -> anyhow::Result<()> {
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                anyhow::ensure!(self.line.len() <= EVENT_MAX_BYTES, "SSE line too long");
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                if self.has_data {
                    let event =
                        Event { kind: std::mem::take(&mut self.kind), data: std::mem::take(&mut self.data) };
                    on_event(event, self.last_id.as_deref());
                }
                self.kind.clear();
                self.data.clear();
                self.has_data = false;
                continue;
            }
            self.field(&line)?;
        }
        Ok(())
    }

    fn field(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                anyhow::ensure!(self.data.len() <= EVENT_MAX_BYTES, "SSE event too large");
            }
            b"event" => self.kind = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => self.last_id = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        Ok(())
    }
}

/// An open event stream.
pub struct SseClient {
    stream: TcpStream,
    rx: Vec<u8>,
    /// Body bytes not yet decoded (chunked framing).
    chunked: Option<ChunkedDecoder>,
    decoded: Vec<u8>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub last_read_ns: u64,
}

impl SseClient {
    /// Connects, sends `GET path` (with `Last-Event-ID` when resuming) and waits for a `200`
    /// head. Events already received with the head are kept for `read`.
    pub async fn open(
        target: &Target,
        path: &str,
        source: Option<IpAddr>,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<(SseClient, OpenTimes)> {
        let began = Instant::now();
        let stream = crate::io::net::connect(target.addr, source).await?;
        let connected = Instant::now();
        let mut headers = String::from("Accept: text/event-stream\r\nCache-Control: no-cache\r\n");
        if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
            headers.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        let mut request = Vec::new();
        get_request(&mut request, target, path, &headers);
        let sent = request.len() as u64;
        let (result, _) = stream.write_all(request).await;
        result?;
        let mut client = SseClient {
            stream,
            rx: Vec::with_capacity(16 * 1024),
            chunked: None,
            decoded: Vec::new(),
            bytes_received: 0,
            bytes_sent: sent,
            last_read_ns: 0,
        };
        let head = loop {
            if let Some(head) = parse_head(&client.rx)? {
                break head;
            }
            anyhow::ensure!(client.rx.len() < 16 * 1024, "SSE response head too large");
            if client.fill().await? == 0 {
                anyhow::bail!("server closed before answering the SSE request");
            }
        };
        anyhow::ensure!(head.status == 200, "SSE request answered {}", head.status);
        client.chunked = match head.framing {
            Framing::Chunked => Some(ChunkedDecoder::default()),
            Framing::Length(_) | Framing::UntilClose => None,
        };
        client.rx.drain(..head.head_len);
        Ok((client, OpenTimes::until_now(began, connected)))
    }

    /// Reads the next piece of the event stream; returns its length (0: the stream ended).
    /// The piece is `decoded()` until the next call.
    pub async fn read(&mut self) -> anyhow::Result<usize> {
        loop {
            self.decoded.clear();
            match &mut self.chunked {
                None => self.decoded.append(&mut self.rx),
                Some(decoder) => {
                    if decoder.is_done() {
                        return Ok(0);
                    }
                    // An endless stream: no limit on the whole, only on what one read holds.
                    let used = decoder
                        .feed(&self.rx, usize::MAX, &mut self.decoded)
                        .map_err(|e| anyhow::anyhow!("chunked event stream: {e}"))?;
                    self.rx.drain(..used);
                    if decoder.is_done() {
                        return Ok(self.decoded.len());
                    }
                }
            }
            if !self.decoded.is_empty() {
                return Ok(self.decoded.len());
            }
            if self.fill().await? == 0 {
                return Ok(0);
            }
        }
    }

    /// The piece `read` returned.
    pub fn decoded(&self) -> &[u8] {
        &self.decoded
    }

    /// Bytes received and sent since the last call (for live progress).
    pub fn take_bytes(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.bytes_received), std::mem::take(&mut self.bytes_sent))
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let n = super::read_append(&self.stream, &mut self.rx, 16 * 1024).await?;
        self.last_read_ns = crate::time::now_ns();
        self.bytes_received += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_ids_and_comments() {
        let stream = b": keep-alive\r\nid: a:1\r\nevent: message\r\ndata: {\"x\":1}\r\n\r\nid: a:2\ndata: l1\ndata: l2\n\n\
                       event: gap\ndata: {\"from\":3,\"to\":4}\n\nid: b:9\n\nretry: 5\nfoo\n\ndata";
        for split in [0, 1, 7, 20, 50, stream.len()] {
            let mut p = Parser::default();
            let mut events = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                p.feed(part, |e, id| events.push((e, id.map(str::to_string)))).unwrap();
            }
            assert_eq!(events.len(), 3, "split {split}");
            assert_eq!(events[0].0, Event { kind: "message".into(), data: b"{\"x\":1}".to_vec() });
            assert_eq!(events[0].1.as_deref(), Some("a:1"));
            assert_eq!(events[1].0.data, b"l1\nl2");
            assert_eq!(events[2].0.kind, "gap");
            assert_eq!(p.last_id.as_deref(), Some("b:9"));
        }
    }

    #[test]
    fn bounded() {
        let mut p = Parser::default();
        assert!(p.feed(&vec![b'x'; EVENT_MAX_BYTES + 1], |_, _| {}).is_err());
    }
}

//! A WebSocket client on tokio-uring, built on `tickcast_protocol::client`.
//!
//! Frames from the server are read in place in the read buffer (`ClientReader`): an
//! unfragmented data frame is handed to the caller as a range of that buffer, with no copy and
//! no allocation. Pings are
//! answered inside `next`. UTF-8 is not validated here: the load generator measures servers, the
//! Autobahn suite checks their conformance.

use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use tickcast_protocol::client::{ClientFrame, ClientRead, ClientReader, MaskKeys, Payload};
use tickcast_protocol::frame::{OpCode, write_client_frame};
use tickcast_protocol::handshake::ClientHandshake;
use tokio_uring::net::TcpStream;

use crate::plan::Target;

/// Largest frame accepted from a server.
pub const MAX_FRAME_BYTES: u64 = 64 * 1024 * 1024;
/// Largest handshake response head (the protocol crate refuses larger ones itself).
const RESPONSE_HEAD_MAX_BYTES: usize = 16 * 1024;

/// How long each step of opening a connection took.
#[derive(Debug, Clone, Copy)]
pub struct OpenTimes {
    pub connect_ns: u64,
    pub handshake_ns: u64,
    /// From the `101` to the protocol's confirmation of the subscription (Socket.IO,
    /// Action Cable; `wire/session.rs`).
    pub subscribe_ns: Option<u64>,
}

impl OpenTimes {
    /// A client that connected at `connected` after starting at `began`, and whose opening
    /// exchange (upgrade, stream head, priming poll) ended now.
    pub fn until_now(began: Instant, connected: Instant) -> Self {
        let done = Instant::now();
        OpenTimes {
            connect_ns: (connected - began).as_nanos() as u64,
            handshake_ns: (done - connected).as_nanos() as u64,
            subscribe_ns: None,
        }
    }
}

/// The write half: shares the socket with the client, so a sender task and a receiver task can
/// run side by side.
pub struct WsWriter {
    stream: Rc<TcpStream>,
    tx: Vec<u8>,
    masks: MaskKeys,
}

impl WsWriter {
    /// Sends one unfragmented, masked frame; returns the bytes written.
    pub async fn send(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<usize> {
        let mask = self.masks.next_key();
        let mut tx = std::mem::take(&mut self.tx);
        tx.clear();
        write_client_frame(&mut tx, opcode, payload, mask);
        let len = tx.len();
        let (result, tx) = self.stream.write_all(tx).await;
        self.tx = tx;
        result.map(|()| len)
    }
}

/// A received data message: `text` or binary, its payload at `range` of the client's buffers
/// (read it with [`WsClient::payload`] before the next call to `next`).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub text: bool,
    payload: Payload,
}

/// A connected, upgraded WebSocket client.
pub struct WsClient {
    pub writer: WsWriter,
    stream: Rc<TcpStream>,
    /// Received bytes; `rx[start..]` is not yet decoded.
    rx: Vec<u8>,
    start: usize,
    min_read_bytes: usize,
    /// Frames out of `rx` (and fragmented messages joined).
    reader: ClientReader,
    pub bytes_received: u64,
    pub pings_received: u64,
    /// Wall-clock time (ns) the last read completed: the arrival time of every message it
    /// carried, read once per read rather than once per message.
    pub last_read_ns: u64,
}

impl WsClient {
    /// Connects (from `source` if given), sends the upgrade request for `target.path` (with
    /// `headers`, e.g. a subprotocol) and waits for `101 Switching Protocols`.
    pub async fn open(
        target: &Target,
        source: Option<IpAddr>,
        read_buf_bytes: usize,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(WsClient, OpenTimes)> {
        let began = Instant::now();
        let stream = Rc::new(crate::io::net::connect(target.addr, source).await?);
        let connected = Instant::now();
        let masks = MaskKeys::new(rand::random());
        let (handshake, request) =
            ClientHandshake::new(&target.authority(), &target.path, rand::random(), headers);
        let (result, _) = stream.write_all(request).await;
        result?;
        let mut client = WsClient {
            writer: WsWriter { stream: stream.clone(), tx: Vec::with_capacity(256), masks },
            stream,
            rx: Vec::with_capacity(read_buf_bytes.max(512)),
            start: 0,
            min_read_bytes: (read_buf_bytes / 2).max(256),
            reader: ClientReader::default(),
            bytes_received: 0,
            pings_received: 0,
            last_read_ns: 0,
        };
        let head_len = loop {
            if let Some(len) = handshake.parse_response(&client.rx)? {
                break len;
            }
            anyhow::ensure!(client.rx.len() < RESPONSE_HEAD_MAX_BYTES, "handshake response head too large");
            if client.fill().await? == 0 {
                anyhow::bail!("server closed during the handshake");
            }
        };
        client.start = head_len;
        Ok((client, OpenTimes::until_now(began, connected)))
    }

    /// A second write half on the same socket (for a separate sender task).
    pub fn split_writer(&self) -> WsWriter {
        WsWriter {
            stream: self.stream.clone(),
            tx: Vec::with_capacity(256),
            masks: MaskKeys::new(rand::random()),
        }
    }

    /// The payload of `msg`, valid until the next call to `next`.
    pub fn payload(&self, msg: &Incoming) -> &[u8] {
        self.reader.payload(&self.rx, &msg.payload)
    }

    /// Waits for the next data message. Answers pings; answers a close and returns `None`;
    /// returns `None` on end of stream too.
    pub async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            let at = self.start;
            match self.reader.read(&self.rx[at..], MAX_FRAME_BYTES)? {
                ClientRead::Frame { frame, used } => {
                    self.start += used;
                    if let Some(msg) = self.on_frame(frame, at).await? {
                        return Ok(msg);
                    }
                }
                ClientRead::Incomplete { needed } => {
                    self.rx.reserve(needed);
                    if self.fill().await? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Handles one frame read at `at` of `rx`. `Some(None)`: the connection is closing.
    async fn on_frame(&mut self, frame: ClientFrame, at: usize) -> anyhow::Result<Option<Option<Incoming>>> {
        let shift = |r: Range<usize>| r.start + at..r.end + at;
        match frame {
            ClientFrame::Message { text, payload } => {
                let payload = match payload {
                    Payload::Input(range) => Payload::Input(shift(range)),
                    Payload::Assembled => Payload::Assembled,
                };
                Ok(Some(Some(Incoming { text, payload })))
            }
            ClientFrame::Fragment | ClientFrame::Pong => Ok(None),
            ClientFrame::Ping(range) => {
                self.pings_received += 1;
                let payload = self.rx[shift(range)].to_vec();
                self.writer.send(OpCode::Pong, &payload).await?;
                Ok(None)
            }
            ClientFrame::Close(range) => {
                let code = self.rx[shift(range)].get(..2).map(<[u8]>::to_vec).unwrap_or_default();
                let _ = self.writer.send(OpCode::Close, &code).await;
                Ok(Some(None))
            }
        }
    }

    /// Starts the closing handshake (1000) and shuts the socket down for writing.
    pub async fn close(&mut self) {
        let _ = self.writer.send(OpCode::Close, &1000u16.to_be_bytes()).await;
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// A duplicate of the socket's descriptor (for the fast receive path, which takes over).
    pub fn duplicate_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsRawFd;
        crate::io::net::duplicate(self.stream.as_raw_fd())
    }

    /// The bytes received but not yet decoded (e.g. frames that came with the upgrade answer).
    pub fn take_pending(&mut self) -> Vec<u8> {
        let pending = self.rx[self.start..].to_vec();
        self.start = self.rx.len();
        pending
    }

    /// Bytes received since the last call (for live progress).
    pub fn take_bytes_received(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_received)
    }

    /// Reads more bytes into `rx`; returns how many (0: end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.rx.len() {
            self.rx.clear();
            self.start = 0;
        } else if self.rx.capacity() - self.rx.len() < self.min_read_bytes && self.start > 0 {
            self.rx.drain(..self.start);
            self.start = 0;
        }
        let n = super::read_append(&self.stream, &mut self.rx, self.min_read_bytes).await?;
        self.last_read_ns = crate::time::now_ns();
        self.bytes_received += n as u64;
        Ok(n)
    }
}

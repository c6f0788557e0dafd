//! Runs the real `tickcast` binary on an ephemeral loopback port for integration tests.
#![allow(dead_code)] // each test file uses a different subset

pub mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Server {
    child: Child,
    /// The first listen address.
    pub addr: SocketAddr,
    /// Every listen address, in order.
    pub addrs: Vec<SocketAddr>,
    /// Server log lines (stderr), collected in the background.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `tickcast --listen 127.0.0.1:0 <args>` and waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Self {
        // Built-in feeds only where a test asks for them: they would add load and messages.
        let no_feed = if args.iter().any(|a| a.starts_with("--feed") || *a == "--no-feed") {
            None
        } else {
            Some("--no-feed")
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .args(no_feed)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tickcast");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addrs: Vec<SocketAddr> = loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("tickcast did not report its address");
            if let Some(pos) = line.find("listening on ") {
                // In a JSON log line the message ends at its closing quote.
                let rest = line[pos + "listening on ".len()..].split('"').next().unwrap_or_default();
                break rest.split(',').map(|a| a.trim().parse().expect("address")).collect();
            }
        };
        Self { child, addr: addrs[0], addrs, log: rx }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the server process (by its PID).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A plain HTTP/1.1 exchange on a fresh connection: the whole response (server closes).
    pub fn http(&self, request: &str) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Scrapes `/metrics` and sums one metric over workers.
    pub fn metric(&self, name: &str) -> u64 {
        self.metric_per_worker(name).iter().sum()
    }

    pub fn metric_per_worker(&self, name: &str) -> Vec<u64> {
        let text = self.http("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        text.lines()
            .filter(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TCP client that completed a WebSocket handshake by hand (for frames a well-behaved
/// client library refuses to send, such as unmasked ones).
pub fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

/// Reads one unmasked server frame: (opcode, payload).
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload)?;
    Ok((h[0] & 0x0f, payload))
}

/// Reads frames until a close frame; returns its status code.
pub fn read_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (op, payload) = read_frame(s).expect("a close frame");
        if op == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// True when the server closes the TCP connection within `timeout` (EOF or reset).
pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {
                if std::time::Instant::now() > deadline {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Builds a masked client frame by hand.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut v = vec![first];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n if n <= 0xffff => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// `POST path` with `body` (and extra header lines) on a fresh connection: (status, body).
pub fn post(addr: SocketAddr, path: &str, body: &[u8], headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The RSS of a process in KiB (from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A tokio-tungstenite client connection (the independent client of these tests).
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message other than a ping (tungstenite answers pings itself), within 10 s.
pub async fn next_message(ws: &mut Ws) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        if !matches!(msg, tokio_tungstenite::tungstenite::Message::Ping(_)) {
            return msg;
        }
    }
}

//! `peer-tokio-tungstenite`: the comparison peer. An idiomatic tokio + tokio-tungstenite server,
//! written the way a competent user would write it, with no tickcast-specific tuning:
//!
//! * `GET /echo` (WebSocket): echoes every text and binary message.
//! * `GET /ws` or any other path (WebSocket): subscribes to one `tokio::sync::broadcast`
//!   channel and receives every published message.
//! * `POST /publish` or `POST /publish/<channel>` (plain HTTP/1.1 keep-alive, same port):
//!   broadcasts the body as one text message; answers `{"seq":N}`. The channel name is
//!   ignored: the peer has a single channel.
//! * A text message `{"type":"publish","channel":..,"data":..}` from a WebSocket subscriber:
//!   broadcasts `data` (as JSON text) and answers `{"type":"published",..,"seq":N}`.
//! * `GET /healthz`: `ok`.
//!
//! The first request of a connection is parsed with `httparse`; a WebSocket upgrade is answered
//! here and the rest of the connection is handed to tokio-tungstenite with
//! `WebSocketStream::from_partially_read`, so both protocols share one port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

/// Largest request head accepted (bytes).
const HEAD_MAX_BYTES: usize = 16 * 1024;
/// Largest publish body accepted (bytes).
const BODY_MAX_BYTES: usize = 1024 * 1024;

struct Shared {
    tx: broadcast::Sender<Message>,
    seq: AtomicU64,
}

/// Serves `listener` until the task is dropped, with one broadcast channel of
/// `broadcast_capacity` messages.
pub async fn serve(listener: TcpListener, broadcast_capacity: usize) -> anyhow::Result<()> {
    let (tx, _) = broadcast::channel(broadcast_capacity.max(1));
    let shared = Arc::new(Shared { tx, seq: AtomicU64::new(0) });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and similar: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = handle(stream, shared).await;
        });
    }
}

/// What the first request asked for.
enum Route {
    Echo,
    Subscribe,
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (head_len, request) = read_head(&mut stream, &mut buf).await?;
        let Some(request) = request else {
            return Ok(());
        };
        if let Some(key) = request.ws_key {
            let route = if request.path == "/echo" { Route::Echo } else { Route::Subscribe };
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(response.as_bytes()).await?;
            let rest = buf.split_off(head_len);
            let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, None).await;
            return match route {
                Route::Echo => echo(ws).await,
                Route::Subscribe => subscribe(ws, &shared).await,
            };
        }
        let body_end = head_len + request.content_length;
        anyhow::ensure!(request.content_length <= BODY_MAX_BYTES, "body too large");
        while buf.len() < body_end {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = bytes::Bytes::copy_from_slice(&buf[head_len..body_end]);
        buf.drain(..body_end);
        let response_body = if request.method == "POST" && request.path.starts_with("/publish") {
            publish(&shared, body)
        } else if request.path == "/healthz" {
            "ok\n".to_string()
        } else {
            stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await?;
            continue;
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            response_body.len(),
            response_body
        );
        stream.write_all(response.as_bytes()).await?;
    }
}

fn publish(shared: &Shared, body: bytes::Bytes) -> String {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let text = match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(body) {
        Ok(text) => text,
        Err(_) => return "{\"error\":\"body is not UTF-8\"}".to_string(),
    };
    // No subscribers is not an error for a broadcast.
    let _ = shared.tx.send(Message::Text(text));
    format!("{{\"seq\":{seq}}}")
}

/// A WebSocket publish (`{"type":"publish","channel":..,"data":..,"id":..}`, tickcast's control
/// message): broadcasts `data` like `POST /publish` and returns the `published` reply. Anything
/// else a subscriber sends is ignored, as before.
fn publish_op(shared: &Shared, text: &str) -> Option<String> {
    let op: serde_json::Value = serde_json::from_str(text).ok()?;
    if op.get("type")?.as_str()? != "publish" {
        return None;
    }
    let data = op.get("data")?.to_string();
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = shared.tx.send(Message::text(data));
    let channel = op.get("channel").and_then(|c| c.as_str()).unwrap_or("");
    let id = op.get("id").and_then(|i| i.as_u64()).map_or(String::new(), |id| format!(",\"id\":{id}"));
    Some(format!(
        "{{\"type\":\"published\",\"channel\":{}{id},\"seq\":{seq}}}",
        serde_json::Value::from(channel)
    ))
}

struct Request {
    method: String,
    path: String,
    content_length: usize,
    ws_key: Option<String>,
}

/// Reads until one request head is complete; returns its length and the parsed request, or
/// `None` when the peer closed cleanly between requests.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<(usize, Option<Request>)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(buf)? {
            let mut content_length = 0;
            let mut ws_key = None;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    content_length = std::str::from_utf8(h.value)?.trim().parse()?;
                } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
                    ws_key = Some(String::from_utf8_lossy(h.value).into_owned());
                }
            }
            let request = Request {
                method: req.method.unwrap_or("").to_string(),
                path: req.path.unwrap_or("/").split('?').next().unwrap_or("/").to_string(),
                content_length,
                ws_key,
            };
            return Ok((len, Some(request)));
        }
        anyhow::ensure!(buf.len() < HEAD_MAX_BYTES, "request head too large");
        if stream.read_buf(buf).await? == 0 {
            return Ok((0, None));
        }
    }
}

async fn echo(mut ws: WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

async fn subscribe(ws: WebSocketStream<TcpStream>, shared: &Shared) -> anyhow::Result<()> {
    let mut rx = shared.tx.subscribe();
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(msg) => sink.send(msg).await?,
                // The common idiom: a lagging subscriber skips what it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = publish_op(shared, text.as_str()) {
                        sink.send(Message::text(reply)).await?;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
}

//! HTTP helpers over `ureq` (an independent client): JSON requests and an event-stream reader.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{Server, post};

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

pub fn publish(server: &Server, channel: &str, body: &str) -> u64 {
    let (status, body) = post(server.addr, &format!("/publish/{channel}"), body.as_bytes(), "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["seq"].as_u64().unwrap()
}

/// GET `path`: (status, body as JSON or Null).
pub fn get_json(agent: &ureq::Agent, addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut resp = agent.get(&url(addr, path)).call().expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One event of an event stream.
#[derive(Debug, Default, Clone)]
pub struct Event {
    pub kind: String,
    pub id: Option<String>,
    pub data: String,
    /// A comment line came before it (heartbeat).
    pub comments: usize,
}

/// Reads an event stream on a thread, sending each event (comments counted) down a channel.
pub fn sse_events(
    agent: &ureq::Agent,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> mpsc::Receiver<Event> {
    let mut req = agent.get(&url(addr, path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.call().expect("open the stream");
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h.get("content-type").unwrap(), "text/event-stream; charset=utf-8");
    assert!(h.get("cache-control").unwrap().to_str().unwrap().contains("no-cache"));
    assert_eq!(h.get("x-accel-buffering").unwrap(), "no");
    let reader = BufReader::new(resp.into_body().into_reader());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = Event::default();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !event.data.is_empty() || !event.kind.is_empty() {
                    if event.kind.is_empty() {
                        event.kind = "message".into();
                    }
                    if tx.send(std::mem::take(&mut event)).is_err() {
                        return;
                    }
                }
                continue;
            }
            if line.starts_with(':') {
                event.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((&line, ""));
            match field {
                "event" => event.kind = value.into(),
                "id" => event.id = Some(value.into()),
                "data" => event.data.push_str(value),
                _ => {}
            }
        }
    });
    rx
}

pub fn next_event(rx: &mpsc::Receiver<Event>) -> Event {
    rx.recv_timeout(Duration::from_secs(10)).expect("no SSE event within 10 s")
}

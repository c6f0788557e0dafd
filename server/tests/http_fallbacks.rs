//! The HTTP fallbacks end to end: the real binary, `ureq` (an independent HTTP client) for SSE,
//! polls and long-polls, tokio-tungstenite for WebSocket, hand-written bytes only where no
//! client library will go (pipelining, broken requests).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Server;
use common::http::{Event, agent, get_json, next_event, publish, sse_events, url};
use serde_json::Value;

/// Envelopes of one long-poll loop (or poll loop) from `since`, until `count` arrived.
fn poll_until(
    agent: &ureq::Agent,
    addr: SocketAddr,
    route: &str,
    channels: &str,
    count: usize,
) -> Vec<Value> {
    let mut since = format!("{channels}:0");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count {
        assert!(Instant::now() < deadline, "{route}: only {} of {count} messages", got.len());
        let (status, v) =
            get_json(agent, addr, &format!("{route}?channels={channels}&since={since}&timeout=5"));
        assert_eq!(status, 200, "{v}");
        got.extend(v["messages"].as_array().unwrap().iter().cloned());
        assert_eq!(v["gaps"], Value::Array(vec![]));
        since = v["next"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(c, s)| format!("{c}:{s}"))
            .collect::<Vec<_>>()
            .join(",");
        if route == "/poll" {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    got
}

#[test]
fn every_transport_gets_the_same_messages() {
    let server = Server::start(&["--threads", "2"]);
    let agent = agent();
    // Subscribers first (WebSocket and SSE), from the start of the channel.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut ws = rt.block_on(async {
        tokio_tungstenite::connect_async(format!("ws://{}/ws?channels=feed&since=feed:0", server.addr))
            .await
            .expect("handshake")
            .0
    });
    let sse = sse_events(&agent, server.addr, "/sse?channels=feed&since=feed:0", &[]);
    assert_eq!(next_event(&sse).kind, "subscribed");

    let (tx, rx) = mpsc::channel();
    for route in ["/longpoll", "/poll"] {
        let (agent, tx, addr) = (agent.clone(), tx.clone(), server.addr);
        std::thread::spawn(move || {
            let got = poll_until(&agent, addr, route, "feed", 30);
            tx.send((route, got)).unwrap();
        });
    }
    for i in 0..30 {
        let body = if i % 2 == 0 { format!("{{\"i\":{i}}}") } else { format!("text {i}") };
        assert_eq!(publish(&server, "feed", &body), i + 1);
        std::thread::sleep(Duration::from_millis(10));
    }

    let ws_msgs: Vec<String> = rt.block_on(async {
        let mut out = Vec::new();
        while out.len() < 30 {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = common::next_message(&mut ws).await
                && !t.contains("\"type\"")
            {
                out.push(t.to_string());
            }
        }
        out
    });
    let sse_msgs: Vec<Event> = (0..30).map(|_| next_event(&sse)).collect();
    for (i, (w, e)) in ws_msgs.iter().zip(&sse_msgs).enumerate() {
        // The very same envelope bytes, and the id to resume from.
        assert_eq!(w, &e.data, "message {i}");
        assert_eq!(e.kind, "message");
        // `feed:<seq>@<epoch>`: the position with the run's epoch.
        let id = e.id.as_deref().unwrap();
        assert!(id.starts_with(&format!("feed:{}@", i + 1)), "{id}");
    }
    for _ in 0..2 {
        let (route, got) = rx.recv_timeout(Duration::from_secs(30)).expect("poll loop finished");
        assert_eq!(got.len(), 30, "{route}");
        for (i, (m, w)) in got.iter().zip(&ws_msgs).enumerate() {
            assert_eq!(m, &serde_json::from_str::<Value>(w).unwrap(), "{route} message {i}");
        }
    }
    let first: Value = serde_json::from_str(&ws_msgs[0]).unwrap();
    assert_eq!(first["data"], serde_json::json!({"i": 0}));
    assert_eq!(serde_json::from_str::<Value>(&ws_msgs[1]).unwrap()["data"], "text 1");
    assert!(server.metric("tickcast_deliveries_total") >= 60);
}

#[test]
fn sse_resumes_with_last_event_id_and_reports_gaps() {
    let server = Server::start(&["--threads", "1", "--history", "4", "--sse-heartbeat", "200ms"]);
    let agent = agent();
    for i in 1..=10 {
        publish(&server, "a", &i.to_string());
    }
    // Resume after 8: exactly 9 and 10 come back, then live.
    let rx = sse_events(&agent, server.addr, "/sse?channels=a", &[("Last-Event-ID", "a:8")]);
    let sub = next_event(&rx);
    assert_eq!(sub.kind, "subscribed");
    let ack: Value = serde_json::from_str(&sub.data).unwrap();
    assert_eq!(ack["seq"]["a"], 10);
    // Ids are positions with the run's epoch: `a:9@<epoch>`.
    let epoch = ack["epoch"]["a"].as_str().unwrap().to_owned();
    let id = |seq: u64| format!("a:{seq}@{epoch}");
    for want in [9, 10] {
        assert_eq!(next_event(&rx).id, Some(id(want)));
    }
    publish(&server, "a", "11");
    let e = next_event(&rx);
    assert_eq!(e.id, Some(id(11)));
    // Heartbeats keep the quiet stream alive.
    std::thread::sleep(Duration::from_millis(700));
    publish(&server, "a", "12");
    let e = next_event(&rx);
    assert_eq!(e.id, Some(id(12)));
    assert!(e.comments >= 2, "heartbeats seen: {}", e.comments);

    // History keeps 4 (9..=12): resuming after 2 gets a gap for 3..=8 first.
    let rx = sse_events(&agent, server.addr, "/sse?channels=a", &[("Last-Event-ID", "a:2")]);
    assert_eq!(next_event(&rx).kind, "subscribed");
    let gap = next_event(&rx);
    assert_eq!(gap.kind, "gap");
    let gap: Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!((gap["from"].as_u64(), gap["to"].as_u64()), (Some(3), Some(8)));
    let ids: Vec<_> = (0..4).map(|_| next_event(&rx).id.unwrap()).collect();
    assert_eq!(ids, [id(9), id(10), id(11), id(12)]);
    assert!(server.metric("tickcast_sse_connections") >= 1);
}

#[test]
fn longpoll_parks_wakes_times_out_and_is_capped() {
    let server = Server::start(&["--threads", "2", "--longpoll-max-timeout", "1s"]);
    let agent = agent();
    // Something newer already exists: answered at once.
    publish(&server, "lp", "1");
    let (_, v) = get_json(&agent, server.addr, "/longpoll?channels=lp&since=lp:0&timeout=1");
    assert_eq!(v["messages"][0]["seq"], 1);

    // Nothing new: parked until the deadline, answered empty with the same position. The
    // asked-for 30 s are capped to --longpoll-max-timeout (1 s).
    let start = Instant::now();
    let (status, v) = get_json(&agent, server.addr, "/longpoll?channels=lp&since=lp:1&timeout=30");
    let waited = start.elapsed();
    assert_eq!(status, 200);
    let epoch = v["epoch"]["lp"].clone();
    assert_eq!(v, serde_json::json!({"messages": [], "gaps": [], "next": {"lp": 1}, "epoch": {"lp": epoch}}));
    assert!(waited >= Duration::from_millis(800), "answered after {waited:?}");
    assert!(waited < Duration::from_secs(15), "not capped: {waited:?}");

    // Parked polls (on both workers) wake on a publish.
    let mut polls = Vec::new();
    for _ in 0..20 {
        let (agent, addr) = (self::agent(), server.addr);
        polls.push(std::thread::spawn(move || {
            get_json(&agent, addr, "/longpoll?channels=other,lp&since=lp:1&timeout=1").1
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tickcast_longpolls_parked") < 20 {
        assert!(Instant::now() < deadline, "polls did not park");
        std::thread::sleep(Duration::from_millis(10));
    }
    publish(&server, "lp", "2");
    for p in polls {
        let v = p.join().unwrap();
        assert_eq!(v["messages"][0]["seq"], 2, "{v}");
        assert_eq!(v["next"]["lp"], 2);
    }
    assert_eq!(server.metric("tickcast_longpolls_parked"), 0);
}

/// Writes `requests` in one go on one connection and reads `n` responses.
fn pipelined(server: &Server, requests: &str, n: usize) -> Vec<(u16, String)> {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    (0..n)
        .map(|_| {
            let mut status_line = String::new();
            reader.read_line(&mut status_line).unwrap();
            let status = status_line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            (status, String::from_utf8(body).unwrap())
        })
        .collect()
}

#[test]
fn keep_alive_pipelining_and_chunked_bodies() {
    let server = Server::start(&["--threads", "1"]);
    let answers = pipelined(
        &server,
        "GET /poll?channels=p HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /publish/p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2;x=y\r\n1}\r\n0\r\n\r\n\
         GET /poll?channels=p&since=p:0 HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /longpoll?channels=p&since=p:1&timeout=0.5 HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        5,
    );
    assert_eq!(answers[0].0, 200);
    let epoch =
        serde_json::from_str::<Value>(&answers[0].1).unwrap()["epoch"]["p"].as_str().unwrap().to_owned();
    let empty =
        |seq: u64| format!(r#"{{"messages":[],"gaps":[],"next":{{"p":{seq}}},"epoch":{{"p":"{epoch}"}}}}"#);
    assert_eq!(answers[0], (200, empty(0)));
    assert_eq!(answers[1], (200, r#"{"channel":"p","seq":1}"#.into()));
    let v: Value = serde_json::from_str(&answers[2].1).unwrap();
    assert_eq!(v["messages"][0]["data"], serde_json::json!({"a": 1}));
    // The long-poll timed out empty; the request behind it waited for it, in order.
    assert_eq!(answers[3], (200, empty(1)));
    assert_eq!(answers[4], (200, "ok\n".into()));

    // An independent client's chunked upload (ureq streams a reader of unknown length).
    let agent = agent();
    let body = br#"{"from":"a reader"}"#;
    let mut resp = agent
        .post(&url(server.addr, "/publish/p"))
        .send(ureq::SendBody::from_reader(&mut &body[..]))
        .expect("chunked publish");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), r#"{"channel":"p","seq":2}"#);
}

#[test]
fn limits_statuses_head_options_and_cors() {
    let server =
        Server::start(&["--threads", "1", "--max-body", "64", "--cors-origin", "https://app.example"]);
    let agent = agent();
    let status = |path: &str| get_json(&agent, server.addr, path);
    let (s, v) = status("/poll");
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));
    assert_eq!(status("/poll?channels=a%20b").0, 400);
    assert_eq!(status("/poll?channels=ticker.*").1["error"]["code"], "bad_request");
    assert_eq!(status("/poll?channels=a&since=a:x").0, 400);
    assert_eq!(status("/longpoll?channels=a&timeout=never").0, 400);
    assert_eq!(status("/sse?channels=bad%20name").1["error"]["code"], "invalid_channel");
    assert_eq!(status("/sse").0, 400);
    assert_eq!(status("/nowhere").0, 404);
    let resp = agent.post(&url(server.addr, "/poll?channels=a")).send(&b"x"[..]).unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers().get("allow").unwrap(), "GET, OPTIONS");
    assert_eq!(agent.get(&url(server.addr, "/publish/a")).call().unwrap().status().as_u16(), 405);
    let big = [b'x'; 65];
    assert_eq!(agent.post(&url(server.addr, "/publish/a")).send(&big[..]).unwrap().status().as_u16(), 413);
    let resp =
        agent.post(&url(server.addr, "/publish/a")).send(ureq::SendBody::from_reader(&mut &big[..])).unwrap();
    assert_eq!(resp.status().as_u16(), 413, "chunked past --max-body");
    let long = format!("GET /poll?channels={} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert!(server.http(&long).starts_with("HTTP/1.1 414"));
    let many: String = (0..40).map(|i| format!("X-{i}: 1\r\n")).collect();
    assert!(
        server.http(&format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n")).starts_with("HTTP/1.1 431")
    );
    let smuggle =
        "POST /publish/a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(server.http(smuggle).starts_with("HTTP/1.1 400"));

    // HEAD: the GET's headers, no body.
    let head = server.http("HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 3") && head.ends_with("\r\n\r\n")
    );

    // CORS: the allowed origin gets its headers and a preflight answer; others get neither.
    let resp = agent
        .options(&url(server.addr, "/publish/a"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
    assert!(
        resp.headers()
            .get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
    let resp = agent
        .get(&url(server.addr, "/poll?channels=a"))
        .header("Origin", "https://app.example")
        .call()
        .unwrap();
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
    let resp = agent
        .get(&url(server.addr, "/poll?channels=a"))
        .header("Origin", "https://evil.example")
        .call()
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // The server still serves everyone after all of that.
    assert_eq!(status("/poll?channels=a").0, 200);
}

/// Clients that ask for a large answer and never read it hold at most the worker's answer
/// budget; past it the answer is `503` with `Retry-After`, and the budget comes back when they
/// go. Raw sockets: a client that never reads is what no client library does.
#[test]
fn answers_to_clients_that_never_read_are_bounded_by_the_budget() {
    // Answers of 8 MB: more than the kernel takes into a socket that is not read (its send
    // buffer grows to a few MB at most), so most of each stays queued in the server.
    let args = [
        "--threads",
        "1",
        "--max-answer-bytes",
        "8MiB",
        "--history-bytes",
        "9MiB",
        "--answer-budget",
        "12MiB",
    ];
    let server = Server::start(&args);
    let payload = format!("\"{}\"", "x".repeat(20_000));
    for _ in 0..400 {
        publish(&server, "big", &payload);
    }
    let request = b"GET /poll?channels=big&since=big:0 HTTP/1.1\r\nHost: t\r\n\r\n";
    let hold = || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap(); // before connect: a small window, never read
        s.connect(&server.addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        s.write_all(request).unwrap();
        s
    };
    let held: Vec<TcpStream> = (0..3).map(|_| hold()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("Retry-After: 1\r\n"), "{text}");
    assert!(text.contains("\"overloaded\""), "{text}");
    assert!(server.metric("tickcast_answers_refused_total") >= 1);
    drop(held);
    drop(s);
    // Once they are gone, answers go again.
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = get_json(&agent, server.addr, "/poll?channels=big&since=big:399");
        if status == 200 {
            assert_eq!(v["messages"][0]["seq"], 400);
            break;
        }
        assert!(Instant::now() < deadline, "the budget did not come back: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

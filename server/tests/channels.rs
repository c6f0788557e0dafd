//! Channels end to end: the real binary, tokio-tungstenite subscribers, HTTP publishers.

mod common;

use common::{Server, Ws, post};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A server with no built-in feed (tests publish themselves).
fn server(args: &[&str]) -> Server {
    let mut all = vec!["--no-feed"];
    all.extend_from_slice(args);
    Server::start(&all)
}

async fn connect(server: &Server, path: &str) -> Ws {
    tokio_tungstenite::connect_async(server.ws_url(path)).await.expect("handshake").0
}

/// The next JSON text message (pings are answered by tungstenite).
async fn next(ws: &mut Ws) -> Value {
    loop {
        if let Message::Text(t) = common::next_message(ws).await {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

fn publish(server: &Server, channel: &str, body: &str) -> u64 {
    let (status, body) = post(server.addr, &format!("/publish/{channel}"), body.as_bytes(), "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["channel"], channel);
    v["seq"].as_u64().unwrap()
}

/// Reads messages until one of `channel` with `seq`, returning the envelopes seen in order.
async fn until_seq(ws: &mut Ws, channel: &str, seq: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next(ws).await;
        let done = v["channel"] == channel && v["seq"].as_u64() == Some(seq) && v.get("type").is_none();
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn seqs(msgs: &[Value], channel: &str) -> Vec<u64> {
    msgs.iter()
        .filter(|m| m.get("type").is_none() && m["channel"] == channel)
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn subscribe_publish_unsubscribe_with_acks_and_errors() {
    let server = server(&["--threads", "1"]);
    rt().block_on(async {
        let mut ws = connect(&server, "/ws").await;
        send(&mut ws, json!({"type": "subscribe", "id": 1, "channels": ["alpha", "beta"]})).await;
        let ack = next(&mut ws).await;
        assert_eq!(ack["type"], "subscribed");
        assert_eq!(ack["id"], 1);
        assert_eq!(ack["channels"], json!(["alpha", "beta"]));
        assert_eq!(publish(&server, "alpha", r#"{"price": 1.5}"#), 1);
        assert_eq!(publish(&server, "beta", "plain text"), 1);
        let a = next(&mut ws).await;
        assert_eq!((a["channel"].as_str(), a["seq"].as_u64()), (Some("alpha"), Some(1)));
        assert_eq!(a["data"], json!({"price": 1.5}), "JSON bodies stay JSON");
        assert!(a["ts"].as_u64().unwrap() > 1_600_000_000_000_000, "ts is µs since the epoch");
        let b = next(&mut ws).await;
        assert_eq!(b["data"], "plain text", "other bodies become strings");

        send(&mut ws, json!({"type": "unsubscribe", "id": 2, "channels": ["alpha"]})).await;
        let ack = next(&mut ws).await;
        assert_eq!((ack["type"].as_str(), ack["id"].as_u64()), (Some("unsubscribed"), Some(2)));
        publish(&server, "alpha", "1");
        publish(&server, "beta", "2");
        let b = next(&mut ws).await;
        assert_eq!(
            (b["channel"].as_str(), b["seq"].as_u64()),
            (Some("beta"), Some(2)),
            "alpha no longer arrives"
        );

        send(&mut ws, json!({"type": "subscribe", "id": 3, "channels": ["bad name!"]})).await;
        let err = next(&mut ws).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str(), err["id"].as_u64()),
            (Some("error"), Some("invalid_channel"), Some(3))
        );
        ws.send(Message::text("not json")).await.unwrap();
        assert_eq!(next(&mut ws).await["code"], "bad_request");
        send(&mut ws, json!({"type": "subscribe", "channels": ["tick*"]})).await;
        assert_eq!(next(&mut ws).await["type"], "error", "a prefix must end at a separator");
    });
}

#[test]
fn url_subscription_and_prefix_patterns_cover_new_channels() {
    let server = server(&["--threads", "2"]);
    publish(&server, "ticker.AAPL", "1");
    rt().block_on(async {
        let mut ws = connect(&server, "/ws?channels=ticker.*,news").await;
        let ack = next(&mut ws).await;
        assert_eq!(ack["channels"], json!(["ticker.*", "news"]));
        publish(&server, "ticker.AAPL", "2");
        publish(&server, "ticker.NEW", "created after the subscription");
        publish(&server, "other.X", "not subscribed");
        publish(&server, "news", "n");
        let got: Vec<(String, u64)> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                let m = next(&mut ws).await;
                v.push((m["channel"].as_str().unwrap().to_owned(), m["seq"].as_u64().unwrap()));
            }
            v
        };
        assert_eq!(got, vec![("ticker.AAPL".into(), 2), ("ticker.NEW".into(), 1), ("news".into(), 1)]);
    });
}

#[test]
fn per_channel_order_is_the_same_on_every_worker() {
    let server = server(&["--threads", "4"]);
    rt().block_on(async {
        let mut subs = Vec::new();
        for _ in 0..12 {
            let mut ws = connect(&server, "/ws?channels=ord").await;
            assert_eq!(next(&mut ws).await["type"], "subscribed");
            subs.push(ws);
        }
        let per_worker = server.metric_per_worker("tickcast_subscriptions");
        assert!(
            per_worker.iter().filter(|&&n| n > 0).count() >= 2,
            "subscribers on one worker only: {per_worker:?}"
        );
        // Publishers on several connections (so several workers) at once.
        let addr = server.addr;
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                std::thread::spawn(move || {
                    for i in 0..25 {
                        post(addr, "/publish/ord", format!("{p}-{i}").as_bytes(), "");
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        let mut first: Option<Vec<String>> = None;
        for ws in &mut subs {
            let msgs = until_seq(ws, "ord", 100).await;
            assert_eq!(seqs(&msgs, "ord"), (1..=100).collect::<Vec<_>>());
            let data: Vec<String> = msgs.iter().map(|m| m["data"].as_str().unwrap().to_owned()).collect();
            match &first {
                None => first = Some(data),
                Some(f) => assert_eq!(f, &data, "every subscriber sees the same seq -> message mapping"),
            }
        }
    });
}

#[test]
fn since_replays_history_then_live_without_gap_or_duplicate() {
    let server = server(&["--threads", "2"]);
    for i in 1..=10 {
        assert_eq!(publish(&server, "hist", &i.to_string()), i);
    }
    rt().block_on(async {
        let mut ws = connect(&server, "/ws?channels=hist&since=hist:4").await;
        let ack = next(&mut ws).await;
        assert_eq!(ack["seq"]["hist"], 10);
        for i in 11..=15 {
            publish(&server, "hist", &i.to_string());
        }
        let msgs = until_seq(&mut ws, "hist", 15).await;
        assert_eq!(seqs(&msgs, "hist"), (5..=15).collect::<Vec<_>>());
        // Resubscribing by control message with since=0 on a second connection: all history.
        let mut again = connect(&server, "/ws").await;
        send(&mut again, json!({"type": "subscribe", "channels": ["hist"], "since": {"hist": 0}})).await;
        assert_eq!(next(&mut again).await["type"], "subscribed");
        let msgs = until_seq(&mut again, "hist", 15).await;
        assert_eq!(seqs(&msgs, "hist"), (1..=15).collect::<Vec<_>>());
    });
}

#[test]
fn a_gap_notice_says_what_history_no_longer_holds() {
    let server = server(&["--threads", "1", "--history", "5"]);
    for i in 1..=20 {
        publish(&server, "short", &i.to_string());
    }
    rt().block_on(async {
        let mut ws = connect(&server, "/ws?channels=short&since=short:2").await;
        assert_eq!(next(&mut ws).await["type"], "subscribed");
        let gap = next(&mut ws).await;
        assert_eq!(gap, json!({"type": "gap", "channel": "short", "from": 3, "to": 15}));
        let msgs = until_seq(&mut ws, "short", 20).await;
        assert_eq!(seqs(&msgs, "short"), (16..=20).collect::<Vec<_>>());
    });
}

#[test]
fn websocket_clients_publish_only_where_allowed() {
    let server = server(&["--threads", "2", "--allow-client-publish", "chat.*"]);
    rt().block_on(async {
        let mut listener = connect(&server, "/ws?channels=chat.room").await;
        assert_eq!(next(&mut listener).await["type"], "subscribed");
        let mut ws = connect(&server, "/ws").await;
        send(&mut ws, json!({"type": "publish", "id": 9, "channel": "chat.room", "data": {"text": "hi"}}))
            .await;
        let ack = next(&mut ws).await;
        assert_eq!(ack, json!({"type": "published", "id": 9, "channel": "chat.room", "seq": 1}));
        let m = next(&mut listener).await;
        assert_eq!((m["channel"].as_str(), m["data"]["text"].as_str()), (Some("chat.room"), Some("hi")));
        send(&mut ws, json!({"type": "publish", "id": 10, "channel": "prices", "data": 1})).await;
        let err = next(&mut ws).await;
        assert_eq!((err["code"].as_str(), err["id"].as_u64()), (Some("forbidden"), Some(10)));
    });
}

#[test]
fn http_publish_is_guarded_and_batched() {
    let server = server(&["--threads", "1", "--publish-token", "s3cret"]);
    let (status, _) = post(server.addr, "/publish/a", b"1", "");
    assert_eq!(status, 401);
    let (status, _) = post(server.addr, "/publish/a", b"1", "Authorization: Bearer wrong\r\n");
    assert_eq!(status, 403);
    let auth = "Authorization: Bearer s3cret\r\n";
    let (status, body) = post(server.addr, "/publish/a", b"1", auth);
    assert_eq!((status, body.as_str()), (200, r#"{"channel":"a","seq":1}"#));
    let batch =
        br#"[{"channel":"a","data":2},{"channel":"b","data":{"x":1}},{"channel":"bad name","data":0}]"#;
    let (status, body) = post(server.addr, "/publish", batch, auth);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0], json!({"channel": "a", "seq": 2}));
    assert_eq!(v[1], json!({"channel": "b", "seq": 1}));
    assert_eq!(v[2]["error"]["code"], "invalid_channel");
    let (status, _) = post(server.addr, "/publish/a", &vec![b'x'; 70 * 1024], auth);
    assert_eq!(status, 413);
    let (status, _) = post(server.addr, "/publish/a", &[0xff, 0xfe], auth);
    assert_eq!(status, 415);
    let (status, _) = post(server.addr, "/publish", b"not json", auth);
    assert_eq!(status, 400);
    assert_eq!(server.metric("tickcast_publishes_total"), 3, "one single publish and two batch items");

    // No token, and a listener that is not loopback-only: publishing is refused.
    let open = Server::start(&["--no-feed", "--threads", "1", "--listen", "0.0.0.0:0"]);
    // (The test harness always adds a loopback listener first; the wildcard one is second.)
    assert!(open.addrs[1].ip().is_unspecified());
    let local = std::net::SocketAddr::new([127, 0, 0, 1].into(), open.addrs[1].port());
    let (status, body) = post(local, "/publish/a", b"1", "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--publish-token"), "{body}");
}

#[test]
fn conflated_channels_give_new_subscribers_a_snapshot() {
    let server = server(&["--threads", "1", "--slow-consumer-rule", "ticker.*=conflate"]);
    for i in 1..=3 {
        publish(&server, "ticker.X", &i.to_string());
        publish(&server, "plain", &i.to_string());
    }
    rt().block_on(async {
        let mut ws = connect(&server, "/ws?channels=ticker.X,plain").await;
        assert_eq!(next(&mut ws).await["type"], "subscribed");
        let snap = next(&mut ws).await;
        assert_eq!((snap["channel"].as_str(), snap["seq"].as_u64()), (Some("ticker.X"), Some(3)));
        publish(&server, "plain", "4");
        let m = next(&mut ws).await;
        assert_eq!(
            (m["channel"].as_str(), m["seq"].as_u64()),
            (Some("plain"), Some(4)),
            "no snapshot for plain"
        );
    });
}

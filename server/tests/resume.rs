//! Resuming across a server restart: positions carry the history's epoch, and a client whose
//! position belongs to the previous run is told (`reset`) instead of silently skipping the new
//! run's first messages. The real binary, killed and started again; `ureq` as the client.

mod common;

use serde_json::Value;

use common::Server;
use common::http::{agent, get_json, next_event, publish, sse_events};

/// `a:3@E,b:1@E` from a poll answer's `next` and `epoch`.
fn since_of(answer: &Value) -> String {
    let next = answer["next"].as_object().unwrap();
    let parts: Vec<String> = next
        .iter()
        .map(|(channel, seq)| format!("{channel}:{seq}@{}", answer["epoch"][channel].as_str().unwrap()))
        .collect();
    parts.join(",")
}

#[test]
fn a_poll_across_a_restart_gets_a_reset_not_silence() {
    let agent = agent();
    let first = Server::start(&["--threads", "1"]);
    for i in 0..5 {
        publish(&first, "a", &format!("{i}"));
    }
    let (status, v) = get_json(&agent, first.addr, "/poll?channels=a,b&since=a:0,b:0");
    assert_eq!(status, 200);
    assert_eq!(v["next"], serde_json::json!({"a": 5, "b": 0}));
    let since = since_of(&v);
    drop(first); // killed

    let second = Server::start(&["--threads", "1"]);
    publish(&second, "a", "\"new run 1\"");
    publish(&second, "a", "\"new run 2\"");
    let (status, v) = get_json(&agent, second.addr, &format!("/poll?channels=a,b&since={since}"));
    assert_eq!(status, 200, "{v}");
    let resets = v["resets"].as_array().expect("resets");
    let epoch = v["epoch"]["a"].as_str().unwrap();
    assert!(!since.contains(epoch), "a new run has a new epoch");
    assert_eq!(resets.len(), 2, "both channels belong to the old run: {v}");
    assert_eq!(resets[0], serde_json::json!({"type": "reset", "channel": "a", "epoch": epoch, "seq": 2}));
    let data: Vec<&Value> = v["messages"].as_array().unwrap().iter().map(|m| &m["data"]).collect();
    assert_eq!(data, ["new run 1", "new run 2"], "the new run's messages are delivered, not skipped");
    assert_eq!(v["next"], serde_json::json!({"a": 2, "b": 0}));

    // The next poll, from the new epoch's position: nothing stale, nothing repeated.
    publish(&second, "a", "\"new run 3\"");
    let (_, v) = get_json(&agent, second.addr, &format!("/poll?channels=a,b&since={}", since_of(&v)));
    assert!(v.get("resets").is_none());
    assert_eq!(v["messages"][0]["seq"], 3);
    // A client that never sent an epoch keeps working as before.
    let (_, v) = get_json(&agent, second.addr, "/poll?channels=a&since=a:1");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn a_long_poll_from_the_previous_run_answers_at_once_with_a_reset() {
    let agent = agent();
    let first = Server::start(&["--threads", "1"]);
    publish(&first, "lp", "1");
    let (_, v) = get_json(&agent, first.addr, "/poll?channels=lp&since=lp:0");
    let since = since_of(&v);
    drop(first);
    let second = Server::start(&["--threads", "1"]);
    let started = std::time::Instant::now();
    let (_, v) = get_json(&agent, second.addr, &format!("/longpoll?channels=lp&since={since}&timeout=20"));
    assert!(started.elapsed().as_secs() < 10, "a reset is news: no wait");
    assert_eq!(v["resets"][0]["channel"], "lp");
    assert_eq!(v["resets"][0]["seq"], 0);
}

#[test]
fn an_event_stream_across_a_restart_gets_a_reset_on_every_channel() {
    let agent = agent();
    let first = Server::start(&["--threads", "1"]);
    let rx = sse_events(&agent, first.addr, "/sse?channels=a,b", &[]);
    assert_eq!(next_event(&rx).kind, "subscribed");
    publish(&first, "a", "1");
    publish(&first, "b", "1");
    next_event(&rx);
    let last = next_event(&rx);
    let last_id = last.id.expect("message events have an id");
    // The id carries the stream's position on both channels.
    let epoch = last_id.split('@').nth(1).unwrap().split(',').next().unwrap().to_owned();
    assert_eq!(last_id, format!("a:1@{epoch},b:1@{epoch}"));
    drop(first);
    drop(rx);

    let second = Server::start(&["--threads", "1"]);
    publish(&second, "a", "\"a new 1\"");
    publish(&second, "b", "\"b new 1\"");
    let rx = sse_events(&agent, second.addr, "/sse?channels=a,b", &[("Last-Event-ID", &last_id)]);
    let ack = next_event(&rx);
    assert_eq!(ack.kind, "subscribed");
    let ack: Value = serde_json::from_str(&ack.data).unwrap();
    let new_epoch = ack["epoch"]["a"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, epoch);
    let mut resets = Vec::new();
    let mut data = Vec::new();
    while data.len() < 2 {
        let e = next_event(&rx);
        let v: Value = serde_json::from_str(&e.data).unwrap();
        match e.kind.as_str() {
            "reset" => resets.push(v["channel"].as_str().unwrap().to_owned()),
            "message" => data.push(v["data"].as_str().unwrap().to_owned()),
            other => panic!("unexpected {other} event: {v}"),
        }
    }
    resets.sort();
    assert_eq!(resets, ["a", "b"]);
    data.sort();
    assert_eq!(data, ["a new 1", "b new 1"]);
    assert_eq!(second.metric("tickcast_reset_notices_total"), 2);
}

#[test]
fn last_event_id_resumes_every_channel_of_a_stream() {
    // The browser case: events a:1 and b:1 arrive, the stream drops, a:2 and b:2 are
    // published, and the client comes back with the id of the last event it saw.
    let agent = agent();
    let server = Server::start(&["--threads", "1"]);
    let rx = sse_events(&agent, server.addr, "/sse?channels=a,b", &[]);
    next_event(&rx);
    publish(&server, "a", "\"a1\"");
    publish(&server, "b", "\"b1\"");
    next_event(&rx);
    let last_id = next_event(&rx).id.unwrap();
    drop(rx);
    publish(&server, "a", "\"a2\"");
    publish(&server, "b", "\"b2\"");
    let rx = sse_events(&agent, server.addr, "/sse?channels=a,b", &[("Last-Event-ID", &last_id)]);
    assert_eq!(next_event(&rx).kind, "subscribed");
    let mut data = vec![];
    for _ in 0..2 {
        let e = next_event(&rx);
        assert_eq!(e.kind, "message");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        data.push(v["data"].as_str().unwrap().to_owned());
    }
    data.sort();
    assert_eq!(data, ["a2", "b2"], "neither channel lost a message");
    // A single-channel stream's id is that channel's position, with its epoch.
    let rx = sse_events(&agent, server.addr, "/sse?channels=a&since=a:1", &[]);
    next_event(&rx);
    let id = next_event(&rx).id.unwrap();
    assert!(id.starts_with("a:2@"), "{id}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_websocket_subscribe_across_a_restart_gets_a_reset() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    async fn json(ws: &mut common::Ws) -> Value {
        let Message::Text(text) = common::next_message(ws).await else { panic!("not text") };
        serde_json::from_str(&text).unwrap()
    }
    let first = Server::start(&["--threads", "1"]);
    publish(&first, "w", "1");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(first.ws_url("/ws?channels=w&since=w:0")).await.unwrap();
    let ack = json(&mut ws).await;
    let old_epoch = ack["epoch"]["w"].as_str().unwrap().to_owned();
    assert_eq!(json(&mut ws).await["seq"], 1);
    drop(ws);
    drop(first);

    let second = Server::start(&["--threads", "1"]);
    publish(&second, "w", "\"new\"");
    let (mut ws, _) = tokio_tungstenite::connect_async(second.ws_url("/ws")).await.unwrap();
    let subscribe = format!(
        r#"{{"type":"subscribe","id":7,"channels":["w"],"since":{{"w":{{"seq":1,"epoch":"{old_epoch}"}}}}}}"#
    );
    ws.send(Message::text(subscribe)).await.unwrap();
    let ack = json(&mut ws).await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_u64()), (Some("subscribed"), Some(7)));
    let reset = json(&mut ws).await;
    assert_eq!(reset["type"], "reset");
    assert_eq!(reset["epoch"], ack["epoch"]["w"]);
    assert_ne!(reset["epoch"].as_str(), Some(old_epoch.as_str()));
    let msg = json(&mut ws).await;
    assert_eq!((msg["seq"].as_u64(), msg["data"].as_str()), (Some(1), Some("new")));
}

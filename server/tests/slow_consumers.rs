//! Subscribers that stop reading: each slow-consumer policy with a raw client that does not
//! read while the publisher floods, then reads everything; the server's memory stays bounded.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, post, raw_ws, read_frame, rss_kib};
use serde_json::Value;

const MESSAGES: usize = 30_000;
const BATCH: usize = 200;
const SIZE: usize = 1000;

/// Subscribes and then does not read: the kernel's socket buffers fill (about 10 MB on
/// loopback), then the server's queue.
fn slow_subscriber(server: &Server, channel: &str) -> TcpStream {
    raw_ws(server.addr, &format!("/ws?channels={channel}"))
}

/// Publishes MESSAGES messages of about SIZE bytes in batches; returns the last seq.
fn flood(server: &Server, channel: &str) -> u64 {
    let payload = "x".repeat(SIZE);
    let mut last = 0;
    for b in 0..MESSAGES / BATCH {
        let items: Vec<String> = (0..BATCH)
            .map(|i| {
                format!(r#"{{"channel":"{channel}","data":{{"n":{},"pad":"{payload}"}}}}"#, b * BATCH + i)
            })
            .collect();
        let body = format!("[{}]", items.join(","));
        let (status, answer) = post(server.addr, "/publish", body.as_bytes(), "");
        assert_eq!(status, 200, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        last = v[BATCH - 1]["seq"].as_u64().unwrap();
    }
    last
}

/// Reads frames until the server closes or goes quiet: (seqs received, gap ranges, close code).
fn read_all(s: &mut TcpStream) -> (Vec<u64>, Vec<(u64, u64)>, Option<u16>) {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (mut seqs, mut gaps, mut close) = (Vec::new(), Vec::new(), None);
    while let Ok((op, payload)) = read_frame(s) {
        match op {
            1 => {
                let v: Value = serde_json::from_slice(&payload).unwrap();
                match v["type"].as_str() {
                    Some("gap") => gaps.push((v["from"].as_u64().unwrap(), v["to"].as_u64().unwrap())),
                    Some(_) => {}
                    None => seqs.push(v["seq"].as_u64().unwrap()),
                }
            }
            8 => {
                close = Some(u16::from_be_bytes([payload[0], payload[1]]));
                break;
            }
            _ => {}
        }
    }
    (seqs, gaps, close)
}

fn start(policy: &str) -> Server {
    Server::start(&[
        "--threads",
        "1",
        "--send-queue-limit",
        "64KiB",
        "--max-body",
        "1MiB",
        "--slow-consumer",
        policy,
    ])
}

#[test]
fn disconnect_closes_a_slow_consumer_with_1013() {
    let server = start("disconnect");
    let mut slow = slow_subscriber(&server, "flood");
    let rss_before = rss_kib(server.pid());
    flood(&server, "flood");
    let grown = rss_kib(server.pid()) - rss_before;
    eprintln!("RSS grew by {grown} KiB");
    assert!(grown < 32 * 1024, "server memory grew with the backlog: {grown} KiB");
    assert_eq!(server.metric("tickcast_slow_consumer_closes_total"), 1);
    let (seqs, gaps, close) = read_all(&mut slow);
    assert_eq!(close, Some(1013));
    assert!(gaps.is_empty());
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "what arrived before the close is contiguous");
}

#[test]
fn drop_oldest_tells_the_client_exactly_what_it_lost() {
    let server = start("drop-oldest");
    let mut slow = slow_subscriber(&server, "flood");
    let rss_before = rss_kib(server.pid());
    let last = flood(&server, "flood");
    let grown = rss_kib(server.pid()) - rss_before;
    eprintln!("RSS grew by {grown} KiB");
    assert!(grown < 32 * 1024, "server memory grew with the backlog: {grown} KiB");
    let (seqs, gaps, close) = read_all(&mut slow);
    assert_eq!(close, None, "drop-oldest keeps the connection");
    assert!(!gaps.is_empty(), "a flood this size must overflow 64 KiB");
    assert!(server.metric("tickcast_dropped_messages_total") > 0);
    // Every seq is delivered once or announced missing; nothing is silent, nothing twice.
    let mut accounted: BTreeMap<u64, u32> = BTreeMap::new();
    for s in &seqs {
        *accounted.entry(*s).or_default() += 1;
    }
    for (from, to) in &gaps {
        for s in *from..=*to {
            *accounted.entry(s).or_default() += 1;
        }
    }
    assert_eq!(accounted.len() as u64, last, "every seq accounted for");
    assert!(accounted.values().all(|&n| n == 1), "no seq delivered twice or both delivered and dropped");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "delivered in order");
    assert_eq!(seqs.last(), Some(&last), "the newest message arrives");
}

#[test]
fn conflate_keeps_the_newest_value() {
    let server = start("conflate");
    let mut slow = slow_subscriber(&server, "flood");
    let t = std::time::Instant::now();
    let last = flood(&server, "flood");
    eprintln!("flood {:?}", t.elapsed());
    let (seqs, gaps, close) = read_all(&mut slow);
    eprintln!("read {:?}", t.elapsed());
    assert_eq!(close, None);
    assert!(gaps.is_empty(), "conflation is not loss: no gap notices");
    assert!(server.metric("tickcast_conflated_messages_total") > 0);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(seqs.last(), Some(&last), "the newest value always arrives");
    // A fast subscriber on the same server still gets everything.
    drop(slow);
    let mut fast = raw_ws(server.addr, "/ws?channels=fast");
    let publisher = {
        let addr = server.addr;
        std::thread::spawn(move || {
            for i in 0..50 {
                post(addr, "/publish/fast", format!("{i}").as_bytes(), "");
            }
        })
    };
    publisher.join().unwrap();
    let (seqs, _, _) = read_all(&mut fast);
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let _ = fast.write_all(&common::masked(0x88, &1000u16.to_be_bytes()));
}

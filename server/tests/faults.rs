//! Faults a production server meets (issue 16): the process paused under load, clients killed
//! while the server is sending to them. The real binary on loopback; tokio-tungstenite and
//! plain sockets as clients.

mod common;

use std::time::{Duration, Instant};

use common::{Server, post, raw_ws};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// One scraped figure, summed over workers (`tickcast_*`) or as is (`process_*`).
fn figure(server: &Server, name: &str) -> f64 {
    let body = server.http("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Paused for 5 s (SIGSTOP) while messages are being published: every subscriber keeps its
/// connection and gets every message, in order, once the server runs again.
#[test]
fn a_paused_server_keeps_its_connections_and_catches_up() {
    let server = Server::start(&["--threads", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..20 {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(server.ws_url("/ws?channels=p")).await.unwrap();
            let Message::Text(ack) = common::next_message(&mut ws).await else { panic!("no ack") };
            assert!(ack.contains("subscribed"));
            clients.push(ws);
        }
        clients
    });
    let addr = server.addr;
    let publisher = std::thread::spawn(move || {
        // 100 messages over ~7 s; the ones sent while the server is stopped wait in the kernel.
        for i in 1..=100 {
            let (status, body) = post(addr, "/publish/p", format!("{i}").as_bytes(), "");
            assert_eq!(status, 200, "{body}");
            std::thread::sleep(Duration::from_millis(70));
        }
    });
    std::thread::sleep(Duration::from_millis(1000));
    server.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(5));
    server.signal(libc::SIGCONT);
    publisher.join().unwrap();
    rt.block_on(async {
        for ws in &mut clients {
            for want in 1..=100u64 {
                let msg =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
                let Message::Text(text) = msg else { panic!("not text: {msg:?}") };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["seq"], want, "{text}");
            }
        }
    });
    assert_eq!(figure(&server, "tickcast_websocket_connections"), 20.0);
    assert_eq!(figure(&server, "tickcast_slow_consumer_closes_total"), 0.0);
}

/// Subscribers that stop reading, then are killed (RST) while the server still has their
/// messages queued: nothing stays behind (connections, descriptors), and it serves on.
#[test]
fn clients_killed_mid_send_leave_nothing_behind() {
    let server = Server::start(&["--threads", "1", "--send-queue-limit", "4MiB"]);
    let fds_before = figure(&server, "process_open_fds");
    let clients: Vec<_> = (0..30)
        .map(|_| {
            let s = raw_ws(server.addr, "/ws?channels=k");
            socket2::SockRef::from(&s).set_recv_buffer_size(4096).unwrap();
            s
        })
        .collect();
    // About 3 MB per subscriber: far more than the kernel takes for a client that never reads.
    let payload = format!("\"{}\"", "k".repeat(30_000));
    for _ in 0..100 {
        let (status, _) = post(server.addr, "/publish/k", payload.as_bytes(), "");
        assert_eq!(status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(figure(&server, "tickcast_websocket_connections"), 30.0, "slow, not closed (4 MiB queues)");
    for s in clients {
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap(); // close = RST
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while figure(&server, "tickcast_websocket_connections") > 0.0 {
        assert!(Instant::now() < deadline, "killed clients still counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The one connection left is the scrape's own.
    assert_eq!(figure(&server, "tickcast_connections"), 1.0);
    assert_eq!(figure(&server, "process_open_fds"), fds_before, "descriptors left behind");
    // And it serves on.
    let resp = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

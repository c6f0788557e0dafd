//! Server-level behaviour: timeouts, limits, threads, shutdown.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, closed_within, raw_ws, read_close_code, read_frame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn slowloris_handshake_is_dropped_within_the_timeout() {
    let server = Server::start(&["--threads", "1", "--handshake-timeout", "1s"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    // Dribble a request that never completes.
    for chunk in ["GET /echo HTTP/1.1\r\n", "Host: t\r\n", "X-Slow: 1\r\n"] {
        let _ = s.write_all(chunk.as_bytes());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed_within(&mut s, Duration::from_secs(5)), "slow client kept");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "dropped after {took:?}");
    assert_eq!(server.metric("tickcast_handshake_timeouts_total"), 1);
    let mut ok = raw_ws(server.addr, "/echo");
    ok.write_all(&common::masked(0x81, b"hi")).unwrap();
    assert_eq!(read_frame(&mut ok).unwrap(), (1, b"hi".to_vec()));
}

#[test]
fn connections_past_the_limit_get_503() {
    let server = Server::start(&["--threads", "1", "--max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| raw_ws(server.addr, "/echo")).collect();
    let resp = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    drop(held);
    // Capacity comes back once they are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        if resp.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "capacity not released: {resp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // At least the one above (retries while the held ones close may add more).
    assert!(server.metric("tickcast_refused_total") >= 1);
}

#[test]
fn sigterm_sends_1001_and_exits_cleanly() {
    let mut server = Server::start(&["--threads", "2"]);
    let mut clients: Vec<TcpStream> = (0..6).map(|_| raw_ws(server.addr, "/echo")).collect();
    server.signal(libc::SIGTERM);
    for c in &mut clients {
        assert_eq!(read_close_code(c), 1001);
        // Answer the close as a well-behaved client would.
        c.write_all(&common::masked(0x88, &1001u16.to_be_bytes())).unwrap();
    }
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting after shutdown");
}

#[test]
fn second_signal_exits_at_once() {
    let mut server = Server::start(&["--threads", "1", "--shutdown-timeout", "60s"]);
    let _client = raw_ws(server.addr, "/echo"); // never answers the close
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.wait_exit(Duration::from_millis(100)), None, "exited before the client answered");
    server.signal(libc::SIGINT);
    assert!(server.wait_exit(Duration::from_secs(3)).is_some(), "second signal ignored");
}

#[test]
fn connections_spread_over_workers_and_are_served_in_parallel() {
    let server = Server::start(&["--threads", "4"]);
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..64 {
            let (ws, _) = tokio_tungstenite::connect_async(server.ws_url("/echo")).await.unwrap();
            clients.push(ws);
        }
        let per_worker = server.metric_per_worker("tickcast_websocket_connections");
        assert_eq!(per_worker.len(), 4);
        assert_eq!(per_worker.iter().sum::<u64>(), 64);
        assert!(per_worker.iter().all(|&n| n > 0), "a worker got no connections: {per_worker:?}");
        // Every connection, on every worker, echoes concurrently.
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut ws)| {
                tokio::spawn(async move {
                    for j in 0..20 {
                        let text = format!("{i}-{j}");
                        ws.send(Message::text(text.clone())).await.unwrap();
                        let got = ws.next().await.unwrap().unwrap();
                        assert_eq!(got, Message::text(text));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let turns = server.metric_per_worker("tickcast_messages_received_total");
    assert!(turns.iter().all(|&n| n > 0), "{turns:?}");
}

#[test]
fn abrupt_resets_are_handled() {
    let server = Server::start(&["--threads", "1"]);
    for _ in 0..20 {
        let s = raw_ws(server.addr, "/echo");
        // SO_LINGER 0: close sends RST instead of FIN.
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt with a valid fd and a correctly sized linger struct.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                std::ptr::from_ref(&linger).cast(),
                std::mem::size_of::<libc::linger>() as u32,
            )
        };
        assert_eq!(rc, 0);
        drop(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("tickcast_websocket_connections") != 0 {
        assert!(Instant::now() < deadline, "reset connections not cleaned up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut ok = raw_ws(server.addr, "/echo");
    ok.write_all(&common::masked(0x82, &[1, 2, 3])).unwrap();
    assert_eq!(read_frame(&mut ok).unwrap(), (2, vec![1, 2, 3]));
}

#[test]
fn keep_alive_connections_outlive_the_handshake_timeout_while_used() {
    use std::io::Read;
    let server = Server::start(&["--threads", "1", "--handshake-timeout", "1s"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_millis(2600) {
        s.write_all(b"POST /publish/ka HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1").unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        served += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(served >= 6);
    // Idle past the timeout: now it is closed.
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}

#[test]
fn a_full_descriptor_table_backs_off_instead_of_spinning() {
    // --max-connections 2 makes the table 2 + 256 (refusal headroom) entries.
    let server = Server::start(&["--threads", "1", "--max-connections", "2", "--close-timeout", "1s"]);
    let held: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(server.addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(800));
    // Retried once per 100 ms tick and logged at most once per tick, not once per loop turn.
    let warnings = server.log.try_iter().filter(|l| l.contains("accept failed")).count();
    assert!((1..=12).contains(&warnings), "{warnings} accept warnings in 0.8 s");
    drop(held);
    // Once the refused connections are gone the server accepts and serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = server.http("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        if resp.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {resp:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let first = Server::start(&["--threads", "2"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--no-feed", "--threads", "1", "--listen", &first.addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another server already listening"), "{stderr}");
    // The first server is untouched.
    let resp = first.http("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

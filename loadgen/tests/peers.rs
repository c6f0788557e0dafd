//! End to end against the real comparison peers that do not speak plain WebSocket: Socket.IO
//! (Node) and Action Cable (Ruby), each started with `scripts/peers.sh start NAME PORT` on an
//! ephemeral loopback port, driven through the load generator's library API with `--protocol`.
//!
//! A peer that is not installed (`scripts/peers.sh status NAME` fails: no node_modules, no Ruby
//! packages) is SKIPPED with a message saying how to install it, so a machine without Node or
//! Ruby still passes. `TICKCAST_PEERS_REQUIRED=socketio,...` turns a skip into a failure:
//! `scripts/test.sh` installs the Socket.IO peer and requires it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tickcast_loadgen::cli::{Cli, Outputs, plan_of};
use tickcast_loadgen::engine::coordinator::Observe;
use tickcast_loadgen::result::RunResult;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// One peer process (`peers.sh start` execs the server, so this is the server's PID); stopped
/// with SIGTERM (its redis-server, if any, follows by its parent-death signal), SIGKILL after 5 s.
struct PeerProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PeerProcess {
    /// Starts `name`, or `None` (with a message) when it is not installed here.
    fn start(name: &str, env: &[(&str, &str)]) -> Option<PeerProcess> {
        let peers = root().join("scripts/peers.sh");
        let status = Command::new(&peers).args(["status", name]).output().expect("running scripts/peers.sh");
        if !status.status.success() {
            let why = String::from_utf8_lossy(&status.stdout).trim().to_string();
            let required = std::env::var("TICKCAST_PEERS_REQUIRED").unwrap_or_default();
            assert!(
                !required.split(',').any(|r| r.trim() == name),
                "peer {name} is required (TICKCAST_PEERS_REQUIRED) but not installed: {why}"
            );
            eprintln!(
                "SKIPPED: peer {name} is not installed here ({why}); `scripts/peers.sh install {name}` \
                 installs it (needs {})",
                if name == "socketio" { "Node.js and npm" } else { "Debian's Ruby packages" }
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("tickcast-loadgen-peer-{name}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&peers)
            .args(["start", name, &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting the peer");
        let mut peer = PeerProcess { child, port, log };
        // Rails boots in seconds; on a busy 2-core machine, give it a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!("peer {name} exited ({status}): {}", peer.log_text());
            }
            assert!(Instant::now() < deadline, "peer {name} did not listen within 60 s: {}", peer.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(peer)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured run at a time (real timing, external servers).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(args: &[&str]) -> RunResult {
    let mut all = vec!["tickcast-loadgen"];
    all.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(all).unwrap();
    let plan = plan_of(&cli.command).unwrap().0;
    tickcast_loadgen::run(&plan, Observe::default(), &Outputs::default(), true).unwrap()
}

/// Every subscriber opened (on the protocol's confirmation, timed in `subscribe`), got every
/// published message exactly once and none was lost; nothing was malformed, and the protocol's
/// frames were counted as control messages, not as deliveries.
fn assert_every_message_delivered(r: &RunResult, clients: u64, peer: &PeerProcess) {
    let c = &r.totals.counters;
    let context = || format!("{c:?}\n{:?}\n{:?}\npeer log:\n{}", r.loss, r.warnings, peer.log_text());
    assert_eq!(c.connected, clients, "{}", context());
    assert_eq!(c.connect_failed + c.handshake_failed + c.disconnected, 0, "{}", context());
    assert_eq!(r.totals.hists["subscribe"].len(), clients, "{}", context());
    let published = r.totals.published;
    assert!(published > 0 && c.publish_ok == published, "{}", context());
    assert_eq!(r.totals.streams, clients);
    assert_eq!(r.loss.delivered, clients * published, "{}", context());
    assert_eq!(r.loss.lost() + r.loss.duplicates, 0, "{}", context());
    assert_eq!(r.totals.hists["latency"].len(), clients * published);
    assert_eq!((c.malformed, c.messages_unstamped), (0, 0), "{}", context());
    // At least the two frames of the opening per subscriber.
    assert!(c.control_messages >= 2 * clients, "{}", context());
    assert_eq!(
        c.messages_received,
        r.loss.delivered + r.loss.duplicates + c.control_messages,
        "{}",
        context()
    );
}

/// A `rate` run of Socket.IO subscribers reading with `receiver`; `flags` are the rest, spaced.
fn socketio_rate(url: &str, receiver: &str, flags: &str) -> RunResult {
    let mut args = vec!["rate", "--url", url, "--protocol", "socketio", "--ws-receiver", receiver];
    args.extend(flags.split_whitespace());
    run(&args)
}

#[test]
fn socketio_subscribers_get_every_message_on_both_receive_paths() {
    let _serial = one_at_a_time();
    let Some(peer) = PeerProcess::start("socketio", &[]) else { return };
    let url = peer.url();
    for receiver in ["ring", "tokio"] {
        let r = socketio_rate(&url, receiver, "--clients 20 --rate 200 --duration 1s --connect-rate 1000");
        assert_every_message_delivered(&r, 20, &peer);
        // Socket.IO keeps the order.
        assert_eq!(r.loss.reordered, 0, "{receiver}");
    }
}

/// With a 300 ms ping interval and a 300 ms timeout, a client that did not answer the server's
/// `2` with `3` would be disconnected within 0.6 s: every one must still be there after 2.5 s,
/// held idle (tokio-uring reads) and as subscribers (the receive ring).
#[test]
fn socketio_pings_are_answered() {
    let _serial = one_at_a_time();
    let env = [("SOCKETIO_PING_INTERVAL_MS", "300"), ("SOCKETIO_PING_TIMEOUT_MS", "300")];
    let Some(peer) = PeerProcess::start("socketio", &env) else { return };
    let url = peer.url();
    let r = run(&["idle", "--url", &url, "--protocol", "socketio", "--clients", "10", "--hold", "2500ms"]);
    let c = &r.totals.counters;
    assert_eq!((c.connected, c.disconnected, c.handshake_failed), (10, 0, 0), "{c:?}\n{}", peer.log_text());
    // Open packet, CONNECT answer, and a ping every 300 ms.
    assert!(c.control_messages >= 10 * (2 + 5), "{c:?}");
    assert_eq!(c.malformed, 0);
    for receiver in ["ring", "tokio"] {
        let r = socketio_rate(&url, receiver, "--clients 10 --rate 100 --duration 2s");
        assert_every_message_delivered(&r, 10, &peer);
        assert!(r.totals.counters.control_messages >= 10 * (2 + 5), "{receiver}: {:?}", r.totals.counters);
    }
}

/// Action Cable delivers every message once, in any order (each delivery is a job on the
/// connection's 4-thread worker pool): swaps count as reordered, never as loss. Its pings (every
/// 3 s) are control messages that need no answer. Published without pipelining: puma 5 answers
/// pipelined requests with 400 or drops them (see docs/loadgen.md, `--publisher http-pool`).
#[test]
fn actioncable_subscribers_get_every_message_in_any_order() {
    let _serial = one_at_a_time();
    let Some(peer) = PeerProcess::start("actioncable", &[]) else { return };
    let url = peer.url();
    let r = run(&[
        "rate",
        "--url",
        &url,
        "--protocol",
        "actioncable",
        "--publisher",
        "http-pool",
        "--clients",
        "20",
        "--rate",
        "50",
        "--duration",
        "3500ms",
        "--connect-rate",
        "500",
    ]);
    assert_every_message_delivered(&r, 20, &peer);
    // Welcome, confirmation, and at least one ping in 3.5 s (plus the drain second).
    assert!(r.totals.counters.control_messages >= 20 * 3, "{:?}", r.totals.counters);
    eprintln!("actioncable: {} of {} deliveries arrived out of order", r.loss.reordered, r.loss.delivered);
    let r = run(&["idle", "--url", &url, "--protocol", "actioncable", "--clients", "10", "--hold", "3500ms"]);
    let c = &r.totals.counters;
    assert_eq!((c.connected, c.disconnected, c.handshake_failed), (10, 0, 0), "{c:?}\n{}", peer.log_text());
    assert_eq!(c.malformed, 0);
}

/// The wrong protocol fails at once, as a handshake failure, not after the open timeout: Action
/// Cable clients on Socket.IO's route get an Engine.IO open packet instead of a welcome.
#[test]
fn the_wrong_protocol_fails_the_opening_fast() {
    let _serial = one_at_a_time();
    let Some(peer) = PeerProcess::start("socketio", &[]) else { return };
    let url = peer.url();
    let started = Instant::now();
    let path = "/socket.io/?EIO=4&transport=websocket";
    let r = run(&["connect", "--url", &url, "--protocol", "actioncable", "--path", path, "--clients", "3"]);
    let c = &r.totals.counters;
    assert_eq!((c.connected, c.handshake_failed), (0, 3), "{c:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

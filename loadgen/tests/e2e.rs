//! End to end: the load generator's library API against the tokio-tungstenite peer, run in this
//! process on an ephemeral loopback port. Every run is small and bounded (seconds).

use std::net::SocketAddr;
use std::time::Duration;

use tickcast_loadgen::cli::{Cli, Outputs, plan_of};
use tickcast_loadgen::engine::coordinator::Observe;
use tickcast_loadgen::plan::Plan;
use tickcast_loadgen::result::RunResult;

/// The peer on its own tokio runtime (in a thread); dropping it shuts the server down, closing
/// every connection.
struct Peer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Peer {
    fn start() -> Peer {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(peer_tokio_tungstenite::serve(listener, 4096));
        Peer { addr, runtime: Some(runtime) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every test here is a small measured run with real timing: run them one at a time, so that on a
/// small machine they do not slow each other down (a stall or a late echo must come from the test
/// itself). A failed test poisons the lock; the next one takes it anyway.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn plan(args: &[&str]) -> Plan {
    let mut all = vec!["tickcast-loadgen"];
    all.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(all).unwrap();
    plan_of(&cli.command).unwrap().0
}

fn run(plan: &Plan, observe: Observe) -> RunResult {
    tickcast_loadgen::run(plan, observe, &Outputs::default(), true).unwrap()
}

#[test]
fn echo_closed_loop_round_trips() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["echo", "--url", &url, "--clients", "4", "--duration", "500ms", "--size", "200"]);
    let r = run(&p, Observe::default());
    let c = r.totals.counters;
    assert_eq!(c.connected, 4);
    assert_eq!(c.connect_failed + c.handshake_failed + c.disconnected, 0);
    assert!(c.messages_sent > 10, "{c:?}");
    // Closed loop: at most one message per client is in flight when the run stops.
    assert!(c.messages_received + 4 >= c.messages_sent, "{c:?}");
    assert_eq!(r.totals.hists["rtt"].len(), c.messages_received);
    assert_eq!(r.loss.duplicates + r.loss.missing, 0);
    assert!(r.run_seconds >= 0.5);
}

#[test]
fn echo_open_loop_keeps_its_schedule() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["echo", "--url", &url, "--clients", "2", "--rate", "200", "--duration", "1s"]);
    let r = run(&p, Observe::default());
    let sent = r.totals.counters.messages_sent;
    // 2 clients x 200/s x 1 s, give or take the edges.
    assert!((360..=402).contains(&sent), "sent {sent}");
    assert!(r.totals.hists["rtt"].len() + 4 >= sent);
}

#[test]
fn rate_delivers_everything_to_every_subscriber() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["rate", "--url", &url, "--clients", "5", "--rate", "500", "--duration", "1s"]);
    let r = run(&p, Observe::default());
    let published = r.totals.published;
    assert!((450..=501).contains(&published), "published {published}");
    assert_eq!(r.totals.counters.publish_ok, published);
    assert_eq!(r.totals.streams, 5);
    assert_eq!(r.loss.delivered, 5 * published, "{:?}", r.loss);
    assert_eq!(r.loss.lost() + r.loss.duplicates + r.loss.reordered, 0);
    assert_eq!(r.totals.hists["latency"].len(), 5 * published);
    assert!(r.warnings.iter().all(|w| !w.message.contains("DELIVERY")), "{:?}", r.warnings);
}

/// Rates and the load generator's busy share are over the measured (publishing) phase: the drain
/// after it only collects late arrivals. (`run_seconds` used to include the drain second, so a
/// 1 s run read at half its rate.)
#[test]
fn rates_are_over_the_publishing_phase_not_the_drain() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["rate", "--url", &url, "--clients", "5", "--rate", "500", "--duration", "1s"]);
    let r = run(&p, Observe::default());
    assert!((0.99..1.1).contains(&r.run_seconds), "run {}", r.run_seconds);
    assert!((0.99..1.5).contains(&r.drain_seconds), "drain {}", r.drain_seconds);
    assert_eq!(r.loss.lost(), 0, "{:?}", r.loss);
    let step = tickcast_loadgen::scenarios::search::judge(&r, None);
    // 5 subscribers x 500 messages/s.
    assert!(step.deliveries_per_second > 2300.0, "{}", step.deliveries_per_second);
    assert!(r.loadgen_run_cpu_seconds + r.loadgen_drain_cpu_seconds <= r.loadgen_cpu_seconds + 0.05);
    let table = tickcast_loadgen::report::table::render(&r);
    assert!(table.contains("s drain)"), "{table}");

    // Publishing ends after `--count` messages: so does the measured phase, and the run ends a
    // drain later instead of after the planned duration.
    let p = plan(&[
        "rate",
        "--url",
        &url,
        "--clients",
        "2",
        "--rate",
        "500",
        "--count",
        "100",
        "--duration",
        "5s",
    ]);
    let started = std::time::Instant::now();
    let r = run(&p, Observe::default());
    assert_eq!(r.totals.published, 100);
    assert!((0.19..0.3).contains(&r.run_seconds), "run {}", r.run_seconds);
    assert_eq!(r.loss.delivered, 200, "{:?}", r.loss);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[test]
fn connect_storm_counts_handshakes() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["connect", "--url", &url, "--clients", "200", "--connect-rate", "2000"]);
    let r = run(&p, Observe::default());
    assert_eq!(r.totals.counters.connected, 200);
    assert_eq!(r.totals.hists["handshake"].len(), 200);
    assert_eq!(r.totals.hists["connect"].len(), 200);
    // Paced at 2000/s: 200 connections take about 0.1 s.
    assert!(r.connect_seconds >= 0.09, "{}", r.connect_seconds);
}

#[test]
fn idle_over_worker_processes_samples_the_server() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&[
        "idle",
        "--url",
        &url,
        "--clients",
        "60",
        "--workers",
        "2",
        "--hold",
        "1500ms",
        "--source-ips",
        "127.0.0.1-127.0.0.3",
    ]);
    let observe = Observe {
        server_pid: Some(std::process::id()),
        worker_exe: Some(env!("CARGO_BIN_EXE_tickcast-loadgen").into()),
    };
    let r = run(&p, observe);
    assert_eq!(r.plan.workers, 2);
    assert_eq!(r.totals.counters.connected, 60);
    assert_eq!(r.totals.counters.disconnected, 0);
    assert!(r.totals.cpu_seconds >= 0.0);
    let server = r.server.expect("server report");
    let held = server.held.expect("sampled while held");
    assert!(held.rss_bytes > 0 && held.tcp_inuse >= 60, "{held:?}");
}

#[test]
fn a_server_that_dies_mid_run_shows_up() {
    let _serial = one_at_a_time();
    let mut peer = Peer::start();
    let url = peer.url();
    let p = plan(&["echo", "--url", &url, "--clients", "3", "--duration", "3s"]);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        peer.kill();
    });
    let started = std::time::Instant::now();
    let r = run(&p, Observe::default());
    killer.join().unwrap();
    assert_eq!(r.totals.counters.disconnected, 3, "{:?}", r.totals.counters);
    assert!(r.warnings.iter().any(|w| w.message.contains("cut off")), "{:?}", r.warnings);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn ramp_steps_until_the_slo_breaks() {
    let _serial = one_at_a_time();
    use tickcast_loadgen::scenarios::search::{Stepping, last_good, ramp};
    let peer = Peer::start();
    let url = peer.url();
    let base = plan(&["rate", "--url", &url, "--clients", "3", "--rate", "100", "--duration", "300ms"]);
    // A 1 ns SLO no step can meet: the first step fails and ramp stops there.
    let steps = ramp(
        &base,
        Stepping::Rate { start: 100.0, step: 100.0 },
        3,
        Some(Duration::from_nanos(1)),
        &Observe::default(),
        true,
    )
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert!(steps[0].reason.as_deref().unwrap().contains("SLO"), "{:?}", steps[0].reason);
    assert!(last_good(&steps).is_none());
    // No SLO: every step passes.
    let steps = ramp(&base, Stepping::Rate { start: 100.0, step: 100.0 }, 2, None, &Observe::default(), true)
        .unwrap();
    let reasons: Vec<_> = steps.iter().map(|s| &s.reason).collect();
    // On a loaded machine (CI shares 2 cores between the test, the peer and the load
    // generator) a step may be judged inconclusive because the load generator was busy; that
    // verdict is the one allowed besides passing, and it ends the ramp honestly.
    for s in &steps {
        assert!(s.ok || s.reason.as_deref().is_some_and(|r| r.contains("busy")), "{reasons:?}");
    }
    if steps.iter().all(|s| s.ok) {
        assert_eq!(steps.len(), 2, "{reasons:?}");
        assert_eq!(last_good(&steps).unwrap().rate, 200.0);
    }
}

/// A TCP proxy in front of the peer that can hold every byte for a while: a server stall.
struct StallProxy {
    addr: SocketAddr,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _runtime: tokio::runtime::Runtime,
}

impl StallProxy {
    fn start(upstream: SocketAddr) -> StallProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let paused = std::sync::Arc::new(AtomicBool::new(false));
        let p = paused.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut r, mut w) in [(cr, sw), (sr, cw)] {
                    let p = p.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while p.load(Ordering::Acquire) {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        StallProxy { addr, paused, _runtime: runtime }
    }
}

#[test]
fn a_stalled_server_shows_up_as_latency_not_as_fewer_samples() {
    let _serial = one_at_a_time();
    use std::sync::atomic::Ordering;
    let peer = Peer::start();
    let proxy = StallProxy::start(peer.addr);
    let url = format!("http://{}", proxy.addr);
    // Open loop: 2 clients x 200 messages/s for 2 s; the server stalls for 500 ms in the middle.
    let p = plan(&["echo", "--url", &url, "--clients", "2", "--rate", "200", "--duration", "2s"]);
    let paused = proxy.paused.clone();
    let staller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(900));
        paused.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_millis(500));
        paused.store(false, Ordering::Release);
    });
    let r = run(&p, Observe::default());
    staller.join().unwrap();
    let rtt = &r.totals.hists["rtt"];
    // Every message sent during the stall waited for it: ~25% of the samples are late, and the
    // worst waited the whole stall. A closed-loop (coordinated) measurement would show one slow
    // sample per client instead.
    assert!(rtt.at(1.0) >= 450_000_000, "max {}", rtt.at(1.0));
    assert!(rtt.at(0.9) >= 100_000_000, "p90 {}", rtt.at(0.9));
    assert!(rtt.len() + 8 >= r.totals.counters.messages_sent, "{:?}", r.totals.counters);
}

#[test]
fn a_count_limited_run_ends_when_every_client_is_done() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["echo", "--url", &url, "--clients", "2", "--count", "50", "--duration", "5s"]);
    let r = run(&p, Observe::default());
    assert_eq!(r.totals.counters.messages_sent, 100);
    assert_eq!(r.totals.counters.messages_received, 100);
    assert!(r.run_seconds > 0.0 && r.run_seconds < 4.0, "{}", r.run_seconds);
}

#[test]
fn a_websocket_publisher_reaches_every_subscriber() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&[
        "rate",
        "--url",
        &url,
        "--clients",
        "3",
        "--rate",
        "300",
        "--duration",
        "1s",
        "--publisher",
        "ws",
    ]);
    let r = run(&p, Observe::default());
    let published = r.totals.published;
    assert!((270..=301).contains(&published), "published {published}");
    assert_eq!(r.totals.counters.publish_ok, published, "{:?}", r.totals.counters);
    // The publisher's own connection is a subscriber of the peer too, not counted as a stream.
    assert_eq!(r.totals.streams, 3);
    assert_eq!(r.loss.delivered, 3 * published, "{:?}", r.loss);
    assert_eq!(r.loss.lost() + r.loss.duplicates, 0);
}

/// `--publisher http-pool`: the same POSTs without pipelining, on as many keep-alive connections
/// as it takes; every one answered, every message delivered once (possibly reordered: the pool's
/// connections are served concurrently).
#[test]
fn an_http_publisher_without_pipelining_reaches_every_subscriber() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    for (clients, rate, duration) in [("3", "500", "1s"), ("2", "100", "1s")] {
        let p = plan(&[
            "rate",
            "--url",
            &url,
            "--clients",
            clients,
            "--rate",
            rate,
            "--duration",
            duration,
            "--publisher",
            "http-pool",
        ]);
        let r = run(&p, Observe::default());
        let published = r.totals.published;
        assert!(published > 0, "{:?}", r.totals.counters);
        assert_eq!(r.totals.counters.publish_ok, published, "{:?}", r.totals.counters);
        assert_eq!(r.totals.counters.publish_failed, 0);
        assert_eq!(r.loss.delivered, r.totals.streams * published, "{:?}", r.loss);
        assert_eq!(r.loss.lost() + r.loss.duplicates, 0);
    }
}

#[test]
fn saturate_publishes_within_its_window() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["saturate", "--url", &url, "--clients", "4", "--window", "4", "--duration", "1s"]);
    let r = run(&p, Observe::default());
    let published = r.totals.published;
    // As fast as the subscribers keep up: far more than any fixed rate the tests use.
    assert!(published > 1000, "published {published}");
    assert_eq!(r.loss.delivered, r.totals.expected(), "{:?}", r.loss);
    assert_eq!(r.loss.lost(), 0);
    // No message is dated before it was sent: a publish over HTTP and a delivery over WebSocket
    // take microseconds at the least, even on loopback. (A receive batch once kept the clock it
    // read before its receives ran, and most of these latencies came out as 1 ns.)
    let latency = &r.totals.hists["latency"];
    assert!(latency.at(0.0) >= 1_000, "min {} ns, p50 {} ns", latency.at(0.0), latency.at(0.5));
}

/// A TCP proxy in front of `upstream` that passes every byte on `delay` after it arrived, both
/// ways and in order: a slow stack (every hop takes `delay`).
struct DelayProxy {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl DelayProxy {
    fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut r, mut w) in [(cr, sw), (sr, cw)] {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n @ 1..) = r.read(&mut buf).await {
                            let due = tokio::time::Instant::now() + delay;
                            if tx.send((due, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    });
                    tokio::spawn(async move {
                        while let Some((due, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(due).await;
                            if w.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        let _ = w.shutdown().await;
                    });
                }
            }
        });
        DelayProxy { addr, _runtime: runtime }
    }
}

/// `saturate` against a slow stack (1 s per hop, so 2 s from publish to delivery): when publishing
/// ends, a window of messages is still on its way and arrives 1.6 s later. The drain waits for
/// it, bounded by `--drain`, and ends as soon as nothing is outstanding; it used to stop 1 s after
/// the last publish and count the window in flight as lost.
#[test]
fn saturate_drains_until_everything_published_arrived() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let proxy = DelayProxy::start(peer.addr, Duration::from_secs(1));
    let url = format!("http://{}", proxy.addr);
    // Two windows: at 0 s and at about 2 s (once the first one arrived); publishing ends at 2.4 s.
    let args = ["saturate", "--url", &url, "--clients", "2", "--window", "4", "--duration", "2400ms"];
    let r = run(&plan(&args), Observe::default());
    // (A window of 4 lets a fifth message go: at most 4 are outstanding before it.)
    assert!((6..=12).contains(&r.totals.published), "{:?}", r.totals.counters);
    assert_eq!(r.loss.delivered, r.totals.expected(), "{:?}", r.loss);
    assert_eq!(r.loss.lost(), 0, "{:?}", r.loss);
    // Ended early: once the second window arrived (1.6 s after the end), not after 5 s.
    assert!((1.2..3.5).contains(&r.drain_seconds), "drain {}", r.drain_seconds);

    // A shorter --drain bounds the wait: the second window is still on its way, and lost.
    let mut args = args.to_vec();
    args.extend(["--drain", "600ms"]);
    let r = run(&plan(&args), Observe::default());
    assert!((0.55..1.0).contains(&r.drain_seconds), "drain {}", r.drain_seconds);
    assert!(r.loss.tail_missing > 0, "{:?}", r.loss);
}

// ---------------------------------------------------------------------------------------------
// Against tickcast itself: the HTTP transports (SSE, polling, long-polling) end to end, with the
// load generator's HTTP publisher. The server is the real `tickcast` binary, built on demand.

/// The `tickcast` binary: `$TICKCAST_BIN`, or built now (once per test process) into this
/// test's own target directory and profile.
fn tickcast_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TICKCAST_BIN") {
            return bin.into();
        }
        // target/<profile>/deps/e2e-<hash> -> target/<profile>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--locked",
                "--quiet",
                "-p",
                "tickcast-server",
                "--bin",
                "tickcast",
                "--profile",
                profile,
            ])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo to build tickcast");
        assert!(status.success(), "building tickcast failed");
        profile_dir.join("tickcast")
    })
    .clone()
}

/// A `tickcast` child process on an ephemeral loopback port; killed (by its PID) when dropped.
struct Tickcast {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Tickcast {
    fn start(args: &[&str]) -> Tickcast {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Listening on `listen` (an earlier server's address, to restart it).
    fn start_on(listen: &str, args: &[&str]) -> Tickcast {
        use std::io::BufRead;
        let mut child = std::process::Command::new(tickcast_bin())
            .args(["--listen", listen, "--threads", "1", "--no-feed", "--log", "info"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting tickcast");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line =
                rx.recv_timeout(Duration::from_secs(30)).expect("tickcast did not say where it listens");
            if let Some((_, rest)) = line.split_once("listening on ") {
                break rest.split(',').next().unwrap().trim().parse().unwrap();
            }
        };
        Tickcast { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The newest seq of `channel` (0: none yet), from a `/poll` answer's `next`.
    fn head(&self, channel: &str) -> u64 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        let request =
            format!("GET /poll?channels={channel} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        json["next"][channel].as_u64().unwrap_or(0)
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }
}

impl Drop for Tickcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rate` against `server` for `duration`, with `args` added.
/// A `rate` run against `server`; `args` are the scenario's flags, space-separated.
fn rate_against(server: &Tickcast, duration: &str, args: &str) -> RunResult {
    rate_at(&server.url(), duration, args)
}

fn rate_at(url: &str, duration: &str, args: &str) -> RunResult {
    let url = url.to_owned();
    let mut all = vec!["rate", "--url", &url, "--duration", duration, "--size", "128"];
    all.extend(args.split_whitespace());
    run(&plan(&all), Observe::default())
}

/// Every published message reached every subscriber of its channel once, in order, none lost,
/// nothing unparsable, no connection lost; latency recorded for each delivery.
fn assert_everything_delivered(r: &RunResult) {
    let c = &r.totals.counters;
    assert!(r.totals.published >= 100, "published {}", r.totals.published);
    assert_eq!(c.publish_ok, r.totals.published, "{c:?}");
    assert_eq!(c.publish_failed, 0, "{c:?}");
    assert_eq!(r.loss.delivered, r.totals.expected(), "{:?} {c:?}", r.loss);
    assert_eq!(r.loss.lost(), 0, "{:?}", r.loss);
    assert_eq!((r.loss.duplicates, r.loss.reordered), (0, 0), "{:?}", r.loss);
    assert_eq!((c.malformed, c.messages_unstamped, c.gap_notices), (0, 0, 0), "{c:?}");
    assert_eq!((c.connected, c.disconnected), (r.plan.clients.count, 0), "{c:?}");
    assert_eq!(r.totals.hists["latency"].len(), r.loss.delivered);
    assert!(
        r.warnings.iter().all(|w| !w.message.contains("DELIVERY") && !w.message.contains("LOSS")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn sse_against_tickcast_delivers_every_message() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let r = rate_against(
        &server,
        "1s",
        "--transport sse --clients 4 --rate 200 --channels a,b --channels-per-client 2",
    );
    assert_everything_delivered(&r);
    assert_eq!(r.totals.streams, 8);
    // Each stream's `event: subscribed` is a control message, not a delivery.
    assert!(r.totals.counters.control_messages >= 4, "{:?}", r.totals.counters);
    assert_eq!(r.totals.counters.reconnects, 0);
}

#[test]
fn poll_against_tickcast_delivers_every_message() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let r = rate_against(
        &server,
        "1s",
        "--transport poll --poll-interval 100ms --clients 3 --rate 200 --channels a,b --channels-per-client 2",
    );
    assert_everything_delivered(&r);
    let c = r.totals.counters;
    // Open loop: one poll per client per interval over the run and its drain (and the priming
    // polls); a slow answer makes a poll late, never skipped silently.
    assert!(c.requests >= 3 * 10, "{c:?}");
}

#[test]
fn longpoll_against_tickcast_delivers_every_message() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let r = rate_against(
        &server,
        "1s",
        "--transport longpoll --clients 3 --rate 200 --channels a,b,c --channels-per-client 2",
    );
    assert_everything_delivered(&r);
    let c = r.totals.counters;
    assert!(c.requests > 3 * 5, "{c:?}");
    assert!(!r.totals.hists["exposure"].is_empty());
}

/// Polls further apart than the server's history is long: what history no longer holds comes
/// as `gaps`, and the load generator counts it as announced loss, not silent loss.
#[test]
fn poll_against_tickcast_counts_what_history_no_longer_holds() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&["--history", "16"]);
    let r = rate_against(
        &server,
        "1s",
        "--transport poll --poll-interval 400ms --clients 2 --rate 200 --channels a",
    );
    let c = r.totals.counters;
    assert_eq!(c.publish_ok, r.totals.published, "{c:?}");
    assert!(c.gap_notices > 0 && c.gap_announced > 0, "{c:?}");
    assert!(r.loss.delivered < r.totals.expected(), "{:?}", r.loss);
    // Every message is either delivered or announced lost by a gap notice: no silent loss.
    assert_eq!(r.loss.delivered + c.gap_announced, r.totals.expected(), "{:?} {c:?}", r.loss);
    assert_eq!(r.loss.lost(), c.gap_announced, "{:?} {c:?}", r.loss);
    assert_eq!(r.loss.duplicates, 0);
}

/// The server is killed mid-run and started again on its address: the SSE subscribers
/// reconnect with the positions they had (of the old run's epoch), the new server answers with
/// a `reset` per channel, and what was lost with the old server counts as announced, not silent.
#[test]
fn a_restarted_tickcast_announces_what_it_lost_with_resets() {
    let _serial = one_at_a_time();
    let first = Tickcast::start(&[]);
    let url = first.url();
    let listen = first.addr.to_string();
    let (r, second) = std::thread::scope(|s| {
        let restart = s.spawn(move || {
            while first.head("a") < 50 {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(first); // killed (SIGKILL): what it held is lost
            Tickcast::start_on(&listen, &[])
        });
        let r = rate_at(
            &url,
            "2s",
            "--transport sse --clients 4 --rate 200 --channels a,b --channels-per-client 2",
        );
        (r, restart.join().unwrap())
    });
    let c = r.totals.counters;
    assert_eq!(c.reset_notices, 8, "a reset per channel per client: {c:?}");
    assert!(c.reconnects >= 4, "{c:?}");
    // The publisher ends the measured phase at its first failed send (the kill).
    assert_eq!(second.head("a"), 0);
    let summary = tickcast_loadgen::result::summary::Summary::of(&r, &[]);
    let m = &summary.messages;
    assert_eq!(m.lost_silently, 0, "{m:?} {:?} {c:?}", r.loss);
    assert_eq!(m.lost, m.gap_announced + m.reset_announced, "{m:?}");
    assert!(r.warnings.iter().all(|w| !w.message.contains("SILENTLY")), "{:?}", r.warnings);
    assert!(m.delivered > 0 && m.delivered <= m.expected, "{m:?}");
}

/// The server stops (SIGSTOP) for 600 ms in the middle of an SSE run: the messages published
/// meanwhile arrive late, and that shows in the latency, with nothing lost.
#[test]
fn a_stopped_tickcast_shows_up_as_sse_latency() {
    let _serial = one_at_a_time();
    use rustix::process::Signal;
    let server = Tickcast::start(&[]);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            // Once the publisher has started (channel `a` has a message), plus a little.
            while server.head("a") == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            server.signal(Signal::STOP);
            std::thread::sleep(Duration::from_millis(600));
            server.signal(Signal::CONT);
        });
        rate_against(&server, "2s", "--transport sse --clients 2 --rate 100 --channels a")
    });
    assert_everything_delivered(&r);
    let latency = &r.totals.hists["latency"];
    assert!(latency.at(1.0) >= 500_000_000, "max {}", latency.at(1.0));
}

#[test]
fn websocket_against_tickcast_delivers_every_message() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let r = rate_against(
        &server,
        "1s",
        "--transport ws --clients 4 --rate 200 --channels a,b --channels-per-client 2",
    );
    assert_everything_delivered(&r);
    assert_eq!(r.totals.streams, 8);
    // One `subscribed` acknowledgement per connection: a control message, not a delivery.
    assert!(r.totals.counters.control_messages >= 4, "{:?}", r.totals.counters);
}

#[test]
fn a_websocket_publisher_against_tickcast_reaches_every_subscriber() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&["--allow-client-publish", "a"]);
    let r = rate_against(&server, "1s", "--transport sse --publisher ws --clients 3 --rate 200 --channels a");
    assert_everything_delivered(&r);
}

/// The server dies (SIGKILL) during a long-polling run: every client is cut off and says so,
/// the publisher's failures are counted, and the run still ends.
#[test]
fn a_tickcast_killed_mid_run_cuts_long_pollers_off_and_the_run_ends() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let started = std::time::Instant::now();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            while server.head("a") == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            server.signal(rustix::process::Signal::KILL);
        });
        rate_against(&server, "2s", "--transport longpoll --clients 3 --rate 100 --channels a")
    });
    let c = r.totals.counters;
    assert_eq!(c.disconnected, 3, "{c:?}");
    // Deliveries happened before the kill, none of a message never published. (A message whose
    // publish failed may still have been delivered: the server can die after sequencing it and
    // before answering the publisher.)
    assert!(r.loss.delivered > 0 && r.loss.delivered <= 3 * r.totals.published, "{:?} {c:?}", r.loss);
    assert!(c.publish_ok > 0, "{c:?}");
    assert_eq!(r.loss.duplicates, 0);
    assert!(r.warnings.iter().any(|w| w.message.contains("cut off")), "{:?}", r.warnings);
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// This thread's voluntary context switches so far: each time it blocked and was woken.
fn thread_wakeups() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The coordinator (on the calling thread) blocks until an event comes or something is due. It
/// used to wake every 10 ms (`recv_timeout`), and each of crossbeam's blocking receives spins and
/// calls `sched_yield` before it parks: 100 wake-ups a second on the measured core. Now it wakes
/// about as often as its worker reports (10 times a second) and when a deadline is due.
#[test]
fn the_coordinator_sleeps_between_events() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let p = plan(&["idle", "--url", &url, "--clients", "2", "--hold", "1500ms"]);
    let before = thread_wakeups();
    let started = std::time::Instant::now();
    let r = run(&p, Observe::default());
    let seconds = started.elapsed().as_secs_f64();
    let wakeups = thread_wakeups() - before;
    eprintln!("{wakeups} wake-ups in {seconds:.2} s");
    assert_eq!(r.totals.counters.connected, 2);
    assert!(seconds >= 1.5, "{seconds}");
    assert!((wakeups as f64) < 30.0 * seconds, "{wakeups} wake-ups in {seconds:.2} s");
}

/// tickcast refuses WebSocket publishes on channels clients may not publish to (`error`, code
/// `forbidden`): here every message of channel `b`. They are reported as refused, and `b`'s
/// subscribers, which receive nothing, show no loss (it used to be all of `b`'s tail, silent).
#[test]
fn publishes_tickcast_refuses_are_reported_not_lost() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&["--allow-client-publish", "a"]);
    let r =
        rate_against(&server, "1s", "--transport sse --publisher ws --clients 4 --rate 200 --channels a,b");
    let c = r.totals.counters;
    assert!(r.totals.published >= 150, "{c:?}");
    // Message k goes to channel k mod 2: the odd ones to `b`.
    assert_eq!(c.publish_refused, r.totals.published / 2, "{c:?}");
    assert_eq!((c.publish_ok + c.publish_refused, c.publish_unanswered), (r.totals.published, 0), "{c:?}");
    assert_eq!(r.totals.expected(), 2 * c.publish_ok);
    assert_eq!(r.loss.delivered, r.totals.expected(), "{:?}", r.loss);
    assert_eq!(r.loss.lost(), 0, "{:?}", r.loss);
    assert!(
        r.warnings.iter().all(|w| !w.message.contains("SILENTLY") && !w.message.contains("DELIVERY")),
        "{:?}",
        r.warnings
    );
}

/// The binary with `args`, against loopback; returns its exit code, stdout and `--json` file.
fn loadgen_cli(args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let json = std::env::temp_dir().join(format!(
        "lg-e2e-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast-loadgen"))
        .args(args)
        .args(["--quiet", "--json", json.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running tickcast-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no --json ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let _ = std::fs::remove_file(&json);
    (out.status.code(), stdout, serde_json::from_str(&text).unwrap())
}

#[test]
fn thresholds_set_the_exit_code_and_the_summary_says_which() {
    let _serial = one_at_a_time();
    let peer = Peer::start();
    let url = peer.url();
    let base = ["echo", "--url", &url, "--clients", "2", "--duration", "300ms"];

    let holds =
        [&base[..], &["--fail-p99", "10s", "--fail-loss", "0", "--fail-percentile", "max=20s"]].concat();
    let (code, stdout, json) = loadgen_cli(&holds);
    assert_eq!(code, Some(0), "{stdout}");
    let s = &json["summary"];
    assert_eq!(json["schema"], 2);
    assert_eq!((s["scenario"].as_str(), s["main_histogram"].as_str()), (Some("echo"), Some("rtt")));
    assert!(s["histograms"]["rtt"]["p99_us"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["passed"], true, "{s}");
    let names: Vec<&str> =
        s["thresholds"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p99", "max", "loss"]);
    assert!(stdout.contains("every threshold held"), "{stdout}");
    // The encoded histograms stay beside the summary.
    assert!(json["totals"]["hists"]["rtt"].is_string());

    let fails = [&base[..], &["--fail-p99", "1us", "--fail-loss", "0"]].concat();
    let (code, stdout, json) = loadgen_cli(&fails);
    assert_eq!(code, Some(3), "{stdout}");
    let s = &json["summary"];
    assert_eq!(s["passed"], false, "{s}");
    let p99 = &s["thresholds"][0];
    assert_eq!(
        (p99["name"].as_str(), p99["passed"].as_bool(), p99["unit"].as_str()),
        (Some("p99"), Some(false), Some("us"))
    );
    assert_eq!(p99["limit"].as_f64(), Some(1.0));
    assert_eq!(s["thresholds"][1]["passed"], true, "{s}");
    assert!(stdout.contains("THRESHOLDS FAILED: p99 (exit 3)"), "{stdout}");
}

#[test]
fn rate_json_carries_a_typed_summary() {
    let _serial = one_at_a_time();
    let server = Tickcast::start(&[]);
    let url = server.url();
    let args = ["rate", "--url", &url, "--clients", "3", "--rate", "200", "--duration", "500ms"];
    let (code, stdout, json) = loadgen_cli(&args);
    assert_eq!(code, Some(0), "{stdout}");
    let s = &json["summary"];
    assert_eq!(json["schema"], 2);
    for (key, value) in
        [("scenario", "rate"), ("transport", "ws"), ("protocol", "tickcast"), ("main_histogram", "latency")]
    {
        assert_eq!(s[key].as_str(), Some(value), "{key}: {s}");
    }
    assert_eq!(s["target"].as_str(), Some(format!("{url}/ws").as_str()));
    assert_eq!((s["clients"].as_u64(), s["message_bytes"].as_u64()), (Some(3), Some(128)));
    let latency = &s["histograms"]["latency"];
    for key in ["min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "max_us"] {
        assert!(latency[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {latency}");
    }
    let m = &s["messages"];
    assert!(m["delivered"].as_u64().unwrap() >= 3 * 90, "{m}");
    assert_eq!(m["delivered"], m["expected"], "{m}");
    assert_eq!(latency["count"], m["delivered"], "{s}");
    let measured = s["durations_s"]["measured"].as_f64().unwrap();
    let per_s = m["deliveries_per_s"].as_f64().unwrap();
    assert!((per_s - m["delivered"].as_f64().unwrap() / measured).abs() < 1e-6, "{m}");
    assert!(m["sustained_per_s"].is_null() && s["server"].is_null(), "{s}");
    assert!(s["wire"]["received_bytes_per_delivery"].as_f64().unwrap() > 128.0, "{s}");
    assert!(s["loadgen"]["busy_share"].as_f64().is_some(), "{s}");
    assert!(s["warnings"].is_array() && s["thresholds"].as_array().unwrap().is_empty());
    assert!(stdout.contains("schedule open 200/s") && !stdout.contains("Open {"), "{stdout}");
}

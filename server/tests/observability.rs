//! `/metrics` in both exposition formats, the process and build metrics, and the logs: the
//! real binary on loopback, scraped over plain HTTP as Prometheus does.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;

/// (content type, body) of a scrape with these extra request headers.
fn scrape(server: &Server, headers: &str) -> (String, String) {
    let answer =
        server.http(&format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"));
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let content_type =
        head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).expect("a content type").to_owned();
    (content_type, body.to_owned())
}

fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn metrics_come_in_the_format_the_scraper_asks_for() {
    let server = Server::start(&["--threads", "2"]);
    let (content_type, body) = scrape(&server, "");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!body.contains("# EOF"));
    assert!(body.contains("# TYPE tickcast_accepted_total counter\n"), "{body}");
    assert!(body.contains("tickcast_connections{worker=\"1\"} "), "one sample per worker");
    assert!(value(&body, "process_resident_memory_bytes") > 1e6);
    assert!(value(&body, "process_open_fds") >= 3.0);
    assert!(value(&body, "process_max_fds") >= value(&body, "process_open_fds"));
    let started = value(&body, "process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - 120.0..=now + 1.0).contains(&started), "started {started}, now {now}");
    assert!(body.contains("tickcast_build_info{version=\"0.1.0\",commit=\""), "{body}");
    // A message fanned out to a subscriber shows in the fan-out latency histogram.
    let mut sub = common::raw_ws(server.addr, "/ws?channels=m");
    common::read_frame(&mut sub).unwrap(); // subscribed
    let (status, _) = common::post(server.addr, "/publish/m", b"1", "");
    assert_eq!(status, 200);
    common::read_frame(&mut sub).unwrap();
    let (_, body) = scrape(&server, "");
    let count: f64 = (0..2)
        .map(|w| value(&body, &format!("tickcast_fanout_latency_seconds_count{{worker=\"{w}\"}}")))
        .sum();
    assert_eq!(count, 1.0, "{body}");

    // What Prometheus sends.
    let accept =
        "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\n";
    let (content_type, body) = scrape(&server, accept);
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE tickcast_accepted counter\n"));
    assert!(body.contains("# TYPE tickcast_build info\n"));
    assert!(
        value(&body, "tickcast_accepted_total{worker=\"0\"}")
            + value(&body, "tickcast_accepted_total{worker=\"1\"}")
            >= 2.0
    );
}

#[test]
fn an_invalid_log_filter_is_a_startup_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", "127.0.0.1:0", "--no-feed", "--log", "tickcast=loud"])
        .stdin(Stdio::null())
        .output()
        .expect("run tickcast");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid --log filter \"tickcast=loud\""), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let server = Server::start(&["--threads", "1", "--log-format", "json"]);
    // `Server::start` read the line saying where it listens; the next lines come as they are
    // logged (a refused request does not log: stop the server, which logs its shutdown).
    server.signal(libc::SIGTERM);
    let mut lines = Vec::new();
    while let Ok(line) = server.log.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    assert!(!lines.is_empty(), "the shutdown is logged");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}

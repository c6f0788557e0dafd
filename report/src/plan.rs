//! Capacity planning: cores and memory for N clients receiving R messages/s of S bytes, from
//! inputs measured by `scripts/capacity.sh` (the calibration file) and a few configuration
//! values. The method and the schema are in `docs/capacity.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};

/// The calibration file's schema tag.
pub const SCHEMA: &str = "tickcast-capacity/1";

/// One measured (or configured) input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub value: f64,
    pub unit: String,
    /// The load it was measured under, e.g. "1000 clients x 50 msg/s, 128 B".
    #[serde(default)]
    pub at: String,
    /// Message size it was measured at (for the per-delivery costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<f64>,
    /// Where it came from: a result file, or "configuration: ...".
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `results/capacity-calibration.json`, written by `scripts/capacity.sh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema: String,
    pub machine: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub date: String,
    /// The results directory of the run.
    #[serde(default)]
    pub run: String,
    /// How busy the machine was (load average before the run, other processes).
    #[serde(default)]
    pub noise: String,
    pub inputs: BTreeMap<String, Input>,
}

impl Calibration {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Calibration> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c: Calibration = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a calibration file", path.display()))?;
        ensure!(c.schema == SCHEMA, "{}: schema {:?}, expected {SCHEMA:?}", path.display(), c.schema);
        Ok(c)
    }

    fn get(&self, name: &str) -> anyhow::Result<&Input> {
        self.inputs.get(name).with_context(|| format!("the calibration has no input {name:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Ws,
    Sse,
    Longpoll,
    Poll,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Longpoll => "longpoll",
            Transport::Poll => "poll",
        }
    }
}

/// What is to be served.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub clients: f64,
    /// Messages per second published on each channel (what one subscription receives).
    pub rate: f64,
    pub size: f64,
    pub transport: Transport,
    pub channels_per_client: f64,
    /// Distinct channels published to (each at `rate`).
    pub channels: f64,
    /// `poll`: each client polls this often (seconds).
    pub poll_interval: f64,
    /// Share of each core the plan may use (headroom for bursts, reconnects, the OS).
    pub target_util: f64,
    /// Assumed round trip to the clients: bytes in flight in the kernel's send buffers.
    pub client_rtt: f64,
    /// The server's `--history` and `--history-bytes` (per channel).
    pub history: f64,
    pub history_bytes: f64,
}

/// Every figure of the estimate, for the text and the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub deliveries: f64,
    pub publishes: f64,
    pub requests: f64,
    pub cpu_per_delivery: f64,
    pub cpu_deliver: f64,
    pub cpu_publish: f64,
    pub cores_cpu: f64,
    /// None for the pull transports (no SLO measurement).
    pub cores_slo: Option<f64>,
    pub cores: u64,
    pub workers_for_descriptors: u64,
    pub workers: u64,
    pub mem_base: f64,
    pub mem_workers: f64,
    pub mem_connections: f64,
    pub mem_history: f64,
    pub mem_in_flight: f64,
    pub memory: f64,
    pub egress_bits: f64,
    pub reconnect_seconds: f64,
    /// The text: formula, inputs with their sources, result.
    pub text: String,
}

fn per_delivery_name(t: Transport) -> &'static str {
    match t {
        Transport::Ws => "ws_cpu_s_per_delivery",
        Transport::Sse => "sse_cpu_s_per_delivery",
        Transport::Longpoll => "longpoll_cpu_s_per_delivery",
        Transport::Poll => "poll_cpu_s_per_request",
    }
}

fn rss_name(t: Transport) -> String {
    format!("{}_rss_bytes_per_connection", t.name())
}

/// The estimate. Every input used is printed with its source.
pub fn estimate(cal: &Calibration, w: &Workload) -> anyhow::Result<Estimate> {
    ensure!(w.clients >= 1.0, "--clients must be at least 1");
    ensure!(w.rate >= 0.0 && w.size >= 0.0, "--rate and --size must not be negative");
    ensure!(w.channels_per_client >= 1.0 && w.channels >= 1.0, "channels must be at least 1");
    ensure!(w.target_util > 0.0 && w.target_util <= 1.0, "--target-util must be in (0, 1]");
    ensure!(w.poll_interval > 0.0, "--poll-interval must be positive");

    let mut used: Vec<(String, &Input)> = Vec::new();
    let mut input = |name: &str| -> anyhow::Result<&Input> {
        let i = cal.get(name)?;
        used.push((name.to_string(), i));
        Ok(i)
    };
    let cost_name = per_delivery_name(w.transport);
    let cost_input = input(cost_name)?;
    let (cost_t, cost_t_bytes) = (cost_input.value, cost_input.bytes.unwrap_or(w.size));
    let per_byte = input("cpu_s_per_byte")?.value;
    let per_publish = input("cpu_s_per_publish")?.value;
    let overhead = input("wire_overhead_bytes")?.value;
    let base = input("process_base_rss_bytes")?.value;
    let worker_fixed = input("worker_fixed_bytes")?.value;
    let per_worker = input("connections_per_worker")?.value;
    let tcp = input("kernel_bytes_per_connection")?.value;
    let connects = input("connects_per_s_per_core")?.value;
    // A transport without its own memory figure falls back to the WebSocket one, and says so.
    let rss_own = rss_name(w.transport);
    let rss_fallback = !cal.inputs.contains_key(&rss_own);
    let rss = input(if rss_fallback { "ws_rss_bytes_per_connection" } else { &rss_own })?.value;
    // The SLO capacity is optional: a ramp where no step passed leaves none.
    let push = matches!(w.transport, Transport::Ws | Transport::Sse);
    let slo_name = "slo_deliveries_per_s_per_core";
    let slo = if push && cal.inputs.contains_key(slo_name) { Some(input(slo_name)?) } else { None };
    let ws_cost = cal.get("ws_cpu_s_per_delivery")?;

    // CPU.
    let deliveries = w.clients * w.channels_per_client * w.rate;
    let publishes = w.channels * w.rate;
    let requests = if w.transport == Transport::Poll { w.clients / w.poll_interval } else { 0.0 };
    let cost_at = |c: f64, at: f64, s: f64| (c + per_byte * (s - at)).max(c * 0.25);
    let (cpu_per_delivery, cpu_deliver) = if w.transport == Transport::Poll {
        let per_delivery = per_byte * w.size;
        (per_delivery, requests * cost_t + deliveries * per_delivery)
    } else {
        let c = cost_at(cost_t, cost_t_bytes, w.size);
        (c, deliveries * c)
    };
    let cpu_publish = publishes * per_publish;
    let cpu = cpu_deliver + cpu_publish;
    let cores_cpu = cpu / w.target_util;
    let cores_slo = slo.map(|slo| {
        // The measured deliveries/s of one core under the SLO, scaled to this message size by
        // the per-delivery cost.
        let at = slo.bytes.unwrap_or(w.size);
        let scale = cost_at(ws_cost.value, ws_cost.bytes.unwrap_or(at), at)
            / cost_at(ws_cost.value, ws_cost.bytes.unwrap_or(at), w.size);
        deliveries / (slo.value * scale)
    });
    let cores = cores_cpu.max(cores_slo.unwrap_or(0.0)).ceil().max(1.0) as u64;
    let workers_for_descriptors = (w.clients / per_worker).ceil().max(1.0) as u64;
    let workers = cores.max(workers_for_descriptors);

    // Memory.
    let frame = w.size + overhead;
    let mem_base = base;
    let mem_workers = workers as f64 * worker_fixed;
    let mem_connections = w.clients * (rss + tcp);
    let mem_history = w.channels * (w.history * frame).min(w.history_bytes);
    let mem_in_flight = deliveries * frame * w.client_rtt;
    let memory = mem_base + mem_workers + mem_connections + mem_history + mem_in_flight;
    let egress_bits = deliveries * frame * 8.0;
    let reconnect_seconds = w.clients / (connects * cores as f64);

    // The text.
    let mut t = String::new();
    let _ = writeln!(
        t,
        "workload: {} clients x {} channel(s) each, {} msg/s per channel, {} B messages, transport {}",
        num(w.clients),
        num(w.channels_per_client),
        num(w.rate),
        num(w.size),
        w.transport.name()
    );
    let _ = writeln!(
        t,
        "calibration: {} ({}; commit {}; {})\n  noise: {}",
        if cal.run.is_empty() { "-" } else { &cal.run },
        cal.machine,
        cal.commit,
        cal.date,
        if cal.noise.is_empty() { "not recorded" } else { &cal.noise }
    );
    let _ = writeln!(t, "\nmeasured and configured inputs:");
    for (name, i) in &used {
        let at = if i.at.is_empty() { String::new() } else { format!(", at {}", i.at) };
        let value = if i.unit == "B" { num(i.value.round()) } else { num(i.value) };
        let _ = writeln!(t, "  {name:<34} = {value} {}{at}", i.unit);
        let _ = writeln!(t, "  {:<34}   from {}", "", i.from);
        if let Some(note) = &i.note {
            let _ = writeln!(t, "  {:<34}   note: {note}", "");
        }
    }
    if rss_fallback {
        let _ = writeln!(t, "  ({rss_own} not in the calibration: the WebSocket figure is used)");
    }
    let _ = writeln!(
        t,
        "  assumptions (flags): target utilisation U = {}, client round trip = {} s, \
         history {} messages / {} B per channel",
        w.target_util,
        w.client_rtt,
        num(w.history),
        num(w.history_bytes)
    );

    let _ = writeln!(t, "\nCPU");
    let _ = writeln!(
        t,
        "  deliveries   D = N x K x R = {} x {} x {} = {}/s",
        num(w.clients),
        num(w.channels_per_client),
        num(w.rate),
        num(deliveries)
    );
    let _ = writeln!(
        t,
        "  publishes    P = C x R = {} x {} = {}/s",
        num(w.channels),
        num(w.rate),
        num(publishes)
    );
    if w.transport == Transport::Poll {
        let _ = writeln!(
            t,
            "  poll requests Q = N / interval = {} / {} s = {}/s",
            num(w.clients),
            w.poll_interval,
            num(requests)
        );
        let _ = writeln!(
            t,
            "  CPU = Q x c_req + D x b x S + P x c_pub = {} x {} + {} x {} x {} + {} x {} = {:.3} cores busy",
            num(requests),
            secs(cost_t),
            num(deliveries),
            secs(per_byte),
            num(w.size),
            num(publishes),
            secs(per_publish),
            cpu
        );
    } else {
        let _ = writeln!(
            t,
            "  c(S) = c_{} + b x (S - {}) = {} + {} x ({} - {}) = {} per delivery",
            w.transport.name(),
            num(cost_t_bytes),
            secs(cost_t),
            secs(per_byte),
            num(w.size),
            num(cost_t_bytes),
            secs(cpu_per_delivery)
        );
        let _ = writeln!(
            t,
            "  CPU = D x c(S) + P x c_pub = {} x {} + {} x {} = {:.3} cores busy",
            num(deliveries),
            secs(cpu_per_delivery),
            num(publishes),
            secs(per_publish),
            cpu
        );
    }
    let _ = writeln!(t, "  cores (CPU)  = CPU / U = {:.3} / {} = {:.2}", cpu, w.target_util, cores_cpu);
    if let (Some(c), Some(slo)) = (cores_slo, slo) {
        let _ = writeln!(
            t,
            "  cores (SLO)  = D / D_slo(S) = {} / {} (measured at {} B, scaled by c(S)) = {:.2}",
            num(deliveries),
            num(slo.value),
            num(slo.bytes.unwrap_or(w.size)),
            c
        );
    } else if push {
        let _ = writeln!(t, "  cores (SLO)  = not in the calibration ({slo_name}): the CPU term alone");
    } else {
        let _ = writeln!(t, "  cores (SLO)  = not measured for {} (pull transport)", w.transport.name());
    }
    let _ = writeln!(
        t,
        "  workers      = max(cores, ceil(N / {})) = max({cores}, {workers_for_descriptors}) = {workers} \
         (a ring's descriptor table holds RLIMIT_NOFILE connections)",
        num(per_worker)
    );

    let _ = writeln!(t, "\nmemory");
    let rows = [
        ("process base".to_string(), mem_base),
        (format!("workers x fixed = {workers} x {}", bytes(worker_fixed)), mem_workers),
        (
            format!(
                "N x (RSS + kernel) = {} x ({} + {} B)",
                num(w.clients),
                num(rss.round()),
                num(tcp.round())
            ),
            mem_connections,
        ),
        (format!("history = C x min(H x (S + {} B), H_bytes)", num(overhead.round())), mem_history),
        (format!("in flight = D x (S + {} B) x rtt", num(overhead.round())), mem_in_flight),
        ("total".to_string(), memory),
    ];
    for (label, value) in rows {
        let _ = writeln!(t, "  {label:<56} {:>10}", bytes(value));
    }
    let _ = writeln!(t, "\nresult");
    let _ = writeln!(
        t,
        "  cores:  {cores} (run --threads {workers}{})",
        if workers > cores {
            " on those cores: more workers than cores, for the descriptor tables"
        } else {
            ""
        }
    );
    let _ = writeln!(t, "  memory: {} (provision {} with 50% headroom)", bytes(memory), bytes(memory * 1.5));
    let _ = writeln!(
        t,
        "  egress: D x (S + {} B) x 8 = {:.2} Gbit/s; full reconnect of N clients: N / ({} x cores) = {:.1} s",
        num(overhead.round()),
        egress_bits / 1e9,
        num(connects),
        reconnect_seconds
    );

    Ok(Estimate {
        deliveries,
        publishes,
        requests,
        cpu_per_delivery,
        cpu_deliver,
        cpu_publish,
        cores_cpu,
        cores_slo,
        cores,
        workers_for_descriptors,
        workers,
        mem_base,
        mem_workers,
        mem_connections,
        mem_history,
        mem_in_flight,
        memory,
        egress_bits,
        reconnect_seconds,
        text: t,
    })
}

/// 1234567 -> "1,234,567"; fractions keep 3 significant decimals.
fn num(v: f64) -> String {
    if v.fract().abs() > 1e-9 && v.abs() < 1000.0 {
        return format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// CPU-seconds as "4.63 us" / "12.0 ns".
fn secs(s: f64) -> String {
    if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} us", s * 1e6)
    } else {
        format!("{:.2} ns", s * 1e9)
    }
}

fn bytes(b: f64) -> String {
    const KIB: f64 = 1024.0;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{b:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: f64, bytes: Option<f64>) -> Input {
        Input { value, unit: "u".into(), at: "test".into(), bytes, from: "test".into(), note: None }
    }

    fn cal() -> Calibration {
        let mut inputs = BTreeMap::new();
        for (k, v, b) in [
            ("ws_cpu_s_per_delivery", 4e-6, Some(128.0)),
            ("sse_cpu_s_per_delivery", 5e-6, Some(128.0)),
            ("longpoll_cpu_s_per_delivery", 20e-6, Some(128.0)),
            ("poll_cpu_s_per_request", 30e-6, None),
            ("cpu_s_per_byte", 1e-9, None),
            ("cpu_s_per_publish", 10e-6, None),
            ("wire_overhead_bytes", 64.0, None),
            ("process_base_rss_bytes", 10.0 * 1024.0 * 1024.0, None),
            ("worker_fixed_bytes", 4.0 * 1024.0 * 1024.0, None),
            ("connections_per_worker", 20_000.0, None),
            ("kernel_bytes_per_connection", 100.0, None),
            ("ws_rss_bytes_per_connection", 400.0, None),
            ("sse_rss_bytes_per_connection", 600.0, None),
            ("connects_per_s_per_core", 10_000.0, None),
            ("slo_deliveries_per_s_per_core", 500_000.0, Some(128.0)),
        ] {
            inputs.insert(k.to_string(), input(v, b));
        }
        Calibration {
            schema: SCHEMA.into(),
            machine: "test machine".into(),
            commit: "abc".into(),
            date: "today".into(),
            run: "results/x".into(),
            noise: "none".into(),
            inputs,
        }
    }

    fn workload() -> Workload {
        Workload {
            clients: 100_000.0,
            rate: 10.0,
            size: 128.0,
            transport: Transport::Ws,
            channels_per_client: 1.0,
            channels: 1.0,
            poll_interval: 1.0,
            target_util: 0.5,
            client_rtt: 0.05,
            history: 1024.0,
            history_bytes: 1024.0 * 1024.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn websocket_broadcast() {
        let e = estimate(&cal(), &workload()).unwrap();
        assert!(close(e.deliveries, 1_000_000.0));
        assert!(close(e.publishes, 10.0));
        assert!(close(e.cpu_per_delivery, 4e-6));
        // 1M x 4 us + 10 x 10 us = 4.0001 cores busy; / 0.5 = 8.0002 -> 9 cores.
        assert!(close(e.cpu_deliver, 4.0));
        assert!(close(e.cores_cpu, 8.0002));
        assert!(close(e.cores_slo.unwrap(), 2.0));
        assert_eq!(e.cores, 9);
        assert_eq!(e.workers_for_descriptors, 5);
        assert_eq!(e.workers, 9);
        // base 10 MiB + 9 x 4 MiB + 100k x 500 B + history min(1024 x 192, 1 MiB) + in flight
        // 1M x 192 x 0.05.
        let expected = 10.0 * 1048576.0 + 9.0 * 4194304.0 + 50_000_000.0 + 196_608.0 + 9_600_000.0;
        assert!(close(e.memory, expected), "{} vs {expected}", e.memory);
        assert!(close(e.egress_bits, 1e6 * 192.0 * 8.0));
        assert!(close(e.reconnect_seconds, 100_000.0 / 90_000.0));
        assert!(e.text.contains("ws_cpu_s_per_delivery"));
        assert!(e.text.contains("from test"));
    }

    #[test]
    fn size_and_channels_scale_the_cost() {
        let mut w = workload();
        w.size = 4096.0 + 128.0;
        w.channels_per_client = 3.0;
        w.channels = 100.0;
        w.clients = 1000.0;
        let e = estimate(&cal(), &w).unwrap();
        assert!(close(e.deliveries, 30_000.0));
        assert!(close(e.publishes, 1000.0));
        // 4 us + 1 ns x 4096 per delivery.
        assert!(close(e.cpu_per_delivery, 4e-6 + 4096e-9));
        // The SLO capacity shrinks by the same ratio.
        let slo_at_size = 500_000.0 * 4e-6 / (4e-6 + 4096e-9);
        assert!(close(e.cores_slo.unwrap(), 30_000.0 / slo_at_size));
        // Each channel's history is capped by --history-bytes.
        assert!(close(e.mem_history, 100.0 * 1048576.0));
        assert_eq!(e.cores, 1);
        assert_eq!(e.workers, 1);
        // Smaller messages cost b less per byte (never below a quarter of the measured cost).
        w.size = 0.0;
        w.transport = Transport::Sse;
        let e = estimate(&cal(), &w).unwrap();
        assert!(close(e.cpu_per_delivery, 5e-6 - 128e-9));
    }

    #[test]
    fn pull_transports() {
        let mut w = workload();
        w.transport = Transport::Poll;
        w.poll_interval = 2.0;
        let e = estimate(&cal(), &w).unwrap();
        assert!(close(e.requests, 50_000.0));
        // 50k requests x 30 us + 1M deliveries x 128 B x 1 ns + 10 x 10 us.
        assert!(close(e.cpu_deliver + e.cpu_publish, 1.5 + 0.128 + 0.0001));
        assert_eq!(e.cores_slo, None);
        // No poll memory figure: the WebSocket one is used, and the text says so.
        assert!(close(e.mem_connections, 100_000.0 * 500.0));
        assert!(e.text.contains("poll_rss_bytes_per_connection not in the calibration"));
        w.transport = Transport::Longpoll;
        let e = estimate(&cal(), &w).unwrap();
        assert!(close(e.cpu_deliver, 1_000_000.0 * 20e-6));
    }

    #[test]
    fn refuses_bad_input() {
        let mut w = workload();
        w.target_util = 0.0;
        assert!(estimate(&cal(), &w).is_err());
        let mut c = cal();
        c.inputs.remove("cpu_s_per_byte");
        let err = estimate(&c, &workload()).unwrap_err().to_string();
        assert!(err.contains("cpu_s_per_byte"), "{err}");
        // Without an SLO measurement the CPU term decides, and the text says so.
        let mut c = cal();
        c.inputs.remove("slo_deliveries_per_s_per_core");
        let e = estimate(&c, &workload()).unwrap();
        assert_eq!(e.cores_slo, None);
        assert_eq!(e.cores, 9);
        assert!(e.text.contains("not in the calibration"));
    }

    #[test]
    fn calibration_round_trips() {
        let c = cal();
        let text = serde_json::to_string_pretty(&c).unwrap();
        let back: Calibration = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(num(1_234_567.0), "1,234,567");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(secs(4.63e-6), "4.63 us");
        assert_eq!(bytes(4.0 * 1024.0 * 1024.0), "4.0 MiB");
    }
}

//! Command line: one subcommand per scenario, each turned into a `Plan`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::plan::{
    Arrival, Clients, Plan, PollPlan, Protocol, Publisher, Scenario, Schedule, Stop, Target, Transport,
    Workload, WsReceiver, parse_source_ips,
};
use crate::result::thresholds::{self, Threshold};
use crate::time::parse_duration;

/// One process holds at most this many clients when `--workers` is automatic (the reference
/// machine allows 20,000 open files per process, whatever root does).
pub const CLIENTS_PER_WORKER_MAX: u64 = 18_000;

#[derive(Parser, Debug)]
#[command(
    name = "tickcast-loadgen",
    version,
    about = "Load generator for tickcast and its peers: honest latency histograms"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Hold N idle WebSocket connections (answering pings) and report the server's memory
    /// per connection (with --server-pid).
    Idle {
        #[command(flatten)]
        common: Common,
        /// How long to hold the connections once all are open.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        hold: Duration,
        /// What the clients speak inside the WebSocket (they count as open once the protocol
        /// confirms; its keepalives are answered). Default path: /echo for ws, else the
        /// protocol's route.
        #[arg(long, value_enum, default_value = "ws")]
        protocol: Protocol,
    },
    /// Round trips through a WebSocket echo endpoint (default path /echo).
    Echo {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
        /// Message size in bytes (the stamp needs about 50).
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// Messages per second per client, open loop; 0 = closed loop (send, wait, send).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Connection storm: connections per second and handshake latency.
    Connect {
        #[command(flatten)]
        common: Common,
        /// What the clients speak inside the WebSocket: with socketio or actioncable a
        /// connection is open once the protocol confirms (`subscribe` histogram).
        #[arg(long, value_enum, default_value = "ws")]
        protocol: Protocol,
    },
    /// A publisher at a fixed rate (HTTP keep-alive POST /publish/<channel>, or a WebSocket),
    /// subscribers (ws, sse, longpoll, poll) measuring delivery latency from the scheduled send
    /// time, and loss per channel.
    Rate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        msg: RateMsg,
        /// Messages per second published (in all); required unless `--publisher none`.
        #[arg(long, value_name = "PER_SECOND")]
        rate: Option<f64>,
    },
    /// Capacity: `rate` runs stepping the publish rate (or the clients) until the p99 SLO
    /// breaks or delivery stops tracking the offered rate; reports the last good step.
    Ramp {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        msg: RateMsg,
        /// Publish rate of the first step (messages/s).
        #[arg(long)]
        rate: f64,
        /// Added to the rate at each step.
        #[arg(long, default_value_t = 0.0)]
        rate_step: f64,
        /// Added to the clients at each step.
        #[arg(long, default_value_t = 0)]
        clients_step: u64,
        /// Most steps.
        #[arg(long, default_value_t = 10)]
        max_steps: usize,
        /// The latency SLO: a step whose p99 delivery latency exceeds it fails.
        #[arg(long, value_parser = parse_duration)]
        slo_p99: Option<Duration>,
    },
    /// The highest sustained deliveries per second: publishes as fast as the subscribers keep
    /// up, with at most `--window` messages not yet delivered to every subscriber (one process).
    Saturate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        msg: RateMsg,
        /// Messages published but not yet delivered everywhere, at most.
        #[arg(long, default_value_t = 8)]
        window: u64,
        /// Instead: a search over open-loop rates (doubling from --rate, then bisecting).
        #[arg(long)]
        search: bool,
        /// --search: publish rate of the first step (messages/s).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// --search: most doubling steps (bisection adds 4 more).
        #[arg(long, default_value_t = 12)]
        max_steps: usize,
    },
    /// Merge several --json results (e.g. from several hosts) into one.
    Merge {
        /// Result files written with --json.
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: Outputs,
    },
    /// Internal: a worker process (reads its plan on stdin).
    #[command(hide = true)]
    Worker,
}

/// Where the results go, and what they must meet.
#[derive(Args, Debug, Clone, Default)]
pub struct Outputs {
    /// Write every figure, the full plan and the typed summary as JSON (schema in
    /// docs/loadgen.md).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the main histogram's percentile distribution (HdrHistogram format, ms), e.g.
    /// `run.hgrm`.
    #[arg(long, value_name = "FILE")]
    pub percentiles: Option<PathBuf>,
    /// Write an HdrHistogram interval log of the main histogram, e.g. `run.hlog` (one run only:
    /// ramp and saturate --search refuse it).
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    #[command(flatten)]
    pub checks: Checks,
}

/// Thresholds: when one fails the run exits with code 3 (`result::THRESHOLD_EXIT`) and the
/// summary says which.
#[derive(Args, Debug, Clone, Default)]
pub struct Checks {
    /// Fail (exit 3) when the main histogram's p99 exceeds this, e.g. `50ms`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub fail_p99: Option<Duration>,
    /// Fail (exit 3) when the main histogram's percentile exceeds a limit: `p99.9=20ms`
    /// (p50, p90, p99, p99.9, p99.99 or max); repeatable.
    #[arg(long, value_name = "PCT=DURATION", value_parser = thresholds::parse_percentile)]
    pub fail_percentile: Vec<Threshold>,
    /// Fail (exit 3) when more than N messages were lost (announced by a gap notice or not).
    #[arg(long, value_name = "N")]
    pub fail_loss: Option<u64>,
    /// Fail (exit 3) when the run warns of this kind (`loadgen_busy`, `silent_loss`, ... as in
    /// the JSON's `warnings`), or `any`; repeatable.
    #[arg(long, value_name = "KIND", value_parser = thresholds::parse_warning)]
    pub fail_on_warning: Vec<Threshold>,
}

impl Checks {
    /// Every threshold asked for, in the order the summary lists them.
    pub fn thresholds(&self) -> Vec<Threshold> {
        let mut out = Vec::new();
        if let Some(limit) = self.fail_p99 {
            out.push(Threshold::Percentile { label: "p99".into(), limit });
        }
        out.extend(self.fail_percentile.iter().cloned());
        if let Some(max) = self.fail_loss {
            out.push(Threshold::Loss { max });
        }
        out.extend(self.fail_on_warning.iter().cloned());
        out
    }
}

/// Messages, channels, transports of the rate-based scenarios.
#[derive(Args, Debug)]
pub struct RateMsg {
    /// Message size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Channels published to (round robin) and subscribed to: `a,b,c`, or `prefix.*` with
    /// --channel-count (prefix.0 .. prefix.N-1).
    #[arg(long, alias = "channel", default_value = "bench")]
    pub channels: String,
    /// How many channels `prefix.*` expands to.
    #[arg(long, default_value_t = 0)]
    pub channel_count: usize,
    /// Channels each subscriber subscribes to (spread evenly over the clients).
    #[arg(long, default_value_t = 1)]
    pub channels_per_client: usize,
    /// How subscribers receive.
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// `--transport poll`: each client polls this often (open loop, staggered over clients).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    /// `--transport longpoll`: the `timeout` asked of the server (whole seconds).
    #[arg(long, value_parser = parse_duration, default_value = "25s")]
    pub longpoll_timeout: Duration,
    /// Conflated channels: report the age of each value on arrival (`staleness`) instead of
    /// per-message latency; skipped values count as superseded, not lost.
    #[arg(long)]
    pub staleness: bool,
    /// Who publishes: this load generator over HTTP (pipelined on one connection, or
    /// `http-pool`: no pipelining, a pool of keep-alive connections) or a WebSocket
    /// (`{"type":"publish"}` on /ws), or nobody (the server's own feed or a trivial sender).
    #[arg(long, value_enum, default_value = "http")]
    pub publisher: Publisher,
    /// `--transport ws`: how subscribers read: `ring` (raw io_uring, multishot recv into a
    /// provided buffer ring, frames parsed in place) or `tokio` (tokio-uring reads).
    #[arg(long, value_enum, default_value = "ring")]
    pub ws_receiver: WsReceiver,
    /// How long subscribers keep receiving after the last publish, for late arrivals (at most
    /// 10 minutes). Default: 1 s after an open-loop publisher; `saturate` (windowed) waits
    /// until everything published has arrived, at most 5 s.
    #[arg(long, value_parser = parse_drain)]
    pub drain: Option<Duration>,
    /// `--ws-receiver ring`: a message's arrival time: `kernel` (when the kernel received the
    /// segment that completed it; the load generator's own reading delay is the `read_delay`
    /// histogram) or `user` (when this process read it, its own queueing included). Default:
    /// `kernel` for `rate`; `user` for `saturate`, whose figure is throughput and where the
    /// kernel's stamps cost about a fifth of the receive rate.
    #[arg(long, value_enum)]
    pub arrival: Option<Arrival>,
    /// `--transport ws`: what subscribers speak inside the WebSocket: plain `ws` (tickcast and
    /// most peers, path /ws), `socketio` (Socket.IO 4, path /socket.io/?EIO=4&transport=websocket)
    /// or `actioncable` (actioncable-v1-json, path /cable, channel BroadcastChannel).
    #[arg(long, value_enum, default_value = "ws")]
    pub protocol: Protocol,
}

/// Longest `--drain`: it bounds how long a run may outlast its measured phase.
const DRAIN_MAX: Duration = Duration::from_secs(600);

fn parse_drain(text: &str) -> Result<Duration, String> {
    let drain = parse_duration(text)?;
    if drain > DRAIN_MAX {
        return Err(format!("--drain {text}: at most {}s", DRAIN_MAX.as_secs()));
    }
    Ok(drain)
}

impl RateMsg {
    fn workload(&self, schedule: Schedule) -> anyhow::Result<Workload> {
        anyhow::ensure!(self.channels_per_client >= 1, "--channels-per-client must be at least 1");
        anyhow::ensure!(!self.poll_interval.is_zero(), "--poll-interval must be positive");
        anyhow::ensure!(
            self.protocol == Protocol::Ws || self.transport == Transport::Ws,
            "--protocol {} runs over WebSocket only (--transport ws)",
            self.protocol
        );
        Ok(Workload {
            schedule,
            message_bytes: self.size,
            channels: crate::measure::channels::parse(&self.channels, self.channel_count)?,
            channels_per_client: self.channels_per_client,
            publisher: self.publisher,
            transport: self.transport,
            poll: PollPlan { interval: self.poll_interval, longpoll_timeout: self.longpoll_timeout },
            staleness: self.staleness,
            ws_receiver: self.ws_receiver,
            arrival: self.arrival.unwrap_or(if matches!(schedule, Schedule::Windowed { .. }) {
                Arrival::User
            } else {
                Arrival::Kernel
            }),
            protocol: self.protocol,
        })
    }

    /// Subscribers' default route; each client adds `channels=` (see `scenarios::subscription`).
    fn path(&self) -> &'static str {
        match self.protocol {
            Protocol::Ws => self.transport.default_path(),
            other => other.spec().path,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Length of the measured phase.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Stop after this many messages (per client for echo, published for rate).
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct Common {
    /// The server: `http://HOST[:PORT][/PATH]` or `ws://...`; HOST is a name (resolved once)
    /// or an address, `[v6]` included, local or remote; PORT defaults to 80; a PATH here is the
    /// default of --path.
    #[arg(long, env = "TICKCAST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Request path (and query) for the WebSocket upgrade; the default depends on the scenario.
    #[arg(long)]
    pub path: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: u64,
    /// io_uring runtimes (threads) per process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Processes; 0 = one per 18,000 clients.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// New connections per second (all processes together); 0 = unpaced.
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Connections being opened at once, per thread.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Source addresses, round-robin per client: `127.0.0.1-127.0.0.40` or a list; each must be
    /// an address of this host.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Read buffer per connection, bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_buf: usize,
    /// The server's PID: sample its memory and CPU from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Progress period.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub progress_interval: Duration,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub out: Outputs,
}

impl Common {
    fn plan(
        &self,
        scenario: Scenario,
        default_path: &str,
        workload: Workload,
        stop: Stop,
    ) -> anyhow::Result<Plan> {
        anyhow::ensure!(self.clients > 0, "--clients must be at least 1");
        let path = self.path.clone().unwrap_or_else(|| default_path.to_string());
        let source_ips = match &self.source_ips {
            Some(text) => parse_source_ips(text)?,
            None => Vec::new(),
        };
        let target = Target::parse(&self.url, Some(&path))?;
        check_sources(&source_ips, &target)?;
        let ports = ephemeral_ports() * source_ips.len().max(1) as u64;
        anyhow::ensure!(
            self.clients <= ports,
            "{} clients need more than the {ports} ephemeral ports of {} source address(es): \
             add --source-ips (e.g. 127.0.0.1-127.0.0.40)",
            self.clients,
            source_ips.len().max(1)
        );
        let workers = match self.workers {
            0 => self.clients.div_ceil(CLIENTS_PER_WORKER_MAX) as usize,
            n => n,
        };
        Ok(Plan {
            scenario,
            target,
            clients: Clients {
                count: self.clients,
                connect: if self.connect_rate > 0.0 {
                    Schedule::Open { per_second: self.connect_rate }
                } else {
                    Schedule::Unpaced
                },
                connect_concurrency: self.connect_concurrency,
                source_ips,
                read_buf_bytes: self.read_buf,
            },
            workload,
            stop,
            threads: self.threads.max(1),
            workers: workers.max(1),
            progress_interval: self.progress_interval,
        })
    }
}

/// Every source address must be one of this host's, of the target's family: said once here
/// rather than as one failed connection per client.
fn check_sources(ips: &[std::net::IpAddr], target: &Target) -> anyhow::Result<()> {
    for ip in ips {
        anyhow::ensure!(
            ip.is_ipv4() == target.addr.is_ipv4(),
            "--source-ips {ip} and the target {} are not of the same address family",
            target.addr
        );
        // Binding a UDP socket sends nothing and fails exactly when TCP's bind would.
        std::net::UdpSocket::bind((*ip, 0))
            .map_err(|e| anyhow::anyhow!("--source-ips {ip} is not an address of this host: {e}"))?;
    }
    Ok(())
}

/// Ephemeral ports one source address has toward one server port
/// (`/proc/sys/net/ipv4/ip_local_port_range`; Linux's default when unreadable).
fn ephemeral_ports() -> u64 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
    match (bounds.next(), bounds.next()) {
        (Some(lo), Some(hi)) if hi >= lo => hi - lo + 1,
        _ => 28_232,
    }
}

fn idle_workload(protocol: Protocol) -> Workload {
    Workload {
        schedule: Schedule::Unpaced,
        message_bytes: 0,
        channels: Vec::new(),
        channels_per_client: 1,
        publisher: Publisher::None,
        transport: Transport::Ws,
        poll: PollPlan::default(),
        staleness: false,
        ws_receiver: WsReceiver::default(),
        arrival: Arrival::default(),
        protocol,
    }
}

/// `idle` and `connect`: /echo on plain WebSocket, else the protocol's route.
fn idle_path(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Ws => "/echo",
        other => other.spec().path,
    }
}

/// Builds the plan of a scenario subcommand, with its common arguments.
pub fn plan_of(command: &Command) -> anyhow::Result<(Plan, &Common)> {
    match command {
        Command::Idle { common, hold, protocol } => {
            let stop = Stop { duration: *hold, count: None, drain: None };
            Ok((common.plan(Scenario::Idle, idle_path(*protocol), idle_workload(*protocol), stop)?, common))
        }
        Command::Connect { common, protocol } => {
            let stop = Stop { duration: Duration::ZERO, count: None, drain: None };
            Ok((
                common.plan(Scenario::Connect, idle_path(*protocol), idle_workload(*protocol), stop)?,
                common,
            ))
        }
        Command::Echo { common, run, size, rate } => {
            let workload = Workload {
                schedule: if *rate > 0.0 {
                    Schedule::Open { per_second: *rate }
                } else {
                    Schedule::ClosedLoop
                },
                message_bytes: *size,
                ..idle_workload(Protocol::Ws)
            };
            let stop = Stop { duration: run.duration, count: run.count, drain: None };
            Ok((common.plan(Scenario::Echo, "/echo", workload, stop)?, common))
        }
        Command::Rate { common, run, msg, rate } => {
            let rate = rate.unwrap_or(0.0);
            anyhow::ensure!(
                rate > 0.0 || msg.publisher == Publisher::None,
                "--rate (messages per second, in all) is required and positive unless --publisher none"
            );
            let workload = msg.workload(Schedule::Open { per_second: rate })?;
            let stop = Stop { duration: run.duration, count: run.count, drain: msg.drain };
            Ok((common.plan(Scenario::Rate, msg.path(), workload, stop)?, common))
        }
        Command::Ramp { common, run, msg, rate, .. }
        | Command::Saturate { common, run, msg, rate, search: true, .. } => {
            anyhow::ensure!(*rate > 0.0, "--rate must be positive");
            anyhow::ensure!(msg.publisher != Publisher::None, "ramp and saturate need a publisher");
            let workload = msg.workload(Schedule::Open { per_second: *rate })?;
            let stop = Stop { duration: run.duration, count: run.count, drain: msg.drain };
            Ok((common.plan(Scenario::Rate, msg.path(), workload, stop)?, common))
        }
        Command::Saturate { common, run, msg, window, search: false, .. } => {
            anyhow::ensure!(*window >= 1, "--window must be at least 1");
            anyhow::ensure!(msg.publisher != Publisher::None, "saturate needs a publisher");
            let workload = msg.workload(Schedule::Windowed { window: *window })?;
            let stop = Stop { duration: run.duration, count: run.count, drain: msg.drain };
            let plan = common.plan(Scenario::Rate, msg.path(), workload, stop)?;
            // The publisher sees the deliveries of its own process only.
            anyhow::ensure!(
                plan.workers == 1,
                "a windowed saturate runs in one process (at most {CLIENTS_PER_WORKER_MAX} clients, --workers 1)"
            );
            Ok((plan, common))
        }
        Command::Merge { .. } | Command::Worker => {
            anyhow::bail!("not a scenario")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(args).unwrap();
        plan_of(&cli.command).unwrap().0
    }

    #[test]
    fn echo_defaults_to_closed_loop_on_echo() {
        let p = plan(&["lg", "echo", "--url", "http://127.0.0.1:9002", "--clients", "10"]);
        assert_eq!(p.scenario, Scenario::Echo);
        assert_eq!(p.target.path, "/echo");
        assert_eq!(p.workload.schedule, Schedule::ClosedLoop);
        assert_eq!(p.workers, 1);
    }

    #[test]
    fn many_idle_clients_spread_over_workers() {
        let p = plan(&[
            "lg",
            "idle",
            "--clients",
            "50000",
            "--hold",
            "5s",
            "--source-ips",
            "127.0.0.1-127.0.0.40",
            "--connect-rate",
            "20000",
        ]);
        assert_eq!(p.workers, 3);
        assert_eq!(p.stop.duration, Duration::from_secs(5));
        assert_eq!(p.clients.source_ips.len(), 40);
        assert_eq!(p.clients.connect, Schedule::Open { per_second: 20000.0 });
    }

    #[test]
    fn rate_subscribes_to_its_channels() {
        let p = plan(&["lg", "rate", "--rate", "100", "--channel", "tick", "--clients", "5"]);
        assert_eq!(p.target.path, "/ws");
        assert_eq!(p.workload.channels, ["tick"]);
        assert_eq!(p.workload.schedule, Schedule::Open { per_second: 100.0 });
        let p = plan(&[
            "lg",
            "rate",
            "--rate",
            "1",
            "--transport",
            "poll",
            "--poll-interval",
            "250ms",
            "--channels",
            "t.*",
            "--channel-count",
            "4",
            "--channels-per-client",
            "2",
        ]);
        assert_eq!(p.target.path, "/poll");
        assert_eq!(p.workload.channels.len(), 4);
        assert_eq!(p.workload.poll.interval, Duration::from_millis(250));
        let bad =
            |args: &[&str]| Cli::try_parse_from(args).map(|c| plan_of(&c.command).is_err()).unwrap_or(true);
        assert!(bad(&["lg", "rate", "--rate", "1", "--channels", "a b"]));
        assert!(bad(&["lg", "rate", "--rate", "1", "--transport", "carrier-pigeon"]));
        // Required, with no default shown; a source address must be this host's.
        assert!(bad(&["lg", "rate"]));
        assert!(bad(&["lg", "rate", "--rate", "1", "--source-ips", "192.0.2.1"]));
        assert!(bad(&["lg", "rate", "--rate", "1", "--source-ips", "::1"]));
    }

    #[test]
    fn protocols_pick_their_route() {
        let p = plan(&["lg", "rate", "--rate", "10", "--protocol", "socketio"]);
        assert_eq!(p.workload.protocol, Protocol::SocketIo);
        assert_eq!(p.target.path, "/socket.io/?EIO=4&transport=websocket");
        let p = plan(&["lg", "saturate", "--protocol", "actioncable"]);
        assert_eq!((p.workload.protocol, p.target.path.as_str()), (Protocol::ActionCable, "/cable"));
        let p = plan(&["lg", "ramp", "--rate", "5", "--clients-step", "10", "--protocol", "actioncable"]);
        assert_eq!(p.workload.protocol, Protocol::ActionCable);
        let p = plan(&["lg", "idle", "--protocol", "socketio", "--path", "/x"]);
        assert_eq!((p.workload.protocol, p.target.path.as_str()), (Protocol::SocketIo, "/x"));
        assert_eq!(plan(&["lg", "idle"]).target.path, "/echo");
        assert_eq!(plan(&["lg", "connect", "--protocol", "actioncable"]).target.path, "/cable");
        assert_eq!(plan(&["lg", "rate", "--rate", "1"]).workload.protocol, Protocol::Ws);
        let cli = Cli::try_parse_from([
            "lg",
            "rate",
            "--rate",
            "1",
            "--protocol",
            "socketio",
            "--transport",
            "sse",
        ]);
        assert!(plan_of(&cli.unwrap().command).is_err());
        assert!(Cli::try_parse_from(["lg", "rate", "--rate", "1", "--protocol", "socket-io"]).is_err());
        let p = plan(&["lg", "rate", "--rate", "1", "--publisher", "http-pool"]);
        assert_eq!(p.workload.publisher, Publisher::HttpPool);
        assert_eq!(serde_json::to_string(&Publisher::HttpPool).unwrap(), r#""http-pool""#);
    }

    #[test]
    fn saturate_is_windowed_by_default() {
        let p = plan(&["lg", "saturate", "--clients", "3", "--publisher", "ws"]);
        assert_eq!(p.workload.schedule, Schedule::Windowed { window: 8 });
        assert_eq!(p.workload.publisher, Publisher::Ws);
        let p = plan(&["lg", "saturate", "--search", "--rate", "50"]);
        assert_eq!(p.workload.schedule, Schedule::Open { per_second: 50.0 });
        let p = plan(&["lg", "saturate", "--drain", "2s"]);
        assert_eq!(p.stop.drain, Some(Duration::from_secs(2)));
        assert!(Cli::try_parse_from(["lg", "saturate", "--drain", "11m"]).is_err());
        assert!(Cli::try_parse_from(["lg", "rate", "--rate", "1", "--drain", "soon"]).is_err());
    }
}

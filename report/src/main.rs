//! `tickcast-report`: SVG plots of the load generator's results and capacity estimates.
//! See `docs/capacity.md` (plan) and `docs/loadgen.md` (the files it reads).

mod percentiles;
mod plan;
mod plot;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::plan::Transport;

#[derive(Parser, Debug)]
#[command(
    name = "tickcast-report",
    version,
    about = "Plots and capacity estimates from tickcast-loadgen results"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Latency by percentile (HdrHistogram's plot: x = 1/(1-p) on a log axis, 50% .. 99.99%),
    /// one line per NAME=FILE. FILE is a `--percentiles` file of tickcast-loadgen (`.hgrm`, or
    /// any HdrHistogram percentile distribution, values in ms), or its `--json` result (a run,
    /// or the steps of ramp / saturate --search: the best passing step).
    PlotLatency {
        /// The SVG to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "Latency by percentile", allow_hyphen_values = true)]
        title: String,
        /// Logarithmic latency axis (needed where milliseconds and seconds share a plot, such as
        /// WebSocket beside 1 s polling).
        #[arg(long)]
        log_y: bool,
        /// JSON inputs: the histogram to plot (default: the scenario's main one: latency for
        /// rate/ramp, rtt for echo, handshake for idle/connect).
        #[arg(long)]
        hist: Option<String>,
        /// NAME=FILE, one per line drawn.
        #[arg(required = true, value_name = "NAME=FILE")]
        series: Vec<String>,
    },
    /// The value at one quantile of a `--json` result's histogram, in µs: for the figures its
    /// summary does not carry (the summary has p50, p90, p99, p99.9, p99.99 and max).
    Percentile {
        /// The quantile, 0..1 (0.95 for p95).
        #[arg(long)]
        at: f64,
        /// The histogram (default: the run's main one, summary.main_histogram).
        #[arg(long)]
        hist: Option<String>,
        /// One run's `--json` result (a ramp's step on its own).
        file: PathBuf,
    },
    /// Lines through x:y points, one per NAME=x1:y1,x2:y2,...
    PlotXy {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        title: String,
        #[arg(long, default_value = "x", allow_hyphen_values = true)]
        x_label: String,
        #[arg(long, default_value = "y", allow_hyphen_values = true)]
        y_label: String,
        #[arg(long)]
        log_x: bool,
        #[arg(long)]
        log_y: bool,
        #[arg(required = true, value_name = "NAME=x1:y1,x2:y2,...")]
        series: Vec<String>,
    },
    /// Cores and memory for N clients receiving R messages/s of S bytes, from the measured
    /// calibration (scripts/capacity.sh); prints the formula and where every input came from.
    Plan {
        /// Concurrent clients (N).
        #[arg(long)]
        clients: f64,
        /// Messages per second published on each channel (R): what each subscription receives.
        #[arg(long)]
        rate: f64,
        /// Message size in bytes (S, the data published).
        #[arg(long, default_value_t = 128.0)]
        size: f64,
        #[arg(long, value_enum, default_value = "ws")]
        transport: Transport,
        /// Channels each client subscribes to (K).
        #[arg(long, default_value_t = 1.0)]
        channels_per_client: f64,
        /// Distinct channels published to (C; default K).
        #[arg(long)]
        channels: Option<f64>,
        /// --transport poll: seconds between two polls of a client.
        #[arg(long, default_value_t = 1.0)]
        poll_interval: f64,
        /// Share of each core to plan for (the rest is headroom: bursts, reconnects, the OS).
        #[arg(long, default_value_t = 0.7)]
        target_util: f64,
        /// Assumed round trip to the clients, seconds (bytes in flight in send buffers).
        #[arg(long, default_value_t = 0.05)]
        client_rtt: f64,
        /// The server's --history and --history-bytes.
        #[arg(long, default_value_t = 1024.0)]
        history: f64,
        #[arg(long, default_value_t = 1048576.0)]
        history_bytes: f64,
        /// The calibration file (default: results/capacity-calibration.json of this checkout).
        #[arg(long)]
        calibration: Option<PathBuf>,
    },
}

fn named(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (name, file) = spec.split_once('=').with_context(|| format!("{spec:?}: expected NAME=FILE"))?;
    anyhow::ensure!(!name.is_empty() && !file.is_empty(), "{spec:?}: expected NAME=FILE");
    Ok((name.to_string(), PathBuf::from(file)))
}

/// The committed calibration: next to the executable's checkout, else the current directory's.
fn default_calibration() -> PathBuf {
    let rel = PathBuf::from("results/capacity-calibration.json");
    if rel.exists() {
        return rel;
    }
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().skip(1).map(|dir| dir.join(&rel)).find(|p| p.exists()));
    from_exe.unwrap_or(rel)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::PlotLatency { out, title, log_y, hist, series } => {
            let dists = series
                .iter()
                .map(|spec| {
                    let (name, file) = named(spec)?;
                    Ok((name, percentiles::load(&file, hist.as_deref())?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            plot::latency(&out, &title, &dists, log_y)?;
            println!("wrote {}", out.display());
        }
        Command::Percentile { at, hist, file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let us = percentiles::quantile_us(&text, hist.as_deref(), at)
                .with_context(|| format!("in {}", file.display()))?;
            println!("{us:.3}");
        }
        Command::PlotXy { out, title, x_label, y_label, log_x, log_y, series } => {
            let series = series.iter().map(|s| plot::parse_series(s)).collect::<anyhow::Result<Vec<_>>>()?;
            plot::xy(&out, &title, (&x_label, &y_label), series, (log_x, log_y))?;
            println!("wrote {}", out.display());
        }
        Command::Plan {
            clients,
            rate,
            size,
            transport,
            channels_per_client,
            channels,
            poll_interval,
            target_util,
            client_rtt,
            history,
            history_bytes,
            calibration,
        } => {
            let path = calibration.unwrap_or_else(default_calibration);
            let cal = plan::Calibration::load(&path)?;
            let w = plan::Workload {
                clients,
                rate,
                size,
                transport,
                channels_per_client,
                channels: channels.unwrap_or(channels_per_client),
                poll_interval,
                target_util,
                client_rtt,
                history,
                history_bytes,
            };
            let e = plan::estimate(&cal, &w)?;
            println!("tickcast capacity plan (calibration file {})\n", path.display());
            print!("{}", e.text);
        }
    }
    Ok(())
}

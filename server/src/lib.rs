//! tickcast server library: configuration, the io_uring runtime and the connection logic. The
//! `tickcast` binary is a thin wrapper around [`run`].
#![deny(unsafe_op_in_unsafe_fn)]

// `unsafe` lives only in `runtime` (the kernel interface); everything else is denied it.
#[deny(unsafe_code)]
pub mod broadcast;
#[deny(unsafe_code)]
pub mod config;
#[deny(unsafe_code)]
pub mod conn;
#[deny(unsafe_code)]
pub mod fanout;
#[deny(unsafe_code)]
pub mod feed;
#[deny(unsafe_code)]
pub mod http;
#[deny(unsafe_code)]
pub mod hub;
#[deny(unsafe_code)]
pub mod metrics;
#[deny(unsafe_code)]
pub mod poll;
#[deny(unsafe_code)]
pub mod publish;
#[deny(unsafe_code)]
pub mod query;
pub mod runtime;
#[deny(unsafe_code)]
pub mod sendq;
#[deny(unsafe_code)]
pub mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, bail};

use config::Config;
use hub::{HistoryLimits, Hub, HubConfig};
use metrics::WorkerStats;
use runtime::setup::WorkerSetup;
use runtime::sys;
use runtime::worker::Worker;

/// `Shared::shutdown` values: running, graceful shutdown requested, exit now.
pub const SHUTDOWN_RUNNING: u8 = 0;
pub const SHUTDOWN_GRACEFUL: u8 = 1;
pub const SHUTDOWN_NOW: u8 = 2;

/// State shared by all workers: read-mostly, nothing on the hot path is contended.
pub struct Shared {
    /// One entry per worker, written only by that worker.
    pub stats: Box<[WorkerStats]>,
    pub shutdown: AtomicU8,
}

/// Table entries kept beyond a worker's connection limit, so connections past the limit can
/// still be accepted and answered with a 503 instead of waiting in the backlog.
const REFUSAL_HEADROOM: u32 = 256;

/// How connections are split over workers, given the per-process descriptor cap.
fn plan_capacity(config: &Config, nofile: u64) -> (u32, usize) {
    let threads = config.threads();
    let cap = nofile.min(1 << 20) as usize;
    let total = config.max_connections.unwrap_or(threads * cap.saturating_sub(REFUSAL_HEADROOM as usize));
    let per_worker = total.div_ceil(threads);
    let wanted = (per_worker as u64 + u64::from(REFUSAL_HEADROOM)).min(u64::from(u32::MAX)) as u32;
    let table = wanted.min(cap as u32);
    let max = (table.saturating_sub(REFUSAL_HEADROOM).max(1) as usize).min(per_worker);
    (table, max)
}

/// How long a start waits for its port while it is in use. A killed server's listeners close
/// only when the kernel has torn its rings down, after the process is gone: a restart right
/// after a crash (systemd, a test) would otherwise find the port busy for a moment.
const PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most `PORT_WAIT`) until no other socket listens on `addr`.
fn port_free(addr: &SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + PORT_WAIT;
    loop {
        match sys::ensure_port_free(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Binds one listener per worker per address; port 0 is resolved once and shared.
fn bind_listeners(config: &Config) -> anyhow::Result<(Vec<Vec<std::os::fd::OwnedFd>>, Vec<SocketAddr>)> {
    let threads = config.threads();
    let mut per_worker: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in &config.listen {
        port_free(addr).with_context(|| {
            format!("cannot listen on {addr}: is another server already listening there?")
        })?;
        let first =
            sys::listener(addr, config.backlog).with_context(|| format!("cannot listen on {addr}"))?;
        let resolved = sys::local_addr(&first)?;
        per_worker[0].push(first);
        for worker in per_worker.iter_mut().skip(1) {
            worker.push(
                sys::listener(&resolved, config.backlog)
                    .with_context(|| format!("cannot listen on {resolved}"))?,
            );
        }
        bound.push(resolved);
    }
    Ok((per_worker, bound))
}

/// Runs the server until SIGINT/SIGTERM and a graceful shutdown (a second signal exits at once).
pub fn run(config: Config) -> anyhow::Result<()> {
    let sigset = sys::block_signals().context("blocking signals")?;
    let nofile = tickcast_uring::raise_nofile_limit();
    let threads = config.threads();
    let (table_size, max_per_worker) = plan_capacity(&config, nofile);
    if config.max_connections.is_some_and(|m| max_per_worker * threads < m) {
        tracing::warn!(
            "RLIMIT_NOFILE ({nofile}) caps each worker's descriptor table at {table_size}: at most {} connections \
             over {threads} workers; add --threads to hold more",
            max_per_worker * threads
        );
    }
    let cpus = sys::allowed_cpus();
    if config.pin && cpus.is_empty() {
        bail!("--pin: could not read this process's CPU affinity");
    }
    let (listeners, bound) = bind_listeners(&config)?;
    let loopback: Vec<bool> = bound.iter().map(|a| a.ip().is_loopback()).collect();
    let feeds = config.feed_specs().map_err(anyhow::Error::msg)?;
    let hub_config = HubConfig {
        max_channels: config.max_channels,
        history: HistoryLimits { messages: config.history, bytes: config.history_bytes },
        ..HubConfig::default()
    };
    let (hub, inboxes) = Hub::new(threads, hub_config).context("creating the hub (eventfds)")?;
    let config = Arc::new(config);
    let shared = Arc::new(Shared {
        stats: (0..threads).map(|_| WorkerStats::default()).collect(),
        shutdown: AtomicU8::new(SHUTDOWN_RUNNING),
    });

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::with_capacity(threads);
    for ((index, listeners), inbox) in listeners.into_iter().enumerate().zip(inboxes) {
        let setup = WorkerSetup {
            hub: Arc::clone(&hub),
            inbox,
            loopback: loopback.clone(),
            index,
            config: Arc::clone(&config),
            shared: Arc::clone(&shared),
            listeners,
            table_size,
            max_connections: max_per_worker,
            cpu: config.pin.then(|| cpus[index % cpus.len()]),
        };
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("tickcast-w{index}"))
            .spawn(move || -> anyhow::Result<()> {
                let worker = match Worker::new(setup) {
                    Ok(w) => {
                        let _ = ready.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return Err(e.into());
                    }
                };
                worker.run().map_err(Into::into)
            })
            .context("spawning a worker thread")?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.shutdown.store(SHUTDOWN_NOW, Ordering::Release);
                bail!("worker setup failed: {e}");
            }
            Err(_) => bail!("a worker thread died during setup"),
        }
    }
    tracing::info!(
        threads,
        pin = config.pin,
        ring_entries = config.ring_entries,
        sqpoll = ?config.sqpoll,
        buf_count = config.buf_count,
        buf_size = config.buf_size,
        max_iovecs = config.max_iovecs,
        send_queue_limit = config.send_queue_limit,
        max_connections = max_per_worker * threads,
        table_per_worker = table_size,
        max_frame = config.max_frame,
        max_message = config.max_message,
        handshake_timeout = ?config.handshake_timeout,
        idle_timeout = ?config.idle_timeout,
        "tickcast started"
    );
    let feed_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feed_thread = (!feeds.is_empty()).then(|| {
        let names: Vec<String> = if config.feeds.is_empty() {
            vec!["ticker (default)".into(), "news (default)".into()]
        } else {
            config.feeds.clone()
        };
        tracing::info!(feeds = %names.join("; "), "built-in feeds on (--no-feed turns them off)");
        feed::spawn_feeds(Arc::clone(&hub), feeds, Arc::clone(&feed_stop))
    });
    let list: Vec<String> = bound.iter().map(ToString::to_string).collect();
    tracing::info!("listening on {}", list.join(", "));

    let signal_shared = Arc::clone(&shared);
    let signal_stop = Arc::clone(&feed_stop);
    std::thread::Builder::new()
        .name("tickcast-signals".into())
        .spawn(move || {
            let mut graceful = false;
            while let Ok(sig) = sys::wait_signal(&sigset) {
                if graceful {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    signal_shared.shutdown.store(SHUTDOWN_NOW, Ordering::Release);
                    std::process::exit(1);
                }
                graceful = true;
                tracing::info!(signal = sig, "shutting down: closing connections (signal again to exit now)");
                signal_stop.store(true, Ordering::Release);
                signal_shared.shutdown.store(SHUTDOWN_GRACEFUL, Ordering::Release);
            }
        })
        .context("spawning the signal thread")?;

    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(anyhow::anyhow!("a worker thread panicked")),
        }
        // One worker failing takes the server down rather than leaving it half alive.
        if failed.is_some() {
            shared.shutdown.store(SHUTDOWN_NOW, Ordering::Release);
        }
    }
    feed_stop.store(true, Ordering::Release);
    if let Some(t) = feed_thread {
        let _ = t.join();
    }
    match failed {
        Some(e) => Err(e),
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn capacity_is_capped_by_descriptor_limit() {
        let cfg = Config::try_parse_from(["tickcast", "--threads", "2", "--max-connections", "100000"])
            .unwrap()
            .validate()
            .unwrap();
        let default = Config::try_parse_from(["tickcast", "--threads", "3"]).unwrap().validate().unwrap();
        assert_eq!(plan_capacity(&default, 20_000), (20_000, 20_000 - REFUSAL_HEADROOM as usize));
        let (table, max) = plan_capacity(&cfg, 20_000);
        assert_eq!(table, 20_000);
        assert_eq!(max, 20_000 - REFUSAL_HEADROOM as usize);
        let (table, max) = plan_capacity(&cfg, 1 << 20);
        assert_eq!(max, 50_000);
        assert_eq!(table, 50_000 + REFUSAL_HEADROOM);
    }
}

//! What a worker reads but never changes while it serves connections: its configuration,
//! limits, counters and the hub. Kept apart from the connection state ([`super::core::Core`])
//! so that a connection's [`Env`] can borrow it while the connections change: a borrow split,
//! not refcount traffic, on the receive path.

use std::sync::Arc;

use tickcast_protocol::http::HeaderLimits;
use tickcast_protocol::message::Limits;

use super::core::TICK;
use crate::Shared;
use crate::config::Config;
use crate::conn::Env;
use crate::conn::lifecycle::Timeouts;
use crate::http::HttpOptions;
use crate::hub::Hub;
use crate::metrics::{self, WorkerStats};
use crate::publish::PublishGate;

pub struct Ctx {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub hub: Arc<Hub>,
    pub http: HttpOptions,
    pub header_limits: HeaderLimits,
    pub echo_limits: Limits,
    pub ws_limits: Limits,
    pub timeouts: Timeouts,
    /// Per listener: bound to a loopback address (its peers may publish without a token).
    pub loopback: Vec<bool>,
    /// Wall-clock time read once per loop turn (envelope timestamps), µs since the epoch.
    pub now_us: u64,
}

impl Ctx {
    pub fn new(
        index: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        hub: Arc<Hub>,
        loopback: Vec<bool>,
    ) -> Self {
        let echo = config.echo_max_message;
        Self {
            index,
            hub,
            http: config.http_options(),
            header_limits: HeaderLimits {
                max_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
            },
            echo_limits: Limits { max_frame: echo as u64, max_message: echo },
            ws_limits: Limits { max_frame: config.max_frame as u64, max_message: config.max_message },
            timeouts: Timeouts::new(&config, TICK),
            loopback,
            now_us: 0,
            shared,
            config,
        }
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.index]
    }

    /// Runs `f` with the environment of a connection (`loopback`: accepted on a loopback
    /// listener), built on the stack from borrows of this context.
    pub fn with_env<R>(&self, loopback: bool, f: impl FnOnce(&Env<'_>) -> R) -> R {
        let stats = self.stats();
        let metrics_fn = |format| {
            let (process, build) = (super::sys::process_sample(), metrics::Build::current());
            metrics::render(&self.shared.stats, &self.hub.stats(), &process, &build, format)
        };
        let gate = PublishGate {
            hub: &self.hub,
            token: self.config.publish_token.as_deref(),
            loopback,
            now_us: self.now_us,
            max_batch: self.config.max_batch,
            stats,
        };
        let env = Env {
            header_limits: self.header_limits,
            echo_limits: self.echo_limits,
            ws_limits: self.ws_limits,
            max_body: self.config.max_body,
            send_queue_limit: self.config.send_queue_limit,
            stats,
            metrics: &metrics_fn,
            publish: Some(&gate),
            http: &self.http,
        };
        f(&env)
    }
}

/// Wall-clock time in µs since the Unix epoch (envelope timestamps; 0 if the clock is broken).
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

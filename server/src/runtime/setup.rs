//! A worker's kernel resources: the ring (best setup the kernel offers, with fallbacks), its
//! sparse direct-descriptor table and its provided buffer ring.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use io_uring::IoUring;
use tickcast_uring::BufRing;

use super::submit::Ring;
use crate::Shared;
use crate::config::Config;
use crate::hub::{Hub, InboxReceiver};

/// The buffer group of the worker's receives.
pub const BUFFER_GROUP: u16 = 0;

/// What a worker needs from `main`.
pub struct WorkerSetup {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub listeners: Vec<OwnedFd>,
    /// Size of the direct-descriptor table (connections plus headroom for refusals).
    pub table_size: u32,
    /// Most connections this worker serves; more are refused with 503.
    pub max_connections: usize,
    pub cpu: Option<usize>,
    pub hub: Arc<Hub>,
    pub inbox: InboxReceiver,
    /// Per listener: bound to a loopback address (its peers may publish without a token).
    pub loopback: Vec<bool>,
}

/// Builds the ring with the best setup the kernel offers, falling back step by step.
fn build_ring(config: &Config) -> io::Result<(IoUring, &'static str)> {
    let entries = config.ring_entries;
    let cq = entries.saturating_mul(4);
    if let Some(idle_ms) = config.sqpoll {
        let ring =
            IoUring::builder().setup_cqsize(cq).setup_sqpoll(idle_ms).setup_single_issuer().build(entries);
        return match ring {
            Ok(r) => Ok((r, "sqpoll+single_issuer")),
            Err(e) => Err(io::Error::new(e.kind(), format!("SQPOLL ring setup failed: {e}"))),
        };
    }
    type Apply = fn(&mut io_uring::Builder);
    let attempts: [(&'static str, Apply); 3] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop_taskrun", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut last_err = None;
    for (i, (name, apply)) in attempts.iter().enumerate() {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_submit_all();
        apply(&mut builder);
        match builder.build(entries) {
            Ok(ring) => {
                if i > 0 {
                    tracing::warn!(mode = name, "kernel lacks the preferred ring setup; fell back");
                }
                return Ok((ring, name));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no ring setup worked")))
}

/// The worker's ring with `table_size` direct descriptors registered, and its buffer ring
/// (registered on it: the caller must unregister it or drop the ring first, see `BufRing`).
pub fn ring(config: &Config, table_size: u32, index: usize) -> io::Result<(Ring, BufRing)> {
    let (ring, mode) = build_ring(config)?;
    ring.submitter()
        .register_files_sparse(table_size)
        .map_err(|e| io::Error::new(e.kind(), format!("registering {table_size} direct descriptors: {e}")))?;
    let bufs = BufRing::new(&ring.submitter(), BUFFER_GROUP, config.buf_count, config.buf_size)
        .map_err(|e| io::Error::new(e.kind(), format!("registering the provided buffer ring: {e}")))?;
    tracing::debug!(worker = index, mode, table = table_size, "worker ring ready");
    Ok((Ring::new(ring, BUFFER_GROUP), bufs))
}

//! The phase of a run, as every client task and the receive ring see it.

/// The phase every client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    /// Measure from `t0_ns` (wall clock).
    Running {
        t0_ns: u64,
    },
    Stopping,
}

//! What a run measures, and nothing else (the bottom layer: it imports no other module of the
//! crate but `plan` and `time`): counters and histograms (`stats.rs`), one tally per thread and
//! per worker merged one way (`tally.rs`), loss by sequence number (`loss.rs`), the publishes
//! the server accepted (`accepted.rs`), the stamp in every message (`stamp.rs`), what a
//! subscriber does with a message (`deliveries.rs`), channel routing (`channels.rs`), and the
//! server as /proc shows it (`procfs.rs`).

pub mod accepted;
pub mod channels;
pub mod deliveries;
pub mod loss;
pub mod procfs;
pub mod stamp;
pub mod stats;
pub mod tally;

//! The io_uring runtime: the only code that talks to the kernel. One [`worker::Worker`] per
//! thread, each with its own ring, buffer ring, listeners, connections and timers.
//!
//! Layers, one way: `worker` (the loop, completion dispatch) -> `core` (connection work, no
//! ring), `accept` (listeners), `shutdown`, `submit` (every SQE), `setup` (ring and buffer
//! ring) -> `ctx`, `timer`, `token`, `sendpool`, `sys`. Decisions are taken by the pure `conn::io` and `conn::lifecycle`.

pub mod accept;
pub mod core;
pub mod ctx;
pub mod sendpool;
pub mod setup;
pub mod shutdown;
pub mod submit;
pub mod sys;
pub mod timer;
pub mod token;
pub mod worker;

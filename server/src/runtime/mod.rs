//! The io_uring runtime: the only code that talks to the kernel. One [`worker::Worker`] per
//! thread, each with its own ring, buffer ring, listeners, connections and timers.

pub mod bufring;
pub mod sendpool;
pub mod sys;
pub mod timer;
pub mod token;
pub mod worker;

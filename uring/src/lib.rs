//! The low-level io_uring pieces both tickcast binaries need, written once:
//!
//! * [`BufRing`]: a provided buffer ring (`IORING_REGISTER_PBUF_RING`) for multishot receives,
//!   with its safety contract stated once at the top of [`bufring`];
//! * [`recvmsg`]: the payload and the kernel's arrival time (`SO_TIMESTAMPNS`) out of a
//!   multishot `recvmsg` buffer;
//! * [`raise_nofile_limit`]: the `RLIMIT_NOFILE` raiser (a ring's direct-descriptor table and
//!   every socket count against it).
//!
//! Nothing here knows about WebSocket or HTTP; `unsafe` is confined to this crate's kernel
//! interface, each block with the invariant it relies on.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod bufring;
mod mmap;
pub mod recvmsg;
mod rlimit;

pub use bufring::{BufRing, Taken};
pub use mmap::Mmap;
pub use rlimit::raise_nofile_limit;

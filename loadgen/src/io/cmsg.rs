//! The kernel's receive timestamps: switching them on (`SO_TIMESTAMPNS`), the `recvmsg` header
//! that makes room for one, and finding it in a receive's control data. Kept apart so that it
//! can move to the shared `tickcast-uring` crate as it is.

use std::io;
use std::os::fd::AsRawFd;

/// The header template of the multishot `recvmsg`s: no address, room for one timestamp.
pub struct MsgHdr(pub libc::msghdr);

// SAFETY: the header's pointers are all null (the kernel reads only its lengths for a multishot
// recvmsg and writes into provided buffers), so moving it between threads shares nothing.
unsafe impl Send for MsgHdr {}

/// `struct io_uring_recvmsg_out`: four u32 (name, control and payload lengths, flags).
pub const RECVMSG_OUT_LEN: usize = 16;

/// `CMSG_SPACE(sizeof(struct timespec))` on 64-bit Linux: a 16-byte header and 16 bytes of data.
pub const TIMESTAMP_CMSG_SPACE: usize = 32;

impl MsgHdr {
    pub fn for_timestamps() -> MsgHdr {
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
        msghdr.msg_controllen = TIMESTAMP_CMSG_SPACE as _;
        MsgHdr(msghdr)
    }
}

/// Asks the kernel to stamp received data with its arrival time (`SO_TIMESTAMPNS`, wall clock
/// like the messages' stamps).
pub fn enable_rx_timestamps(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value is a c_int of the size given, which the
    // kernel copies before returning.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The arrival time (ns since the epoch) in a receive's control data: its `SCM_TIMESTAMPNS`
/// message (for TCP, the arrival of the last segment the receive read).
pub fn kernel_arrival_ns(mut control: &[u8]) -> Option<u64> {
    const HEADER: usize = 16; // cmsg_len (usize), cmsg_level (i32), cmsg_type (i32)
    while control.len() >= HEADER {
        let len = usize::from_ne_bytes(control[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(control[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[12..16].try_into().ok()?);
        if len < HEADER || len > control.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && len >= HEADER + 16 {
            let sec = i64::from_ne_bytes(control[16..24].try_into().ok()?);
            let nsec = i64::from_ne_bytes(control[24..32].try_into().ok()?);
            return u64::try_from(sec)
                .ok()?
                .checked_mul(1_000_000_000)?
                .checked_add(u64::try_from(nsec).ok()?);
        }
        control = control.get(len.next_multiple_of(8)..)?;
    }
    None
}

//! Multishot `recvmsg` with kernel receive timestamps: the socket has `SO_TIMESTAMPNS`, every
//! receive's control data carries an `SCM_TIMESTAMPNS` message (for TCP, the time the last
//! segment the receive read reached this machine), and the provided buffer holds
//! `io_uring_recvmsg_out` + name + control + payload. This module builds the template header
//! and takes such a buffer apart; the buffer itself comes from [`crate::BufRing`].

use std::io;
use std::os::fd::AsRawFd;

use io_uring::types::RecvMsgOut;

/// `struct io_uring_recvmsg_out`: four u32 (name, control and payload lengths, flags).
pub const RECVMSG_OUT_LEN: usize = 16;

/// `CMSG_SPACE(sizeof(struct timespec))` on 64-bit Linux: a 16-byte header and 16 bytes of data.
pub const TIMESTAMP_CMSG_SPACE: usize = 32;

/// `cmsg_len` (usize), `cmsg_level` (i32), `cmsg_type` (i32).
const CMSG_HEADER: usize = 16;

/// The header template of timestamped multishot `recvmsg`s: no address, room for one
/// timestamp. Pass `&hdr.0` to `opcode::RecvMsgMulti::new` and to [`split`]; keep it alive
/// (boxed, unmoved) as long as receives using it are armed.
#[derive(Debug)]
pub struct TimestampHdr(pub libc::msghdr);

// SAFETY: every pointer in the header is null (a multishot recvmsg reads only its lengths and
// writes into provided buffers), so moving it between threads shares nothing.
unsafe impl Send for TimestampHdr {}

impl TimestampHdr {
    pub fn new() -> Self {
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
        msghdr.msg_controllen = TIMESTAMP_CMSG_SPACE as _;
        Self(msghdr)
    }
}

impl Default for TimestampHdr {
    fn default() -> Self {
        Self::new()
    }
}

/// Asks the kernel to stamp received data with its arrival time (`SO_TIMESTAMPNS`, wall clock).
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

/// A multishot `recvmsg` buffer taken apart: the payload (borrowed from the buffer) and the
/// kernel's arrival time in ns since the epoch, if the control data carried one. `None` when
/// the buffer is too short for the header `msghdr` describes.
pub fn split<'a>(buf: &'a [u8], msghdr: &libc::msghdr) -> Option<(&'a [u8], Option<u64>)> {
    let out = RecvMsgOut::parse(buf, msghdr).ok()?;
    let arrival = kernel_arrival_ns(out.control_data());
    // The payload follows the fixed header, the name field and the control field; `out` lends
    // it only for its own life, so it is sliced again from `buf`.
    let start = RECVMSG_OUT_LEN + msghdr.msg_namelen as usize + msghdr.msg_controllen;
    let end = start.checked_add(out.payload_data().len())?.min(buf.len());
    Some((buf.get(start..end)?, arrival))
}

/// The arrival time (ns since the epoch) in a receive's control data: its `SCM_TIMESTAMPNS`
/// message. `None` without one, or when the control data is malformed (never panics).
pub fn kernel_arrival_ns(mut control: &[u8]) -> Option<u64> {
    while control.len() >= CMSG_HEADER {
        let len = usize::from_ne_bytes(control[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(control[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[12..16].try_into().ok()?);
        if len < CMSG_HEADER || len > control.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && len >= CMSG_HEADER + 16 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(CMSG_HEADER + data.len()).to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(8), 0);
        out
    }

    fn timespec(sec: i64, nsec: i64) -> Vec<u8> {
        [sec.to_ne_bytes(), nsec.to_ne_bytes()].concat()
    }

    /// A provided buffer as a timestamped multishot recvmsg fills it.
    fn recvmsg_buffer(control: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [0u32, control.len() as u32, payload.len() as u32, 0] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        let mut field = control.to_vec();
        field.resize(TIMESTAMP_CMSG_SPACE, 0);
        out.extend_from_slice(&field);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn timestamp_found() {
        let control = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(1_700_000_000, 123));
        assert_eq!(control.len(), TIMESTAMP_CMSG_SPACE);
        assert_eq!(kernel_arrival_ns(&control), Some(1_700_000_000_000_000_123));
    }

    #[test]
    fn other_messages_skipped() {
        let mut control = cmsg(libc::IPPROTO_IP, 8, &[1, 2, 3, 4]); // 20 bytes, padded to 24
        control.extend(cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(2, 5)));
        assert_eq!(kernel_arrival_ns(&control), Some(2_000_000_005));
    }

    #[test]
    fn malformed_control_yields_none() {
        assert_eq!(kernel_arrival_ns(&[]), None);
        assert_eq!(kernel_arrival_ns(&[0; 15]), None);
        let mut bad = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(1, 1));
        bad[..8].copy_from_slice(&4usize.to_ne_bytes()); // shorter than a header
        assert_eq!(kernel_arrival_ns(&bad), None);
        bad[..8].copy_from_slice(&999usize.to_ne_bytes()); // longer than the data
        assert_eq!(kernel_arrival_ns(&bad), None);
        let negative = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(-1, 0));
        assert_eq!(kernel_arrival_ns(&negative), None);
        let short = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &[0; 8]);
        assert_eq!(kernel_arrival_ns(&short), None, "a timestamp needs 16 bytes of data");
        // Every truncation of a valid message is handled without panicking.
        let good = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(3, 4));
        for n in 0..good.len() {
            assert_eq!(kernel_arrival_ns(&good[..n]), None, "truncated at {n}");
        }
    }

    #[test]
    fn split_gives_payload_and_arrival() {
        let hdr = TimestampHdr::new();
        let control = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(7, 8));
        let buf = recvmsg_buffer(&control, b"hello");
        assert_eq!(split(&buf, &hdr.0), Some((&b"hello"[..], Some(7_000_000_008))));
        // No control data (the socket lacks SO_TIMESTAMPNS): payload, no arrival.
        let buf = recvmsg_buffer(&[], b"hi");
        assert_eq!(split(&buf, &hdr.0), Some((&b"hi"[..], None)));
        // End of stream: a header with no payload.
        let buf = recvmsg_buffer(&control, b"");
        assert_eq!(split(&buf, &hdr.0), Some((&b""[..], Some(7_000_000_008))));
        // Shorter than header + control field: not a recvmsg buffer.
        assert_eq!(split(&buf[..RECVMSG_OUT_LEN + 4], &hdr.0), None);
    }

    #[test]
    fn split_clamps_a_payload_length_past_the_buffer() {
        let hdr = TimestampHdr::new();
        let mut buf = recvmsg_buffer(&[], b"abc");
        buf[8..12].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(split(&buf, &hdr.0), Some((&b"abc"[..], None)));
    }
}

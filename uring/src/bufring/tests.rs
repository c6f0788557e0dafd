//! The buffer ring on a real ring and a real socket pair. Kernels without provided buffer
//! rings (before 5.19) or without io_uring at all skip with a message.

use std::io::Write;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

use super::*;

const BGID: u16 = 7;

/// A ring with a registered buffer ring, or `None` (with a message) when the kernel lacks it.
fn setup(entries: u16, buf_size: usize) -> Option<(IoUring, BufRing)> {
    let ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping: no io_uring here ({e})");
            return None;
        }
    };
    match BufRing::new(&ring.submitter(), BGID, entries, buf_size) {
        Ok(bufs) => Some((ring, bufs)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
            eprintln!("skipping: the kernel lacks provided buffer rings ({e})");
            None
        }
        Err(e) => panic!("registering a buffer ring: {e}"),
    }
}

/// Receives once on `fd` with a buffer from the group; returns (result, flags).
fn recv_once(ring: &mut IoUring, fd: i32) -> (i32, u32) {
    let sqe = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
        .buf_group(BGID)
        .build()
        .flags(io_uring::squeue::Flags::BUFFER_SELECT)
        .user_data(1);
    // SAFETY: the op writes only into the registered buffer group, which outlives it.
    unsafe { ring.submission().push(&sqe).unwrap() };
    ring.submit_and_wait(1).unwrap();
    let cqe = ring.completion().next().unwrap();
    (cqe.result(), cqe.flags())
}

#[test]
fn receives_recycles_and_unregisters() {
    let Some((mut ring, mut bufs)) = setup(2, 64) else { return };
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    // Three receives through a ring of two buffers: each buffer must come back to be reused.
    let mut seen = Vec::new();
    for msg in [&b"first"[..], b"second", b"third"] {
        a.write_all(msg).unwrap();
        let (res, flags) = recv_once(&mut ring, b.as_raw_fd());
        assert_eq!(res, msg.len() as i32);
        // SAFETY: the flags come from the completion just reaped, taken once.
        let buf = unsafe { bufs.take(flags, res as usize) }.expect("a buffer was selected");
        assert_eq!(&*buf, msg);
        seen.push(buf.bid());
        drop(buf); // recycled...
        bufs.publish(); // ...and published
    }
    assert!(seen.iter().all(|&bid| bid < 2), "buffer ids stay within the ring: {seen:?}");
    // Unregistering frees the group: a receive selecting from it now fails.
    bufs.unregister(&ring.submitter()).unwrap();
    a.write_all(b"late").unwrap();
    let (res, _) = recv_once(&mut ring, b.as_raw_fd());
    assert!(res < 0, "no buffer group after unregister, got {res}");
    drop(bufs); // frees the memory: unregistered
}

#[test]
fn a_dry_ring_reports_enobufs_until_published() {
    let Some((mut ring, mut bufs)) = setup(1, 16) else { return };
    let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.write_all(b"one").unwrap();
    let (res, flags) = recv_once(&mut ring, b.as_raw_fd());
    assert_eq!(res, 3);
    // SAFETY: the flags come from the completion just reaped, taken once.
    let buf = unsafe { bufs.take(flags, res as usize) }.unwrap();
    a.write_all(b"two").unwrap();
    // The only buffer is still ours: the kernel has none to pick.
    let (res, _) = recv_once(&mut ring, b.as_raw_fd());
    assert_eq!(res, -libc::ENOBUFS);
    drop(buf);
    let (res, _) = recv_once(&mut ring, b.as_raw_fd());
    assert_eq!(res, -libc::ENOBUFS, "recycled but not yet published");
    bufs.publish();
    let (res, flags) = recv_once(&mut ring, b.as_raw_fd());
    assert_eq!(res, 3);
    // SAFETY: the flags come from the completion just reaped, taken once.
    assert_eq!(&*unsafe { bufs.take(flags, 3) }.unwrap(), b"two");
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn take_needs_a_buffer_flag_and_clamps_the_length() {
    let Some((ring, mut bufs)) = setup(4, 32) else { return };
    // SAFETY: no buffer is named, so nothing is taken.
    assert!(unsafe { bufs.take(0, 10) }.is_none());
    let flags = 1 | (3 << 16); // IORING_CQE_F_BUFFER, buffer id 3
    // SAFETY: buffer 3 was published and no receive ran, so the kernel never wrote it; reading
    // it here stands in for a completion that named it (test only).
    let buf = unsafe { bufs.take(flags, 1000) }.unwrap();
    assert_eq!((buf.bid(), buf.len()), (3, 32), "clamped to the buffer size");
    drop(buf);
    bufs.unregister(&ring.submitter()).unwrap();
}

#[test]
fn dropped_while_registered_leaks_instead_of_freeing() {
    // Dropping without unregistering must not free memory the kernel may write: it leaks (the
    // ring is still alive here). Only checks that this path is not a crash; the leak is by design.
    let Some((ring, bufs)) = setup(2, 16) else { return };
    drop(bufs);
    drop(ring);
}

#[test]
fn bad_sizes_are_refused() {
    let Ok(ring) = IoUring::new(8) else { return };
    assert!(BufRing::new(&ring.submitter(), BGID, 3, 64).is_err(), "not a power of two");
    assert!(BufRing::new(&ring.submitter(), BGID, 4, 0).is_err(), "empty buffers");
}

#[test]
fn a_buffer_ring_can_move_to_its_thread() {
    // The load generator builds its receiver before the thread that runs it starts.
    fn assert_send<T: Send>() {}
    assert_send::<BufRing>();
    assert_send::<crate::recvmsg::TimestampHdr>();
}

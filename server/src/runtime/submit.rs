//! Every SQE the worker submits, built in one place, and the one `unsafe` push.
//!
//! # Safety contract (stated once)
//!
//! 1. **Memory an op points to outlives the op.** The kernel reads (sends: the frames, the
//!    msghdr and its iovecs) or writes (receives: the provided buffer ring) that memory until
//!    the op's completion is reaped, or until the ring is gone. So: frames stay in the
//!    connection's send queue until the send's completion advances it (`SendQueue` changes
//!    only in `Conn::on_sent` while a send is in flight); a msghdr + iovecs stays lent from the
//!    send pool until that completion; and the ring is dropped before the buffer ring, the send
//!    pool and the connections (`Worker`'s `Drop` does it first, whatever the field order).
//!    Only [`Ring::send`] and [`Ring::send_msg`] take pointers, so only they are `unsafe`.
//! 2. **Tokens name the op's owner.** Every op's `user_data` is a [`Token`] (kind | generation
//!    | slot): a completion is matched to the connection that submitted it, and one arriving
//!    after the slot was reused fails the generation check instead of touching the new
//!    connection. Connection ops are addressed by direct descriptor (`Fixed(slot)`): the slot
//!    *is* the descriptor.

use std::io;

use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};

use super::token::{OpKind, Token};

/// The worker's ring: submission builders and the wait.
pub struct Ring {
    ring: IoUring,
    /// Provided buffer group the receives select from.
    bgid: u16,
}

impl Ring {
    pub fn new(ring: IoUring, bgid: u16) -> Self {
        Self { ring, bgid }
    }

    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    pub fn completion(&mut self) -> io_uring::CompletionQueue<'_> {
        self.ring.completion()
    }

    /// Queues an SQE, submitting first if the submission queue is full.
    ///
    /// # Safety
    ///
    /// Whatever `sqe` points to stays valid and unmoved until its completion is reaped or the
    /// ring is dropped (contract 1).
    unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: per this function's contract, everything `sqe` references outlives the op.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!("submit failed while the SQ was full: {e}");
            }
        }
    }

    /// Queues an op that points to no memory of ours.
    fn push_plain(&mut self, sqe: squeue::Entry) {
        // SAFETY: the entry carries no pointer (descriptors, flags and tokens only).
        unsafe { self.push(&sqe) }
    }

    /// Multishot accept on a listener, straight into the direct-descriptor table.
    pub fn accept(&mut self, listener: i32, index: u32) {
        let token = Token::new(OpKind::Accept, index, 0).encode();
        self.push_plain(
            opcode::AcceptMulti::new(Fd(listener)).allocate_file_index(true).build().user_data(token),
        );
    }

    /// Cancels a listener's multishot accept (shutdown).
    pub fn cancel_accept(&mut self, index: u32) {
        let accept = Token::new(OpKind::Accept, index, 0).encode();
        let token = Token::new(OpKind::CancelAccept, index, 0).encode();
        self.push_plain(opcode::AsyncCancel2::new(CancelBuilder::user_data(accept)).build().user_data(token));
    }

    /// A multishot poll on the inbox eventfd: publishers on other threads wake this ring.
    pub fn poll_wake(&mut self, eventfd: i32) {
        let token = Token::new(OpKind::Wake, 0, 0).encode();
        self.push_plain(
            opcode::PollAdd::new(Fd(eventfd), libc::POLLIN as u32).multi(true).build().user_data(token),
        );
    }

    /// Multishot receive into the provided buffer ring.
    pub fn recv(&mut self, slot: u32, generation: u32) {
        let token = Token::new(OpKind::Recv, slot, generation).encode();
        self.push_plain(opcode::RecvMulti::new(Fixed(slot), self.bgid).build().user_data(token));
    }

    /// Cancels the connection's receive (its final completion follows).
    pub fn cancel_recv(&mut self, slot: u32, generation: u32) {
        let recv = Token::new(OpKind::Recv, slot, generation).encode();
        let token = Token::new(OpKind::Cancel, slot, generation).encode();
        self.push_plain(opcode::AsyncCancel2::new(CancelBuilder::user_data(recv)).build().user_data(token));
    }

    /// `shutdown(SHUT_WR)`: our FIN after the last queued byte.
    pub fn shutdown(&mut self, slot: u32, generation: u32) {
        let token = Token::new(OpKind::Shutdown, slot, generation).encode();
        self.push_plain(opcode::Shutdown::new(Fixed(slot), libc::SHUT_WR).build().user_data(token));
    }

    /// Closes the direct descriptor `slot`. `generation` `u32::MAX` (masked) marks a close of
    /// a descriptor no connection owns (accepted while shutting down).
    pub fn close(&mut self, slot: u32, generation: u32) {
        let token = Token::new(OpKind::Close, slot, generation).encode();
        self.push_plain(opcode::Close::new(Fixed(slot)).build().user_data(token));
    }

    /// A plain send of `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// The bytes stay valid and unmoved until the send's completion is reaped (contract 1).
    pub unsafe fn send(&mut self, slot: u32, generation: u32, ptr: *const u8, len: usize) {
        let token = Token::new(OpKind::Send, slot, generation).encode();
        let len = u32::try_from(len).unwrap_or(u32::MAX); // a partial send resumes the rest
        let sqe = opcode::Send::new(Fixed(slot), ptr, len).flags(libc::MSG_NOSIGNAL).build().user_data(token);
        // SAFETY: the caller keeps the bytes alive until the completion (this fn's contract).
        unsafe { self.push(&sqe) }
    }

    /// A vectored send described by `msg` (its iovecs and the frames they point to).
    ///
    /// # Safety
    ///
    /// `msg`, its iovec array and every buffer the iovecs name stay valid and unmoved until
    /// the send's completion is reaped (contract 1).
    pub unsafe fn send_msg(&mut self, slot: u32, generation: u32, msg: *const libc::msghdr) {
        let token = Token::new(OpKind::Send, slot, generation).encode();
        let sqe =
            opcode::SendMsg::new(Fixed(slot), msg).flags(libc::MSG_NOSIGNAL as u32).build().user_data(token);
        // SAFETY: the caller keeps the header and all it names alive (this fn's contract).
        unsafe { self.push(&sqe) }
    }

    /// Submits everything queued and waits for one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: std::time::Duration) -> io::Result<()> {
        let ts = Timespec::new().sec(timeout.as_secs()).nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
        }
    }
}

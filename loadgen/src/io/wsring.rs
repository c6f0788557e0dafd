//! The fast receive path of WebSocket subscribers (`rate --transport ws`, `--ws-receiver ring`,
//! the default): one raw io_uring per load thread, one multishot `recvmsg` (or `recv`) per
//! connection into a provided buffer ring, frames decoded in place in the kernel-filled buffers.
//!
//! A connection is opened (TCP connect + upgrade) by [`WsClient`] on the thread's tokio-uring
//! runtime as before, then *adopted* here: its socket is duplicated, the bytes already read past
//! the `101` head are fed first, and a multishot `recv` is armed. From then on, every completion
//! carries one kernel buffer of bytes; complete frames are parsed where they lie (no copy), a
//! frame cut by the end of a buffer is carried over in a small per-connection buffer (only its
//! missing bytes are copied), and each message goes to the same `Deliveries` accounting as the
//! tokio path.
//!
//! Arrival times (`--arrival kernel`, the default) are the kernel's: every socket has
//! `SO_TIMESTAMPNS`, each receive is a `recvmsg` whose control data carries the time the last
//! segment it read reached this machine. This process's own backlog (on loopback one core reads
//! for thousands of clients that would each have their own machine) then stays out of the
//! latencies; it is measured apart as `read_delay`. With `--arrival user` the clock is read once
//! per batch of completions, the backlog included.
//!
//! The ring uses deferred task work (`DEFER_TASKRUN`): the receives run inside this thread's
//! `io_uring_enter`, and in a stream of arrivals it waits for a batch of completions (at most
//! `BATCH_WAIT`) rather than waking once per segment. While clients connect, the ring is driven
//! by a task of the thread's runtime ([`drive`]), so connection setup, the ticker and this loop
//! share one thread. Pings (and the `--protocol`'s keepalives, e.g. Socket.IO's `2`) are
//! answered and closes acknowledged with plain `send`s on the socket (rare). Every data frame
//! goes through the connection's protocol `Session` (`protocol.rs`): for plain WebSocket that
//! hands it to `Deliveries` as it is.

use std::cell::RefCell;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode};
use tickcast_protocol::client::{ClientFrame, ClientRead, ClientReader, MaskKeys};
use tickcast_protocol::frame::{MAX_HEADER_LEN, OpCode, write_client_frame};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::io::account;
use tickcast_uring::BufRing;
use tickcast_uring::recvmsg::{TimestampHdr, enable_rx_timestamps};

/// Buffers in the ring (power of two) and their size: 16 MiB per load thread.
const BUF_COUNT: u16 = 4096;
const BUF_SIZE: usize = 4096;
const BUFFER_GROUP: u16 = 0;

use crate::io::net::duplicate;
use crate::io::ws::{MAX_FRAME_BYTES, WsClient};
use crate::measure::deliveries::Deliveries;
use crate::measure::tally::ThreadStats;
use crate::phase::Phase;
use crate::time::now_ns;
use crate::wire::session::Session;

/// How long stopping waits for every connection's last completion before it gives up (and then
/// leaks the buffer memory rather than free memory the kernel might still write).
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// One adopted connection.
struct Conn {
    socket: std::net::TcpStream,
    /// The start of a frame cut by the end of a buffer.
    partial: Vec<u8>,
    /// Frames out of the buffers (and fragmented messages joined).
    reader: ClientReader,
    deliveries: Deliveries,
    /// The protocol spoken inside the WebSocket (its opening is done).
    session: Session,
    pings: u64,
    masks: MaskKeys,
    /// The multishot recv is armed (a completion without `MORE` disarms it).
    armed: bool,
    /// The server closed, failed or broke the protocol: no more data is read.
    done: bool,
}

/// What a frame asks of the connection.
enum Action {
    None,
    Pong(Vec<u8>),
    /// The protocol's answer to a keepalive.
    Reply(&'static [u8]),
    Closed(Vec<u8>),
}

impl Conn {
    /// Feeds bytes received; `Err` on a protocol error (the connection is dropped).
    fn on_data(&mut self, mut data: &[u8], stats: &mut ThreadStats, now: u64) -> anyhow::Result<()> {
        // Complete the frame carried over, copying only the bytes it still needs.
        while !self.partial.is_empty() && !self.done {
            match self.reader.read(&self.partial, MAX_FRAME_BYTES)? {
                ClientRead::Frame { frame, used } => {
                    let mut partial = std::mem::take(&mut self.partial);
                    let result = self.on_frame(frame, &partial, stats, now);
                    partial.drain(..used);
                    self.partial = partial;
                    result?;
                }
                ClientRead::Incomplete { needed } => {
                    let take = needed.min(data.len());
                    if take == 0 {
                        return Ok(());
                    }
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
            }
        }
        // Then every complete frame in place.
        while !data.is_empty() && !self.done {
            match self.reader.read(data, MAX_FRAME_BYTES)? {
                ClientRead::Frame { frame, used } => {
                    self.on_frame(frame, data, stats, now)?;
                    data = &data[used..];
                }
                ClientRead::Incomplete { .. } => {
                    self.partial.extend_from_slice(data);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Handles one frame that `self.reader` read from `input`.
    fn on_frame(
        &mut self,
        frame: ClientFrame,
        input: &[u8],
        stats: &mut ThreadStats,
        now: u64,
    ) -> anyhow::Result<()> {
        let action = match frame {
            ClientFrame::Message { text, payload } => {
                let body = self.reader.payload(input, &payload);
                account::frame(&mut self.session, text, body, Some(&mut self.deliveries), stats, now).into()
            }
            ClientFrame::Fragment | ClientFrame::Pong => Action::None,
            ClientFrame::Ping(range) => {
                self.pings += 1;
                Action::Pong(input[range].to_vec())
            }
            ClientFrame::Close(range) => {
                Action::Closed(input[range].get(..2).map(<[u8]>::to_vec).unwrap_or_default())
            }
        };
        match action {
            Action::None => {}
            Action::Pong(payload) => self.send(OpCode::Pong, &payload)?,
            Action::Reply(reply) => {
                self.send(OpCode::Text, reply)?;
                stats.tally.counters.bytes_sent += reply.len() as u64;
            }
            Action::Closed(code) => {
                let _ = self.send(OpCode::Close, &code);
                let _ = self.socket.shutdown(std::net::Shutdown::Both);
                self.done = true;
            }
        }
        Ok(())
    }

    /// Sends one small masked control frame with a plain `send` (pongs, closes: rare).
    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mask = self.masks.next_key();
        let mut out = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
        write_client_frame(&mut out, opcode, payload, mask);
        self.socket.write_all(&out)
    }
}

impl From<Option<&'static [u8]>> for Action {
    fn from(reply: Option<&'static [u8]>) -> Action {
        reply.map_or(Action::None, Action::Reply)
    }
}

/// A load thread's receive ring and the connections it reads.
pub struct RingReceiver {
    ring: IoUring,
    /// Task work is deferred to this thread's `io_uring_enter` with `GETEVENTS`.
    deferred: bool,
    /// Arrival times come from the kernel (`SO_TIMESTAMPNS`, multishot `recvmsg`): the template
    /// header of those receives. `None`: multishot `recv`, arrival read when reaped.
    msghdr: Option<Box<TimestampHdr>>,
    bufs: BufRing,
    conns: Vec<Option<Conn>>,
    /// Connections whose multishot recv must be (re)armed at the next submit.
    rearm: Vec<usize>,
    cqes: Vec<(u64, i32, u32)>,
    /// Adopted connections whose multishot recv is still armed.
    armed: usize,
    /// `drive` finished: later connections take the tokio path.
    closed: bool,
    /// Memory the kernel might still use at drop: leak rather than free it.
    leak: bool,
}

impl RingReceiver {
    /// `kernel_arrival`: stamp each receive with the time the kernel received its data.
    /// `open_loop`: the messages come on a schedule that does not wait for this receiver.
    pub fn new(kernel_arrival: bool, open_loop: bool) -> io::Result<RingReceiver> {
        // Open loop: deferred task work. The receives run only inside this thread's
        // `io_uring_enter`, and queueing one costs the sender no wakeup while this thread is
        // busy (on loopback the sender's core pays for waking the receiver, so that is less of
        // the load generator's cost charged to the server it measures). A windowed publisher
        // waits for these receives, and there deferred task work measured 15-25 % fewer
        // deliveries/s (results/loadgen-receive.md): cooperative task work, as on kernels
        // without deferred task work (before 6.1).
        let deferred = if open_loop {
            IoUring::builder()
                .setup_cqsize(16 * 1024)
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(1024)
                .ok()
        } else {
            None
        };
        let (ring, deferred) = match deferred {
            Some(ring) => (ring, true),
            None => (IoUring::builder().setup_cqsize(16 * 1024).setup_coop_taskrun().build(1024)?, false),
        };
        let bufs = BufRing::new(&ring.submitter(), BUFFER_GROUP, BUF_COUNT, BUF_SIZE)?;
        Ok(RingReceiver {
            ring,
            deferred,
            msghdr: kernel_arrival.then(|| Box::new(TimestampHdr::new())),
            bufs,
            conns: Vec::new(),
            rearm: Vec::new(),
            cqes: Vec::with_capacity(1024),
            armed: 0,
            closed: false,
            leak: false,
        })
    }

    /// Takes over an opened client: its socket (duplicated), the bytes it already read past the
    /// upgrade head (and the protocol's opening), its protocol session and its accounting.
    /// Gives them back (`Some`) when the ring no longer reads.
    pub fn adopt(
        &mut self,
        stats: &mut ThreadStats,
        mut client: WsClient,
        deliveries: Deliveries,
        session: Session,
    ) -> Option<(WsClient, Deliveries, Session)> {
        if self.closed {
            return Some((client, deliveries, session));
        }
        let fd = match client.duplicate_fd() {
            Ok(fd) => fd,
            Err(_) => return Some((client, deliveries, session)),
        };
        if self.msghdr.is_some() && enable_rx_timestamps(&fd).is_err() {
            return Some((client, deliveries, session));
        }
        stats.tally.counters.bytes_received += client.take_bytes_received();
        stats.tally.counters.pings_received += client.pings_received;
        let pending = client.take_pending();
        drop(client);
        let mut conn = Conn {
            socket: std::net::TcpStream::from(fd),
            partial: Vec::new(),
            reader: ClientReader::default(),
            deliveries,
            session,
            pings: 0,
            masks: MaskKeys::new(rand::random()),
            armed: false,
            done: false,
        };
        if conn.on_data(&pending, stats, now_ns()).is_err() {
            conn.done = true;
        }
        let index = self.conns.len();
        self.conns.push(Some(conn));
        if self.conns[index].as_ref().is_some_and(|c| c.done) {
            self.finish_conn(index, stats, true);
        } else {
            self.rearm.push(index);
            self.submit();
        }
        None
    }

    /// Arms the multishot recvs asked for and submits.
    fn submit(&mut self) {
        for index in std::mem::take(&mut self.rearm) {
            let Some(conn) = self.conns[index].as_mut() else { continue };
            if conn.armed || conn.done {
                continue;
            }
            let fd = io_uring::types::Fd(conn.socket.as_raw_fd());
            let sqe = match &self.msghdr {
                Some(msghdr) => opcode::RecvMsgMulti::new(fd, &msghdr.0, BUFFER_GROUP).build(),
                None => opcode::RecvMulti::new(fd, BUFFER_GROUP).build(),
            };
            let sqe = sqe.user_data(index as u64);
            // SAFETY: the SQE names a socket owned by `conn` (kept open until its last completion
            // is reaped), a buffer group whose memory outlives the ring's use of it, and (recvmsg)
            // a header boxed in `self`, which lives as long as the ring.
            while unsafe { self.ring.submission().push(&sqe) }.is_err() {
                let _ = self.ring.submit();
            }
            conn.armed = true;
            self.armed += 1;
        }
        let _ = self.ring.submit();
    }

    /// Handles every completion posted; returns how many.
    fn reap(&mut self, stats: &mut ThreadStats) -> usize {
        let mut handled = 0;
        if self.deferred && self.ring.submission().taskrun() {
            // Run the receives waiting as deferred task work (an enter with GETEVENTS).
            let _ = self.ring.submit();
        }
        loop {
            self.cqes.clear();
            self.cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
            if self.cqes.is_empty() {
                break;
            }
            // The clock of this batch, read after its completions were posted: completions posted
            // while it is handled (a system call in it, such as waking the publisher, runs the
            // task work of cooperative receives) belong to the next batch, read later.
            let now = now_ns();
            handled += self.cqes.len();
            for i in 0..self.cqes.len() {
                let (user_data, result, flags) = self.cqes[i];
                self.on_cqe(user_data as usize, result, flags, stats, now);
            }
        }
        self.bufs.publish();
        if !self.rearm.is_empty() {
            self.submit();
        }
        handled
    }

    fn on_cqe(&mut self, index: usize, result: i32, flags: u32, stats: &mut ThreadStats, now: u64) {
        let more = cqueue::more(flags);
        // SAFETY: `flags` are this completion's, reaped from `self.ring`, where the group is
        // registered; this is the only `take` for it. The buffer is recycled when `buf` drops.
        let buf = unsafe { self.bufs.take(flags, usize::try_from(result).unwrap_or(0)) };
        let Some(Some(conn)) = self.conns.get_mut(index) else {
            return;
        };
        if !more {
            conn.armed = false;
            self.armed -= 1;
        }
        let mut failed = false;
        // Payload bytes received (a recvmsg's result also counts its header).
        let mut payload_len = 0;
        if result > 0
            && let Some(raw) = &buf
        {
            let (data, arrival) = match &self.msghdr {
                Some(msghdr) => tickcast_uring::recvmsg::split(raw, &msghdr.0).unwrap_or((&[][..], None)),
                None => (&raw[..], None),
            };
            payload_len = data.len();
            stats.tally.counters.bytes_received += data.len() as u64;
            match arrival {
                Some(arrival) => stats.read_delay.record_ns(now.saturating_sub(arrival)),
                None if self.msghdr.is_some() && !data.is_empty() => {
                    stats.tally.counters.receives_unstamped += 1
                }
                None => {}
            }
            if !conn.done && conn.on_data(data, stats, arrival.unwrap_or(now)).is_err() {
                failed = true;
            }
        }
        drop(buf); // recycled: published with the batch
        if failed {
            conn.done = true;
            let _ = conn.socket.shutdown(std::net::Shutdown::Both);
        }
        if !more {
            // A recvmsg reports the end of the stream as a header with no payload.
            let data_came = result > 0 && payload_len > 0;
            if (data_came || result == -libc::ENOBUFS) && !conn.done && !self.closed {
                // The multishot ended without an end of stream: the buffer ring ran dry, or the
                // kernel stopped it (e.g. a completion queue overflow). Read on.
                self.rearm.push(index);
            } else if !self.closed {
                // End of stream, an error, or a close: cut off before the end of the run.
                self.finish_conn(index, stats, true);
            }
        }
    }

    /// Accounts a connection's totals and forgets it.
    fn finish_conn(&mut self, index: usize, stats: &mut ThreadStats, cut_off: bool) {
        let Some(conn) = self.conns[index].take() else { return };
        if conn.armed {
            // Still armed (stopping): the socket was shut down; keep it until its last completion.
            self.armed -= 1;
        }
        stats.tally.counters.pings_received += conn.pings;
        if cut_off {
            stats.tally.counters.disconnected += 1;
        }
        conn.deliveries.finish(stats);
        drop(conn.socket);
    }

    /// Waits at most `timeout` for a completion. The receives themselves run in here (the
    /// kernel runs their task work while this thread waits), so one system call per wakeup.
    /// `streaming`: completions came in just before; with deferred task work and the kernel's
    /// arrival times, wait (briefly) for a batch of them instead of waking for each. (With the
    /// load generator's own arrival times, the wait would add to every latency: not done.)
    fn wait(&mut self, timeout: Duration, streaming: bool) {
        let (want, timeout) = if self.deferred && self.msghdr.is_some() && streaming {
            (BATCH_WANT, timeout.min(BATCH_WAIT))
        } else {
            (1, timeout)
        };
        let ts = io_uring::types::Timespec::from(timeout);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        // ETIME (the timeout passed) and EINTR are normal ends of the wait.
        let _ = self.ring.submitter().submit_with_args(want, &args);
    }

    /// The run is over: close every connection (a close frame, then shutdown, which ends its
    /// multishot recv), account them, and wait (bounded) for the last completions.
    fn stop(&mut self, stats: &mut ThreadStats) {
        self.closed = true;
        // Cut off: the connections that ended before the stop. A close the server sends while
        // stopping (its answer to ours, or one in flight) does not make a connection cut off.
        let cut_off: Vec<bool> = self.conns.iter().map(|c| c.as_ref().is_some_and(|c| c.done)).collect();
        for conn in self.conns.iter_mut().flatten() {
            if !conn.done {
                let _ = conn.send(OpCode::Close, &1000u16.to_be_bytes());
            }
            let _ = conn.socket.shutdown(std::net::Shutdown::Both);
        }
        // Data still in flight is accounted; then each connection.
        let until = Instant::now() + STOP_DRAIN;
        let ts = io_uring::types::Timespec::new().nsec(10_000_000);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        while self.armed > 0 && Instant::now() < until {
            // Waits for a completion, 10 ms at most per turn.
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(stats);
        }
        self.leak = self.armed > 0;
        for (index, cut_off) in cut_off.into_iter().enumerate() {
            // Keep the socket of a still-armed connection open? It is shut down; the kernel holds
            // its own reference to the file while the request lives.
            self.finish_conn(index, stats, cut_off);
        }
    }
}

impl Drop for RingReceiver {
    fn drop(&mut self) {
        // With a receive still armed, the kernel may still select a buffer: the group stays
        // registered, and the buffer ring then leaks its memory rather than free it.
        if !self.leak {
            let _ = self.bufs.unregister(&self.ring.submitter());
        }
    }
}

/// Drives the thread's receive ring until the run stops, then closes its connections.
/// `stats` is the thread's: every frame of every adopted connection is accounted there.
pub async fn drive(
    ring: Rc<RefCell<RingReceiver>>,
    stats: Rc<RefCell<ThreadStats>>,
    mut phase: watch::Receiver<Phase>,
) {
    // A duplicate of the ring's descriptor, owned by the `AsyncFd`, is what the runtime polls:
    // it is readable when completions are posted.
    let Ok(fd) = duplicate(ring.borrow().ring.as_raw_fd()) else {
        return close_early(&ring, &stats);
    };
    // SAFETY: the `AsyncFd` owns `fd` (an `OwnedFd`), so the descriptor stays open and names the
    // same file description for the `AsyncFd`'s whole life.
    let registered = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
    let Ok(ready) = registered else {
        return close_early(&ring, &stats);
    };
    let mut ready = Some(ready);
    let deferred = ring.borrow().deferred;
    loop {
        // Copied out: the watch's read guard must not live across the `.await`s below (the
        // ticker's send would wait for it forever, on this very thread).
        let current = *phase.borrow_and_update();
        match current {
            Phase::Stopping => break,
            Phase::Running { .. } => {
                // Every client is open: wait on the ring itself, in slices, yielding to the
                // thread's other tasks (its ticker) between them. The runtime no longer polls
                // the ring (no epoll wakeup per batch of completions).
                ready = None;
                drive_slice(&mut ring.borrow_mut(), &mut stats.borrow_mut());
                tokio::task::yield_now().await;
                continue;
            }
            Phase::Connecting => {}
        }
        let Some(ready) = &ready else { break };
        tokio::select! {
            biased;
            changed = phase.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
            guard = ready.readable() => match guard {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => break,
            },
            // Deferred task work does not make the ring readable before it has run: while
            // clients connect, the receives run on a 1 ms tick.
            () = tokio::time::sleep(DEFERRED_TICK), if deferred => {}
        }
        ring.borrow_mut().reap(&mut stats.borrow_mut());
    }
    drop(ready);
    ring.borrow_mut().stop(&mut stats.borrow_mut());
}

/// How often a deferred-task-work ring is reaped while clients connect.
const DEFERRED_TICK: Duration = Duration::from_millis(1);

/// A ring stamped by the kernel, in a stream of arrivals, waits for this many completions...
const BATCH_WANT: usize = 32;
/// ...or this long, whichever comes first: one wakeup per batch rather than per segment, and
/// receives (and their ACKs) held back by at most this. Arrival times are the kernel's, so the
/// wait does not show in the latencies.
const BATCH_WAIT: Duration = Duration::from_micros(250);

/// How long the ring waits on its own before the thread's other tasks get a turn.
const SLICE: Duration = Duration::from_millis(2);

/// Reaps completions and waits for more, for one `SLICE`. Waiting in `io_uring_enter` rather
/// than in the runtime's epoll saves the system calls of every wakeup (epoll, its restart after
/// the task work's notification, the runtime's own ring flush); it blocks the thread's other
/// tasks for a slice at most, which only the ticker and the stop command notice.
fn drive_slice(ring: &mut RingReceiver, stats: &mut ThreadStats) {
    let end = Instant::now() + SLICE;
    // Completions of the last reap that found any, until a wait comes back empty.
    let mut last = 0;
    loop {
        let handled = ring.reap(stats);
        let now = Instant::now();
        if now >= end {
            return;
        }
        if handled == 0 {
            ring.wait(end - now, last > 0);
            last = 0;
        } else {
            last = handled;
        }
    }
}

/// The ring cannot be polled: connections already adopted are closed and later ones take the
/// tokio path.
fn close_early(ring: &RefCell<RingReceiver>, stats: &RefCell<ThreadStats>) {
    eprintln!("warning: the io_uring receive ring cannot be polled; reading with tokio-uring");
    ring.borrow_mut().stop(&mut stats.borrow_mut());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::stamp::{self, Stamp};
    use tickcast_protocol::frame::write_server_frame;

    fn conn() -> (Conn, std::net::TcpStream) {
        conn_speaking(crate::plan::Protocol::Ws)
    }

    fn conn_speaking(protocol: crate::plan::Protocol) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let conn = Conn {
            socket,
            partial: Vec::new(),
            reader: ClientReader::default(),
            deliveries: Deliveries::new(vec![0], false, None),
            session: Session::new(protocol),
            pings: 0,
            masks: MaskKeys::new(1),
            armed: false,
            done: false,
        };
        (conn, peer)
    }

    /// Frames cut at every possible place across buffers (and a fragmented message, a ping) are
    /// all delivered once, in order.
    #[test]
    fn frames_split_anywhere_across_buffers() {
        let mut stream = bytes::BytesMut::new();
        let mut payload = Vec::new();
        for seq in 1..=5 {
            stamp::write(&mut payload, Stamp { seq, t_ns: 10, src: 0 }, 128 + seq as usize * 40);
            write_server_frame(&mut stream, OpCode::Text, &payload);
        }
        write_server_frame(&mut stream, OpCode::Ping, b"hi");
        // seq 6, fragmented in two frames.
        stamp::write(&mut payload, Stamp { seq: 6, t_ns: 10, src: 0 }, 300);
        let mut first = bytes::BytesMut::new();
        write_server_frame(&mut first, OpCode::Text, &payload[..100]);
        first[0] &= 0x7f; // not FIN
        stream.extend_from_slice(&first);
        let mut second = bytes::BytesMut::new();
        write_server_frame(&mut second, OpCode::Continuation, &payload[100..]);
        stream.extend_from_slice(&second);
        for cut in [1, 2, 3, 7, 64, 133, 500] {
            let (mut conn, _peer) = conn();
            let mut stats = ThreadStats::default();
            for chunk in stream.chunks(cut) {
                conn.on_data(chunk, &mut stats, 20).unwrap();
            }
            assert!(conn.partial.is_empty());
            assert_eq!(conn.pings, 1);
            conn.deliveries.finish(&mut stats);
            assert_eq!(stats.tally.counters.messages_received, 6, "cut {cut}");
            assert_eq!(stats.tally.loss.delivered, 6, "cut {cut}");
            assert_eq!(stats.tally.seq_max_sum, 6);
            stats.fold();
            assert_eq!(stats.tally.hists["latency"].len(), 6);
        }
    }

    /// A header cut by the end of a buffer, the rest of the stream in the next one: the frame
    /// carried over takes only its own bytes, however short it is (a ping is 4 bytes, less
    /// than a longest header).
    #[test]
    fn a_short_frame_cut_in_its_header_takes_only_its_own_bytes() {
        let mut stream = bytes::BytesMut::new();
        write_server_frame(&mut stream, OpCode::Ping, b"hi");
        let mut payload = Vec::new();
        for seq in 1..=3 {
            write_server_frame(&mut stream, OpCode::Ping, b"");
            stamp::write(&mut payload, Stamp { seq, t_ns: 10, src: 0 }, 60);
            write_server_frame(&mut stream, OpCode::Text, &payload);
        }
        for cut in 1..stream.len() {
            let (mut conn, _peer) = conn();
            let mut stats = ThreadStats::default();
            conn.on_data(&stream[..cut], &mut stats, 20).unwrap();
            conn.on_data(&stream[cut..], &mut stats, 20).unwrap();
            assert!(conn.partial.is_empty(), "cut {cut}");
            assert_eq!(conn.pings, 4, "cut {cut}");
            conn.deliveries.finish(&mut stats);
            assert_eq!(stats.tally.loss.delivered, 3, "cut {cut}");
        }
    }

    /// Socket.IO frames through the ring, cut anywhere: deliveries unwrapped and measured, the
    /// server's ping (`2`) answered with a masked text frame `3` on the socket, a fragmented
    /// event reassembled; nothing malformed.
    #[test]
    fn socket_io_frames_through_the_ring() {
        use std::io::Read;
        let mut stream = bytes::BytesMut::new();
        let mut body = Vec::new();
        let event = |body: &[u8]| {
            let text = String::from_utf8(body.to_vec()).unwrap();
            format!("42{}", serde_json::json!(["msg", text]))
        };
        for seq in 1..=3 {
            stamp::write(&mut body, Stamp { seq, t_ns: 10, src: 0 }, 128);
            write_server_frame(&mut stream, OpCode::Text, event(&body).as_bytes());
        }
        write_server_frame(&mut stream, OpCode::Text, b"2");
        stamp::write(&mut body, Stamp { seq: 4, t_ns: 10, src: 0 }, 300);
        let frame = event(&body);
        let mut first = bytes::BytesMut::new();
        write_server_frame(&mut first, OpCode::Text, &frame.as_bytes()[..50]);
        first[0] &= 0x7f; // not FIN
        stream.extend_from_slice(&first);
        write_server_frame(&mut stream, OpCode::Continuation, &frame.as_bytes()[50..]);
        for cut in [1, 5, 64, 1000] {
            let (mut conn, mut peer) = conn_speaking(crate::plan::Protocol::SocketIo);
            let mut stats = ThreadStats::default();
            for chunk in stream.chunks(cut) {
                conn.on_data(chunk, &mut stats, 20).unwrap();
            }
            conn.deliveries.finish(&mut stats);
            assert_eq!(stats.tally.loss.delivered, 4, "cut {cut}");
            assert_eq!(
                (stats.tally.counters.control_messages, stats.tally.counters.malformed),
                (1, 0),
                "cut {cut}"
            );
            // The pong: FIN + text, masked, 1 byte of payload `3`.
            let mut pong = [0u8; 7];
            peer.read_exact(&mut pong).unwrap();
            assert_eq!(&pong[..2], &[0x81, 0x81]);
            assert_eq!(pong[6] ^ pong[2], b'3');
            stats.fold();
            assert_eq!(stats.tally.hists["latency"].len(), 4);
        }
    }

    /// Stopping sends every connection a close; a server that answers it at once (Action Cable
    /// does, within a millisecond) has not cut the connection off.
    #[test]
    fn a_close_answered_while_stopping_is_not_a_cut_off() {
        use std::io::{Read, Write};
        let mut ring = RingReceiver::new(true, true).expect("io_uring");
        let (conn, mut peer) = conn();
        ring.conns.push(Some(conn));
        ring.rearm.push(0);
        ring.submit();
        let answer = std::thread::spawn(move || {
            // The client's masked close: 2 header bytes, 4 of mask, the 2-byte code.
            let mut close = [0u8; 8];
            peer.read_exact(&mut close).unwrap();
            let mut out = bytes::BytesMut::new();
            write_server_frame(&mut out, OpCode::Close, &1000u16.to_be_bytes());
            let _ = peer.write_all(&out);
            peer
        });
        let mut stats = ThreadStats::default();
        // Let the answer arrive before the drain ends: stop's shutdown ends the recv at once.
        ring.conns[0].as_mut().unwrap().send(OpCode::Close, &1000u16.to_be_bytes()).unwrap();
        let _peer = answer.join().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ring.stop(&mut stats);
        assert_eq!(stats.tally.counters.disconnected, 0);
    }

    #[test]
    fn protocol_errors_are_reported() {
        let (mut conn, _peer) = conn();
        let mut stats = ThreadStats::default();
        // A masked frame from a server is a protocol error.
        assert!(conn.on_data(&[0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0], &mut stats, 0).is_err());
    }

    /// The ring builds and registers its buffers on this kernel, and drops cleanly.
    #[test]
    fn ring_sets_up_and_drops() {
        let ring = RingReceiver::new(true, true).expect("io_uring with a provided buffer ring");
        drop(ring);
    }

    /// Reaps (waiting a little each time) until `done` or a bounded number of turns.
    fn reap_until(ring: &mut RingReceiver, stats: &mut ThreadStats, done: impl Fn(&ThreadStats) -> bool) {
        for _ in 0..200 {
            ring.reap(stats);
            if done(stats) {
                return;
            }
            ring.wait(Duration::from_millis(10), false);
        }
    }

    /// With kernel arrival times, a message read late still gets the time it arrived: the
    /// delay shows in `read_delay`, not in its latency. The end of the stream (an empty
    /// `recvmsg`) cuts the connection off rather than re-arming it.
    #[test]
    fn kernel_arrival_keeps_the_readers_delay_out_of_latency() {
        use std::io::Write;
        let frame = |seq: u64| {
            let mut payload = Vec::new();
            stamp::write(&mut payload, Stamp { seq, t_ns: now_ns(), src: 0 }, 128);
            let mut frame = bytes::BytesMut::new();
            write_server_frame(&mut frame, OpCode::Text, &payload);
            frame
        };
        for kernel in [true, false] {
            let mut ring = RingReceiver::new(kernel, true).expect("io_uring");
            let (conn, mut peer) = conn();
            if kernel {
                enable_rx_timestamps(&conn.socket).unwrap();
            }
            ring.conns.push(Some(conn));
            ring.rearm.push(0);
            ring.submit();
            let mut stats = ThreadStats::default();
            let mut seq = 0;
            // The kernel switches receive timestamps on a moment after the first socket asks
            // (a deferred static key): until then data comes unstamped. Wait for a stamp.
            while kernel && stats.read_delay.is_empty() && seq < 200 {
                seq += 1;
                peer.write_all(&frame(seq)).unwrap();
                reap_until(&mut ring, &mut stats, |s| s.tally.counters.messages_received == seq);
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!kernel || !stats.read_delay.is_empty(), "the kernel never stamped a receive");
            // Receives before that are counted, not hidden.
            assert_eq!(stats.tally.counters.receives_unstamped, if kernel { seq - 1 } else { 0 });
            let before = stats.tally.counters.bytes_received;
            seq += 1;
            let last = frame(seq);
            peer.write_all(&last).unwrap();
            // The reader is 50 ms late.
            std::thread::sleep(Duration::from_millis(50));
            reap_until(&mut ring, &mut stats, |s| s.tally.counters.messages_received == seq);
            assert_eq!(stats.tally.counters.messages_received, seq, "kernel {kernel}");
            assert_eq!(stats.tally.counters.bytes_received - before, last.len() as u64, "payload bytes only");
            stats.fold();
            // The late message has the highest latency of all.
            let latency = stats.tally.hists["latency"].at(1.0);
            if kernel {
                assert!(latency < 25_000_000, "latency {latency} ns includes the reader's delay");
                assert!(stats.tally.hists["read_delay"].at(1.0) >= 45_000_000);
            } else {
                assert!(latency >= 45_000_000, "latency {latency} ns");
                assert!(!stats.tally.hists.contains_key("read_delay"));
            }
            drop(peer);
            reap_until(&mut ring, &mut stats, |s| s.tally.counters.disconnected == 1);
            assert_eq!(stats.tally.counters.disconnected, 1, "kernel {kernel}: end of stream is a cut-off");
            assert!(ring.conns[0].is_none());
        }
    }
}

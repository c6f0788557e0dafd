//! The few plain system calls the runtime makes outside the ring (setup only, never per
//! message): listeners, CPU affinity, signal masks, eventfds. (The descriptor limit and the
//! buffer ring's memory are in `tickcast-uring`, shared with the load generator.)

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Runs a libc call and turns `-1` into the thread's `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: each call site passes arguments that satisfy the named libc function's contract
        // (valid pointers to live, correctly sized objects); see the call sites.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(io::Error::last_os_error()) } else { Ok(res) }
    }};
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (unspecified) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    let ptr = std::ptr::from_ref(&value).cast::<libc::c_void>();
    syscall!(setsockopt(fd, level, name, ptr, std::mem::size_of::<libc::c_int>() as libc::socklen_t))?;
    Ok(())
}

/// The process as the standard `process_*` metrics describe it, from `/proc/self` (zeros for
/// what cannot be read).
pub fn process_sample() -> crate::metrics::Process {
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    let mut p = crate::metrics::Process::default();
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        p.resident_memory_bytes =
            statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * page;
    }
    // Fields after the command's closing parenthesis (which may itself hold spaces): utime and
    // stime are the 12th and 13th of them, starttime the 20th (`proc(5)`: fields 14, 15, 22).
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        p.cpu_seconds = (field(11) + field(12)) as f64 / ticks;
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok())
        });
        if let Some(boot) = boot {
            p.start_time_seconds = boot as f64 + field(19) as f64 / ticks;
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let soft = limits.lines().find(|l| l.starts_with("Max open files")).and_then(|l| {
            l.trim_start_matches("Max open files").split_whitespace().next().and_then(|v| v.parse().ok())
        });
        p.max_fds = soft.unwrap_or(0);
    }
    p
}

/// Hands the memory this thread freed back to the OS now. mimalloc purges freed pages lazily,
/// on the next allocation of the thread that freed them: a worker gone quiet after a burst (a
/// storm of connections, a flood of answers) would otherwise keep that memory indefinitely.
pub fn release_freed_memory() {
    // SAFETY: mi_collect walks only the calling thread's heap and takes no arguments to trust.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Fails when another process already listens on `addr`. Our listeners share their port with
/// SO_REUSEPORT (one per worker), which would also let a second server on the same port take
/// half the connections silently; a probe without SO_REUSEPORT finds such a listener first.
pub fn ensure_port_free(addr: &SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = syscall!(socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let _owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if addr.is_ipv6() {
        set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (storage, len) = sockaddr(addr);
    syscall!(bind(fd, std::ptr::from_ref(&storage).cast::<libc::sockaddr>(), len))?;
    Ok(())
}

/// A listening TCP socket with SO_REUSEPORT (one per worker and address) and TCP_NODELAY, which
/// accepted sockets inherit: tickcast coalesces frames itself, so Nagle would only add delay.
pub fn listener(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = syscall!(socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    if addr.is_ipv6() {
        set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (storage, len) = sockaddr(addr);
    syscall!(bind(fd, std::ptr::from_ref(&storage).cast::<libc::sockaddr>(), len))?;
    syscall!(listen(fd, backlog))?;
    Ok(owned)
}

/// The address a socket is bound to (resolves port 0).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(
        fd.as_raw_fd(),
        std::ptr::from_mut(&mut storage).cast::<libc::sockaddr>(),
        &mut len
    ))?;
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read(std::ptr::from_ref(&storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read(std::ptr::from_ref(&storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        f => Err(io::Error::other(format!("unexpected address family {f}"))),
    }
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if syscall!(sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)).is_err() {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET only reads the set, for indices below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set for cpu < CPU_SETSIZE, checked by the caller's list.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    syscall!(sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set))?;
    Ok(())
}

/// Blocks SIGINT and SIGTERM (and ignores SIGPIPE) in the calling thread; threads spawned
/// afterwards inherit the mask, so only the thread that calls [`wait_signal`] receives them.
pub fn block_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    syscall!(sigemptyset(&mut set))?;
    syscall!(sigaddset(&mut set, libc::SIGINT))?;
    syscall!(sigaddset(&mut set, libc::SIGTERM))?;
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE; a peer reset must not kill us.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    Ok(set)
}

/// Waits for one of the signals in `set` (blocked beforehand); returns its number.
pub fn wait_signal(set: &libc::sigset_t) -> io::Result<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `sig` a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

/// A non-blocking eventfd (counter 0): how publishers on other threads wake a worker's ring.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter (a saturated counter is already readable: not an error).
pub fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: the buffer is a live local u64, valid for reads of its 8 bytes (eventfd writes
    // must be exactly 8 bytes); `fd` is open for as long as the borrow.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), size_of::<u64>()) };
    if n == size_of::<u64>() as isize {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // EAGAIN: the counter is saturated, so the reader is certain to see it readable.
    if err.kind() == io::ErrorKind::WouldBlock { Ok(()) } else { Err(err) }
}

/// Reads and resets an eventfd's counter (0 when nothing was signalled).
pub fn eventfd_read(fd: &OwnedFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: the buffer is a live local u64, valid for writes of its 8 bytes (eventfd reads
    // are exactly 8 bytes); `fd` is open for as long as the borrow.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), size_of::<u64>()) };
    if n == size_of::<u64>() as isize {
        return Ok(value);
    }
    let err = io::Error::last_os_error();
    // EAGAIN: the counter is zero, nothing was signalled.
    if err.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(err) }
}

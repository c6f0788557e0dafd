//! Sockets: connecting from a chosen source address, duplicating a descriptor.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// Opens a TCP connection to `addr`, bound to `source` when given, and hands it to the
/// current tokio-uring runtime.
///
/// tokio-uring 0.5 cannot bind before connecting, so the connect itself goes through tokio's
/// `TcpSocket` (the tokio-uring runtime is a tokio runtime too); the connected socket is then
/// switched back to blocking mode, as io_uring expects, and owned by tokio-uring.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio_uring::net::TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    let stream = socket.connect(addr).await?;
    let std_stream = stream.into_std()?;
    std_stream.set_nonblocking(false)?;
    Ok(tokio_uring::net::TcpStream::from_std(std_stream))
}

/// A duplicate of `fd` (the caller keeps the original).
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller passes an open descriptor it keeps open for the duration of this call
    // (a live `WsClient`'s socket, the receive ring's own).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

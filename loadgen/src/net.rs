//! Sockets: connecting from a chosen source address, and the file-descriptor limit.

use std::net::{IpAddr, SocketAddr};

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

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

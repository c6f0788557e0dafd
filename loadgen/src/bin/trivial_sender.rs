//! `tickcast-trivial-sender`: the trivial sender against which the load generator measures its
//! own receive cost (issue 6). It accepts WebSocket upgrades on any path and then only sends:
//! every connection gets `--rate-per-conn` stamped text frames per second, `--batch` frames per
//! write (`--batch 1`: one frame per TCP segment, a server that does not coalesce; `--batch 8`:
//! eight frames per segment). It reads nothing after the handshake and stops a connection on the
//! first failed write or after `--max-duration`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use clap::Parser;
use tickcast_loadgen::measure::stamp::{self, Stamp};
use tickcast_loadgen::time::{now_ns, parse_duration};
use tickcast_protocol::frame::{OpCode, write_server_frame};
use tickcast_protocol::handshake::accept_key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEAD_MAX_BYTES: usize = 8192;

#[derive(Parser, Debug, Clone)]
#[command(about = "Trivial WebSocket sender for the load generator's own benchmark")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Frames per second per connection.
    #[arg(long, default_value_t = 200.0)]
    rate_per_conn: f64,
    /// Frames per write.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Payload bytes per frame.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Longest a connection is fed.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    max_duration: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rate_per_conn > 0.0 && args.batch > 0, "rate and batch must be positive");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let args = args.clone();
            tokio::spawn(async move {
                let _ = feed(stream, &args).await;
            });
        }
    })
}

async fn feed(mut stream: TcpStream, args: &Args) -> anyhow::Result<()> {
    upgrade(&mut stream).await?;
    let period = Duration::from_secs_f64(args.batch as f64 / args.rate_per_conn);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::Instant::now() + args.max_duration;
    let (mut payload, mut out) = (Vec::new(), BytesMut::new());
    let mut seq = 0;
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        out.clear();
        let t_ns = now_ns();
        for _ in 0..args.batch {
            seq += 1;
            stamp::write(&mut payload, Stamp { seq, t_ns, src: 0 }, args.size);
            write_server_frame(&mut out, OpCode::Text, &payload);
        }
        stream.write_all(&out).await?;
    }
    Ok(())
}

async fn upgrade(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let key = loop {
        anyhow::ensure!(buf.len() < HEAD_MAX_BYTES, "request head too large");
        if stream.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("closed during the handshake");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if req.parse(&buf)?.is_complete() {
            let key = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                .ok_or_else(|| anyhow::anyhow!("not a WebSocket upgrade"))?;
            break key.value.to_vec();
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}

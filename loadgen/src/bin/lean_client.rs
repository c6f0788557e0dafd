//! `tickcast-lean-client`: the reference the load generator's receive cost is compared with
//! (issue 6 quotes "a lean tokio client"). Plain tokio on epoll, one current-thread runtime, one
//! task per connection: upgrade, then read into a 4 KiB buffer, decode frame headers, parse each
//! message's stamp and record its latency in one HDR histogram. Nothing else: no loss
//! accounting, no protocol sessions, no per-channel anything. It prints the same
//! `received N (R/s)` and `measured phase:` lines as `tickcast-loadgen`, so
//! `loadgen/scripts/receive-bench.sh` measures both the same way.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tickcast_loadgen::measure::{procfs, stamp};
use tickcast_loadgen::time::{now_ns, parse_duration};
use tickcast_protocol::client::{ClientFrame, ClientRead, ClientReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
#[command(about = "A lean tokio WebSocket receiver: the reference for the load generator's receive cost")]
struct Args {
    /// `host:port` of a WebSocket server that sends stamped frames (`tickcast-trivial-sender`).
    #[arg(long, default_value = "127.0.0.1:9300")]
    connect: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Measured phase, after every client is connected and a one-second warm-up.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
}

#[derive(Default)]
struct Counts {
    messages: u64,
    bytes: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let started = Instant::now();
        let counts = Rc::new(RefCell::new(Counts::default()));
        let hist = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                for _ in 0..args.clients {
                    let stream = TcpStream::connect(&args.connect).await?;
                    stream.set_nodelay(true)?;
                    let (counts, hist) = (counts.clone(), hist.clone());
                    tokio::task::spawn_local(async move {
                        if let Err(e) = receive(stream, &counts, &hist).await {
                            eprintln!("connection ended: {e}");
                        }
                    });
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (m0, cpu0, t0) = (counts.borrow().messages, procfs::self_cpu_seconds(), Instant::now());
                hist.borrow_mut().reset();
                tokio::time::sleep(args.duration).await;
                let (m1, cpu1, wall) = (counts.borrow().messages, procfs::self_cpu_seconds(), t0.elapsed().as_secs_f64());
                let (messages, cpu) = (m1 - m0, cpu1 - cpu0);
                let h = hist.borrow();
                let total = procfs::self_cpu_seconds();
                println!("load generator CPU: {total:.2}s over {:.2}s wall", started.elapsed().as_secs_f64());
                println!("received {messages} ({:.0}/s)", messages as f64 / wall);
                println!(
                    "  measured phase: {cpu:.2}s = {:.0}% of one core; {:.2} CPU-seconds per million messages received",
                    100.0 * cpu / wall,
                    cpu / messages.max(1) as f64 * 1e6
                );
                println!(
                    "  latency p50 {:.2} ms, p99 {:.2} ms; {} bytes in all",
                    h.value_at_quantile(0.5) as f64 / 1e6,
                    h.value_at_quantile(0.99) as f64 / 1e6,
                    counts.borrow().bytes
                );
                anyhow::Ok(())
            })
            .await
    })
}

async fn receive(
    mut stream: TcpStream,
    counts: &RefCell<Counts>,
    hist: &RefCell<Histogram<u64>>,
) -> anyhow::Result<()> {
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await?;
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    // The 101 head.
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        anyhow::ensure!(n > 0, "closed during the handshake");
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            anyhow::ensure!(buf.starts_with(b"HTTP/1.1 101"), "upgrade refused");
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
            break;
        }
        anyhow::ensure!(filled < buf.len(), "response head too large");
    }
    let mut reader = ClientReader::default();
    loop {
        // Every complete frame in the buffer, then the rest moved to the front.
        let mut at = 0;
        let now = now_ns();
        while let ClientRead::Frame { frame, used } = reader.read(&buf[at..filled], 1 << 20)? {
            if let ClientFrame::Message { text: true, payload } = &frame {
                if let Some(s) = stamp::parse(reader.payload(&buf[at..filled], payload)) {
                    let _ = hist.borrow_mut().record(now.saturating_sub(s.t_ns).max(1_000));
                }
                counts.borrow_mut().messages += 1;
            }
            at += used;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        counts.borrow_mut().bytes += n as u64;
        filled += n;
    }
}

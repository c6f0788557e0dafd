//! `peer-tokio-tungstenite`: the CLI over `peer_tokio_tungstenite::serve` (see the library docs
//! for the routes).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "Idiomatic tokio-tungstenite echo + broadcast peer server")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Capacity of the broadcast channel (messages); a subscriber further behind skips ahead.
    #[arg(long, default_value_t = 1024)]
    broadcast_capacity: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        peer_tokio_tungstenite::serve(listener, args.broadcast_capacity).await
    })
}

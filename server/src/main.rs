//! `tickcast`: parse the configuration, set up logging, run the server. Nothing else here.

use std::process::ExitCode;

use clap::Parser;
use tickcast_server::config::{Config, LogFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::parse().validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tickcast: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "tickcast: invalid --log filter {:?}: {e} (e.g. info, warn, tickcast=debug)",
                config.log
            );
            return ExitCode::from(2);
        }
    };
    let logs =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match config.log_format {
        LogFormat::Json => logs.json().with_thread_names(true).init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    match tickcast_server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `tickcast-loadgen` as a library: the binary is a thin CLI over `run`, and tests drive the
//! same code against in-process servers.
//!
//! A run is data (`plan::Plan`: clients + workload schedule + stop condition), executed by
//! `engine::coordinator::run` over worker threads or processes, each running the scenario
//! picked once (`scenarios::DRIVER`); summarised and judged by `result`, rendered by `report`.
//! Layers (docs/loadgen.md, "Layers"; checked by `tests/layering.rs`): `plan`, `phase`, `time` <
//! `measure` < `wire` < `io` < `result` < `report`, `cli` < `engine` < `scenarios`.

pub mod cli;
pub mod engine;
pub mod io;
pub mod measure;
pub mod phase;
pub mod plan;
pub mod report;
pub mod result;
pub mod scenarios;
pub mod time;
pub mod wire;

pub use scenarios::run::{run, summarize, write_outputs};

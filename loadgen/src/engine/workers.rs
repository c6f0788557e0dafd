//! Worker processes. One process may hold only so many open files (20,000 on the reference
//! machine, whatever root does), so the coordinator runs each slice of the clients in a child
//! process of this same binary (`tickcast-loadgen worker`, hidden). The child reads its plan and
//! slice as the first JSON line on stdin, then commands (`start`, `stop`) one per line; it writes
//! `WorkerEvent`s as JSON lines on stdout. A closed stdin (the coordinator died) stops it.
//!
//! `--workers 1` runs the one slice in a thread of the coordinator with exactly the same
//! events, so both paths share the coordinator's logic.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::engine::{Control, Driver, WorkerEvent, run_worker};
use crate::plan::{Plan, Slice};

/// Coordinator -> worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Start {
        t0_ns: u64,
    },
    /// The measured phase is over (the drain begins): only marks the CPU time.
    Measured,
    Stop,
}

/// The first line a child reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInit {
    pub plan: Plan,
    pub slice: Slice,
}

/// A running worker, in a thread or a child process.
pub trait WorkerHandle: Send {
    fn command(&mut self, cmd: Command);
    /// Waits for the worker to exit (after its `Done` event).
    fn wait(&mut self);
}

fn apply(control: &Control, cmd: Command) {
    match cmd {
        Command::Start { t0_ns } => control.start(t0_ns),
        Command::Measured => {}
        Command::Stop => control.stop(),
    }
}

struct LocalWorker {
    control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerHandle for LocalWorker {
    fn command(&mut self, cmd: Command) {
        apply(&self.control, cmd);
    }

    fn wait(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `slice` in a thread of this process.
pub fn spawn_local(
    plan: &Plan,
    slice: Slice,
    events: Sender<WorkerEvent>,
    driver: &'static dyn Driver,
) -> Box<dyn WorkerHandle> {
    let control = Arc::new(Control::default());
    let plan = plan.clone();
    let thread_control = control.clone();
    let thread = std::thread::spawn(move || {
        let emit = |e: WorkerEvent| {
            let _ = events.send(e);
        };
        let result = run_worker(&plan, slice, thread_control, &emit, driver);
        emit(WorkerEvent::Done(Box::new(result)));
    });
    Box::new(LocalWorker { control, thread: Some(thread) })
}

struct ChildWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WorkerHandle for ChildWorker {
    fn command(&mut self, cmd: Command) {
        if let Some(stdin) = self.stdin.as_mut() {
            let line = serde_json::to_string(&cmd).expect("commands serialise");
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    fn wait(&mut self) {
        self.stdin.take();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = self.child.wait();
    }
}

/// Runs `slice` in a child process of this binary.
pub fn spawn_child(
    plan: &Plan,
    slice: Slice,
    events: Sender<WorkerEvent>,
    exe: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn WorkerHandle>> {
    let exe = match exe {
        Some(exe) => exe.to_path_buf(),
        None => std::env::current_exe()?,
    };
    let mut child = Process::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let init = WorkerInit { plan: plan.clone(), slice };
    writeln!(stdin, "{}", serde_json::to_string(&init)?)?;
    stdin.flush()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let worker = slice.worker;
    let reader = std::thread::spawn(move || {
        let mut finished = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<WorkerEvent>(&line) {
                Ok(event) => {
                    finished |= matches!(event, WorkerEvent::Done(_) | WorkerEvent::Failed { .. });
                    let _ = events.send(event);
                }
                Err(e) => eprintln!("worker {worker}: unreadable event ({e}): {line:.200}"),
            }
        }
        if !finished {
            let _ = events
                .send(WorkerEvent::Failed { worker, error: "worker process exited without a result".into() });
        }
    });
    Ok(Box::new(ChildWorker { child, stdin: Some(stdin), reader: Some(reader) }))
}

/// A child's CPU seconds when each command arrived.
#[derive(Debug, Default, Clone, Copy)]
struct CpuMarks {
    start: Option<f64>,
    measured: Option<f64>,
    stop: Option<f64>,
}

/// The child side: `tickcast-loadgen worker`.
pub fn worker_main(driver: &'static dyn Driver) -> anyhow::Result<()> {
    tickcast_uring::raise_nofile_limit();
    let mut lines = BufReader::new(std::io::stdin()).lines();
    let first = lines.next().ok_or_else(|| anyhow::anyhow!("no plan on stdin"))??;
    let init: WorkerInit = serde_json::from_str(&first)?;
    let control = Arc::new(Control::default());
    let command_control = control.clone();
    // CPU seconds of this process at the start, measured and stop commands.
    let run_cpu = Arc::new(Mutex::new(CpuMarks::default()));
    let command_run_cpu = run_cpu.clone();
    std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { break };
            if let Ok(cmd) = serde_json::from_str::<Command>(&line) {
                let mut marks = command_run_cpu.lock().expect("poisoned");
                let now = Some(crate::measure::procfs::self_cpu_seconds());
                match cmd {
                    Command::Start { .. } => marks.start = now,
                    Command::Measured => marks.measured = marks.measured.or(now),
                    Command::Stop => marks.stop = marks.stop.or(now),
                }
                drop(marks);
                apply(&command_control, cmd);
            }
        }
        // The coordinator is gone or done with us.
        command_control.stop();
    });
    let stdout = Mutex::new(std::io::stdout());
    let emit = |event: WorkerEvent| {
        let line = serde_json::to_string(&event).expect("events serialise");
        let mut out = stdout.lock().expect("poisoned");
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let mut result = run_worker(&init.plan, init.slice, control, &emit, driver);
    result.cpu_seconds = crate::measure::procfs::self_cpu_seconds();
    let marks = *run_cpu.lock().expect("poisoned");
    if let (Some(start), Some(stop)) = (marks.start, marks.stop) {
        // Stopped before the measured phase ended (or never told): no drain.
        let measured = marks.measured.unwrap_or(stop).min(stop);
        result.run_cpu_seconds = measured - start;
        result.drain_cpu_seconds = stop - measured;
    }
    emit(WorkerEvent::Done(Box::new(result)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes over a worker process's pipes, one JSON line each way.
    #[test]
    fn commands_and_events_round_trip_as_json_lines() {
        for cmd in [Command::Start { t0_ns: 5 }, Command::Measured, Command::Stop] {
            let line = serde_json::to_string(&cmd).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&line).unwrap(), cmd);
        }
        assert_eq!(serde_json::to_string(&Command::Measured).unwrap(), r#"{"cmd":"measured"}"#);
        let ended = serde_json::to_string(&WorkerEvent::PublishEnded { worker: 0, end_ns: 42 }).unwrap();
        let back = serde_json::from_str::<WorkerEvent>(&ended).unwrap();
        assert!(matches!(back, WorkerEvent::PublishEnded { worker: 0, end_ns: 42 }), "{ended}");
        let settled = serde_json::to_string(&WorkerEvent::Settled { worker: 1 }).unwrap();
        assert!(matches!(serde_json::from_str(&settled).unwrap(), WorkerEvent::Settled { worker: 1 }));
    }
}

//! Graceful shutdown as a small state machine over the shared flag and a deadline (time passed
//! in): the first signal begins it (accepts cancelled, close 1001 to every client), the worker
//! then waits for its connections to finish, bounded by `--shutdown-timeout`; a second signal
//! exits at once.

use std::time::{Duration, Instant};

use crate::{SHUTDOWN_GRACEFUL, SHUTDOWN_NOW};

/// What the worker does this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Serving as usual.
    Run,
    /// Shutdown was just requested: stop accepting, start closing every connection.
    Begin,
    /// Shutting down: exit once no connection is left.
    Wait,
    /// The shutdown timeout passed: exit, dropping what is left.
    TimedOut,
    /// Exit now (a second signal, or a worker failed).
    Exit,
}

#[derive(Debug, Default)]
pub struct Shutdown {
    /// Set once shutdown began: when the worker stops waiting for clients.
    deadline: Option<Instant>,
}

impl Shutdown {
    pub fn started(&self) -> bool {
        self.deadline.is_some()
    }

    /// The step for the shared shutdown `flag`; `now` is read only while shutting down (the
    /// loop calls this every turn).
    pub fn step(&mut self, flag: u8, now: impl FnOnce() -> Instant, timeout: Duration) -> Step {
        if flag >= SHUTDOWN_NOW {
            return Step::Exit;
        }
        if flag < SHUTDOWN_GRACEFUL {
            return Step::Run;
        }
        let now = now();
        match self.deadline {
            None => {
                self.deadline = Some(now + timeout);
                Step::Begin
            }
            Some(deadline) if now >= deadline => Step::TimedOut,
            Some(_) => Step::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SHUTDOWN_RUNNING;

    #[test]
    fn begins_once_waits_then_times_out() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        let mut s = Shutdown::default();
        assert_eq!(s.step(SHUTDOWN_RUNNING, || panic!("the clock is read every turn"), timeout), Step::Run);
        assert!(!s.started());
        assert_eq!(s.step(SHUTDOWN_GRACEFUL, || t0, timeout), Step::Begin);
        assert!(s.started());
        assert_eq!(s.step(SHUTDOWN_GRACEFUL, || t0 + Duration::from_secs(1), timeout), Step::Wait);
        assert_eq!(s.step(SHUTDOWN_GRACEFUL, || t0 + Duration::from_millis(4999), timeout), Step::Wait);
        assert_eq!(s.step(SHUTDOWN_GRACEFUL, || t0 + timeout, timeout), Step::TimedOut);
    }

    #[test]
    fn a_second_signal_exits_at_once() {
        let t0 = Instant::now();
        let mut s = Shutdown::default();
        assert_eq!(s.step(SHUTDOWN_NOW, || t0, Duration::from_secs(5)), Step::Exit);
        assert_eq!(s.step(SHUTDOWN_GRACEFUL, || t0, Duration::from_secs(5)), Step::Begin);
        assert_eq!(s.step(SHUTDOWN_NOW, || t0, Duration::from_secs(5)), Step::Exit);
    }
}

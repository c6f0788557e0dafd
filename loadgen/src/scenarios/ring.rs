//! The thread's receive ring (`rate --transport ws --ws-receiver ring`): made when the thread
//! starts, kept in the thread's `Ctx::thread_state`, driven by a task of its own
//! (`io::wsring::drive`); each subscriber hands its connection over once open.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::{Ctx, Phase};
use crate::io::wsring::{self, RingReceiver};
use crate::plan::{Arrival, Scenario, Schedule, Transport, WsReceiver};

/// Sets up the thread's ring when the plan reads WebSocket deliveries through one; returns the
/// task that drives it.
pub fn start_thread(ctx: &Rc<Ctx>, phase: &watch::Receiver<Phase>) -> Option<JoinHandle<()>> {
    let w = &ctx.plan.workload;
    let wanted = ctx.plan.scenario == Scenario::Rate
        && w.transport == Transport::Ws
        && w.ws_receiver == WsReceiver::Ring;
    if !wanted {
        return None;
    }
    let kernel_arrival = w.arrival == Arrival::Kernel;
    let batched = !matches!(w.schedule, Schedule::Windowed { .. });
    match RingReceiver::new(kernel_arrival, batched) {
        Ok(ring) => {
            let ring = Rc::new(RefCell::new(ring));
            *ctx.thread_state.borrow_mut() = Some(ring.clone());
            Some(tokio_uring::spawn(wsring::drive(ring, ctx.stats.clone(), phase.clone())))
        }
        Err(e) => {
            eprintln!("warning: no io_uring receive ring ({e}); reading with tokio-uring");
            None
        }
    }
}

/// The thread's ring, if it has one.
pub fn of(ctx: &Ctx) -> Option<Rc<RefCell<RingReceiver>>> {
    ctx.thread_state.borrow().clone()?.downcast::<RefCell<RingReceiver>>().ok()
}

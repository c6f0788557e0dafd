//! A hashed timer wheel driven by the worker's loop: one clock read per turn, no syscall and no
//! allocation per timer in the steady state (slot vectors keep their capacity).
//!
//! Entries are hints: each connection keeps its one current deadline, and a fired entry whose
//! deadline no longer matches the connection's is ignored. So moving a deadline is an insert,
//! never a search-and-remove, and a connection whose activity pushes its idle deadline out does
//! nothing until the old entry fires (then it re-arms lazily).

/// Timer entry: which connection (slot + generation) and the tick it is due at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub slot: u32,
    pub generation: u32,
    pub due_tick: u64,
}

pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// The last tick that was processed: every entry due at or before it has fired.
    current_tick: u64,
}

impl TimerWheel {
    /// `slot_count` must be a power of two; the wheel spans `slot_count` ticks per revolution
    /// (entries further out stay in their slot until a revolution reaches their tick).
    pub fn new(slot_count: usize, start_tick: u64) -> Self {
        assert!(slot_count.is_power_of_two(), "timer wheel size must be a power of two");
        Self { slots: (0..slot_count).map(|_| Vec::new()).collect(), current_tick: start_tick }
    }

    pub fn current_tick(&self) -> u64 {
        self.current_tick
    }

    /// Schedules an entry. A due tick in the past fires on the next advance.
    pub fn insert(&mut self, slot: u32, generation: u32, due_tick: u64) {
        let due_tick = due_tick.max(self.current_tick + 1);
        let index = (due_tick as usize) & (self.slots.len() - 1);
        self.slots[index].push(Entry { slot, generation, due_tick });
    }

    /// Moves time forward to `now_tick`, appending every entry now due to `fired`.
    /// Bounded: at most one revolution of slots is visited per call.
    pub fn advance(&mut self, now_tick: u64, fired: &mut Vec<Entry>) {
        if now_tick <= self.current_tick {
            return;
        }
        let mask = self.slots.len() - 1;
        let steps = (now_tick - self.current_tick).min(self.slots.len() as u64);
        let first = now_tick + 1 - steps;
        for tick in first..=now_tick {
            let slot = &mut self.slots[(tick as usize) & mask];
            slot.retain(|e| {
                if e.due_tick <= now_tick {
                    fired.push(*e);
                    false
                } else {
                    true
                }
            });
        }
        self.current_tick = now_tick;
    }

    /// Entries held, stale ones included.
    pub fn entry_count(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_due_tick_not_before() {
        let mut w = TimerWheel::new(8, 0);
        w.insert(1, 0, 3);
        let mut fired = Vec::new();
        w.advance(2, &mut fired);
        assert!(fired.is_empty());
        w.advance(3, &mut fired);
        assert_eq!(fired, vec![Entry { slot: 1, generation: 0, due_tick: 3 }]);
        assert_eq!(w.entry_count(), 0);
    }

    #[test]
    fn beyond_one_revolution() {
        let mut w = TimerWheel::new(8, 0);
        w.insert(7, 1, 21);
        let mut fired = Vec::new();
        for t in 1..21 {
            w.advance(t, &mut fired);
            assert!(fired.is_empty(), "fired early at {t}");
        }
        w.advance(21, &mut fired);
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn large_jump_fires_everything_due() {
        let mut w = TimerWheel::new(8, 0);
        for i in 0..20 {
            w.insert(i, 0, 1 + u64::from(i));
        }
        let mut fired = Vec::new();
        w.advance(100, &mut fired);
        assert_eq!(fired.len(), 20);
    }

    #[test]
    fn past_due_fires_next_tick() {
        let mut w = TimerWheel::new(8, 10);
        w.insert(1, 0, 2);
        let mut fired = Vec::new();
        w.advance(11, &mut fired);
        assert_eq!(fired.len(), 1);
    }
}

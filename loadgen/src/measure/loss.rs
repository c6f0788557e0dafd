//! Per-stream loss accounting by sequence number.
//!
//! A subscriber sees one stream per publisher; each stream numbers its messages 1, 2, 3, ...
//! `SeqTracker` classifies every arrival as in order, a gap (later than the next expected), a
//! late arrival that fills an earlier gap (reordered), or a duplicate. It remembers the last
//! `WINDOW` sequence numbers exactly; anything older than that counts as a duplicate when it
//! arrives again (bounded memory per client, whatever the run length). A number that leaves the
//! window without having arrived is missed for good: the tracker keeps those as ranges (at most
//! `MISSED_RANGES_MAX`), so that after the run the ones the server never accepted can be told
//! apart from loss (`accepted.rs`).

use serde::{Deserialize, Serialize};

/// How many recent sequence numbers are remembered exactly.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;
/// Most ranges of missed sequence numbers one stream keeps; beyond them missed numbers are only
/// counted (`SeqTracker::untracked`), which bounds the memory of a stream that loses a lot.
pub const MISSED_RANGES_MAX: usize = 256;

/// Totals over streams; `merge`able across clients, threads and processes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossTotals {
    /// Distinct messages received.
    pub delivered: u64,
    /// Arrivals of a sequence number already received.
    pub duplicates: u64,
    /// Arrivals that filled an earlier gap (arrived after a later message).
    pub reordered: u64,
    /// Times the sequence jumped forward (one per hole, whatever its size).
    pub gaps: u64,
    /// Messages never received below the highest sequence seen.
    pub missing: u64,
    /// Messages published after the last one received (only known once the publisher's count
    /// is known; see `finish`).
    pub tail_missing: u64,
    /// Deliveries of publishes the server refused or never answered: in neither `delivered`
    /// nor loss, which count accepted publishes only (settled by the coordinator).
    #[serde(default)]
    pub delivered_unaccepted: u64,
}

impl LossTotals {
    pub fn merge(&mut self, other: &LossTotals) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.gaps += other.gaps;
        self.missing += other.missing;
        self.tail_missing += other.tail_missing;
        self.delivered_unaccepted += other.delivered_unaccepted;
    }

    /// All messages not delivered.
    pub fn lost(&self) -> u64 {
        self.missing + self.tail_missing
    }
}

/// Tracks one stream.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Highest sequence number seen (0: none yet).
    max: u64,
    /// Bit `i` of the window is set when `max - i` was received.
    window: [u64; WORDS],
    totals: LossTotals,
    /// Numbers that left the window without arriving, as closed ranges in increasing order.
    missed: Vec<(u64, u64)>,
    /// How many numbers `missed` holds, plus `untracked`.
    retired: u64,
    /// Missed numbers beyond `MISSED_RANGES_MAX` ranges: counted, not kept.
    untracked: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

/// How one arrival was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    AfterGap { skipped: u64 },
    Reordered,
    Duplicate,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self {
            max: 0,
            window: [0; WORDS],
            totals: LossTotals::default(),
            missed: Vec::new(),
            retired: 0,
            untracked: 0,
        }
    }

    /// Records the arrival of `seq` (>= 1).
    pub fn record(&mut self, seq: u64) -> Arrival {
        debug_assert!(seq >= 1, "sequence numbers start at 1");
        if seq == self.max + 1 {
            // The common case, once per delivery: the slot of `seq - WINDOW` becomes `seq`'s.
            let (word, bit) = Self::slot(seq);
            if self.window[word] & bit == 0 && seq > WINDOW {
                self.retire(seq - WINDOW, seq - WINDOW);
            }
            self.window[word] |= bit;
            self.max = seq;
            self.totals.delivered += 1;
            return Arrival::InOrder;
        }
        if seq > self.max {
            let skipped = seq - self.max - 1;
            self.shift(seq - self.max);
            self.max = seq;
            self.set(0);
            self.totals.delivered += 1;
            if skipped == 0 {
                return Arrival::InOrder;
            }
            self.totals.gaps += 1;
            self.totals.missing += skipped;
            return Arrival::AfterGap { skipped };
        }
        let age = self.max - seq;
        if age >= WINDOW || self.get(age) {
            self.totals.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set(age);
        self.totals.delivered += 1;
        self.totals.reordered += 1;
        self.totals.missing -= 1;
        Arrival::Reordered
    }

    /// Highest sequence number seen.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Calls `f(from, to)` for every closed range of numbers below `max` that did not arrive (or
    /// arrived too late to count), in increasing order; returns how many more were missed but
    /// not kept (`MISSED_RANGES_MAX`). Once, at the end: it scans the window.
    pub fn missed(&self, mut f: impl FnMut(u64, u64)) -> u64 {
        // Adjacent ranges joined: a retired range may continue in the window.
        let mut pending: Option<(u64, u64)> = None;
        let mut push = |from: u64, to: u64| {
            if let Some((_, end)) = &mut pending
                && *end + 1 == from
            {
                *end = to;
            } else if let Some((a, b)) = pending.replace((from, to)) {
                f(a, b);
            }
        };
        for &(from, to) in &self.missed {
            push(from, to);
        }
        // Holes still in the window (none when every missed number was retired already).
        if self.totals.missing > self.retired {
            for seq in self.max.saturating_sub(WINDOW - 1).max(1)..=self.max {
                if !self.get(self.max - seq) {
                    push(seq, seq);
                }
            }
        }
        if let Some((a, b)) = pending {
            f(a, b);
        }
        self.untracked
    }

    /// Final totals given how many messages the stream published in all.
    pub fn finish(&self, published: u64) -> LossTotals {
        let mut totals = self.totals;
        totals.tail_missing = published.saturating_sub(self.max);
        totals
    }

    /// The bit of `seq` in the ring: the window holds the last `WINDOW` sequence numbers, each at
    /// `seq mod WINDOW`, so advancing by one clears one bit instead of shifting every word.
    fn slot(seq: u64) -> (usize, u64) {
        let at = seq % WINDOW;
        ((at / 64) as usize, 1 << (at % 64))
    }

    fn get(&self, age: u64) -> bool {
        let (word, bit) = Self::slot(self.max - age);
        self.window[word] & bit != 0
    }

    fn set(&mut self, age: u64) {
        let (word, bit) = Self::slot(self.max - age);
        self.window[word] |= bit;
    }

    /// Makes room for `max + by`: forgets the bits of the `by` sequence numbers that fall out of
    /// the window (their slots are the new numbers' slots), keeping those that never arrived.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            // Everything in the window leaves it, then the numbers skipped beyond it.
            for seq in self.max.saturating_sub(WINDOW - 1).max(1)..=self.max {
                if !self.get(self.max - seq) {
                    self.retire(seq, seq);
                }
            }
            let skipped_out = (self.max + by).saturating_sub(WINDOW);
            if skipped_out > self.max {
                self.retire(self.max + 1, skipped_out);
            }
            self.window = [0; WORDS];
            return;
        }
        for seq in self.max + 1..=self.max + by {
            let (word, bit) = Self::slot(seq);
            // The slot's previous number, `seq - WINDOW`, leaves the window now.
            if self.window[word] & bit == 0 && seq > WINDOW {
                self.retire(seq - WINDOW, seq - WINDOW);
            }
            self.window[word] &= !bit;
        }
    }

    /// `from..=to` left the window without arriving: missed for good.
    #[cold]
    #[inline(never)]
    fn retire(&mut self, from: u64, to: u64) {
        self.retired += to - from + 1;
        let kept = self.missed.len();
        match self.missed.last_mut() {
            Some((_, end)) if *end + 1 == from => *end = to,
            _ if kept < MISSED_RANGES_MAX => self.missed.push((from, to)),
            _ => self.untracked += to - from + 1,
        }
    }

    /// Missed numbers beyond the ranges kept.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_loss() {
        let mut t = SeqTracker::new();
        for seq in 1..=5000 {
            assert_eq!(t.record(seq), Arrival::InOrder);
        }
        let totals = t.finish(5000);
        assert_eq!(totals.delivered, 5000);
        assert_eq!(totals.lost(), 0);
        assert_eq!(totals.duplicates + totals.reordered + totals.gaps, 0);
    }

    #[test]
    fn gaps_duplicates_reorders_and_tail() {
        let mut t = SeqTracker::new();
        assert_eq!(t.record(1), Arrival::InOrder);
        assert_eq!(t.record(4), Arrival::AfterGap { skipped: 2 });
        assert_eq!(t.record(3), Arrival::Reordered);
        assert_eq!(t.record(3), Arrival::Duplicate);
        assert_eq!(t.record(4), Arrival::Duplicate);
        assert_eq!(t.record(5), Arrival::InOrder);
        let totals = t.finish(8);
        assert_eq!(totals.delivered, 4);
        assert_eq!(totals.gaps, 1);
        assert_eq!(totals.missing, 1); // seq 2
        assert_eq!(totals.tail_missing, 3); // 6, 7, 8
        assert_eq!(totals.duplicates, 2);
        assert_eq!(totals.reordered, 1);
        assert_eq!(totals.lost(), 4);
        assert_eq!(totals.delivered + totals.lost(), 8);
    }

    #[test]
    fn window_shifts_across_words() {
        let mut t = SeqTracker::new();
        t.record(1);
        t.record(100); // skips 2..=99
        for seq in 2..100 {
            assert_eq!(t.record(seq), Arrival::Reordered, "seq {seq}");
        }
        assert_eq!(t.record(1), Arrival::Duplicate);
        t.record(100 + WINDOW + 5);
        assert_eq!(t.record(100), Arrival::Duplicate); // older than the window
        let totals = t.finish(100 + WINDOW + 5);
        assert_eq!(totals.delivered, 101);
        assert_eq!(totals.missing, WINDOW + 4);
        assert_eq!(totals.delivered + totals.lost(), 100 + WINDOW + 5);
    }

    #[test]
    fn matches_a_reference_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let mut t = SeqTracker::new();
            let mut seen = std::collections::HashSet::new();
            let mut dups = 0;
            let n = 300;
            for _ in 0..600 {
                let seq = rng.random_range(1..=n);
                if !seen.insert(seq) {
                    dups += 1;
                }
                t.record(seq);
            }
            let totals = t.finish(n);
            assert_eq!(totals.delivered, seen.len() as u64);
            assert_eq!(totals.duplicates, dups);
            assert_eq!(totals.delivered + totals.lost(), n);
        }
    }

    /// Every number up to `max` that did not count as delivered is reported missed exactly once,
    /// in increasing ranges, whether it left the window long ago, is still in it, or was skipped
    /// by a jump beyond it; past `MISSED_RANGES_MAX` ranges the rest is counted instead.
    #[test]
    fn missed_numbers_match_a_set_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (mut capped, mut exact) = (0, 0);
        for trial in 0..40 {
            let mut t = SeqTracker::new();
            let mut delivered = std::collections::BTreeSet::new();
            let mut max = 0u64;
            for _ in 0..200 + trial * 150 {
                let seq = match rng.random_range(0..40) {
                    0 => max + rng.random_range(2..3 * WINDOW),
                    1 | 2 => max + rng.random_range(2..5),
                    3..=6 => max.saturating_sub(rng.random_range(0..WINDOW + 50)).max(1),
                    _ => max + 1,
                };
                if t.record(seq) != Arrival::Duplicate {
                    delivered.insert(seq);
                }
                max = max.max(seq);
            }
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            let untracked = t.missed(|a, b| ranges.push((a, b)));
            for pair in ranges.windows(2) {
                assert!(pair[0].0 <= pair[0].1 && pair[0].1 + 1 < pair[1].0, "{pair:?}");
            }
            let expected: Vec<u64> = (1..=max).filter(|s| !delivered.contains(s)).collect();
            let got: Vec<u64> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
            assert_eq!(expected.len() as u64, t.finish(max).missing, "trial {trial}");
            assert_eq!(got.len() as u64 + untracked, expected.len() as u64, "trial {trial}");
            if untracked == 0 {
                exact += 1;
                assert_eq!(got, expected, "trial {trial}");
            } else {
                capped += 1;
                assert!(got.iter().all(|s| expected.binary_search(s).is_ok()), "trial {trial}");
            }
        }
        assert!(exact > 0 && capped > 0, "{exact} exact, {capped} capped");
    }

    #[test]
    fn a_stream_keeps_at_most_so_many_missed_ranges() {
        let mut t = SeqTracker::new();
        let n = 4 * MISSED_RANGES_MAX as u64 + 2 * WINDOW;
        for seq in (1..=n).step_by(2) {
            t.record(seq);
        }
        assert!(t.missed.len() <= MISSED_RANGES_MAX);
        let mut kept = 0;
        let untracked = t.missed(|a, b| kept += b - a + 1);
        assert_eq!(kept + untracked, t.max() / 2); // the even numbers below the last odd one
        assert_eq!(untracked, t.untracked());
    }

    /// The window as a plain set of the last `WINDOW` numbers: the ring must classify every
    /// arrival the same way, with jumps within and beyond the window.
    #[test]
    fn the_ring_window_matches_a_set_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20 {
            let mut t = SeqTracker::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut max = 0u64;
            for _ in 0..5000 {
                let seq = match rng.random_range(0..10) {
                    0 => max + rng.random_range(1..3 * WINDOW),
                    1..=3 => max.saturating_sub(rng.random_range(0..WINDOW + 50)).max(1),
                    _ => max + 1,
                };
                let expected = if seq > max {
                    if seq == max + 1 {
                        Arrival::InOrder
                    } else {
                        Arrival::AfterGap { skipped: seq - max - 1 }
                    }
                } else if max - seq >= WINDOW || seen.contains(&seq) {
                    Arrival::Duplicate
                } else {
                    Arrival::Reordered
                };
                assert_eq!(t.record(seq), expected, "seq {seq} max {max}");
                seen.insert(seq);
                max = max.max(seq);
            }
        }
    }
}

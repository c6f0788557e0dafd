//! Loss over the publishes the server accepted.
//!
//! The publisher stamps message `k` with its channel's next sequence number before it knows the
//! answer. A publish the server refused (a non-2xx answer, a WebSocket `error`) or never
//! answered leaves a hole (or a tail) at that (channel, seq) in every subscription, and that is
//! not loss: the server never took the message. So:
//!
//! * the publisher records the indices `k` of refused and unanswered publishes (`Ranges`);
//! * every subscription reports, once when it ends, which sequence numbers it missed (its
//!   tracker's holes, and its tail above the highest number received), summed per channel in
//!   `Missed` (nothing is done per message);
//! * the coordinator, which alone knows both, takes the unaccepted (channel, seq)s out of the
//!   expected deliveries and out of the holes and tails (`settle`). An unaccepted publish that
//!   was delivered anyway (an unanswered one the server did take) is counted apart, in neither
//!   `delivered` nor loss.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::measure::channels::published_on;
use crate::measure::loss::SeqTracker;

/// Closed ranges of numbers (message indices), increasing and neither overlapping nor adjacent.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ranges(pub Vec<[u64; 2]>);

impl Ranges {
    /// Adds `n`; cheapest in increasing order (answers mostly come in send order).
    pub fn insert(&mut self, n: u64) {
        let v = &mut self.0;
        match v.last_mut() {
            None => return v.push([n, n]),
            Some(last) if n == last[1] + 1 => return last[1] = n,
            Some(last) if n > last[1] => return v.push([n, n]),
            Some(_) => {}
        }
        // Out of order: the first range that ends at or after `n - 1`.
        let i = v.partition_point(|r| r[1].saturating_add(1) < n);
        if v[i][0] <= n {
            if n <= v[i][1] {
                return;
            }
            // `v[i]` ends at `n - 1`: extend it, and join the next one if it starts at `n + 1`.
            v[i][1] = n;
            if i + 1 < v.len() && v[i + 1][0] == n + 1 {
                v[i][1] = v[i + 1][1];
                v.remove(i + 1);
            }
        } else if v[i][0] == n + 1 {
            v[i][0] = n;
        } else {
            v.insert(i, [n, n]);
        }
    }

    /// Adds every number of `other`.
    pub fn merge(&mut self, other: &Ranges) {
        let mut all: Vec<[u64; 2]> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<[u64; 2]> = Vec::with_capacity(all.len());
        for r in all {
            match out.last_mut() {
                Some(last) if r[0] <= last[1].saturating_add(1) => last[1] = last[1].max(r[1]),
                _ => out.push(r),
            }
        }
        self.0 = out;
    }

    /// How many numbers.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|r| r[1] - r[0] + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sequence numbers on channel `c` of `channels` of these message indices (message `k`
    /// is channel `k mod channels`' message `k div channels + 1`, see `channels::route`), as
    /// closed ranges in increasing order.
    pub fn seqs_on(&self, c: usize, channels: usize) -> Vec<(u64, u64)> {
        self.0
            .iter()
            .filter_map(|&[a, b]| {
                // Channel `c`'s messages among indices < a are seqs 1..=published_on(c, a).
                let first = published_on(c, a, channels) + 1;
                let last = published_on(c, b.saturating_add(1), channels);
                (first <= last).then_some((first, last))
            })
            .collect()
    }
}

/// Which sequence numbers the subscriptions missed, per channel: for each seq, how many
/// subscriptions did not receive it, split into holes (below their highest number) and tails.
/// Both are step functions of the seq kept as their steps, so identical holes of many
/// subscriptions (what a refused publish leaves) take one entry.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missed {
    /// Per channel index: seq -> change of the number of subscriptions missing it (+1 where a
    /// subscription's hole starts, -1 after it ends).
    #[serde(with = "steps_as_pairs")]
    pub holes: Vec<BTreeMap<u64, i64>>,
    /// Per channel index: seq -> subscriptions whose tail starts there (their highest seq + 1).
    #[serde(with = "steps_as_pairs")]
    pub tails: Vec<BTreeMap<u64, i64>>,
    /// Missed numbers that were only counted, not kept (`loss::MISSED_RANGES_MAX`).
    pub untracked: u64,
}

impl Missed {
    /// Adds one subscription of channel `c` at its end.
    pub fn add(&mut self, c: usize, tracker: &SeqTracker) {
        if self.holes.len() <= c {
            self.holes.resize_with(c + 1, BTreeMap::new);
            self.tails.resize_with(c + 1, BTreeMap::new);
        }
        let holes = &mut self.holes[c];
        self.untracked += tracker.missed(|from, to| {
            step(holes, from, 1);
            step(holes, to + 1, -1);
        });
        step(&mut self.tails[c], tracker.max() + 1, 1);
    }

    /// Adds one missed range `from..=to` of one subscription of channel `c`.
    pub fn add_range(&mut self, c: usize, from: u64, to: u64) {
        if self.holes.len() <= c {
            self.holes.resize_with(c + 1, BTreeMap::new);
            self.tails.resize_with(c + 1, BTreeMap::new);
        }
        step(&mut self.holes[c], from, 1);
        step(&mut self.holes[c], to + 1, -1);
    }

    /// Adds a tail of one subscription of channel `c`: everything from `from` on.
    pub fn add_tail(&mut self, c: usize, from: u64) {
        if self.tails.len() <= c {
            self.holes.resize_with(c + 1, BTreeMap::new);
            self.tails.resize_with(c + 1, BTreeMap::new);
        }
        step(&mut self.tails[c], from, 1);
    }

    /// (subscription, seq) pairs in the holes, and in the tails up to `last(c)`, the newest seq
    /// published on channel `c`.
    pub fn total(&self, last: impl Fn(usize) -> u64) -> u64 {
        let mut n = 0;
        for (c, (holes, tails)) in self.holes.iter().zip(&self.tails).enumerate() {
            n += sum_over(holes, &[(1, u64::MAX - 1)]);
            let last = last(c);
            if last > 0 {
                n += sum_over(tails, &[(1, last)]);
            }
        }
        n
    }

    pub fn merge(&mut self, other: &Missed) {
        for (mine, theirs) in [(&mut self.holes, &other.holes), (&mut self.tails, &other.tails)] {
            if mine.len() < theirs.len() {
                mine.resize_with(theirs.len(), BTreeMap::new);
            }
            for (into, from) in mine.iter_mut().zip(theirs) {
                for (&seq, &n) in from {
                    step(into, seq, n);
                }
            }
        }
        self.untracked += other.untracked;
    }

    pub fn is_empty(&self) -> bool {
        self.holes.iter().chain(&self.tails).all(BTreeMap::is_empty) && self.untracked == 0
    }

    /// Over the seqs of `ranges` (increasing, disjoint) on channel `c`: how many (subscription,
    /// seq) pairs were missed in holes, and how many in tails.
    pub fn count(&self, c: usize, ranges: &[(u64, u64)]) -> (u64, u64) {
        let sum = |steps: Option<&BTreeMap<u64, i64>>| steps.map_or(0, |s| sum_over(s, ranges));
        (sum(self.holes.get(c)), sum(self.tails.get(c)))
    }
}

/// The steps as `[seq, change]` pairs: a worker process's result travels inside an internally
/// tagged `WorkerEvent`, where serde cannot read integer map keys back from JSON's strings.
mod steps_as_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(steps: &[BTreeMap<u64, i64>], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<Vec<(u64, i64)>> =
            steps.iter().map(|m| m.iter().map(|(&k, &v)| (k, v)).collect()).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BTreeMap<u64, i64>>, D::Error> {
        let pairs = Vec::<Vec<(u64, i64)>>::deserialize(d)?;
        Ok(pairs.into_iter().map(|p| p.into_iter().collect()).collect())
    }
}

fn step(steps: &mut BTreeMap<u64, i64>, at: u64, by: i64) {
    let v = steps.entry(at).or_default();
    *v += by;
    if *v == 0 {
        steps.remove(&at);
    }
}

/// With `f(x)` = the sum of the steps at or below `x`: the sum of `f(x)` over every `x` of
/// `ranges` (increasing, disjoint), in one pass over both.
fn sum_over(steps: &BTreeMap<u64, i64>, ranges: &[(u64, u64)]) -> u64 {
    let mut total: i128 = 0;
    let mut level: i64 = 0;
    let mut steps = steps.iter().peekable();
    for &(lo, hi) in ranges {
        while let Some(&(&at, &by)) = steps.peek()
            && at <= lo
        {
            level += by;
            steps.next();
        }
        let mut x = lo;
        while let Some(&(&at, &by)) = steps.peek()
            && at <= hi
        {
            total += i128::from(level) * i128::from(at - x);
            level += by;
            x = at;
            steps.next();
        }
        total += i128::from(level) * i128::from(hi - x + 1);
    }
    total.clamp(0, i128::from(u64::MAX)) as u64
}

/// What the unaccepted publishes account for, over all subscriptions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// (subscription, publish) pairs no longer expected: subscriptions of a channel times its
    /// refused and unanswered publishes.
    pub unexpected: u64,
    /// Of those, missed in a hole (counted in `missing`, or as superseded with `--staleness`).
    pub holes: u64,
    /// Of those, missed in a tail.
    pub tails: u64,
    /// Of those, delivered anyway.
    pub delivered: u64,
}

/// Settles the refused and unanswered publishes (`unaccepted`, message indices) against what
/// the subscriptions (`subscriptions` per channel index) missed.
pub fn settle(unaccepted: &[&Ranges], channels: usize, subscriptions: &[u64], missed: &Missed) -> Settled {
    let mut out = Settled::default();
    for (c, &subs) in subscriptions.iter().enumerate() {
        for ranges in unaccepted {
            let seqs = ranges.seqs_on(c, channels);
            let n: u64 = seqs.iter().map(|(a, b)| b - a + 1).sum();
            let (holes, tails) = missed.count(c, &seqs);
            let unexpected = subs * n;
            out.unexpected += unexpected;
            out.holes += holes;
            out.tails += tails;
            out.delivered += unexpected.saturating_sub(holes + tails);
        }
    }
    out
}

/// How many (subscription, publish) pairs of `missed` (holes and tails) are refused or
/// unanswered publishes (`unaccepted`): what a reset's window holds that was never the
/// server's to lose.
pub fn unaccepted_in(unaccepted: &[&Ranges], channels: usize, missed: &Missed) -> u64 {
    let mut n = 0;
    for c in 0..missed.holes.len() {
        for ranges in unaccepted {
            let (holes, tails) = missed.count(c, &ranges.seqs_on(c, channels));
            n += holes + tails;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_any_order() {
        let mut r = Ranges::default();
        for n in [5, 6, 7, 1, 9, 3, 2, 8, 20, 4, 4, 0] {
            r.insert(n);
        }
        assert_eq!(r.0, vec![[0, 9], [20, 20]]);
        assert_eq!(r.len(), 11);
        let mut other = Ranges::default();
        for n in [10, 30, 31, 19] {
            other.insert(n);
        }
        r.merge(&other);
        assert_eq!(r.0, vec![[0, 10], [19, 20], [30, 31]]);
        let mut r = Ranges::default();
        for n in [10, 3, 7, 5, 4, 6] {
            r.insert(n);
        }
        assert_eq!(r.0, vec![[3, 7], [10, 10]]);
    }

    #[test]
    fn ranges_in_any_order_match_a_set() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let mut numbers: Vec<u64> =
                (0..rng.random_range(0..60)).map(|_| rng.random_range(0..80)).collect();
            let mut r = Ranges::default();
            for &n in &numbers {
                r.insert(n);
            }
            numbers.shuffle(&mut rng);
            numbers.sort_unstable();
            numbers.dedup();
            let expanded: Vec<u64> = r.0.iter().flat_map(|&[a, b]| a..=b).collect();
            assert_eq!(expanded, numbers);
            for pair in r.0.windows(2) {
                assert!(pair[0][1] + 1 < pair[1][0], "{:?}", r.0);
            }
        }
    }

    #[test]
    fn message_indices_to_sequence_numbers() {
        // Three channels: message k is channel k % 3's message k / 3 + 1.
        let r = Ranges(vec![[2, 7], [9, 9]]);
        assert_eq!(r.seqs_on(0, 3), vec![(2, 3), (4, 4)]); // k = 3, 6; 9
        assert_eq!(r.seqs_on(1, 3), vec![(2, 3)]); // k = 4, 7
        assert_eq!(r.seqs_on(2, 3), vec![(1, 2)]); // k = 2, 5
        assert_eq!(r.seqs_on(0, 1), vec![(3, 8), (10, 10)]);
        assert_eq!(crate::measure::channels::route(9, 3), (0, 4));
        assert_eq!(crate::measure::channels::route(7, 3), (1, 3));
    }

    fn tracker(received: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new();
        for &s in received {
            t.record(s);
        }
        t
    }

    /// Three subscriptions of one channel; seqs 3 and 6 were refused and 8 unanswered (of 8).
    #[test]
    fn refused_and_unanswered_publishes_are_not_loss() {
        let mut missed = Missed::default();
        let mut other = Missed::default();
        // Missed 3 and 6 (refused), and 8 (never answered, never delivered).
        missed.add(0, &tracker(&[1, 2, 4, 5, 7]));
        // Also lost 5 for real, and got 8 (unanswered but delivered).
        missed.add(0, &tracker(&[1, 2, 4, 7, 8]));
        // Cut off after 2: its tail holds 3..=8.
        other.add(0, &tracker(&[1, 2]));
        missed.merge(&other);
        let refused = Ranges(vec![[2, 2], [5, 5]]);
        let unanswered = Ranges(vec![[7, 7]]);
        let s = settle(&[&refused, &unanswered], 1, &[3], &missed);
        assert_eq!(s.unexpected, 9);
        // Holes at 3 and 6 in the first two; tails at 3, 6, 8 in the third and 8 in the first.
        assert_eq!((s.holes, s.tails, s.delivered), (4, 4, 1));
        assert_eq!(missed.count(0, &[(5, 5)]), (1, 1));
        assert_eq!(missed.count(0, &[(1, 2)]), (0, 0));
        assert_eq!(missed.count(1, &[(1, 2)]), (0, 0));
        assert!(!missed.is_empty() && Missed::default().is_empty());
        // Worker processes send it as JSON, inside an internally tagged event.
        let result = crate::measure::tally::Tally { missed: missed.clone(), refused, ..Default::default() };
        let event = crate::engine::WorkerEvent::Done(Box::new(result));
        let json = serde_json::to_string(&event).unwrap();
        let crate::engine::WorkerEvent::Done(back) = serde_json::from_str(&json).unwrap() else {
            panic!("{json}")
        };
        assert_eq!((&back.missed, &back.refused.0), (&missed, &vec![[2, 2], [5, 5]]));
    }

    /// The sweep against counting every (subscription, seq) one by one.
    #[test]
    fn counts_match_a_direct_count() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..50 {
            let published = rng.random_range(1..300u64);
            let mut missed = Missed::default();
            let mut got: Vec<Vec<bool>> = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                let received: Vec<u64> = (1..=published).filter(|_| rng.random_bool(0.8)).collect();
                let mut row = vec![false; published as usize + 1];
                for &s in &received {
                    row[s as usize] = true;
                }
                got.push(row);
                missed.add(0, &tracker(&received));
            }
            let mut ranges = Ranges::default();
            for k in 0..published {
                if rng.random_bool(0.2) {
                    ranges.insert(k);
                }
            }
            let seqs = ranges.seqs_on(0, 1);
            let (holes, tails) = missed.count(0, &seqs);
            let (mut direct_holes, mut direct_tails) = (0, 0);
            for row in &got {
                let max = row.iter().rposition(|&g| g).unwrap_or(0);
                for &(a, b) in &seqs {
                    for s in a..=b {
                        match (row[s as usize], s as usize > max) {
                            (true, _) => {}
                            (false, true) => direct_tails += 1,
                            (false, false) => direct_holes += 1,
                        }
                    }
                }
            }
            assert_eq!((holes, tails), (direct_holes, direct_tails));
        }
    }
}

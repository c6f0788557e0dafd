use super::*;
use proptest::prelude::*;

/// What one vectored send of at most `cap` iovecs would offer the kernel.
fn iov_bytes(q: &mut SendQueue, cap: usize) -> Vec<u8> {
    let mut iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; cap];
    let n = q.fill_iovecs(&mut iov);
    let segments: Vec<&[u8]> = q.segments().take(n).collect();
    for (v, s) in iov[..n].iter().zip(&segments) {
        assert_eq!((v.iov_base as *const u8, v.iov_len), (s.as_ptr(), s.len()));
    }
    segments.concat()
}

fn meta(channel_id: u32, seq: u64) -> FrameMeta {
    FrameMeta { channel_id, seq }
}

/// A 10-byte frame whose content names its channel and seq, to check what was kept.
fn frame(channel_id: u32, seq: u64) -> Bytes {
    Bytes::from(format!("c{channel_id}s{seq:<7}").into_bytes()[..10].to_vec())
}

fn contents(q: &SendQueue) -> Vec<String> {
    q.segments().map(|s| String::from_utf8_lossy(s).trim_end().to_string()).collect()
}

#[test]
fn limit_is_enforced() {
    let mut q = SendQueue::default();
    assert_eq!(q.push(Bytes::from_static(b"12345"), 8), Ok(()));
    assert_eq!(q.push(Bytes::from_static(b"6789"), 8), Err(Overflow));
    let mut empty = SendQueue::default();
    assert_eq!(empty.push(Bytes::from_static(b"larger than the limit"), 8), Ok(()));
    assert_eq!(q.pending_bytes(), 5);
    q.push_unbounded(Bytes::from_static(b"close"));
    assert_eq!(q.pending_bytes(), 10);
}

#[test]
fn partial_sends_resume_mid_frame() {
    let mut q = SendQueue::default();
    q.push(Bytes::from_static(b"hello"), 100).unwrap();
    q.push(Bytes::from_static(b" world"), 100).unwrap();
    q.advance(3);
    assert_eq!(iov_bytes(&mut q, 8), b"lo world");
    q.advance(4);
    assert_eq!(iov_bytes(&mut q, 8), b"orld");
    assert_eq!(q.frame_count(), 1);
    q.advance(4);
    assert!(q.is_empty());
    assert_eq!(q.pending_bytes(), 0);
}

#[test]
fn clear_keeps_partly_written_head() {
    let mut q = SendQueue::default();
    for f in [&b"abc"[..], b"def", b"ghi"] {
        q.push(Bytes::copy_from_slice(f), 100).unwrap();
    }
    q.advance(1);
    assert_eq!(q.clear_unstarted(), 2);
    assert_eq!(iov_bytes(&mut q, 8), b"bc");
    q.advance(2);
    assert_eq!(q.clear_unstarted(), 0);
    assert!(q.is_empty());
}

#[test]
fn disconnect_policy_reports_overflow_and_keeps_the_queue() {
    let mut q = SendQueue::default();
    for seq in 1..=3 {
        assert_eq!(q.offer(frame(1, seq), meta(1, seq), SlowConsumerPolicy::Disconnect, 30), Offer::Queued);
    }
    assert_eq!(q.offer(frame(1, 4), meta(1, 4), SlowConsumerPolicy::Disconnect, 30), Offer::Overflow);
    assert_eq!(q.frame_count(), 3);
}

#[test]
fn drop_oldest_reports_contiguous_gaps_per_channel() {
    let mut q = SendQueue::default();
    // Interleaved channels 1 and 2, seq 1..=4 each: 8 frames of 10 bytes, limit 80.
    for seq in 1..=4 {
        for ch in [1, 2] {
            assert_eq!(
                q.offer(frame(ch, seq), meta(ch, seq), SlowConsumerPolicy::DropOldest, 80),
                Offer::Queued
            );
        }
    }
    q.advance(3); // the head frame (c1s1) is partly written: it must survive
    let offer = q.offer(frame(1, 5), meta(1, 5), SlowConsumerPolicy::DropOldest, 80);
    // Down to half the limit (40 bytes with the new frame): c1s1 (partly sent) stays, then the
    // oldest go, c2s1 c1s2 c2s2 c1s3 c2s3, until 7 + 30 bytes are left.
    let Offer::QueuedAfterDrops(dropped) = offer else { panic!("{offer:?}") };
    assert_eq!(
        dropped,
        vec![Dropped { channel_id: 2, from: 1, to: 3 }, Dropped { channel_id: 1, from: 2, to: 3 }]
    );
    assert_eq!(contents(&q), vec!["1", "c1s4", "c2s4", "c1s5"]);
    assert!(q.pending_bytes() <= 40);
}

#[test]
fn frames_in_flight_are_never_dropped_nor_preceded() {
    let mut q = SendQueue::default();
    for seq in 1..=4 {
        q.offer(frame(1, seq), meta(1, seq), SlowConsumerPolicy::DropOldest, 40);
    }
    let mut iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2];
    assert_eq!(q.fill_iovecs(&mut iov), 2); // c1s1 and c1s2 are with the kernel now
    let offer = q.offer(frame(1, 5), meta(1, 5), SlowConsumerPolicy::DropOldest, 40);
    // Down to half the limit: only c1s3 and c1s4 can go.
    assert_eq!(offer, Offer::QueuedAfterDrops(vec![Dropped { channel_id: 1, from: 3, to: 4 }]));
    q.push_front_unbounded(Bytes::from_static(b"notice    "));
    assert_eq!(contents(&q), vec!["c1s1", "c1s2", "notice", "c1s5"]);
    q.advance(20); // the send completes: exactly its two frames leave
    assert_eq!(contents(&q), vec!["notice", "c1s5"]);
    let mut c = SendQueue::default();
    c.offer(frame(2, 1), meta(2, 1), SlowConsumerPolicy::Conflate, 15);
    assert!(c.start_single().is_some());
    c.offer(frame(2, 2), meta(2, 2), SlowConsumerPolicy::Conflate, 15);
    c.offer(frame(2, 3), meta(2, 3), SlowConsumerPolicy::Conflate, 15);
    assert_eq!(contents(&c), vec!["c2s1", "c2s3"], "the frame in flight is not conflated away");
    assert_eq!(c.clear_unstarted(), 1);
    assert_eq!(contents(&c), vec!["c2s1"]);
}

#[test]
fn drop_oldest_never_drops_control_frames() {
    let mut q = SendQueue::default();
    q.push_unbounded(Bytes::from_static(b"0123456789")); // e.g. a gap notice
    q.offer(frame(1, 1), meta(1, 1), SlowConsumerPolicy::DropOldest, 20);
    let offer = q.offer(frame(1, 2), meta(1, 2), SlowConsumerPolicy::DropOldest, 20);
    assert_eq!(offer, Offer::QueuedAfterDrops(vec![Dropped { channel_id: 1, from: 1, to: 1 }]));
    assert_eq!(contents(&q), vec!["0123456789", "c1s2"]);
}

#[test]
fn conflate_keeps_the_newest_per_channel() {
    let mut q = SendQueue::default();
    for seq in 1..=3 {
        for ch in [1, 2] {
            q.offer(frame(ch, seq), meta(ch, seq), SlowConsumerPolicy::Conflate, 60);
        }
    }
    assert_eq!(q.frame_count(), 6);
    let offer = q.offer(frame(1, 4), meta(1, 4), SlowConsumerPolicy::Conflate, 60);
    assert_eq!(offer, Offer::QueuedAfterConflating(5));
    assert_eq!(contents(&q), vec!["c2s3", "c1s4"]);
}

#[test]
fn conflate_overflows_when_distinct_channels_do_not_fit() {
    let mut q = SendQueue::default();
    for ch in 0..3 {
        q.offer(frame(ch, 1), meta(ch, 1), SlowConsumerPolicy::Conflate, 30);
    }
    assert_eq!(q.offer(frame(9, 1), meta(9, 1), SlowConsumerPolicy::Conflate, 30), Offer::Overflow);
}

#[test]
fn drained_queue_keeps_a_small_ring_for_reuse() {
    let mut q = SendQueue::default();
    q.push(Bytes::from_static(b"x"), 10).unwrap();
    q.advance(1);
    assert!(q.frames.capacity() > 0 && q.frames.capacity() <= KEEP_CAPACITY);
    for _ in 0..100 {
        q.push_unbounded(Bytes::from_static(b"y"));
    }
    q.advance(100);
    assert_eq!(q.frames.capacity(), 0, "a burst's ring is released");
}

proptest! {
    /// Whatever the frame sizes, iovec cap and partial-write sizes, the bytes handed to the
    /// kernel, concatenated, are exactly the queued stream.
    #[test]
    fn stream_is_preserved(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
                           cap in 1usize..6, cuts in proptest::collection::vec(1usize..50, 1..50)) {
        let mut q = SendQueue::default();
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend_from_slice(f);
            q.push(Bytes::copy_from_slice(f), usize::MAX).unwrap();
        }
        let mut written = Vec::new();
        let mut cuts = cuts.into_iter().cycle();
        while !q.is_empty() {
            let offered = iov_bytes(&mut q, cap);
            prop_assert!(!offered.is_empty());
            let n = cuts.next().unwrap().min(offered.len());
            written.extend_from_slice(&offered[..n]);
            q.advance(n);
            prop_assert_eq!(q.pending_bytes(), expected.len() - written.len());
        }
        prop_assert_eq!(written, expected);
    }

    /// Under any policy and any interleaving of offers with sends that stay in flight across
    /// offers (and complete partially), the queue stays within its bound, the byte stream the
    /// kernel is given is whole frames in per-channel order, and a drop-oldest reports every
    /// message it removed (delivered + reported-dropped = offered).
    #[test]
    fn policies_keep_bounds_order_and_accounting(
        ops in proptest::collection::vec((0u32..3, 0usize..25, any::<bool>()), 1..200),
        policy in prop_oneof![Just(SlowConsumerPolicy::DropOldest), Just(SlowConsumerPolicy::Conflate)],
    ) {
        let limit = 100;
        let mut q = SendQueue::default();
        let mut next_seq = [1u64; 3];
        let mut offered = 0u64;
        let mut reported = 0u64;
        let mut stream = Vec::new();
        // The bytes of the send in flight, as the kernel saw them when it started.
        let mut in_flight: Option<Vec<u8>> = None;
        for (ch, send, start) in ops {
            let seq = next_seq[ch as usize];
            match q.offer(frame(ch, seq), meta(ch, seq), policy, limit) {
                Offer::Overflow => prop_assert_eq!(policy, SlowConsumerPolicy::Conflate),
                Offer::QueuedAfterDrops(d) => {
                    reported += d.iter().map(|d| d.to - d.from + 1).sum::<u64>();
                    next_seq[ch as usize] += 1;
                    offered += 1;
                }
                _ => {
                    next_seq[ch as usize] += 1;
                    offered += 1;
                }
            }
            prop_assert!(q.pending_bytes() <= limit + 10);
            match in_flight.take() {
                None if start => in_flight = Some(iov_bytes(&mut q, 3)),
                None => {}
                Some(bytes) => {
                    let n = send.min(bytes.len());
                    stream.extend_from_slice(&bytes[..n]);
                    q.advance(n);
                }
            }
        }
        if let Some(bytes) = in_flight.take() {
            stream.extend_from_slice(&bytes);
            q.advance(bytes.len());
        }
        while !q.is_empty() {
            let bytes = iov_bytes(&mut q, 1024);
            stream.extend_from_slice(&bytes);
            q.advance(bytes.len());
        }
        let mut delivered: Vec<(u32, u64)> = Vec::new();
        for chunk in stream.chunks(10) {
            let text = String::from_utf8_lossy(chunk).trim_end().to_string();
            prop_assert!(text.starts_with('c'), "frame boundary lost: {:?}", text);
            let (c, s) = text[1..].split_once('s').unwrap();
            delivered.push((c.parse().unwrap(), s.parse().unwrap()));
        }
        for ch in 0..3 {
            let seqs: Vec<u64> = delivered.iter().filter(|d| d.0 == ch).map(|d| d.1).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "channel {} out of order: {:?}", ch, seqs);
        }
        if policy == SlowConsumerPolicy::DropOldest {
            prop_assert_eq!(delivered.len() as u64 + reported, offered);
        }
    }
}

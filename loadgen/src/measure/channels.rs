//! Channel selection: which channels exist in a run, which ones each client subscribes to, and
//! where each published message goes.
//!
//! Everything here is a pure function of the plan, so the publisher (in one thread of one
//! worker) and every subscriber (in any worker process) agree without talking to each other:
//! message `k` (0-based, in publish order) goes to channel `k mod n` and is that channel's
//! message number `k div n + 1`. The stamp carries the channel's *index* as its source and the
//! per-channel number as its sequence, so loss is accounted per (channel, seq) and the expected
//! count of every subscription follows from the total published.

/// Expands `--channels`: a comma list (`a,b,c`), or `prefix.*` meaning `prefix.0` ..
/// `prefix.{count-1}` (tickcast has no wildcard subscriptions; the load generator expands the
/// pattern itself). Names are checked against the wire API's channel rule.
pub fn parse(spec: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(prefix) = part.strip_suffix('*') {
            anyhow::ensure!(count > 0, "{part}: a prefix needs --channel-count");
            out.extend((0..count).map(|i| format!("{prefix}{i}")));
        } else {
            out.push(part.to_string());
        }
    }
    anyhow::ensure!(!out.is_empty(), "--channels is empty");
    for name in &out {
        anyhow::ensure!(
            tickcast_protocol::envelope::is_valid_channel(name),
            "channel {name:?}: names are 1-128 bytes of [A-Za-z0-9._:-]"
        );
    }
    let mut sorted = out.clone();
    sorted.sort();
    sorted.dedup();
    anyhow::ensure!(sorted.len() == out.len(), "--channels lists a channel twice");
    Ok(out)
}

/// The channel indices client `client` subscribes to: `per_client` consecutive channels
/// (wrapping) starting at `client * per_client`, so the subscriptions spread evenly over the
/// channels whatever the numbers.
pub fn for_client(client: u64, channels: usize, per_client: usize) -> Vec<usize> {
    if channels == 0 {
        return Vec::new();
    }
    let k = per_client.clamp(1, channels);
    let start = (client as u128 * k as u128 % channels as u128) as usize;
    (0..k).map(|j| (start + j) % channels).collect()
}

/// Where published message `k` (0-based) goes: (channel index, per-channel seq from 1).
pub fn route(k: u64, channels: usize) -> (usize, u64) {
    let n = channels.max(1) as u64;
    ((k % n) as usize, k / n + 1)
}

/// How many of `published` messages went to channel `index`.
pub fn published_on(index: usize, published: u64, channels: usize) -> u64 {
    let n = channels.max(1) as u64;
    published / n + u64::from((index as u64) < published % n)
}

/// `path` with `channels=a,b` added to its query (`?` or `&` as needed).
pub fn with_channels(path: &str, names: &[&str]) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}channels={}", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_prefixes() {
        assert_eq!(parse("a, b,c", 0).unwrap(), ["a", "b", "c"]);
        assert_eq!(parse("t.*", 3).unwrap(), ["t.0", "t.1", "t.2"]);
        assert_eq!(parse("x,t.*", 2).unwrap(), ["x", "t.0", "t.1"]);
        assert!(parse("t.*", 0).is_err());
        assert!(parse("a b", 0).is_err());
        assert!(parse("a,a", 0).is_err());
        assert!(parse(",", 0).is_err());
    }

    #[test]
    fn subscriptions_spread_evenly() {
        let mut per_channel = [0; 5];
        for client in 0..10 {
            let subs = for_client(client, 5, 2);
            assert_eq!(subs.len(), 2);
            assert_ne!(subs[0], subs[1]);
            for c in subs {
                per_channel[c] += 1;
            }
        }
        assert_eq!(per_channel, [4; 5]);
        assert_eq!(for_client(3, 2, 9), vec![0, 1]);
        assert!(for_client(3, 0, 1).is_empty());
    }

    #[test]
    fn routing_matches_counts() {
        let n = 3;
        let mut counts = [0u64; 3];
        for k in 0..10 {
            let (c, seq) = route(k, n);
            counts[c] += 1;
            assert_eq!(seq, counts[c]);
        }
        for (c, &count) in counts.iter().enumerate() {
            assert_eq!(published_on(c, 10, n), count);
        }
        assert_eq!(with_channels("/ws", &["a", "b"]), "/ws?channels=a,b");
        assert_eq!(with_channels("/x?y=1", &["a"]), "/x?y=1&channels=a");
    }
}

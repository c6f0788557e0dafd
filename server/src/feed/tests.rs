use super::*;
use crate::hub::{HubConfig, WorkerChannels};

#[test]
fn specs_parse_with_defaults() {
    assert_eq!("ticker".parse::<FeedSpec>().unwrap(), FeedSpec::DEFAULT_TICKER);
    assert_eq!("news".parse::<FeedSpec>().unwrap(), FeedSpec::DEFAULT_NEWS);
    let t: FeedSpec = "ticker:symbols=10,rate=50.5,seed=7".parse().unwrap();
    assert_eq!(t, FeedSpec { kind: FeedKind::Ticker { symbols: 10 }, rate: 50.5, seed: Some(7) });
    let n: FeedSpec = "news:rate=0.5".parse().unwrap();
    assert_eq!(n, FeedSpec { kind: FeedKind::News, rate: 0.5, seed: None });
    assert_eq!("ticker: rate = 3 ,".parse::<FeedSpec>().unwrap().rate, 3.0);
}

#[test]
fn bad_specs_say_what_is_wrong() {
    let cases = [
        ("stocks:rate=1", "unknown feed kind 'stocks'"),
        ("ticker:rate", "'rate' is not key=value"),
        ("ticker:rate=fast", "is not a number"),
        ("ticker:rate=0", "must be > 0"),
        ("ticker:rate=-1", "must be > 0"),
        ("ticker:rate=inf", "must be > 0"),
        ("ticker:rate=NaN", "must be > 0"),
        ("ticker:rate=1e9", "must be > 0"),
        ("ticker:symbols=0", "from 1 to 100000"),
        ("ticker:symbols=1000000", "from 1 to 100000"),
        ("ticker:symbols=-3", "from 1 to 100000"),
        ("news:symbols=5", "unknown parameter 'symbols' for a news feed"),
        ("ticker:color=red", "unknown parameter 'color'"),
        ("ticker:seed=x", "seed 'x' is not a u64"),
        ("", "unknown feed kind ''"),
    ];
    for (spec, want) in cases {
        let err = spec.parse::<FeedSpec>().unwrap_err().to_string();
        assert!(err.contains(want), "{spec:?}: {err}");
        assert!(err.contains("expected e.g."), "{err}");
    }
    // Long garbage is truncated in the message, and odd bytes do not panic.
    let long = format!("x{}", "é".repeat(1000));
    assert!(long.parse::<FeedSpec>().unwrap_err().to_string().len() < 600);
    assert!("ticker:=,=,,==".parse::<FeedSpec>().is_err());
}

#[test]
fn symbols_are_real_first_then_generated_distinct_and_stable() {
    let s = ticker_symbols(2000);
    assert_eq!(s.len(), 2000);
    assert_eq!(&s[..3], &["AAPL", "MSFT", "NVDA"]);
    let distinct: std::collections::HashSet<_> = s.iter().collect();
    assert_eq!(distinct.len(), 2000);
    assert_eq!(s, ticker_symbols(2000), "names must not depend on anything but n");
    assert_eq!(ticker_symbols(3), &s[..3]);
    for sym in &s {
        assert!(crate::hub::validate_name(&format!("ticker.{sym}")).is_ok(), "{sym}");
    }
}

#[test]
fn ticker_messages_are_json_and_walk_from_the_previous_price() {
    let mut feed = TickerFeed::new(5, 42);
    let mut again = TickerFeed::new(5, 42);
    let mut last: std::collections::HashMap<String, f64> = Default::default();
    let (mut buf, mut buf2) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        buf.clear();
        buf2.clear();
        let i = feed.next(&mut buf);
        assert_eq!(i, again.next(&mut buf2), "same seed, same sequence");
        assert_eq!(buf, buf2);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let symbol = v["symbol"].as_str().unwrap().to_owned();
        assert_eq!(symbol, feed.symbols()[i]);
        let price = v["price"].as_f64().unwrap();
        let change = v["change"].as_f64().unwrap();
        assert!(price >= 0.01);
        if let Some(prev) = last.insert(symbol, price) {
            assert!((prev + change - price).abs() < 1e-6, "{prev} + {change} != {price}");
        }
    }
    assert_eq!(last.len(), 5, "every symbol gets updates");
}

#[test]
fn cents_format() {
    let mut out = Vec::new();
    for (cents, want) in
        [(18723, "187.23"), (-12, "-0.12"), (-5, "-0.05"), (0, "0.00"), (-100, "-1.00"), (7, "0.07")]
    {
        out.clear();
        write_cents(&mut out, cents);
        assert_eq!(std::str::from_utf8(&out).unwrap(), want);
    }
}

#[test]
fn news_messages_are_json_on_known_topics() {
    let mut feed = NewsFeed::new(1);
    let mut buf = Vec::new();
    let mut topics = std::collections::HashSet::new();
    for _ in 0..500 {
        buf.clear();
        let i = feed.next(&mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["topic"], TOPICS[i]);
        let headline = v["headline"].as_str().unwrap();
        assert!(headline.split(' ').count() >= 3, "{headline}");
        topics.insert(i);
    }
    assert_eq!(topics.len(), TOPICS.len());
}

#[test]
fn schedule_has_no_drift_and_bounded_catch_up() {
    let mut s = Schedule::new(3.0); // 333,333,333.3 ns apart
    assert_eq!(s.take_due(0), 1);
    assert_eq!(s.take_due(1), 0);
    // Exactly 3 per second over a long run, however the calls fall.
    let mut total = 1;
    let mut now = 0;
    while now < 100_000_000_000 {
        now += 7_777_777;
        total += s.take_due(now);
    }
    assert_eq!(total, 301, "k/rate for k = 0..=300 within 100 s");
    assert!(s.next_due_ns() > now);

    // Late by 0.5 s at 1000/s: 500 due, caught up 100 per call (100 ms worth).
    let mut s = Schedule::new(1000.0);
    assert_eq!(s.max_batch(), 100);
    let due: Vec<u64> = (0..7).map(|_| s.take_due(499_999_999)).collect();
    assert_eq!(due, [100, 100, 100, 100, 100, 0, 0]);
    assert_eq!(s.skipped(), 0);

    // Late by 10 s: one batch, then the backlog is skipped.
    let mut s = Schedule::new(1000.0);
    assert_eq!(s.take_due(10_000_000_000), 100);
    assert!(s.skipped() > 9_000);
    assert!(s.next_due_ns() > 10_000_000_000 && s.next_due_ns() <= 10_001_000_000);
    assert_eq!(s.take_due(10_000_500_000), 0);
}

#[test]
fn feeds_publish_on_their_channels_and_stop_promptly() {
    let (hub, inboxes) = Hub::new(1, HubConfig::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let specs =
        vec!["ticker:symbols=20,rate=400,seed=3".parse().unwrap(), "news:rate=50,seed=4".parse().unwrap()];
    let handle = spawn_feeds(Arc::clone(&hub), specs, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(stopped_at.elapsed() < Duration::from_millis(150), "took {:?}", stopped_at.elapsed());

    assert_eq!(hub.stats().channels, 20 + TOPICS.len());
    let mut out = Vec::new();
    inboxes[0].begin_drain();
    inboxes[0].drain(&mut out, 100_000);
    let (ticker, news) = out.iter().partition::<Vec<_>, _>(|m| m.channel().starts_with("ticker."));
    // ~120 ticker and ~15 news messages in 300 ms; generous bounds for a loaded machine.
    assert!((40..=200).contains(&ticker.len()), "{} ticker messages", ticker.len());
    assert!((3..=30).contains(&news.len()), "{} news messages", news.len());
    let mut seen = WorkerChannels::new();
    for msg in &out {
        assert_eq!(seen.observe(msg), crate::hub::Observed::Next, "per-channel seqs are consecutive");
        let env = tickcast_protocol::envelope::parse_envelope(msg.json()).unwrap();
        assert_eq!(env.channel, &**msg.channel());
        assert!(env.ts > 1_600_000_000_000_000, "wall clock µs");
    }
}

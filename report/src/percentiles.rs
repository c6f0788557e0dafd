//! Latency distributions: HdrHistogram's percentile-distribution text (what
//! `tickcast-loadgen --percentiles FILE.hgrm` writes, values in milliseconds, and what wrk2 or
//! the Java HdrHistogram print), or a histogram taken straight from the load generator's
//! `--json` result: the rows from `totals.hists.<name>` (HdrHistogram V2 in base64, values in
//! nanoseconds), the figures a legend quotes (p99, max, count) from `summary.histograms.<name>`
//! (µs), which the load generator computed once.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;

/// One row of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub value_ms: f64,
    /// 0..=1
    pub percentile: f64,
    pub total_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    pub points: Vec<Point>,
    /// From the `#[Max = ..., Total count = ...]` footer, else the last row.
    pub max_ms: f64,
    pub total_count: u64,
    /// The exact p99 when the histogram itself was read (JSON input); text files have rows only.
    pub p99_ms: Option<f64>,
}

impl Distribution {
    /// p99: exact from a histogram, else the first row at or above 99 %.
    pub fn p99(&self) -> Option<f64> {
        self.p99_ms.or_else(|| self.at(0.99))
    }

    /// The value at `percentile` (0..=1): the first row at or above it.
    pub fn at(&self, percentile: f64) -> Option<f64> {
        self.points.iter().find(|p| p.percentile >= percentile).map(|p| p.value_ms)
    }
}

/// Reads a file: JSON (`{` or `[` first) or percentile text.
pub fn load(path: &std::path::Path, hist: Option<&str>) -> anyhow::Result<Distribution> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = match text.trim_start().chars().next() {
        Some('{' | '[') => from_json(&text, hist),
        _ => parse(&text),
    };
    parsed.with_context(|| format!("in {}", path.display()))
}

/// Parses HdrHistogram's percentile distribution text:
///
/// ```text
///        Value     Percentile TotalCount 1/(1-Percentile)
///
///        0.091  0.000000000000          1           1.00
///       30.163  1.000000000000    9473000
/// #[Mean    =        3.845, StdDeviation   =        2.306]
/// #[Max     =       30.163, Total count    =      9473000]
/// ```
///
/// Columns may also be separated by commas (HdrHistogram's CSV variant, quoted header).
pub fn parse(text: &str) -> anyhow::Result<Distribution> {
    let mut d = Distribution::default();
    let mut footer_max = None;
    let mut footer_count = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(footer) = line.strip_prefix("#[") {
            for (key, value) in footer_fields(footer) {
                match key.as_str() {
                    "Max" => footer_max = value.parse::<f64>().ok(),
                    "Total count" => footer_count = value.parse::<u64>().ok(),
                    _ => {}
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> =
            line.split(|c: char| c.is_whitespace() || c == ',').filter(|f| !f.is_empty()).collect();
        if fields.first().is_some_and(|f| f.trim_matches('"') == "Value") {
            continue;
        }
        let row = || -> Option<Point> {
            if fields.len() < 3 {
                return None;
            }
            Some(Point {
                value_ms: fields[0].parse().ok()?,
                percentile: fields[1].parse().ok()?,
                total_count: fields[2].parse::<f64>().ok()? as u64,
            })
        };
        let Some(p) = row() else {
            bail!("line {}: not a percentile row (value percentile count ...): {raw:?}", i + 1);
        };
        if !(0.0..=1.0).contains(&p.percentile) || !p.value_ms.is_finite() {
            bail!("line {}: percentile {} outside 0..1 or value not finite", i + 1, p.percentile);
        }
        if let Some(last) = d.points.last()
            && p.percentile < last.percentile
        {
            bail!(
                "line {}: percentiles must not decrease ({} after {})",
                i + 1,
                p.percentile,
                last.percentile
            );
        }
        d.points.push(p);
    }
    let Some(last) = d.points.last() else {
        bail!("no percentile rows");
    };
    d.max_ms = footer_max.unwrap_or(last.value_ms);
    d.total_count = footer_count.unwrap_or(last.total_count);
    Ok(d)
}

/// `Max     =       30.163, Total count    =      9473000]` -> [("Max", "30.163"), ...]
fn footer_fields(footer: &str) -> Vec<(String, String)> {
    footer
        .trim_end_matches(']')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The histogram a result file reports on: the summary's `main_histogram`, else (results
/// written before the summary) the scenario's, as the load generator's `main_metric`.
fn main_metric(result: &Value) -> &str {
    if let Some(name) = result.pointer("/summary/main_histogram").and_then(Value::as_str) {
        return name;
    }
    match result.pointer("/plan/scenario").and_then(Value::as_str) {
        Some("echo") => "rtt",
        Some("idle" | "connect") => "handshake",
        _ => "latency",
    }
}

/// The run a `--json` document stands for: the document itself (one run), or the best passing
/// step of a ramp / `saturate --search` (as the load generator's own `--percentiles` takes):
/// the step its summary names (`{"summary":{"verdict":{"best_step":N}},"steps":[..]}`; each
/// step also carries the search's verdict, `step.ok`), or in older files the best of
/// `[{"ok":..,"deliveries_per_second":..,"result":{..}}]`.
fn select_run(value: &Value) -> anyhow::Result<&Value> {
    const NONE: &str = "no passing step in this ramp/search result";
    match value {
        Value::Array(steps) => {
            best(steps, "/ok", "/deliveries_per_second").and_then(|s| s.get("result")).context(NONE)
        }
        other => match other.get("steps").and_then(Value::as_array) {
            Some(steps) => match other.pointer("/summary/verdict/best_step") {
                Some(Value::Null) => anyhow::bail!(NONE),
                Some(index) => index
                    .as_u64()
                    .and_then(|i| steps.get(usize::try_from(i).ok()?))
                    .context("summary.verdict.best_step names no step"),
                None => best(steps, "/step/ok", "/summary/messages/deliveries_per_s").context(NONE),
            },
            None => Ok(other),
        },
    }
}

/// The step that passed (`passed` is true there) with the most deliveries/s (at `rate`).
fn best<'a>(steps: &'a [Value], passed: &str, rate: &str) -> Option<&'a Value> {
    let dps = |s: &Value| s.pointer(rate).and_then(Value::as_f64).unwrap_or(0.0);
    steps
        .iter()
        .filter(|s| s.pointer(passed).and_then(Value::as_bool) == Some(true))
        .max_by(|a, b| dps(a).total_cmp(&dps(b)))
}

/// The decoded histogram `name` (default: the run's main one) of a run, with its name.
fn histogram<'a>(result: &'a Value, hist: Option<&'a str>) -> anyhow::Result<(&'a str, Histogram<u64>)> {
    let name = hist.unwrap_or_else(|| main_metric(result));
    let encoded = result
        .pointer(&format!("/totals/hists/{name}"))
        .and_then(Value::as_str)
        .with_context(|| format!("no histogram totals.hists.{name}"))?;
    Ok((name, decode(encoded)?))
}

/// A `--json` result (one run, or a ramp / search: its best passing step) as a distribution:
/// rows from the histogram, p99, max and count from the summary where it has them.
pub fn from_json(text: &str, hist: Option<&str>) -> anyhow::Result<Distribution> {
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    let result = select_run(&value)?;
    let (name, h) = histogram(result, hist)?;
    let mut d = distribution(&h);
    if let Some(figures) = result.pointer(&format!("/summary/histograms/{name}")) {
        let ms = |key: &str| figures.get(key).and_then(Value::as_f64).map(|us| us / 1000.0);
        d.p99_ms = ms("p99_us").or(d.p99_ms);
        d.max_ms = ms("max_us").unwrap_or(d.max_ms);
        d.total_count = figures.get("count").and_then(Value::as_u64).unwrap_or(d.total_count);
    }
    Ok(d)
}

/// The value (µs) at quantile `q` (0..=1) of one run's histogram: the figures the summary does
/// not carry (p95 for the shootout's SLO), by the same HdrHistogram lookup the load generator
/// uses for the ones it does.
pub fn quantile_us(text: &str, hist: Option<&str>, q: f64) -> anyhow::Result<f64> {
    anyhow::ensure!((0.0..=1.0).contains(&q), "quantile {q} outside 0..1");
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    anyhow::ensure!(
        !value.is_array() && value.get("steps").is_none(),
        "a ramp or search result: pass one step's result"
    );
    let (name, h) = histogram(&value, hist)?;
    anyhow::ensure!(!h.is_empty(), "histogram {name} is empty");
    Ok(h.value_at_quantile(q) as f64 / 1000.0)
}

/// Base64 HdrHistogram V2 (or V2 + deflate) -> histogram of nanoseconds.
pub fn decode(encoded: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = STANDARD.decode(encoded.trim()).context("histogram is not base64")?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).context("not an HdrHistogram V2 histogram")
}

/// The percentile distribution of a histogram of nanoseconds, in milliseconds: the same rows
/// (5 ticks per half distance) the load generator writes.
pub fn distribution(h: &Histogram<u64>) -> Distribution {
    const NS_PER_MS: f64 = 1e6;
    let mut points = Vec::new();
    let mut count = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            count += v.count_since_last_iteration();
            points.push(Point {
                value_ms: v.value_iterated_to() as f64 / NS_PER_MS,
                percentile: v.quantile_iterated_to(),
                total_count: count,
            });
        }
    }
    let p99_ms = (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / NS_PER_MS);
    Distribution { points, max_ms: h.max() as f64 / NS_PER_MS, total_count: h.len(), p99_ms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};

    /// A file exactly as `tickcast-loadgen --percentiles` writes it (abridged).
    const LOADGEN: &str = "       Value     Percentile TotalCount 1/(1-Percentile)

       0.091 0.000000000000          1           1.00
       3.523 0.500000000000    4736821           2.00
       8.079 0.900000000000    8525846          10.00
      12.335 0.990000000000    9378310         100.00
      18.367 0.999000000000    9463540        1000.00
      30.163 1.000000000000    9473000
#[Mean    =        3.845, StdDeviation   =        2.306]
#[Max     =       30.163, Total count    =      9473000]
#[Buckets =           33, SubBuckets     =         2048]
";

    #[test]
    fn parses_the_load_generators_file() {
        let d = parse(LOADGEN).unwrap();
        assert_eq!(d.points.len(), 6);
        assert_eq!(d.points[1], Point { value_ms: 3.523, percentile: 0.5, total_count: 4736821 });
        assert_eq!(d.max_ms, 30.163);
        assert_eq!(d.total_count, 9473000);
        assert_eq!(d.at(0.99), Some(12.335));
        assert_eq!(d.at(0.995), Some(18.367));
        // The last row (percentile 1) has no 1/(1-p) column.
        assert_eq!(d.points[5].percentile, 1.0);
    }

    #[test]
    fn parses_the_csv_variant_and_tolerates_a_missing_footer() {
        let csv = "\"Value\",\"Percentile\",\"TotalCount\",\"1/(1-Percentile)\"\n\
                   1.000,0.000000000000,1,1.00\n\
                   2.000,0.500000000000,5,2.00\n\
                   4.000,1.000000000000,10,Infinity\n";
        let d = parse(csv).unwrap();
        assert_eq!(d.points.len(), 3);
        assert_eq!(d.max_ms, 4.0);
        assert_eq!(d.total_count, 10);
    }

    #[test]
    fn rejects_what_is_not_a_distribution() {
        assert!(parse("").is_err());
        assert!(parse("       Value     Percentile TotalCount 1/(1-Percentile)\n\n").is_err());
        let err = parse("1.0 0.5 3\nhello world\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse("1.0 1.5 3\n").is_err(), "percentile above 1");
        assert!(parse("1.0 0.9 3\n2.0 0.5 4\n").is_err(), "decreasing percentiles");
    }

    fn hist() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap(); // 1 us .. 10 ms
        }
        h
    }

    #[test]
    fn reads_a_json_result_and_a_ramp() {
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&hist(), &mut bytes).unwrap();
        let plain = STANDARD.encode(&bytes);
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&hist(), &mut bytes).unwrap();
        let deflated = STANDARD.encode(&bytes);
        let run = |h: &str| {
            format!(
                r#"{{"plan":{{"scenario":"rate"}},"totals":{{"hists":{{"latency":"{h}","connect":"{h}"}}}}}}"#
            )
        };
        for encoded in [&plain, &deflated] {
            let d = from_json(&run(encoded), None).unwrap();
            assert_eq!(d.total_count, 10_000);
            let p50 = d.at(0.5).unwrap();
            assert!((4.99..=5.01).contains(&p50), "p50 {p50}");
            assert!((9.99..=10.01).contains(&d.max_ms));
            let p99 = d.p99().unwrap();
            assert!((9.89..=9.91).contains(&p99), "exact p99 {p99}");
            assert_eq!(d.points.last().unwrap().percentile, 1.0);
        }
        assert!(from_json(&run(&plain), Some("handshake")).is_err());
        assert!(from_json(&run(&plain), Some("connect")).is_ok());
        let steps = format!(
            r#"[{{"ok":true,"deliveries_per_second":10,"result":{}}},
                {{"ok":true,"deliveries_per_second":20,"result":{{"totals":{{"hists":{{}}}}}}}},
                {{"ok":false,"deliveries_per_second":30,"result":{{}}}}]"#,
            run(&plain)
        );
        // The best passing step (20/s) has no latency histogram: that is an error, not a
        // silent fall-back to another step.
        assert!(from_json(&steps, None).is_err());
        let steps = format!(r#"[{{"ok":true,"deliveries_per_second":10,"result":{}}}]"#, run(&plain));
        assert_eq!(from_json(&steps, None).unwrap().total_count, 10_000);
        assert!(from_json("[]", None).is_err());
    }

    /// A schema-2 result (a ramp's step: `ok` is the search's verdict on it): rows from the
    /// histogram, the legend's figures from the summary.
    fn run2(h: &str, ok: bool, dps: f64, p99_us: f64) -> String {
        format!(
            r#"{{"schema":2,"summary":{{"scenario":"rate","passed":true,"main_histogram":"latency",
                "messages":{{"deliveries_per_s":{dps}}},
                "histograms":{{"latency":{{"count":10000,"p99_us":{p99_us},"max_us":10000.0}}}}}},
              "totals":{{"hists":{{"latency":"{h}","rtt":"{h}"}}}},
              "step":{{"ok":{ok},"rate":{dps},"clients":1}}}}"#
        )
    }

    fn encoded() -> String {
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(&hist(), &mut bytes).unwrap();
        STANDARD.encode(&bytes)
    }

    #[test]
    fn reads_the_summary_of_a_schema_2_result() {
        let h = encoded();
        let d = from_json(&run2(&h, true, 10.0, 9_876.0), None).unwrap();
        // p99 is the summary's figure (µs -> ms), not recomputed from the rows.
        assert_eq!(d.p99(), Some(9.876));
        assert_eq!(d.max_ms, 10.0);
        assert_eq!(d.total_count, 10_000);
        assert!((4.99..=5.01).contains(&d.at(0.5).unwrap()));
        // Another histogram than the main one: no summary figures for it in this file, so
        // they come from the histogram itself.
        let rtt = from_json(&run2(&h, true, 10.0, 9_876.0), Some("rtt")).unwrap();
        assert!((9.89..=9.91).contains(&rtt.p99().unwrap()));
    }

    #[test]
    fn takes_the_best_passing_step_of_a_schema_2_ramp() {
        let h = encoded();
        let steps =
            [run2(&h, true, 10.0, 1_000.0), run2(&h, true, 20.0, 2_000.0), run2(&h, false, 30.0, 3_000.0)];
        let ramp = |verdict: &str| {
            format!(
                r#"{{"schema":2,"summary":{{"scenario":"ramp"{verdict}}},"steps":[{}]}}"#,
                steps.join(",")
            )
        };
        // The step the load generator's verdict names, else the best step it passed.
        assert_eq!(from_json(&ramp(r#","verdict":{"best_step":0}"#), None).unwrap().p99(), Some(1.0));
        assert_eq!(from_json(&ramp(""), None).unwrap().p99(), Some(2.0));
        assert!(from_json(&ramp(r#","verdict":{"best_step":null}"#), None).is_err(), "no step passed");
        assert!(from_json(&ramp(r#","verdict":{"best_step":7}"#), None).is_err());
        let failed = format!(r#"{{"schema":2,"summary":{{}},"steps":[{}]}}"#, run2(&h, false, 1.0, 1.0));
        assert!(from_json(&failed, None).is_err());
    }

    #[test]
    fn quantiles_from_the_histogram() {
        let h = encoded();
        let p95 = quantile_us(&run2(&h, true, 1.0, 1.0), None, 0.95).unwrap();
        assert!((9_490.0..=9_510.0).contains(&p95), "p95 {p95} us");
        assert!(quantile_us(&run2(&h, true, 1.0, 1.0), None, 1.5).is_err());
        assert!(quantile_us(&run2(&h, true, 1.0, 1.0), Some("handshake"), 0.5).is_err());
        let ramp = format!(r#"{{"schema":2,"summary":{{}},"steps":[{}]}}"#, run2(&h, true, 1.0, 1.0));
        assert!(quantile_us(&ramp, None, 0.5).is_err(), "a ramp needs one step");
    }
}

//! Files: `--json` (everything, with the plan and the typed summary), `--percentiles`
//! (HdrHistogram percentile distribution, values in milliseconds, plottable with HdrHistogram's
//! plotter; conventionally `NAME.hgrm`), `--hlog` (HdrHistogram interval log, one histogram per
//! progress period; conventionally `NAME.hlog`).

use std::io::Write;
use std::path::Path;

use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::progress::Interval;
use crate::measure::stats::Hist;
use crate::result::{ResultFile, RunResult, SCHEMA, Summary};

/// Writes `value` as pretty JSON to `path`.
pub fn write_pretty<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value)?;
    out.flush()?;
    Ok(())
}

/// One run's `--json`: the result's keys, `schema` and `summary`.
pub fn write_json(path: &Path, result: &RunResult, summary: &Summary) -> anyhow::Result<()> {
    write_pretty(path, &ResultFile { schema: SCHEMA, result, summary })
}

pub fn read_json(path: &Path) -> anyhow::Result<RunResult> {
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str(&text)?)
}

/// HdrHistogram's percentile distribution format, values in milliseconds.
pub fn percentiles(h: &Hist) -> String {
    const NS_PER_MS: f64 = 1e6;
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut count = 0u64;
    for v in h.0.iter_quantiles(5) {
        count += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / NS_PER_MS;
        if q < 1.0 {
            out.push_str(&format!("{value:12.3} {q:14.12} {count:10} {:14.2}\n", 1.0 / (1.0 - q)));
        } else {
            out.push_str(&format!("{value:12.3} {q:14.12} {count:10}\n"));
        }
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
        h.0.mean() / NS_PER_MS,
        h.0.stdev() / NS_PER_MS
    ));
    out.push_str(&format!(
        "#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.0.max() as f64 / NS_PER_MS,
        h.0.len()
    ));
    out.push_str(&format!(
        "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.0.buckets(),
        sub_bucket_count(crate::measure::stats::HIST_SIGFIG)
    ));
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` digits: the power of two holding 2 x 10^sigfig.
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

pub fn write_percentiles(path: &Path, h: &Hist) -> anyhow::Result<()> {
    std::fs::write(path, percentiles(h))?;
    Ok(())
}

/// Writes an HdrHistogram interval log (values in ns; the max column in ms).
pub fn write_hlog(path: &Path, tag: &str, intervals: &[Interval]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut serializer = V2Serializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("tickcast-loadgen interval log; values in nanoseconds")
        .with_start_time(std::time::SystemTime::now())
        .with_max_value_divisor(1e6)
        .begin_log_with(&mut file, &mut serializer)?;
    for i in intervals {
        log.write_histogram(&i.hist.0, i.start, i.length, Tag::new(tag))?;
    }
    drop(log);
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_file_shape() {
        let mut h = Hist::new();
        for v in 1..=10_000u64 {
            h.record_ns(v * 1000);
        }
        let text = percentiles(&h);
        let first = text.lines().nth(2).unwrap();
        let fields: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(fields.len(), 4);
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("SubBuckets     =         2048"));
        assert!(text.contains("Total count    =        10000"));
        let last_value_line = text.lines().rfind(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
        assert!(last_value_line.contains("1.000000000000"));
    }

    #[test]
    fn hlog_round_trips() {
        let dir = std::env::temp_dir().join(format!("lg-hlog-{}", std::process::id()));
        let mut h = Hist::new();
        h.record_ns(1_000_000);
        let intervals = vec![Interval {
            start: std::time::Duration::from_secs(1),
            length: std::time::Duration::from_secs(1),
            hist: h,
        }];
        write_hlog(&dir, "rtt", &intervals).unwrap();
        let bytes = std::fs::read(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        let entries: Vec<_> = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&bytes)
            .filter_map(Result::ok)
            .filter(|e| matches!(e, hdrhistogram::serialization::interval_log::LogEntry::Interval(_)))
            .collect();
        assert_eq!(entries.len(), 1);
    }
}

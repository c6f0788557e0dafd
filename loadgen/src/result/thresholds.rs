//! Thresholds a run must meet (`--fail-p99 50ms`, `--fail-percentile p99.9=20ms`,
//! `--fail-loss 0`, `--fail-on-warning loadgen_busy`): judged on the summary, listed in it, and
//! turned into the exit code `THRESHOLD_EXIT` when one fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::summary::Summary;
use super::warnings::WarningKind;

/// The exit code of a run whose figures broke a threshold (clap's usage errors exit 2, other
/// failures 1).
pub const THRESHOLD_EXIT: u8 = 3;

/// One limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// The main histogram's value at a percentile (`label` as typed: `p99.9`, `max`) must not
    /// exceed `limit`.
    Percentile { label: String, limit: Duration },
    /// Messages lost (announced by a gap notice or not) must not exceed this.
    Loss { max: u64 },
    /// No warning of this kind (`None`: of any kind).
    Warning(Option<WarningKind>),
}

/// How a threshold fared: `{"name": "p99", "limit": 50000.0, "value": 6200.0, "unit": "us",
/// "passed": true}`; `value` is `null` when the run has no such figure (which fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOutcome {
    pub name: String,
    pub limit: f64,
    pub value: Option<f64>,
    pub unit: String,
    pub passed: bool,
}

/// The percentile labels a threshold may name, with their summary key stems.
const LABELS: [(&str, &str); 6] = [
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p99.9", "p99_9"),
    ("p99.99", "p99_99"),
    ("max", "max"),
];

/// Parses `p99.9=20ms` (`--fail-percentile`).
pub fn parse_percentile(text: &str) -> Result<Threshold, String> {
    let (label, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("expected PERCENTILE=DURATION (e.g. p99.9=20ms), got {text:?}"))?;
    let label = label.trim();
    if !LABELS.iter().any(|(l, _)| *l == label) {
        let known: Vec<&str> = LABELS.iter().map(|(l, _)| *l).collect();
        return Err(format!("unknown percentile {label:?}: use one of {}", known.join(", ")));
    }
    let limit = crate::time::parse_duration(limit)?;
    Ok(Threshold::Percentile { label: label.to_string(), limit })
}

/// Parses a warning kind (`loadgen_busy`) or `any` (`--fail-on-warning`).
pub fn parse_warning(text: &str) -> Result<Threshold, String> {
    if text == "any" {
        return Ok(Threshold::Warning(None));
    }
    <WarningKind as clap::ValueEnum>::from_str(text, false)
        .map(|kind| Threshold::Warning(Some(kind)))
        .map_err(|_| format!("unknown warning kind {text:?} (see docs/loadgen.md, or `any`)"))
}

/// Judges every threshold against `summary`.
pub fn evaluate(limits: &[Threshold], summary: &Summary) -> Vec<ThresholdOutcome> {
    limits.iter().map(|t| judge(t, summary)).collect()
}

fn judge(t: &Threshold, summary: &Summary) -> ThresholdOutcome {
    match t {
        Threshold::Percentile { label, limit } => {
            let stem = LABELS.iter().find(|(l, _)| l == label).map_or("", |(_, s)| *s);
            let value = summary.main().and_then(|h| h.get(stem));
            let limit = limit.as_secs_f64() * 1e6;
            outcome(label.clone(), limit, value, "us")
        }
        Threshold::Loss { max } => {
            outcome("loss".into(), *max as f64, Some(summary.messages.lost as f64), "messages")
        }
        Threshold::Warning(kind) => {
            let count = summary.warnings.iter().filter(|w| kind.is_none_or(|k| w.kind == k)).count();
            let name = format!("warning:{}", kind.map_or("any", WarningKind::name));
            outcome(name, 0.0, Some(count as f64), "warnings")
        }
    }
}

fn outcome(name: String, limit: f64, value: Option<f64>, unit: &str) -> ThresholdOutcome {
    let passed = value.is_some_and(|v| v <= limit);
    ThresholdOutcome { name, limit, value, unit: unit.to_string(), passed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            parse_percentile("p99.9=20ms").unwrap(),
            Threshold::Percentile { label: "p99.9".into(), limit: Duration::from_millis(20) }
        );
        assert!(parse_percentile("p42=1ms").is_err());
        assert!(parse_percentile("p99").is_err());
        assert!(parse_percentile("p99=soon").is_err());
        assert_eq!(parse_warning("any").unwrap(), Threshold::Warning(None));
        assert_eq!(
            parse_warning("loadgen_busy").unwrap(),
            Threshold::Warning(Some(WarningKind::LoadgenBusy))
        );
        assert!(parse_warning("busy").is_err());
    }

    #[test]
    fn outcome_fails_above_the_limit_or_without_a_figure() {
        assert!(outcome("p99".into(), 10.0, Some(10.0), "us").passed);
        assert!(!outcome("p99".into(), 10.0, Some(10.5), "us").passed);
        assert!(!outcome("p99".into(), 10.0, None, "us").passed);
    }
}

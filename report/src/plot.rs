//! SVG charts with plotters: the HdrHistogram latency-by-percentile plot and generic x/y lines.
//!
//! Logarithmic axes are drawn as linear axes over log10 of the values, with our own tick
//! positions and labels: one chart type for every combination of axes, and exactly the ticks
//! we want (the percentile axis is labelled 50%, 90%, 99%, ...).

use std::path::Path;

use std::ops::Range;

use anyhow::{Context, bail, ensure};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use crate::percentiles::Distribution;

const SIZE: (u32, u32) = (960, 600);
/// Colour-blind-friendly (Okabe-Ito), then a few more.
const COLORS: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
    RGBColor(128, 64, 0),
    RGBColor(100, 100, 100),
];

/// One axis: its data range (in plotted units, i.e. log10 for a log axis) and ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    /// Tick positions in plotted units, with their labels.
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    fn label(&self, v: f64) -> String {
        self.ticks
            .iter()
            .find(|(t, _)| (t - v).abs() <= 1e-9 * (1.0 + t.abs()))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// Short human form: 950000 -> "950k", 1.5e6 -> "1.5M", 0.25 -> "0.25".
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a > 0.0 && a < 1e-3 {
        return format!("{v:.0e}");
    }
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{scaled:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{}{suffix}", if s == "-0" { "0" } else { s })
}

/// A linear axis over [lo, hi] (data units, from 0 with `from_zero`): about 6 ticks at 1, 2 or
/// 5 x 10^k steps, the range widened to whole steps.
pub fn linear_axis(lo: f64, hi: f64, from_zero: bool) -> Axis {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        let pad = if hi.abs() > 0.0 { hi.abs() * 0.1 } else { 1.0 };
        (lo, hi) = (if from_zero && lo >= 0.0 { lo } else { lo - pad }, hi + pad);
    }
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let ticks = ((first as i64)..=(last as i64))
        .map(|k| {
            let t = k as f64 * step;
            (t, human(t))
        })
        .collect();
    Axis { lo: first * step, hi: last * step, ticks }
}

/// A log10 axis over [lo, hi] (data units, both > 0), from the 1, 2 or 5 x 10^k at or below
/// `lo` to the one at or above `hi`; ticks at each of them (powers of ten only past 12 ticks).
pub fn log_axis(lo: f64, hi: f64) -> Axis {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let candidates: Vec<f64> = ((lo.log10().floor() as i32)..=(hi.log10().ceil() as i32 + 1))
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .collect();
    let eps = 1e-9;
    let start = candidates.iter().copied().filter(|v| *v <= lo * (1.0 + eps)).fold(candidates[0], f64::max);
    let mut end = candidates.iter().copied().find(|v| *v >= hi * (1.0 - eps)).unwrap_or(hi);
    if end <= start {
        end = candidates.iter().copied().find(|v| *v > start).unwrap_or(start * 2.0);
    }
    let mut ticks: Vec<f64> = candidates.into_iter().filter(|v| *v >= start && *v <= end).collect();
    if ticks.len() > 12 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    Axis {
        lo: start.log10(),
        hi: end.log10(),
        ticks: ticks.into_iter().map(|v| (v.log10(), human(v))).collect(),
    }
}

/// The percentile axis: x = log10(1 / (1 - p)), ticks 0%, 50%, 90%, 99%, 99.9%, ...
pub fn percentile_axis(max_nines: f64) -> Axis {
    let top = max_nines.ceil().clamp(2.0, 7.0);
    let mut ticks = vec![(0.0, "0%".to_string()), (2f64.log10(), "50%".to_string())];
    for k in 1..=(top as i32) {
        ticks.push((f64::from(k), nines_label(k)));
    }
    Axis { lo: 0.0, hi: top, ticks }
}

/// 1 -> "90%", 2 -> "99%", 3 -> "99.9%", ...
fn nines_label(k: i32) -> String {
    let p = 100.0 * (1.0 - 10f64.powi(-k));
    format!("{p:.prec$}%", prec = (k - 2).max(0) as usize)
}

/// x of a percentile (p < 1).
pub fn nines(p: f64) -> f64 {
    (1.0 / (1.0 - p)).log10()
}

/// An axis as plotters sees it: linear over [lo, hi], grid lines and labels at our ticks only.
/// (plotters' `with_key_points` over an f64 range has no label formatter in 0.3.)
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let frac = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * frac).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl Axis {
    fn ranged(&self) -> Ticked {
        let ticks = self.ticks.iter().map(|t| t.0).filter(|t| *t >= self.lo - 1e-9 && *t <= self.hi + 1e-9);
        Ticked { lo: self.lo, hi: self.hi, ticks: ticks.collect() }
    }
}

/// A named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` (already in plotted units) on the two axes.
pub fn draw(
    out: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    (x, y): (&Axis, &Axis),
    series: &[Series],
    markers: bool,
) -> anyhow::Result<()> {
    ensure!(!series.is_empty(), "nothing to plot");
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(18)
        .margin_right(48)
        .x_label_area_size(50)
        .y_label_area_size(76)
        .build_cartesian_2d(x.ranged(), y.ranged())?;
    let xf = |v: &f64| x.label(*v);
    let yf = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
        if markers {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present().with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Latency by percentile, one line per distribution; y in ms (log10 with `log_y`).
pub fn latency(out: &Path, title: &str, dists: &[(String, Distribution)], log_y: bool) -> anyhow::Result<()> {
    let mut series = Vec::new();
    let (mut lo, mut hi, mut top) = (f64::INFINITY, 0f64, 2f64);
    for (name, d) in dists {
        // The 100% row has no finite x: the maximum goes into the legend instead.
        let points: Vec<(f64, f64)> = d
            .points
            .iter()
            .filter(|p| p.percentile < 1.0 && (!log_y || p.value_ms > 0.0))
            .map(|p| (nines(p.percentile), p.value_ms))
            .collect();
        if points.is_empty() {
            bail!("{name}: no percentile below 100% to plot");
        }
        for &(x, v) in &points {
            top = top.max(x);
            hi = hi.max(v);
            lo = lo.min(v);
        }
        let p99 = d.p99().map_or_else(|| "-".into(), fmt_ms);
        let label = format!("{name} (p99 {p99}, max {}, n={})", fmt_ms(d.max_ms), d.total_count);
        series.push(Series { name: label, points });
    }
    let x = percentile_axis(top);
    let y = if log_y {
        for s in &mut series {
            s.points.iter_mut().for_each(|p| p.1 = p.1.log10());
        }
        log_axis(lo, legend_room(lo, hi, series.len(), true))
    } else {
        linear_axis(0.0, legend_room(0.0, hi, series.len(), false), true)
    };
    let y_desc = if log_y { "latency (ms, log scale)" } else { "latency (ms)" };
    draw(out, title, ("percentile", y_desc), (&x, &y), &series, false)
}

/// Generic lines; values are in data units, `log_x`/`log_y` need positive values.
pub fn xy(
    out: &Path,
    title: &str,
    labels: (&str, &str),
    mut series: Vec<Series>,
    (log_x, log_y): (bool, bool),
) -> anyhow::Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    ensure!(all().next().is_some(), "no points to plot");
    let (xlo, xhi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ylo, yhi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if log_x {
        ensure!(xlo > 0.0, "--log-x needs positive x values (got {xlo})");
    }
    if log_y {
        ensure!(ylo > 0.0, "--log-y needs positive y values (got {ylo})");
    }
    let x = if log_x { log_axis(xlo, xhi) } else { linear_axis(xlo, xhi, false) };
    let n = series.len();
    let y = if log_y {
        log_axis(ylo, legend_room(ylo, yhi, n, true))
    } else {
        linear_axis(ylo.min(0.0), legend_room(ylo.min(0.0), yhi, n, false), true)
    };
    for s in &mut series {
        for p in &mut s.points {
            if log_x {
                p.0 = p.0.log10();
            }
            if log_y {
                p.1 = p.1.log10();
            }
        }
    }
    draw(out, title, labels, (&x, &y), &series, true)
}

/// The top of the y range, raised so that the legend (upper left, a line per series) sits
/// above the data.
fn legend_room(lo: f64, hi: f64, series: usize, log: bool) -> f64 {
    let share = (0.06 + 0.045 * series as f64).min(0.5);
    if log {
        let (l, h) = (lo.log10(), hi.log10().max(lo.log10() + 1.0));
        10f64.powf(h + (h - l) * share / (1.0 - share))
    } else {
        hi + (hi - lo) * share / (1.0 - share)
    }
}

/// `NAME=x1:y1,x2:y2,...`
pub fn parse_series(spec: &str) -> anyhow::Result<Series> {
    let (name, points) = spec.rsplit_once('=').with_context(|| format!("{spec:?}: expected NAME=x:y,..."))?;
    ensure!(!name.is_empty(), "{spec:?}: empty series name");
    let points = points
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (x, y) = p.split_once(':').with_context(|| format!("{p:?}: expected x:y"))?;
            let x: f64 = x.trim().parse().with_context(|| format!("{x:?}: not a number"))?;
            let y: f64 = y.trim().parse().with_context(|| format!("{y:?}: not a number"))?;
            ensure!(x.is_finite() && y.is_finite(), "{p:?}: not finite");
            Ok((x, y))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!points.is_empty(), "{spec:?}: no points");
    Ok(Series { name: name.to_string(), points })
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.0} us", ms * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_is_labelled_in_nines() {
        let a = percentile_axis(3.2);
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(a.hi, 4.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(a.label(2f64.log10()), "50%");
    }

    #[test]
    fn axes_cover_the_data() {
        let a = linear_axis(0.0, 947_300.0, true);
        assert!(a.hi >= 947_300.0 && a.lo == 0.0);
        assert!(a.ticks.iter().any(|t| t.1 == "200k"), "{:?}", a.ticks);
        let l = log_axis(0.3, 120.0);
        let labels: Vec<&str> = l.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.2", "0.5", "1", "2", "5", "10", "20", "50", "100", "200"]);
        assert!(l.lo <= 0.3f64.log10() && l.hi >= 120f64.log10());
        let wide = log_axis(0.01, 50_000.0);
        let labels: Vec<&str> = wide.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100", "1000", "10k"]);
        assert!(wide.hi >= 50_000f64.log10());
        assert_eq!(human(1_500_000.0), "1.5M");
        assert_eq!(human(0.25), "0.25");
        assert_eq!(human(0.00001), "1e-5");
        let flat = linear_axis(5.0, 5.0, false);
        assert!(flat.lo < 5.0 && flat.hi > 5.0);
    }

    #[test]
    fn series_specs() {
        let s = parse_series("tickcast ws=1000:950000,10000:91738.5").unwrap();
        assert_eq!(s.name, "tickcast ws");
        assert_eq!(s.points, [(1000.0, 950000.0), (10000.0, 91738.5)]);
        assert!(parse_series("x=1:2,3").is_err());
        assert!(parse_series("=1:2").is_err());
        assert!(parse_series("x=").is_err());
        assert!(parse_series("1:2").is_err());
    }

    #[test]
    fn draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("tickcast-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("xy.svg");
        let s = vec![parse_series("a=1:1,10:20,100:300").unwrap(), parse_series("b=1:2,100:3").unwrap()];
        xy(&out, "t", ("x", "y"), s, (true, false)).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{}", &svg[..200.min(svg.len())]);
        let d = crate::percentiles::parse("1 0 1\n2 0.5 5\n9 0.99 9\n10 1 10\n").unwrap();
        let out = dir.join("lat.svg");
        latency(&out, "lat", &[("x".into(), d)], true).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("99%") && svg.contains("p99 9.00 ms"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

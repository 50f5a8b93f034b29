//! Hand-drawn SVG charts for the traffic page: the geometry is computed here, and the
//! `admin/chart.html` template writes it out as SVG (escaped like every other value). Bars for
//! counts per time bucket, a line with a point per bucket for latencies; buckets without
//! traffic get no bar and no point.

use serde::Serialize;

/// The drawing area, in SVG user units (the SVG scales to its container).
pub const WIDTH: f64 = 420.0;
pub const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// About this many time labels under a chart.
const X_LABELS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub pos: f64,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// The series, also the CSS class: `total`, `failed`, `blocked`.
    pub series: &'static str,
    pub value: f64,
    /// The tooltip: bucket and value.
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub value: f64,
    pub label: String,
}

/// One series of a bar chart: its name (CSS class), what one unit is called, and a value per
/// bucket.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    pub noun: &'static str,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// `requests`, `errors` or `latency`: the `data-chart` attribute tests and styles use.
    pub kind: &'static str,
    pub title: String,
    /// A one-sentence description for screen readers.
    pub description: String,
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub bars: Vec<Bar>,
    pub points: Vec<Point>,
    /// The latency line: `x,y x,y …`, broken into segments where buckets have no traffic.
    pub lines: Vec<String>,
    pub legend: Vec<&'static str>,
}

/// Buckets of a chart: their starts and how each is labelled.
#[derive(Debug, Clone)]
pub struct Axis {
    pub labels: Vec<String>,
    /// Shorter labels written under the axis.
    pub ticks: Vec<String>,
}

fn frame(kind: &'static str, title: String, description: String) -> Chart {
    Chart {
        kind,
        title,
        description,
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
        y_ticks: Vec::new(),
        x_ticks: Vec::new(),
        bars: Vec::new(),
        points: Vec::new(),
        lines: Vec::new(),
        legend: Vec::new(),
    }
}

fn slot(n: usize) -> f64 {
    (WIDTH - LEFT - RIGHT) / n.max(1) as f64
}

/// Rounds a coordinate to 0.1 unit: small markup, no visible difference.
fn r(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * power >= v * (1.0 - 1e-9) {
            return step * power;
        }
    }
    10.0 * power
}

/// A number as a short label: whole numbers plain, others with up to three significant digits.
pub fn short_number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The y axis from 0 to a nice ceiling of `max`. Counts get whole-number ticks.
fn y_axis(chart: &mut Chart, max: f64, unit: &str, whole: bool) -> f64 {
    let top = nice_ceiling(if whole { max.max(1.0) } else { max });
    let steps = if !whole {
        4
    } else {
        [4u32, 5, 2, 1]
            .into_iter()
            .find(|n| (top / f64::from(*n)).fract() == 0.0)
            .unwrap_or(1)
    };
    let plot = chart.bottom - chart.top;
    chart.y_ticks = (0..=steps)
        .map(|i| {
            let share = f64::from(i) / f64::from(steps);
            Tick {
                pos: r(chart.bottom - plot * share),
                label: format!("{}{unit}", short_number(top * share)),
            }
        })
        .collect();
    top
}

fn x_axis(chart: &mut Chart, axis: &Axis) {
    let n = axis.ticks.len();
    let every = n.div_ceil(X_LABELS).max(1);
    let w = slot(n);
    chart.x_ticks = axis
        .ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, label)| Tick {
            pos: r(LEFT + (i as f64 + 0.5) * w),
            label: label.clone(),
        })
        .collect();
}

/// Bars per bucket; several series stack, in the order given (the first at the bottom).
pub fn bars(
    kind: &'static str,
    title: String,
    description: String,
    axis: &Axis,
    series: &[Series],
) -> Chart {
    let mut chart = frame(kind, title, description);
    let n = axis.ticks.len();
    let max = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let top = y_axis(&mut chart, max, "", true);
    x_axis(&mut chart, axis);
    let w = slot(n);
    let scale = (chart.bottom - chart.top) / top;
    for i in 0..n {
        let mut base = chart.bottom;
        for s in series {
            let value = s.values.get(i).copied().unwrap_or(0.0);
            if value <= 0.0 {
                continue;
            }
            // At least a sliver, so a bucket with one call among thousands still shows.
            let h = (value * scale).max(1.0);
            let label = axis.labels.get(i).cloned().unwrap_or_default();
            chart.bars.push(Bar {
                x: r(LEFT + i as f64 * w + w * 0.15),
                y: r(base - h),
                w: r((w * 0.7).max(1.0)),
                h: r(h),
                series: s.name,
                value,
                label: format!("{label}: {} {}", short_number(value), s.noun),
            });
            base -= h;
        }
    }
    chart.legend = series.iter().map(|s| s.name).collect();
    chart
}

/// A line through one point per bucket that has a value.
pub fn line(
    kind: &'static str,
    title: String,
    description: String,
    axis: &Axis,
    values: &[Option<f64>],
    unit: &'static str,
) -> Chart {
    let mut chart = frame(kind, title, description);
    let n = axis.ticks.len();
    let max = values.iter().flatten().copied().fold(0.0, f64::max);
    let top = y_axis(&mut chart, max, unit, false);
    x_axis(&mut chart, axis);
    let w = slot(n);
    let scale = (chart.bottom - chart.top) / top;
    let mut segment: Vec<String> = Vec::new();
    for i in 0..n {
        match values.get(i).copied().flatten() {
            Some(value) => {
                let (x, y) = (
                    r(LEFT + (i as f64 + 0.5) * w),
                    r(chart.bottom - value * scale),
                );
                segment.push(format!("{x},{y}"));
                let label = axis.labels.get(i).cloned().unwrap_or_default();
                chart.points.push(Point {
                    x,
                    y,
                    value,
                    label: format!("{label}: {}{unit}", short_number(value)),
                });
            }
            None => {
                if segment.len() > 1 {
                    chart.lines.push(segment.join(" "));
                }
                segment.clear();
            }
        }
    }
    if segment.len() > 1 {
        chart.lines.push(segment.join(" "));
    }
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(n: usize) -> Axis {
        Axis {
            labels: (0..n).map(|i| format!("b{i}")).collect(),
            ticks: (0..n).map(|i| format!("t{i}")).collect(),
        }
    }

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(21.0), 25.0);
        assert_eq!(nice_ceiling(0.013), 0.02);
        assert_eq!(short_number(3.0), "3");
        assert_eq!(short_number(2.056), "2.06");
        assert_eq!(short_number(12.26), "12.3");
        assert_eq!(short_number(0.25), "0.25");
    }

    #[test]
    fn one_bar_per_bucket_with_calls_scaled_to_the_axis() {
        let chart = bars(
            "requests",
            "Requests".into(),
            String::new(),
            &axis(4),
            &[Series {
                name: "total",
                noun: "calls",
                values: vec![2.0, 0.0, 4.0, 1.0],
            }],
        );
        assert_eq!(chart.bars.len(), 3);
        let ticks: Vec<&str> = chart.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(ticks, ["0", "1", "2", "3", "4", "5"]);
        let plot = chart.bottom - chart.top;
        assert!((chart.bars[1].h - plot * 4.0 / 5.0).abs() < 0.1);
        assert_eq!(chart.bars[1].label, "b2: 4 calls");
        assert!(chart.bars[0].x < chart.bars[1].x && chart.bars[1].x < chart.bars[2].x);
    }

    #[test]
    fn stacked_series_sit_on_each_other() {
        let chart = bars(
            "errors",
            "Errors".into(),
            String::new(),
            &axis(2),
            &[
                Series {
                    name: "failed",
                    noun: "failed",
                    values: vec![1.0, 0.0],
                },
                Series {
                    name: "blocked",
                    noun: "blocked",
                    values: vec![1.0, 2.0],
                },
            ],
        );
        assert_eq!(chart.bars.len(), 3);
        let (failed, blocked) = (&chart.bars[0], &chart.bars[1]);
        assert_eq!((failed.series, blocked.series), ("failed", "blocked"));
        assert!((blocked.y + blocked.h - failed.y).abs() < 0.2);
    }

    #[test]
    fn latency_lines_break_at_empty_buckets() {
        let chart = line(
            "latency",
            "p95".into(),
            String::new(),
            &axis(5),
            &[Some(1.0), Some(2.0), None, Some(4.0), None],
            " ms",
        );
        assert_eq!(chart.points.len(), 3);
        assert_eq!(chart.lines.len(), 1);
        assert_eq!(chart.lines[0].split(' ').count(), 2);
        assert_eq!(chart.points[2].label, "b3: 4 ms");
        assert_eq!(chart.x_ticks.len(), 5);
    }
}

//! Inline SVG charts for the status page: pure functions from points to markup, no scripts,
//! no external assets. Built with `maud`, so every label is escaped by construction; empty
//! series draw a quiet "no data yet".

use maud::{html, Markup};

const W: f64 = 560.0;
const H: f64 = 170.0;
/// Room for "0" left of the plot; the top value sits above the plot, inside it, so a long
/// value never needs a wide margin.
const LEFT: f64 = 34.0;
/// Room for the day labels, at the phone's larger label size too (see the stylesheet).
const BOTTOM: f64 = 30.0;
const TOP: f64 = 28.0;

/// Each day from `first` to `today`: its key (`YYYY-MM-DD`) and its label on a chart's axis
/// ("6 Dec", the last one "today"). A day after `today` is never in it.
pub fn days(first: chrono::NaiveDate, today: chrono::NaiveDate) -> Vec<(String, String)> {
    first
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|d| {
            let label = if d == today {
                "today".to_string()
            } else {
                d.format("%-d %b").to_string()
            };
            (d.format("%Y-%m-%d").to_string(), label)
        })
        .collect()
}

/// The smallest "nice" number (1, 2 or 5 times a power of ten) at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_value(v: f64, unit: &str) -> String {
    if unit == " MB" && v.abs() < 1.0 && v != 0.0 {
        // Below a megabyte, kilobytes: "20 kB", never ".020 MB".
        return format!("{:.0} kB", (v * 1000.0).ceil());
    }
    if v.abs() >= 10_000.0 {
        format!("{:.0}k{unit}", v / 1000.0)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}{unit}")
    } else if v.abs() >= 0.1 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.3}{unit}")
    }
}

/// The chart's frame: axes, the top value, the first and last label, around `marks`.
fn frame(title: &str, marks: Markup, max: f64, unit: &str, first: &str, last: &str) -> Markup {
    let base = H - BOTTOM;
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(title)
                xmlns="http://www.w3.org/2000/svg" {
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(base) class="axis" {}
                line x1=(LEFT) y1=(base) x2=(W) y2=(base) class="axis" {}
                line x1=(LEFT) y1=(TOP) x2=(W) y2=(TOP) class="grid" {}
                text x=(LEFT + 4.0) y=(TOP - 6.0) class="tick" { (fmt_value(max, unit)) }
                text x=(LEFT - 6.0) y=(base) class="tick" text-anchor="end" { "0" }
                text x=(LEFT) y=(H - 4.0) class="tick" { (first) }
                text x=(W - 2.0) y=(H - 4.0) class="tick" text-anchor="end" { (last) }
                (marks)
            }
        }
    }
}

fn empty(title: &str) -> Markup {
    html! {
        figure.chart {
            figcaption { (title) }
            div.nodata { "no data yet" }
        }
    }
}

/// A line chart of (label, value) points in order.
pub fn line(title: &str, points: &[(String, f64)], unit: &str) -> Markup {
    if points.is_empty() {
        return empty(title);
    }
    let max = nice_max(points.iter().map(|p| p.1).fold(0.0_f64, f64::max));
    let n = points.len().max(2) - 1;
    let span = W - LEFT - 8.0;
    let xy = |i: usize, v: f64| {
        (
            LEFT + 4.0 + span * i as f64 / n as f64,
            H - BOTTOM - (H - BOTTOM - TOP) * v / max,
        )
    };
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = xy(i, p.1);
            format!("{x:.1},{y:.1} ")
        })
        .collect();
    let marks = html! {
        polyline.line points=(path) {}
        @for (i, p) in points.iter().enumerate() {
            @let (x, y) = xy(i, p.1);
            circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" class="dot" {
                title { (p.0) ": " (fmt_value(p.1, unit)) }
            }
        }
    };
    frame(
        title,
        marks,
        max,
        unit,
        &points[0].0,
        &points[points.len() - 1].0,
    )
}

/// A bar chart of (label, value) points in order.
pub fn bars(title: &str, points: &[(String, f64)], unit: &str) -> Markup {
    if points.is_empty() {
        return empty(title);
    }
    let max = nice_max(points.iter().map(|p| p.1).fold(0.0_f64, f64::max));
    let span = W - LEFT - 8.0;
    let slot = span / points.len() as f64;
    let width = (slot * 0.7).max(1.0);
    let marks = html! {
        @for (i, p) in points.iter().enumerate() {
            @let h = (H - BOTTOM - TOP) * p.1 / max;
            @let x = LEFT + 4.0 + slot * i as f64 + (slot - width) / 2.0;
            rect x=(format!("{x:.1}")) y=(format!("{:.1}", H - BOTTOM - h))
                width=(format!("{width:.1}")) height=(format!("{h:.1}")) class="bar" {
                title { (p.0) ": " (fmt_value(p.1, unit)) }
            }
        }
    };
    frame(
        title,
        marks,
        max,
        unit,
        &points[0].0,
        &points[points.len() - 1].0,
    )
}

/// Two series side by side per label (received against shipped, orders against shipments):
/// a bar of each per slot, the first dark and the second light, named in a legend under the
/// title (by their words, never by colour alone).
pub fn pairs(title: &str, points: &[(String, f64, f64)], names: (&str, &str)) -> Markup {
    if points.iter().all(|p| p.1 == 0.0 && p.2 == 0.0) {
        return empty(title);
    }
    let max = nice_max(points.iter().map(|p| p.1.max(p.2)).fold(0.0_f64, f64::max));
    let span = W - LEFT - 8.0;
    let slot = span / points.len() as f64;
    let width = (slot * 0.38).max(0.5);
    let bar = |i: usize, k: f64, v: f64, class: &'static str, name: &str, label: &str| {
        let h = (H - BOTTOM - TOP) * v / max;
        let x = LEFT + 4.0 + slot * i as f64 + slot * 0.1 + width * k;
        html! {
            rect x=(format!("{x:.1}")) y=(format!("{:.1}", H - BOTTOM - h))
                width=(format!("{width:.1}")) height=(format!("{h:.1}")) class=(class) {
                title { (label) ": " (name) " " (fmt_value(v, "")) }
            }
        }
    };
    let marks = html! {
        @for (i, p) in points.iter().enumerate() {
            (bar(i, 0.0, p.1, "bar", names.0, &p.0))
            (bar(i, 1.0, p.2, "bar2", names.1, &p.0))
        }
    };
    html! {
        div.pair {
            p.legend { span.key1 {} (names.0) " " span.key2 {} (names.1) }
            (frame(title, marks, max, "", &points[0].0, &points[points.len() - 1].0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_draw_every_point() {
        let pts = vec![
            ("<a>".to_string(), 1.0),
            ("b&c".to_string(), 3.0),
            ("d".to_string(), 2.0),
        ];
        let svg = line("size <MB>", &pts, " MB").into_string();
        assert!(
            svg.contains("&lt;a&gt;") && svg.contains("b&amp;c") && svg.contains("size &lt;MB&gt;")
        );
        assert!(!svg.contains("<a>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(
            bars("x", &pts, "").into_string().matches("<rect").count(),
            3
        );
        assert!(line("empty", &[], "").into_string().contains("no data yet"));
        let two = vec![("a".to_string(), 1.0, 4.0), ("b".to_string(), 0.0, 2.0)];
        let svg = pairs("in <and> out", &two, ("received", "shipped")).into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(
            svg.contains("in &lt;and&gt; out")
                && svg.contains("received")
                && svg.contains("shipped")
        );
        assert!(pairs("none", &[("a".into(), 0.0, 0.0)], ("x", "y"))
            .into_string()
            .contains("no data yet"));
        assert_eq!(
            (
                nice_max(24.2),
                nice_max(0.03),
                nice_max(100.0),
                nice_max(0.0)
            ),
            (50.0, 0.05, 100.0, 1.0)
        );
    }
}

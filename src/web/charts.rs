//! Inline SVG charts for the status page: pure functions from points to markup, no scripts,
//! no external assets. Labels are escaped; empty series draw a quiet "no data yet".

use std::fmt::Write as _;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const W: f64 = 560.0;
const H: f64 = 150.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

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

fn frame(title: &str, body: &str, max: f64, unit: &str, first: &str, last: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<figure class="chart"><figcaption>{t}</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg">"##,
        t = esc(title)
    );
    let base = H - BOTTOM;
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" class="axis"/><line x1="{LEFT}" y1="{base}" x2="{W}" y2="{base}" class="axis"/><line x1="{LEFT}" y1="{TOP}" x2="{W}" y2="{TOP}" class="grid"/>"##
    );
    let _ = write!(
        s,
        r##"<text x="{x}" y="{y1}" class="tick" text-anchor="end">{max}</text><text x="{x}" y="{base}" class="tick" text-anchor="end">0</text>"##,
        x = LEFT - 6.0,
        y1 = TOP + 8.0,
        max = esc(&fmt_value(max, unit))
    );
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="{y}" class="tick">{a}</text><text x="{W}" y="{y}" class="tick" text-anchor="end">{b}</text>"##,
        y = H - 4.0,
        a = esc(first),
        b = esc(last)
    );
    s.push_str(body);
    s.push_str("</svg></figure>");
    s
}

fn empty(title: &str) -> String {
    format!(
        r##"<figure class="chart"><figcaption>{}</figcaption><div class="nodata">no data yet</div></figure>"##,
        esc(title)
    )
}

/// A line chart of (label, value) points in order.
pub fn line(title: &str, points: &[(String, f64)], unit: &str) -> String {
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
    let mut body = String::from(r##"<polyline class="line" points=""##);
    for (i, p) in points.iter().enumerate() {
        let (x, y) = xy(i, p.1);
        let _ = write!(body, "{x:.1},{y:.1} ");
    }
    body.push_str(r##""/>"##);
    for (i, p) in points.iter().enumerate() {
        let (x, y) = xy(i, p.1);
        let _ = write!(
            body,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" class="dot"><title>{}: {}</title></circle>"##,
            esc(&p.0),
            esc(&fmt_value(p.1, unit))
        );
    }
    let first = &points[0].0;
    let last = &points[points.len() - 1].0;
    frame(title, &body, max, unit, first, last)
}

/// A bar chart of (label, value) points in order.
pub fn bars(title: &str, points: &[(String, f64)], unit: &str) -> String {
    if points.is_empty() {
        return empty(title);
    }
    let max = nice_max(points.iter().map(|p| p.1).fold(0.0_f64, f64::max));
    let span = W - LEFT - 8.0;
    let slot = span / points.len() as f64;
    let width = (slot * 0.7).max(1.0);
    let mut body = String::new();
    for (i, p) in points.iter().enumerate() {
        let h = (H - BOTTOM - TOP) * p.1 / max;
        let x = LEFT + 4.0 + slot * i as f64 + (slot - width) / 2.0;
        let _ = write!(
            body,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" class="bar"><title>{}: {}</title></rect>"##,
            esc(&p.0),
            esc(&fmt_value(p.1, unit)),
            y = H - BOTTOM - h
        );
    }
    frame(
        title,
        &body,
        max,
        unit,
        &points[0].0,
        &points[points.len() - 1].0,
    )
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
        let svg = line("size <MB>", &pts, " MB");
        assert!(
            svg.contains("&lt;a&gt;") && svg.contains("b&amp;c") && svg.contains("size &lt;MB&gt;")
        );
        assert!(!svg.contains("<a>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(bars("x", &pts, "").matches("<rect").count(), 3);
        assert!(line("empty", &[], "").contains("no data yet"));
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

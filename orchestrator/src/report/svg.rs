//! Hand-made inline SVG charts: no fonts to embed, no JavaScript, nothing fetched; a chart is a
//! string of elements that any browser draws offline. Every text goes through [`esc`].
//!
//! All time charts of a report share one x axis (run time in seconds) and one width, so a fault bar
//! and a spike in a peer's traffic line up vertically.

use std::fmt::Write as _;

/// Chart width and the margins every time chart uses (so their x axes line up).
pub const WIDTH: f64 = 960.0;
pub const LEFT: f64 = 130.0;
pub const RIGHT: f64 = 20.0;

/// Peer colours (a colour-blind-safe palette, cycled).
pub const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#999933", "#555555",
];

pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for HTML and SVG (content and attribute values).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Maps run time (ms) to x pixels.
#[derive(Clone, Copy, Debug)]
pub struct TimeAxis {
    pub end_ms: u64,
}

impl TimeAxis {
    pub fn x(&self, t_ms: u64) -> f64 {
        let span = self.end_ms.max(1) as f64;
        LEFT + (t_ms.min(self.end_ms) as f64 / span) * (WIDTH - LEFT - RIGHT)
    }

    /// Grid lines and second labels along the bottom of a chart of height `h` (plot from `top` to
    /// `bottom`).
    pub fn ticks(&self, top: f64, bottom: f64) -> String {
        let mut s = String::new();
        let secs = self.end_ms as f64 / 1000.0;
        let step = nice_step(secs / 8.0);
        let mut v = 0.0;
        while v <= secs + 1e-9 {
            let x = self.x((v * 1000.0) as u64);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" class=\"grid\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}s</text>",
                bottom + 14.0,
                fmt_num(v)
            );
            v += step;
        }
        s
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= raw {
            return m * p;
        }
    }
    10.0 * p
}

/// A number without needless decimals (`2`, `2.5`, `0.25`), with k/M suffixes for large values.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    let (v, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// One named line of a time chart.
pub struct Line<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: &'a [(u64, f64)],
}

/// Keeps at most `max` points: the first, the last, and the largest of each run of neighbours (so
/// spikes survive the thinning).
pub fn thin(points: &[(u64, f64)], max: usize) -> Vec<(u64, f64)> {
    if points.len() <= max || max < 3 {
        return points.to_vec();
    }
    let chunk = points.len().div_ceil(max - 2);
    let mut out = vec![points[0]];
    for c in points[1..points.len() - 1].chunks(chunk) {
        let best = c.iter().copied().fold(c[0], |a, b| if b.1 > a.1 { b } else { a });
        out.push(best);
    }
    out.push(points[points.len() - 1]);
    out
}

/// A line chart over run time with a y axis from 0 to the largest value, a legend, and a title.
pub fn time_chart(title: &str, unit: &str, axis: TimeAxis, lines: &[Line]) -> String {
    let (h, top, bottom) = (210.0, 28.0, 180.0);
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    // Negative values (a clock behind) extend the axis below 0.
    let min = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::min);
    let span = max - min;
    let step = nice_step(if span > 0.0 { span / 4.0 } else { 0.25 });
    let ymax = (max / step).ceil().max(if min < 0.0 { 0.0 } else { 1.0 }) * step;
    let ymin = (min / step).floor() * step;
    let y = |v: f64| bottom - ((v - ymin) / (ymax - ymin).max(1e-9)) * (bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {WIDTH} {h}\" width=\"{WIDTH}\" height=\"{h}\">\
         <title>{t}</title><text x=\"{LEFT}\" y=\"16\" class=\"ctitle\">{t} <tspan class=\"unit\">({u})</tspan></text>",
        t = esc(title),
        u = esc(unit)
    );
    s.push_str(&axis.ticks(top, bottom));
    let mut v = ymin;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
        v += step;
    }
    for (i, l) in lines.iter().enumerate() {
        let pts = thin(l.points, 480);
        if !pts.is_empty() {
            let path: Vec<String> = pts
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", axis.x(*t), y(*v)))
                .collect();
            let _ = write!(
                s,
                "<polyline class=\"series\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.6\" points=\"{}\"><title>{n}</title></polyline>",
                path.join(" "),
                c = esc(l.colour),
                n = esc(l.name)
            );
        }
        let ly = top + 4.0 + i as f64 * 15.0;
        let _ = write!(
            s,
            "<rect x=\"8\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{c}\"/><text x=\"24\" y=\"{:.1}\" class=\"legend\">{n}</text>",
            ly,
            ly + 9.0,
            c = esc(l.colour),
            n = esc(l.name)
        );
    }
    if lines.iter().all(|l| l.points.is_empty()) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"empty\" text-anchor=\"middle\">no samples</text>",
            (LEFT + WIDTH - RIGHT) / 2.0,
            (top + bottom) / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

/// One horizontal bar: label, value, its text, and a CSS class (`ok`, `bad`, ...).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
    pub class: &'static str,
}

/// Horizontal bars scaled to the largest value.
pub fn bar_chart(title: &str, bars: &[Bar]) -> String {
    let row = 22.0;
    let top = 28.0;
    let h = top + row * bars.len().max(1) as f64 + 10.0;
    let max = bars.iter().map(|b| b.value).fold(0.0f64, f64::max).max(1e-9);
    let width = WIDTH - LEFT - RIGHT - 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {WIDTH} {h}\" width=\"{WIDTH}\" height=\"{h}\">\
         <title>{t}</title><text x=\"{LEFT}\" y=\"16\" class=\"ctitle\">{t}</text>",
        t = esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * row;
        let w = (b.value / max * width).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{l}</text>\
             <rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" class=\"bar {c}\"><title>{l}: {tx}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{tx}</text>",
            LEFT - 6.0,
            y + 14.0,
            row - 6.0,
            LEFT + w + 6.0,
            y + 14.0,
            l = esc(&b.label),
            c = b.class,
            tx = esc(&b.text)
        );
    }
    if bars.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{LEFT}\" y=\"{:.1}\" class=\"empty\">none</text>",
            top + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Vertical bars (a histogram) with labels under each bar.
pub fn column_chart(title: &str, columns: &[(String, u64)]) -> String {
    let (h, top, bottom) = (220.0, 28.0, 180.0);
    let max = columns.iter().map(|c| c.1).max().unwrap_or(0).max(1) as f64;
    let n = columns.len().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / n;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{t}\" viewBox=\"0 0 {WIDTH} {h}\" width=\"{WIDTH}\" height=\"{h}\">\
         <title>{t}</title><text x=\"{LEFT}\" y=\"16\" class=\"ctitle\">{t}</text>\
         <line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\" class=\"axis\"/>",
        WIDTH - RIGHT,
        t = esc(title)
    );
    for (i, (label, count)) in columns.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let bh = *count as f64 / max * (bottom - top);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" class=\"bar ok\"><title>{l}: {count}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{l}</text>",
            x + 3.0,
            bottom - bh,
            (slot - 6.0).max(1.0),
            x + slot / 2.0,
            bottom + 14.0,
            l = esc(label)
        );
        if *count > 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{count}</text>",
                x + slot / 2.0,
                bottom - bh - 4.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_numbers_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(420.0), 500.0);
        assert_eq!(fmt_num(2.0), "2");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(15_000.0), "15k");
        assert_eq!(fmt_num(2_500_000.0), "2.5M");
    }

    #[test]
    fn thinning_keeps_ends_and_spikes() {
        let pts: Vec<(u64, f64)> = (0..1000).map(|i| (i, if i == 500 { 99.0 } else { 1.0 })).collect();
        let t = thin(&pts, 50);
        assert!(t.len() <= 50);
        assert_eq!(t[0], (0, 1.0));
        assert_eq!(*t.last().unwrap(), (999, 1.0));
        assert!(t.contains(&(500, 99.0)));
    }

    #[test]
    fn negative_values_extend_the_axis_below_zero() {
        let pts = [(0, -3600.0), (1000, 0.0), (2000, 3600.0)];
        let c = time_chart(
            "clock",
            "s",
            TimeAxis { end_ms: 2000 },
            &[Line {
                name: "p1",
                colour: "#000",
                points: &pts,
            }],
        );
        assert!(c.contains(">-4000<") && c.contains(">4000<"), "{c}");
        let ys: Vec<f64> = c
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys.iter().all(|y| (28.0..=180.0).contains(y)), "inside the plot: {ys:?}");
    }

    #[test]
    fn charts_escape_their_text() {
        let pts = [(0, 1.0), (1000, 2.0)];
        let c = time_chart(
            "a<b",
            "x&y",
            TimeAxis { end_ms: 1000 },
            &[Line {
                name: "<p1>",
                colour: "#000",
                points: &pts,
            }],
        );
        assert!(c.contains("a&lt;b") && c.contains("x&amp;y") && c.contains("&lt;p1&gt;"));
        assert!(!c.contains("<p1>"));
        assert!(c.contains("<polyline"));
    }
}

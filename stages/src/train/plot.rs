//! Hand-written SVG charts (a loss curve, grouped bars): a few hundred bytes
//! of markup, no plotting crate to compile, and byte-identical for the same
//! numbers.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;
/// Colours of successive series.
pub const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
}

/// Evenly spaced ticks between `lo` and `hi`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..=n).map(|i| lo + (hi - lo) * i as f64 / n as f64).collect()
}

fn axes(out: &mut String, x_label: &str, y_label: &str, y_lo: f64, y_hi: f64) {
    let (x0, y0, x1, y1) = (LEFT, H - BOTTOM, W - RIGHT, TOP);
    let _ = writeln!(out, "<path d=\"M{x0} {y1}V{y0}H{x1}\" stroke=\"black\" fill=\"none\"/>");
    for t in ticks(y_lo, y_hi, 4) {
        let y = y0 - (t - y_lo) / (y_hi - y_lo) * (y0 - y1);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.3}</text><path d=\"M{x0} {y:.1}H{x1}\" stroke=\"#ddd\"/>",
            x0 - 4.0,
            y + 4.0,
            t
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (x0 + x1) / 2.0,
        H - 8.0,
        esc(x_label)
    );
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>",
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Lines: one per `(name, points)` series, x and y scaled to fit.
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let (x_lo, x_hi) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let (y_lo, y_hi) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let y_lo = y_lo.min(0.0);
    axes(&mut out, x_label, y_label, y_lo, y_hi);
    for t in ticks(x_lo, x_hi, 4) {
        let x = LEFT + (t - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT);
        let _ =
            writeln!(out, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", H - BOTTOM + 16.0, t.round());
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        for (j, (x, y)) in pts.iter().enumerate() {
            let px = LEFT + (x - x_lo) / (x_hi - x_lo) * (W - LEFT - RIGHT);
            let py = H - BOTTOM - (y - y_lo) / (y_hi - y_lo) * (H - BOTTOM - TOP);
            let _ = write!(d, "{}{px:.1} {py:.1}", if j == 0 { "M" } else { "L" });
        }
        let _ = writeln!(out, "<path d=\"{d}\" stroke=\"{color}\" fill=\"none\" stroke-width=\"1.5\"/>");
        let ly = TOP + 14.0 * i as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - RIGHT - 130.0,
            ly,
            W - RIGHT - 115.0,
            ly + 9.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Grouped bars: one group per label, one bar per series; each series is
/// scaled to its own maximum (their units differ) and labelled with its value.
pub fn bars(title: &str, labels: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let mut out = String::new();
    header(&mut out, title);
    axes(&mut out, "", "relative to the largest", 0.0, 1.0);
    let group = (W - LEFT - RIGHT) / labels.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (g, label) in labels.iter().enumerate() {
        let gx = LEFT + group * g as f64 + group * 0.1;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            gx + group * 0.4,
            H - BOTTOM + 16.0,
            esc(label)
        );
        for (s, (_, values)) in series.iter().enumerate() {
            let max = values.iter().cloned().filter(|v| v.is_finite()).fold(0.0, f64::max);
            let v = values.get(g).copied().unwrap_or(0.0);
            let frac = if max > 0.0 && v.is_finite() { v / max } else { 0.0 };
            let h = frac * (H - BOTTOM - TOP);
            let x = gx + bar * s as f64;
            let y = H - BOTTOM - h;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                bar * 0.95,
                COLORS[s % COLORS.len()],
                x + bar * 0.475,
                y - 3.0,
                short(v)
            );
        }
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let ly = TOP + 14.0 * s as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - RIGHT - 130.0,
            COLORS[s % COLORS.len()],
            W - RIGHT - 115.0,
            ly + 9.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn short(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let s = lines("loss", "step", "loss", &[("train", vec![(0.0, 5.0), (10.0, 1.0)]), ("valid", vec![(0.0, 5.5)])]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("M60.0 61.5L620.0 265.1"), "{s}");
        let b = bars("cmp", &["a<b".into(), "c".into()], &[("acc", vec![0.5, 1.0])]);
        assert!(b.contains("a&lt;b"));
        assert_eq!(b.matches("<rect").count(), 1 + 2 + 1);
    }
}

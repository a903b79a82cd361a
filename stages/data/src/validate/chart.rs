//! A hand-written SVG: records per category (horizontal bars) above a
//! histogram of record lengths. Coordinates are printed with one decimal so
//! the bytes are the same on every machine.

use std::fmt::Write as _;

use serde_json::Value;

use super::collect::Totals;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 190.0;
const BAR_MAX: f64 = 470.0;
const ROW: f64 = 22.0;
const HIST_H: f64 = 180.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The chart for a report.
pub(super) fn svg(t: &Totals, report: &Value) -> String {
    let cats: Vec<(&String, &usize)> = t.categories.iter().collect();
    let bars_top = 40.0;
    let bars_h = ROW * cats.len().max(1) as f64;
    let hist_title = bars_top + bars_h + 40.0;
    let hist_top = hist_title + 20.0;
    let height = hist_top + HIST_H + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="24" font-size="15" font-weight="bold">Records per category ({} in all)</text>"#,
        t.records
    );
    let most = cats.iter().map(|(_, n)| **n).max().unwrap_or(0).max(1) as f64;
    for (i, (name, n)) in cats.iter().enumerate() {
        let y = bars_top + ROW * i as f64;
        let w = BAR_MAX * **n as f64 / most;
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LABEL_W - 8.0, y + 15.0, esc(name));
        let _ = writeln!(
            s,
            r##"<rect x="{LABEL_W:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#4e79a7"/>"##,
            y + 3.0,
            ROW - 6.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}">{n}</text>"#, LABEL_W + w + 6.0, y + 15.0);
    }

    let _ = writeln!(
        s,
        r#"<text x="10" y="{hist_title:.1}" font-size="15" font-weight="bold">Record length (characters)</text>"#
    );
    let bins = report["length_histogram"].as_array().cloned().unwrap_or_default();
    let left = 60.0;
    let plot_w = WIDTH - left - 30.0;
    let base = hist_top + HIST_H;
    let tallest = bins.iter().filter_map(|b| b["count"].as_u64()).max().unwrap_or(0).max(1) as f64;
    let bw = plot_w / bins.len().max(1) as f64;
    for (i, b) in bins.iter().enumerate() {
        let c = b["count"].as_u64().unwrap_or(0) as f64;
        let h = HIST_H * c / tallest;
        let x = left + bw * i as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#f28e2b"><title>{} to {}: {c}</title></rect>"##,
            x + 1.0,
            base - h,
            (bw - 2.0).max(1.0),
            b["from"],
            b["to"]
        );
    }
    // Axes and their end labels.
    let _ =
        writeln!(s, r#"<line x1="{left:.1}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}" stroke="black"/>"#, left + plot_w);
    let _ = writeln!(s, r#"<line x1="{left:.1}" y1="{hist_top:.1}" x2="{left:.1}" y2="{base:.1}" stroke="black"/>"#);
    let _ =
        writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{tallest:.0}</text>"#, left - 6.0, hist_top + 10.0);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{base:.1}" text-anchor="end">0</text>"#, left - 6.0);
    if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
        let _ = writeln!(s, r#"<text x="{left:.1}" y="{:.1}">{}</text>"#, base + 16.0, first["from"]);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left + plot_w,
            base + 16.0,
            last["to"]
        );
    }
    s.push_str("</svg>\n");
    s
}

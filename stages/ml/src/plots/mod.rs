//! Charts a person reads, drawn with `plotters` into SVG: a training loss
//! curve and the benchmark's panels. Text is SVG `<text>` laid out with
//! plotters' built-in size estimate, so no system font is read and the same
//! numbers give the same bytes on every machine.

mod bars;
mod loss;

pub use bars::{panels, Direction, Panel};
pub use loss::{loss_curve, train_title};

use plotters::style::RGBColor;

/// Colours of successive series (colour-blind safe, Okabe–Ito).
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
];

/// A round upper bound for an axis holding `max`: 1, 2, 2.5 or 5 times a
/// power of ten, so ticks land on round numbers.
pub fn nice_ceiling(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|&v| v >= max * (1.0 - 1e-12)).unwrap_or(10.0 * p)
}

/// A tick label without trailing zeros: `20`, `2.5`, `0.25`.
pub fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Whether an SVG from plotters draws `text` (it writes each text on a line of its own).
#[cfg(test)]
pub fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

/// An SVG drawing failure as text.
fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the chart: {e}")
}

/// Test helper: render an SVG to PNG with `rsvg-convert` when it is
/// installed (to look at a chart), `None` otherwise.
#[cfg(test)]
pub fn render_png(svg: &str, png: &std::path::Path) -> Option<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("rsvg-convert")
        .args(["-f", "png", "-o"])
        .arg(png)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(svg.as_bytes()).ok()?;
    child.wait().ok()?.success().then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ceilings() {
        assert_eq!(nice_ceiling(5.51), 10.0);
        assert_eq!(nice_ceiling(2.3), 2.5);
        assert_eq!(nice_ceiling(0.42), 0.5);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(
            (tick(20.0), tick(2.5), tick(0.25), tick(0.0)),
            ("20".into(), "2.5".into(), "0.25".into(), "0".into())
        );
    }
}

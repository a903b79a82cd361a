//! The benchmark chart: one panel per metric, side by side, each with its
//! own unit and its direction in the title ("lower is better"), a bar per
//! model on one scale shared by every model compared, the value above each
//! bar (and a 95% interval where there is one). Models are named on the x
//! axis in every panel, so no legend sits over the bars.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{err, nice_ceiling, tick, COLORS};

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Loss, perplexity, truncation.
    LowerIsBetter,
    /// Accuracy.
    HigherIsBetter,
    /// Size, speed: context, not a score.
    Neutral,
}

/// One metric's panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Metric name and unit (`accuracy (%)`).
    pub title: String,
    /// Which way is better.
    pub direction: Direction,
    /// One value per model (`None`: not measured).
    pub values: Vec<Option<f64>>,
    /// 95% interval per model, if any.
    pub intervals: Vec<Option<(f64, f64)>>,
    /// Fixed top of the axis (100 for percentages); else a round ceiling.
    pub top: Option<f64>,
    /// Decimals of the value labels.
    pub decimals: usize,
}

/// The chart of `panels` over `models`.
pub fn panels(title: &str, models: &[String], panels: &[Panel]) -> Result<String, String> {
    let n = models.len().max(1);
    let panel_w = (90 * n as u32).max(250);
    let (w, h) = (panel_w * panels.len().max(1) as u32, 420);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 21)).map_err(err)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, models, panel)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    models: &[String],
    p: &Panel,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let n = models.len();
    let highest = p
        .values
        .iter()
        .zip(p.intervals.iter().map(Some).chain(std::iter::repeat(None)))
        .filter_map(|(v, ci)| v.map(|v| ci.and_then(|c| c.map(|c| c.1)).unwrap_or(v).max(v)))
        .fold(0.0, f64::max);
    // Room above the tallest bar (or whisker) for its label; a fixed top
    // (100%) keeps its ticks and gets the room above them.
    let top = p.top.unwrap_or_else(|| nice_ceiling(highest * 1.12));
    let y_max = if p.top.is_some() { top * 1.1 } else { top };
    let arrow = match p.direction {
        Direction::LowerIsBetter => " — lower is better",
        Direction::HigherIsBetter => " — higher is better",
        Direction::Neutral => "",
    };
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{}{arrow}", p.title), ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(48)
        // `a..b` of integers is inclusive in plotters: n segments are `0..n-1`.
        .build_cartesian_2d((0..n.max(1) - 1).into_segmented(), 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .y_labels(6)
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => models.get(*i).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let bars = p.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v)));
    chart
        .draw_series(bars.clone().map(|(i, v)| {
            let mut r = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)],
                COLORS[i % COLORS.len()].filled(),
            );
            r.set_margin(0, 0, 14, 14);
            r
        }))
        .map_err(err)?;
    let whisker = BLACK.stroke_width(1);
    chart
        .draw_series(p.intervals.iter().enumerate().filter_map(|(i, ci)| {
            let (lo, hi) = (*ci)?;
            let v = p.values.get(i).copied().flatten()?;
            Some(ErrorBar::new_vertical(SegmentValue::CenterOf(i), lo, v, hi, whisker, 10))
        }))
        .map_err(err)?;
    let label = TextStyle::from(("sans-serif", 15)).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(bars.map(|(i, v)| {
            let above = p.intervals.get(i).copied().flatten().map_or(v, |c| c.1.max(v));
            Text::new(format!("{v:.*}", p.decimals), (SegmentValue::CenterOf(i), above + top * 0.015), label.clone())
        }))
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plots::has_text;

    fn example() -> (Vec<String>, Vec<Panel>) {
        let models: Vec<String> = ["base", "phase5", "phase7"].iter().map(|s| s.to_string()).collect();
        let panels = vec![
            Panel {
                title: "valid loss".into(),
                direction: Direction::LowerIsBetter,
                values: vec![Some(2.31), Some(1.38), Some(1.02)],
                intervals: vec![],
                top: None,
                decimals: 3,
            },
            Panel {
                title: "accuracy (%)".into(),
                direction: Direction::HigherIsBetter,
                values: vec![Some(33.3), Some(58.3), Some(91.7)],
                intervals: vec![Some((13.8, 60.9)), Some((32.0, 80.7)), Some((64.6, 98.5))],
                top: Some(100.0),
                decimals: 1,
            },
            Panel {
                title: "weights (MB)".into(),
                direction: Direction::Neutral,
                values: vec![Some(2200.0), Some(13.1), Some(13.1)],
                intervals: vec![],
                top: None,
                decimals: 1,
            },
        ];
        (models, panels)
    }

    #[test]
    fn one_panel_per_metric_with_direction() {
        let (models, p) = example();
        let svg = panels("benchmark: phase7.yaml", &models, &p).unwrap();
        assert!(has_text(&svg, "valid loss — lower is better"), "{svg}");
        assert!(has_text(&svg, "accuracy (%) — higher is better"));
        assert!(has_text(&svg, "weights (MB)"));
        // Every model named under every panel, every value printed.
        assert_eq!(svg.matches(">\nphase7\n</text>").count(), 3);
        for v in ["1.020", "91.7", "2200.0"] {
            assert!(has_text(&svg, v), "{v}");
        }
        // Accuracy on 0–100, ticks round.
        for t in ["0", "20", "100", "2500"] {
            assert!(has_text(&svg, t), "tick {t}");
        }
        assert_eq!(svg, panels("benchmark: phase7.yaml", &models, &p).unwrap(), "same bytes");
        // One model: one bar, no empty segment after it.
        let one = Panel { values: vec![Some(0.5)], ..p[0].clone() };
        let svg1 = panels("one", &models[..1], &[one]).unwrap();
        assert!(has_text(&svg1, "0.500") && has_text(&svg1, "base"), "{svg1}");
        if let Some(d) = std::env::var_os("DVX_CHART_DIR").map(std::path::PathBuf::from) {
            super::super::render_png(&svg, &d.join("benchmark.png")).expect("rsvg-convert");
            std::fs::write(d.join("benchmark.svg"), &svg).unwrap();
        }
    }
}

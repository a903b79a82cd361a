//! The loss curve of a training run: train loss per step as a line, the
//! validation points as markers joined by a dashed line, a legend, the
//! model and stage in the title, round ticks from 0.

use std::path::Path;

use plotters::prelude::*;

use super::{err, nice_ceiling, tick, COLORS};

/// "loss: <out folder> — LoRA r16 on <base>, 1.2M params": what ran, where.
pub fn train_title(out: &Path, base: Option<&Path>, lora_rank: Option<usize>, params: usize) -> String {
    let name = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
    let what = match (base, lora_rank) {
        (Some(b), Some(r)) => format!("LoRA r{r} on {}", name(b)),
        (Some(b), None) => format!("full fine-tune of {}", name(b)),
        (None, _) => "from scratch".to_string(),
    };
    format!("loss: {} — {what}, {} params", name(out), human(params as f64))
}

fn human(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}B", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// The chart: `train` as `(step, loss)` per step, `valid` at the eval steps.
pub fn loss_curve(title: &str, train: &[(f64, f64)], valid: &[(f64, f64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let all = train.iter().chain(valid);
        let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
        let y_max = nice_ceiling(all.map(|p| p.1).filter(|v| v.is_finite()).fold(0.0, f64::max));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc("loss per assistant token")
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let (tc, vc) = (COLORS[0], COLORS[1]);
        if !train.is_empty() {
            chart
                .draw_series(LineSeries::new(train.iter().copied(), tc.stroke_width(2)))
                .map_err(err)?
                .label("train (per step)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], tc.stroke_width(2)));
        }
        if !valid.is_empty() {
            chart.draw_series(DashedLineSeries::new(valid.iter().copied(), 6, 4, vc.stroke_width(2))).map_err(err)?;
            chart
                .draw_series(valid.iter().map(|&p| Circle::new(p, 5, vc.filled())))
                .map_err(err)?
                .label("validation")
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, vc.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve() -> (Vec<(f64, f64)>, Vec<(f64, f64)>) {
        let train: Vec<(f64, f64)> = (1..=40).map(|s| (s as f64, 5.5 * (-(s as f64) / 12.0).exp() + 0.6)).collect();
        let valid = vec![(0.0, 5.56), (20.0, 1.1), (40.0, 0.72)];
        (train, valid)
    }

    #[test]
    fn titled_marked_round_and_stable() {
        let (train, valid) = curve();
        let title =
            train_title(Path::new("models/phase7"), Some(Path::new("/m/TinyLlama-1.1B")), Some(16), 1_100_048_384);
        assert_eq!(title, "loss: phase7 — LoRA r16 on TinyLlama-1.1B, 1.10B params");
        let svg = loss_curve(&title, &train, &valid).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");
        assert!(has_text(&svg, &title), "title");
        assert!(has_text(&svg, "validation") && has_text(&svg, "train (per step)"), "legend");
        // A marker per validation point (plus the legend's).
        assert_eq!(svg.matches("<circle").count(), valid.len() + 1, "{svg}");
        // Round y ticks from 0 to 10, none like 1.378.
        for t in ["0", "2", "10"] {
            assert!(has_text(&svg, t), "tick {t}");
        }
        assert!(!svg.contains("1.378"));
        assert_eq!(svg, loss_curve(&title, &train, &valid).unwrap(), "same bytes");
        let dir = std::env::var_os("DVX_CHART_DIR").map(std::path::PathBuf::from);
        if let Some(d) = dir {
            render_png(&svg, &d.join("loss.png")).expect("rsvg-convert");
            std::fs::write(d.join("loss.svg"), &svg).unwrap();
        }
        // Evaluation only (`steps: 0`): one validation point, no train line.
        let svg = loss_curve("loss: base", &[], &[(0.0, 2.0)]).unwrap();
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    use super::super::{has_text, render_png};
}

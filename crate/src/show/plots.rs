//! Line plots of training: the lr_find curve with its suggestions, losses, learning rate and
//! momentum schedules, and metrics. Each returns a [`Figure`].

use plotters::prelude::*;

use crate::learner::recorder::Recorder;
use crate::show::Figure;
use crate::{Error, Result};

const W: u32 = 800;
const H: u32 = 500;

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Decimals that make neighbouring tick labels differ on an axis spanning `lo..hi`.
fn decimals(lo: f64, hi: f64) -> usize {
    let span = (hi - lo).abs().max(1e-12);
    ((-(span / 5.0).log10()).ceil().max(0.0) as usize + 1).min(8)
}

fn empty(what: &str) -> Error {
    Error::InvalidArgument(format!("nothing to plot: {what}"))
}

impl Recorder {
    /// The lr_find plot: smoothed loss against learning rate on a log axis. With `suggestion`,
    /// marks and prints fastai's suggestions (valley, steep, minimum/10), which
    /// [`Recorder::suggestions`] also returns as values.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.recorder.plot(true).unwrap().save("lr_find.png".as_ref()).unwrap();
    /// ```
    pub fn plot(&self, suggestion: bool) -> Result<Figure> {
        if !self.is_lr_find {
            return Err(empty(
                "recorder.plot shows an lr_find run; call learn.lr_find first (plot_losses shows training)",
            ));
        }
        let (lrs, losses) = self.lr_find_curve();
        if lrs.len() < 2 {
            return Err(empty(
                "the lr_find run has too few points; run it with more iterations",
            ));
        }
        let marks = if suggestion {
            let s = self.suggestions()?;
            println!(
                "Suggested learning rates: valley {:.2e}, steep {:.2e}, minimum/10 {:.2e}",
                s.valley, s.steep, s.minimum
            );
            vec![
                ("valley", s.valley, RED),
                ("steep", s.steep, GREEN),
                ("minimum/10", s.minimum, MAGENTA),
            ]
        } else {
            vec![]
        };
        let (y0, y1) = range(losses.iter().copied());
        let loss_at = |lr: f64| {
            let i = lrs.iter().position(|&l| l >= lr).unwrap_or(lrs.len() - 1);
            losses[i]
        };
        Figure::draw(W, H, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption("lr_find", ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d((lrs[0]..*lrs.last().unwrap()).log_scale(), y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("Learning rate (log scale)")
                .y_desc("Loss (smoothed)")
                .x_label_formatter(&|v| format!("{v:.0e}"))
                .y_label_formatter(&|v| format!("{v:.*}", decimals(y0, y1)))
                .light_line_style(WHITE)
                .label_style(("sans-serif", 15))
                .draw()?;
            chart.draw_series(LineSeries::new(
                lrs.iter().copied().zip(losses.iter().copied()),
                BLUE.stroke_width(2),
            ))?;
            for (name, lr, colour) in marks {
                let y = loss_at(lr);
                chart
                    .draw_series(std::iter::once(Circle::new((lr, y), 7, colour.filled())))?
                    .label(format!("{name}: {lr:.2e}"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, colour.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 16))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            Ok(())
        })
    }

    /// Training loss per batch (smoothed) and validation loss per epoch.
    pub fn plot_losses(&self) -> Result<Figure> {
        if self.losses.is_empty() {
            return Err(empty("no batches recorded; train first"));
        }
        let train: Vec<(f64, f64)> = self
            .losses
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as f64 + 1.0, l))
            .collect();
        let valid: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .zip(&self.nb_batches)
            .filter_map(|(e, &n)| e.valid_loss.map(|v| (n as f64, v)))
            .collect();
        let (y0, y1) = range(train.iter().chain(&valid).map(|p| p.1));
        let n = train.len() as f64;
        Figure::draw(W, H, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption("Losses", ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d(0.0..n + 1.0, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("Batches processed")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("Loss")
                .y_label_formatter(&|v| format!("{v:.*}", decimals(y0, y1)))
                .light_line_style(WHITE)
                .label_style(("sans-serif", 15))
                .draw()?;
            chart
                .draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))?
                .label("train (smoothed)")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            if !valid.is_empty() {
                chart
                    .draw_series(LineSeries::new(
                        valid.clone(),
                        RGBColor(255, 127, 14).stroke_width(2),
                    ))?
                    .label("validation")
                    .legend(|(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 20, y)],
                            RGBColor(255, 127, 14).stroke_width(2),
                        )
                    });
                chart.draw_series(
                    valid
                        .iter()
                        .map(|&p| Circle::new(p, 4, RGBColor(255, 127, 14).filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 16))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            Ok(())
        })
    }

    /// Learning rate (last layer group) and momentum per batch, side by side.
    pub fn plot_lr(&self) -> Result<Figure> {
        if self.lrs.is_empty() {
            return Err(empty("no batches recorded; train first"));
        }
        let n = self.lrs.len() as f64;
        Figure::draw(2 * W, H, |root| {
            let panels = root.split_evenly((1, 2));
            for (panel, (name, values)) in panels
                .iter()
                .zip([("Learning rate", &self.lrs), ("Momentum", &self.moms)])
            {
                let (y0, y1) = range(values.iter().copied());
                let mut chart = ChartBuilder::on(panel)
                    .caption(name, ("sans-serif", 22))
                    .margin(15)
                    .x_label_area_size(45)
                    .y_label_area_size(80)
                    .build_cartesian_2d(0.0..n, y0..y1)?;
                chart
                    .configure_mesh()
                    .x_desc("Iterations")
                    .x_label_formatter(&|v| format!("{v:.0}"))
                    .y_label_formatter(&|v| format!("{v:.1e}"))
                    .light_line_style(WHITE)
                    .label_style(("sans-serif", 15))
                    .draw()?;
                chart.draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, &v)| (i as f64, v)),
                    BLUE.stroke_width(2),
                ))?;
            }
            Ok(())
        })
    }

    /// Each metric per epoch.
    pub fn plot_metrics(&self) -> Result<Figure> {
        if self.metric_names.is_empty() || self.epochs.iter().all(|e| e.metrics.is_empty()) {
            return Err(empty(
                "no metrics recorded; train with metrics (e.g. error_rate)",
            ));
        }
        let k = self.metric_names.len() as u32;
        let n = self.epochs.len() as f64;
        Figure::draw(W * k.min(3), H, |root| {
            let panels = root.split_evenly((1, k.min(3) as usize));
            for (i, panel) in panels.iter().enumerate() {
                let points: Vec<(f64, f64)> = self
                    .epochs
                    .iter()
                    .filter_map(|e| e.metrics.get(i).map(|&m| (e.epoch as f64, m)))
                    .collect();
                let (y0, y1) = range(points.iter().map(|p| p.1));
                let mut chart = ChartBuilder::on(panel)
                    .caption(&self.metric_names[i], ("sans-serif", 22))
                    .margin(15)
                    .x_label_area_size(45)
                    .y_label_area_size(70)
                    .build_cartesian_2d(-0.5..(n - 0.5).max(0.5), y0..y1)?;
                chart
                    .configure_mesh()
                    .x_desc("Epoch")
                    .x_label_formatter(&|v| format!("{v:.0}"))
                    .y_label_formatter(&|v| format!("{v:.*}", decimals(y0, y1)))
                    .light_line_style(WHITE)
                    .label_style(("sans-serif", 15))
                    .draw()?;
                chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, BLUE.filled())))?;
            }
            Ok(())
        })
    }
}

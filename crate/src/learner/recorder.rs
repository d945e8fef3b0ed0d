//! The `Recorder`: what happened during the last fit, batch by batch and epoch by epoch, as
//! fastai's recorder keeps it, and its plots: the lr_find curve, losses, schedules and metrics.

use plotters::prelude::*;
use polars::prelude::*;

use crate::learner::fit::{Callback, FitContext, format_time};
use crate::show::Figure;
use crate::show::colors::tab;
use crate::show::plots::{H, W, axis_range as range, decimals, nothing_to_plot as empty};
use crate::{Error, Result};

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Epoch number within its fit (0-based, as fastai prints it).
    pub epoch: usize,
    /// Smoothed training loss at the end of the epoch.
    pub train_loss: f64,
    /// Validation loss (None when validation was skipped).
    pub valid_loss: Option<f64>,
    /// Metric values, in `metric_names` order.
    pub metrics: Vec<f64>,
    /// Wall time of the epoch, seconds.
    pub time: f64,
}

/// Learning-rate suggestions from an `lr_find` run (fastai v2's three methods), with the
/// point on the curve each one marks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestions {
    /// The rate at the minimum loss, divided by 10.
    pub minimum: f64,
    /// Where the loss falls fastest against log(lr).
    pub steep: f64,
    /// fastai's default: two thirds of the way down the longest falling stretch.
    pub valley: f64,
    /// (lr, loss) of the minimum itself (its rate is ten times `minimum`).
    pub minimum_at: (f64, f64),
    /// (lr, loss) where the curve is steepest.
    pub steep_at: (f64, f64),
    /// (lr, loss) of the valley suggestion.
    pub valley_at: (f64, f64),
}

/// Records the last fit.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Learning rate of the last layer group, per batch.
    pub lrs: Vec<f64>,
    /// Momentum (Adam's beta1), per batch.
    pub moms: Vec<f64>,
    /// Smoothed training loss, per batch.
    pub losses: Vec<f64>,
    /// Raw training loss, per batch.
    pub raw_losses: Vec<f64>,
    /// Batches done by the end of each epoch.
    pub nb_batches: Vec<usize>,
    /// Per-epoch results.
    pub epochs: Vec<EpochRecord>,
    /// Metric names.
    pub metric_names: Vec<String>,
    /// Whether the last fit was an `lr_find` sweep.
    pub is_lr_find: bool,
    /// The sweep's `num_it` (its first tenth is skipped when suggesting, as fastai does).
    pub num_it: usize,
}

impl Callback for Recorder {
    fn order(&self) -> i32 {
        10
    }
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        *self = Recorder {
            metric_names: cx.metric_names.clone(),
            ..Default::default()
        };
        Ok(())
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        // Numbers known on the host only: the losses stay on the device until the epoch ends.
        self.lrs.push(*cx.lrs.last().unwrap_or(&f64::NAN));
        self.moms.push(cx.mom);
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        self.take_losses(cx);
        self.nb_batches.push(self.losses.len());
        let (valid_loss, metrics) = match &cx.valid {
            Some((l, m)) => (Some(*l), m.clone()),
            None => (None, vec![]),
        };
        self.epochs.push(EpochRecord {
            epoch: cx.epoch,
            train_loss: self.losses.last().copied().unwrap_or(f64::NAN),
            valid_loss,
            metrics,
            time: cx.epoch_start.elapsed().as_secs_f64(),
        });
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        self.take_losses(cx);
        Ok(())
    }
}

impl Recorder {
    /// Copies the fit's batch losses (one read-back for everything still on the device), one
    /// per recorded batch.
    fn take_losses(&mut self, cx: &mut FitContext) {
        let (raw, smooth) = cx.loss_history();
        let n = self.lrs.len().min(raw.len());
        self.raw_losses = raw[..n].to_vec();
        self.losses = smooth[..n].to_vec();
    }
}

impl Recorder {
    /// Per-epoch history, the table fastai prints: epoch, train_loss, valid_loss, one column per
    /// metric, and time as `mm:ss` (seconds are in [`Recorder::epochs`]).
    ///
    /// ```
    /// let rec = fastvision::learner::recorder::Recorder::default();
    /// assert_eq!(rec.history().height(), 0);
    /// ```
    pub fn history(&self) -> DataFrame {
        let mut cols: Vec<Column> = vec![
            Column::new(
                "epoch".into(),
                self.epochs
                    .iter()
                    .map(|e| e.epoch as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "train_loss".into(),
                self.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
            ),
            Column::new(
                "valid_loss".into(),
                self.epochs.iter().map(|e| e.valid_loss).collect::<Vec<_>>(),
            ),
        ];
        for (i, name) in self.metric_names.iter().enumerate() {
            let values: Vec<Option<f64>> = self
                .epochs
                .iter()
                .map(|e| e.metrics.get(i).copied())
                .collect();
            cols.push(Column::new(name.as_str().into(), values));
        }
        cols.push(Column::new(
            "time".into(),
            self.epochs
                .iter()
                .map(|e| format_time(e.time))
                .collect::<Vec<_>>(),
        ));
        DataFrame::new(self.epochs.len(), cols).expect("columns of equal length")
    }

    /// The recorded sweep up to its first NaN or infinite loss: what the lr_find plot draws.
    pub fn lr_find_sweep(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.lrs.len().min(self.losses.len());
        let end = self.losses[..n]
            .iter()
            .position(|l| !l.is_finite())
            .unwrap_or(n);
        (self.lrs[..end].to_vec(), self.losses[..end].to_vec())
    }

    /// The curve fastai's suggestions read (`lr_find` in fastai 2.8's callback/schedule.py):
    /// the sweep without its first `num_it / 10` points and its last 5, cut at the first NaN.
    ///
    /// ```
    /// use fastvision::learner::recorder::Recorder;
    /// let lrs: Vec<f64> = (0..30).map(|i| 1e-7 * 1.5f64.powi(i)).collect();
    /// let mut losses = vec![1.0; 30];
    /// losses[20] = f64::NAN;
    /// let rec = Recorder { lrs: lrs.clone(), losses, num_it: 100, is_lr_find: true, ..Default::default() };
    /// let (l, _) = rec.lr_find_curve();
    /// assert_eq!(l, lrs[10..20]); // 100 / 10 skipped at the start, then up to the NaN
    /// ```
    pub fn lr_find_curve(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.lrs.len().min(self.losses.len());
        let (start, end) = (self.num_it / 10, n.saturating_sub(5));
        if start >= end {
            return (vec![], vec![]);
        }
        let mut lrs = self.lrs[start..end].to_vec();
        let mut losses = self.losses[start..end].to_vec();
        if let Some(nan) = losses.iter().position(|l| l.is_nan()) {
            lrs.truncate(nan);
            losses.truncate(nan);
        }
        (lrs, losses)
    }

    /// fastai's learning-rate suggestions for the last `lr_find`: `valley`, `steep` and
    /// `minimum` exactly as fastai 2.8 computes them (in single precision, as its tensors are),
    /// on [`Recorder::lr_find_curve`]. Tested against fastai's own functions on recorded curves
    /// (crate/tests/fixtures/lr_find).
    ///
    /// ```
    /// use fastvision::learner::recorder::Recorder;
    /// let lrs: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
    /// // A loss that falls fastest around lr = 1e-3 and blows up after 1e-1.
    /// let losses = lrs.iter().map(|lr: &f64| 2.0 - (lr.log10() + 3.0).tanh() + if *lr > 0.1 { 50.0 * lr } else { 0.0 }).collect();
    /// let rec = Recorder { lrs, losses, is_lr_find: true, num_it: 100, ..Default::default() };
    /// let s = rec.suggestions().unwrap();
    /// assert!(s.steep > 3e-4 && s.steep < 3e-3, "{s:?}");
    /// assert_eq!(s.minimum_at.0, s.minimum * 10.0);
    /// ```
    pub fn suggestions(&self) -> Result<Suggestions> {
        let (lrs, losses) = self.lr_find_curve();
        if losses.len() < 6 {
            return Err(Error::InvalidArgument(format!(
                "only {} usable points in the lr_find curve (the loss diverged almost at once, or \
                 num_it was small): run lr_find again with more iterations or a lower start_lr",
                losses.len()
            )));
        }
        Ok(suggest(&lrs, &losses))
    }

    /// Shows the per-epoch table in a notebook, as fastai's progress table.
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.history(), None);
    }
}

/// fastai 2.8's `valley`, `steep` and `minimum` on one curve, in f32 as fastai's tensors are.
fn suggest(lrs: &[f64], losses: &[f64]) -> Suggestions {
    let lrs: Vec<f32> = lrs.iter().map(|&v| v as f32).collect();
    let losses: Vec<f32> = losses.iter().map(|&v| v as f32).collect();
    let point = |i: usize| (lrs[i] as f64, losses[i] as f64);
    // torch's argmin: the first of equal minima.
    let argmin = |v: &[f32]| {
        v.iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0)
    };
    let i_min = argmin(&losses);
    let grads: Vec<f32> = (1..losses.len())
        .map(|i| (losses[i] - losses[i - 1]) / (lrs[i].ln() - lrs[i - 1].ln()))
        .collect();
    let i_steep = argmin(&grads);
    // `valley`: the longest decreasing subsequence, then two thirds of the way down it.
    let n = losses.len();
    let mut lds = vec![1usize; n];
    let (mut max_start, mut max_end) = (0isize, 0usize);
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as isize - lds[max_end] as isize;
            }
        }
    }
    let sections = (max_end as isize - max_start) as f64 / 3.0;
    let idx = max_start + sections as isize + (sections / 2.0) as isize;
    // Python indexing: fastai's start can be -1, and a negative index counts from the end.
    let i_valley = if idx < 0 { n as isize + idx } else { idx } as usize;
    Suggestions {
        minimum: lrs[i_min] as f64 / 10.0,
        steep: lrs[i_steep] as f64,
        valley: lrs[i_valley] as f64,
        minimum_at: point(i_min),
        steep_at: point(i_steep),
        valley_at: point(i_valley),
    }
}

impl std::fmt::Display for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::show::table::text(&self.history(), None))
    }
}

/// Options of [`Recorder::plot_with`], the lr_find plot.
///
/// ```
/// let o = fastvision::learner::recorder::LrPlot::default();
/// assert!(o.suggestion);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LrPlot {
    /// Mark and print the suggested learning rates (valley, steep, minimum/10).
    pub suggestion: bool,
}

impl Default for LrPlot {
    fn default() -> Self {
        LrPlot { suggestion: true }
    }
}

impl Recorder {
    /// The lr_find plot, as fastai v2 draws it: the smoothed loss of the whole sweep against
    /// the learning rate on a log axis, up to where the loss diverged, with fastai's
    /// suggestions marked where they sit on the curve (the minimum at its own rate, labelled
    /// with a tenth of it) and printed; [`Recorder::suggestions`] returns them as values.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.recorder.plot().unwrap().save("lr_find.png".as_ref()).unwrap();
    /// ```
    pub fn plot(&self) -> Result<Figure> {
        self.plot_with(LrPlot::default())
    }

    /// [`Recorder::plot`] with options, e.g. without the suggestions.
    ///
    /// ```no_run
    /// use fastvision::learner::recorder::LrPlot;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let fig = learn.recorder.plot_with(LrPlot { suggestion: false }).unwrap();
    /// ```
    pub fn plot_with(&self, opts: LrPlot) -> Result<Figure> {
        let suggestion = opts.suggestion;
        if !self.is_lr_find {
            return Err(empty(
                "recorder.plot shows an lr_find run; call learn.lr_find first (plot_losses shows training)",
            ));
        }
        let (lrs, losses) = self.lr_find_sweep();
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
                (format!("valley: {:.2e}", s.valley), s.valley_at, tab(1)),
                (format!("steep: {:.2e}", s.steep), s.steep_at, tab(2)),
                (
                    format!("minimum/10: {:.2e}", s.minimum),
                    s.minimum_at,
                    tab(3),
                ),
            ]
        } else {
            vec![]
        };
        // The whole sweep up to the divergence, so the rise shows; the y axis stops a little
        // above where the run stopped (the divergence threshold, four times the best but no
        // lower than lr_find's floor) or where it started, whichever is higher, so one wild
        // batch cannot flatten the rest of the curve, and a trained model's rise from a tiny
        // loss is not cut off where its noise would be.
        let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let top = losses[0].max(4.0 * lowest.max(crate::learner::lr_find::Divergence::FLOOR));
        let shown: Vec<f64> = losses.iter().map(|&l| l.min(top)).collect();
        let (y0, y1) = range(shown.iter().copied());
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
                lrs.iter().copied().zip(shown.iter().copied()),
                tab(0).stroke_width(2),
            ))?;
            for (label, (lr, loss), colour) in marks {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (lr, loss.min(top)),
                        7,
                        colour.filled(),
                    )))?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, colour.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
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
                .draw_series(LineSeries::new(train.clone(), tab(0).stroke_width(2)))?
                .label("train (smoothed)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], tab(0).stroke_width(2))
                });
            if !valid.is_empty() {
                chart
                    .draw_series(LineSeries::new(valid.clone(), tab(1).stroke_width(2)))?
                    .label("validation")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], tab(1).stroke_width(2))
                    });
                chart.draw_series(valid.iter().map(|&p| Circle::new(p, 4, tab(1).filled())))?;
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
                    tab(0).stroke_width(2),
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
                chart.draw_series(LineSeries::new(points.clone(), tab(0).stroke_width(2)))?;
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, tab(0).filled())))?;
            }
            Ok(())
        })
    }
}

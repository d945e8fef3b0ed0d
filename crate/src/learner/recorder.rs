//! The `Recorder`: what happened during the last fit, batch by batch and epoch by epoch, as
//! fastai's recorder keeps it, and its plots: the lr_find curve, losses, schedules and metrics.

use plotters::prelude::*;
use polars::prelude::*;

use crate::Result;
use crate::learner::fit::{Callback, FitContext, format_time};
pub use crate::learner::lr_curve::{LrCurve, LrPlot, Suggestions};
use crate::show::Figure;
use crate::show::colors::tab;
use crate::show::plots::{H, W, axis_range as range, decimals, nothing_to_plot as empty};

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

    /// The last `lr_find` sweep as its own curve (suggestions, plot); an error when the
    /// last fit was not one.
    ///
    /// ```
    /// let rec = fastvision::learner::recorder::Recorder::default();
    /// assert!(rec.lr_curve().is_err());
    /// ```
    pub fn lr_curve(&self) -> Result<LrCurve> {
        if !self.is_lr_find {
            return Err(crate::show::plots::nothing_to_plot(
                "the last fit was not an lr_find sweep; call learn.lr_find first (plot_losses shows training)",
            ));
        }
        let n = self.lrs.len().min(self.losses.len());
        Ok(LrCurve {
            lrs: self.lrs[..n].to_vec(),
            losses: self.losses[..n].to_vec(),
            num_it: self.num_it,
        })
    }

    /// fastai's learning-rate suggestions for the last `lr_find` ([`LrCurve::suggestions`]).
    pub fn suggestions(&self) -> Result<Suggestions> {
        self.lr_curve()?.suggestions()
    }

    /// Shows the per-epoch table in a notebook, as fastai's progress table.
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.history(), None);
    }
}

impl std::fmt::Display for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::show::table::text(&self.history(), None))
    }
}

impl Recorder {
    /// The lr_find plot of the last sweep, as fastai draws it ([`LrCurve::plot`]).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.recorder.plot().unwrap().save("lr_find.png".as_ref()).unwrap();
    /// ```
    pub fn plot(&self) -> Result<Figure> {
        self.lr_curve()?.plot()
    }

    /// [`Recorder::plot`] with options, e.g. without the suggestions.
    ///
    /// ```no_run
    /// use fastvision::learner::lr_curve::LrPlot;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let fig = learn.recorder.plot_with(LrPlot { suggestion: false }).unwrap();
    /// ```
    pub fn plot_with(&self, opts: LrPlot) -> Result<Figure> {
        self.lr_curve()?.plot_with(opts)
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

//! The `Recorder`: what happened during the last fit, batch by batch and epoch by epoch, as
//! fastai's recorder keeps it; its plots live in `show::plots`.

use polars::prelude::*;

use crate::learner::fit::{Callback, FitContext};
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

/// Learning-rate suggestions from an `lr_find` run (fastai v2's three methods).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestions {
    /// The rate at the minimum loss, divided by 10.
    pub minimum: f64,
    /// Where the loss falls fastest against log(lr).
    pub steep: f64,
    /// fastai's default: two thirds of the way down the longest falling stretch.
    pub valley: f64,
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
    /// Per-epoch history: epoch, train_loss, valid_loss, one column per metric, time.
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
            self.epochs.iter().map(|e| e.time).collect::<Vec<_>>(),
        ));
        DataFrame::new(self.epochs.len(), cols).expect("columns of equal length")
    }

    /// The lr_find curve fastai plots and suggests from: skips the first tenth and the last
    /// five points, and stops at the first NaN.
    pub fn lr_find_curve(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.losses.len();
        let (start, end) = (n / 10, n.saturating_sub(5));
        if start >= end {
            return (vec![], vec![]);
        }
        let mut lrs = self.lrs[start..end].to_vec();
        let mut losses = self.losses[start..end].to_vec();
        if let Some(nan) = losses.iter().position(|l| !l.is_finite()) {
            lrs.truncate(nan);
            losses.truncate(nan);
        }
        (lrs, losses)
    }

    /// fastai's learning-rate suggestions for the last `lr_find`.
    ///
    /// ```
    /// use fastvision::learner::recorder::Recorder;
    /// let lrs: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
    /// // A loss that falls fastest around lr = 1e-3 and blows up after 1e-1.
    /// let losses = lrs.iter().map(|lr: &f64| 2.0 - (lr.log10() + 3.0).tanh() + if *lr > 0.1 { 50.0 * lr } else { 0.0 }).collect();
    /// let rec = Recorder { lrs, losses, is_lr_find: true, ..Default::default() };
    /// let s = rec.suggestions().unwrap();
    /// assert!(s.steep > 3e-4 && s.steep < 3e-3, "{s:?}");
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
        let argmin = |v: &[f64]| {
            v.iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        };
        let minimum = lrs[argmin(&losses)] / 10.0;
        let grads: Vec<f64> = (1..losses.len())
            .map(|i| (losses[i] - losses[i - 1]) / (lrs[i].ln() - lrs[i - 1].ln()))
            .collect();
        let steep = lrs[argmin(&grads)];
        // Longest decreasing subsequence, fastai's `valley`.
        let n = losses.len();
        let mut lds = vec![1usize; n];
        let (mut max_start, mut max_end) = (0usize, 0usize);
        for i in 1..n {
            for j in 0..i {
                if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                    lds[i] = lds[j] + 1;
                }
                if lds[max_end] < lds[i] {
                    max_end = i;
                    max_start = max_end.saturating_sub(lds[max_end]);
                }
            }
        }
        let sections = (max_end - max_start) as f64 / 3.0;
        let idx = (max_start + sections as usize + (sections / 2.0) as usize).min(n - 1);
        Ok(Suggestions {
            minimum,
            steep,
            valley: lrs[idx],
        })
    }

    /// Renders the history as an HTML table in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::display_html(&self.html_table());
    }

    /// The per-epoch table as HTML, formatted as fastai prints it.
    pub fn html_table(&self) -> String {
        let mut headers = vec!["epoch", "train_loss", "valid_loss"];
        headers.extend(self.metric_names.iter().map(String::as_str));
        headers.push("time");
        let rows: Vec<Vec<String>> = self
            .epochs
            .iter()
            .map(|e| {
                let mut r = vec![e.epoch.to_string(), format!("{:.6}", e.train_loss)];
                r.push(e.valid_loss.map_or("#na#".into(), |v| format!("{v:.6}")));
                r.extend(e.metrics.iter().map(|m| format!("{m:.6}")));
                r.push(crate::learner::fit::format_time(e.time));
                r
            })
            .collect();
        crate::show::html_table(&headers, &rows)
    }
}

//! The training loop, written once. `fit` runs epochs and batches and calls the hooks of every
//! [`Callback`]; one-cycle scheduling, `lr_find`, the recorder, the progress table and the NaN
//! guard are callbacks, so `fit_one_cycle` and `lr_find` are short functions over `fit`
//! (fastai v1's `train.py` design).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::{Error, Result};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running `fit` to stop cleanly after the current batch (the `fastvision` command calls
/// this on Ctrl-C). The model keeps the weights of the last completed step.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Takes (and clears) a pending stop request.
pub(crate) fn take_stop_request() -> bool {
    STOP.swap(false, Ordering::SeqCst)
}

/// What the loop knows, shared with the callbacks. Schedulers write `lrs` and `mom` in
/// `on_batch_begin`; the loop applies them before the step.
#[derive(Debug, Clone)]
pub struct FitState {
    /// Epochs asked for.
    pub n_epochs: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches per epoch.
    pub n_batches: usize,
    /// Batch within the epoch.
    pub batch: usize,
    /// Batches done in this fit.
    pub iteration: usize,
    /// `n_epochs * n_batches`.
    pub total_iterations: usize,
    /// Learning rate of each layer group for the coming step.
    pub lrs: Vec<f64>,
    /// Adam's beta1 ("momentum") for the coming step.
    pub mom: f64,
    /// The last batch's training loss.
    pub loss: f64,
    /// Exponentially smoothed training loss (β = 0.98, debiased), as fastai reports it.
    pub smooth_loss: f64,
    smooth_avg: f64,
    /// Validation loss and metrics of the epoch just ended.
    pub valid: Option<(f64, Vec<f64>)>,
    /// Metric names, in table order.
    pub metric_names: Vec<String>,
    /// Set by a callback to end training after this batch.
    pub stop: bool,
    /// Set by a callback to skip validation (`lr_find`).
    pub skip_validate: bool,
    /// Why training stopped early, if it did.
    pub stopped_because: Option<String>,
    /// When the epoch began.
    pub epoch_start: Instant,
}

impl FitState {
    pub(crate) fn new(
        n_epochs: usize,
        n_batches: usize,
        lrs: Vec<f64>,
        metric_names: Vec<String>,
    ) -> Self {
        FitState {
            n_epochs,
            epoch: 0,
            n_batches,
            batch: 0,
            iteration: 0,
            total_iterations: n_epochs * n_batches,
            lrs,
            mom: 0.9,
            loss: f64::NAN,
            smooth_loss: f64::NAN,
            smooth_avg: 0.0,
            valid: None,
            metric_names,
            stop: false,
            skip_validate: false,
            stopped_because: None,
            epoch_start: Instant::now(),
        }
    }
}

impl FitState {
    /// Records a batch loss: fastai's `SmoothenValue`, `avg = β·avg + (1-β)·loss`,
    /// reported as `avg / (1 - β^n)`.
    pub(crate) fn record_loss(&mut self, loss: f64) {
        const BETA: f64 = 0.98;
        self.loss = loss;
        self.smooth_avg = BETA * self.smooth_avg + (1.0 - BETA) * loss;
        self.smooth_loss = self.smooth_avg / (1.0 - BETA.powi(self.iteration as i32 + 1));
    }
}

/// Hooks into the training loop. Every method has a default that does nothing.
///
/// ```
/// use fastvision::learner::fit::{Callback, FitState};
/// struct StopAfter(usize);
/// impl Callback for StopAfter {
///     fn on_batch_end(&mut self, s: &mut FitState) -> fastvision::Result<()> {
///         if s.iteration >= self.0 { s.stop = true; }
///         Ok(())
///     }
/// }
/// ```
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
    /// Before each epoch.
    fn on_epoch_begin(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
    /// Before each batch: set `lrs` and `mom` here.
    fn on_batch_begin(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
    /// After the loss is computed, before the step: an error here skips the step and ends
    /// training with the model restored to the epoch's starting weights.
    fn on_loss(&mut self, _s: &mut FitState, _loss: f64) -> Result<()> {
        Ok(())
    }
    /// After the step.
    fn on_batch_end(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
    /// After validation.
    fn on_epoch_end(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
    /// After training, however it ended.
    fn on_train_end(&mut self, _s: &mut FitState) -> Result<()> {
        Ok(())
    }
}

/// Stops training when the loss is NaN or infinite, before the bad step is taken.
#[derive(Debug, Default)]
pub struct NanGuard;

impl Callback for NanGuard {
    fn on_loss(&mut self, s: &mut FitState, loss: f64) -> Result<()> {
        if loss.is_finite() {
            return Ok(());
        }
        Err(Error::Diverged(format!(
            "the training loss became {loss} at epoch {}, batch {} (learning rates {}); training \
             stopped and the weights from the start of that epoch were restored. Try a lower \
             learning rate (see lr_find)",
            s.epoch,
            s.batch,
            s.lrs
                .iter()
                .map(|l| format!("{l:.2e}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// `m:ss` (or `h:mm:ss`), as fastprogress formats times.
///
/// ```
/// assert_eq!(fastvision::learner::fit::format_time(75.4), "01:15");
/// assert_eq!(fastvision::learner::fit::format_time(3725.0), "1:02:05");
/// ```
pub fn format_time(secs: f64) -> String {
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// Prints fastai's progress table, one line per epoch as it ends (so a notebook shows it
/// live), with a progress bar and ETA over the batches when stderr is a terminal.
#[derive(Default)]
pub struct ProgressTable {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressTable {
    /// The header line for these metrics.
    pub fn header(metric_names: &[String]) -> String {
        let mut cols = vec![
            "epoch".to_string(),
            "train_loss".into(),
            "valid_loss".into(),
        ];
        cols.extend(metric_names.iter().cloned());
        cols.push("time".into());
        cols.iter()
            .map(|c| format!("{c:<12}"))
            .collect::<String>()
            .trim_end()
            .to_string()
    }
}

impl ProgressTable {
    /// The line for the epoch that just ended.
    pub fn row(s: &FitState) -> String {
        let mut cols = vec![s.epoch.to_string(), format!("{:.6}", s.smooth_loss)];
        match &s.valid {
            Some((loss, metrics)) => {
                cols.push(format!("{loss:.6}"));
                cols.extend(metrics.iter().map(|m| format!("{m:.6}")));
            }
            None => cols.extend(std::iter::repeat_n(
                "#na#".to_string(),
                1 + s.metric_names.len(),
            )),
        }
        cols.push(format_time(s.epoch_start.elapsed().as_secs_f64()));
        cols.iter()
            .map(|c| format!("{c:<12}"))
            .collect::<String>()
            .trim_end()
            .to_string()
    }
}

impl Callback for ProgressTable {
    fn on_train_begin(&mut self, s: &mut FitState) -> Result<()> {
        // lr_find (which skips validation) has no table to show.
        if !s.skip_validate {
            println!("{}", Self::header(&s.metric_names));
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, s: &mut FitState) -> Result<()> {
        let bar = indicatif::ProgressBar::new(s.n_batches as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {msg} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        );
        bar.set_message(format!("{}/{}", s.epoch + 1, s.n_epochs));
        self.bar = Some(bar);
        Ok(())
    }
    fn on_batch_end(&mut self, _s: &mut FitState) -> Result<()> {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, s: &mut FitState) -> Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if !s.skip_validate {
            println!("{}", Self::row(s));
        }
        Ok(())
    }
    fn on_train_end(&mut self, s: &mut FitState) -> Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some(why) = &s.stopped_because {
            println!("stopped early: {why}");
        }
        Ok(())
    }
}

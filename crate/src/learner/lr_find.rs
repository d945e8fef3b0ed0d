//! The learning-rate range test (fastai's `LRFinder`): a callback that raises the learning
//! rate exponentially batch by batch and stops once the loss runs away. `Learner::lr_find`
//! runs it over `fit`, puts the weights and optimizer state back, and returns the sweep
//! ([`LrCurve`]). The sweep shows its own one progress line, not the progress table.

use crate::learner::Learner;
use crate::learner::callbacks::NanGuard;
use crate::learner::fit::{Callback, FitContext};
use crate::learner::lr_curve::{LOSS_FLOOR, LrCurve};
use crate::learner::progress::ProgressTable;
use crate::{Error, Result};

/// Options of the sweep (`Learner::lr_find_with`), with fastai's defaults: from 1e-7 to 10
/// over 100 batches, stopping once the loss diverges.
///
/// ```
/// use fastvision::learner::lr_find::LrFind;
/// let opts = LrFind { num_it: 40, ..Default::default() };
/// assert_eq!((opts.start_lr, opts.end_lr, opts.stop_div), (1e-7, 10.0, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFind {
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// Iterations of the sweep.
    pub num_it: usize,
    /// Stop once the smoothed loss runs away: past four times its best (see [`Divergence`]).
    pub stop_div: bool,
}

impl Default for LrFind {
    fn default() -> Self {
        LrFind {
            start_lr: 1e-7,
            end_lr: 10.0,
            num_it: 100,
            stop_div: true,
        }
    }
}

/// When a sweep's smoothed loss has run away: fastai's "past four times its best", made
/// robust for a model that is already trained, where fastai's rule stops a sweep on noise.
///
/// A nearly perfect model's batch losses are mostly tiny, with a spike whenever a batch holds
/// one of its few mistakes. The smoothed loss of the first few batches is a mean over almost
/// nothing, so fastai's rule sees "four times the best" within a handful of batches and ends
/// the sweep at its first learning rates (fastai issue 3658). Two changes, neither of which
/// moves a fresh model's stop:
/// - the first `num_it / 10` batches neither set the best nor stop the sweep: the
///   suggestions skip exactly those points, and the smoothing has not settled there yet;
/// - the best counts as no lower than [`Divergence::FLOOR`], so a classifier whose smoothed
///   loss is still that small on every batch is not called diverged. A real run-away leaves
///   it behind within a few batches, since the learning rate grows exponentially.
///
/// ```
/// use fastvision::learner::lr_find::Divergence;
/// let mut d = Divergence::new(100);
/// // Noise among the first batches is ignored ...
/// assert!(!d.diverged(3, 0.05));
/// // ... and so is a spike of a nearly perfect model's loss.
/// assert!(!d.diverged(20, 0.002));
/// assert!(!d.diverged(21, 0.02));
/// // A fresh model's rise past four times its best stops the sweep, as in fastai.
/// let mut d = Divergence::new(100);
/// assert!(!d.diverged(10, 0.9));
/// assert!(d.diverged(60, 3.7));
/// ```
#[derive(Debug, Clone)]
pub struct Divergence {
    skip: usize,
    best: f64,
}

impl Divergence {
    /// The lowest best loss the divergence test compares against (a smoothed cross-entropy).
    pub const FLOOR: f64 = LOSS_FLOOR;

    /// A fresh test for a sweep of `num_it` batches.
    pub fn new(num_it: usize) -> Self {
        Divergence {
            skip: num_it / 10,
            best: f64::INFINITY,
        }
    }

    /// Takes the smoothed loss after batch `iteration` (from 0) and says whether the sweep
    /// has diverged: a NaN, or more than four times the best so far.
    pub fn diverged(&mut self, iteration: usize, smooth: f64) -> bool {
        if smooth.is_nan() {
            return true;
        }
        if iteration < self.skip {
            return false;
        }
        if smooth > 4.0 * self.best.max(Self::FLOOR) {
            return true;
        }
        self.best = self.best.min(smooth);
        false
    }
}

/// The `lr_find` sweep: an exponentially growing learning rate, stopped when the loss turns
/// NaN or the smoothed loss runs away ([`Divergence`]).
#[derive(Debug, Clone)]
pub struct LrFinder {
    /// The sweep's range and length.
    pub opts: LrFind,
    divergence: Divergence,
    /// Whether the sweep shows its progress (the learner has its progress table).
    shown: bool,
}

impl LrFinder {
    /// A sweep from `opts.start_lr` to `opts.end_lr` over `opts.num_it` batches.
    pub fn new(opts: LrFind) -> Self {
        LrFinder {
            opts,
            divergence: Divergence::new(opts.num_it),
            shown: false,
        }
    }

    /// The learning rate at iteration `i`: `start · (end / start)^(i / num_it)`.
    ///
    /// ```
    /// use fastvision::learner::lr_find::LrFinder;
    /// let f = LrFinder::new(Default::default());
    /// assert_eq!(f.lr_at(0), 1e-7);
    /// assert!((f.lr_at(50) / 10f64.powf(-3.0) - 1.0).abs() < 1e-9);
    /// ```
    pub fn lr_at(&self, i: usize) -> f64 {
        let LrFind {
            start_lr,
            end_lr,
            num_it,
            ..
        } = self.opts;
        start_lr * (end_lr / start_lr).powf(i as f64 / num_it as f64)
    }
}

impl Callback for LrFinder {
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        cx.validate = false;
        // The sweep is num_it batches long, whatever the epochs it spans.
        cx.total_iterations = cx.total_iterations.min(self.opts.num_it);
        self.divergence = Divergence::new(self.opts.num_it);
        // One line for the whole sweep, where the learner shows its fits (not after no_bar).
        self.shown = cx.learn.cb::<ProgressTable>().is_some();
        if self.shown {
            cx.learn
                .renderer
                .start("lr_find", cx.total_iterations as u64);
        }
        Ok(())
    }
    fn on_batch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let lr = self.lr_at(cx.iteration);
        cx.lrs = vec![lr; cx.lrs.len()];
        Ok(())
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        // The sweep decides batch by batch, so it reads the loss every batch (fastai does too).
        let (raw, smooth) = (cx.last_loss(), cx.smooth_loss());
        let lr = self.lr_at(cx.iteration);
        let at = format!("{}/{}", cx.iteration + 1, self.opts.num_it);
        if !raw.is_finite() {
            cx.stop(format!(
                "lr_find stopped at {at} (lr {lr:.2e}): the loss became {raw}"
            ));
        } else if self.divergence.diverged(cx.iteration, smooth) && self.opts.stop_div {
            cx.stop(format!(
                "lr_find stopped at {at} (lr {lr:.2e}): the loss diverged, past 4x its lowest value"
            ));
        }
        if cx.iteration + 1 >= self.opts.num_it {
            cx.stop_training = true;
        }
        if self.shown {
            let done = cx.iteration as u64 + 1;
            cx.render(|r, cx| r.update(done, &mut || ProgressTable::loss_suffix(cx.smooth_loss())));
        }
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if self.shown {
            cx.learn.renderer.end(None);
            // Where it stopped early is no failure: the sweep always ends so.
            if let Some(why) = cx.stopped_because.clone() {
                cx.learn.renderer.note(&why);
            }
        }
        Ok(())
    }
}

impl Learner {
    /// The learning-rate range test with fastai's defaults (1e-7 to 10 over 100 batches):
    /// trains a few batches with an exponentially growing learning rate, records the loss,
    /// then puts the weights and optimizer state back exactly as they were (from memory;
    /// nothing is written to disk). Returns the sweep, with its suggestions and plot; the
    /// recorder keeps it too, for `learn.recorder.plot()`.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// let sweep = learn.lr_find().unwrap();
    /// let s = sweep.suggestions().unwrap();
    /// learn.recorder.plot().unwrap(); // the same sweep, fastai's way
    /// ```
    pub fn lr_find(&mut self) -> Result<LrCurve> {
        self.lr_find_with(LrFind::default())
    }

    /// [`Learner::lr_find`] with options: another range, length, or no stop on divergence.
    ///
    /// ```no_run
    /// use fastvision::learner::lr_find::LrFind;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.lr_find_with(LrFind { num_it: 40, ..Default::default() }).unwrap();
    /// ```
    pub fn lr_find_with(&mut self, opts: LrFind) -> Result<LrCurve> {
        let LrFind {
            start_lr,
            end_lr,
            num_it,
            ..
        } = opts;
        if !(start_lr > 0.0 && end_lr > start_lr && num_it >= 6) {
            return Err(Error::InvalidArgument(format!(
                "lr_find needs 0 < start_lr < end_lr and num_it >= 6 (got {start_lr}, {end_lr}, {num_it})"
            )));
        }
        let n_batches = self.data.train_dl.len().max(1);
        let epochs = num_it.div_ceil(n_batches);
        let weights = self.model.snapshot();
        let opt_state = self.opt.state();
        let mut finder = LrFinder::new(opts);
        // No NaN guard: the sweep is meant to find where the loss blows up, and it stops
        // there. No progress table: the sweep shows its own line.
        let sit_out = [
            std::any::TypeId::of::<NanGuard>(),
            std::any::TypeId::of::<ProgressTable>(),
        ];
        let lrs = vec![start_lr; self.n_groups()];
        // Whatever ends the sweep, an error or a panic, the weights go back first.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run(epochs, lrs, &mut [&mut finder], &sit_out)
        }));
        self.model.restore(&weights);
        self.opt.set_state(&opt_state);
        match result {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        self.recorder.is_lr_find = true;
        self.recorder.num_it = num_it;
        let sweep = self.recorder.lr_curve()?;
        if self.cb::<ProgressTable>().is_some() {
            // fastai's hint is for notebooks; the suggestions are for everyone.
            if crate::show::in_notebook() {
                self.renderer
                    .note("LR Finder is complete, type learn.recorder.plot() to see the graph.");
            }
            if let Ok(line) = sweep.suggestion_line() {
                self.renderer.note(&line);
            }
        }
        Ok(sweep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fastai's debiased exponential smoothing (β = 0.98) of a batch-loss trace.
    fn smoothed(raw: &[f64]) -> Vec<f64> {
        let mut avg = 0.0;
        (1..=raw.len())
            .map(|n| {
                avg = 0.98 * avg + 0.02 * raw[n - 1];
                avg / (1.0 - 0.98f64.powi(n as i32))
            })
            .collect()
    }

    /// A trained 95-class model's sweep: batches of 64 at about 0.002 loss, one mistake
    /// (loss 4) in some batches, until the learning rate gets too high from batch 70 on.
    fn trained_model_trace() -> Vec<f64> {
        (0..100)
            .map(|i| {
                let mistakes = if i < 70 {
                    // 0, 0, 1, 0, 0, 1, 1, 0, ... : a quarter of the batches or so.
                    usize::from(i % 4 == 2 || i % 7 == 5)
                } else {
                    (1usize << (i - 70).min(5)).min(48)
                };
                0.002 + mistakes as f64 * 4.0 / 64.0
            })
            .collect()
    }

    fn first_stop(trace: &[f64], mut diverged: impl FnMut(usize, f64) -> bool) -> Option<usize> {
        smoothed(trace)
            .into_iter()
            .enumerate()
            .position(|(i, s)| diverged(i, s))
    }

    #[test]
    fn a_trained_models_noise_does_not_end_the_sweep_but_its_run_away_does() {
        let trace = trained_model_trace();
        // fastai's own rule ends this sweep among its first batches.
        let mut best = f64::INFINITY;
        let fastai = first_stop(&trace, |_, s| {
            let stop = s > 4.0 * best;
            best = best.min(s);
            stop
        });
        assert!(
            fastai.is_some_and(|i| i < 10),
            "fastai's rule stopped at {fastai:?}"
        );
        // Ours runs until the loss really runs away, a few batches after it starts to.
        let mut d = Divergence::new(100);
        let ours = first_stop(&trace, |i, s| d.diverged(i, s));
        assert!(
            ours.is_some_and(|i| (71..=80).contains(&i)),
            "stopped at {ours:?}"
        );
    }

    #[test]
    fn a_fresh_models_sweep_stops_where_fastais_does() {
        // Loss falling from ln(95) to 0.5, then climbing steeply from batch 60.
        let trace: Vec<f64> = (0..100)
            .map(|i| {
                let i = i as f64;
                if i < 60.0 {
                    4.55 - 4.05 * i / 60.0
                } else {
                    0.5 * 1.3f64.powf(i - 60.0)
                }
            })
            .collect();
        let mut best = f64::INFINITY;
        let fastai = first_stop(&trace, |_, s| {
            let stop = s > 4.0 * best;
            best = best.min(s);
            stop
        });
        let mut d = Divergence::new(100);
        let ours = first_stop(&trace, |i, s| d.diverged(i, s));
        assert!(fastai.is_some());
        assert_eq!(ours, fastai);
    }
}

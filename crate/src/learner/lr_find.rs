//! The learning-rate range test (fastai's `LRFinder`): a callback that raises the learning
//! rate exponentially batch by batch and stops once the loss runs away. `Learner::lr_find`
//! runs it over `fit` and then puts the weights and optimizer state back.

use crate::Result;
use crate::learner::fit::{Callback, FitContext};

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
    /// Stop once the smoothed loss passes four times its best.
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

/// The `lr_find` sweep: an exponentially growing learning rate, stopped when the smoothed
/// loss passes four times its best or turns NaN.
#[derive(Debug, Clone)]
pub struct LrFinder {
    /// The sweep's range and length.
    pub opts: LrFind,
    best: f64,
}

impl LrFinder {
    /// A sweep from `opts.start_lr` to `opts.end_lr` over `opts.num_it` batches.
    pub fn new(opts: LrFind) -> Self {
        LrFinder {
            opts,
            best: f64::INFINITY,
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
        self.best = f64::INFINITY;
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
        if !raw.is_finite() {
            cx.stop(format!(
                "lr_find ended at lr {lr:.2e}: the loss became {raw}"
            ));
        } else if self.opts.stop_div && (smooth > 4.0 * self.best || smooth.is_nan()) {
            cx.stop(format!(
                "lr_find ended at lr {lr:.2e}, where the loss passed 4x its lowest value"
            ));
        }
        if smooth < self.best {
            self.best = smooth;
        }
        if cx.iteration + 1 >= self.opts.num_it {
            cx.stop_training = true;
        }
        Ok(())
    }
}

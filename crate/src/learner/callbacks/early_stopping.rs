//! Stops training when a monitored value stops improving (fastai's `EarlyStoppingCallback`).

use super::{Mode, Tracker};
use crate::Result;
use crate::learner::fit::{Callback, FitContext};

/// Ends the fit once `monitor` (`valid_loss`, `train_loss` or a metric's name) has not
/// improved by more than `min_delta` for more than `patience` epochs.
///
/// ```no_run
/// use fastvision::learner::callbacks::EarlyStopping;
/// # let mut learn: fastvision::Learner = unimplemented!();
/// let mut es = EarlyStopping::new("error_rate").patience(1).min_delta(0.001);
/// learn.fit_one_cycle_with(10, None, &mut [&mut es]).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    tracker: Tracker,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    wait: usize,
}

impl EarlyStopping {
    /// Watches `monitor`; lower is better for losses and error rates, higher for the rest.
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            tracker: Tracker::new(monitor),
            patience: 0,
            wait: 0,
        }
    }

    /// Epochs without improvement tolerated before stopping (default 0).
    pub fn patience(mut self, epochs: usize) -> Self {
        self.patience = epochs;
        self
    }

    /// The smallest change that counts as an improvement (default 0).
    pub fn min_delta(mut self, delta: f64) -> Self {
        self.tracker.min_delta = delta.abs();
        self
    }

    /// Overrides whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.tracker.mode = mode;
        self
    }

    /// The best value seen in the last fit.
    pub fn best(&self) -> Option<f64> {
        self.tracker.best
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        self.tracker.best = None;
        self.wait = 0;
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        match self.tracker.update(cx)? {
            Some(true) => self.wait = 0,
            Some(false) => {
                self.wait += 1;
                if self.wait > self.patience {
                    cx.stop(format!(
                        "early stopping at epoch {}: {} has not improved on {:.6} for {} epoch(s)",
                        cx.epoch,
                        self.tracker.monitor,
                        self.tracker.best.unwrap_or(f64::NAN),
                        self.wait
                    ));
                }
            }
            None => {}
        }
        Ok(())
    }
}

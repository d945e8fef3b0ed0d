//! Keeps the best model of a fit (fastai's `SaveModelCallback`).

use super::{MixedPrecision, Mode, Tracker};
use crate::Result;
use crate::learner::fit::{Callback, FitContext};

/// Saves the model (`learn.save(name)`) whenever `monitor` improves, and loads the best one
/// back when training ends, so the learner finishes with its best epoch's weights. With
/// [`SaveModel::every_epoch`] it saves `name_<epoch>` after every epoch instead; with
/// [`SaveModel::including_start`] the weights the fit starts from are a candidate too, so a
/// fine-tune that only makes the model worse ends where it began.
///
/// ```no_run
/// use fastvision::learner::callbacks::SaveModel;
/// # let mut learn: fastvision::Learner = unimplemented!();
/// learn.fit_one_cycle_with(5, None, &mut [&mut SaveModel::new("valid_loss", "bestmodel")]).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SaveModel {
    tracker: Tracker,
    /// The saved model's name under the learner's `model_dir`.
    pub name: String,
    /// Save after every epoch as `name_<epoch>` rather than on improvement.
    pub every_epoch: bool,
    /// The epoch whose weights were saved last.
    pub best_epoch: Option<usize>,
    /// Whether the starting weights compete ([`SaveModel::including_start`]).
    pub including_start: bool,
    /// The monitored value of the starting weights, when they competed. When it is finite
    /// and `best_epoch` is still `None` after the fit, no epoch beat it and the learner holds
    /// the starting weights again; a non-finite start (a broken model) never wins.
    pub start_value: Option<f64>,
}

impl SaveModel {
    /// Saves as `name` whenever `monitor` improves.
    pub fn new(monitor: &str, name: &str) -> Self {
        SaveModel {
            tracker: Tracker::new(monitor),
            name: name.to_string(),
            every_epoch: false,
            best_epoch: None,
            including_start: false,
            start_value: None,
        }
    }

    /// Lets the weights the fit starts from compete with its epochs: before the first epoch
    /// they are validated (one pass over the validation set) and saved as `name`, and an
    /// epoch is kept only if it beats them. A fine-tune that makes the monitored value worse
    /// in every epoch then ends with the weights it started from, whatever the machine's
    /// rounding made of it; fastai's callback would keep the best of the worse epochs.
    /// `monitor` must be a validation figure (`valid_loss` or a metric); the start is
    /// validated under the fit's mixed precision, as its epochs are, and not at all in a run
    /// that does not validate (`lr_find`). It cannot be combined with
    /// [`SaveModel::every_epoch`], which keeps every epoch rather than the best.
    ///
    /// ```no_run
    /// use fastvision::learner::callbacks::SaveModel;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// let mut keep = SaveModel::new("valid_loss", "stage-2").including_start();
    /// learn.fit_one_cycle_with(2, fastvision::slice(1e-6, 1e-4), &mut [&mut keep]).unwrap();
    /// let kept_the_start = keep.best_epoch.is_none();
    /// ```
    pub fn including_start(mut self) -> Self {
        self.including_start = true;
        self
    }

    /// Saves `name_<epoch>` after every epoch.
    pub fn every_epoch(mut self) -> Self {
        self.every_epoch = true;
        self
    }

    /// Overrides whether lower or higher is better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.tracker.mode = mode;
        self
    }
}

impl Callback for SaveModel {
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.tracker.best = None;
        self.best_epoch = None;
        self.start_value = None;
        if self.including_start && self.every_epoch {
            return Err(crate::Error::InvalidArgument(
                "SaveModel: including_start keeps the best of the start and the epochs, \
                 every_epoch keeps them all; choose one"
                    .into(),
            ));
        }
        if self.including_start && cx.validate {
            let monitor = &self.tracker.monitor;
            // Scored as the epochs will be: under the fit's autocast, if it has one.
            let device = cx.learn.model.device();
            let autocast = cx
                .cb::<MixedPrecision>()
                .and_then(|mp| mp.autocast_on(device));
            let value = cx.learn.metric(monitor);
            drop(autocast);
            let value = value.map_err(|e| {
                crate::Error::InvalidArgument(format!(
                    "SaveModel::including_start validates the starting weights by {monitor:?}, \
                     which must be valid_loss or a metric: {e}"
                ))
            })?;
            cx.learn.save(&self.name)?;
            // A NaN start (a broken model) is no candidate: the first finite epoch beats it.
            if value.is_finite() {
                self.tracker.best = Some(value);
            }
            self.start_value = Some(value);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if self.every_epoch {
            cx.learn.save(&format!("{}_{}", self.name, cx.epoch))?;
            self.best_epoch = Some(cx.epoch);
        } else if self.tracker.update(cx)? == Some(true) {
            cx.learn.save(&self.name)?;
            self.best_epoch = Some(cx.epoch);
        }
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        let start_won = self.start_value.is_some_and(f64::is_finite);
        if !self.every_epoch && (self.best_epoch.is_some() || start_won) {
            cx.learn.load(&self.name)?;
        }
        Ok(())
    }
}

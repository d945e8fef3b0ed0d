//! Keeps the best model of a fit (fastai's `SaveModelCallback`).

use super::{Mode, Tracker};
use crate::Result;
use crate::learner::fit::{Callback, FitContext};

/// Saves the model (`learn.save(name)`) whenever `monitor` improves, and loads the best one
/// back when training ends, so the learner finishes with its best epoch's weights. With
/// [`SaveModel::every_epoch`] it saves `name_<epoch>` after every epoch instead.
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
}

impl SaveModel {
    /// Saves as `name` whenever `monitor` improves.
    pub fn new(monitor: &str, name: &str) -> Self {
        SaveModel {
            tracker: Tracker::new(monitor),
            name: name.to_string(),
            every_epoch: false,
            best_epoch: None,
        }
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
    fn on_train_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        self.tracker.best = None;
        self.best_epoch = None;
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
        if !self.every_epoch && self.best_epoch.is_some() {
            cx.learn.load(&self.name)?;
        }
        Ok(())
    }
}

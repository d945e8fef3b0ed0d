//! The callbacks fastai ships for the training loop, one file each. Each is a few lines over
//! the hooks of [`crate::learner::fit::Callback`]; a learner starts with the progress table and
//! the NaN guard in `learn.callbacks` (and adds the fp16 loss scaler to each fit after
//! `to_fp16`; `to_bf16` needs none); the others are yours to add:
//!
//! ```no_run
//! use fastvision::learner::callbacks::{EarlyStopping, GradientClipping, SaveModel};
//! # let mut learn: fastvision::Learner = unimplemented!();
//! learn.add_cb(GradientClipping::new(1.0));
//! learn.fit_one_cycle_with(10, None, &mut [&mut EarlyStopping::new("valid_loss").patience(2),
//!                                          &mut SaveModel::new("error_rate", "best")]).unwrap();
//! ```
//!
//! # Writing a callback
//!
//! A callback sees the whole training state through [`FitContext`]: the batch, the logits,
//! the loss tensor, the learner's model and optimizer. Label smoothing, for example, replaces
//! the loss before backward (and the recorder logs the replaced loss):
//!
//! ```
//! use fastvision::learner::fit::{Callback, FitContext};
//! use tch::Kind;
//!
//! struct LabelSmoothing(f64);
//!
//! impl Callback for LabelSmoothing {
//!     fn on_loss(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
//!         // (1 - ε)·cross-entropy + ε·(cross-entropy against the uniform distribution)
//!         let uniform = -cx.logits.log_softmax(-1, Kind::Float).mean(Kind::Float);
//!         cx.loss = (1.0 - self.0) * &cx.loss + self.0 * uniform;
//!         Ok(())
//!     }
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = fastvision::generate_sample(&dir.path().join("s"), 3, 8, 1).unwrap();
//! # let opts = fastvision::FromFolder { train: "Training".into(), valid: "Test".into(),
//! #     size: 32, bs: 8, device: Some(tch::Device::Cpu), ..Default::default() };
//! # let data = fastvision::ImageDataBunch::from_folder(&path, opts).unwrap();
//! # let lopts = fastvision::learner::CnnOptions { pretrained: false, ..Default::default() };
//! let mut learn = fastvision::cnn_learner_with(&data, fastvision::resnet18,
//!                                              &[fastvision::error_rate], lopts).unwrap();
//! learn.add_cb(LabelSmoothing(0.1));
//! learn.fit_one_cycle(1, 1e-3).unwrap();
//! assert!(learn.recorder.raw_losses.iter().all(|l| l.is_finite()));
//! ```
//!
//! Validation runs through the same callbacks: `on_validate_begin`, `on_validate_batch_end`
//! for each batch, then `on_validate_end` with `cx.valid` set. A callback's state stays with
//! the learner, and `learn.cb::<T>()` reads it after the fit:
//!
//! ```
//! use fastvision::learner::fit::{Callback, FitContext};
//!
//! /// The validation loss of every epoch, as the validation pass ends.
//! #[derive(Default)]
//! struct ValidLosses(Vec<f64>);
//!
//! impl Callback for ValidLosses {
//!     fn on_validate_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
//!         self.0.extend(cx.valid.as_ref().map(|(loss, _)| *loss));
//!         Ok(())
//!     }
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = fastvision::generate_sample(&dir.path().join("s"), 3, 8, 1).unwrap();
//! # let opts = fastvision::FromFolder { train: "Training".into(), valid: "Test".into(),
//! #     size: 32, bs: 8, device: Some(tch::Device::Cpu), ..Default::default() };
//! # let data = fastvision::ImageDataBunch::from_folder(&path, opts).unwrap();
//! # let lopts = fastvision::learner::CnnOptions { pretrained: false, ..Default::default() };
//! # let mut learn = fastvision::cnn_learner_with(&data, fastvision::resnet18,
//! #                                              &[fastvision::error_rate], lopts).unwrap();
//! learn.add_cb(ValidLosses::default());
//! learn.fit_one_cycle(2, 1e-3).unwrap();
//! let seen = &learn.cb::<ValidLosses>().unwrap().0;
//! assert_eq!(seen.len(), 2);
//! assert_eq!(Some(seen[1]), learn.recorder.epochs[1].valid_loss);
//! ```

mod clip;
mod early_stopping;
mod interrupt;
mod mixed_precision;
mod nan_guard;
mod save_model;

pub use clip::{GradientClipping, clip_grad_norm};
pub use early_stopping::EarlyStopping;
pub use interrupt::Interrupt;
pub use mixed_precision::{MixedPrecision, Precision, autocast};
pub use nan_guard::NanGuard;
pub use save_model::SaveModel;

use crate::learner::fit::FitContext;
use crate::{Error, Result};

/// Whether a smaller or a larger value of a monitored quantity is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lower is better (losses, error rates).
    Min,
    /// Higher is better (accuracy, F1).
    Max,
}

impl Mode {
    /// fastai's `mode='auto'`: lower is better for names with "loss" or "error" in them.
    ///
    /// ```
    /// use fastvision::learner::callbacks::Mode;
    /// assert_eq!(Mode::auto("valid_loss"), Mode::Min);
    /// assert_eq!(Mode::auto("accuracy"), Mode::Max);
    /// ```
    pub fn auto(monitor: &str) -> Mode {
        if monitor.contains("loss") || monitor.contains("error") {
            Mode::Min
        } else {
            Mode::Max
        }
    }
}

/// The best value so far of one monitored quantity (fastai's `TrackerCallback`).
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pub monitor: String,
    pub mode: Mode,
    pub min_delta: f64,
    pub best: Option<f64>,
}

impl Tracker {
    pub fn new(monitor: &str) -> Self {
        Tracker {
            monitor: monitor.to_string(),
            mode: Mode::auto(monitor),
            min_delta: 0.0,
            best: None,
        }
    }

    /// After validation: `Some(true)` when the monitored value beat the best so far (and
    /// becomes the best), `Some(false)` when it did not, `None` when nothing was validated.
    pub fn update(&mut self, cx: &mut FitContext) -> Result<Option<bool>> {
        if cx.valid.is_none() {
            return Ok(None);
        }
        let Some(current) = cx.monitored(&self.monitor) else {
            let mut names = vec!["valid_loss".to_string(), "train_loss".to_string()];
            names.extend(cx.metric_names.iter().cloned());
            return Err(Error::InvalidArgument(format!(
                "cannot monitor '{}': this learner reports {}",
                self.monitor,
                names.join(", ")
            )));
        };
        let better = match (self.best, self.mode) {
            (None, _) => current.is_finite(),
            (Some(best), Mode::Min) => current < best - self.min_delta,
            (Some(best), Mode::Max) => current > best + self.min_delta,
        };
        if better {
            self.best = Some(current);
        }
        Ok(Some(better))
    }
}

use crate::learner::fit::{Callback, Hole};
use crate::learner::progress::ProgressTable;

/// The learner's list of callbacks: adding, reading back and removing them.
impl crate::Learner {
    /// Adds a callback to every later fit, `fit_one_cycle` and `lr_find` (fastai's
    /// `callback_fns`). Callbacks for a single call go to the `_with` methods instead.
    ///
    /// ```no_run
    /// use fastvision::learner::callbacks::GradientClipping;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.add_cb(GradientClipping::new(1.0));
    /// learn.fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn add_cb(&mut self, cb: impl Callback + 'static) -> &mut Self {
        self.callbacks.push(Box::new(cb));
        self
    }

    /// The callback of type `T` among [`Learner::callbacks`], to read its state after a fit.
    ///
    /// ```no_run
    /// use fastvision::learner::callbacks::EarlyStopping;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.add_cb(EarlyStopping::new("valid_loss"));
    /// learn.fit_one_cycle(8, None).unwrap();
    /// println!("{:?}", learn.cb::<EarlyStopping>().unwrap());
    /// ```
    pub fn cb<T: Callback>(&self) -> Option<&T> {
        self.callbacks
            .iter()
            .find_map(|cb| (cb.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
    }

    /// The learner's callbacks, in the order they were added (fastai's `learn.cbs`); during
    /// a fit, less the one whose hook is running.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let names: Vec<String> = learn.cbs().map(|cb| cb.name()).collect();
    /// assert_eq!(names, ["ProgressTable", "NanGuard"]);
    /// ```
    pub fn cbs(&self) -> impl Iterator<Item = &dyn Callback> {
        self.callbacks
            .iter()
            .map(|cb| cb.as_ref())
            .filter(|cb| Hole::of(*cb).is_none())
    }

    /// Removes the callbacks of type `T` (a default one too) and says whether there was one.
    ///
    /// ```no_run
    /// use fastvision::learner::callbacks::NanGuard;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// assert!(learn.remove_cb::<NanGuard>()); // train without the NaN guard
    /// ```
    pub fn remove_cb<T: Callback>(&mut self) -> bool {
        self.remove_cbs_where(|t| t == std::any::TypeId::of::<T>())
    }

    /// Removes every callback, the defaults too (the recorder still runs).
    pub fn clear_cbs(&mut self) -> &mut Self {
        self.remove_cbs_where(|_| true);
        self
    }

    /// Removes the callbacks whose type `matches`; during a fit (from a hook) each leaves a
    /// [`Hole`] that keeps the others' places until the fit ends, and hears no more events.
    fn remove_cbs_where(&mut self, matches: impl Fn(std::any::TypeId) -> bool) -> bool {
        let mut removed = false;
        if !self.in_fit {
            self.callbacks.retain(|cb| {
                let hit = matches((cb.as_ref() as &dyn std::any::Any).type_id());
                removed |= hit;
                !hit
            });
            return removed;
        }
        for entry in self.callbacks.iter_mut() {
            let t = (entry.as_ref() as &dyn std::any::Any).type_id();
            if let Some(hole) = (entry.as_mut() as &mut dyn std::any::Any).downcast_mut::<Hole>() {
                // The callback whose hook is running removes itself, or is removed.
                if let Some(running) = hole.running
                    && !hole.removed
                    && matches(running)
                {
                    hole.removed = true;
                    removed = true;
                }
            } else if matches(t) {
                *entry = Box::new(Hole {
                    running: None,
                    removed: true,
                });
                removed = true;
            }
        }
        removed
    }

    /// Fits without the progress table or the live progress line (fastai's `no_bar()` and
    /// `no_logging()`); `learn.add_cb(ProgressTable::default())` brings them back.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.no_bar().fit_one_cycle(1, None).unwrap();
    /// ```
    pub fn no_bar(&mut self) -> &mut Self {
        self.remove_cb::<ProgressTable>();
        self
    }
}

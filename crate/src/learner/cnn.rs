//! `cnn_learner`: a pretrained body from [`Arch`], fastai's head for the data's classes, and
//! the body frozen, as the lesson starts: one way to build a [`Learner`], with fastai's loss
//! (cross-entropy) and optimizer (AdamW).

use crate::data::folder::ImageDataBunch;
use crate::learner::Learner;
use crate::learner::metrics::MetricFn;
use crate::learner::optim::adamw;
use crate::loss::CrossEntropyFlat;
use crate::models::weights::{copy_checked, pretrained_weights, read_tensors};
use crate::models::{Arch, Model};
use crate::{Error, Result};

/// Options of [`cnn_learner_with`].
#[derive(Debug, Clone)]
pub struct CnnOptions {
    /// Start from ImageNet weights (and freeze the body), as the lesson does.
    pub pretrained: bool,
    /// Seed for the head's initialisation and dropout.
    pub seed: u64,
    /// Decoupled weight decay.
    pub wd: f64,
    /// Weights and batches in the channels-last layout (see [`Learner::to_channels_last`]);
    /// `None` takes the faster layout for the data's device
    /// ([`crate::device::prefers_channels_last`]).
    pub channels_last: Option<bool>,
}

impl Default for CnnOptions {
    fn default() -> Self {
        CnnOptions {
            pretrained: true,
            seed: 42,
            wd: 1e-2,
            channels_last: None,
        }
    }
}

/// A CNN learner for `data` with fastai's head on `arch`'s body, pretrained and frozen.
///
/// ```no_run
/// use fastvision::{cnn_learner, error_rate, models::mobilenet_v2};
/// # let data: fastvision::ImageDataBunch = unimplemented!();
/// let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
/// learn.fit_one_cycle(1, None).unwrap();
/// ```
pub fn cnn_learner(data: &ImageDataBunch, arch: Arch, metrics: &[MetricFn]) -> Result<Learner> {
    cnn_learner_with(data, arch, metrics, CnnOptions::default())
}

/// [`cnn_learner`] with options (random initialisation, seed, weight decay).
pub fn cnn_learner_with(
    data: &ImageDataBunch,
    arch: Arch,
    metrics: &[MetricFn],
    opts: CnnOptions,
) -> Result<Learner> {
    // The learner's own seed, set once where it is asked for: the head's fresh weights, then
    // every fit's dropout, follow from it. Fits do not reseed.
    crate::seed_everything(opts.seed);
    let mut model = Model::new(
        arch,
        data.classes.clone(),
        data.train_dl.dataset.size,
        data.stats(),
        data.train_dl.device,
    )?;
    model.resize = data.train_dl.dataset.resize;
    if let Some(on) = opts.channels_last {
        model.set_layout(on);
    }
    // The draws a fit makes start from the seed itself, not from wherever the head's
    // initialisation left the generator, so the first fit is the same whatever the head's size.
    crate::seed_everything(opts.seed);
    let mut learn =
        Learner::new(data.clone(), model, CrossEntropyFlat, adamw(opts.wd))?.with_metrics(metrics);
    if opts.pretrained {
        let weights = pretrained_weights(arch)?;
        // Only the body comes from ImageNet; the head is new (and the file has no `head.*`).
        // Every body tensor must be in the file, or nothing is loaded.
        copy_checked(&learn.model.vs, &read_tensors(&weights)?, &weights, |n| {
            !n.starts_with("head.")
        })
        .map_err(|e| Error::Weights(format!("{e} (not {arch}'s ImageNet weights?)")))?;
        learn.freeze();
    }
    Ok(learn)
}

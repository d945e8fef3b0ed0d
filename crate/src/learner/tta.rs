//! Test-time augmentation, fastai v1's `learn.TTA()`: the plain predictions mixed with the
//! mean over eight augmented views of every image. The interpretation's TTA
//! ([`crate::ClassificationInterpretation::from_learner_tta`]) is this same code.

use tch::Tensor;

use crate::Result;
use crate::data::folder::DatasetType;
use crate::data::loader::DataLoader;
use crate::data::transforms::Transforms;
use crate::learner::Learner;
use crate::loss::LossFunc;
use crate::models::Model;
use crate::show::Progress;

/// fastai v1's eight test-time views: four corner zooms, each plain and mirrored.
pub const N_VIEWS: usize = 8;

/// TTA's settings, fastai v1's `TTA(beta=0.4, scale=1.35, ds_type=DatasetType.Valid)`.
///
/// ```
/// let t = fastvision::learner::tta::Tta::default();
/// assert_eq!((t.beta, t.scale), (0.4, 1.35));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tta {
    /// Weight of the plain prediction; the views' mean gets `1 - beta`.
    pub beta: f64,
    /// The views' zoom towards each corner.
    pub scale: f64,
    /// Which set to predict.
    pub ds_type: DatasetType,
}

impl Default for Tta {
    fn default() -> Self {
        Tta {
            beta: 0.4,
            scale: 1.35,
            ds_type: DatasetType::Valid,
        }
    }
}

impl Learner {
    /// Predictions with test-time augmentation on the validation set, fastai v1's
    /// `learn.TTA()`: `(probabilities [N, C], targets [N])`, on the CPU.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (preds, y) = learn.tta().unwrap();
    /// println!("error rate with TTA: {:.4}", fastvision::error_rate.compute(&preds, &y));
    /// ```
    pub fn tta(&self) -> Result<(Tensor, Tensor)> {
        self.tta_with(Tta::default())
    }

    /// [`Learner::tta`] with other settings.
    ///
    /// ```no_run
    /// use fastvision::learner::tta::Tta;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (preds, y) = learn.tta_with(Tta { beta: 0.0, ..Tta::default() }).unwrap();
    /// ```
    pub fn tta_with(&self, opts: Tta) -> Result<(Tensor, Tensor)> {
        let tfms = self
            .data
            .train_dl
            .tfms
            .unwrap_or_else(crate::get_transforms);
        tta_preds(
            &self.model,
            &*self.loss_func,
            self.data.dl(opts.ds_type),
            tfms,
            opts,
        )
    }
}

/// The loader `dl` (in its order, without its shuffling) showing view `view` of `tfms`.
pub fn view_loader(dl: &DataLoader, tfms: Transforms, view: usize, scale: f64) -> DataLoader {
    DataLoader {
        tfms: Some(tfms.tta_view(view, scale)),
        shuffle: false,
        drop_last: false,
        // Each view draws its own rotation, warp and lighting.
        seed: dl.seed.wrapping_add(1 + view as u64),
        ..dl.clone()
    }
}

/// `beta * plain + (1 - beta) * mean of the eight views`, and the targets: the whole of TTA.
pub(crate) fn tta_preds(
    model: &Model,
    loss: &dyn LossFunc,
    dl: &DataLoader,
    tfms: Transforms,
    opts: Tta,
) -> Result<(Tensor, Tensor)> {
    let plain_dl = DataLoader {
        shuffle: false,
        drop_last: false,
        ..dl.clone()
    };
    let progress = Progress::new("TTA", ((N_VIEWS + 1) * plain_dl.len()) as u64);
    let (plain, targets, _) = model.get_preds_with(&plain_dl, loss, &progress)?;
    let mut sum = plain.zeros_like();
    for view in 0..N_VIEWS {
        let (probs, _, _) = model.get_preds_with(
            &view_loader(&plain_dl, tfms, view, opts.scale),
            loss,
            &progress,
        )?;
        sum += probs;
    }
    progress.finish();
    let mean = sum / N_VIEWS as f64;
    Ok((&plain * opts.beta + mean * (1.0 - opts.beta), targets))
}

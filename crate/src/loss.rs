//! Loss functions: fastai's `loss_func` (its `fastai.losses`). A learner holds one ([`crate::Learner::loss_func`]),
//! and every place that needs a loss asks it: the training step, validation and the per-item
//! losses of `get_preds` that the interpretation ranks.

use tch::{Kind, Reduction, Tensor};

/// What a learner trains on: the mean loss of a batch, the same loss per item (fastai's
/// `reduction='none'`, which top losses ranks), and the activation that turns the model's
/// outputs into predictions (softmax for classification).
///
/// ```
/// use fastvision::loss::{CrossEntropyFlat, LossFunc};
/// use tch::{Kind, Tensor};
/// let logits = Tensor::from_slice2(&[[2.0f32, 0.0], [0.0, 2.0]]);
/// let y = Tensor::from_slice(&[0i64, 0]);
/// let per_item = Vec::<f32>::try_from(CrossEntropyFlat.per_item(&logits, &y)).unwrap();
/// assert!(per_item[0] < per_item[1]);
/// ```
pub trait LossFunc {
    /// The loss of each item `[B]`, from outputs `[B, C]` and class indices `[B]`.
    fn per_item(&self, logits: &Tensor, targets: &Tensor) -> Tensor;

    /// The batch's loss, a scalar: the mean of [`LossFunc::per_item`] unless the loss has a
    /// faster fused form.
    fn loss(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        self.per_item(logits, targets).mean(Kind::Float)
    }

    /// Predictions from outputs: class probabilities `[B, C]` (fastai's `activation`).
    fn activation(&self, logits: &Tensor) -> Tensor {
        logits.softmax(-1, Kind::Float)
    }

    /// The name shown in the learner's summary.
    fn name(&self) -> String;
}

/// Cross-entropy over class indices: fastai's default `CrossEntropyLossFlat`.
///
/// ```
/// use fastvision::loss::{CrossEntropyFlat, LossFunc};
/// use tch::Tensor;
/// let logits = Tensor::from_slice2(&[[0.0f32, 0.0]]);
/// let l = CrossEntropyFlat.loss(&logits, &Tensor::from_slice(&[1i64])).double_value(&[]);
/// assert!((l - 2f64.ln()).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropyFlat;

impl LossFunc for CrossEntropyFlat {
    fn per_item(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::None, -100, 0.0)
    }

    fn loss(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        logits.cross_entropy_for_logits(targets)
    }

    fn name(&self) -> String {
        "CrossEntropyFlat".into()
    }
}

/// fastai's `LabelSmoothingCrossEntropy(eps=0.1)`: cross-entropy against a target that puts
/// `1 - eps` on the true class and spreads `eps` evenly over all `C` classes, written as
/// fastai writes it: `eps/C * -Σ log p + (1 - eps) * nll`.
///
/// ```
/// use fastvision::loss::{LabelSmoothingCrossEntropy, LossFunc};
/// use tch::Tensor;
/// // Two classes, equal logits: every term is ln 2, whatever eps is.
/// let l = LabelSmoothingCrossEntropy::default()
///     .loss(&Tensor::from_slice2(&[[0.0f32, 0.0]]), &Tensor::from_slice(&[0i64]))
///     .double_value(&[]);
/// assert!((l - 2f64.ln()).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LabelSmoothingCrossEntropy {
    /// The share of the target spread over all classes (fastai's default 0.1).
    pub eps: f64,
}

impl Default for LabelSmoothingCrossEntropy {
    fn default() -> Self {
        LabelSmoothingCrossEntropy { eps: 0.1 }
    }
}

impl LossFunc for LabelSmoothingCrossEntropy {
    fn per_item(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let c = logits.size()[1] as f64;
        let log_preds = logits.log_softmax(1, Kind::Float);
        let smooth = -log_preds.sum_dim_intlist(1, false, Kind::Float);
        let nll = log_preds.nll_loss_nd::<Tensor>(targets, None, Reduction::None, -100);
        smooth * (self.eps / c) + nll * (1.0 - self.eps)
    }

    fn name(&self) -> String {
        format!("LabelSmoothingCrossEntropy(eps={})", self.eps)
    }
}

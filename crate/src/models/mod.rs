//! Models: what a learner can train ([`network`]: any [`Network`], or a [`Cnn`]), the
//! architectures ([`archs`]), fastai's classification head ([`head`]),
//! pretrained weights ([`weights`]), the [`Model`] a learner trains and `load_learner` gives
//! back ([`model`]), and its file ([`export`]). Parameter names follow torchvision, so torchvision
//! checkpoints load unchanged.

pub mod archs;
pub mod export;
pub mod head;
pub mod model;
pub mod network;
pub mod predict_folder;
pub mod weights;

pub use archs::{Arch, Stage, Weights, mobilenet_v2, resnet18, resnet34, resnet50};
pub use model::{Model, Prediction};
pub use network::{Cnn, Network};

/// Whether a forward pass trains (dropout on, BatchNorm on batch statistics, which it also
/// updates) or evaluates, as PyTorch's `model.train()` / `model.eval()`.
///
/// ```
/// use fastvision::models::Mode;
/// assert!(Mode::Train.is_train() && !Mode::Eval.is_train());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training behaviour.
    Train,
    /// Inference behaviour.
    Eval,
}

impl Mode {
    /// tch's `train` flag for `forward_t`.
    pub fn is_train(self) -> bool {
        self == Mode::Train
    }
}

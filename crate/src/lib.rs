//! # fastvision
//!
//! fastai's lesson-1 image classifier (Fruits 360, `cnn_learner`, `fit_one_cycle`, `lr_find`,
//! top losses) rebuilt on libtorch, for Rust programs and Jupyter notebooks via evcxr.
//! Names follow fastai v1, so every call of the lesson is recognisable.
//!
//! Data flows one way: source → verify → dataset → loader → learner → interpretation → figures;
//! after the lesson, [`clean`] turns what the model learned back on the data.
//!
//! ```
//! let device = fastvision::default_device().unwrap();
//! println!("computing on {}", fastvision::device::device_name(device));
//! ```

pub mod clean;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod info;
pub mod interpret;
pub mod io;
pub mod learner;
pub mod lesson;
pub mod loss;
pub mod models;
pub mod serve;
pub mod show;
pub mod torch_ext;

/// Everything the lesson's notebook cells call, in one import.
///
/// ```
/// use fastvision::prelude::*;
/// let tfms = get_transforms();
/// assert_eq!(resnet34.name(), "resnet34");
/// ```
pub mod prelude {
    pub use crate::clean::{DatasetFormatter, ImageCleaner, Leakage, Similars};
    pub use crate::data::download::{download_kaggle_dataset, fruits360_layout, untar_data};
    pub use crate::data::folder::DatasetType;
    pub use crate::data::from_names::get_image_files;
    pub use crate::data::image::Decode;
    pub use crate::data::image::ResizeMethod;
    pub use crate::interpret::{ConfusionPlot, TopLosses};
    pub use crate::learner::CnnOptions;
    pub use crate::learner::callbacks::{EarlyStopping, GradientClipping, NanGuard, SaveModel};
    pub use crate::learner::lr_curve::{LrCurve, LrPlot};
    pub use crate::learner::lr_find::LrFind;
    pub use crate::learner::metrics::MetricFn;
    pub use crate::learner::optim::{AdamW, OptFunc, Optimizer, Sgd, adamw, sgd};
    pub use crate::learner::tta::Tta;
    pub use crate::lesson::{DataSource, Settings, photos_path};
    pub use crate::loss::{CrossEntropyFlat, LabelSmoothingCrossEntropy, LossFunc};
    pub use crate::models::{Arch, Cnn, Mode, Model, Network, Prediction, Stage};
    pub use crate::show::render::{Console, LogRenderer, Renderer};
    pub use crate::{
        ClassificationInterpretation, Error, Figure, FromFolder, ImageDataBunch, Learner, Lr,
        Result, Stats, Transforms, VerifyOptions, VerifyReport, accuracy, cnn_learner,
        cnn_learner_with, default_device, error_rate, generate_sample, get_transforms,
        imagenet_stats, load_learner, mobilenet_v2, resnet18, resnet34, resnet50, seed_everything,
        slice, top_k_accuracy, verify_images,
    };
    pub use std::path::{Path, PathBuf};
    pub use tch::Tensor;
}

/// The README's Rust examples, compiled (and, where they train, run) as doc tests, so what a
/// newcomer copies from it works.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// libtorch's bindings, as fastvision uses them: a notebook that depends only on fastvision can
/// still name their types (`fastvision::tch::Tensor`), which evcxr needs to keep a tensor from
/// one cell to the next.
pub use tch;

pub use data::folder::{FromFolder, ImageDataBunch};
pub use data::sample::generate_sample;
pub use data::transforms::{Stats, Transforms, get_transforms, imagenet_stats};
pub use data::verify::{VerifyOptions, VerifyReport, verify_images};
pub use device::default_device;
pub use error::{Error, Result};
pub use info::Info;
pub use interpret::ClassificationInterpretation;
pub use learner::metrics::{accuracy, error_rate, top_k_accuracy};
pub use learner::one_cycle::{Lr, slice};
pub use learner::{Learner, cnn_learner, cnn_learner_with};
pub use models::Model;
pub use models::export::load_learner;
pub use models::{mobilenet_v2, resnet18, resnet34, resnet50};
pub use show::Figure;

/// Seeds libtorch's random generator, which draws the fresh weights of a head and dropout's
/// masks: the same seed, then the same calls, give the same run. fastvision never reseeds by
/// itself during a fit; `cnn_learner` seeds once, with its `CnnOptions::seed`, before it draws
/// the head. The data's shuffling and augmentation have their own seed
/// ([`FromFolder::seed`]).
///
/// ```
/// fastvision::seed_everything(7);
/// let a = tch::Tensor::randn([3], (tch::Kind::Float, tch::Device::Cpu));
/// fastvision::seed_everything(7);
/// let b = tch::Tensor::randn([3], (tch::Kind::Float, tch::Device::Cpu));
/// assert!(a.equal(&b));
/// ```
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

//! The training half of the lesson: a [`Learner`] is a [`Model`] with its data, optimizer,
//! metrics, recorder and callbacks; `cnn_learner` makes one, `fit_one_cycle` and `lr_find`
//! train it, `freeze`/`unfreeze` choose what trains. The loop lives in [`fit`]; everything
//! else is a [`fit::Callback`] over it ([`one_cycle`], [`lr_find`], [`recorder`],
//! [`progress`], [`callbacks`]) or a thin method here. Using the trained network (predict,
//! export, the evaluation loop) is the model's own ([`crate::models::model`]).

pub mod callbacks;
pub mod cnn;
pub mod fit;
pub mod lr_find;
pub mod metrics;
pub mod one_cycle;
pub mod optim;
pub mod persist;
pub mod progress;
pub mod recorder;
pub mod show_results;
pub mod summary;
pub mod tta;
pub mod validate;

pub use cnn::{CnnOptions, cnn_learner, cnn_learner_with};

use std::path::{Path, PathBuf};

use tch::{Tensor, nn};

use crate::data::folder::ImageDataBunch;
use crate::loss::{CrossEntropyFlat, LossFunc};
use crate::models::predict_folder::FolderPredictions;
use crate::models::{Arch, Model, Prediction};
use crate::{Error, Result};
use callbacks::{MixedPrecision, NanGuard, Precision};
use fit::{Callback, FitContext};
use metrics::MetricFn;
use one_cycle::{Lr, OneCycle};
use optim::AdamW;
use progress::ProgressTable;
use recorder::Recorder;

/// Layer groups: two for the body, one for the head.
pub const N_GROUPS: usize = 3;

/// A model, its data, optimizer and training history: fastai's `Learner`.
pub struct Learner {
    /// The network being trained, with its classes, input size and normalisation.
    pub model: Model,
    /// The data it trains and validates on.
    pub data: ImageDataBunch,
    /// The optimizer.
    pub opt: AdamW,
    /// The loss the fit trains on, validation reports and the interpretation ranks by
    /// (fastai's `loss_func`; [`crate::loss::CrossEntropyFlat`] unless set, e.g. to
    /// [`crate::loss::LabelSmoothingCrossEntropy`]).
    pub loss_func: Box<dyn LossFunc>,
    /// What happened in the last fit.
    pub recorder: Recorder,
    /// Metrics shown after each epoch.
    pub metrics: Vec<MetricFn>,
    /// Callbacks of every fit (fastai's `learn.cbs`): at first the defaults, the progress
    /// table ([`ProgressTable`]) and the NaN guard ([`NanGuard`], not run by `lr_find`), then
    /// those from [`Learner::add_cb`] and the mixed precision that [`Learner::to_fp16`] adds.
    /// The recorder ([`Learner::recorder`]) always runs.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Where `save` and `load` put models; default `<data path>/models`.
    pub model_dir: PathBuf,
    frozen_to: usize,
    epochs_done: u64,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Learner({}, {} classes, {}px, {} frozen group(s), device {})",
            self.model.arch,
            self.model.classes.len(),
            self.model.size,
            self.frozen_to,
            crate::device::device_name(self.model.device())
        )
    }
}

impl Learner {
    /// A learner training `model` on `data`, judged by `metrics`, with AdamW over the model's
    /// three layer groups (two for the body, one for the head) and nothing frozen. The model
    /// must know the data's classes in the data's order, and take its image size: anything
    /// else is an error that names the first difference, never a learner that mislabels.
    ///
    /// ```no_run
    /// use fastvision::{Learner, error_rate, models::Model};
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let model = Model::new(fastvision::mobilenet_v2, data.classes.clone(), 100, data.stats(), tch::Device::Cpu).unwrap();
    /// let mut learn = Learner::new(model, data, &[error_rate]).unwrap();
    /// learn.fit_one_cycle(1, 1e-3).unwrap();
    /// ```
    pub fn new(model: Model, data: ImageDataBunch, metrics: &[MetricFn]) -> Result<Learner> {
        crate::models::export::check_classes(
            &model.classes,
            &data.classes,
            "the model",
            "the data",
        )?;
        let resize = data.train_dl.dataset.resize;
        if model.resize != resize {
            return Err(Error::InvalidArgument(format!(
                "the model makes photos square by {:?} and the data by {resize:?}: build the \
                 data with .resize_method(ResizeMethod::{:?})",
                model.resize, model.resize
            )));
        }
        let size = data.train_dl.dataset.size;
        if model.size != size {
            return Err(Error::InvalidArgument(format!(
                "the model takes {0}x{0} images and the data is {1}x{1}: build the data with \
                 .size({0})",
                model.size, size
            )));
        }
        let opt = AdamW::new(Self::param_groups(&model.vs, model.arch));
        let callbacks: Vec<Box<dyn Callback>> = vec![
            Box::new(ProgressTable::default()),
            Box::new(NanGuard::new(model.device())),
        ];
        Ok(Learner {
            model_dir: data.path.join("models"),
            model,
            data,
            opt,
            loss_func: Box::new(CrossEntropyFlat),
            recorder: Recorder::default(),
            metrics: metrics.to_vec(),
            callbacks,
            frozen_to: 0,
            epochs_done: 0,
        })
    }

    /// Trainable parameters by layer group, sorted by name.
    fn param_groups(vs: &nn::VarStore, arch: Arch) -> Vec<Vec<(String, Tensor)>> {
        let mut groups: Vec<Vec<(String, Tensor)>> = (0..N_GROUPS).map(|_| Vec::new()).collect();
        // Fresh variables: those requiring gradients are the trainable ones (BatchNorm running
        // statistics are not).
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            let g = if name.starts_with("head.") {
                N_GROUPS - 1
            } else {
                arch.group_of(&name)
            };
            groups[g].push((name, t));
        }
        groups
    }

    /// Freezes layer groups before `n`: their weights stop training, except BatchNorm layers,
    /// which keep adapting to the new data (fastai's `train_bn`). Resets the optimizer state.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.freeze_to(1); // train the later body stages and the head
    /// ```
    pub fn freeze_to(&mut self, n: usize) {
        let n = n.min(N_GROUPS - 1);
        for (group, g) in self.opt.groups.iter_mut().enumerate() {
            for p in g.params.iter_mut() {
                // In the body, one-dimensional parameters are exactly the BatchNorm weights and biases.
                let is_bn = !p.name.starts_with("head.") && p.tensor.dim() == 1;
                let _ = p.tensor.set_requires_grad(group >= n || is_bn);
            }
        }
        self.frozen_to = n;
        self.opt.clear_state();
    }

    /// Trains only the head (and BatchNorm layers): `freeze_to(last group)`.
    pub fn freeze(&mut self) {
        self.freeze_to(N_GROUPS - 1);
    }

    /// Trains every layer.
    pub fn unfreeze(&mut self) {
        self.freeze_to(0);
    }

    /// How many layer groups are frozen.
    pub fn frozen_groups(&self) -> usize {
        self.frozen_to
    }

    /// Mixed precision on CUDA, as fastai's `to_fp16`: every fit's forward passes, training
    /// and validation, run under fp16 autocast with dynamic loss scaling, both done by one
    /// callback ([`callbacks::MixedPrecision`]). On a CPU it warns and changes nothing.
    /// Predictions outside a fit stay in fp32.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_fp16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_fp16(&mut self) -> &mut Self {
        if !self.model.device().is_cuda() {
            log::warn!(
                "to_fp16 needs a CUDA device; training stays in fp32 on the CPU (to_bf16 works there)"
            );
            return self;
        }
        self.remove_cb::<MixedPrecision>();
        self.add_cb(MixedPrecision::new());
        self
    }

    /// Mixed precision in bfloat16, on CUDA or on the CPU: autocast without loss scaling
    /// ([`callbacks::MixedPrecision::bf16`]).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_bf16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_bf16(&mut self) -> &mut Self {
        self.remove_cb::<MixedPrecision>();
        self.add_cb(MixedPrecision::bf16());
        self
    }

    /// Back to plain fp32.
    pub fn to_fp32(&mut self) -> &mut Self {
        self.remove_cb::<MixedPrecision>();
        self
    }

    /// The reduced precision fits compute in, if any (set by `to_fp16` or `to_bf16`).
    pub fn precision(&self) -> Option<Precision> {
        self.cb::<MixedPrecision>().map(MixedPrecision::precision)
    }

    /// Trains for `epochs` epochs with constant learning rates.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.fit(1, 1e-3).unwrap();
    /// ```
    pub fn fit(&mut self, epochs: usize, lr: impl Into<Lr>) -> Result<&Recorder> {
        self.fit_with(epochs, lr, &mut [])
    }

    /// Trains with the one-cycle policy; `max_lr` is a number, `None` (fastai's default
    /// `slice(3e-3)`) or [`crate::slice`].
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.fit_one_cycle(4, None).unwrap();
    /// learn.unfreeze();
    /// learn.fit_one_cycle(2, fastvision::slice(1e-6, 10f64.powf(-5.5))).unwrap();
    /// ```
    pub fn fit_one_cycle(&mut self, epochs: usize, max_lr: impl Into<Lr>) -> Result<&Recorder> {
        self.fit_one_cycle_with(epochs, max_lr, &mut [])
    }

    /// [`Learner::fit_one_cycle`] with callbacks for this call (fastai's `cbs=`).
    ///
    /// ```no_run
    /// use fastvision::learner::callbacks::EarlyStopping;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.fit_one_cycle_with(8, None, &mut [&mut EarlyStopping::new("valid_loss")]).unwrap();
    /// ```
    pub fn fit_one_cycle_with(
        &mut self,
        epochs: usize,
        max_lr: impl Into<Lr>,
        cbs: &mut [&mut dyn Callback],
    ) -> Result<&Recorder> {
        let mut schedule = OneCycle::new(max_lr.into().expand(N_GROUPS));
        let lrs = schedule.max_lrs.clone();
        let mut all: Vec<&mut dyn Callback> = vec![&mut schedule];
        for cb in cbs.iter_mut() {
            all.push(&mut **cb);
        }
        self.run(epochs, lrs, &mut all, &[])
    }

    /// Trains for `epochs` epochs at constant learning rates with callbacks for this call:
    /// the general form every fit goes through (see [`fit`]).
    pub fn fit_with(
        &mut self,
        epochs: usize,
        lr: impl Into<Lr>,
        cbs: &mut [&mut dyn Callback],
    ) -> Result<&Recorder> {
        let lrs = lr.into().expand(N_GROUPS);
        self.run(epochs, lrs, cbs, &[])
    }

    /// The one place a fit is set up: the recorder and the learner's callbacks (the defaults,
    /// mixed precision, those from `add_cb`) join the call's, sorted by order. The learner's
    /// callbacks of the types in `sit_out` stay out of this fit (fastai's `removed_cbs`).
    /// Callbacks a hook adds join from the next event and stay the learner's; after a panic in
    /// the fit the learner keeps its recorder, callbacks and weights, and the next fit works.
    fn run(
        &mut self,
        epochs: usize,
        lrs: Vec<f64>,
        cbs: &mut [&mut dyn Callback],
        sit_out: &[std::any::TypeId],
    ) -> Result<&Recorder> {
        let train_dl = &self.data.train_dl;
        if train_dl.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the training set has {} images, fewer than one batch of {}: lower bs",
                train_dl.dataset.len(),
                train_dl.bs
            )));
        }
        let n_batches = train_dl.len();
        let mut recorder = std::mem::take(&mut self.recorder);
        let mut own = std::mem::take(&mut self.callbacks);
        let mut added: Vec<Box<dyn Callback>> = Vec::new();
        let result = {
            let mut all: Vec<&mut dyn Callback> = vec![&mut recorder];
            for cb in cbs.iter_mut() {
                all.push(&mut **cb);
            }
            for cb in own.iter_mut() {
                if !sit_out.contains(&(cb.as_ref() as &dyn std::any::Any).type_id()) {
                    all.push(cb.as_mut());
                }
            }
            all.sort_by_key(|cb| cb.order());
            let mut cx = FitContext::new(&mut *self, epochs, n_batches, lrs);
            // A panic (a callback's, or libtorch's on CUDA out of memory) must not take the
            // recorder and the callbacks with it: they go back first, then the panic goes on.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fit::run_fit(&mut cx, &mut all, &mut added)
            }))
        };
        self.callbacks = own;
        self.callbacks.append(&mut added);
        self.recorder = recorder;
        match result {
            Ok(result) => result.map(|_| &self.recorder),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Probabilities `[N, C]`, targets `[N]` and per-item losses `[N]` over `dl`, by this
    /// learner's loss ([`Model::get_preds_with_loss`]).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (probs, targets, losses) = learn.get_preds(&learn.data.valid_dl).unwrap();
    /// ```
    pub fn get_preds(
        &self,
        dl: &crate::data::loader::DataLoader,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.model.get_preds_with_loss(dl, &*self.loss_func)
    }

    /// Classifies one image file ([`Model::predict`]).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let p = learn.predict("apple.jpg".as_ref()).unwrap();
    /// println!("{} {}", p.class, p.probs[p.index]);
    /// ```
    pub fn predict(&self, path: &Path) -> Result<Prediction> {
        self.model.predict(path)
    }

    /// Classifies every image under `dir`, in batches ([`Model::predict_folder`]).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.predict_folder("photos".as_ref()).unwrap().to_csv("out.csv".as_ref()).unwrap();
    /// ```
    pub fn predict_folder(&self, dir: &Path) -> Result<FolderPredictions> {
        self.model.predict_folder(dir)
    }
}

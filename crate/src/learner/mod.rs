//! The training half of the lesson: a [`Learner`] is a [`Model`] with its data, optimizer,
//! metrics, recorder and callbacks; `cnn_learner` makes one, `fit_one_cycle` and `lr_find`
//! train it, `freeze`/`unfreeze` choose what trains. The loop lives in [`fit`]; everything
//! else is a [`fit::Callback`] over it ([`one_cycle`], [`lr_find`], [`recorder`],
//! [`progress`], [`callbacks`]) or a thin method here. Using the trained network (predict,
//! export, the evaluation loop) is the model's own ([`crate::models::model`]).

pub mod callbacks;
pub mod cnn;
pub mod fit;
pub mod lr_curve;
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

use tch::Tensor;

use crate::data::folder::ImageDataBunch;
use crate::loss::LossFunc;
use crate::models::predict_folder::FolderPredictions;
use crate::models::{Model, Prediction};
use crate::show::render::Renderer;
use crate::{Error, Result};
use callbacks::{MixedPrecision, NanGuard, Precision};
use fit::{Callback, FitContext};
use metrics::MetricFn;
use one_cycle::{Lr, OneCycle};
use optim::{OptFunc, Optimizer, ParamGroups};
use progress::ProgressTable;
use recorder::Recorder;

/// A model, its data, optimizer and training history: fastai's `Learner`.
pub struct Learner {
    /// The network being trained, with its classes, input size and normalisation.
    pub model: Model,
    /// The data it trains and validates on.
    pub data: ImageDataBunch,
    /// The optimizer, built by the learner's `opt_func` ([`optim::adamw`] unless given).
    pub opt: Box<dyn Optimizer>,
    /// The loss the fit trains on, validation reports and the interpretation ranks by
    /// (fastai's `loss_func`; [`crate::loss::CrossEntropyFlat`] unless set, e.g. to
    /// [`crate::loss::LabelSmoothingCrossEntropy`]).
    pub loss_func: Box<dyn LossFunc>,
    /// What happened in the last fit.
    pub recorder: Recorder,
    /// Metrics shown after each epoch.
    pub metrics: Vec<MetricFn>,
    /// Callbacks of every fit (fastai's `learn.cbs`; [`Learner::cbs`] lists them): at first
    /// the defaults, the progress table ([`ProgressTable`]) and the NaN guard ([`NanGuard`],
    /// not run by `lr_find`), then those from [`Learner::add_cb`] and the mixed precision that
    /// [`Learner::to_fp16`] adds. The recorder ([`Learner::recorder`]) always runs.
    pub(crate) callbacks: Vec<Box<dyn Callback>>,
    /// Where `save` and `load` put models; default `<data path>/models`.
    pub model_dir: PathBuf,
    /// Where what a fit shows goes: the progress table, its live progress and notes
    /// ([`crate::show::render`]; the console, as this process is run, unless set).
    pub renderer: Box<dyn Renderer>,
    opt_func: Box<dyn OptFunc>,
    layer_groups: ParamGroups,
    in_fit: bool,
    frozen_to: usize,
    epochs_done: u64,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Learner({}, {} classes, {}px, {} of {} layer group(s) frozen, device {})",
            self.model.name(),
            self.model.classes.len(),
            self.model.size,
            self.frozen_to,
            self.n_groups(),
            crate::device::device_name(self.model.device())
        )
    }
}

impl Learner {
    /// A learner training `model` on `data` with `loss_func` and the optimizer `opt_func`
    /// builds over the model's layer groups, nothing frozen: fastai's
    /// `Learner(dls, model, loss_func, opt_func)`. Metrics ([`Learner::with_metrics`]) and a
    /// splitter ([`Learner::split`]) are options. The model must know the data's classes in
    /// the data's order and take its image size: anything else is an error that names the
    /// first difference, never a learner that mislabels. [`crate::cnn_learner`] builds its
    /// CNN and calls this.
    ///
    /// ```no_run
    /// use fastvision::{Learner, error_rate, loss::CrossEntropyFlat, learner::optim::sgd};
    /// use fastvision::models::{Model, mobilenet_v2};
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let model = Model::new(mobilenet_v2, data.classes.clone(), 100, data.stats(), tch::Device::Cpu).unwrap();
    /// let mut learn = Learner::new(data, model, CrossEntropyFlat, sgd(0.0)).unwrap().with_metrics(&[error_rate]);
    /// learn.fit_one_cycle(1, 1e-3).unwrap();
    /// ```
    pub fn new(
        data: ImageDataBunch,
        model: Model,
        loss_func: impl LossFunc + 'static,
        opt_func: impl OptFunc,
    ) -> Result<Learner> {
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
        let layer_groups = model.param_groups();
        if layer_groups.iter().all(Vec::is_empty) {
            return Err(Error::InvalidArgument(format!(
                "the {} network has no trainable parameters: build its layers from the path \
                 Model::from_network gives it",
                model.name()
            )));
        }
        let opt = opt_func(Self::copy_groups(&layer_groups));
        let callbacks: Vec<Box<dyn Callback>> = vec![
            Box::new(ProgressTable),
            Box::new(NanGuard::new(model.device())),
        ];
        Ok(Learner {
            model_dir: data.path.join("models"),
            renderer: crate::show::render::default_renderer(),
            model,
            data,
            opt,
            loss_func: Box::new(loss_func),
            recorder: Recorder::default(),
            metrics: Vec::new(),
            callbacks,
            opt_func: Box::new(opt_func),
            layer_groups,
            in_fit: false,
            frozen_to: 0,
            epochs_done: 0,
        })
    }

    /// The learner with `metrics` shown after each epoch (fastai's `metrics=`).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let learn = learn.with_metrics(&[fastvision::error_rate, fastvision::accuracy]);
    /// ```
    pub fn with_metrics(mut self, metrics: &[MetricFn]) -> Learner {
        self.metrics = metrics.to_vec();
        self
    }

    fn copy_groups(groups: &ParamGroups) -> ParamGroups {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|(n, t)| (n.clone(), t.shallow_clone()))
                    .collect()
            })
            .collect()
    }

    /// Layer groups: each trains at its own learning rate (`slice(lo, hi)` spreads them) and
    /// `freeze_to(n)` freezes those before `n`.
    pub fn n_groups(&self) -> usize {
        self.layer_groups.len()
    }

    /// Regroups the trainable parameters by `splitter` (a parameter's name → its layer group,
    /// fastai's `split`), builds the optimizer afresh over the new groups and freezes as many
    /// groups as before (at most all but the last).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// // Two groups: the head, and everything before it.
    /// learn.split(|name| usize::from(name.starts_with("head.")));
    /// assert_eq!(learn.n_groups(), 2);
    /// ```
    pub fn split(&mut self, splitter: impl Fn(&str) -> usize) -> &mut Self {
        let mut all: Vec<(String, Tensor)> = self
            .layer_groups
            .iter()
            .flatten()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let n = all
            .iter()
            .map(|(name, _)| splitter(name) + 1)
            .max()
            .unwrap_or(1);
        let mut groups: ParamGroups = (0..n).map(|_| Vec::new()).collect();
        for (name, t) in all {
            let g = splitter(&name);
            groups[g].push((name, t));
        }
        self.opt = (self.opt_func)(Self::copy_groups(&groups));
        self.layer_groups = groups;
        self.freeze_to(self.frozen_to);
        self
    }

    /// Freezes layer groups before `n`: their weights stop training, except BatchNorm layers
    /// (found by kind, [`crate::models::network::batchnorm_params`]), which keep adapting to
    /// the new data (fastai's `train_bn`). Resets the optimizer state.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.freeze_to(1); // train the later body stages and the head
    /// ```
    pub fn freeze_to(&mut self, n: usize) {
        let n = n.min(self.n_groups() - 1);
        let bn = crate::models::network::batchnorm_params(&self.model.vs);
        for (group, params) in self.layer_groups.iter().enumerate() {
            for (name, t) in params {
                let _ = t.set_requires_grad(group >= n || bn.contains(name));
            }
        }
        self.frozen_to = n;
        self.opt.clear_state();
    }

    /// Trains only the head (and BatchNorm layers): `freeze_to(last group)`.
    pub fn freeze(&mut self) {
        self.freeze_to(self.n_groups() - 1);
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
        let mut schedule = OneCycle::new(max_lr.into().expand(self.n_groups()));
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
        let lrs = lr.into().expand(self.n_groups());
        self.run(epochs, lrs, cbs, &[])
    }

    /// The one place a fit is set up: the recorder and the learner's callbacks (the defaults,
    /// mixed precision, those from `add_cb`) join the call's, in order. The learner's
    /// callbacks of the types in `sit_out` stay out of this fit (fastai's `removed_cbs`). Each
    /// callback stays in its place during the fit, so hooks see the learner whole
    /// ([`fit::FitContext::cb`]); callbacks a hook adds join from the next event and stay the
    /// learner's, and those removed go when the fit ends. After a panic in the fit the learner
    /// keeps its recorder, callbacks and weights, and the next fit works.
    fn run(
        &mut self,
        epochs: usize,
        lrs: Vec<f64>,
        cbs: &mut [&mut dyn Callback],
        sit_out: &[std::any::TypeId],
    ) -> Result<&Recorder> {
        if self.in_fit {
            return Err(Error::InvalidArgument(
                "a fit cannot start inside another fit's callback: stop this one (cx.stop) and \
                 fit again after it"
                    .into(),
            ));
        }
        let train_dl = &self.data.train_dl;
        if train_dl.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the training set has {} images, fewer than one batch of {}: lower bs",
                train_dl.dataset.len(),
                train_dl.bs
            )));
        }
        let n_batches = train_dl.len();
        self.in_fit = true;
        let result = {
            let mut cx = FitContext::new(&mut *self, epochs, n_batches, lrs, cbs, sit_out);
            // A panic (a callback's, or libtorch's on CUDA out of memory) must not leave the
            // learner in its fit: the removed callbacks go first, then the panic goes on.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fit::run_fit(&mut cx)))
        };
        self.in_fit = false;
        self.callbacks
            .retain(|cb| fit::Hole::of(cb.as_ref()).is_none());
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

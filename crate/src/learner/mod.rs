//! The training half of the lesson: a [`Learner`] is a [`Model`] (any network) with its data,
//! loss, optimizer ([`optim`]), metrics, recorder and callbacks: fastai's
//! `Learner(dls, model, loss_func, opt_func)`, and `cnn_learner` ([`cnn`]) is one way to make
//! one. `fit_one_cycle` and `lr_find` train it; `freeze`/`unfreeze`/`split` choose what trains
//! (freeze.rs), `to_fp16`/`to_bf16` how (precision.rs). The loop lives in [`fit`]; everything
//! else is a [`fit::Callback`] over it ([`one_cycle`], [`lr_find`], [`recorder`],
//! [`progress`], [`callbacks`]), and what a fit shows goes through the learner's renderer
//! ([`crate::show::render`]). Using the trained network (predict, export, the evaluation
//! loop) is the model's own ([`crate::models::model`]).

pub mod callbacks;
pub mod cnn;
pub mod fit;
mod freeze;
pub mod lr_curve;
pub mod lr_find;
pub mod metrics;
pub mod one_cycle;
pub mod optim;
pub mod persist;
mod precision;
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
use callbacks::NanGuard;
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
    /// the data's order, take its image size, normalise as it does and live on its device:
    /// anything else is an error that names the first difference, never a learner that
    /// mislabels. [`crate::cnn_learner`] builds its
    /// CNN and calls this.
    ///
    /// ```no_run
    /// use fastvision::{Learner, error_rate, loss::CrossEntropyFlat, learner::optim::sgd};
    /// use fastvision::models::{Model, mobilenet_v2};
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let model = Model::new(mobilenet_v2, data.classes.clone(), 100, data.stats(), data.train_dl.device).unwrap();
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
        let device = data.train_dl.device;
        if model.device() != device {
            return Err(Error::InvalidArgument(format!(
                "the model's weights are on {} and the data's batches on {}: build the model \
                 on the data's device (Model::for_data does), or the data with .device(...)",
                crate::device::device_name(model.device()),
                crate::device::device_name(device)
            )));
        }
        if model.stats != data.stats() {
            return Err(Error::InvalidArgument(format!(
                "the model normalises with {:?} and the data with {:?}: predictions after \
                 training would see other colours than training did; build the model with \
                 the data's stats (Model::for_data does)",
                model.stats,
                data.stats()
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

    /// Trains for `epochs` epochs with constant learning rates. What happened is in
    /// [`Learner::recorder`]; the progress table has shown it (a fit returns nothing, as
    /// fastai's, so a notebook cell shows the table once).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.fit(1, 1e-3).unwrap();
    /// ```
    pub fn fit(&mut self, epochs: usize, lr: impl Into<Lr>) -> Result<()> {
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
    pub fn fit_one_cycle(&mut self, epochs: usize, max_lr: impl Into<Lr>) -> Result<()> {
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
    ) -> Result<()> {
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
    ) -> Result<()> {
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
    ) -> Result<()> {
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
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// The recorder, out of its place while one of its own hooks runs (the loop knows it only
    /// as a callback).
    fn take_recorder(&mut self) -> Box<dyn Callback> {
        Box::new(std::mem::take(&mut self.recorder))
    }

    /// Puts back what [`Learner::take_recorder`] took.
    fn put_recorder(&mut self, cb: Box<dyn Callback>) {
        if let Ok(recorder) = (cb as Box<dyn std::any::Any>).downcast::<Recorder>() {
            self.recorder = *recorder;
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

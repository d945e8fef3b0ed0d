//! The training half of the lesson: `cnn_learner`, `fit_one_cycle`, `lr_find`, freezing, and
//! saving, exporting and predicting. The loop lives in [`fit`]; everything else is a
//! [`fit::Callback`] over it ([`one_cycle`], [`lr_find`], [`recorder`], [`progress`],
//! [`callbacks`]) or a thin method here.

pub mod callbacks;
pub mod fit;
pub mod foreach;
pub mod lr_find;
pub mod metrics;
pub mod one_cycle;
pub mod optim;
pub mod persist;
pub mod progress;
pub mod recorder;
pub mod summary;

use std::path::{Path, PathBuf};

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::folder::ImageDataBunch;
use crate::data::image::Decode;
use crate::data::loader::{Batch, DataLoader};
use crate::data::transforms::Stats;
use crate::models::archs::{Stage, forward_stages};
use crate::models::head::create_head;
use crate::models::weights::{load_into, pretrained_weights};
use crate::models::{Arch, Mode};
use crate::show::Progress;
use crate::{Error, Result};
use callbacks::{MixedPrecision, NanGuard, Precision, autocast};
use fit::{Callback, FitContext};
use lr_find::{LrFind, LrFinder};
use metrics::MetricFn;
use one_cycle::{Lr, OneCycle};
use optim::AdamW;
use progress::ProgressTable;
use recorder::Recorder;

/// Layer groups: two for the body, one for the head.
pub const N_GROUPS: usize = 3;

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

/// A model, its data, optimizer and training history: fastai's `Learner`.
pub struct Learner {
    /// The data (None for a learner from `load_learner`, which only predicts).
    pub data: Option<ImageDataBunch>,
    /// The architecture.
    pub arch: Arch,
    /// Class names, indexed by the model's outputs.
    pub classes: Vec<String>,
    /// Image size the model was trained at.
    pub size: u32,
    /// Normalisation the model expects.
    pub stats: Option<Stats>,
    /// All weights and BatchNorm statistics, under torchvision names (`head.*` for the head).
    pub vs: nn::VarStore,
    pub(crate) body: Vec<Stage>,
    pub(crate) head: nn::SequentialT,
    /// The optimizer.
    pub opt: AdamW,
    /// What happened in the last fit.
    pub recorder: Recorder,
    /// Metrics shown after each epoch.
    pub metrics: Vec<MetricFn>,
    /// Callbacks added to every fit (fastai's `callback_fns`), see [`Learner::add_cb`].
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Where `save` and `load` put models; default `<data path>/models`.
    pub model_dir: PathBuf,
    /// Seed for reproducible training.
    pub seed: u64,
    frozen_to: usize,
    fits: u64,
    epochs_done: u64,
    precision: Option<Precision>,
    channels_last: bool,
}

/// `t` with NHWC strides (same shape, same values). tch has no memory-format argument, so the
/// layout is made by permuting to NHWC, copying, and permuting the view back.
pub(crate) fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let [_, c, h, w] = t.size()[..] else {
        unreachable!("4-D")
    };
    let nhwc_strides = [c * h * w, 1, w * c, c];
    if t.stride() == nhwc_strides || c == 1 {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Learner({}, {} classes, {}px, {} frozen group(s), device {})",
            self.arch,
            self.classes.len(),
            self.size,
            self.frozen_to,
            crate::device::device_name(self.vs.device())
        )
    }
}

/// A prediction for one image.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The predicted class name.
    pub class: String,
    /// Its index.
    pub index: usize,
    /// Probability of every class.
    pub probs: Vec<f32>,
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:.1}%)", self.class, 100.0 * self.probs[self.index])
    }
}

impl Prediction {
    /// Shows the prediction in a notebook: the class and its probability.
    pub fn evcxr_display(&self) {
        crate::show::display_html(&format!(
            "<p>predicted: <b>{}</b> ({:.1}%)</p>",
            crate::show::escape(&self.class),
            100.0 * self.probs[self.index]
        ));
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
    let device = data.train_dl.device;
    let mut learn = Learner::build(
        arch,
        data.classes.clone(),
        data.train_dl.dataset.size,
        data.stats,
        device,
        Some(opts.seed),
    )?;
    if let Some(on) = opts.channels_last {
        learn.set_layout(on);
    }
    learn.data = Some(data.clone());
    learn.metrics = metrics.to_vec();
    learn.model_dir = data.path.join("models");
    learn.opt.wd = opts.wd;
    if opts.pretrained {
        let weights = pretrained_weights(arch)?;
        // Only the body comes from ImageNet; the head is new (and the file has no `head.*`).
        let n = load_into(&learn.vs, &weights, &[])?;
        let body_vars = learn
            .vs
            .variables()
            .keys()
            .filter(|k| !k.starts_with("head."))
            .count();
        if n < body_vars {
            return Err(Error::Weights(format!(
                "{} holds {n} of the {body_vars} body tensors of {arch}: not {arch}'s weights?",
                weights.display()
            )));
        }
        learn.freeze();
    }
    Ok(learn)
}

impl Learner {
    /// The model with fresh weights, drawn from torch's generator seeded with `seed`; `None`
    /// leaves the generator alone, for a model whose weights are loaded right after.
    pub(crate) fn build(
        arch: Arch,
        classes: Vec<String>,
        size: u32,
        stats: Option<Stats>,
        device: Device,
        seed: Option<u64>,
    ) -> Result<Learner> {
        if classes.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "a classifier needs at least 2 classes, got {}",
                classes.len()
            )));
        }
        if let Some(seed) = seed {
            tch::manual_seed(seed as i64);
        }
        let vs = nn::VarStore::new(device);
        let body = arch.body(&vs.root());
        let head = create_head(
            &(vs.root() / "head"),
            arch.body_channels(),
            classes.len() as i64,
        );
        let opt = AdamW::new(Self::param_groups(&vs, arch));
        let mut learn = Learner {
            data: None,
            arch,
            classes,
            size,
            stats,
            vs,
            body,
            head,
            opt,
            recorder: Recorder::default(),
            metrics: vec![],
            callbacks: vec![],
            model_dir: PathBuf::from("models"),
            seed: seed.unwrap_or(0),
            frozen_to: 0,
            fits: 0,
            epochs_done: 0,
            precision: None,
            channels_last: false,
        };
        // Every learner starts in the faster layout for its device; options can change it.
        learn.set_layout(crate::device::prefers_channels_last(device));
        Ok(learn)
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
            let g = Self::group_of(arch, &name);
            groups[g].push((name, t));
        }
        groups
    }

    fn group_of(arch: Arch, name: &str) -> usize {
        if name.starts_with("head.") {
            N_GROUPS - 1
        } else {
            arch.group_of(name)
        }
    }

    /// Runs the model: body, then head. `mode` selects dropout and BatchNorm behaviour.
    ///
    /// ```no_run
    /// use fastvision::models::Mode;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let x = tch::Tensor::zeros([1, 3, 100, 100], (tch::Kind::Float, tch::Device::Cpu));
    /// let logits = tch::no_grad(|| learn.forward(&x, Mode::Eval));
    /// ```
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let x = if self.channels_last {
            channels_last(x)
        } else {
            x.shallow_clone()
        };
        let run = || self.head_forward(&self.body_features(&x, mode), mode);
        match self.precision {
            Some(p) => autocast(self.vs.device(), p, run).to_kind(Kind::Float),
            None => run(),
        }
    }

    /// The body's feature map for `x` (what Grad-CAM looks at).
    pub fn body_features(&self, x: &Tensor, mode: Mode) -> Tensor {
        forward_stages(&self.body, x, mode)
    }

    /// The head applied to a feature map from [`Learner::body_features`].
    pub fn head_forward(&self, features: &Tensor, mode: Mode) -> Tensor {
        self.head.forward_t(features, mode.is_train())
    }

    /// The data, or an error for a learner made by `load_learner`.
    pub fn data(&self) -> Result<&ImageDataBunch> {
        self.data.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "this learner has no data (it came from load_learner, which is for predict); build one with cnn_learner to train".into(),
            )
        })
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

    /// Mixed precision on CUDA: the forward pass runs under autocast (fp16 where safe, BatchNorm
    /// in fp32) and every fit scales the loss dynamically ([`callbacks::MixedPrecision`]). On a
    /// CPU it warns and changes nothing (see [`Learner::to_bf16`]).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_fp16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_fp16(&mut self) -> &mut Self {
        if self.vs.device().is_cuda() {
            self.precision = Some(Precision::Half);
        } else {
            log::warn!("to_fp16 needs a CUDA device; training stays in fp32 on the CPU");
        }
        self
    }

    /// Mixed precision in bfloat16: the forward pass runs under autocast in bf16, on CUDA or on
    /// the CPU. bf16 has fp32's range, so no loss scaling is needed (nor done).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_bf16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_bf16(&mut self) -> &mut Self {
        self.precision = Some(Precision::BFloat16);
        self
    }

    /// Back to plain fp32.
    pub fn to_fp32(&mut self) -> &mut Self {
        self.precision = None;
        self
    }

    /// The mixed precision in use, if any.
    pub fn precision(&self) -> Option<Precision> {
        self.precision
    }

    /// Stores every 4-D weight, and feeds every batch, in the NHWC ("channels last") layout,
    /// or back in NCHW. On by default: oneDNN on the CPU and cuDNN on the GPU run convolutions
    /// faster that way (measured on this project's 2-core CPU, mobilenet_v2 bs 64 at 100 px:
    /// bench/RESULTS.md), and the numbers are the same up to rounding. `FASTVISION_CHANNELS_LAST=0`
    /// turns it off for new learners.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_nchw(); // plain NCHW, e.g. to compare speeds
    /// learn.to_channels_last(); // and back
    /// ```
    pub fn to_channels_last(&mut self) -> &mut Self {
        self.set_layout(true)
    }

    /// Weights and batches in the plain NCHW layout (see [`Learner::to_channels_last`]).
    pub fn to_nchw(&mut self) -> &mut Self {
        self.set_layout(false)
    }

    /// Channels-last (`true`) or NCHW, for callers that copy another learner's layout.
    pub(crate) fn set_layout(&mut self, on: bool) -> &mut Self {
        self.channels_last = on;
        tch::no_grad(|| {
            for (_, mut v) in self.vs.variables() {
                if v.dim() == 4 {
                    let laid_out = if on {
                        channels_last(&v)
                    } else {
                        v.contiguous()
                    };
                    v.set_data(&laid_out);
                }
            }
        });
        self
    }

    /// Whether weights and batches use the channels-last layout (see [`Learner::to_channels_last`]).
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// A copy of every variable (weights and BatchNorm statistics).
    pub fn snapshot(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Puts back variables taken by [`Learner::snapshot`].
    pub fn restore(&mut self, snapshot: &[(String, Tensor)]) {
        let vars = self.vs.variables();
        tch::no_grad(|| {
            for (name, saved) in snapshot {
                if let Some(v) = vars.get(name) {
                    let mut v = v.shallow_clone();
                    v.copy_(saved);
                }
            }
        });
    }

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

    /// Removes every callback added with [`Learner::add_cb`].
    pub fn clear_cbs(&mut self) -> &mut Self {
        self.callbacks.clear();
        self
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
        self.run(epochs, lrs, &mut all, true)
    }

    /// The learning-rate range test with fastai's defaults (1e-7 to 10 over 100 batches):
    /// trains a few batches with an exponentially growing learning rate, records the loss,
    /// then puts the weights and optimizer state back exactly as they were (from memory;
    /// nothing is written to disk). Plot with `recorder.plot()`.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.lr_find().unwrap();
    /// let s = learn.recorder.suggestions().unwrap();
    /// ```
    pub fn lr_find(&mut self) -> Result<&Recorder> {
        self.lr_find_with(LrFind::default())
    }

    /// [`Learner::lr_find`] with options: another range, length, or no stop on divergence.
    ///
    /// ```no_run
    /// use fastvision::learner::lr_find::LrFind;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.lr_find_with(LrFind { num_it: 40, ..Default::default() }).unwrap();
    /// ```
    pub fn lr_find_with(&mut self, opts: LrFind) -> Result<&Recorder> {
        let LrFind {
            start_lr,
            end_lr,
            num_it,
            ..
        } = opts;
        if !(start_lr > 0.0 && end_lr > start_lr && num_it >= 6) {
            return Err(Error::InvalidArgument(format!(
                "lr_find needs 0 < start_lr < end_lr and num_it >= 6 (got {start_lr}, {end_lr}, {num_it})"
            )));
        }
        let n_batches = self.data()?.train_dl.len().max(1);
        let epochs = num_it.div_ceil(n_batches);
        let weights = self.snapshot();
        let opt_state = self.opt.state();
        let mut finder = LrFinder::new(opts);
        // No NaN guard: the sweep is meant to find where the loss blows up, and it stops there.
        let result = self
            .run(epochs, vec![start_lr; N_GROUPS], &mut [&mut finder], false)
            .map(|_| ());
        self.restore(&weights);
        self.opt.set_state(&opt_state);
        result?;
        self.recorder.is_lr_find = true;
        self.recorder.num_it = num_it;
        if crate::show::in_notebook() {
            println!("LR Finder is complete, type learn.recorder.plot() to see the graph.");
        }
        Ok(&self.recorder)
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
        self.run(epochs, lrs, cbs, true)
    }

    /// The one place a fit is set up: the learner's own callbacks (recorder, NaN guard, mixed
    /// precision, progress table, those from `add_cb`) join the call's, sorted by order.
    fn run(
        &mut self,
        epochs: usize,
        lrs: Vec<f64>,
        cbs: &mut [&mut dyn Callback],
        nan_guard: bool,
    ) -> Result<&Recorder> {
        let train_dl = &self.data()?.train_dl;
        if train_dl.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the training set has {} images, fewer than one batch of {}: lower bs",
                train_dl.dataset.len(),
                train_dl.bs
            )));
        }
        let n_batches = train_dl.len();
        tch::manual_seed(self.seed.wrapping_add(self.fits) as i64);
        self.fits += 1;
        let mut recorder = std::mem::take(&mut self.recorder);
        let mut own = std::mem::take(&mut self.callbacks);
        let mut guard = nan_guard.then(|| NanGuard::new(self.vs.device()));
        let mut mixed = (self.precision == Some(Precision::Half)).then(MixedPrecision::new);
        let mut progress = ProgressTable::default();
        let result = {
            let mut all: Vec<&mut dyn Callback> = vec![&mut recorder, &mut progress];
            for cb in cbs.iter_mut() {
                all.push(&mut **cb);
            }
            for cb in own.iter_mut() {
                all.push(cb.as_mut());
            }
            if let Some(g) = guard.as_mut() {
                all.push(g);
            }
            if let Some(m) = mixed.as_mut() {
                all.push(m);
            }
            all.sort_by_key(|cb| cb.order());
            let mut cx = FitContext::new(&mut *self, epochs, n_batches, lrs);
            fit::run_fit(&mut cx, &mut all)
        };
        self.callbacks = own;
        self.recorder = recorder;
        result.map(|_| &self.recorder)
    }

    /// The training loss: cross-entropy over the batch (fastai's default for classification).
    pub fn loss_func(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        logits.cross_entropy_for_logits(targets)
    }

    /// Validation loss and metrics on the validation set.
    pub fn validate(&self) -> Result<(f64, Vec<f64>)> {
        Ok(self.validate_on(&self.data()?.valid_dl.clone()))
    }

    /// Loss and metrics over `dl`, accumulated on the device and read back once at the end.
    pub(crate) fn validate_on(&self, dl: &DataLoader) -> (f64, Vec<f64>) {
        let mut totals = self.eval_totals();
        for batch in dl.epoch(0) {
            self.eval_batch(&mut totals, &batch);
        }
        totals.value()
    }

    /// Empty validation totals for this learner's metrics.
    pub(crate) fn eval_totals(&self) -> EvalTotals {
        EvalTotals {
            loss: metrics::Mean::new(),
            metrics: self.metrics.iter().map(MetricFn::fresh).collect(),
        }
    }

    /// Adds one validation batch to `totals`, without gradients.
    pub(crate) fn eval_batch(&self, totals: &mut EvalTotals, batch: &Batch) {
        tch::no_grad(|| {
            let bs = batch.y.size()[0];
            let logits = self.forward(&batch.x, Mode::Eval);
            // The batch mean times its size, in f64 as the mean would be read back.
            let batch_loss = self.loss_func(&logits, &batch.y).to_kind(Kind::Double);
            totals.loss.add_sum(batch_loss * bs as f64, bs);
            for m in totals.metrics.iter_mut() {
                m.accumulate(&logits, &batch.y);
            }
        });
    }

    /// Probabilities `[N, C]`, targets `[N]` and per-item losses `[N]` over a loader, in its
    /// order, computed batch by batch (only these three small tensors are kept), on the CPU.
    /// They stay on the device until the end and come back in one transfer each, so a GPU is
    /// never made to wait for the host between batches.
    pub fn get_preds(&self, dl: &DataLoader) -> (Tensor, Tensor, Tensor) {
        let progress = Progress::new("predicting", dl.len() as u64);
        self.get_preds_with(dl, &progress)
    }

    /// [`Learner::get_preds`], counting its batches on `progress` (TTA's passes share one).
    pub(crate) fn get_preds_with(
        &self,
        dl: &DataLoader,
        progress: &Progress,
    ) -> (Tensor, Tensor, Tensor) {
        let (mut probs, mut targets, mut losses) = (Vec::new(), Vec::new(), Vec::new());
        tch::no_grad(|| {
            for batch in dl.epoch(0) {
                let logits = self.forward(&batch.x, Mode::Eval);
                let loss =
                    logits.cross_entropy_loss::<Tensor>(&batch.y, None, Reduction::None, -100, 0.0);
                probs.push(logits.softmax(-1, Kind::Float));
                targets.push(batch.y);
                losses.push(loss);
                progress.inc(1);
            }
        });
        let host = |parts: Vec<Tensor>| Tensor::cat(&parts, 0).to_device(Device::Cpu);
        (host(probs), host(targets), host(losses))
    }

    /// Classifies one image file with the validation transforms (resize, normalise). A
    /// truncated or corrupt file is an error naming it, not a confident guess from grey
    /// filler; [`Learner::predict_with`] can accept such files.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let p = learn.predict("apple.jpg".as_ref()).unwrap();
    /// println!("{} {}", p.class, p.probs[p.index]);
    /// ```
    pub fn predict(&self, path: &Path) -> Result<Prediction> {
        self.predict_with(path, Decode::Strict)
    }

    /// [`Learner::predict`], choosing how damaged image data is treated: `Decode::Lenient`
    /// classifies what can be decoded of a truncated JPEG.
    ///
    /// ```no_run
    /// use fastvision::data::image::Decode;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let p = learn.predict_with("cut-short.jpg".as_ref(), Decode::Lenient).unwrap();
    /// ```
    pub fn predict_with(&self, path: &Path, mode: Decode) -> Result<Prediction> {
        let rgb = crate::data::image::load_rgb_with(path, self.size, mode)?;
        let s = self.size as i64;
        let x = Tensor::from_slice(rgb.as_raw())
            .view([1, s, s, 3])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        let x = match &self.stats {
            Some(st) => st.norm(&x),
            None => x,
        };
        let probs = tch::no_grad(|| {
            self.forward(&x.to_device(self.vs.device()), Mode::Eval)
                .softmax(-1, Kind::Float)
        });
        let probs: Vec<f32> =
            Vec::try_from(probs.view([-1]).to_device(Device::Cpu)).map_err(Error::Torch)?;
        let index = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        Ok(Prediction {
            class: self.classes[index].clone(),
            index,
            probs,
        })
    }
}

/// Validation loss and metrics summed over batches on the device (one read-back at the end).
pub(crate) struct EvalTotals {
    loss: metrics::Mean,
    metrics: Vec<Box<dyn metrics::Metric>>,
}

impl EvalTotals {
    /// The mean loss and each metric's value.
    pub(crate) fn value(&self) -> (f64, Vec<f64>) {
        (
            self.loss.value(),
            self.metrics.iter().map(|m| m.value()).collect(),
        )
    }
}

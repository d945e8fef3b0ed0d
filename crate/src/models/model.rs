//! The network and what using it needs, without any training: fastai's `learn.model` plus the
//! facts an export carries (architecture, classes, input size, normalisation). A [`Model`] does
//! the forward pass, the one evaluation loop ([`Model::eval_logits`], [`Model::get_preds`]),
//! prediction, snapshots, and export and loading ([`crate::models::export`]). The learner
//! trains one; `load_learner` gives one back.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::data::folder::ImageDataBunch;
use crate::data::image::{Decode, ResizeMethod};
use crate::data::loader::DataLoader;
use crate::data::transforms::Stats;
use crate::loss::{CrossEntropyFlat, LossFunc};
use crate::models::network::{Cnn, Network};
use crate::models::{Arch, Mode};
use crate::show::Progress;
use crate::torch_ext::layout::channels_last;
use crate::{Error, Result};

/// A network ([`Network`]: a [`Cnn`] from an [`Arch`], or your own), its classes, input size
/// and normalisation, and how it computes (its memory layout). Mixed precision is the
/// learner's, a callback around the training and validation passes
/// ([`crate::learner::callbacks::MixedPrecision`]).
///
/// ```no_run
/// use fastvision::models::{Model, mobilenet_v2};
/// let model = Model::new(mobilenet_v2, vec!["apple".into(), "pear".into()], 100, None, tch::Device::Cpu).unwrap();
/// let p = model.predict("apple.jpg".as_ref()).unwrap();
/// ```
pub struct Model {
    /// Class names, indexed by the model's outputs.
    pub classes: Vec<String>,
    /// Image size the model was trained at.
    pub size: u32,
    /// Normalisation the model expects.
    pub stats: Option<Stats>,
    /// How a photo becomes its square input (the centre view of the data's method).
    pub resize: ResizeMethod,
    /// All weights and BatchNorm statistics, under torchvision names (`head.*` for the head).
    pub vs: nn::VarStore,
    net: Box<dyn Network>,
    /// Builds the same network again under another path (what [`Model::copy`] needs).
    build: Builder,
    channels_last: bool,
}

type Builder = Arc<dyn Fn(&nn::Path) -> Box<dyn Network> + Send + Sync>;

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({}, {} classes, {}px, device {})",
            self.name(),
            self.classes.len(),
            self.size,
            crate::device::device_name(self.device())
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

    fn from_probs(probs: Vec<f32>, classes: &[String]) -> Prediction {
        let index = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        Prediction {
            class: classes[index].clone(),
            index,
            probs,
        }
    }
}

impl Model {
    /// `arch`'s CNN for `classes` with fresh weights drawn from torch's generator (seed it
    /// first, e.g. with [`crate::seed_everything`], for the same weights every time), in the
    /// faster layout for `device`.
    pub fn new(
        arch: Arch,
        classes: Vec<String>,
        size: u32,
        stats: Option<Stats>,
        device: Device,
    ) -> Result<Model> {
        let n = classes.len() as i64;
        Model::from_network(classes, size, stats, device, move |p| Cnn::new(p, arch, n))
    }

    /// A model around a network of your own: `build` makes it under the path it is given
    /// (parameters in layer groups by `p.set_group(g)`), for `classes`, taking `size` px
    /// images normalised by `stats`. [`Model::for_data`] takes those from a data bunch.
    ///
    /// ```
    /// use fastvision::models::{Mode, Model, Network};
    /// use tch::nn::{self, Module};
    /// #[derive(Debug)]
    /// struct Linear(nn::Linear);
    /// impl Network for Linear {
    ///     fn forward(&self, x: &tch::Tensor, _mode: Mode) -> tch::Tensor {
    ///         x.flatten(1, -1).apply(&self.0)
    ///     }
    /// }
    /// let classes = vec!["a".to_string(), "b".to_string()];
    /// let model = Model::from_network(classes, 4, None, tch::Device::Cpu, |p| {
    ///     Linear(nn::linear(p / "fc", 3 * 4 * 4, 2, Default::default()))
    /// })
    /// .unwrap();
    /// assert_eq!(model.name(), "Linear");
    /// ```
    pub fn from_network<N, F>(
        classes: Vec<String>,
        size: u32,
        stats: Option<Stats>,
        device: Device,
        build: F,
    ) -> Result<Model>
    where
        N: Network,
        F: Fn(&nn::Path) -> N + Send + Sync + 'static,
    {
        if classes.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "a classifier needs at least 2 classes, got {}",
                classes.len()
            )));
        }
        let build: Builder = Arc::new(move |p| Box::new(build(p)) as Box<dyn Network>);
        let vs = nn::VarStore::new(device);
        let net = build(&vs.root());
        let mut model = Model {
            classes,
            size,
            stats,
            resize: ResizeMethod::Crop,
            vs,
            net,
            build,
            channels_last: false,
        };
        model.set_layout(crate::device::prefers_channels_last(device));
        Ok(model)
    }

    /// [`Model::from_network`] for `data`: its classes in its order, its image size, its
    /// normalisation, its way of making photos square and its device.
    ///
    /// ```no_run
    /// # use fastvision::models::{Mode, Model, Network};
    /// # use tch::nn::{self, Module};
    /// # #[derive(Debug)] struct Linear(nn::Linear);
    /// # impl Network for Linear { fn forward(&self, x: &tch::Tensor, _: Mode) -> tch::Tensor { x.flatten(1, -1).apply(&self.0) } }
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let (s, c) = (data.train_dl.dataset.size as i64, data.c() as i64);
    /// let model = Model::for_data(&data, move |p| Linear(nn::linear(p / "fc", 3 * s * s, c, Default::default()))).unwrap();
    /// ```
    pub fn for_data<N, F>(data: &ImageDataBunch, build: F) -> Result<Model>
    where
        N: Network,
        F: Fn(&nn::Path) -> N + Send + Sync + 'static,
    {
        let ds = &data.train_dl.dataset;
        let mut model = Model::from_network(
            data.classes.clone(),
            ds.size,
            data.stats(),
            data.train_dl.device,
            build,
        )?;
        model.resize = ds.resize;
        Ok(model)
    }

    /// The network.
    pub fn net(&self) -> &dyn Network {
        &*self.net
    }

    /// The CNN, when the network is one (what `cnn_learner` and `load_learner` build).
    pub fn cnn(&self) -> Option<&Cnn> {
        (&*self.net as &dyn Any).downcast_ref::<Cnn>()
    }

    /// The architecture, when the network is a [`Cnn`].
    pub fn arch(&self) -> Option<Arch> {
        self.cnn().map(|c| c.arch)
    }

    /// The network's name: the architecture's (`mobilenet_v2`) or [`Network::name`].
    pub fn name(&self) -> String {
        self.net.name()
    }

    /// Trainable parameters by layer group, each sorted by name: the groups the network put
    /// them in (see [`crate::models::network`]).
    pub fn param_groups(&self) -> Vec<Vec<(String, Tensor)>> {
        crate::models::network::param_groups(&self.vs)
    }

    /// A second model with this one's weights and layout (one copy of each
    /// variable), for instance to keep as it is while the original trains on.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let kept = model.copy().unwrap();
    /// ```
    pub fn copy(&self) -> Result<Model> {
        let vs = nn::VarStore::new(self.device());
        let net = (self.build)(&vs.root());
        let mut model = Model {
            classes: self.classes.clone(),
            size: self.size,
            stats: self.stats,
            resize: self.resize,
            vs,
            net,
            build: self.build.clone(),
            channels_last: false,
        };
        model.set_layout(self.channels_last);
        // Straight from these variables: a snapshot would copy every weight twice.
        model.vs.copy(&self.vs).map_err(Error::Torch)?;
        Ok(model)
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Runs the network. `mode` selects dropout and BatchNorm behaviour.
    ///
    /// ```no_run
    /// use fastvision::models::Mode;
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let x = tch::Tensor::zeros([1, 3, 100, 100], (tch::Kind::Float, tch::Device::Cpu));
    /// let logits = tch::no_grad(|| model.forward(&x, Mode::Eval));
    /// ```
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        self.net.forward(&self.forward_layout(x), mode)
    }

    /// `x` in the layout the weights are in (channels-last or NCHW).
    pub(crate) fn forward_layout(&self, x: &Tensor) -> Tensor {
        if self.channels_last {
            channels_last(x)
        } else {
            x.shallow_clone()
        }
    }

    /// The CNN, or an error that says what needs one.
    fn cnn_for(&self, what: &str) -> Result<&Cnn> {
        self.cnn().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} needs a CNN's body and head (a cnn_learner or load_learner model);                  this model is a {}",
                self.name()
            ))
        })
    }

    /// The body's feature map for `x` (what Grad-CAM looks at); an error for a network that
    /// is not a [`Cnn`].
    pub fn body_features(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let cnn = self.cnn_for("a body's feature map")?;
        Ok(cnn.features(x, mode))
    }

    /// Stores every 4-D weight, and feeds every batch, in the NHWC ("channels last") layout.
    /// oneDNN runs convolutions faster that way on the CPU, where it is the default; on CUDA
    /// the default is NCHW ([`crate::device::prefers_channels_last`]). The numbers are the same
    /// up to rounding.
    ///
    /// ```no_run
    /// # let mut model: fastvision::models::Model = unimplemented!();
    /// model.to_nchw(); // plain NCHW, e.g. to compare speeds
    /// model.to_channels_last(); // and back
    /// ```
    pub fn to_channels_last(&mut self) -> &mut Self {
        self.set_layout(true)
    }

    /// Weights and batches in the plain NCHW layout (see [`Model::to_channels_last`]).
    pub fn to_nchw(&mut self) -> &mut Self {
        self.set_layout(false)
    }

    /// Channels-last (`true`) or NCHW.
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

    /// Whether weights and batches use the channels-last layout.
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// A copy of every variable (weights and BatchNorm statistics), sorted by name.
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

    /// Puts back variables taken by [`Model::snapshot`].
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

    /// The logits for a batch, evaluating (no dropout, BatchNorm's running statistics) and
    /// without gradients: the step of every evaluation, `validate`, `get_preds`, the
    /// interpretation and TTA alike.
    pub fn eval_logits(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward(x, Mode::Eval))
    }

    /// Probabilities `[N, C]`, targets `[N]` and per-item losses `[N]` over a loader, in its
    /// order, computed batch by batch (only these three small tensors are kept), on the CPU.
    /// They stay on the device until the end and come back in one transfer each, so a GPU is
    /// never made to wait for the host between batches.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (probs, targets, losses) = learn.model.get_preds(&learn.data.valid_dl).unwrap();
    /// ```
    pub fn get_preds(&self, dl: &DataLoader) -> Result<(Tensor, Tensor, Tensor)> {
        self.get_preds_with_loss(dl, &CrossEntropyFlat)
    }

    /// [`Model::get_preds`] with the probabilities and losses of `loss` (its activation and
    /// per-item loss): what a learner's `get_preds` calls with its own `loss_func`.
    ///
    /// ```no_run
    /// use fastvision::loss::LabelSmoothingCrossEntropy;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (probs, y, losses) = learn.model
    ///     .get_preds_with_loss(&learn.data.valid_dl, &LabelSmoothingCrossEntropy::default()).unwrap();
    /// ```
    pub fn get_preds_with_loss(
        &self,
        dl: &DataLoader,
        loss: &dyn LossFunc,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let progress = Progress::new("predicting", dl.len() as u64);
        self.get_preds_with(dl, loss, &progress)
    }

    /// [`Model::get_preds_with_loss`], counting its batches on `progress` (TTA's passes
    /// share one).
    pub(crate) fn get_preds_with(
        &self,
        dl: &DataLoader,
        loss_func: &dyn LossFunc,
        progress: &Progress,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (mut probs, mut targets, mut losses) = (Vec::new(), Vec::new(), Vec::new());
        for batch in dl.epoch(0) {
            let batch = batch?;
            let logits = self.eval_logits(&batch.x);
            let loss = loss_func.per_item(&logits, &batch.y);
            probs.push(loss_func.activation(&logits));
            targets.push(batch.y);
            losses.push(loss);
            progress.inc(1);
        }
        let host = |parts: Vec<Tensor>| Tensor::cat(&parts, 0).to_device(Device::Cpu);
        Ok((host(probs), host(targets), host(losses)))
    }

    /// Each image's pooled body features `[N, C]` over a loader, in its order, scaled to unit
    /// length so a matrix product gives cosine similarities (what near-duplicate and leakage
    /// searches compare). With `mirrored`, each image's features are the sum of its own and its
    /// mirror image's, so an image and its mirror image compare as the same picture. They
    /// stay on the model's device.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let f = learn.model.features(&learn.data.valid_dl, true).unwrap();
    /// let self_similarity = f.get(0).dot(&f.get(0)).double_value(&[]);
    /// assert!((self_similarity - 1.0).abs() < 1e-4);
    /// ```
    pub fn features(&self, dl: &DataLoader, mirrored: bool) -> Result<Tensor> {
        self.cnn_for("comparing images by their features")?;
        let progress = Progress::new("features", dl.len() as u64);
        let pooled = |x: &Tensor| {
            self.body_features(x, Mode::Eval).map(|f| {
                f.to_kind(Kind::Float)
                    .mean_dim(Some([2i64, 3].as_slice()), false, Kind::Float)
            })
        };
        let mut parts = Vec::with_capacity(dl.len());
        for batch in dl.epoch(0) {
            let batch = batch?;
            let f = tch::no_grad(|| -> Result<Tensor> {
                let f = pooled(&batch.x)?;
                Ok(if mirrored {
                    f + pooled(&batch.x.flip([3]))?
                } else {
                    f
                })
            })?;
            parts.push(f);
            progress.inc(1);
        }
        progress.finish();
        let f = Tensor::cat(&parts, 0);
        let norm = f
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        Ok(f / norm)
    }

    /// Classifies one image file with the validation transforms (resize, normalise). A
    /// truncated or corrupt file is an error naming it, not a confident guess from grey
    /// filler; [`Model::predict_with`] can accept such files.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let p = model.predict("apple.jpg".as_ref()).unwrap();
    /// println!("{} {}", p.class, p.probs[p.index]);
    /// ```
    pub fn predict(&self, path: &Path) -> Result<Prediction> {
        self.predict_with(path, Decode::Strict)
    }

    /// [`Model::predict`], choosing how damaged image data is treated: `Decode::Lenient`
    /// classifies what can be decoded of a truncated JPEG.
    ///
    /// ```no_run
    /// use fastvision::data::image::Decode;
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let p = model.predict_with("cut-short.jpg".as_ref(), Decode::Lenient).unwrap();
    /// ```
    pub fn predict_with(&self, path: &Path, mode: Decode) -> Result<Prediction> {
        let x = load_pixels(path, self.size, self.resize, self.stats.as_ref(), mode)?.unsqueeze(0);
        let probs = self.probs(&x)?;
        Ok(probs.into_iter().next().expect("one image in, one out"))
    }

    /// Classifies many image files at once, `bs` at a time: the files decode in parallel and
    /// each batch goes through the network in one pass. Every file gets its own result, so one
    /// unreadable file is reported without stopping the others.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let files = vec!["a.jpg".into(), "b.jpg".into()];
    /// for (file, p) in files.iter().zip(model.predict_batch(&files, 64)) {
    ///     println!("{}: {}", file.display(), p.map(|p| p.class).unwrap_or_else(|e| e.to_string()));
    /// }
    /// ```
    pub fn predict_batch(&self, files: &[PathBuf], bs: usize) -> Vec<Result<Prediction>> {
        self.predict_batch_with(files, bs, Decode::Strict)
    }

    /// [`Model::predict_batch`], decoding as `mode` says ([`Model::predict_with`]).
    pub fn predict_batch_with(
        &self,
        files: &[PathBuf],
        bs: usize,
        mode: Decode,
    ) -> Vec<Result<Prediction>> {
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(bs.max(1)) {
            let (size, resize, stats) = (self.size, self.resize, self.stats.as_ref());
            let pixels: Vec<Result<Tensor>> = chunk
                .par_iter()
                .map(|f| load_pixels(f, size, resize, stats, mode))
                .collect();
            let good: Vec<&Tensor> = pixels.iter().filter_map(|p| p.as_ref().ok()).collect();
            let mut preds = if good.is_empty() {
                Ok(Vec::new())
            } else {
                self.probs(&Tensor::stack(&good, 0))
            }
            .map(Vec::into_iter);
            for p in pixels {
                out.push(match (p, preds.as_mut()) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Ok(it)) => Ok(it.next().expect("one prediction per image")),
                    (Ok(_), Err(e)) => Err(Error::InvalidArgument(e.to_string())),
                });
            }
        }
        out
    }

    /// The network's input `[3, size, size]` for a decoded image: made square as validation
    /// does ([`Model::resize`]), scaled to [0, 1] and normalised with the model's statistics.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let img = fastvision::data::image::open_image("apple.jpg".as_ref()).unwrap();
    /// let x = model.input(img);
    /// let p = model.predict_inputs(&x.unsqueeze(0)).unwrap();
    /// ```
    pub fn input(&self, img: image::DynamicImage) -> Tensor {
        let rgb = crate::data::image::fit_rgb(img, self.size, self.resize);
        rgb_to_input(&rgb, self.stats.as_ref())
    }

    /// Predictions for a batch of inputs `[B, 3, H, W]` (as [`Model::input`] makes them), in
    /// one pass: what a server's batches go through.
    pub fn predict_inputs(&self, x: &Tensor) -> Result<Vec<Prediction>> {
        self.probs(x)
    }

    /// Grad-CAM heatmaps `[B, H, W]` in [0, 1] for a normalised batch `x` and one class per
    /// image: the last body stage's activations weighted by the class score's mean gradient,
    /// for the whole batch in one backward pass. A network that is not a [`Cnn`] has no body
    /// to look at: an error.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// # let x: tch::Tensor = unimplemented!();
    /// let cams = model.gradcam(&x, &[0]).unwrap();
    /// assert_eq!(cams.size()[0], 1);
    /// ```
    pub fn gradcam(&self, x: &Tensor, classes: &[i64]) -> Result<Tensor> {
        let cnn = self.cnn_for("Grad-CAM")?;
        let x = x.to_device(self.device());
        let features = tch::no_grad(|| cnn.features(&x, Mode::Eval))
            .detach()
            .set_requires_grad(true);
        let logits = cnn.head_forward(&features, Mode::Eval);
        let idx = Tensor::from_slice(classes)
            .to_device(logits.device())
            .unsqueeze(1);
        logits.gather(1, &idx, false).sum(Kind::Float).backward();
        let grads = features.grad();
        let weights = grads.mean_dim(Some([2i64, 3].as_slice()), true, Kind::Float);
        let cam = (weights * features.detach())
            .sum_dim_intlist(Some([1i64].as_slice()), true, Kind::Float)
            .relu();
        let size = x.size();
        let cam = cam
            .upsample_bilinear2d([size[2], size[3]], false, None, None)
            .squeeze_dim(1);
        let max = cam.amax([1, 2], true).clamp_min(1e-12);
        Ok((cam / max).detach())
    }

    /// Predictions for a batch of inputs `[B, 3, H, W]` on the CPU.
    fn probs(&self, x: &Tensor) -> Result<Vec<Prediction>> {
        let probs = self
            .eval_logits(&x.to_device(self.device()))
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        let n = probs.size()[0];
        (0..n)
            .map(|i| {
                let row: Vec<f32> = Vec::try_from(probs.get(i)).map_err(Error::Torch)?;
                Ok(Prediction::from_probs(row, &self.classes))
            })
            .collect()
    }
}

/// One image file as the network's input `[3, size, size]`, normalised, on the CPU.
fn load_pixels(
    path: &Path,
    size: u32,
    resize: ResizeMethod,
    stats: Option<&Stats>,
    mode: Decode,
) -> Result<Tensor> {
    let img = crate::data::image::decode_file(path, mode)?.image;
    let rgb = crate::data::image::fit_rgb(img, size, resize);
    Ok(rgb_to_input(&rgb, stats))
}

/// A square RGB image as the network's input `[3, S, S]`, normalised, on the CPU.
pub(crate) fn rgb_to_input(rgb: &image::RgbImage, stats: Option<&Stats>) -> Tensor {
    let s = rgb.width() as i64;
    let x = Tensor::from_slice(rgb.as_raw())
        .view([1, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let x = match stats {
        Some(st) => st.norm(&x),
        None => x,
    };
    x.squeeze_dim(0)
}

//! The file a model is written to: `export`/`load_learner` (weights and what inference needs:
//! architecture, classes, image size, normalisation), and the same format for the learner's
//! `save`/`load`, which add the optimizer's state. One safetensors file whose header carries
//! the JSON metadata; no pickle anywhere, files written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::image::ResizeMethod;
use crate::data::transforms::Stats;
use crate::models::{Arch, Model};
use crate::{Error, Result};

/// What a saved or exported file says about its model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// fastvision version that wrote it.
    pub fastvision: String,
    /// Architecture name (`resnet34`, ...).
    pub arch: String,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Image size.
    pub size: u32,
    /// Normalisation mean and std, if the data was normalised.
    pub stats: Option<([f32; 3], [f32; 3])>,
    /// How photos become squares (files from before it was recorded: crop).
    #[serde(default)]
    pub resize: ResizeMethod,
    /// Optimizer step count per parameter (saves with optimizer state only).
    #[serde(default)]
    pub opt_steps: HashMap<String, i64>,
}

pub(crate) const META_KEY: &str = "fastvision";

fn to_bytes(t: &Tensor) -> Result<(Vec<usize>, Vec<u8>)> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = Vec::try_from(t.view([-1])).map_err(Error::Torch)?;
    Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

pub(crate) fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    info: &ModelInfo,
) -> Result<()> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| to_bytes(t).map(|(s, b)| (n.clone(), s, b)))
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, s, b)| {
            let view = TensorView::new(Dtype::F32, s.clone(), b)
                .map_err(|e| Error::Weights(format!("{n}: {e:?}")))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([(
        META_KEY.to_string(),
        serde_json::to_string(info).expect("serialisable"),
    )]);
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| Error::Weights(format!("{}: {e:?}", path.display())))?;
    crate::io::atomic_write(path, &bytes)
}

pub(crate) fn read_file(path: &Path) -> Result<(HashMap<String, Tensor>, ModelInfo)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: String| Error::Weights(format!("{}: {what}", path.display()));
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e:?})")))?;
    let info: ModelInfo = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| {
            bad(
                "not written by fastvision (no model metadata); use export or save to make one"
                    .into(),
            )
        })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{e:?}")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, Kind::Float).map_err(Error::Torch)?;
        tensors.insert(name, t);
    }
    Ok((tensors, info))
}

impl Model {
    /// What the file says about this model; `opt_steps` is the optimizer's, for `save`.
    pub(crate) fn info(&self, opt_steps: HashMap<String, i64>) -> ModelInfo {
        ModelInfo {
            fastvision: env!("CARGO_PKG_VERSION").into(),
            arch: self.name(),
            classes: self.classes.clone(),
            size: self.size,
            stats: self.stats.map(|s| (s.mean, s.std)),
            resize: self.resize,
            opt_steps,
        }
    }

    /// An error unless the file at `path` (described by `info`) holds weights for this model:
    /// the same architecture and the same classes in the same order (a file whose classes are
    /// in another order would load and mislabel every prediction).
    pub(crate) fn check_compatible(&self, info: &ModelInfo, path: &Path) -> Result<()> {
        let name = self.name();
        if info.arch != name {
            return Err(Error::Weights(format!(
                "{} holds a {} model; this model is {name}: load a file saved from a {name} learner",
                path.display(),
                info.arch,
            )));
        }
        check_classes(
            &info.classes,
            &self.classes,
            &format!("{}", path.display()),
            "this learner",
        )
        .map_err(|e| Error::Weights(e.to_string()))
    }

    /// Copies every variable from `tensors` (read from `path`), after checking that each one
    /// is there with the right shape; on an error nothing has changed.
    pub(crate) fn load_tensors(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        crate::models::weights::copy_checked(&self.vs, tensors, path, |_| true).map(|_| ())
    }

    /// Exports what inference needs (weights, architecture, classes, size, normalisation) to
    /// one file; [`load_learner`] reads it back without any dataset.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// model.export("export.safetensors".as_ref()).unwrap();
    /// let model = fastvision::load_learner("export.safetensors".as_ref()).unwrap();
    /// ```
    pub fn export(&self, path: &Path) -> Result<()> {
        write_file(path, &self.snapshot(), &self.info(HashMap::new()))
    }
}

/// An error unless `a` and `b` are the same class names in the same order; the message names
/// the first difference. `a_name` and `b_name` say whose lists they are ("the model", "the
/// data"). A model meeting data through this check cannot silently mislabel it.
///
/// ```
/// use fastvision::models::export::check_classes;
/// let model = vec!["apple".to_string(), "banana".to_string()];
/// let data = vec!["banana".to_string(), "apple".to_string()];
/// let err = check_classes(&model, &data, "the model", "the data").unwrap_err();
/// assert!(err.to_string().contains("class 0 is \"apple\" in the model and \"banana\" in the data"));
/// assert!(check_classes(&model, &model, "the model", "the data").is_ok());
/// ```
pub fn check_classes(a: &[String], b: &[String], a_name: &str, b_name: &str) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let first = match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "class {i} is {:?} in {a_name} and {:?} in {b_name}",
            a[i], b[i]
        ),
        None => {
            let (longer, name, n) = if a.len() > b.len() {
                (a, a_name, b.len())
            } else {
                (b, b_name, a.len())
            };
            format!("only {name} has class {n}, {:?}", longer[n])
        }
    };
    let reordered = a.len() == b.len() && {
        let (mut x, mut y) = (a.to_vec(), b.to_vec());
        x.sort();
        y.sort();
        x == y
    };
    let hint = if reordered {
        "the same classes in another order, so every prediction would get the wrong name"
    } else {
        "not the same classes"
    };
    Err(Error::InvalidArgument(format!(
        "{a_name} has {} classes and {b_name} {}: {hint} ({first}). Use the data the model was \
         trained on, with its classes in the model's order",
        a.len(),
        b.len()
    )))
}

/// Loads a model exported with [`Model::export`] (or `Learner::export`), on
/// [`crate::default_device`], ready to `predict`. Needs no data and runs no pickled code.
/// fastai's name; what comes back is the model, which is all that inference needs.
///
/// ```no_run
/// let model = fastvision::load_learner("export.safetensors".as_ref()).unwrap();
/// println!("{}", model.predict("apple.jpg".as_ref()).unwrap());
/// ```
pub fn load_learner(path: &Path) -> Result<Model> {
    load_learner_on(path, crate::default_device()?)
}

/// [`load_learner`] onto a given device: a model trained on a GPU predicts on a CPU-only
/// machine with `Device::Cpu` (fastai's `load_learner(path, cpu=True)`).
///
/// ```no_run
/// let model = fastvision::models::export::load_learner_on("export.safetensors".as_ref(), tch::Device::Cpu).unwrap();
/// ```
pub fn load_learner_on(path: &Path, device: tch::Device) -> Result<Model> {
    let (tensors, info) = read_file(path)?;
    let arch: Arch = info.arch.parse().map_err(|_| {
        Error::Weights(format!(
            "{} holds a {} network, not one of the architectures load_learner builds ({}): \
             build it again with Model::from_network and load these weights with learn.load",
            path.display(),
            info.arch,
            Arch::ALL.map(|a| a.name()).join(", ")
        ))
    })?;
    let stats = info.stats.map(|(mean, std)| Stats { mean, std });
    // In the device's faster layout (Model::new); the file itself is always NCHW.
    let mut model = Model::new(arch, info.classes.clone(), info.size, stats, device)?;
    model.resize = info.resize;
    model.load_tensors(&tensors, path)?;
    Ok(model)
}

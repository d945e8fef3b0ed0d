//! The file a model is written to: `export`/`load_learner` (weights and what inference needs:
//! architecture, classes, image size, normalisation), and the same format for the learner's
//! `save`/`load`, which add the optimizer's state. One safetensors file whose header carries
//! the JSON metadata; no pickle anywhere, files written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

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
            arch: self.arch.name().into(),
            classes: self.classes.clone(),
            size: self.size,
            stats: self.stats.map(|s| (s.mean, s.std)),
            opt_steps,
        }
    }

    /// An error unless the file at `path` (described by `info`) holds weights for this model.
    pub(crate) fn check_compatible(&self, info: &ModelInfo, path: &Path) -> Result<()> {
        if info.arch != self.arch.name() || info.classes.len() != self.classes.len() {
            return Err(Error::Weights(format!(
                "{} holds a {} model for {} classes; this model is {} for {} classes",
                path.display(),
                info.arch,
                info.classes.len(),
                self.arch,
                self.classes.len()
            )));
        }
        Ok(())
    }

    /// Copies every variable from `tensors` (read from `path`), after checking that each one
    /// is there with the right shape; on an error nothing has changed.
    pub(crate) fn load_tensors(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        let vars = self.vs.variables();
        for (name, var) in &vars {
            match tensors.get(name) {
                Some(t) if t.size() == var.size() => {}
                Some(t) => {
                    return Err(Error::Weights(format!(
                        "{}: {name} has shape {:?}, this model needs {:?}",
                        path.display(),
                        t.size(),
                        var.size()
                    )));
                }
                None => {
                    return Err(Error::Weights(format!(
                        "{}: {name} is missing",
                        path.display()
                    )));
                }
            }
        }
        let snapshot: Vec<(String, Tensor)> = vars
            .keys()
            .map(|n| (n.clone(), tensors[n].shallow_clone()))
            .collect();
        self.restore(&snapshot);
        Ok(())
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
    let arch: Arch = info.arch.parse()?;
    let stats = info.stats.map(|(mean, std)| Stats { mean, std });
    // In the device's faster layout (Model::new); the file itself is always NCHW.
    let mut model = Model::new(arch, info.classes.clone(), info.size, stats, device)?;
    model.load_tensors(&tensors, path)?;
    Ok(model)
}

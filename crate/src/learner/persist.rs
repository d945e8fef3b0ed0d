//! Saving and loading: `save`/`load` (weights and optimizer state, to resume training) and
//! `export`/`load_learner` (weights and what inference needs: architecture, classes, image
//! size, normalisation). Everything is one safetensors file whose header carries the JSON
//! metadata; no pickle anywhere, files written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::transforms::Stats;
use crate::learner::Learner;
use crate::models::Arch;
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

const META_KEY: &str = "fastvision";

fn to_bytes(t: &Tensor) -> Result<(Vec<usize>, Vec<u8>)> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = Vec::try_from(t.view([-1])).map_err(Error::Torch)?;
    Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

fn write_file(path: &Path, tensors: &[(String, Tensor)], info: &ModelInfo) -> Result<()> {
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

fn read_file(path: &Path) -> Result<(HashMap<String, Tensor>, ModelInfo)> {
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

impl Learner {
    fn info(&self, opt_steps: HashMap<String, i64>) -> ModelInfo {
        ModelInfo {
            fastvision: env!("CARGO_PKG_VERSION").into(),
            arch: self.arch.name().into(),
            classes: self.classes.clone(),
            size: self.size,
            stats: self.stats.map(|s| (s.mean, s.std)),
            opt_steps,
        }
    }

    fn check_compatible(&self, info: &ModelInfo, path: &Path) -> Result<()> {
        if info.arch != self.arch.name() || info.classes.len() != self.classes.len() {
            return Err(Error::Weights(format!(
                "{} holds a {} model for {} classes; this learner is {} for {} classes",
                path.display(),
                info.arch,
                info.classes.len(),
                self.arch,
                self.classes.len()
            )));
        }
        Ok(())
    }

    fn model_path(&self, name: &str) -> PathBuf {
        let file = if name.ends_with(".safetensors") {
            name.to_string()
        } else {
            format!("{name}.safetensors")
        };
        self.model_dir.join(file)
    }

    /// Saves weights and optimizer state as `<model_dir>/<name>.safetensors`, to resume later.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// let path = learn.save("stage-1").unwrap();
    /// learn.load("stage-1").unwrap();
    /// ```
    pub fn save(&self, name: &str) -> Result<PathBuf> {
        let path = self.model_path(name);
        let mut tensors = self.snapshot();
        let mut steps = HashMap::new();
        for (pname, step, m, v) in self.opt.state() {
            if let (Some(m), Some(v)) = (m, v) {
                tensors.push((format!("opt.{pname}.exp_avg"), m));
                tensors.push((format!("opt.{pname}.exp_avg_sq"), v));
                steps.insert(pname, step);
            }
        }
        write_file(&path, &tensors, &self.info(steps))?;
        Ok(path)
    }

    /// Loads what [`Learner::save`] wrote. A file for another architecture or class count is
    /// a clear error, and the learner is left unchanged.
    pub fn load(&mut self, name: &str) -> Result<&mut Self> {
        let path = self.model_path(name);
        let (tensors, info) = read_file(&path)?;
        self.check_compatible(&info, &path)?;
        self.load_tensors(&tensors, &path)?;
        let state: Vec<_> = info
            .opt_steps
            .iter()
            .map(|(n, &step)| {
                let m = tensors
                    .get(&format!("opt.{n}.exp_avg"))
                    .map(|t| t.to_device(self.vs.device()));
                let v = tensors
                    .get(&format!("opt.{n}.exp_avg_sq"))
                    .map(|t| t.to_device(self.vs.device()));
                (n.clone(), step, m, v)
            })
            .collect();
        self.opt.set_state(&state);
        Ok(self)
    }

    fn load_tensors(&mut self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
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
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.export("export.safetensors".as_ref()).unwrap();
    /// let learn = fastvision::load_learner("export.safetensors".as_ref()).unwrap();
    /// ```
    pub fn export(&self, path: &Path) -> Result<()> {
        write_file(path, &self.snapshot(), &self.info(HashMap::new()))
    }
}

/// Loads a learner exported with [`Learner::export`], on [`crate::default_device`], ready to
/// `predict`. Needs no data and runs no pickled code.
pub fn load_learner(path: &Path) -> Result<Learner> {
    load_learner_on(path, crate::default_device()?)
}

/// [`load_learner`] onto a given device: a model trained on a GPU predicts on a CPU-only
/// machine with `Device::Cpu` (fastai's `load_learner(path, cpu=True)`).
///
/// ```no_run
/// let learn = fastvision::learner::persist::load_learner_on("export.safetensors".as_ref(), tch::Device::Cpu).unwrap();
/// ```
pub fn load_learner_on(path: &Path, device: tch::Device) -> Result<Learner> {
    let (tensors, info) = read_file(path)?;
    let arch: Arch = info.arch.parse()?;
    let stats = info.stats.map(|(mean, std)| Stats { mean, std });
    // In the device's faster layout (Learner::build); the file itself is always NCHW.
    let mut learn = Learner::build(arch, info.classes.clone(), info.size, stats, device, None)?;
    learn.load_tensors(&tensors, path)?;
    Ok(learn)
}

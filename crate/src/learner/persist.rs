//! Saving and loading a learner mid-training: `save`/`load` write the model's weights and the
//! optimizer's state to `<model_dir>/<name>.safetensors`, in the export's format
//! ([`crate::models::export`]), so training can resume where it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::data::folder::ImageDataBunch;
use crate::learner::Learner;
use crate::learner::metrics::MetricFn;
use crate::models::Model;
use crate::models::export::{read_file, write_file};

impl Learner {
    /// A learner around a model exported earlier and data to go on with (fastai v1's
    /// `load_learner` followed by a new `data`): the model must know the data's classes, in
    /// the same order, and take its image size.
    ///
    /// ```no_run
    /// use fastvision::{Learner, error_rate, load_learner};
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let model = load_learner("out/export.safetensors".as_ref()).unwrap();
    /// let learn = Learner::from_model(model, data, &[error_rate]).unwrap();
    /// ```
    pub fn from_model(model: Model, data: ImageDataBunch, metrics: &[MetricFn]) -> Result<Self> {
        Learner::new(model, data, metrics)
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
        let mut tensors = self.model.snapshot();
        let mut steps = HashMap::new();
        for (pname, step, m, v) in self.opt.state() {
            if let (Some(m), Some(v)) = (m, v) {
                tensors.push((format!("opt.{pname}.exp_avg"), m));
                tensors.push((format!("opt.{pname}.exp_avg_sq"), v));
                steps.insert(pname, step);
            }
        }
        write_file(&path, &tensors, &self.model.info(steps))?;
        Ok(path)
    }

    /// Loads what [`Learner::save`] wrote. A file for another architecture or class count is
    /// a clear error, and the learner is left unchanged.
    pub fn load(&mut self, name: &str) -> Result<&mut Self> {
        let path = self.model_path(name);
        let (tensors, info) = read_file(&path)?;
        self.model.check_compatible(&info, &path)?;
        self.model.load_tensors(&tensors, &path)?;
        let state: Vec<_> = info
            .opt_steps
            .iter()
            .map(|(n, &step)| {
                let m = tensors
                    .get(&format!("opt.{n}.exp_avg"))
                    .map(|t| t.to_device(self.model.device()));
                let v = tensors
                    .get(&format!("opt.{n}.exp_avg_sq"))
                    .map(|t| t.to_device(self.model.device()));
                (n.clone(), step, m, v)
            })
            .collect();
        self.opt.set_state(&state);
        Ok(self)
    }

    /// Exports the model for inference ([`crate::models::Model::export`]); `load_learner`
    /// reads it back without any dataset.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.export("export.safetensors".as_ref()).unwrap();
    /// let model = fastvision::load_learner("export.safetensors".as_ref()).unwrap();
    /// ```
    pub fn export(&self, path: &Path) -> Result<()> {
        self.model.export(path)
    }
}

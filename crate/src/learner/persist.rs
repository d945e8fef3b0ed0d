//! Saving and loading a learner mid-training: `save`/`load` write the model's weights and the
//! optimizer's state to `<model_dir>/<name>.safetensors`, in the export's format
//! ([`crate::models::export`]), so training can resume where it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::data::folder::ImageDataBunch;
use crate::learner::Learner;
use crate::learner::metrics::MetricFn;
use crate::learner::optim::{ParamState, adamw};
use crate::loss::CrossEntropyFlat;
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
        Ok(Learner::new(data, model, CrossEntropyFlat, adamw(1e-2))?.with_metrics(metrics))
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
        for state in self.opt.state() {
            if state.buffers.is_empty() {
                continue;
            }
            for (buffer, t) in state.buffers {
                tensors.push((format!("opt.{}.{buffer}", state.name), t));
            }
            steps.insert(state.name, state.step);
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
        // Each parameter's buffers are the tensors named `opt.<parameter>.<buffer>`.
        let device = self.model.device();
        let mut state: HashMap<&str, ParamState> = info
            .opt_steps
            .iter()
            .map(|(n, &step)| {
                let s = ParamState {
                    name: n.clone(),
                    step,
                    buffers: Vec::new(),
                };
                (n.as_str(), s)
            })
            .collect();
        for (key, t) in &tensors {
            let Some(rest) = key.strip_prefix("opt.") else {
                continue;
            };
            if let Some((param, buffer)) = rest.rsplit_once('.')
                && let Some(s) = state.get_mut(param)
            {
                s.buffers.push((buffer.to_string(), t.to_device(device)));
            }
        }
        let state: Vec<ParamState> = state.into_values().collect();
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

//! Layer groups: what trains at which rate and what is frozen. A learner's groups are its
//! network's (tch's path groups); `split` regroups them, `freeze_to` freezes the first ones
//! (BatchNorm layers, found by kind, keep training, as fastai's `train_bn`).

use tch::Tensor;

use crate::learner::Learner;
use crate::learner::optim::ParamGroups;

impl Learner {
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
}

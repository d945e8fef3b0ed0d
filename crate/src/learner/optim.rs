//! AdamW with decoupled weight decay and per-group learning rates (fastai v1's `AdamW`:
//! betas 0.9/0.99, wd 1e-2 applied as `p *= 1 - lr * wd` before the Adam step).
//!
//! Written over plain tensors rather than libtorch's optimizer so its state can be saved,
//! snapshotted and restored (`lr_find`, `save`), and so frozen parameters are simply skipped.

use tch::Tensor;

/// A deep copy of an optimizer's state, from [`AdamW::state`]: per parameter its name, step
/// count and the two moment buffers.
pub type OptimizerState = Vec<(String, i64, Option<Tensor>, Option<Tensor>)>;

/// One parameter and its Adam state.
#[derive(Debug)]
pub struct Param {
    /// Variable name in the VarStore.
    pub name: String,
    /// The variable (shares storage with the model).
    pub tensor: Tensor,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
    step: i64,
}

/// Parameters that share a learning rate (a fastai layer group).
#[derive(Debug)]
pub struct ParamGroup {
    /// The parameters.
    pub params: Vec<Param>,
    /// Current learning rate.
    pub lr: f64,
}

/// The optimizer.
///
/// ```
/// use fastvision::learner::optim::AdamW;
/// let w = tch::Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
/// let mut opt = AdamW::new(vec![vec![("w".to_string(), w.shallow_clone())]]);
/// opt.set_lrs(&[0.1]);
/// let loss = (&w * &w).sum(tch::Kind::Float);
/// opt.zero_grad();
/// loss.backward();
/// opt.step();
/// assert!(w.double_value(&[0]) < 1.0);
/// ```
#[derive(Debug)]
pub struct AdamW {
    /// Layer groups.
    pub groups: Vec<ParamGroup>,
    /// First-moment decay (fastai cycles it as "momentum").
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub wd: f64,
}

impl AdamW {
    /// An optimizer over named parameters grouped by layer group, with fastai's defaults.
    pub fn new(groups: Vec<Vec<(String, Tensor)>>) -> Self {
        let groups = groups
            .into_iter()
            .map(|ps| ParamGroup {
                params: ps
                    .into_iter()
                    .map(|(name, tensor)| Param {
                        name,
                        tensor,
                        exp_avg: None,
                        exp_avg_sq: None,
                        step: 0,
                    })
                    .collect(),
                lr: 1e-3,
            })
            .collect();
        AdamW {
            groups,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            wd: 1e-2,
        }
    }

    /// Sets each group's learning rate.
    pub fn set_lrs(&mut self, lrs: &[f64]) {
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.lr = lr;
        }
    }

    /// Zeroes the gradients of trainable parameters.
    pub fn zero_grad(&mut self) {
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            if p.tensor.requires_grad() {
                p.tensor.zero_grad();
            }
        }
    }

    /// Gradients of the trainable parameters (for loss-scale checks).
    pub fn grads(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter())
            .filter(|p| p.tensor.requires_grad())
            .map(|p| p.tensor.grad())
            .filter(|g| g.defined())
            .collect()
    }

    /// One AdamW step on every trainable parameter that has a gradient.
    pub fn step(&mut self) {
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.wd);
        tch::no_grad(|| {
            for g in self.groups.iter_mut() {
                let lr = g.lr;
                for p in g.params.iter_mut() {
                    if !p.tensor.requires_grad() {
                        continue;
                    }
                    let grad = p.tensor.grad();
                    if !grad.defined() {
                        continue;
                    }
                    p.step += 1;
                    let m = p.exp_avg.get_or_insert_with(|| grad.zeros_like());
                    let _ = m.g_mul_scalar_(b1).g_add_(&(&grad * (1.0 - b1)));
                    let v = p.exp_avg_sq.get_or_insert_with(|| grad.zeros_like());
                    let _ = v.g_mul_scalar_(b2).g_add_(&(&grad * &grad * (1.0 - b2)));
                    let bc1 = 1.0 - b1.powi(p.step as i32);
                    let bc2 = 1.0 - b2.powi(p.step as i32);
                    let denom = (v.sqrt() / bc2.sqrt()) + eps;
                    if wd != 0.0 {
                        let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let update = (&*m / denom) * (lr / bc1);
                    let _ = p.tensor.g_sub_(&update);
                }
            }
        });
    }

    /// A deep copy of the optimizer state: (name, step, exp_avg, exp_avg_sq).
    pub fn state(&self) -> OptimizerState {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter())
            .map(|p| {
                (
                    p.name.clone(),
                    p.step,
                    p.exp_avg.as_ref().map(Tensor::copy),
                    p.exp_avg_sq.as_ref().map(Tensor::copy),
                )
            })
            .collect()
    }

    /// Restores state taken by [`AdamW::state`] (parameters matched by name).
    pub fn set_state(&mut self, state: &[(String, i64, Option<Tensor>, Option<Tensor>)]) {
        let by_name: std::collections::HashMap<&str, _> =
            state.iter().map(|s| (s.0.as_str(), s)).collect();
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            match by_name.get(p.name.as_str()) {
                Some((_, step, m, v)) => {
                    p.step = *step;
                    p.exp_avg = m.as_ref().map(Tensor::copy);
                    p.exp_avg_sq = v.as_ref().map(Tensor::copy);
                }
                None => {
                    p.step = 0;
                    p.exp_avg = None;
                    p.exp_avg_sq = None;
                }
            }
        }
    }

    /// Forgets all state (fastai rebuilds the optimizer on freeze and unfreeze).
    pub fn clear_state(&mut self) {
        self.set_state(&[]);
    }
}

//! AdamW with decoupled weight decay and per-group learning rates (fastai v1's `AdamW`:
//! betas 0.9/0.99, wd 1e-2 applied as `p *= 1 - lr * wd` before the Adam step).
//!
//! Written over plain tensors rather than libtorch's optimizer so its state can be saved,
//! snapshotted and restored (`lr_find`, `save`), and so frozen parameters are simply skipped.
//! The update itself is torch's fused AdamW kernel (`AdamW(fused=True)`), one call per layer
//! group: a loop of tensor operations took about ten kernel launches per parameter, which on a
//! GPU cost more host time than the step's compute.

use tch::{Kind, Tensor};

use crate::torch_ext::foreach::{self, AdamWHyper, AdamWLists};

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
    /// Adam's state, from the parameter's first step on.
    state: Option<AdamState>,
}

/// The moment buffers and step count of one parameter, all on its device.
#[derive(Debug)]
struct AdamState {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Steps taken, as a float scalar, where the fused kernel reads it (as torch keeps it for
    /// `fused=True`).
    step: Tensor,
}

impl Param {
    /// The gradient, when the parameter is trainable and has one.
    fn grad(&self) -> Option<Tensor> {
        if !self.tensor.requires_grad() {
            return None;
        }
        Some(self.tensor.grad()).filter(Tensor::defined)
    }
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
    found_inf: Option<Tensor>,
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
                        state: None,
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
            found_inf: None,
        }
    }

    /// Sets each group's learning rate.
    pub fn set_lrs(&mut self, lrs: &[f64]) {
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.lr = lr;
        }
    }

    /// Makes the next [`AdamW::step`] leave every parameter and its state alone if
    /// `found_inf` (a one-element float tensor on the parameters' device) is non-zero when the
    /// step runs (or any earlier flag given since the last [`AdamW::zero_grad`], which forgets
    /// them). The flag is read by the kernel, on the device: GradScaler's skipped step without
    /// the host waiting for the flag.
    ///
    /// ```
    /// use fastvision::learner::optim::AdamW;
    /// let w = tch::Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
    /// let mut opt = AdamW::new(vec![vec![("w".to_string(), w.shallow_clone())]]);
    /// opt.zero_grad();
    /// (&w * &w).sum(tch::Kind::Float).backward();
    /// opt.skip_step_if(&tch::Tensor::from_slice(&[1.0f32]));
    /// opt.step();
    /// assert_eq!(w.double_value(&[0]), 1.0);
    /// assert_eq!(opt.state()[0].1, 0, "a skipped step does not count");
    /// ```
    pub fn skip_step_if(&mut self, found_inf: &Tensor) {
        // Two scalers (the learner's own and one passed to a fit) each add their flag.
        self.found_inf = Some(match self.found_inf.take() {
            Some(earlier) => earlier.maximum(found_inf),
            None => found_inf.shallow_clone(),
        });
    }

    /// Zeroes the gradients of trainable parameters, in one launch.
    pub fn zero_grad(&mut self) {
        self.found_inf = None;
        let grads = self.grads();
        foreach::zero_(&grads.iter().collect::<Vec<_>>());
    }

    /// Gradients of the trainable parameters (for loss-scale checks and clipping).
    pub fn grads(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .flat_map(|g| g.params.iter())
            .filter_map(Param::grad)
            .collect()
    }

    /// One AdamW step on every trainable parameter that has a gradient: per layer group, one
    /// launch to count the step and one fused update.
    pub fn step(&mut self) {
        let (beta1, beta2, eps, weight_decay) = (self.beta1, self.beta2, self.eps, self.wd);
        let found_inf = self.found_inf.take();
        tch::no_grad(|| {
            for g in self.groups.iter_mut() {
                // Each parameter with a gradient, its state (made at its first step) and the
                // gradient.
                let live: Vec<(&Tensor, &AdamState, Tensor)> = g
                    .params
                    .iter_mut()
                    .filter_map(|p| {
                        let grad = p.grad()?;
                        let state = p.state.get_or_insert_with(|| AdamState {
                            exp_avg: grad.zeros_like(),
                            exp_avg_sq: grad.zeros_like(),
                            step: Tensor::zeros([], (Kind::Float, grad.device())),
                        });
                        Some((&p.tensor, &*state, grad))
                    })
                    .collect();
                let params: Vec<&Tensor> = live.iter().map(|l| l.0).collect();
                let ms: Vec<&Tensor> = live.iter().map(|l| &l.1.exp_avg).collect();
                let vs: Vec<&Tensor> = live.iter().map(|l| &l.1.exp_avg_sq).collect();
                let steps: Vec<&Tensor> = live.iter().map(|l| &l.1.step).collect();
                let grads: Vec<&Tensor> = live.iter().map(|l| &l.2).collect();
                foreach::add_scalar_(&steps, 1.0);
                let lists = AdamWLists {
                    params: &params,
                    grads: &grads,
                    exp_avgs: &ms,
                    exp_avg_sqs: &vs,
                    steps: &steps,
                };
                let hyper = AdamWHyper {
                    lr: g.lr,
                    beta1,
                    beta2,
                    weight_decay,
                    eps,
                };
                foreach::fused_adamw(lists, hyper, found_inf.as_ref());
                if let Some(inf) = &found_inf {
                    // A skipped step does not count (torch's fused AdamW does the same).
                    foreach::sub_(&steps, &inf.reshape([0i64; 0]));
                }
            }
        });
    }

    /// A deep copy of the optimizer state: (name, step, exp_avg, exp_avg_sq). The step counts
    /// come back from the device in one transfer.
    pub fn state(&self) -> OptimizerState {
        let params: Vec<&Param> = self.groups.iter().flat_map(|g| g.params.iter()).collect();
        let counted: Vec<&Tensor> = params
            .iter()
            .filter_map(|p| Some(&p.state.as_ref()?.step))
            .collect();
        let mut counts = if counted.is_empty() {
            Vec::new()
        } else {
            let on_host = Tensor::stack(&counted, 0).to_device(tch::Device::Cpu);
            Vec::<f32>::try_from(on_host).expect("float step counts")
        }
        .into_iter();
        params
            .into_iter()
            .map(|p| match &p.state {
                Some(s) => (
                    p.name.clone(),
                    counts.next().expect("one count per state") as i64,
                    Some(s.exp_avg.copy()),
                    Some(s.exp_avg_sq.copy()),
                ),
                None => (p.name.clone(), 0, None, None),
            })
            .collect()
    }

    /// Restores state taken by [`AdamW::state`] (parameters matched by name).
    pub fn set_state(&mut self, state: &[(String, i64, Option<Tensor>, Option<Tensor>)]) {
        let by_name: std::collections::HashMap<&str, _> =
            state.iter().map(|s| (s.0.as_str(), s)).collect();
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            p.state = match by_name.get(p.name.as_str()) {
                Some((_, step, Some(m), Some(v))) => Some(AdamState {
                    exp_avg: m.copy(),
                    exp_avg_sq: v.copy(),
                    step: Tensor::full([0i64; 0], *step as f64, (Kind::Float, m.device())),
                }),
                _ => None,
            };
        }
    }

    /// Forgets all state (fastai rebuilds the optimizer on freeze and unfreeze).
    pub fn clear_state(&mut self) {
        self.set_state(&[]);
    }
}

/// What the training loop asks of an optimizer, and no more: the hyper-parameters for the
/// next step, the step, clearing gradients, and a state to keep and put back (`lr_find`,
/// the NaN guard, `save`). [`AdamW`] is fastai's default and the one a learner uses.
///
/// ```
/// use fastvision::learner::optim::{AdamW, Optimizer};
/// let w = tch::Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
/// let mut opt = AdamW::new(vec![vec![("w".to_string(), w.shallow_clone())]]);
/// Optimizer::set_hypers(&mut opt, &[0.1], 0.9);
/// Optimizer::zero_grad(&mut opt);
/// (&w * &w).sum(tch::Kind::Float).backward();
/// Optimizer::step(&mut opt);
/// assert!(w.double_value(&[0]) < 1.0);
/// ```
pub trait Optimizer {
    /// Each layer group's learning rate and the momentum (Adam's beta1) for the next step.
    fn set_hypers(&mut self, lrs: &[f64], mom: f64);
    /// Updates the parameters from their gradients.
    fn step(&mut self);
    /// Clears the gradients before the next backward pass.
    fn zero_grad(&mut self);
    /// A copy of the per-parameter state.
    fn state(&self) -> OptimizerState;
    /// Puts back a state from [`Optimizer::state`].
    fn set_state(&mut self, state: &OptimizerState);
}

impl Optimizer for AdamW {
    fn set_hypers(&mut self, lrs: &[f64], mom: f64) {
        self.set_lrs(lrs);
        self.beta1 = mom;
    }
    fn step(&mut self) {
        AdamW::step(self)
    }
    fn zero_grad(&mut self) {
        AdamW::zero_grad(self)
    }
    fn state(&self) -> OptimizerState {
        AdamW::state(self)
    }
    fn set_state(&mut self, state: &OptimizerState) {
        AdamW::set_state(self, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// fastai's AdamW written out as tensor operations, one parameter at a time: what the
    /// fused kernel must reproduce.
    fn reference_step(p: &Tensor, m: &mut Tensor, v: &mut Tensor, t: i32, lr: f64, opt: &AdamW) {
        let g = p.grad();
        let (b1, b2) = (opt.beta1, opt.beta2);
        *m = &*m * b1 + &g * (1.0 - b1);
        *v = &*v * b2 + &g * &g * (1.0 - b2);
        let denom = (v.sqrt() / (1.0 - b2.powi(t)).sqrt()) + opt.eps;
        let update = (&*m / denom) * (lr / (1.0 - b1.powi(t)));
        tch::no_grad(|| {
            let _ = p.shallow_clone().g_mul_scalar_(1.0 - lr * opt.wd);
            let _ = p.shallow_clone().g_sub_(&update);
        });
    }

    #[test]
    fn the_fused_step_is_fastais_adamw_per_group() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        let a = Tensor::randn([4, 3, 3, 3], opts).set_requires_grad(true);
        let b = Tensor::randn([7], opts).set_requires_grad(true);
        let frozen = Tensor::randn([5], opts);
        let (ra, rb) = (a.detach().copy(), b.detach().copy());
        let (ra, rb) = (ra.set_requires_grad(true), rb.set_requires_grad(true));
        let mut opt = AdamW::new(vec![
            vec![
                ("a".into(), a.shallow_clone()),
                ("frozen".into(), frozen.shallow_clone()),
            ],
            vec![("b".into(), b.shallow_clone())],
        ]);
        opt.set_lrs(&[1e-2, 3e-3]);
        let mut moments: Vec<(Tensor, Tensor)> = [&ra, &rb]
            .iter()
            .map(|t| (t.zeros_like(), t.zeros_like()))
            .collect();
        let before = frozen.copy();
        for t in 1..=5 {
            let x = Tensor::randn([4, 3, 3, 3], opts);
            opt.zero_grad();
            ((&a * &x).sum(Kind::Float) + (&b * &b).sum(Kind::Float) * t as f64).backward();
            opt.step();
            for r in [&ra, &rb] {
                r.shallow_clone().zero_grad();
            }
            ((&ra * &x).sum(Kind::Float) + (&rb * &rb).sum(Kind::Float) * t as f64).backward();
            for ((r, lr), (m, v)) in [(&ra, 1e-2), (&rb, 3e-3)]
                .into_iter()
                .zip(moments.iter_mut())
            {
                reference_step(r, m, v, t, lr, &opt);
            }
        }
        for (fused, reference) in [(&a, &ra), (&b, &rb)] {
            let diff = (fused - reference).abs().max().double_value(&[]);
            assert!(
                diff < 1e-6,
                "fused AdamW differs from the reference by {diff}"
            );
        }
        assert!(
            frozen.equal(&before),
            "a parameter without gradient must not move"
        );
        let steps: Vec<i64> = opt.state().iter().map(|s| s.1).collect();
        assert_eq!(steps, [5, 0, 5]);
        // The state round-trips, counts included.
        let state = opt.state();
        opt.clear_state();
        opt.set_state(&state);
        assert_eq!(
            opt.state().iter().map(|s| s.1).collect::<Vec<_>>(),
            [5, 0, 5]
        );
    }
}

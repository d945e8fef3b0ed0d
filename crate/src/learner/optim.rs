//! Optimizers: the [`Optimizer`] trait the training loop and every callback use, and two
//! implementations, [`AdamW`] (fastai v1's default: betas 0.9/0.99, wd 1e-2 applied as
//! `p *= 1 - lr * wd` before the Adam step) and [`Sgd`] with momentum. A learner builds its
//! optimizer with an [`OptFunc`] ([`adamw`], [`sgd`]), as fastai's `opt_func`.
//!
//! Written over plain tensors rather than libtorch's optimizer so its state can be saved,
//! snapshotted and restored (`lr_find`, `save`), and so frozen parameters are simply skipped.
//! The update itself is torch's fused AdamW kernel (`AdamW(fused=True)`), one call per layer
//! group: a loop of tensor operations took about ten kernel launches per parameter, which on a
//! GPU cost more host time than the step's compute.

use tch::{Kind, Tensor};

use crate::torch_ext::foreach::{self, AdamWHyper, AdamWLists};

/// Named parameters by layer group, as a learner hands them to its [`OptFunc`].
pub type ParamGroups = Vec<Vec<(String, Tensor)>>;

/// One parameter's optimizer state: its name, the steps it has taken and the optimizer's
/// buffers for it by name (Adam's `exp_avg` and `exp_avg_sq`, SGD's `momentum_buffer`), deep
/// copies. A parameter that has not stepped has no buffers.
#[derive(Debug)]
pub struct ParamState {
    /// The parameter's variable name.
    pub name: String,
    /// Steps it has taken.
    pub step: i64,
    /// The optimizer's buffers for it, by name.
    pub buffers: Vec<(String, Tensor)>,
}

impl ParamState {
    /// The buffer called `name`.
    pub fn buffer(&self, name: &str) -> Option<&Tensor> {
        self.buffers.iter().find(|b| b.0 == name).map(|b| &b.1)
    }
}

/// A deep copy of an optimizer's state ([`Optimizer::state`]), one entry per parameter.
pub type OptimizerState = Vec<ParamState>;

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
        trainable_grad(&self.tensor)
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
    /// assert_eq!(opt.state()[0].step, 0, "a skipped step does not count");
    /// ```
    pub fn skip_step_if(&mut self, found_inf: &Tensor) {
        merge_flag(&mut self.found_inf, found_inf);
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

    /// A deep copy of the optimizer state: per parameter its step count and its `exp_avg` and
    /// `exp_avg_sq`. The step counts come back from the device in one transfer.
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
                Some(s) => ParamState {
                    name: p.name.clone(),
                    step: counts.next().expect("one count per state") as i64,
                    buffers: vec![
                        ("exp_avg".into(), s.exp_avg.copy()),
                        ("exp_avg_sq".into(), s.exp_avg_sq.copy()),
                    ],
                },
                None => ParamState {
                    name: p.name.clone(),
                    step: 0,
                    buffers: Vec::new(),
                },
            })
            .collect()
    }

    /// Restores state taken by [`AdamW::state`] (parameters matched by name; one without
    /// both moments starts afresh).
    pub fn set_state(&mut self, state: &[ParamState]) {
        let by_name: std::collections::HashMap<&str, &ParamState> =
            state.iter().map(|s| (s.name.as_str(), s)).collect();
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            let saved = by_name.get(p.name.as_str());
            p.state = match saved.map(|s| (s.step, s.buffer("exp_avg"), s.buffer("exp_avg_sq"))) {
                Some((step, Some(m), Some(v))) => Some(AdamState {
                    // In the parameter's own layout (a file holds them NCHW; a channels-last
                    // weight's gradient is NHWC, and the fused kernel pairs them element by
                    // element in memory).
                    exp_avg: in_layout_of(&p.tensor, m),
                    exp_avg_sq: in_layout_of(&p.tensor, v),
                    step: Tensor::full([0i64; 0], step as f64, (Kind::Float, p.tensor.device())),
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

/// What the training loop, the callbacks and `save` ask of an optimizer, and no more: the
/// hyper-parameters for the next step, the step, the gradients (clipping and loss scaling read
/// them), a step to skip on overflow, and a state to keep and put back (`lr_find`, the NaN
/// guard, `save`). A learner holds one as `Box<dyn Optimizer>`.
///
/// ```
/// use fastvision::learner::optim::{AdamW, Optimizer};
/// let w = tch::Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
/// let mut opt: Box<dyn Optimizer> = Box::new(AdamW::new(vec![vec![("w".to_string(), w.shallow_clone())]]));
/// opt.set_hypers(&[0.1], 0.9);
/// opt.zero_grad();
/// (&w * &w).sum(tch::Kind::Float).backward();
/// opt.step();
/// assert!(w.double_value(&[0]) < 1.0);
/// ```
pub trait Optimizer: Send + std::fmt::Debug {
    /// Each layer group's learning rate and the momentum (Adam's beta1, SGD's momentum) for
    /// the next step.
    fn set_hypers(&mut self, lrs: &[f64], mom: f64);
    /// Updates the parameters from their gradients.
    fn step(&mut self);
    /// Clears the gradients before the next backward pass (and forgets any skip flag).
    fn zero_grad(&mut self);
    /// Gradients of the trainable parameters that have one.
    fn grads(&self) -> Vec<Tensor>;
    /// The next [`Optimizer::step`] leaves every parameter and its state alone if `found_inf`
    /// (a one-element float tensor on the parameters' device) is non-zero: a loss scaler's
    /// skipped step.
    fn skip_step_if(&mut self, found_inf: &Tensor);
    /// A copy of the per-parameter state.
    fn state(&self) -> OptimizerState;
    /// Puts back a state from [`Optimizer::state`].
    fn set_state(&mut self, state: &[ParamState]);
    /// Forgets all state (fastai rebuilds the optimizer on freeze and unfreeze).
    fn clear_state(&mut self) {
        self.set_state(&[]);
    }
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
    fn grads(&self) -> Vec<Tensor> {
        AdamW::grads(self)
    }
    fn skip_step_if(&mut self, found_inf: &Tensor) {
        AdamW::skip_step_if(self, found_inf)
    }
    fn state(&self) -> OptimizerState {
        AdamW::state(self)
    }
    fn set_state(&mut self, state: &[ParamState]) {
        AdamW::set_state(self, state)
    }
}

/// What builds a learner's optimizer from its parameters by layer group: fastai's
/// `opt_func`. [`adamw`] and [`sgd`] make one; any closure of this shape is one.
///
/// ```
/// use fastvision::learner::optim::{OptFunc, Optimizer, sgd};
/// fn build(f: impl OptFunc) -> Box<dyn Optimizer> {
///     f(vec![vec![("w".to_string(), tch::Tensor::zeros([2], tch::kind::FLOAT_CPU).set_requires_grad(true))]])
/// }
/// let opt = build(sgd(0.0));
/// assert!(opt.state()[0].buffers.is_empty());
/// ```
pub trait OptFunc: Fn(ParamGroups) -> Box<dyn Optimizer> + 'static {}

impl<F: Fn(ParamGroups) -> Box<dyn Optimizer> + 'static> OptFunc for F {}

/// fastai's default optimizer, [`AdamW`], with decoupled weight decay `wd` (fastai: 1e-2).
///
/// ```
/// let opt = fastvision::learner::optim::adamw(1e-2)(vec![Vec::new()]);
/// assert!(opt.state().is_empty());
/// ```
pub fn adamw(wd: f64) -> impl OptFunc {
    move |groups| {
        let mut opt = AdamW::new(groups);
        opt.wd = wd;
        Box::new(opt) as Box<dyn Optimizer>
    }
}

/// SGD with momentum (the fit's: fastai cycles it 0.95 → 0.85 in `fit_one_cycle`, 0.9
/// otherwise) and decoupled weight decay `wd` (fastai's `SGD`, `decouple_wd=True`).
///
/// ```
/// let opt = fastvision::learner::optim::sgd(0.0)(vec![Vec::new()]);
/// assert!(opt.state().is_empty());
/// ```
pub fn sgd(wd: f64) -> impl OptFunc {
    move |groups| Box::new(Sgd::new(groups, wd)) as Box<dyn Optimizer>
}

/// SGD with momentum, as torch's `SGD(momentum=m)` and fastai's `SGD`: per parameter
/// `buf = m·buf + grad` (the first step's `buf` is the gradient), then `p -= lr·buf`, after
/// decoupled weight decay `p *= 1 - lr·wd`.
///
/// ```
/// use fastvision::learner::optim::{Optimizer, Sgd};
/// let w = tch::Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
/// let mut opt = Sgd::new(vec![vec![("w".to_string(), w.shallow_clone())]], 0.0);
/// opt.set_hypers(&[0.1], 0.9);
/// for _ in 0..2 {
///     opt.zero_grad();
///     (&w * &w).sum(tch::Kind::Float).backward(); // gradient 2w
///     opt.step();
/// }
/// // w1 = 1 - 0.1·2 = 0.8; buf = 0.9·2 + 1.6 = 3.4; w2 = 0.8 - 0.34 = 0.46
/// assert!((w.double_value(&[0]) - 0.46).abs() < 1e-6);
/// ```
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<SgdGroup>,
    /// Momentum for the next step (set by the fit through [`Optimizer::set_hypers`]).
    pub momentum: f64,
    /// Decoupled weight decay.
    pub wd: f64,
    found_inf: Option<Tensor>,
}

#[derive(Debug)]
struct SgdGroup {
    params: Vec<SgdParam>,
    lr: f64,
}

#[derive(Debug)]
struct SgdParam {
    name: String,
    tensor: Tensor,
    buf: Option<Tensor>,
    step: i64,
}

impl Sgd {
    /// SGD over named parameters by layer group, momentum 0.9 until the fit sets it.
    pub fn new(groups: ParamGroups, wd: f64) -> Sgd {
        let groups = groups
            .into_iter()
            .map(|ps| SgdGroup {
                params: ps
                    .into_iter()
                    .map(|(name, tensor)| SgdParam {
                        name,
                        tensor,
                        buf: None,
                        step: 0,
                    })
                    .collect(),
                lr: 1e-3,
            })
            .collect();
        Sgd {
            groups,
            momentum: 0.9,
            wd,
            found_inf: None,
        }
    }

    fn params(&self) -> impl Iterator<Item = &SgdParam> {
        self.groups.iter().flat_map(|g| g.params.iter())
    }
}

/// Adds a skip flag to the ones given since the last zero_grad: two scalers (the learner's own
/// and one passed to a fit) each add theirs, and any non-zero one skips the step.
fn merge_flag(flags: &mut Option<Tensor>, found_inf: &Tensor) {
    *flags = Some(match flags.take() {
        Some(earlier) => earlier.maximum(found_inf),
        None => found_inf.shallow_clone(),
    });
}

/// A copy of `saved` in `param`'s memory layout, on its device.
fn in_layout_of(param: &Tensor, saved: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let mut out = param.zeros_like();
        out.copy_(saved);
        out
    })
}

fn trainable_grad(t: &Tensor) -> Option<Tensor> {
    if !t.requires_grad() {
        return None;
    }
    Some(t.grad()).filter(Tensor::defined)
}

impl Optimizer for Sgd {
    fn set_hypers(&mut self, lrs: &[f64], mom: f64) {
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.lr = lr;
        }
        self.momentum = mom;
    }
    fn step(&mut self) {
        // SGD has no fused kernel to read the flag on the device: the host reads it once.
        if let Some(inf) = self.found_inf.take()
            && inf.double_value(&[]) != 0.0
        {
            return;
        }
        let (mom, wd) = (self.momentum, self.wd);
        tch::no_grad(|| {
            for g in self.groups.iter_mut() {
                for p in g.params.iter_mut() {
                    let Some(grad) = trainable_grad(&p.tensor) else {
                        continue;
                    };
                    let mut t = p.tensor.shallow_clone();
                    if wd != 0.0 {
                        let _ = t.g_mul_scalar_(1.0 - g.lr * wd);
                    }
                    let update = match p.buf.as_mut() {
                        Some(buf) if mom != 0.0 => {
                            let _ = buf.g_mul_scalar_(mom).g_add_(&grad);
                            buf.shallow_clone()
                        }
                        _ if mom != 0.0 => {
                            let buf = grad.copy();
                            p.buf = Some(buf.shallow_clone());
                            buf
                        }
                        _ => grad,
                    };
                    let _ = t.g_sub_(&(update * g.lr));
                    p.step += 1;
                }
            }
        });
    }
    fn zero_grad(&mut self) {
        self.found_inf = None;
        let grads = self.grads();
        foreach::zero_(&grads.iter().collect::<Vec<_>>());
    }
    fn grads(&self) -> Vec<Tensor> {
        self.params()
            .filter_map(|p| trainable_grad(&p.tensor))
            .collect()
    }
    fn skip_step_if(&mut self, found_inf: &Tensor) {
        merge_flag(&mut self.found_inf, found_inf);
    }
    fn state(&self) -> OptimizerState {
        self.params()
            .map(|p| ParamState {
                name: p.name.clone(),
                step: p.step,
                buffers: p
                    .buf
                    .iter()
                    .map(|b| ("momentum_buffer".to_string(), b.copy()))
                    .collect(),
            })
            .collect()
    }
    fn set_state(&mut self, state: &[ParamState]) {
        let by_name: std::collections::HashMap<&str, &ParamState> =
            state.iter().map(|s| (s.name.as_str(), s)).collect();
        for p in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            let saved = by_name.get(p.name.as_str());
            p.step = saved.map_or(0, |s| s.step);
            p.buf = saved
                .and_then(|s| s.buffer("momentum_buffer"))
                .map(|b| in_layout_of(&p.tensor, b));
        }
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

    /// A state put back from NCHW copies (as a file holds them) steps a channels-last weight
    /// exactly as the state it came from.
    #[test]
    fn state_from_a_file_steps_a_channels_last_weight_as_before() {
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        let w0 = Tensor::randn([4, 3, 3, 3], opts);
        let to_cl = |t: &Tensor| crate::torch_ext::layout::channels_last(t).copy();
        let a = to_cl(&w0).set_requires_grad(true);
        let b = to_cl(&w0).set_requires_grad(true);
        let x = to_cl(&Tensor::randn([4, 3, 3, 3], opts));
        let mut oa = AdamW::new(vec![vec![("w".into(), a.shallow_clone())]]);
        oa.set_lrs(&[1e-2]);
        for _ in 0..3 {
            oa.zero_grad();
            (&a * &x * &a).sum(Kind::Float).backward();
            oa.step();
        }
        // b takes a's weights and a's state as a file gives them back: plain NCHW copies.
        tch::no_grad(|| b.shallow_clone().copy_(&a));
        let saved: Vec<ParamState> = oa
            .state()
            .into_iter()
            .map(|s| ParamState {
                buffers: s
                    .buffers
                    .into_iter()
                    .map(|(n, t)| (n, t.contiguous()))
                    .collect(),
                ..s
            })
            .collect();
        let mut ob = AdamW::new(vec![vec![("w".into(), b.shallow_clone())]]);
        ob.set_lrs(&[1e-2]);
        ob.set_state(&saved);
        for (o, p) in [(&mut oa, &a), (&mut ob, &b)] {
            o.zero_grad();
            (p * &x * p).sum(Kind::Float).backward();
            o.step();
        }
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "the resumed step differs by {diff}");
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
        let steps: Vec<i64> = opt.state().iter().map(|s| s.step).collect();
        assert_eq!(steps, [5, 0, 5]);
        // The state round-trips, counts included.
        let state = opt.state();
        opt.clear_state();
        opt.set_state(&state);
        assert_eq!(
            opt.state().iter().map(|s| s.step).collect::<Vec<_>>(),
            [5, 0, 5]
        );
    }
}

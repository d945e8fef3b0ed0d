//! What a learner trains: anything that implements [`Network`], built from a tch `nn::Path`.
//! [`Cnn`] (a body from an [`Arch`] and fastai's head) is the one `cnn_learner` builds; a
//! network of your own trains through the same fit, callbacks and interpretation.
//!
//! Layer groups are tch's own: a network builds each parameter under `p.set_group(g)`, and
//! the learner gives group `g` its own learning rate (`slice(lo, hi)`) and freezes groups
//! before `n` with `freeze_to(n)`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};

use tch::Tensor;
use tch::nn::{self, ModuleT};

use crate::models::Mode;
use crate::models::archs::{Arch, Stage, forward_stages};
use crate::models::head::create_head;

/// The small trait a model implements to be trained: the forward pass in training or
/// evaluation mode. Its parameters, by layer group, are the variables it made under the
/// `nn::Path` it was built from (`p.set_group(g)` puts them in group `g`).
///
/// ```
/// use fastvision::models::{Mode, Network};
/// use tch::nn::{self, Module};
/// #[derive(Debug)]
/// struct Linear(nn::Linear);
/// impl Network for Linear {
///     fn forward(&self, x: &tch::Tensor, _mode: Mode) -> tch::Tensor {
///         x.flatten(1, -1).apply(&self.0)
///     }
/// }
/// let vs = nn::VarStore::new(tch::Device::Cpu);
/// let net = Linear(nn::linear(vs.root() / "fc", 12, 2, Default::default()));
/// let x = tch::Tensor::zeros([1, 3, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
/// assert_eq!(net.forward(&x, Mode::Eval).size(), [1, 2]);
/// ```
pub trait Network: Any + Send + std::fmt::Debug {
    /// The logits `[B, classes]` for a batch `[B, 3, H, W]`; `mode` says whether dropout and
    /// BatchNorm train.
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor;
    /// A short name for summaries and logs: the type's own by default.
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path).to_string()
    }
}

/// A CNN: a body of named stages from an [`Arch`] and fastai's head (`head.*`, the last
/// layer group). Its body's feature map is what Grad-CAM and similarity searches look at.
///
/// ```
/// use fastvision::models::{Cnn, Mode, Network, mobilenet_v2};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let cnn = Cnn::new(&vs.root(), mobilenet_v2, 5);
/// let x = tch::Tensor::zeros([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
/// assert_eq!(tch::no_grad(|| cnn.forward(&x, Mode::Eval)).size(), [2, 5]);
/// ```
#[derive(Debug)]
pub struct Cnn {
    /// The architecture of the body.
    pub arch: Arch,
    /// The body's stages, in order.
    pub body: Vec<Stage>,
    /// fastai's head.
    pub head: nn::SequentialT,
}

impl Cnn {
    /// `arch`'s body under `p` and a head for `n_classes` under `p / "head"`, in the layer
    /// group after the body's.
    pub fn new(p: &nn::Path, arch: Arch, n_classes: i64) -> Cnn {
        let body = arch.body(p);
        let head_group = arch.n_groups() - 1;
        let head = create_head(
            &(p.set_group(head_group) / "head"),
            arch.body_channels(),
            n_classes,
        );
        Cnn { arch, body, head }
    }

    /// The body's feature map for `x`.
    pub fn features(&self, x: &Tensor, mode: Mode) -> Tensor {
        forward_stages(&self.body, x, mode)
    }

    /// The head applied to a feature map from [`Cnn::features`].
    pub fn head_forward(&self, features: &Tensor, mode: Mode) -> Tensor {
        self.head.forward_t(features, mode.is_train())
    }
}

impl Network for Cnn {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        self.head_forward(&self.features(x, mode), mode)
    }
    fn name(&self) -> String {
        self.arch.name().to_string()
    }
}

/// Trainable variables of `vs` by layer group (tch's group, set by `p.set_group`), each
/// group sorted by name; empty groups between used ones are kept, so group numbers stay
/// the network's.
pub(crate) fn param_groups(vs: &nn::VarStore) -> Vec<Vec<(String, Tensor)>> {
    let vars = vs.variables_.lock().expect("the VarStore's lock");
    let group_of: HashMap<usize, usize> = vars
        .trainable_variables
        .iter()
        // Zero-element tensors have no storage to tell them apart: none are parameters.
        .filter(|v| v.tensor.numel() > 0)
        .map(|v| (v.tensor.data_ptr() as usize, v.group))
        .collect();
    let mut groups: BTreeMap<usize, Vec<(String, Tensor)>> = BTreeMap::new();
    for (name, t) in &vars.named_variables {
        if t.numel() == 0 {
            continue;
        }
        if let Some(&g) = group_of.get(&(t.data_ptr() as usize)) {
            groups
                .entry(g)
                .or_default()
                .push((name.clone(), t.shallow_clone()));
        }
    }
    let n = groups.keys().next_back().map_or(1, |g| g + 1);
    (0..n)
        .map(|g| {
            let mut ps = groups.remove(&g).unwrap_or_default();
            ps.sort_by(|a, b| a.0.cmp(&b.0));
            ps
        })
        .collect()
}

/// The trainable parameters of BatchNorm layers, found by module kind: tch's BatchNorm is the
/// layer that keeps `running_mean` beside its `weight` and `bias`. Conv biases and LayerNorm
/// weights are not among them, one-dimensional as they are (fastai's `bn_types`).
///
/// ```
/// use tch::nn;
/// let vs = nn::VarStore::new(tch::Device::Cpu);
/// let _bn = nn::batch_norm2d(vs.root() / "bn", 4, Default::default());
/// let _ln = nn::layer_norm(vs.root() / "ln", vec![4], Default::default());
/// let _conv = nn::conv2d(vs.root() / "conv", 3, 4, 3, Default::default());
/// let bn = fastvision::models::network::batchnorm_params(&vs);
/// assert_eq!(bn.len(), 2);
/// assert!(bn.contains("bn.weight") && bn.contains("bn.bias"));
/// ```
pub fn batchnorm_params(vs: &nn::VarStore) -> HashSet<String> {
    let vars = vs.variables();
    vars.keys()
        .filter_map(|n| n.strip_suffix(".running_mean"))
        .flat_map(|m| [format!("{m}.weight"), format!("{m}.bias")])
        .filter(|n| vars.contains_key(n))
        .collect()
}

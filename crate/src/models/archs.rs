//! ResNet-18/34/50 and MobileNetV2 bodies with torchvision's parameter names, cut where fastai
//! cuts them (before the pooling and classifier), as a list of named stages so that the
//! learner can split them into layer groups and show a summary.

use std::fmt;

use tch::Tensor;
use tch::nn::{self, ModuleT};

use crate::{Error, Result};

/// A network architecture that `cnn_learner` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// ResNet-18 (BasicBlock, [2, 2, 2, 2]).
    Resnet18,
    /// ResNet-34 (BasicBlock, [3, 4, 6, 3]), the lesson's model.
    Resnet34,
    /// ResNet-50 (Bottleneck, [3, 4, 6, 3]).
    Resnet50,
    /// MobileNetV2, whose ImageNet weights ship offline with the project.
    MobilenetV2,
}

/// ResNet-18, named as in `models.resnet18`.
#[allow(non_upper_case_globals)]
pub const resnet18: Arch = Arch::Resnet18;
/// ResNet-34, named as in the lesson's `models.resnet34`.
///
/// ```
/// assert_eq!(fastvision::models::resnet34.name(), "resnet34");
/// ```
#[allow(non_upper_case_globals)]
pub const resnet34: Arch = Arch::Resnet34;
/// ResNet-50.
#[allow(non_upper_case_globals)]
pub const resnet50: Arch = Arch::Resnet50;
/// MobileNetV2.
#[allow(non_upper_case_globals)]
pub const mobilenet_v2: Arch = Arch::MobilenetV2;

/// A named part of a body: what `summary()` lists and layer groups are made of.
pub struct Stage {
    /// torchvision's name for it (`layer3`, `features.14`, ...).
    pub name: String,
    /// The layers.
    pub module: Box<dyn ModuleT>,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stage({})", self.name)
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
    pub const ALL: [Arch; 4] = [
        Arch::Resnet18,
        Arch::Resnet34,
        Arch::Resnet50,
        Arch::MobilenetV2,
    ];

    /// torchvision's name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
            Arch::MobilenetV2 => "mobilenet_v2",
        }
    }

    /// torchvision's ImageNet checkpoint file name; the part after the dash is the start of
    /// its SHA-256.
    pub fn weights_file(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18-f37072fd.pth",
            Arch::Resnet34 => "resnet34-b627a593.pth",
            Arch::Resnet50 => "resnet50-0676ba61.pth",
            Arch::MobilenetV2 => "mobilenet_v2-b0353104.pth",
        }
    }

    /// Where torchvision downloads the checkpoint from.
    pub fn weights_url(self) -> String {
        format!(
            "https://download.pytorch.org/models/{}",
            self.weights_file()
        )
    }

    /// Channels coming out of the body.
    pub fn body_channels(self) -> i64 {
        match self {
            Arch::Resnet18 | Arch::Resnet34 => 512,
            Arch::Resnet50 => 2048,
            Arch::MobilenetV2 => 1280,
        }
    }

    /// Which layer group a body parameter belongs to: 0 for the early stages, 1 for the late
    /// ones (fastai splits resnets after `layer2`; MobileNetV2 we split after `features.13`,
    /// where its resolution last halves). The head is group 2.
    ///
    /// ```
    /// use fastvision::models::{resnet34, mobilenet_v2};
    /// assert_eq!(resnet34.group_of("layer2.1.conv1.weight"), 0);
    /// assert_eq!(resnet34.group_of("layer3.0.bn1.weight"), 1);
    /// assert_eq!(mobilenet_v2.group_of("features.14.conv.0.0.weight"), 1);
    /// ```
    pub fn group_of(self, name: &str) -> usize {
        let first = name.split('.').next().unwrap_or("");
        match self {
            Arch::MobilenetV2 => {
                let idx = name
                    .split('.')
                    .nth(1)
                    .and_then(|i| i.parse::<usize>().ok())
                    .unwrap_or(0);
                usize::from(idx >= 14)
            }
            _ => usize::from(matches!(first, "layer3" | "layer4")),
        }
    }

    /// Builds the body under `p` (torchvision names, no prefix).
    pub fn body(self, p: &nn::Path) -> Vec<Stage> {
        match self {
            Arch::Resnet18 => resnet_body(p, false, [2, 2, 2, 2]),
            Arch::Resnet34 => resnet_body(p, false, [3, 4, 6, 3]),
            Arch::Resnet50 => resnet_body(p, true, [3, 4, 6, 3]),
            Arch::MobilenetV2 => mobilenet_body(p),
        }
    }

    /// torchvision's ImageNet classifier on top of the body features (`fc` for resnets,
    /// `classifier.1` for MobileNetV2), to check pretrained weights against ImageNet classes.
    pub fn imagenet_classifier(self, p: &nn::Path) -> impl ModuleT + use<> {
        let name = if self == Arch::MobilenetV2 {
            p / "classifier" / 1
        } else {
            p / "fc"
        };
        let fc = nn::linear(name, self.body_channels(), 1000, Default::default());
        nn::func_t(move |xs, _train| xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&fc))
    }
}

fn stage(name: impl Into<String>, module: impl ModuleT + 'static) -> Stage {
    Stage {
        name: name.into(),
        module: Box::new(module),
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

fn resnet_body(p: &nn::Path, bottlenecks: bool, layers: [usize; 4]) -> Vec<Stage> {
    let conv1 = conv(p / "conv1", 3, 64, 7, 2, 3, 1);
    let bn1 = bn(p / "bn1", 64);
    let mut stages = vec![stage(
        "conv1+bn1+relu+maxpool",
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
        let lp = p / format!("layer{}", i + 1);
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
        stages.push(stage(format!("layer{}", i + 1), layer));
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
    let f = p / "features";
    let mut stages = vec![stage("features.0", cbr(&f / 0, 3, 32, 3, 2, 1))];
    let mut c_in = 32;
    let mut id = 1;
    for (expand, c_out, n, stride) in SETTINGS {
        for i in 0..n {
            let s = if i == 0 { stride } else { 1 };
            let block = inverted_residual(&f / id / "conv", c_in, c_out, s, expand);
            stages.push(stage(format!("features.{id}"), block));
            c_in = c_out;
            id += 1;
        }
    }
    stages.push(stage(
        format!("features.{id}"),
        cbr(&f / id, c_in, 1280, 1, 1, 1),
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

//! A learner is not only `cnn_learner`: a network defined here, in the test, trains with SGD
//! with momentum and fastai's label-smoothing loss through the same fit, callbacks, metrics,
//! recorder, `lr_find`, save/load and interpretation; and `cnn_learner` takes a body defined
//! here, with its own layer groups, which freeze and unfreeze by group, BatchNorm found by
//! kind.

mod common;

use std::collections::HashMap;
use std::process::Command;

use fastvision::learner::CnnOptions;
use fastvision::learner::fit::{Callback, FitContext};
use fastvision::learner::optim::{Optimizer, Sgd, sgd};
use fastvision::loss::LabelSmoothingCrossEntropy;
use fastvision::models::weights::python;
use fastvision::models::{Arch, Mode, Model, Network, Stage};
use fastvision::{ClassificationInterpretation, Learner, cnn_learner_with, error_rate, slice};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// A small CNN written the tch way, its layers in two groups: the convolutions, then the
/// classifier.
#[derive(Debug)]
struct TinyNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    fc: nn::Linear,
}

impl TinyNet {
    fn new(p: &nn::Path, n_classes: i64) -> TinyNet {
        let body = p.set_group(0);
        let cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        TinyNet {
            conv1: nn::conv2d(&body / "conv1", 3, 16, 3, cfg),
            bn1: nn::batch_norm2d(&body / "bn1", 16, Default::default()),
            conv2: nn::conv2d(&body / "conv2", 16, 32, 3, cfg),
            fc: nn::linear(p.set_group(1) / "fc", 32, n_classes, Default::default()),
        }
    }
}

impl Network for TinyNet {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        x.apply(&self.conv1)
            .apply_t(&self.bn1, mode.is_train())
            .relu()
            .apply(&self.conv2)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}

/// Counts the batches and epochs it hears, and reads the optimizer through the trait.
#[derive(Default)]
struct Watch {
    batches: usize,
    epochs: usize,
    grads_seen: usize,
}

impl Callback for Watch {
    fn on_backward_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        self.grads_seen = cx.learn.opt.grads().len();
        Ok(())
    }
    fn on_batch_end(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.batches += 1;
        Ok(())
    }
    fn on_epoch_end(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.epochs += 1;
        Ok(())
    }
}

#[test]
fn a_network_of_ones_own_trains_with_sgd_and_label_smoothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 3);
    let c = data.classes.len() as i64;
    // A model that normalises otherwise than the data, or lives elsewhere, is refused.
    let classes = data.classes.clone();
    let unnormalised =
        Model::from_network(classes, 64, None, Device::Cpu, move |p| TinyNet::new(p, c)).unwrap();
    let err = Learner::new(
        data.clone(),
        unnormalised,
        LabelSmoothingCrossEntropy::default(),
        sgd(0.0),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("normalises with None"), "{err}");
    fastvision::seed_everything(0);
    let model = Model::for_data(&data, move |p| TinyNet::new(p, c)).unwrap();
    assert_eq!(model.name(), "TinyNet");
    let mut learn = Learner::new(
        data.clone(),
        model,
        LabelSmoothingCrossEntropy::default(),
        sgd(0.0),
    )
    .unwrap()
    .with_metrics(&[error_rate]);
    assert_eq!(learn.n_groups(), 2, "the groups the network made");
    assert_eq!(
        learn.loss_func.name(),
        "LabelSmoothingCrossEntropy(eps=0.1)"
    );

    // lr_find sweeps and leaves the weights as they were.
    let before = learn.model.snapshot();
    learn
        .lr_find_with(fastvision::learner::lr_find::LrFind {
            num_it: 20,
            ..Default::default()
        })
        .unwrap();
    assert!(common::weights_equal(&before, &learn.model.snapshot()));
    assert!(learn.recorder.is_lr_find && learn.recorder.lrs.len() >= 10);

    // The untrained network's validation loss, by its own loss function.
    let (_, _, losses0) = learn.get_preds(&learn.data.valid_dl).unwrap();
    let loss0 = losses0.mean(Kind::Float).double_value(&[]);

    let mut watch = Watch::default();
    learn
        .fit_one_cycle_with(6, slice(5e-2, 0.5), &mut [&mut watch])
        .unwrap();
    let n_batches = learn.data.train_dl.len();
    assert_eq!((watch.batches, watch.epochs), (6 * n_batches, 6));
    let n_params = learn
        .model
        .param_groups()
        .iter()
        .map(Vec::len)
        .sum::<usize>();
    assert_eq!(
        watch.grads_seen, n_params,
        "every parameter trains, nothing frozen"
    );

    // The recorder saw every batch and epoch, with the metric; the one-cycle schedule spread
    // the two groups' rates and cycled SGD's momentum.
    let rec = &learn.recorder;
    assert_eq!(rec.losses.len(), 6 * n_batches);
    assert_eq!(rec.epochs.len(), 6);
    assert_eq!(rec.metric_names, ["error_rate"]);
    assert!(rec.moms.iter().cloned().fold(f64::INFINITY, f64::min) < 0.9);
    let last = rec.epochs.last().unwrap();
    let valid_loss = last.valid_loss.unwrap();
    assert!(
        valid_loss < loss0 * 0.8,
        "training lowered the validation loss: {loss0:.3} -> {valid_loss:.3}"
    );
    // The four classes are two look-alike pairs: a trained network tells the pairs apart at
    // least, so it is wrong at most half the time, against 3/4 for chance.
    assert!(
        last.metrics[0] <= 0.5 + 1e-9,
        "error rate {}",
        last.metrics[0]
    );

    // SGD with momentum kept a buffer per parameter, and save/load puts it back.
    let state = learn.opt.state();
    assert!(state.iter().all(|s| s.buffer("momentum_buffer").is_some()));
    learn.model_dir = tmp.path().join("models");
    learn.save("tiny").unwrap();
    let weights = learn.model.snapshot();
    learn.fit(1, 1e-2).unwrap();
    learn.load("tiny").unwrap();
    assert!(common::weights_equal(&weights, &learn.model.snapshot()));
    for (a, b) in state.iter().zip(learn.opt.state().iter()) {
        assert_eq!((&a.name, a.step), (&b.name, b.step));
        let (x, y) = (
            a.buffer("momentum_buffer").unwrap(),
            b.buffer("momentum_buffer").unwrap(),
        );
        assert!(x.equal(y), "momentum of {}", a.name);
    }

    // The interpretation ranks by the learner's loss: its top loss is the largest per-item
    // label-smoothing loss of get_preds.
    let interp = ClassificationInterpretation::from_learner(&learn).unwrap();
    let (top, _) = interp.top_losses_k(1);
    let (_, _, losses) = learn.get_preds(&learn.data.valid_dl).unwrap();
    let max = losses.max().double_value(&[]);
    assert!((top.double_value(&[0]) - max).abs() < 1e-5);
    let cm = interp.confusion_matrix();
    assert_eq!(cm.size(), [c, c]);
    assert_eq!(
        cm.sum(Kind::Int64).int64_value(&[]),
        learn.data.valid_dl.dataset.len() as i64
    );
    // Grad-CAM needs a CNN's body: a clear error, not a panic.
    let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let err = learn.model.gradcam(&x, &[0]).unwrap_err().to_string();
    assert!(err.contains("Grad-CAM") && err.contains("TinyNet"), "{err}");

    // A splitter regroups: one group, and a slice now gives it the top rate.
    learn.split(|_| 0);
    assert_eq!(learn.n_groups(), 1);
    learn.fit(1, slice(1e-3, 1e-2)).unwrap();
    assert!(
        learn
            .recorder
            .lrs
            .iter()
            .all(|&lr| (lr - 1e-2).abs() < 1e-12)
    );
}

/// torch's `SGD(momentum=0.9)` on the same parameters and gradients is the oracle for
/// [`Sgd`], over steps with changing learning rates and two layer groups.
#[test]
fn sgd_matches_torch() {
    let py = python().expect("the .venv python (make setup)");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sgd.safetensors");
    let script = format!(
        "import torch, safetensors.torch as st\n\
         torch.manual_seed(0)\n\
         a = torch.randn(4, 3, requires_grad=True); b = torch.randn(5, requires_grad=True)\n\
         out = {{'a0': a.detach().clone(), 'b0': b.detach().clone()}}\n\
         opt = torch.optim.SGD([{{'params': [a], 'lr': 0.1}}, {{'params': [b], 'lr': 0.01}}], momentum=0.9)\n\
         for t in range(4):\n\
         \x20   x = torch.full((4, 3), float(t + 1))\n\
         \x20   opt.param_groups[0]['lr'] = 0.1 / (t + 1); opt.param_groups[1]['lr'] = 0.01 * (t + 1)\n\
         \x20   opt.zero_grad(); ((a * x).sum() + (b * b).sum() * (t + 1)).backward(); opt.step()\n\
         out['a'] = a.detach(); out['b'] = b.detach()\n\
         st.save_file(out, '{}')\n",
        file.display()
    );
    let out = Command::new(&py).arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let torch: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .collect();
    let a = torch["a0"].copy().set_requires_grad(true);
    let b = torch["b0"].copy().set_requires_grad(true);
    let mut opt = Sgd::new(
        vec![
            vec![("a".into(), a.shallow_clone())],
            vec![("b".into(), b.shallow_clone())],
        ],
        0.0,
    );
    for t in 0..4 {
        let x = Tensor::full([4, 3], (t + 1) as f64, (Kind::Float, Device::Cpu));
        opt.set_hypers(&[0.1 / (t + 1) as f64, 0.01 * (t + 1) as f64], 0.9);
        opt.zero_grad();
        ((&a * &x).sum(Kind::Float) + (&b * &b).sum(Kind::Float) * (t + 1) as f64).backward();
        opt.step();
    }
    for (ours, theirs) in [(&a, &torch["a"]), (&b, &torch["b"])] {
        let diff = (ours - theirs).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "SGD differs from torch's by {diff}");
    }
    // A skipped step (a loss scaler's overflow) moves nothing and keeps the momentum.
    let before = (
        a.copy(),
        opt.state()[0].buffer("momentum_buffer").unwrap().copy(),
    );
    opt.zero_grad();
    (&a * &a).sum(Kind::Float).backward();
    opt.skip_step_if(&Tensor::from_slice(&[1.0f32]));
    opt.step();
    assert!(a.equal(&before.0));
    assert!(
        opt.state()[0]
            .buffer("momentum_buffer")
            .unwrap()
            .equal(&before.1)
    );
}

/// A body defined here: three stages in three layer groups, with a conv bias and a
/// LayerNorm-like affine (not BatchNorm) in the first group and BatchNorm in the second.
fn test_body(p: &nn::Path) -> Vec<Stage> {
    let g0 = p.set_group(0);
    let conv = nn::conv2d(
        &g0 / "stem",
        3,
        8,
        3,
        nn::ConvConfig {
            stride: 2,
            ..Default::default()
        },
    );
    let ln = nn::group_norm(&g0 / "gn", 1, 8, Default::default());
    let g1 = p.set_group(1);
    let conv2 = nn::conv2d(
        &g1 / "mid" / "conv",
        8,
        16,
        3,
        nn::ConvConfig {
            bias: false,
            ..Default::default()
        },
    );
    let bn = nn::batch_norm2d(&g1 / "mid" / "bn", 16, Default::default());
    let conv3 = nn::conv2d(&p.set_group(2) / "late", 16, 24, 1, Default::default());
    vec![
        Stage::new(
            "stem",
            0,
            &["stem", "gn"],
            nn::func_t(move |x, _| x.apply(&conv).apply(&ln).relu()),
        ),
        Stage::new(
            "mid",
            1,
            &["mid"],
            nn::func_t(move |x, train| x.apply(&conv2).apply_t(&bn, train).relu()),
        ),
        Stage::new("late", 2, &["late"], conv3),
    ]
}

#[test]
fn cnn_learner_on_a_body_of_ones_own_freezes_by_group() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 4);
    let arch = Arch::new("test_body", 24, test_body);
    assert_eq!(arch.n_groups(), 4);
    // No ImageNet weights: pretrained asks for them and says how to train from scratch.
    let err = fastvision::cnn_learner(&data, arch, &[error_rate])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test_body has no ImageNet weights") && err.contains("pretrained: false"),
        "{err}"
    );

    let opts = CnnOptions {
        pretrained: false,
        ..Default::default()
    };
    let mut learn = cnn_learner_with(&data, arch, &[error_rate], opts).unwrap();
    assert_eq!(learn.n_groups(), 4, "three body groups and the head");
    assert_eq!(learn.model.arch(), Some(arch));
    let summary = learn.summary();
    let groups: Vec<usize> = summary.rows.iter().map(|r| r.group).collect();
    assert_eq!(groups, [0, 1, 2, 3]);
    assert_eq!(
        summary.rows[0].params,
        3 * 8 * 9 + 8 + 8 + 8,
        "stem conv and group norm"
    );

    // Frozen up to the head: only the head and BatchNorm train; the conv bias and the group
    // norm's affine are one-dimensional but not BatchNorm, so they freeze.
    learn.freeze();
    let trains = |learn: &Learner| -> Vec<String> {
        let mut names: Vec<String> = learn
            .model
            .vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, _)| n)
            .filter(|n| !n.starts_with("head."))
            .collect();
        names.sort();
        names
    };
    assert_eq!(trains(&learn), ["mid.bn.bias", "mid.bn.weight"]);
    learn.freeze_to(2);
    assert_eq!(
        trains(&learn),
        ["late.bias", "late.weight", "mid.bn.bias", "mid.bn.weight"]
    );

    // Frozen weights stay put through a fit; the head moves.
    let before: HashMap<String, Tensor> = learn.model.snapshot().into_iter().collect();
    learn.fit(1, 1e-2).unwrap();
    let after: HashMap<String, Tensor> = learn.model.snapshot().into_iter().collect();
    let moved = |n: &str| !before[n].equal(&after[n]);
    assert!(!moved("stem.weight") && !moved("stem.bias") && !moved("gn.weight"));
    assert!(!moved("mid.conv.weight"));
    assert!(moved("mid.bn.weight") && moved("late.weight"));
    assert!(
        after
            .keys()
            .filter(|n| n.starts_with("head."))
            .any(|n| moved(n))
    );

    // A splitter regroups: the body in one group, the head in the other; the summary says so.
    learn.split(|name| usize::from(name.starts_with("head.")));
    let groups: Vec<usize> = learn.summary().rows.iter().map(|r| r.group).collect();
    assert_eq!(groups, [0, 0, 0, 1]);

    learn.unfreeze();
    assert_eq!(learn.frozen_groups(), 0);
    learn.fit(1, 1e-2).unwrap();
    let last: HashMap<String, Tensor> = learn.model.snapshot().into_iter().collect();
    assert!(
        !after["stem.weight"].equal(&last["stem.weight"]),
        "unfrozen, the stem trains"
    );
}

//! The foundation works end to end: libtorch is linked and loads, the device is chosen, and a
//! real Fruits 360 image goes forward and backward through a small CNN.

mod common;

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Kind, Tensor};

fn first_image(sample: &std::path::Path) -> (std::path::PathBuf, usize, Vec<String>) {
    let training = sample.join("Training");
    let mut classes: Vec<String> = std::fs::read_dir(&training)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let label = classes.len() / 2;
    let mut files: Vec<_> = std::fs::read_dir(training.join(&classes[label]))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    (files[0].clone(), label, classes)
}

#[test]
fn small_cnn_forward_backward_on_a_real_image() {
    let Some(sample) = common::real_sample("small_cnn_forward_backward_on_a_real_image") else {
        return;
    };
    let device = fastvision::default_device().unwrap();
    let (path, label, classes) = first_image(&sample);

    let rgb = image::open(&path).unwrap().to_rgb8();
    let (w, h) = rgb.dimensions();
    assert_eq!(
        (w, h),
        (100, 100),
        "Fruits 360 images are 100x100: {}",
        path.display()
    );
    let x = Tensor::from_slice(rgb.as_raw())
        .view([1, h as i64, w as i64, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        .to_device(device)
        / 255.0;
    // A real photo on a white background: bright on average but not blank.
    let mean = x.mean(Kind::Float).double_value(&[]);
    assert!(
        mean > 0.4 && mean < 0.99,
        "mean pixel {mean} of {}",
        path.display()
    );

    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let p = vs.root();
    let n_classes = classes.len() as i64;
    let net = nn::seq()
        .add(nn::conv2d(
            &p / "c1",
            3,
            8,
            3,
            nn::ConvConfig {
                stride: 2,
                ..Default::default()
            },
        ))
        .add_fn(|t| t.relu())
        .add(nn::conv2d(
            &p / "c2",
            8,
            16,
            3,
            nn::ConvConfig {
                stride: 2,
                ..Default::default()
            },
        ))
        .add_fn(|t| t.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 16, n_classes, Default::default()));

    let logits = net.forward(&x);
    assert_eq!(logits.size(), vec![1, n_classes]);
    assert_eq!(logits.device(), device);

    let target = Tensor::from_slice(&[label as i64]).to_device(device);
    let loss = logits.cross_entropy_for_logits(&target);
    let loss_value = loss.double_value(&[]);
    assert!(
        loss_value.is_finite() && loss_value > 0.0,
        "loss {loss_value}"
    );

    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    opt.zero_grad();
    loss.backward();
    for (name, var) in vs.variables() {
        let grad = var.grad();
        assert!(grad.defined(), "no gradient for {name}");
        assert_eq!(grad.size(), var.size(), "gradient shape of {name}");
        assert!(
            grad.isfinite().all().int64_value(&[]) == 1,
            "non-finite gradient in {name}"
        );
    }
    let fc_grad = vs.variables()["fc.weight"]
        .grad()
        .abs()
        .sum(Kind::Float)
        .double_value(&[]);
    assert!(fc_grad > 0.0, "the loss did not reach the last layer");

    // A few steps on the same image must lower its loss: the backward pass is real.
    for _ in 0..5 {
        let loss = net.forward(&x).cross_entropy_for_logits(&target);
        opt.backward_step(&loss);
    }
    let after = net
        .forward(&x)
        .cross_entropy_for_logits(&target)
        .double_value(&[]);
    assert!(
        after < loss_value,
        "loss went from {loss_value} to {after} on {}",
        path.display()
    );
}

#[test]
fn libtorch_runs_and_is_the_pinned_version() {
    let info = fastvision::Info::collect().unwrap();
    assert!(
        info.libtorch.starts_with("2.11.0"),
        "built against libtorch {}",
        info.libtorch
    );
    assert!(info.tch.starts_with("0.24"), "tch {}", info.tch);
    // The libtorch actually loaded is reported, found from the process's own mappings.
    let loaded = info.libtorch_loaded.clone().expect("libtorch is loaded");
    assert_eq!(
        std::fs::canonicalize(&loaded).unwrap(),
        std::fs::canonicalize(info.libtorch_lib).unwrap(),
        "tests run on the libtorch they were built with"
    );
    assert!(info.to_string().contains(&loaded.display().to_string()));
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    assert_eq!((&t * &t).sum(Kind::Float).double_value(&[]), 14.0);
}

//! The foundation works end to end: libtorch is linked and loads, the device is chosen, and a
//! real Fruits 360 image decodes as the image crate decodes it and goes forward and backward
//! through fastvision's own body and head.

mod common;

use fastvision::models::Mode;
use fastvision::models::archs::forward_stages;
use fastvision::models::head::create_head;
use tch::nn::{self, ModuleT, OptimizerConfig};
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
fn a_real_photo_decodes_as_the_image_crate_does_and_trains_fastvisions_model() {
    let sample = common::real_sample();
    let device = fastvision::default_device().unwrap();
    let (path, label, classes) = first_image(&sample);

    // fastvision's decoder (zune-jpeg) against the image crate's, an outside oracle.
    let ours = fastvision::data::image::load_rgb(&path, 100).unwrap();
    let oracle = image::open(&path).unwrap().to_rgb8();
    assert_eq!(oracle.dimensions(), (100, 100), "{}", path.display());
    let diffs: Vec<i32> = ours
        .as_raw()
        .iter()
        .zip(oracle.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .collect();
    let mean_diff = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    assert!(
        mean_diff < 1.0 && diffs.iter().all(|d| *d <= 8),
        "decoded pixels differ from the image crate's by {mean_diff} on average: {}",
        path.display()
    );
    let x = Tensor::from_slice(ours.as_raw())
        .view([1, 100, 100, 3])
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
    // The photo and its mirror image: BatchNorm needs more than one item to train.
    let x = fastvision::imagenet_stats.norm(&Tensor::cat(&[&x, &x.flip([3])], 0));

    // fastvision's mobilenet_v2 body and fastai's head, from random weights.
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let body = fastvision::mobilenet_v2.body(&(vs.root() / "body"));
    let head = create_head(&(vs.root() / "head"), 1280, classes.len() as i64);
    let forward = |mode: Mode| {
        let features = forward_stages(&body, &x, mode);
        assert_eq!(
            features.size(),
            vec![2, 1280, 4, 4],
            "mobilenet_v2's feature map at 100 px"
        );
        head.forward_t(&features, mode.is_train())
    };
    let target = Tensor::from_slice(&[label as i64, label as i64]).to_device(device);
    let loss_of = |mode| forward(mode).cross_entropy_for_logits(&target);
    let before = tch::no_grad(|| loss_of(Mode::Train)).double_value(&[]);
    assert!(before.is_finite() && before > 0.0, "loss {before}");

    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let loss = loss_of(Mode::Train);
    opt.zero_grad();
    loss.backward();
    for (name, var) in vs.trainable_variables().iter().enumerate() {
        let grad = var.grad();
        assert!(grad.defined(), "no gradient for trainable variable {name}");
        assert!(
            grad.isfinite().all().int64_value(&[]) == 1,
            "non-finite gradient in variable {name}"
        );
    }
    opt.step();
    // A few steps on the same photo lower its loss: the backward pass reaches every layer.
    for _ in 0..4 {
        opt.backward_step(&loss_of(Mode::Train));
    }
    let after = tch::no_grad(|| loss_of(Mode::Train)).double_value(&[]);
    assert!(
        after < before,
        "loss went from {before} to {after} on {}",
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

//! The learner: schedules, freezing, lr_find's exact restore, the NaN guard, persistence,
//! reproducibility; on generated data, so these run anywhere in seconds.

mod common;

use std::path::PathBuf;

use fastvision::learner::CnnOptions;
use fastvision::learner::one_cycle::{DEFAULT_LR, OneCycle, annealing_cos};
use fastvision::models::Mode;
use fastvision::{
    Error, Learner, cnn_learner, cnn_learner_with, error_rate, load_learner, mobilenet_v2,
    resnet18, slice,
};

#[test]
fn one_cycle_schedule_follows_the_formulas() {
    let oc = OneCycle::new(vec![1e-4, 1e-3, 1e-2]);
    let n = 200;
    let warm = 60; // int(200 * 0.3)
    for i in [0usize, 13, 59, 60, 61, 130, 199] {
        let (lrs, mom) = oc.at(i, n);
        for (g, &max) in [1e-4, 1e-3, 1e-2].iter().enumerate() {
            let expected = if i < warm {
                annealing_cos(max / 25.0, max, i as f64 / warm as f64)
            } else {
                annealing_cos(max, max / 25.0 / 1e4, (i - warm) as f64 / (n - warm) as f64)
            };
            assert!(
                (lrs[g] - expected).abs() < 1e-15,
                "iteration {i} group {g}: {} vs {expected}",
                lrs[g]
            );
        }
        let m = if i < warm {
            0.95 - (0.95 - 0.85) * (1.0 - (std::f64::consts::PI * i as f64 / warm as f64).cos())
                / 2.0
        } else {
            0.85 + (0.95 - 0.85)
                * (1.0 - (std::f64::consts::PI * (i - warm) as f64 / (n - warm) as f64).cos())
                / 2.0
        };
        assert!(
            (mom - m).abs() < 1e-12,
            "iteration {i}: momentum {mom} vs {m}"
        );
    }
    assert!((oc.at(0, n).0[2] - 1e-2 / 25.0).abs() < 1e-15);
    assert!((oc.at(60, n).0[2] - 1e-2).abs() < 1e-15);
    for (got, want) in DEFAULT_LR.expand(3).iter().zip([3e-4, 3e-4, 3e-3]) {
        assert!((got - want).abs() < 1e-15, "{got} vs {want}");
    }
    let s = slice(1e-6, 10f64.powf(-5.5)).expand(3);
    for (got, want) in s.iter().zip([1.0e-6, 1.778_279_4e-6, 3.162_277_7e-6]) {
        assert!((got - want).abs() / want < 1e-6, "{s:?}");
    }
}

/// fastai's split of a resnet, by torchvision's names: the stem, layer1 and layer2 in group 0,
/// layer3 and layer4 in group 1, the head in group 2; freezing follows it.
#[test]
fn resnet_layer_groups_are_fastais() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 1);
    let opts = CnnOptions {
        pretrained: false,
        ..Default::default()
    };
    let mut learn = cnn_learner_with(&data, fastvision::resnet18, &[error_rate], opts).unwrap();
    learn.freeze_to(1);
    for (name, t) in learn.model.vs.variables() {
        if name.contains("running_") || name.ends_with("num_batches_tracked") {
            continue;
        }
        let first = name.split('.').next().unwrap();
        let group = match first {
            "head" => 2,
            "layer3" | "layer4" => 1,
            "conv1" | "bn1" | "layer1" | "layer2" => 0,
            other => panic!("unexpected variable {other}"),
        };
        let bn = first != "head" && t.dim() == 1;
        assert_eq!(
            t.requires_grad(),
            group >= 1 || bn,
            "{name} in group {group}"
        );
    }
}

#[test]
fn freezing_keeps_batchnorm_trainable_and_unfreeze_trains_all() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 1);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    assert_eq!(learn.frozen_groups(), 2, "pretrained learners start frozen");
    let check = |learn: &Learner, frozen: usize| {
        for (name, t) in learn.model.vs.variables() {
            if name.contains("running_") {
                assert!(!t.requires_grad(), "{name} is a statistic, never trained");
                continue;
            }
            let head = name.starts_with("head.");
            // fastai's split of MobileNetV2 as torchvision names it: features.0-13, then
            // features.14 on, then the head; its body has no conv biases, so its 1-D
            // parameters are exactly the BatchNorm ones.
            let group = if head {
                2
            } else {
                let idx: usize = name.split('.').nth(1).unwrap().parse().unwrap();
                usize::from(idx >= 14)
            };
            let bn = !head && t.dim() == 1;
            assert_eq!(
                t.requires_grad(),
                group >= frozen || bn,
                "{name} (group {group}, frozen to {frozen})"
            );
        }
    };
    check(&learn, 2);
    learn.freeze_to(1);
    check(&learn, 1);
    learn.unfreeze();
    check(&learn, 0);
    assert!(
        learn
            .model
            .vs
            .variables()
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .all(|(_, t)| t.requires_grad())
    );
    let summary = learn.summary().to_string();
    assert!(
        summary.contains("features.18") && summary.contains("no layer group frozen"),
        "{summary}"
    );
    learn.freeze();
    let summary = learn.summary();
    assert!(
        summary
            .rows
            .iter()
            .any(|r| r.trainable > 0 && r.trainable < r.params),
        "BN-only rows when frozen"
    );
    assert_eq!(summary.rows.last().unwrap().output_shape, vec![1, 4]);
}

#[test]
fn lr_find_restores_weights_and_optimizer_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 2);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.fit(1, 1e-3).unwrap();
    let before = learn.model.snapshot();
    let opt_before = learn.opt.state();
    learn
        .lr_find_with(fastvision::learner::lr_find::LrFind {
            num_it: 40,
            ..Default::default()
        })
        .unwrap();
    assert!(
        common::weights_equal(&before, &learn.model.snapshot()),
        "lr_find changed the weights"
    );
    let opt_after = learn.opt.state();
    assert_eq!(opt_before.len(), opt_after.len());
    for (a, b) in opt_before.iter().zip(&opt_after) {
        assert_eq!((&a.name, a.step), (&b.name, b.step));
        assert_eq!(a.buffers.len(), b.buffers.len(), "{}", a.name);
        for ((na, ta), (nb, tb)) in a.buffers.iter().zip(&b.buffers) {
            assert!(na == nb && ta.equal(tb), "{} {na}", a.name);
        }
    }
    let rec = &learn.recorder;
    assert!(
        rec.is_lr_find && rec.lrs.len() >= 10,
        "{} points",
        rec.lrs.len()
    );
    assert!(
        rec.lrs.windows(2).all(|w| w[1] > w[0]),
        "the learning rate grows every step"
    );
    assert!((rec.lrs[0] - 1e-7).abs() < 1e-20);
    let s = rec.suggestions().unwrap();
    assert!(
        s.valley > 1e-7 && s.valley < 10.0 && s.steep > 1e-7 && s.minimum > 1e-8,
        "{s:?}"
    );
    let fig = rec.plot().unwrap();
    fig.save(&common::repo_root().join("out/test-figures/lr_find_small.png"))
        .unwrap();
}

#[test]
fn a_diverging_loss_stops_with_the_last_good_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 3);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.unfreeze();
    let before = learn.model.snapshot();
    let err = learn
        .fit(1, 1e30)
        .expect_err("a learning rate of 1e30 must diverge");
    assert!(matches!(err.root(), Error::Diverged(_)), "{err}");
    assert!(err.to_string().starts_with("NanGuard in "), "{err}");
    assert!(err.to_string().contains("lower learning rate"), "{err}");
    assert!(
        common::weights_equal(&before, &learn.model.snapshot()),
        "weights must be those from before the bad steps"
    );
    // The model still works.
    learn.fit(1, 1e-3).unwrap();
    assert!(learn.recorder.losses.iter().all(|l| l.is_finite()));
}

#[test]
fn export_load_learner_predict_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 4);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.fit_one_cycle(1, 1e-3).unwrap();
    let image: PathBuf = data.valid_dl.dataset.items[3].clone();
    let p1 = learn.predict(&image).unwrap();
    let file = tmp.path().join("export.safetensors");
    learn.export(&file).unwrap();
    let loaded = load_learner(&file).unwrap();
    assert_eq!(loaded.classes, learn.model.classes);
    assert_eq!(
        (loaded.arch(), loaded.size),
        (learn.model.arch(), learn.model.size)
    );
    let p2 = loaded.predict(&image).unwrap();
    assert_eq!((p1.index, &p1.class), (p2.index, &p2.class));
    assert_eq!(p1.probs, p2.probs);
    assert!((p1.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);

    // Many files at once, in batches smaller than the list: the same as one by one, and a
    // truncated file is an error of its own while the files after it are still classified.
    let mut files: Vec<PathBuf> = data.valid_dl.dataset.items[..7].to_vec();
    let cut = tmp.path().join("cut.jpg");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    files.insert(2, cut.clone());
    let batch = loaded.predict_batch(&files, 3);
    assert_eq!(batch.len(), files.len());
    for (file, p) in files.iter().zip(&batch) {
        if *file == cut {
            let err = p.as_ref().expect_err("a truncated JPEG is an error");
            assert!(err.to_string().contains("cut.jpg"), "{err}");
        } else {
            let one = loaded.predict(file).unwrap();
            let p = p.as_ref().unwrap();
            assert_eq!(
                (p.index, &p.class),
                (one.index, &one.class),
                "{}",
                file.display()
            );
            for (a, b) in p.probs.iter().zip(&one.probs) {
                assert!((a - b).abs() < 1e-5, "{}: {a} against {b}", file.display());
            }
        }
    }

    // predict agrees with the validation pass on the same image.
    let (probs, _, _) = learn.model.get_preds(&learn.data.valid_dl).unwrap();
    assert_eq!(
        probs.get(3).argmax(-1, false).int64_value(&[]) as usize,
        p1.index
    );

    // save/load resumes weights and optimizer state; other models are refused.
    learn.model_dir = tmp.path().join("models");
    let saved = learn.save("stage-1").unwrap();
    assert!(saved.ends_with("models/stage-1.safetensors"));
    let state = learn.opt.state();
    let weights = learn.model.snapshot();
    learn.fit(1, 1e-3).unwrap();
    learn.load("stage-1").unwrap();
    assert!(common::weights_equal(&weights, &learn.model.snapshot()));
    assert_eq!(
        state.iter().map(|s| s.step).collect::<Vec<_>>(),
        learn.opt.state().iter().map(|s| s.step).collect::<Vec<_>>()
    );
    let mut other = cnn_learner_with(
        &data,
        resnet18,
        &[error_rate],
        CnnOptions {
            pretrained: false,
            ..Default::default()
        },
    )
    .unwrap();
    other.model_dir = tmp.path().join("models");
    let err = other.load("stage-1").unwrap_err().to_string();
    assert!(
        err.contains("holds a mobilenet_v2 model") && err.contains("resnet18"),
        "{err}"
    );
    let err = load_learner(&tmp.path().join("nothing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing.safetensors"), "{err}");
}

#[test]
fn plots_render_after_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 5);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    assert!(learn.recorder.plot().is_err(), "no lr_find yet");
    learn.fit_one_cycle(2, 1e-3).unwrap();
    let hist = learn.recorder.history();
    assert_eq!(hist.height(), 2);
    assert_eq!(
        hist.get_column_names(),
        ["epoch", "train_loss", "valid_loss", "error_rate", "time"]
    );
    let out = common::repo_root().join("out/test-figures");
    for (name, fig) in [
        ("losses", learn.recorder.plot_losses().unwrap()),
        ("lr", learn.recorder.plot_lr().unwrap()),
        ("metrics", learn.recorder.plot_metrics().unwrap()),
    ] {
        let img = fig.to_rgb();
        let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 2000, "{name} plot is nearly blank");
        fig.save(&out.join(format!("plot_{name}_small.png")))
            .unwrap();
    }
    assert!(learn.recorder.lrs.iter().cloned().fold(0.0, f64::max) <= 1e-3 + 1e-12);
}

#[test]
fn channels_last_changes_the_layout_not_the_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 6);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    assert!(learn.model.is_channels_last(), "on by default on the CPU");
    let conv = "features.0.0.weight";
    let nhwc = |t: &tch::Tensor| {
        let [_, c, h, w] = t.size()[..] else { panic!() };
        t.stride() == [c * h * w, 1, w * c, c]
    };
    let w = learn.model.vs.variables()[conv].shallow_clone();
    assert!(nhwc(&w), "{conv} strides {:?}", w.stride());
    let x = data.valid_dl.epoch(0).next().unwrap().unwrap().x;
    let on = tch::no_grad(|| learn.model.forward(&x, Mode::Eval));
    let (loss_on, _) = learn.validate().unwrap();

    learn.model.to_nchw();
    assert!(learn.model.vs.variables()[conv].is_contiguous());
    let off = tch::no_grad(|| learn.model.forward(&x, Mode::Eval));
    let (loss_off, _) = learn.validate().unwrap();
    let diff = (&on - &off).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "logits differ by {diff} between layouts");
    assert!((loss_on - loss_off).abs() < 1e-5, "{loss_on} vs {loss_off}");

    // Training and exporting from the channels-last layout give ordinary NCHW files.
    learn.model.to_channels_last();
    learn.fit(1, 1e-3).unwrap();
    let file = tmp.path().join("cl.safetensors");
    learn.export(&file).unwrap();
    let loaded = load_learner(&file).unwrap();
    let image = data.valid_dl.dataset.items[0].clone();
    assert_eq!(
        learn.predict(&image).unwrap().probs,
        loaded.predict(&image).unwrap().probs
    );
}

//! The lesson's training on the real Fruits 360 sample: mobilenet_v2 pretrained and frozen,
//! 100 px, bs 64. One cycle must reach fastai's Test error rate on the same data (0.0067,
//! ../shared/data/README.md); the lesson's four cycles then two unfrozen cycles at
//! slice(1e-6, 10^-5.5) must not make it worse. Minutes of CPU: one test, run alone.

mod common;

use fastvision::{
    FromFolder, ImageDataBunch, cnn_learner, error_rate, get_transforms, imagenet_stats,
    mobilenet_v2, slice,
};

#[test]
fn mobilenet_on_the_real_sample_matches_fastai() {
    let Some(sample) = common::real_sample("mobilenet_on_the_real_sample_matches_fastai") else {
        return;
    };
    let opts = FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 100,
        bs: 64,
        ds_tfms: Some(get_transforms()),
        ..Default::default()
    };
    let data = ImageDataBunch::from_folder(&sample, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    let out = common::repo_root().join("out/test-figures");

    let mut one = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    one.fit_one_cycle(1, None).unwrap();
    let err1 = one.recorder.epochs[0].metrics[0];
    assert!(
        err1 <= 6.0 / 900.0 + 1e-9,
        "fit_one_cycle(1): error rate {err1}, fastai reaches 0.0067"
    );
    drop(one);

    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.fit_one_cycle(4, None).unwrap();
    let err4 = learn.recorder.epochs.last().unwrap().metrics[0];
    learn
        .recorder
        .plot_losses()
        .unwrap()
        .save(&out.join("plot_losses_real.png"))
        .unwrap();
    learn.lr_find().unwrap();
    learn
        .recorder
        .plot()
        .unwrap()
        .save(&out.join("lr_find_real.png"))
        .unwrap();
    learn.unfreeze();
    learn
        .fit_one_cycle(2, slice(1e-6, 10f64.powf(-5.5)))
        .unwrap();
    let err6 = learn.recorder.epochs.last().unwrap().metrics[0];
    println!("error rate: 1 cycle {err1}, 4 cycles {err4}, after unfrozen fine-tuning {err6}");
    assert!(err4 <= 6.0 / 900.0 + 1e-9, "fit_one_cycle(4): {err4}");
    assert!(
        err6 <= err4 + 1e-9,
        "fine-tuning made it worse: {err4} -> {err6}"
    );
}

//! The lesson's training on the real Fruits 360 sample: mobilenet_v2 pretrained and frozen,
//! 100 px, bs 64. One cycle must reach fastai's Test error rate on the same data (0.0067,
//! ../shared/data/README.md), as must four; the two unfrozen cycles at slice(1e-6, 10^-5.5)
//! that follow keep what was learned. Minutes of CPU: one test, run alone.

mod common;

use fastvision::{
    FromFolder, ImageDataBunch, cnn_learner, error_rate, get_transforms, imagenet_stats,
    mobilenet_v2, slice,
};

#[test]
fn mobilenet_on_the_real_sample_matches_fastai() {
    let Some(sample) = common::shared_sample("mobilenet_on_the_real_sample_matches_fastai") else {
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
    let last = learn.recorder.epochs.last().unwrap();
    let (err4, loss4) = (last.metrics[0], last.valid_loss.unwrap());
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
    let last = learn.recorder.epochs.last().unwrap();
    let (err6, loss6) = (last.metrics[0], last.valid_loss.unwrap());
    println!(
        "error rate: 1 cycle {err1}, 4 cycles {err4}, after unfrozen fine-tuning {err6} \
         (valid loss {loss4} -> {loss6})"
    );
    assert!(err4 <= 6.0 / 900.0 + 1e-9, "fit_one_cycle(4): {err4}");
    // At rates of 1e-6 to 3e-6 for two epochs the weights move little (the head trained at
    // 1e-3 before), so fine-tuning keeps what was learned: the validation loss within 10% of
    // where it was, and at most one image, sitting on a decision boundary, changing class.
    // Only a fine-tuning step that trained at the wrong rates, or the wrong layers, breaks it.
    assert!(
        (loss6 - loss4).abs() <= 0.1 * loss4,
        "fine-tuning moved the validation loss {loss4} -> {loss6}"
    );
    assert!(
        err6 <= err4 + 1.0 / 900.0 + 1e-9,
        "fine-tuning made it worse by more than one image: {err4} -> {err6}"
    );
}

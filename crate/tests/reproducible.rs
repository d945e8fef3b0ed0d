//! Reproducibility: with a seed, two training runs on the CPU give the same losses. In a
//! test binary of its own, because libtorch's random generator (dropout) is process-wide and
//! other tests running alongside would draw from it.

use std::path::Path;

use fastvision::learner::CnnOptions;
use fastvision::{
    FromFolder, ImageDataBunch, cnn_learner_with, error_rate, get_transforms, imagenet_stats,
    mobilenet_v2,
};
use tch::Device;

fn small_data(dir: &Path, seed: u64) -> ImageDataBunch {
    let path = fastvision::generate_sample(&dir.join("sample"), 4, 20, 5).unwrap();
    let opts = FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 64,
        bs: 16,
        seed,
        ds_tfms: Some(get_transforms()),
        device: Some(Device::Cpu),
        ..Default::default()
    };
    ImageDataBunch::from_folder(&path, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap()
}

#[test]
fn two_runs_with_a_seed_give_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |sub: &str| {
        let data = small_data(&tmp.path().join(sub), 7);
        let mut learn = cnn_learner_with(
            &data,
            mobilenet_v2,
            &[error_rate],
            CnnOptions {
                seed: 7,
                ..Default::default()
            },
        )
        .unwrap();
        learn.fit_one_cycle(2, 1e-3).unwrap();
        (
            learn.recorder.raw_losses.clone(),
            learn
                .recorder
                .epochs
                .iter()
                .map(|e| e.valid_loss)
                .collect::<Vec<_>>(),
        )
    };
    let (a, b) = (run("a"), run("b"));
    assert!(!a.0.is_empty());
    assert_eq!(a, b, "same seed, same data: same losses");
}

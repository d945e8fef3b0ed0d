//! Reproducibility: with a seed, two training runs on the CPU give the same losses. In a
//! test binary of its own, because libtorch's random generator (dropout) is process-wide and
//! other tests running alongside would draw from it.

mod common;

use fastvision::learner::CnnOptions;
use fastvision::{cnn_learner_with, error_rate, mobilenet_v2};

#[test]
fn two_runs_with_a_seed_give_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |sub: &str| {
        let data = common::small_data(&tmp.path().join(sub), 7);
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

//! Reproducibility: with a seed, two training runs on the CPU give the same losses, and fp16
//! loss scaling without overflow trains as fp32 does. In a
//! test binary of its own, because libtorch's random generator (dropout) is process-wide and
//! other tests running alongside would draw from it.

mod common;

use fastvision::learner::CnnOptions;
use fastvision::learner::callbacks::MixedPrecision;
use fastvision::{Learner, cnn_learner, cnn_learner_with, error_rate, mobilenet_v2};

/// The tests of this binary take turns: each one's two runs must see the generator alone.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_runs_with_a_seed_give_the_same_losses() {
    let _turn = ALONE.lock().unwrap_or_else(|e| e.into_inner());
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

fn learner(seed: u64) -> (tempfile::TempDir, Learner) {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), seed);
    let learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    (tmp, learn)
}

/// Loss scaling with no overflow changes nothing but rounding (here, with the dropout draws
/// equal, which needs this binary's process-wide generator to itself).
#[test]
fn an_fp16_scale_that_never_overflows_trains_like_fp32() {
    let _turn = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let (_tmp, mut plain) = learner(12);
    plain.fit(1, 1e-3).unwrap();
    let (_tmp2, mut scaled) = learner(12);
    let mut mp = MixedPrecision::new().with_scale(1024.0);
    scaled.fit_with(1, 1e-3, &mut [&mut mp]).unwrap();
    assert_eq!(mp.skipped_steps(), 0);
    // Scaling by a power of two and back is exact, so the weights agree to rounding.
    for ((n, a), (_, b)) in plain
        .model
        .snapshot()
        .iter()
        .zip(scaled.model.snapshot().iter())
    {
        let d = (a - b).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{n} differs by {d}");
    }
}

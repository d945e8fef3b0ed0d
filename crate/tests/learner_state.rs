//! The learner stays whole through a fit that fails: after a panic inside a fit (a callback's,
//! or libtorch's on CUDA out of memory) it keeps its recorder, callbacks and weights, autocast
//! is off again, and the next fit works; a callback a hook adds hears the rest of the fit.

mod common;

use fastvision::learner::fit::{Callback, FitContext};
use fastvision::{cnn_learner, error_rate, mobilenet_v2};
use tch::{Device, Kind, Tensor};

/// Panics on the third batch of the first fit it sees, as tch does on CUDA out of memory.
struct PanicOnce {
    fired: bool,
}

impl Callback for PanicOnce {
    fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        if !self.fired && cx.iteration == 2 {
            self.fired = true;
            panic!("out of memory (a stand-in for libtorch's)");
        }
        Ok(())
    }
}

/// Counts the training batches it hears.
#[derive(Default)]
struct Count(usize);

impl Callback for Count {
    fn on_batch_end(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

/// Adds a [`Count`] at the start of the second epoch of its first fit.
#[derive(Default)]
struct AddCountAtEpoch1 {
    done: bool,
}

impl Callback for AddCountAtEpoch1 {
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        if cx.epoch == 1 && !self.done {
            self.done = true;
            cx.learn.add_cb(Count::default());
        }
        Ok(())
    }
}

fn finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

#[test]
fn a_panic_mid_fit_leaves_the_learner_whole_and_the_next_fit_works() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 5);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.fit_one_cycle(1, 1e-3).unwrap();
    let n_callbacks = learn.callbacks.len();
    learn.add_cb(PanicOnce { fired: false });
    learn.to_bf16();
    let before = learn.model.snapshot();

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = learn.fit(1, 1e-3);
    }));
    assert!(caught.is_err(), "the callback's panic reaches the caller");

    // Its callbacks (the defaults, mixed precision and the one that panicked) are all there.
    assert_eq!(learn.callbacks.len(), n_callbacks + 2);
    assert!(learn.cb::<PanicOnce>().is_some_and(|p| p.fired));
    // Autocast ended with the fit: a matmul outside it is fp32 again.
    let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
    assert_eq!(
        a.matmul(&a).kind(),
        Kind::Float,
        "autocast outlived the failed fit"
    );
    // The weights are those of the last step taken: changed by the two steps before the
    // panic, and finite.
    let after = learn.model.snapshot();
    assert!(after.iter().all(|(_, t)| finite(t)));
    assert!(
        before
            .iter()
            .zip(&after)
            .any(|((_, a), (_, b))| !a.equal(b)),
        "the steps before the panic were lost"
    );
    // The recorder is the learner's, and the next fit trains a whole epoch.
    learn.fit(1, 1e-3).unwrap();
    assert_eq!(learn.recorder.epochs.len(), 1);
    assert_eq!(learn.recorder.losses.len(), data.train_dl.len());
    assert!(
        learn.recorder.epochs[0]
            .valid_loss
            .is_some_and(f64::is_finite)
    );
}

#[test]
fn a_callback_added_during_a_fit_hears_the_rest_of_it_and_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 6);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.add_cb(AddCountAtEpoch1::default());
    learn.fit(3, 1e-3).unwrap();
    let per_epoch = data.train_dl.len();
    let count = learn
        .cb::<Count>()
        .expect("the added callback stays the learner's");
    assert_eq!(
        count.0,
        2 * per_epoch,
        "it hears epochs 1 and 2, every batch"
    );
    learn.fit(1, 1e-3).unwrap();
    assert_eq!(learn.cb::<Count>().unwrap().0, 3 * per_epoch);
}

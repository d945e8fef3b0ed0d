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
    let n_callbacks = learn.cbs().count();
    learn.add_cb(PanicOnce { fired: false });
    learn.to_bf16();
    let before = learn.model.snapshot();

    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = learn.fit(1, 1e-3);
    }));
    assert!(caught.is_err(), "the callback's panic reaches the caller");

    // Its callbacks (the defaults, mixed precision and the one that panicked) are all there.
    assert_eq!(learn.cbs().count(), n_callbacks + 2);
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

/// Reads the rest of the learner from inside its hooks, as they stand during the fit.
#[derive(Default)]
struct Inspect {
    epochs_recorded: Vec<usize>,
    count_seen: Vec<usize>,
    call_cb_seen: bool,
    nested: Option<String>,
}

/// A call-local marker another callback looks for.
struct Marker;

impl Callback for Marker {}

impl Callback for Inspect {
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        // The recorder stays in the learner: the epochs recorded so far are there.
        self.epochs_recorded.push(cx.learn.recorder.epochs.len());
        // Another callback's state, read mid-fit through the learner and the context.
        self.count_seen
            .push(cx.learn.cb::<Count>().map_or(usize::MAX, |c| c.0));
        assert_eq!(
            cx.cb::<Count>().map(|c| c.0),
            cx.learn.cb::<Count>().map(|c| c.0)
        );
        self.call_cb_seen = cx.cb::<Marker>().is_some();
        // A fit inside a fit is refused, and the outer one goes on.
        if cx.epoch == 0 {
            self.nested = cx.learn.fit(1, 1e-3).err().map(|e| e.to_string());
        }
        Ok(())
    }
}

/// Removes itself at its second batch: it hears no more events, and is gone after the fit.
/// Counts the batches it hears where the test can read them after it is dropped.
#[derive(Default)]
struct Quitter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Callback for Quitter {
    fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        let heard = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if heard == 2 {
            assert!(cx.learn.remove_cb::<Quitter>());
        }
        Ok(())
    }
}

#[test]
fn hooks_see_the_learner_whole_during_a_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 7);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.add_cb(Count::default());
    learn.add_cb(Inspect::default());
    let quitter = Quitter::default();
    let heard = quitter.0.clone();
    learn.add_cb(quitter);
    let n = data.train_dl.len();
    learn.fit_with(2, 1e-3, &mut [&mut Marker]).unwrap();
    let inspect = learn.cb::<Inspect>().unwrap();
    assert_eq!(inspect.epochs_recorded, [0, 1]);
    assert_eq!(
        inspect.count_seen,
        [0, n],
        "the count after epoch 0's batches"
    );
    assert!(inspect.call_cb_seen);
    let nested = inspect.nested.as_deref().unwrap_or("");
    assert!(nested.contains("inside another fit"), "{nested:?}");
    assert_eq!(learn.recorder.epochs.len(), 2);
    assert!(
        learn.cb::<Quitter>().is_none(),
        "removed itself during the fit"
    );
    assert_eq!(
        heard.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a removed callback hears nothing more"
    );
    let names: Vec<String> = learn.cbs().map(|cb| cb.name()).collect();
    assert_eq!(names, ["ProgressTable", "NanGuard", "Count", "Inspect"]);
}

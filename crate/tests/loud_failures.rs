//! Failures that once gave a wrong answer without a word: a model meeting classes in another
//! order, a loader thread that died mid-epoch, weights half-copied before an error. Each now
//! stops with an error that names what went wrong, and leaves the learner as it was.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fastvision::data::loader::BatchTfm;
use fastvision::learner::optim::adamw;
use fastvision::loss::CrossEntropyFlat;
use fastvision::models::weights::load_into;
use fastvision::{Error, Learner, cnn_learner, error_rate, load_learner, mobilenet_v2};

/// `data` with its class list in reverse order: the same names in another order, as another
/// labelling tool might list them.
fn reversed(data: &fastvision::ImageDataBunch) -> fastvision::ImageDataBunch {
    let mut data = data.clone();
    data.classes.reverse();
    data
}

#[test]
fn a_model_is_refused_by_data_whose_classes_are_in_another_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 11);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.model_dir = tmp.path().join("models");
    learn.save("stage-1").unwrap();
    let export = tmp.path().join("export.safetensors");
    learn.export(&export).unwrap();
    let (first, last) = (
        data.classes[0].clone(),
        data.classes.last().unwrap().clone(),
    );
    let other = reversed(&data);

    // load: same architecture, same count, other order. It used to load and mislabel.
    let mut swapped = cnn_learner(&other, mobilenet_v2, &[error_rate]).unwrap();
    swapped.model_dir = tmp.path().join("models");
    let before = swapped.model.snapshot();
    let err = swapped.load("stage-1").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights(_)), "{err:?}");
    assert!(
        msg.contains(&format!("class 0 is {first:?}"))
            && msg.contains(&format!("{last:?} in this learner"))
            && msg.contains("another order"),
        "{msg}"
    );
    assert!(
        common::weights_equal(&before, &swapped.model.snapshot()),
        "a refused load changed the weights"
    );

    // load_learner + other data: from_model and new refuse it the same way.
    let model = load_learner(&export).unwrap();
    let err = Learner::from_model(model, other.clone(), &[error_rate])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "class 0 is {first:?} in the model and {last:?} in the data"
        )),
        "{err}"
    );
    let model = load_learner(&export).unwrap();
    assert!(Learner::new(other, model, CrossEntropyFlat, adamw(1e-2)).is_err());

    // Other names in the same count are refused too, naming the first that differs.
    let mut renamed = data.clone();
    renamed.classes[2] = "durian".into();
    let model = load_learner(&export).unwrap();
    let err = Learner::from_model(model, renamed, &[error_rate])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not the same classes")
            && err.contains("class 2 is")
            && err.contains("\"durian\" in the data"),
        "{err}"
    );
    // The right data still works.
    let model = load_learner(&export).unwrap();
    assert!(Learner::from_model(model, data, &[error_rate]).is_ok());
}

/// A `before_batch` that panics the `n`th time it runs.
fn panics_on(n: usize) -> BatchTfm {
    let calls = Arc::new(AtomicUsize::new(0));
    BatchTfm::new(move |x| {
        if calls.fetch_add(1, Ordering::SeqCst) + 1 == n {
            panic!("the test's transform broke on its batch {n}");
        }
        x
    })
}

#[test]
fn a_panic_in_the_loader_stops_the_fit_with_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 12);
    assert!(
        data.train_dl.len() >= 4,
        "the epoch has a batch after the third"
    );
    // On a background thread (prefetch) and on the calling thread alike.
    for prefetch in [2, 0] {
        let mut data = data.clone();
        data.train_dl.prefetch = prefetch;
        let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
        learn.data.train_dl.before_batch = Some(panics_on(3));
        let err = learn.fit(1, 1e-3).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err.root(), Error::Loader(_)),
            "prefetch {prefetch}: {err:?}"
        );
        assert!(
            msg.contains("batch 3 of") && msg.contains("the test's transform broke on its batch 3"),
            "prefetch {prefetch}: {msg}"
        );
        // The fit saw exactly the two batches before it, and recorded no finished epoch.
        assert_eq!(learn.recorder.losses.len(), 2, "prefetch {prefetch}");
        assert!(learn.recorder.epochs.is_empty(), "prefetch {prefetch}");

        // Without the broken transform the same learner trains a whole epoch.
        learn.data.train_dl.before_batch = None;
        learn.fit(1, 1e-3).unwrap();
        assert_eq!(learn.recorder.losses.len(), data.train_dl.len());
    }

    // Iterating a loader by hand: the third item is the error, then the epoch ends.
    let mut dl = data.train_dl.clone();
    dl.prefetch = 2;
    dl.before_batch = Some(panics_on(3));
    let items: Vec<_> = dl.epoch(0).collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(
        items[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("batch 3 of")
    );
}

#[test]
fn weights_that_fail_to_load_leave_the_model_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let a = root.var("a", &[3, 2], tch::nn::Init::Const(1.0));
    let b = root.var("b", &[4], tch::nn::Init::Const(2.0));
    // A file whose first tensor is fine and whose last has the wrong shape: the copy used to
    // write `a` before finding `b` wrong.
    let file = tmp.path().join("w.safetensors");
    let good_a = tch::Tensor::full([3, 2], 7.0, (tch::Kind::Float, tch::Device::Cpu));
    let bad_b = tch::Tensor::zeros([5], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("a", &good_a), ("b", &bad_b)], &file).unwrap();
    let err = load_into(&vs, &file, &[""]).unwrap_err().to_string();
    assert!(
        err.contains("b has shape [5]") && err.contains("nothing was loaded"),
        "{err}"
    );
    assert_eq!(
        a.sum(tch::Kind::Float).double_value(&[]),
        6.0,
        "a was half-loaded"
    );
    assert_eq!(b.sum(tch::Kind::Float).double_value(&[]), 8.0);
    // A missing required tensor: the same.
    tch::Tensor::write_safetensors(&[("a", &good_a)], &file).unwrap();
    let err = load_into(&vs, &file, &[""]).unwrap_err().to_string();
    assert!(err.contains("lacks 1") && err.contains('b'), "{err}");
    assert_eq!(a.sum(tch::Kind::Float).double_value(&[]), 6.0);
    // Optional tensors may be absent; the rest loads.
    assert_eq!(load_into(&vs, &file, &["z"]).unwrap(), 1);
    assert_eq!(a.sum(tch::Kind::Float).double_value(&[]), 42.0);
}

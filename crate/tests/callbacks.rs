//! The training loop's callbacks: each built-in one does its job through the hooks alone, a
//! user callback can change the loss and stop `fit_one_cycle`, and an overflowed fp16 step is
//! still a batch. On generated data on the CPU, so these run anywhere in seconds.

mod common;

use fastvision::learner::callbacks::{
    EarlyStopping, GradientClipping, Interrupt, MixedPrecision, NanGuard, Precision, SaveModel,
    autocast,
};
use fastvision::learner::fit::{Callback, FitContext};
use fastvision::learner::metrics::MetricFn;
use fastvision::learner::one_cycle::OneCycle;
use fastvision::learner::progress::ProgressTable;
use fastvision::models::Mode;
use fastvision::{Learner, accuracy, cnn_learner, error_rate, mobilenet_v2, top_k_accuracy};
use tch::{Device, Kind, Tensor};

fn learner(seed: u64, metrics: &[MetricFn]) -> (tempfile::TempDir, Learner) {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), seed);
    let learn = cnn_learner(&data, mobilenet_v2, metrics).unwrap();
    (tmp, learn)
}

/// The error of a one-epoch fit that `cb` must refuse.
fn refused_fit(learn: &mut Learner, cb: &mut dyn Callback) -> String {
    learn
        .fit_with(1, 1e-4, &mut [cb])
        .expect_err("the callback refuses the fit")
        .to_string()
}

#[test]
fn an_overflowed_fp16_step_is_skipped_but_still_a_batch() {
    let (_tmp, mut plain) = learner(11, &[error_rate]);
    plain.fit_one_cycle(3, 1e-3).unwrap();
    let n = plain.data.train_dl.len() * 3;

    let (_tmp2, mut learn) = learner(11, &[error_rate]);
    let before = learn.model.snapshot();
    // 2^127 is the largest scale an f32 holds; the scaled loss and gradients overflow it.
    let mut mp = MixedPrecision::new().with_scale(2f64.powi(127));
    learn.fit_one_cycle_with(3, 1e-3, &mut [&mut mp]).unwrap();
    assert!(
        mp.skipped_steps() >= 3,
        "{} steps skipped: 2^127 needs at least 3 halvings",
        mp.skipped_steps()
    );
    assert!(mp.skipped_steps() < n, "some steps were taken");
    // Each overflow halved the scale once, on the device; too few good steps to grow it back.
    assert_eq!(
        mp.loss_scale(),
        2f64.powi(127 - mp.skipped_steps() as i32),
        "scale after {} skipped steps",
        mp.skipped_steps()
    );
    let rec = &learn.recorder;
    assert_eq!(rec.lrs.len(), n, "every batch is recorded");
    assert_eq!(rec.raw_losses.len(), n);
    assert_eq!(rec.nb_batches, plain.recorder.nb_batches);
    // The schedule went all the way: same learning rates and momentum as without overflow,
    // ending at max_lr / (div_factor * 1e4).
    assert_eq!(rec.lrs, plain.recorder.lrs);
    assert_eq!(rec.moms, plain.recorder.moms);
    let (last, _) = OneCycle::new(vec![1e-3]).at(n - 1, n);
    assert_eq!(*rec.lrs.last().unwrap(), last[0]);
    // Recorded losses are the unscaled ones, and training did move the weights.
    assert!(rec.raw_losses.iter().all(|l| l.is_finite() && *l < 10.0));
    assert!(!common::weights_equal(&before, &learn.model.snapshot()));
    assert_eq!(rec.epochs.len(), 3);
}

/// Label smoothing as a callback: the README's "Writing a callback" example.
struct LabelSmoothing {
    eps: f64,
    seen: Vec<(f64, f64)>,
}

impl Callback for LabelSmoothing {
    fn on_loss(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        let log_probs = cx.logits.log_softmax(-1, Kind::Float);
        let uniform = -log_probs.mean(Kind::Float);
        let ce = cx.loss.shallow_clone();
        cx.loss = (1.0 - self.eps) * &ce + self.eps * uniform;
        self.seen
            .push((ce.double_value(&[]), cx.loss.double_value(&[])));
        Ok(())
    }
}

#[test]
fn a_user_callback_changes_the_loss_that_is_trained_and_recorded() {
    let (_tmp, mut learn) = learner(13, &[error_rate]);
    let mut ls = LabelSmoothing {
        eps: 0.1,
        seen: vec![],
    };
    learn.fit_one_cycle_with(1, 1e-3, &mut [&mut ls]).unwrap();
    let rec = &learn.recorder;
    assert_eq!(ls.seen.len(), rec.raw_losses.len());
    for ((ce, smoothed), recorded) in ls.seen.iter().zip(&rec.raw_losses) {
        assert_eq!(smoothed, recorded, "the recorder logs the replaced loss");
        assert!((ce - smoothed).abs() > 1e-6, "smoothing changed the loss");
    }
}

struct StopAfter(usize);

impl Callback for StopAfter {
    fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        if cx.iteration + 1 >= self.0 {
            cx.stop(format!("stopped after {} batches", self.0));
        }
        Ok(())
    }
}

#[test]
fn a_callback_added_to_the_learner_stops_fit_one_cycle_early() {
    let (_tmp, mut learn) = learner(14, &[error_rate]);
    learn.add_cb(StopAfter(3));
    learn.fit_one_cycle(4, None).unwrap();
    assert_eq!(learn.recorder.lrs.len(), 3);
    assert_eq!(
        learn.recorder.epochs.len(),
        1,
        "the interrupted epoch still validates"
    );
    assert!(learn.recorder.epochs[0].valid_loss.is_some());
    // add_cb callbacks stay for later fits until cleared.
    learn.fit(1, 1e-4).unwrap();
    assert_eq!(learn.recorder.lrs.len(), 3);
    learn.clear_cbs();
    learn.fit(1, 1e-4).unwrap();
    assert_eq!(learn.recorder.lrs.len(), learn.data.train_dl.len());
}

/// Fails in the given epoch's `on_epoch_end`.
struct FailAt(usize);

impl Callback for FailAt {
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        if cx.epoch == self.0 {
            return Err(fastvision::Error::InvalidArgument("disk full".into()));
        }
        Ok(())
    }
}

#[test]
fn a_callbacks_error_names_it_and_the_event_and_its_state_can_be_read_back() {
    let (_tmp, mut learn) = learner(15, &[error_rate]);
    let err = learn
        .fit_one_cycle_with(2, 1e-3, &mut [&mut FailAt(0)])
        .expect_err("FailAt(0) fails the first epoch");
    assert_eq!(err.to_string(), "FailAt in on_epoch_end: disk full");
    assert!(matches!(err.root(), fastvision::Error::InvalidArgument(_)));

    // The defaults are a visible list; each can be read back and removed.
    assert!(learn.cb::<NanGuard>().is_some());
    assert!(learn.cb::<ProgressTable>().is_some());
    learn.add_cb(StopAfter(2));
    assert_eq!(learn.cb::<StopAfter>().unwrap().0, 2);
    assert!(learn.remove_cb::<StopAfter>());
    assert!(!learn.remove_cb::<StopAfter>(), "removed already");
    learn.no_bar();
    assert!(learn.cb::<ProgressTable>().is_none());
    learn.fit(1, 1e-4).unwrap();
    assert_eq!(
        learn.recorder.epochs.len(),
        1,
        "a fit with no bar still records"
    );
    // Without the NaN guard, a diverging fit is not stopped by it.
    assert!(learn.remove_cb::<NanGuard>());
    learn.unfreeze();
    let ran = learn.fit(1, 1e30);
    assert!(
        ran.is_ok() || !ran.unwrap_err().to_string().starts_with("NanGuard"),
        "no guard, no NanGuard error"
    );
}

/// Reads the global gradient norm after clipping (order 5: after GradientClipping's 0).
struct NormProbe(Vec<f64>);

impl Callback for NormProbe {
    fn order(&self) -> i32 {
        5
    }
    fn on_backward_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        let sq: f64 = cx
            .learn
            .opt
            .grads()
            .iter()
            .map(|g| g.square().sum(Kind::Double).double_value(&[]))
            .sum();
        self.0.push(sq.sqrt());
        Ok(())
    }
}

#[test]
fn gradient_clipping_bounds_the_global_norm() {
    let (_tmp, mut learn) = learner(15, &[error_rate]);
    let mut probe = NormProbe(vec![]);
    learn.fit_with(1, 1e-3, &mut [&mut probe]).unwrap();
    let unclipped = probe.0.clone();
    assert!(unclipped.iter().all(|n| *n > 1e-3), "{unclipped:?}");

    let (_tmp2, mut learn) = learner(15, &[error_rate]);
    let mut probe = NormProbe(vec![]);
    let mut clip = GradientClipping::new(1e-3);
    learn
        .fit_with(1, 1e-3, &mut [&mut probe, &mut clip])
        .unwrap();
    assert_eq!(probe.0.len(), unclipped.len());
    for n in &probe.0 {
        assert!((n - 1e-3).abs() < 1e-6, "clipped norm {n}");
    }
}

#[test]
fn early_stopping_ends_the_fit_when_nothing_improves() {
    let (_tmp, mut learn) = learner(16, &[error_rate, accuracy]);
    // No change of less than 1e9 counts: only the first epoch "improves".
    let mut es = EarlyStopping::new("valid_loss").min_delta(1e9).patience(1);
    learn.fit_one_cycle_with(6, 1e-3, &mut [&mut es]).unwrap();
    assert_eq!(
        learn.recorder.epochs.len(),
        3,
        "first, then patience 1, then stop"
    );
    assert_eq!(es.best(), learn.recorder.epochs[0].valid_loss);

    let mut es = EarlyStopping::new("accuracy").patience(10);
    learn.fit_with(2, 1e-4, &mut [&mut es]).unwrap();
    assert_eq!(learn.recorder.epochs.len(), 2);
    let best = learn
        .recorder
        .epochs
        .iter()
        .map(|e| e.metrics[1])
        .fold(f64::MIN, f64::max);
    assert_eq!(es.best(), Some(best), "higher is better for accuracy");

    let err = refused_fit(&mut learn, &mut EarlyStopping::new("f1"));
    assert!(
        err.contains("'f1'") && err.contains("valid_loss") && err.contains("error_rate"),
        "{err}"
    );
}

/// The validation loss of each epoch of the learner's last fit.
fn valid_losses(learn: &Learner) -> Vec<f64> {
    learn
        .recorder
        .epochs
        .iter()
        .map(|e| e.valid_loss.unwrap())
        .collect()
}

#[test]
fn save_model_ends_with_the_best_epoch_weights() {
    let (tmp, mut learn) = learner(17, &[error_rate]);
    learn.model_dir = tmp.path().join("models");
    let mut save = SaveModel::new("valid_loss", "best");
    learn.fit_one_cycle_with(3, 1e-2, &mut [&mut save]).unwrap();
    let losses = valid_losses(&learn);
    let best = (0..losses.len())
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap();
    assert_eq!(save.best_epoch, Some(best), "{losses:?}");
    assert!(tmp.path().join("models/best.safetensors").is_file());
    let (valid_loss, _) = learn.validate().unwrap();
    assert!(
        (valid_loss - losses[best]).abs() < 1e-5,
        "the learner holds the best epoch's weights: {valid_loss} vs {}",
        losses[best]
    );
}

#[test]
fn save_model_including_start_never_ends_worse_than_it_began() {
    // A fit that helps: an untrained head improves, so an epoch wins over the start.
    let (tmp, mut learn) = learner(17, &[error_rate]);
    learn.model_dir = tmp.path().join("models");
    // One callback for both fits: what it found in the first must not leak into the second.
    let mut keep = SaveModel::new("valid_loss", "kept").including_start();
    learn.fit_one_cycle_with(2, 1e-2, &mut [&mut keep]).unwrap();
    let first = valid_losses(&learn);
    let untrained = keep.start_value.expect("the start was validated");
    let best = first.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        best < untrained,
        "training helped: {untrained} -> {first:?}"
    );
    assert!(keep.best_epoch.is_some(), "an epoch beat the start");
    let (kept, _) = learn.validate().unwrap();
    assert!((kept - best).abs() < 1e-5, "{kept} vs {best}");

    // A fit that only hurts: a learning rate far too large, the whole network unfrozen.
    let start = learn.model.snapshot();
    learn.unfreeze();
    learn.fit_one_cycle_with(2, 1.0, &mut [&mut keep]).unwrap();
    let wrecked = valid_losses(&learn);
    let start_loss = keep.start_value.unwrap();
    assert!((start_loss - kept).abs() < 1e-5, "{start_loss} vs {kept}");
    assert!(
        // NaN counts as worse: it is no improvement.
        wrecked.iter().all(|l| l.is_nan() || *l >= start_loss),
        "every epoch is worse than the start: {start_loss} -> {wrecked:?}"
    );
    assert_eq!(keep.best_epoch, None, "no epoch beat the start");
    assert!(
        common::weights_equal(&start, &learn.model.snapshot()),
        "the learner holds the weights it started from again"
    );
    assert!(tmp.path().join("models/kept.safetensors").is_file());

    // The starting weights are compared by a validation figure; the training loss is none.
    let err = refused_fit(
        &mut learn,
        &mut SaveModel::new("train_loss", "x").including_start(),
    );
    assert!(
        err.contains("including_start") && err.contains("train_loss") && err.contains("valid_loss"),
        "{err}"
    );
}

#[test]
fn save_model_including_start_scores_the_start_as_the_fit_scores_its_epochs() {
    let (tmp, mut learn) = learner(21, &[error_rate]);
    learn.model_dir = tmp.path().join("models");
    learn.to_bf16();
    let fp32 = learn.validate().unwrap().0;
    let bf16 = autocast(Device::Cpu, Precision::BFloat16, || {
        learn.validate().unwrap().0
    });
    assert_ne!(fp32, bf16, "bf16 rounds the validation loss differently");
    let mut keep = SaveModel::new("valid_loss", "kept").including_start();
    learn.fit_one_cycle_with(1, 1e-6, &mut [&mut keep]).unwrap();
    assert_eq!(
        keep.start_value,
        Some(bf16),
        "the start is validated under the fit's bf16 autocast, as its epochs are (fp32: {fp32})"
    );
    // Keeping every epoch and keeping the best of them with the start contradict each other.
    let err = refused_fit(
        &mut learn,
        &mut SaveModel::new("valid_loss", "x")
            .including_start()
            .every_epoch(),
    );
    assert!(
        err.contains("every_epoch") && err.contains("including_start"),
        "{err}"
    );
}

#[test]
fn an_interrupt_stops_after_the_current_batch() {
    let (_tmp, mut learn) = learner(18, &[error_rate]);
    let stop = Interrupt::new();
    learn.add_cb(stop.clone());
    stop.request();
    learn.fit_one_cycle(2, 1e-3).unwrap();
    assert_eq!(learn.recorder.lrs.len(), 1);
    assert!(
        !stop.is_requested(),
        "a request is used up by the fit it stops"
    );
    learn.fit(1, 1e-4).unwrap();
    assert_eq!(learn.recorder.lrs.len(), learn.data.train_dl.len());
}

#[test]
fn metrics_are_exact_over_a_partial_last_batch() {
    let (_tmp, mut learn) = learner(
        19,
        &[error_rate, accuracy, top_k_accuracy(2), top_k_accuracy(4)],
    );
    learn.fit(1, 1e-3).unwrap();
    let dl = learn.data.valid_dl.clone();
    assert_ne!(
        dl.dataset.len() % dl.bs,
        0,
        "the test needs a partial last batch"
    );
    let (probs, y, _) = learn.model.get_preds(&dl).unwrap();
    let n = y.size()[0] as f64;
    let wrong = probs
        .argmax(-1, false)
        .ne_tensor(&y)
        .sum(Kind::Int64)
        .int64_value(&[]) as f64;
    let (_, top2) = probs.topk(2, -1, true, true);
    let hits2 = top2
        .eq_tensor(&y.unsqueeze(1))
        .any_dim(1, false)
        .sum(Kind::Int64)
        .int64_value(&[]) as f64;
    let (_, metrics) = learn.validate().unwrap();
    assert!(
        (metrics[0] - wrong / n).abs() < 1e-12,
        "{metrics:?} vs {wrong}/{n}"
    );
    assert!((metrics[0] + metrics[1] - 1.0).abs() < 1e-12);
    assert!((metrics[2] - hits2 / n).abs() < 1e-12);
    assert_eq!(
        metrics[3], 1.0,
        "4 classes: the target is always in the top 4"
    );
    assert_eq!(
        learn.recorder.history().get_column_names(),
        [
            "epoch",
            "train_loss",
            "valid_loss",
            "error_rate",
            "accuracy",
            "top_2_accuracy",
            "top_4_accuracy",
            "time"
        ]
    );
}

/// Where autocast is on during a fit: what a matrix product computes in, seen from hooks that
/// run after the mixed-precision callback's (order 0 > its -10), and at the end of the forward
/// pass, before it switches autocast off (order -20).
#[derive(Default)]
struct AutocastProbe {
    logits: Vec<Kind>,
    after_forward: Vec<Kind>,
    in_validation: Vec<Kind>,
}

fn matmul_kind() -> Kind {
    let a = Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu));
    a.matmul(&a).kind()
}

impl Callback for AutocastProbe {
    fn order(&self) -> i32 {
        -20
    }
    fn on_loss_begin(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.logits.push(matmul_kind());
        Ok(())
    }
    fn on_loss(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.after_forward.push(matmul_kind());
        Ok(())
    }
    fn on_validate_batch_end(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.in_validation.push(matmul_kind());
        Ok(())
    }
}

/// Runs after the mixed-precision callback's on_batch_begin.
#[derive(Default)]
struct BatchProbe(Vec<Kind>);

impl Callback for BatchProbe {
    fn on_batch_begin(&mut self, _cx: &mut FitContext) -> fastvision::Result<()> {
        self.0.push(matmul_kind());
        Ok(())
    }
}

#[test]
fn bf16_autocast_trains_on_the_cpu() {
    let (_tmp, mut learn) = learner(20, &[error_rate]);
    learn.to_bf16();
    assert_eq!(
        learn.precision(),
        Some(fastvision::learner::callbacks::Precision::BFloat16)
    );
    let x = learn.data.valid_dl.epoch(0).next().unwrap().unwrap().x;
    let before = tch::no_grad(|| learn.model.forward(&x, Mode::Eval));
    let (mut probe, mut batch) = (AutocastProbe::default(), BatchProbe::default());
    learn
        .fit_one_cycle_with(2, 1e-3, &mut [&mut probe, &mut batch])
        .unwrap();
    let rec = &learn.recorder;
    assert!(rec.raw_losses.iter().all(|l| l.is_finite()));
    assert!(
        rec.raw_losses.last().unwrap() < rec.raw_losses.first().unwrap(),
        "{:?}",
        rec.raw_losses
    );
    // The callback owns autocast: on from a batch's start through its forward pass, off for
    // the loss and backward, on again for validation.
    let n = learn.data.train_dl.len() * 2;
    assert_eq!(
        batch.0,
        vec![Kind::BFloat16; n],
        "autocast during the forward pass"
    );
    assert_eq!(
        probe.logits,
        vec![Kind::BFloat16; n],
        "the forward pass ran in bf16"
    );
    assert_eq!(
        probe.after_forward,
        vec![Kind::Float; n],
        "the loss runs in fp32"
    );
    assert_eq!(
        probe.in_validation,
        vec![Kind::BFloat16; learn.data.valid_dl.len() * 2],
        "validation runs under autocast"
    );
    // Outside a fit the model computes in fp32: autocast did not outlive the fit.
    assert_eq!(matmul_kind(), Kind::Float, "autocast leaked out of the fit");
    let after = tch::no_grad(|| learn.model.forward(&x, Mode::Eval));
    assert_eq!(after.kind(), Kind::Float);
    assert!(
        (&after - &before).abs().max().double_value(&[]) > 1e-3,
        "training moved the weights"
    );
    // fp16 on a CPU computes in fp32 (to_fp16 leaves a CPU learner as it is).
    learn.to_fp16();
    assert_eq!(
        learn.precision(),
        Some(fastvision::learner::callbacks::Precision::BFloat16)
    );
    learn.to_fp32();
    assert_eq!(learn.precision(), None);
    assert!(learn.cb::<MixedPrecision>().is_none());
    let mut batch = BatchProbe::default();
    learn.fit_with(1, 1e-4, &mut [&mut batch]).unwrap();
    assert!(
        batch.0.iter().all(|k| *k == Kind::Float),
        "fp32 after to_fp32"
    );
}

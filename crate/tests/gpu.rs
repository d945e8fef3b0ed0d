//! The learner and the interpretation on CUDA: pinned batches augmented on the device (and
//! equal to the CPU loader's), training to the sample's error in fp32, fp16 and bf16, training
//! batches that never make the host wait for the GPU (c10's sync debug mode), save/load/export
//! between CUDA and the CPU, `lr_find`'s exact restore, Grad-CAM and TTA. Skipped with a message where there is no GPU;
//! `FASTVISION_REQUIRE_CUDA=1` (scripts/gpu-check.sh sets it) turns a missing GPU into a failure,
//! so a silent fall back to the CPU cannot pass for a GPU run.

mod common;

use fastvision::learner::callbacks::MixedPrecision;
use fastvision::learner::fit::{Callback, FitContext};
use fastvision::models::export::load_learner_on;
use fastvision::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, Learner, cnn_learner, error_rate,
    get_transforms, imagenet_stats, mobilenet_v2,
};
use tch::Device;

fn cuda(test: &str) -> Option<Device> {
    fastvision::device::load_cuda_backend();
    if tch::Cuda::is_available() {
        return Some(Device::Cuda(0));
    }
    let why = format!(
        "no CUDA device (libtorch's CUDA half: {:?})",
        fastvision::device::cuda_backend()
    );
    if std::env::var("FASTVISION_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
        panic!("{test}: FASTVISION_REQUIRE_CUDA=1 but {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// The real sample when present (error target 0.03), else a generated one (0.25).
fn data(dir: &std::path::Path, device: Device, test: &str) -> (ImageDataBunch, f64) {
    let (path, target) = match common::shared_sample(test) {
        Some(p) => (p, 0.03),
        None => (
            fastvision::generate_sample(&dir.join("sample"), 10, 60, 3).unwrap(),
            0.25,
        ),
    };
    let opts = FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 100,
        ds_tfms: Some(get_transforms()),
        device: Some(device),
        ..Default::default()
    };
    let data = ImageDataBunch::from_folder(&path, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    (data, target)
}

fn error(learn: &Learner) -> f64 {
    learn.recorder.epochs.last().unwrap().metrics[0]
}

/// A mobilenet_v2 learner on CUDA, set up by `prepare` (a precision, say), after
/// `fit_one_cycle(1)` with the sample's error target met. `None` where there is no GPU.
struct Trained {
    tmp: tempfile::TempDir,
    dev: Device,
    data: ImageDataBunch,
    learn: Learner,
}

fn trained(test: &str, prepare: impl FnOnce(&mut Learner)) -> Option<Trained> {
    let dev = cuda(test)?;
    let tmp = tempfile::tempdir().unwrap();
    let (data, target) = data(tmp.path(), dev, test);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    prepare(&mut learn);
    learn.fit_one_cycle(1, None).unwrap();
    assert!(
        error(&learn) < target,
        "{test}: error {} after fit_one_cycle(1) on CUDA ({:?})",
        error(&learn),
        learn.precision()
    );
    Some(Trained {
        tmp,
        dev,
        data,
        learn,
    })
}

#[test]
fn batches_are_on_the_gpu_and_augmented_there() {
    let Some(dev) = cuda("batches_are_on_the_gpu_and_augmented_there") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = data(
        tmp.path(),
        dev,
        "batches_are_on_the_gpu_and_augmented_there",
    );
    let a = data.train_dl.epoch(0).next().unwrap().unwrap();
    let b = data.train_dl.epoch(0).next().unwrap().unwrap();
    assert_eq!((a.x.device(), a.y.device()), (dev, dev));
    assert_eq!(a.x.size()[1..], [3, 100, 100]);
    // The same epoch draws the same augmentation; another epoch draws another.
    assert!(a.x.equal(&b.x));
    let c = data.train_dl.epoch(1).next().unwrap().unwrap();
    assert!(!a.x.equal(&c.x));
    let mean = a.x.mean(tch::Kind::Float).double_value(&[]);
    assert!(mean.abs() < 1.5, "normalised batch mean {mean}");
    // The GPU builds the sampling grid from homographies; the CPU loader computes it on the
    // host. Same draws, same batch.
    let on_cpu = fastvision::data::loader::DataLoader {
        device: Device::Cpu,
        ..data.train_dl.clone()
    };
    let cpu = on_cpu.epoch(0).next().unwrap().unwrap();
    let diff = (a.x.to_device(Device::Cpu) - &cpu.x).abs();
    let (max, mean) = (
        diff.max().double_value(&[]),
        diff.mean(tch::Kind::Float).double_value(&[]),
    );
    assert!(
        mean < 1e-4 && max < 0.05,
        "CUDA batch differs from the CPU one by {mean} (mean), {max} (max)"
    );
    let v = data.valid_dl.epoch(0).next().unwrap().unwrap();
    assert_eq!(v.x.device(), dev);
}

#[test]
fn training_on_cuda_reaches_the_error_and_round_trips_to_the_cpu() {
    let test = "training_on_cuda_reaches_the_error_and_round_trips_to_the_cpu";
    let Some(Trained {
        tmp,
        dev,
        data,
        mut learn,
    }) = trained(test, |_| {})
    else {
        return;
    };

    // lr_find puts weights and optimizer state back bit for bit on the GPU too.
    let before = learn.model.snapshot();
    let opt_before = learn.opt.state();
    learn
        .lr_find_with(fastvision::learner::lr_find::LrFind {
            num_it: 30,
            ..Default::default()
        })
        .unwrap();
    for ((n, a), (_, b)) in before.iter().zip(learn.model.snapshot().iter()) {
        assert!(a.equal(b), "lr_find changed {n}");
    }
    for (a, b) in opt_before.iter().zip(learn.opt.state().iter()) {
        assert_eq!((&a.name, a.step), (&b.name, b.step));
        for ((name, x), (_, y)) in a.buffers.iter().zip(&b.buffers) {
            assert!(x.equal(y), "{name} of {}", a.name);
        }
    }
    assert!(learn.recorder.suggestions().is_ok());

    // Exported on CUDA, predicted on the CPU: the same class, the same probabilities.
    let file = tmp.path().join("export.safetensors");
    learn.export(&file).unwrap();
    let on_cpu = load_learner_on(&file, Device::Cpu).unwrap();
    let on_gpu = load_learner_on(&file, dev).unwrap();
    for image in data.valid_dl.dataset.items.iter().step_by(97).take(8) {
        let (g, c) = (
            on_gpu.predict(image).unwrap(),
            on_cpu.predict(image).unwrap(),
        );
        assert_eq!(g.index, c.index, "{}", image.display());
        let diff = g
            .probs
            .iter()
            .zip(&c.probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-3,
            "{}: probabilities differ by {diff}",
            image.display()
        );
    }
    // save/load on the GPU resumes weights and optimizer state.
    learn.model_dir = tmp.path().join("models");
    learn.save("stage-1").unwrap();
    let weights = learn.model.snapshot();
    learn.fit(1, 1e-3).unwrap();
    learn.load("stage-1").unwrap();
    for ((n, a), (_, b)) in weights.iter().zip(learn.model.snapshot().iter()) {
        assert!(a.equal(b), "load did not restore {n}");
        assert_eq!(b.device(), dev);
    }
}

#[test]
fn fp16_on_cuda_reaches_the_error_and_survives_an_overflow() {
    let test = "fp16_on_cuda_reaches_the_error_and_survives_an_overflow";
    let Some(Trained {
        tmp: _tmp,
        data,
        mut learn,
        ..
    }) = trained(test, |l| {
        l.to_fp16();
    })
    else {
        return;
    };

    // A scale that overflows fp16 and f32 alike: steps are skipped, batches are not.
    let n = data.train_dl.len();
    let mut mp = MixedPrecision::new().with_scale(2f64.powi(127));
    learn.fit_one_cycle_with(1, 1e-4, &mut [&mut mp]).unwrap();
    assert!(mp.skipped_steps() >= 3, "{} skipped", mp.skipped_steps());
    assert_eq!(learn.recorder.lrs.len(), n);
    assert!(learn.recorder.raw_losses.iter().all(|l| l.is_finite()));
}

#[test]
fn interpretation_on_cuda_with_gradcam_and_tta() {
    let test = "interpretation_on_cuda_with_gradcam_and_tta";
    let Some(Trained {
        tmp: _tmp,
        data,
        learn,
        ..
    }) = trained(test, |_| {})
    else {
        return;
    };
    let interp = ClassificationInterpretation::from_learner(&learn).unwrap();
    let n = data.valid_dl.dataset.len() as i64;
    assert_eq!(
        interp
            .confusion_matrix()
            .sum(tch::Kind::Int64)
            .int64_value(&[]),
        n
    );
    let (losses, idx) = interp.top_losses_k(9);
    assert_eq!(idx.size(), [9]);
    assert!(losses.double_value(&[0]) >= losses.double_value(&[8]));
    let fig = interp
        .plot_top_losses_with(9, (15.0, 11.0), fastvision::interpret::TopLosses::heatmap())
        .unwrap();
    let img = fig.to_rgb();
    assert!(img.width() > 500 && img.height() > 300);
    let tta = ClassificationInterpretation::from_learner_tta(
        &learn,
        fastvision::learner::tta::Tta {
            beta: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(tta.probs.size()[0], n);
    assert!(
        (tta.n_errors() as f64) <= (interp.n_errors() as f64) * 1.5 + 3.0,
        "TTA errors {} vs {}",
        tta.n_errors(),
        interp.n_errors()
    );
}

#[test]
fn bf16_on_cuda_reaches_the_error() {
    let test = "bf16_on_cuda_reaches_the_error";
    let Some(Trained { tmp: _tmp, dev, .. }) = trained(test, |l| {
        l.to_bf16();
    }) else {
        return;
    };
    // Autocast really ran in bf16 on the GPU.
    let a = tch::Tensor::ones([8, 8], (tch::Kind::Float, dev));
    let kind = fastvision::learner::callbacks::autocast(
        dev,
        fastvision::learner::callbacks::Precision::BFloat16,
        || a.matmul(&a).kind(),
    );
    assert_eq!(kind, tch::Kind::BFloat16);
}

/// c10's `torch.cuda.set_sync_debug_mode`: 2 makes every operation that would make the host
/// wait for the GPU (a blocking copy, `.item()`, a stream synchronisation) an error, 0 turns it
/// off. The flag is a GNU-unique symbol of libc10_cuda, found once the CUDA backend is loaded.
fn set_sync_debug_mode(level: i32) {
    let name = c"_ZZN3c104cuda13warning_stateEvE14warning_state_";
    // SAFETY: dlsym on a NUL-terminated name; the symbol is c10's `WarningState`, whose only
    // field is the `SyncDebugMode` enum (an int) at offset 0.
    let flag = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as *mut i32;
    assert!(!flag.is_null(), "c10's sync debug flag not found");
    unsafe { flag.write(level) };
}

/// Turns the sync check on for batches `from..=to` of the first epoch.
struct NoSyncWindow {
    from: usize,
    to: usize,
}

impl NoSyncWindow {
    fn set_at(&self, cx: &FitContext, batch: usize, level: i32) -> fastvision::Result<()> {
        if cx.epoch == 0 && cx.batch == batch {
            set_sync_debug_mode(level);
        }
        Ok(())
    }
}

impl Callback for NoSyncWindow {
    fn on_batch_begin(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        self.set_at(cx, self.from, 2)
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
        self.set_at(cx, self.to, 0)
    }
}

#[test]
fn a_training_batch_never_makes_the_host_wait_for_the_gpu() {
    let test = "a_training_batch_never_makes_the_host_wait_for_the_gpu";
    let Some(dev) = cuda(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = data(tmp.path(), dev, test);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    // Whatever happens, later tests run without the check.
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            set_sync_debug_mode(0);
        }
    }
    let _off = Off;
    let n = data.train_dl.len();
    // From the second batch (the first allocates and loads kernels) to well before the NaN
    // guard's look at batch 32 and the epoch's end, which read values back on purpose. The
    // window spans the loader's copies, augmentation, forward, loss, backward, the optimizer
    // and every callback of fit_one_cycle.
    let mut window = NoSyncWindow {
        from: 1,
        to: 20.min(n - 2),
    };
    for precision in ["fp32", "fp16", "bf16"] {
        match precision {
            "fp16" => learn.to_fp16(),
            "bf16" => learn.to_bf16(),
            _ => learn.to_fp32(),
        };
        // A synchronising call inside the window is a libtorch error, and so a panic here.
        learn
            .fit_one_cycle_with(1, None, &mut [&mut window])
            .unwrap();
        assert!(
            learn.recorder.raw_losses.iter().all(|l| l.is_finite()),
            "{precision}"
        );
    }
}

//! fastvision's side of the benchmarks: one phase per run, one JSON line on stdout, so the
//! runner (bench/run.py) can alternate it with fastai's run of the same phase.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use fastvision::data::from_names::get_image_files;
use fastvision::learner::CnnOptions;
use fastvision::models::Mode;
use fastvision::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, cnn_learner_with, error_rate,
    get_transforms, imagenet_stats, mobilenet_v2, resnet34,
};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, ValueEnum)]
enum Phase {
    /// One augmented training epoch without a model: decode, augment, normalise, batch.
    Data,
    /// `fit_one_cycle(1)` of mobilenet_v2 (pretrained, frozen), then the compute limit: the
    /// same number of training steps on one batch already in memory.
    Fit,
    /// `lr_find()` with its defaults.
    LrFind,
    /// `ClassificationInterpretation::from_learner` on the Test split.
    Interp,
    /// `fit_one_cycle(1, 1e-3)` of resnet34 from random initialisation (nothing frozen), then
    /// its compute limit, as for `fit`.
    FitResnet34,
    /// Scale: `verify_images` over Training and Test (recursive, `max_size` 500).
    ScaleVerify,
    /// Scale: building the ImageDataBunch only (its peak memory is the data's).
    ScaleData,
    /// Scale: the first `--batches` batches of `fit_one_cycle(1)` of mobilenet_v2 (frozen),
    /// then validation over the whole Test split.
    ScaleTrain,
    /// After the lesson (fastvision only): the Test error with and without TTA, the leakage
    /// between Training and Test, and images/s of `predict_folder` against `predict` one file
    /// at a time, on the model of `--model` (an export) or one fit_one_cycle(1) of
    /// mobilenet_v2.
    AfterLesson,
    /// The limit a server is held to, on `--model`: `predict_folder`'s images/s over `path`
    /// (a folder of images) and the median latency of one `predict` of its first image.
    ServeLimit,
    /// Own photos: `path/images` labelled by `from_name_re` (the pets lesson's pattern), 20%
    /// held out with `--seed`, `--size` px, `get_transforms()`, mobilenet_v2 pretrained and
    /// frozen, `fit_one_cycle(--epochs, --lr)`. Reports the error, the time of each epoch and
    /// the validation files (so fastai can be given the same split).
    Photos,
    /// Many photos: the first `--files` images under `path` (any depth, labelled by their
    /// folder) at `--size` px, the first `--batches` training batches and a full validation.
    PhotosScale,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    phase: Phase,
    /// A Fruits-360-layout folder (Training/ and Test/).
    path: PathBuf,
    #[arg(long, default_value_t = 100)]
    size: u32,
    #[arg(long, default_value_t = 64)]
    bs: usize,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Training batches timed by scale-train.
    #[arg(long, default_value_t = 150)]
    batches: usize,
    /// after-lesson: an exported model to use instead of training one.
    #[arg(long)]
    model: Option<PathBuf>,
    /// after-lesson: files `predict` classifies one at a time (predict_folder takes them all).
    #[arg(long, default_value_t = 500)]
    predict_files: usize,
    /// photos: the seed of the split, the shuffling and the augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// photos: epochs of fit_one_cycle.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// photos: fit_one_cycle's maximum learning rate (fastai v1's default).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// photos: the decoded images' memory budget in bytes (0 decodes every batch).
    #[arg(long)]
    budget: Option<u64>,
    /// photos: train in bfloat16 autocast (`to_bf16`), which fastai's autocast has only on CUDA.
    #[arg(long)]
    bf16: bool,
    /// photos-scale: how many photos.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
}

/// Ends a fit after `n` batches: scale-train times a stretch of a full-size epoch.
struct StopAfter(usize);

impl fastvision::learner::fit::Callback for StopAfter {
    fn on_batch_end(
        &mut self,
        cx: &mut fastvision::learner::fit::FitContext,
    ) -> fastvision::Result<()> {
        if cx.iteration + 1 >= self.0 {
            // Validation is timed on its own, over the whole Test split.
            cx.stop_training = true;
            cx.validate = false;
        }
        Ok(())
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().split(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The lesson's data settings, the same for every phase.
fn folder_opts(args: &Args) -> FromFolder {
    FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: args.size,
        bs: args.bs,
        ds_tfms: Some(get_transforms()),
        num_workers: args.threads as usize,
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    fastvision::device::tune_allocator();
    let args = Args::parse();
    tch::set_num_threads(args.threads);
    match args.phase {
        Phase::ScaleVerify => {
            let t = Instant::now();
            let mut checked = 0;
            for split in ["Training", "Test"] {
                let opts = fastvision::VerifyOptions::new()
                    .recurse()
                    .max_size(500)
                    .max_workers(args.threads as usize);
                let report = fastvision::verify_images(&args.path.join(split), opts)?;
                checked += report.checked;
            }
            let out = serde_json::json!({
                "tool": "fastvision", "phase": "scale-verify", "images": checked,
                "verify_s": t.elapsed().as_secs_f64(), "peak_rss_mb": peak_rss_mb(),
            });
            println!("BENCH_JSON {out}");
        }
        Phase::ScaleData => {
            let t = Instant::now();
            let data = ImageDataBunch::from_folder(&args.path, folder_opts(&args))?;
            let n = data.train_dl.dataset.len() + data.valid_dl.dataset.len();
            let decoded = n * fastvision::data::loader::ImageDataset::bytes_per_image(args.size);
            let out = serde_json::json!({
                "tool": "fastvision", "phase": "scale-data", "images": n,
                "data_s": t.elapsed().as_secs_f64(), "peak_rss_mb": peak_rss_mb(),
                "decoded_mb": decoded as f64 / (1 << 20) as f64,
                "in_memory": data.train_dl.dataset.in_memory(),
            });
            println!("BENCH_JSON {out}");
        }
        Phase::ScaleTrain => {
            let data = ImageDataBunch::from_folder(&args.path, folder_opts(&args))?
                .normalize(imagenet_stats)?;
            let mut learn =
                cnn_learner_with(&data, mobilenet_v2, &[error_rate], Default::default())?;
            let batches = args.batches.min(data.train_dl.len());
            let t = Instant::now();
            learn.fit_one_cycle_with(1, None, &mut [&mut StopAfter(batches)])?;
            let train_s = t.elapsed().as_secs_f64();
            let v = Instant::now();
            learn.validate()?;
            let valid_s = v.elapsed().as_secs_f64();
            let n_valid = data.valid_dl.dataset.len();
            let out = serde_json::json!({
                "tool": "fastvision", "phase": "scale-train", "batches": batches,
                "train_images_per_s": (batches * args.bs) as f64 / train_s,
                "valid_images_per_s": n_valid as f64 / valid_s,
                "peak_rss_mb": peak_rss_mb(),
                "device": fastvision::device::device_name(data.train_dl.device),
            });
            println!("BENCH_JSON {out}");
        }
        Phase::AfterLesson => after_lesson(&args)?,
        Phase::Photos => photos(&args)?,
        Phase::PhotosScale => photos_scale(&args)?,
        Phase::ServeLimit => serve_limit(&args)?,
        Phase::Data => {
            let start = Instant::now();
            let opts = folder_opts(&args);
            let data = ImageDataBunch::from_folder(&args.path, opts)?.normalize(imagenet_stats)?;
            let setup_s = start.elapsed().as_secs_f64();
            let mut epochs = Vec::new();
            for epoch in 0..3 {
                let t = Instant::now();
                let mut n = 0i64;
                let mut checksum = 0f64;
                for batch in data.train_dl.epoch(epoch) {
                    let batch = batch.expect("a batch");
                    n += batch.x.size()[0];
                    // Touch the result so no work can be skipped.
                    checksum += batch.x.get(0).get(0).get(0).get(0).double_value(&[]);
                }
                epochs.push((n, t.elapsed().as_secs_f64(), checksum));
            }
            let (n, first_s, _) = epochs[0];
            let steady_s = epochs[1..].iter().map(|e| e.1).sum::<f64>() / (epochs.len() - 1) as f64;
            let out = serde_json::json!({
                "tool": "fastvision", "phase": "data", "images": n,
                "setup_s": setup_s, "first_epoch_s": first_s, "epoch_s": steady_s,
                "images_per_s": n as f64 / steady_s,
                "images_per_s_first": n as f64 / (setup_s + first_s),
                "peak_rss_mb": peak_rss_mb(),
                "device": fastvision::device::device_name(data.train_dl.device),
            });
            println!("BENCH_JSON {out}");
        }
        _ => {
            let opts = folder_opts(&args);
            let start = Instant::now();
            let data = ImageDataBunch::from_folder(&args.path, opts)?.normalize(imagenet_stats)?;
            // The layout switch the README documents for comparing speeds; unset, the layout
            // that is faster on the device.
            let channels_last = std::env::var("FASTVISION_CHANNELS_LAST")
                .ok()
                .map(|v| !matches!(v.trim(), "0" | "false"));
            let mut learn = match args.phase {
                Phase::FitResnet34 => cnn_learner_with(
                    &data,
                    resnet34,
                    &[error_rate],
                    CnnOptions {
                        pretrained: false,
                        channels_last,
                        ..Default::default()
                    },
                )?,
                _ => cnn_learner_with(
                    &data,
                    mobilenet_v2,
                    &[error_rate],
                    CnnOptions {
                        channels_last,
                        ..Default::default()
                    },
                )?,
            };
            let setup_s = start.elapsed().as_secs_f64();
            let t = Instant::now();
            let out = match args.phase {
                Phase::Fit | Phase::FitResnet34 => {
                    match args.phase {
                        Phase::Fit => learn.fit_one_cycle(1, None)?,
                        _ => learn.fit_one_cycle(1, 1e-3)?,
                    };
                    let fit_s = t.elapsed().as_secs_f64();
                    let error = learn.recorder.epochs[0].metrics[0];
                    let train_s = learn.recorder.epochs[0].time;
                    // Compute limit: the same steps on one batch already on the device.
                    let batch = data
                        .train_dl
                        .epoch(0)
                        .next()
                        .expect("one batch")
                        .expect("a batch");
                    let steps = data.train_dl.len();
                    let t = Instant::now();
                    for _ in 0..steps {
                        let loss = learn
                            .model
                            .forward(&batch.x, Mode::Train)
                            .cross_entropy_for_logits(&batch.y);
                        learn.opt.zero_grad();
                        loss.backward();
                        learn.opt.step();
                    }
                    let limit_s = t.elapsed().as_secs_f64();
                    let v = Instant::now();
                    learn.validate()?;
                    let valid_s = v.elapsed().as_secs_f64();
                    serde_json::json!({"fit_s": fit_s, "train_epoch_s": train_s, "limit_s": limit_s + valid_s,
                        "error_rate": error, "steps": steps})
                }
                Phase::LrFind => {
                    learn.lr_find()?;
                    serde_json::json!({"lr_find_s": t.elapsed().as_secs_f64(), "iterations": learn.recorder.lrs.len()})
                }
                _ => {
                    let interp = ClassificationInterpretation::from_learner(&learn)?;
                    let n = interp.probs.size()[0];
                    let _ = interp.confusion_matrix().sum(Kind::Int64).int64_value(&[]);
                    let _: Tensor = interp.top_losses_k(9).0;
                    serde_json::json!({"interp_s": t.elapsed().as_secs_f64(), "items": n})
                }
            };
            let mut out = out;
            out["tool"] = "fastvision".into();
            out["phase"] = args
                .phase
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
                .into();
            out["setup_s"] = setup_s.into();
            out["peak_rss_mb"] = peak_rss_mb().into();
            out["device"] = fastvision::device::device_name(data.train_dl.device).into();
            println!("BENCH_JSON {out}");
        }
    }
    Ok(())
}

/// The own-photos options: `--size`, `--seed`, `--budget`, the lesson's augmentation.
fn photo_opts(args: &Args) -> FromFolder {
    let mut opts = FromFolder::default()
        .size(args.size)
        .bs(args.bs)
        .valid_pct(0.2)
        .seed(args.seed)
        .tfms(get_transforms())
        .num_workers(args.threads as usize);
    if let Some(b) = args.budget {
        opts = opts.memory_budget(b);
    }
    opts
}

/// One own-photos run (see `Phase::Photos`).
fn photos(args: &Args) -> anyhow::Result<()> {
    let t = Instant::now();
    let images = args.path.join("images");
    let fnames = get_image_files(&images, false)?;
    let data =
        ImageDataBunch::from_name_re(&images, &fnames, r"/([^/]+)_\d+\.jpg$", photo_opts(args))?
            .normalize(imagenet_stats)?;
    let data_s = t.elapsed().as_secs_f64();
    let mut learn = cnn_learner_with(&data, mobilenet_v2, &[error_rate], Default::default())?;
    if args.bf16 {
        learn.to_bf16();
    }
    let t = Instant::now();
    learn.fit_one_cycle(args.epochs, args.lr)?;
    let fit_s = t.elapsed().as_secs_f64();
    let epochs: Vec<f64> = learn.recorder.epochs.iter().map(|e| e.time).collect();
    let errors: Vec<f64> = learn.recorder.epochs.iter().map(|e| e.metrics[0]).collect();
    let n_valid = data.valid_dl.dataset.len();
    let valid: Vec<String> = data
        .valid_dl
        .dataset
        .items
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let out = serde_json::json!({
        "tool": "fastvision", "phase": "photos", "seed": args.seed, "bf16": args.bf16,
        "train_images": data.train_dl.dataset.len(), "valid_images": n_valid,
        "error_rate": errors.last(), "errors": (errors.last().unwrap() * n_valid as f64).round(),
        "error_by_epoch": errors, "epoch_s": epochs, "fit_s": fit_s, "data_s": data_s,
        "in_memory": data.train_dl.dataset.in_memory(), "valid_files": valid,
        "peak_rss_mb": peak_rss_mb(),
        "device": fastvision::device::device_name(data.train_dl.device),
    });
    println!("BENCH_JSON {out}");
    Ok(())
}

/// Many photos at once (see `Phase::PhotosScale`).
fn photos_scale(args: &Args) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut fnames = get_image_files(&args.path, true)?;
    anyhow::ensure!(
        fnames.len() >= args.files,
        "{} holds {} photos, fewer than --files {}",
        args.path.display(),
        fnames.len(),
        args.files
    );
    fnames.truncate(args.files);
    let data =
        ImageDataBunch::from_name_re(&args.path, &fnames, r"/([^/]+)/[^/]+$", photo_opts(args))?
            .normalize(imagenet_stats)?;
    let data_s = t.elapsed().as_secs_f64();
    let data_rss = peak_rss_mb();
    let mut learn = cnn_learner_with(&data, mobilenet_v2, &[error_rate], Default::default())?;
    let batches = args.batches.min(data.train_dl.len());
    let t = Instant::now();
    learn.fit_one_cycle_with(1, args.lr, &mut [&mut StopAfter(batches)])?;
    let train_s = t.elapsed().as_secs_f64();
    let v = Instant::now();
    learn.validate()?;
    let valid_s = v.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "tool": "fastvision", "phase": "photos-scale", "images": fnames.len(),
        "classes": data.c(), "data_s": data_s, "data_peak_rss_mb": data_rss,
        "in_memory": data.train_dl.dataset.in_memory(), "batches": batches,
        "train_images_per_s": (batches * args.bs) as f64 / train_s,
        "valid_images_per_s": data.valid_dl.dataset.len() as f64 / valid_s,
        "peak_rss_mb": peak_rss_mb(),
        "device": fastvision::device::device_name(data.train_dl.device),
    });
    println!("BENCH_JSON {out}");
    Ok(())
}

/// predict_folder's throughput and one predict's latency (see `Phase::ServeLimit`).
fn serve_limit(args: &Args) -> anyhow::Result<()> {
    let Some(path) = &args.model else {
        anyhow::bail!("serve-limit needs --model (an export)");
    };
    let model = fastvision::models::export::load_learner_on(path, tch::Device::Cpu)?;
    // Once untimed, so both figures are of a warm process as a server's are.
    let warm = model.predict_folder(&args.path)?;
    let n = warm.rows.len();
    let t = Instant::now();
    model.predict_folder(&args.path)?;
    let ips = n as f64 / t.elapsed().as_secs_f64();
    let first = warm.rows[0].0.clone();
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            model.predict(&first).expect("the first image predicts");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "tool": "fastvision", "phase": "serve-limit", "images": n,
        "predict_folder_ips": ips, "predict_p50_ms": times[times.len() / 2], "n_single": times.len(),
    });
    println!("BENCH_JSON {out}");
    Ok(())
}

/// The after-lesson figures: TTA, leakage and batched prediction (see `Phase::AfterLesson`).
fn after_lesson(args: &Args) -> anyhow::Result<()> {
    let data =
        ImageDataBunch::from_folder(&args.path, folder_opts(args))?.normalize(imagenet_stats)?;
    let mut learn = match &args.model {
        Some(m) => fastvision::Learner::from_model(
            fastvision::load_learner(m)?,
            data.clone(),
            &[error_rate],
        )?,
        None => {
            let mut learn =
                cnn_learner_with(&data, mobilenet_v2, &[error_rate], Default::default())?;
            learn.fit_one_cycle(1, None)?;
            learn
        }
    };
    learn.clear_cbs();
    let t = Instant::now();
    let plain = learn.validate()?.1[0];
    let plain_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (preds, y) = learn.tta()?;
    let tta_s = t.elapsed().as_secs_f64();
    let with_tta = error_rate.compute(&preds, &y);
    let t = Instant::now();
    let leak = learn.leakage()?;
    let leakage_s = t.elapsed().as_secs_f64();
    let (e_leaked, e_unleaked) = leak.error_rates();
    // The same search judged at other thresholds: (threshold, share, error leaked, unleaked).
    let at: Vec<(f32, f64, Option<f64>, Option<f64>)> = [0.8f32, 0.85, 0.9, 0.92, 0.95, 0.98]
        .iter()
        .map(|&th| {
            let l = leak.clone().with_threshold(th);
            let (a, b) = l.error_rates();
            (th, l.share_leaked(), a, b)
        })
        .collect();
    let mut sims = leak.similarity.clone();
    sims.sort_by(f32::total_cmp);
    let quantiles: Vec<(f64, f32)> = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9]
        .iter()
        .map(|&q| (q, sims[((sims.len() - 1) as f64 * q) as usize]))
        .collect();
    // Prediction: the first files of the Test split, one by one and then all at once.
    let files: Vec<PathBuf> = data
        .valid_dl
        .dataset
        .items
        .iter()
        .take(args.predict_files)
        .cloned()
        .collect();
    let t = Instant::now();
    for f in &files {
        learn.predict(f)?;
    }
    let one_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batched = learn.model.predict_paths(&files)?;
    let batch_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        batched.failed().count() == 0,
        "a Test file failed to predict"
    );
    let out = serde_json::json!({
        "tool": "fastvision", "phase": "after-lesson",
        "valid_images": data.valid_dl.dataset.len(), "train_images": data.train_dl.dataset.len(),
        "error_rate": plain, "error_rate_tta": with_tta, "validate_s": plain_s, "tta_s": tta_s,
        "leakage_s": leakage_s, "threshold": leak.threshold, "share_leaked": leak.share_leaked(),
        "n_leaked": leak.n_leaked(), "error_rate_leaked": e_leaked, "error_rate_unleaked": e_unleaked,
        "at_thresholds": at, "similarity_quantiles": quantiles,
        "predict_files": files.len(), "predict_one_by_one_images_per_s": files.len() as f64 / one_s,
        "predict_folder_images_per_s": files.len() as f64 / batch_s,
        "peak_rss_mb": peak_rss_mb(),
        "device": fastvision::device::device_name(data.train_dl.device),
    });
    println!("BENCH_JSON {out}");
    Ok(())
}

//! fastvision's side of the benchmarks: one phase per run, one JSON line on stdout, so the
//! runner (bench/run.py) can alternate it with fastai's run of the same phase.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use fastvision::learner::CnnOptions;
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
            // The layout switch the README documents for comparing speeds.
            let channels_last =
                std::env::var("FASTVISION_CHANNELS_LAST").map_or(true, |v| v.trim() != "0");
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
                    let batch = data.train_dl.epoch(0).next().expect("one batch");
                    let steps = data.train_dl.len();
                    let t = Instant::now();
                    for _ in 0..steps {
                        let loss = learn
                            .forward(&batch.x, true)
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
                    let _: Tensor = interp.top_losses(Some(9)).0;
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

//! The whole lesson, end to end, as `fastvision lesson` (`make lesson`) runs it: get the data,
//! verify it, look at it, train, interpret, fine-tune, predict and export, writing every figure
//! as PNG and an HTML report under one output folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::download::fruits360_layout;
use crate::models::Arch;
use crate::show::escape;
use crate::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, Result, VerifyOptions, cnn_learner,
    error_rate, generate_sample, get_transforms, imagenet_stats, slice, verify_images,
};

/// What the lesson runs on and where it writes.
#[derive(Debug, Clone)]
pub struct LessonOptions {
    /// A Fruits-360-layout folder; `None`: `data/fruits-360` if present, else a generated
    /// synthetic sample in `data/fruits-360-synthetic`.
    pub data: Option<PathBuf>,
    /// The architecture (mobilenet_v2 works offline; the lesson's resnet34 needs its weights).
    pub arch: Arch,
    /// Output folder for figures, the report, saved models and the export.
    pub out: PathBuf,
    /// Frozen epochs (the lesson: 4) and unfrozen epochs (the lesson: 2).
    pub epochs: (usize, usize),
    /// Iterations of `lr_find` (fastai's default: 100).
    pub lr_find_iters: usize,
}

impl Default for LessonOptions {
    fn default() -> Self {
        LessonOptions {
            data: None,
            arch: crate::mobilenet_v2,
            out: PathBuf::from("out"),
            epochs: (4, 2),
            lr_find_iters: 100,
        }
    }
}

/// Where the lesson's data comes from, said plainly (a synthetic sample is never passed off as
/// real photographs).
pub fn lesson_data(data: Option<&Path>) -> Result<(PathBuf, String)> {
    if let Some(p) = data {
        return Ok((fruits360_layout(p)?, format!("data from {}", p.display())));
    }
    let real = crate::config::data_dir().join("fruits-360");
    if real.is_dir() {
        return Ok((
            fruits360_layout(&real)?,
            format!("Fruits 360 from {}", real.display()),
        ));
    }
    let synthetic = crate::config::data_dir().join("fruits-360-synthetic");
    let path = generate_sample(&synthetic, 30, 100, 42)?;
    Ok((
        path,
        format!(
            "no data/fruits-360 here (download it with `fastvision download`), so this run uses a \
             SYNTHETIC sample of drawn shapes generated in {}",
            synthetic.display()
        ),
    ))
}

/// Runs the lesson and returns the report's path.
///
/// ```no_run
/// let report = fastvision::lesson::run_lesson(&Default::default()).unwrap();
/// println!("open {}", report.display());
/// ```
pub fn run_lesson(opts: &LessonOptions) -> Result<PathBuf> {
    let start = Instant::now();
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>fastvision lesson 1</title>\
         <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>\
         <h1>Lesson 1: what's your fruit?</h1>",
    );

    let (path, source) = lesson_data(opts.data.as_deref())?;
    println!("== data: {source}");
    let _ = write!(html, "<p>{}</p>", escape(&source));

    let verify = verify_images(
        &path.join("Training"),
        &VerifyOptions {
            recurse: true,
            max_size: Some(500),
            ..Default::default()
        },
    )?;
    let _ = write!(
        html,
        "<h2>verify_images</h2><p>{}</p>",
        escape(&verify.summary())
    );

    let data = ImageDataBunch::from_folder(
        &path,
        FromFolder {
            train: "Training".into(),
            valid: "Test".into(),
            size: 100,
            ds_tfms: Some(get_transforms()),
            ..Default::default()
        },
    )?
    .normalize(imagenet_stats)?;
    data.show_batch(3, (7.0, 8.0))?
        .save(&out.join("show_batch.png"))?;
    let _ = write!(
        html,
        "<h2>The data</h2><p>{}</p><img src=show_batch.png>",
        escape(&data.summary().line)
    );

    println!("== training {} (frozen)", opts.arch);
    let mut learn = cnn_learner(&data, opts.arch, &[error_rate])?;
    learn.model_dir = out.join("models");
    learn.fit_one_cycle(opts.epochs.0, None)?;
    learn
        .recorder
        .plot_losses()?
        .save(&out.join("plot_losses.png"))?;
    learn.save("stage-1")?;
    let _ = write!(
        html,
        "<h2>Training: {} , fit_one_cycle({})</h2>{}<img src=plot_losses.png>",
        opts.arch,
        opts.epochs.0,
        learn.recorder.html_table()
    );

    println!("== results");
    let interp = ClassificationInterpretation::from_learner(&learn)?;
    interp
        .plot_top_losses(9, (15.0, 11.0), true)?
        .save(&out.join("top_losses.png"))?;
    interp
        .plot_confusion_matrix(false, false)?
        .save(&out.join("confusion_matrix.png"))?;
    let confused = interp.most_confused(2);
    println!("{confused}");
    let rows: Vec<Vec<String>> = confused
        .0
        .iter()
        .map(|(a, p, n)| vec![a.clone(), p.clone(), n.to_string()])
        .collect();
    let _ = write!(
        html,
        "<h2>Results</h2><img src=top_losses.png><img src=confusion_matrix.png><h3>most_confused(2)</h3>{}",
        crate::show::html_table(&["actual", "predicted", "count"], &rows)
    );

    println!("== fine-tuning");
    learn.lr_find(1e-7, 10.0, opts.lr_find_iters, true)?;
    learn.recorder.plot(true)?.save(&out.join("lr_find.png"))?;
    let s = learn.recorder.suggestions()?;
    learn.unfreeze();
    learn.fit_one_cycle(opts.epochs.1, slice(1e-6, 10f64.powf(-5.5)))?;
    let _ = write!(
        html,
        "<h2>Fine-tuning</h2><img src=lr_find.png><p>lr_find suggestions: valley {:.2e}, steep {:.2e}, minimum/10 {:.2e}</p>\
         <p>unfreeze(); fit_one_cycle({}, slice(1e-6, 10^-5.5))</p>{}",
        s.valley,
        s.steep,
        s.minimum,
        opts.epochs.1,
        learn.recorder.html_table()
    );

    let image = data.valid_dl.dataset.items[0].clone();
    let p = learn.predict(&image)?;
    learn.export(&out.join("export.safetensors"))?;
    let _ = write!(
        html,
        "<h2>Predict and export</h2><p>predict({}) = {}</p><p>exported to export.safetensors</p><p>{:.0} s in all.</p>",
        escape(&image.display().to_string()),
        escape(&p.to_string()),
        start.elapsed().as_secs_f64()
    );
    let report = out.join("report.html");
    crate::io::atomic_write(&report, html.as_bytes())?;
    println!(
        "== done in {:.0} s: figures and {} in {}",
        start.elapsed().as_secs_f64(),
        report.display(),
        out.display()
    );
    Ok(report)
}

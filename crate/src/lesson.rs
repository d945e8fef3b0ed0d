//! The whole lesson, end to end, as `fastvision lesson` (`make lesson`) runs it: get the data,
//! verify it, look at it, train, interpret, fine-tune, predict and export, writing every figure
//! as PNG and an HTML report under one output folder.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use crate::data::download::fruits360_variant;
use crate::interpret::TopLosses;
use crate::learner::lr_find::LrFind;
use crate::models::Arch;
use crate::show::escape;
use crate::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, Learner, Result, VerifyOptions,
    error_rate, generate_sample, get_transforms, imagenet_stats, slice, verify_images,
};

/// Where the lesson's images come from.
///
/// Parsed from `FASTVISION_DATA`: `kaggle` (or `kaggle:owner/slug`, and
/// `kaggle:moltean/fruits#original-size` for another variant of the archive), `synthetic`,
/// `auto`, or a path to a Fruits-360-layout folder.
///
/// ```
/// use fastvision::lesson::DataSource;
/// assert_eq!("kaggle".parse::<DataSource>().unwrap(), DataSource::Kaggle("moltean/fruits".into()));
/// assert_eq!("synthetic".parse::<DataSource>().unwrap(), DataSource::Synthetic);
/// assert_eq!("/data/fruits".parse::<DataSource>().unwrap(), DataSource::Folder("/data/fruits".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `data/fruits-360` if present, else the synthetic sample (what `make lesson` does offline).
    Auto,
    /// A Kaggle dataset (`owner/slug`), downloaded once into `data/fruits-360` with the
    /// credentials from `KAGGLE_USERNAME`/`KAGGLE_KEY` or `~/.kaggle/kaggle.json`.
    Kaggle(String),
    /// A folder already on disk, holding `Training/` and `Test/` (at any depth below it).
    Folder(PathBuf),
    /// A generated stand-in of drawn shapes (30 classes), for machines with no data at all.
    Synthetic,
}

impl std::str::FromStr for DataSource {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<DataSource> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "" | "auto" => DataSource::Auto,
            "kaggle" => DataSource::Kaggle(FRUITS_KAGGLE.into()),
            "synthetic" | "sample" => DataSource::Synthetic,
            _ => match t.strip_prefix("kaggle:") {
                Some(slug) => DataSource::Kaggle(slug.trim().into()),
                None => DataSource::Folder(PathBuf::from(t)),
            },
        })
    }
}

/// Fruits 360 on Kaggle.
pub const FRUITS_KAGGLE: &str = "moltean/fruits";

impl DataSource {
    /// Fetches or finds the data and returns the folder holding `Training/` and `Test/`, with a
    /// sentence saying where it came from (a synthetic sample is never passed off as real
    /// photographs).
    ///
    /// ```no_run
    /// let (path, said) = fastvision::lesson::DataSource::Auto.get().unwrap();
    /// println!("{said}: {}", path.display());
    /// ```
    pub fn get(&self) -> Result<(PathBuf, String)> {
        let data_dir = crate::config::data_dir();
        match self {
            DataSource::Folder(p) => {
                // `folder#variant` too, when the folder holds an unpacked Kaggle archive.
                let spelled = p.to_string_lossy();
                let (folder, variant) = match spelled.rsplit_once('#') {
                    Some((f, v)) if !p.exists() => (PathBuf::from(f), Some(v.to_string())),
                    _ => (p.clone(), None),
                };
                let layout = fruits360_variant(&folder, variant.as_deref())?;
                let said = if layout.others.is_empty() && variant.is_none() {
                    format!("data from {}", folder.display())
                } else {
                    layout.to_string()
                };
                Ok((layout.path, said))
            }
            DataSource::Kaggle(spec) => {
                // `owner/slug#variant` picks one of the archive's variants by name.
                let (slug, variant) = match spec.split_once('#') {
                    Some((slug, v)) => (slug, Some(v.trim())),
                    None => (spec.as_str(), None),
                };
                let dest = data_dir.join("fruits-360");
                let path = crate::data::download::download_kaggle_dataset(slug, &dest)?;
                let layout = fruits360_variant(&path, variant)?;
                let said = format!("Kaggle dataset {slug}: {layout}");
                Ok((layout.path, said))
            }
            DataSource::Auto => {
                let real = data_dir.join("fruits-360");
                if real.is_dir() {
                    let layout = fruits360_variant(&real, None)?;
                    let said = layout.to_string();
                    return Ok((layout.path, said));
                }
                let (path, said) = DataSource::Synthetic.get()?;
                Ok((
                    path,
                    format!(
                        "no data/fruits-360 here (download it with `fastvision download`), so {said}"
                    ),
                ))
            }
            DataSource::Synthetic => {
                let dest = data_dir.join(SYNTHETIC_FOLDER);
                let path = generate_sample(&dest, 30, 100, 42)?;
                Ok((
                    path,
                    format!(
                        "this run uses a SYNTHETIC sample of drawn shapes (not photographs) \
                         generated in {}",
                        dest.display()
                    ),
                ))
            }
        }
    }
}

/// Where [`DataSource::Synthetic`] generates its sample, under the data folder. Versioned with
/// the generator, so a sample drawn by an older version is never silently reused or overwritten.
pub const SYNTHETIC_FOLDER: &str = "fruits-360-synthetic-v2";

/// The notebook's settings cell: the data source, architecture, device and output folder, read
/// from environment variables so that one notebook runs the lesson as taught (Kaggle's full
/// dataset, resnet34) or offline on a local sample with mobilenet_v2, unchanged.
///
/// | variable | default | values |
/// |---|---|---|
/// | `FASTVISION_DATA` | `kaggle` | `kaggle`, `kaggle:owner/slug`, `synthetic`, `auto`, a folder |
/// | `FASTVISION_ARCH` | `resnet34` | `resnet18`, `resnet34`, `resnet50`, `mobilenet_v2` |
/// | `FASTVISION_OUT` | `out` | the folder for models, exports and figures |
/// | `FASTVISION_DEVICE` | CUDA if present | `cpu`, `cuda`, `cuda:N` |
///
/// ```
/// let s = fastvision::lesson::Settings::from_env().unwrap();
/// println!("{} on {:?}", s.arch, s.data);
/// ```
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the images come from.
    pub data: DataSource,
    /// The architecture.
    pub arch: Arch,
    /// Where models, exports and figures go.
    pub out: PathBuf,
    /// Where the computing happens.
    pub device: tch::Device,
}

impl Settings {
    /// Reads the settings from the environment; a value that makes no sense is an error naming
    /// the variable. As the notebook's first call, it also installs the logger that shows the
    /// library's warnings under the cells ([`crate::show::logging::init`]).
    pub fn from_env() -> Result<Settings> {
        crate::show::logging::init();
        let var = crate::config::var;
        let data = match var("FASTVISION_DATA") {
            Some(v) => v.parse()?,
            None => DataSource::Kaggle(FRUITS_KAGGLE.into()),
        };
        let arch = match var("FASTVISION_ARCH") {
            Some(v) => v
                .parse()
                .map_err(|e| crate::Error::InvalidArgument(format!("FASTVISION_ARCH: {e}")))?,
            None => crate::resnet34,
        };
        Ok(Settings {
            data,
            arch,
            out: var("FASTVISION_OUT").map_or_else(|| PathBuf::from("out"), PathBuf::from),
            device: crate::default_device()?,
        })
    }

    /// The settings as a DataFrame: setting (with the variable that sets it), value.
    ///
    /// ```
    /// let s = fastvision::lesson::Settings::from_env().unwrap();
    /// assert_eq!(s.df().height(), 5);
    /// ```
    pub fn df(&self) -> polars::prelude::DataFrame {
        let data = match &self.data {
            DataSource::Auto => "data/fruits-360 if present, else a synthetic sample".to_string(),
            DataSource::Kaggle(slug) => format!("Kaggle: {slug}"),
            DataSource::Folder(p) => p.display().to_string(),
            DataSource::Synthetic => "synthetic sample (drawn shapes, not photographs)".into(),
        };
        polars::df!(
            "setting" => [
                "data (FASTVISION_DATA)",
                "architecture (FASTVISION_ARCH)",
                "device (FASTVISION_DEVICE)",
                "CPU threads",
                "outputs (FASTVISION_OUT)",
            ],
            "value" => [
                data,
                self.arch.to_string(),
                crate::device::device_name(self.device),
                tch::get_num_threads().to_string(),
                self.out.display().to_string(),
            ],
        )
        .expect("two columns of equal length")
    }

    /// Shows the settings as a table (evcxr calls this for the cell's last value).
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.df(), None);
    }
}

/// The own-photos notebook's folder (one holding `images/<class>_<n>.jpg`):
/// `$FASTVISION_PHOTOS` when set, else `caltech101-photos` in the data folder
/// ([`crate::config::data_dir`]) when `scripts/caltech101.py` has made it there, else the
/// 90-photo slice of Caltech 101 that comes with the project (`samples/caltech101-slice`).
///
/// ```
/// let path = fastvision::lesson::photos_path().unwrap();
/// assert!(path.join("images").is_dir());
/// ```
pub fn photos_path() -> Result<PathBuf> {
    if let Some(p) = crate::config::var("FASTVISION_PHOTOS") {
        let p = PathBuf::from(p);
        if !p.join("images").is_dir() {
            return Err(crate::Error::InvalidArgument(format!(
                "FASTVISION_PHOTOS={}: no images/ folder in it; give the folder that holds \
                 images/ (python scripts/caltech101.py makes one)",
                p.display()
            )));
        }
        return Ok(p);
    }
    let made = crate::config::data_dir().join("caltech101-photos");
    if made.join("images").is_dir() {
        return Ok(made);
    }
    let slice = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/caltech101-slice"
    ));
    if slice.join("images").is_dir() {
        log::warn!(
            "{} is not there: using the 90-photo slice that comes with fastvision (make the \
             whole set with python scripts/caltech101.py, see bench/README.md)",
            made.display()
        );
        return Ok(slice.canonicalize().unwrap_or(slice));
    }
    Err(crate::Error::InvalidArgument(format!(
        "no photos: neither {} nor the project's samples/caltech101-slice is there; set \
         FASTVISION_PHOTOS to a folder holding images/",
        made.display()
    )))
}

/// What the lesson runs on and where it writes.
#[derive(Debug, Clone)]
pub struct LessonOptions {
    /// Where the images come from (`Auto`: `data/fruits-360` if present, else a generated
    /// synthetic sample).
    pub data: DataSource,
    /// The architecture (mobilenet_v2 works offline; the lesson's resnet34 needs its weights).
    pub arch: Arch,
    /// Output folder for figures, the report, saved models and the export.
    pub out: PathBuf,
    /// Frozen epochs (the lesson: 4) and unfrozen epochs (the lesson: 2).
    pub epochs: (usize, usize),
    /// Iterations of `lr_find` (fastai's default: 100).
    pub lr_find_iters: usize,
    /// A stop button for every fit of the lesson (the command line wires it to Ctrl-C).
    pub interrupt: Option<crate::learner::callbacks::Interrupt>,
    /// Start from ImageNet weights (false: random initialisation, nothing frozen, for a
    /// machine that cannot get the architecture's weights).
    pub pretrained: bool,
}

impl Default for LessonOptions {
    fn default() -> Self {
        LessonOptions {
            data: DataSource::Auto,
            arch: crate::mobilenet_v2,
            out: PathBuf::from("out"),
            epochs: (4, 2),
            lr_find_iters: 100,
            interrupt: None,
            pretrained: true,
        }
    }
}

/// The lesson's learning rates for the unfrozen network, `slice(1e-6, 10^-5.5)`: from 1e-6
/// for the first layer group to 10^-5.5 for the head (the CLI's `train` uses them too).
///
/// ```
/// let lrs = fastvision::lesson::unfrozen_lrs().expand(3);
/// assert_eq!(lrs[0], 1e-6);
/// assert!((lrs[2] / 10f64.powf(-5.5) - 1.0).abs() < 1e-12);
/// ```
pub fn unfrozen_lrs() -> crate::Lr {
    slice(1e-6, 10f64.powf(-5.5))
}

/// How the lesson trains, the steps `fastvision lesson` and `fastvision train` share: the
/// architecture and its options, the two stages' epochs, a stop button and the precision.
#[derive(Debug, Clone)]
pub struct Training {
    /// The architecture.
    pub arch: Arch,
    /// `cnn_learner`'s options (pretrained, seed, layout).
    pub learner: crate::learner::CnnOptions,
    /// Frozen epochs (the lesson: 4) and unfrozen epochs (the lesson: 2).
    pub epochs: (usize, usize),
    /// A stop button for every fit (the command line wires it to Ctrl-C).
    pub interrupt: Option<crate::learner::callbacks::Interrupt>,
    /// Reduced precision for every fit, if any.
    pub precision: Option<crate::learner::callbacks::Precision>,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            arch: crate::mobilenet_v2,
            learner: Default::default(),
            epochs: (4, 2),
            interrupt: None,
            precision: None,
        }
    }
}

/// The lesson's data from `path`: the folders and sizes `opts` names, fastai's
/// `get_transforms()`, normalised with ImageNet's statistics.
///
/// ```no_run
/// use fastvision::FromFolder;
/// let data = fastvision::lesson::lesson_data("data/fruits-360".as_ref(), FromFolder::new("Training", "Test").size(100)).unwrap();
/// ```
pub fn lesson_data(path: &std::path::Path, opts: FromFolder) -> Result<ImageDataBunch> {
    ImageDataBunch::from_folder(path, opts.tfms(get_transforms()))?.normalize(imagenet_stats)
}

impl Training {
    /// The lesson's learner for `data`: `cnn_learner` with `error_rate`, the stop button and
    /// the precision.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let learn = fastvision::lesson::Training::default().learner(&data).unwrap();
    /// ```
    pub fn learner(&self, data: &ImageDataBunch) -> Result<Learner> {
        let mut learn =
            crate::cnn_learner_with(data, self.arch, &[error_rate], self.learner.clone())?;
        if let Some(stop) = &self.interrupt {
            learn.add_cb(stop.clone());
        }
        match self.precision {
            Some(crate::learner::callbacks::Precision::Half) => learn.to_fp16(),
            Some(crate::learner::callbacks::Precision::BFloat16) => learn.to_bf16(),
            None => learn.to_fp32(),
        };
        Ok(learn)
    }

    /// The lesson's first stage: `fit_one_cycle(epochs.0)` at fastai's default rate.
    pub fn train_frozen(&self, learn: &mut Learner) -> Result<()> {
        learn.fit_one_cycle(self.epochs.0, None)
    }

    /// The lesson's second stage: `unfreeze()` and `fit_one_cycle(epochs.1, slice(1e-6,
    /// 10^-5.5))`; nothing when `epochs.1` is 0.
    pub fn fine_tune(&self, learn: &mut Learner) -> Result<()> {
        if self.epochs.1 > 0 {
            learn.unfreeze();
            learn.fit_one_cycle(self.epochs.1, unfrozen_lrs())?;
        }
        Ok(())
    }
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

    // What the lesson says as it goes, through a renderer, as a fit's output.
    let mut show = crate::show::render::default_renderer();
    let (path, source) = opts.data.get()?;
    show.note(&format!("== data: {source}"));
    let _ = write!(html, "<p>{}</p>", escape(&source));

    let verify = verify_images(
        &path.join("Training"),
        VerifyOptions::new().recurse().max_size(500),
    )?;
    show.note(&verify.summary());
    let _ = write!(
        html,
        "<h2>verify_images</h2><p>{}</p>",
        escape(&verify.summary())
    );

    let data = lesson_data(&path, FromFolder::new("Training", "Test").size(100))?;
    show.note(&data.summary().line);
    data.show_batch(3, (7.0, 8.0))?
        .save(&out.join("show_batch.png"))?;
    let _ = write!(
        html,
        "<h2>The data</h2><p>{}</p><img src=show_batch.png>",
        escape(&data.summary().line)
    );

    show.note(&format!("== training {} (frozen)", opts.arch));
    let training = Training {
        arch: opts.arch,
        learner: crate::learner::CnnOptions {
            pretrained: opts.pretrained,
            ..Default::default()
        },
        epochs: opts.epochs,
        interrupt: opts.interrupt.clone(),
        precision: None,
    };
    let mut learn = training.learner(&data)?;
    learn.model_dir = out.join("models");
    training.train_frozen(&mut learn)?;
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
        crate::show::table::html(&learn.recorder.history(), None)
    );

    show.note("== results");
    let interp = ClassificationInterpretation::from_learner(&learn)?;
    interp
        .plot_top_losses_with(9, (15.0, 11.0), TopLosses::heatmap())?
        .save(&out.join("top_losses.png"))?;
    interp
        .plot_confusion_matrix()?
        .save(&out.join("confusion_matrix.png"))?;
    let confused = interp.most_confused(2);
    show.note(&confused.to_string());
    let _ = write!(
        html,
        "<h2>Results</h2><img src=top_losses.png><img src=confusion_matrix.png><h3>most_confused(2)</h3>{}",
        crate::show::table::html(&confused.df(), None)
    );

    show.note("== fine-tuning");
    let sweep = learn.lr_find_with(LrFind {
        num_it: opts.lr_find_iters,
        ..Default::default()
    })?;
    sweep.plot()?.save(&out.join("lr_find.png"))?;
    let s = sweep.suggestions()?;
    training.fine_tune(&mut learn)?;
    let _ = write!(
        html,
        "<h2>Fine-tuning</h2><img src=lr_find.png><p>lr_find suggestions: valley {:.2e}, steep {:.2e}, minimum/10 {:.2e}</p>\
         <p>unfreeze(); fit_one_cycle({}, slice(1e-6, 10^-5.5))</p>{}",
        s.valley,
        s.steep,
        s.minimum,
        opts.epochs.1,
        crate::show::table::html(&learn.recorder.history(), None)
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
    show.note(&format!(
        "== done in {:.0} s: figures and {} in {}",
        start.elapsed().as_secs_f64(),
        report.display(),
        out.display()
    ));
    Ok(report)
}

//! The `fastvision` command: the lesson's steps from a shell.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fastvision::{FromFolder, ImageDataBunch, VerifyOptions, get_transforms, imagenet_stats};

#[derive(Parser)]
#[command(
    name = "fastvision",
    version,
    about = "fastai's lesson-1 image classifier on libtorch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The `--precision` of `train`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Precision {
    Fp32,
    Fp16,
    Bf16,
}

#[derive(Subcommand)]
enum Command {
    /// Print versions, the device chosen, CUDA/cuDNN, threads and the weights and data folders.
    Info,
    /// The whole lesson offline: data/fruits-360 if present (else a generated synthetic sample),
    /// verify, show_batch, train, interpret, fine-tune, predict, export; figures and an HTML
    /// report in --out.
    Lesson {
        /// auto (data/fruits-360, else a synthetic sample), kaggle, kaggle:owner/slug,
        /// synthetic, or a Fruits-360-layout folder.
        #[arg(long, env = "FASTVISION_DATA", default_value = "auto")]
        data: String,
        /// The architecture (mobilenet_v2's weights work offline; the lesson's resnet34 needs its
        /// ImageNet weights in torch's cache).
        #[arg(long, env = "FASTVISION_ARCH", default_value = "mobilenet_v2",
              value_parser = arch_names())]
        arch: String,
        /// Folder for the figures, report.html, saved models and the export.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Frozen epochs.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// Unfrozen epochs.
        #[arg(long, default_value_t = 2)]
        unfrozen_epochs: usize,
        /// Start from random weights instead of ImageNet's (nothing is frozen).
        #[arg(long)]
        no_pretrained: bool,
    },
    /// Download a Kaggle dataset (credentials from KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json).
    Download {
        /// owner/slug, e.g. moltean/fruits
        #[arg(default_value = "moltean/fruits")]
        dataset: String,
        /// Where to unpack it [default: fruits-360 in the data folder that `fastvision info`
        /// shows].
        #[arg(long)]
        dest: Option<PathBuf>,
    },
    /// Generate the synthetic offline stand-in for Fruits 360 (drawn shapes, not photographs).
    Sample {
        /// Where to write it [default: the data folder's fruits-360-synthetic-v2, where
        /// `fastvision lesson` looks].
        dest: Option<PathBuf>,
        /// Number of classes (Fruits 360 has 131 today).
        #[arg(long, default_value_t = 30)]
        classes: usize,
        /// Training images per class (plus 30% as many test images).
        #[arg(long, default_value_t = 100)]
        per_class: usize,
        /// Seed of the drawing; the same seed gives the same images.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Check a folder of images: quarantine broken files, fix odd ones (see --dry-run).
    Verify {
        /// The folder of images (with -r, a folder of class folders such as Training/).
        path: PathBuf,
        /// Resize images whose longer side is over this.
        #[arg(long)]
        max_size: Option<u32>,
        /// Check sub-folders too.
        #[arg(long, short)]
        recurse: bool,
        /// Report only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete broken files instead of quarantining them.
        #[arg(long)]
        delete: bool,
    },
    /// Train a classifier on a Fruits-360-layout folder and export it.
    Train {
        /// A folder with Training/ and Test/ (see --train, --valid), one sub-folder per class;
        /// with --valid-pct, a folder of class folders.
        path: PathBuf,
        #[command(flatten)]
        folders: Folders,
        /// The architecture.
        #[arg(long, default_value = "mobilenet_v2", value_parser = arch_names())]
        arch: String,
        /// Epochs of fit_one_cycle with the pretrained body frozen (the lesson: 4).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        epochs: u32,
        /// Epochs of fine-tuning the whole network afterwards (slice(1e-6, 10^-5.5)).
        #[arg(long, default_value_t = 0)]
        unfrozen_epochs: usize,
        /// Image size in pixels (images are resized to size x size).
        #[arg(long, default_value_t = 100)]
        size: u32,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        bs: usize,
        /// Start from random weights instead of ImageNet's.
        #[arg(long)]
        no_pretrained: bool,
        /// Where to write the exported model.
        #[arg(long, default_value = "export.safetensors")]
        export: PathBuf,
        /// Weights and batches in the channels-last layout (1 or true), or plain NCHW (0 or
        /// false) [default: channels-last on the CPU, NCHW on a GPU, the faster of the two
        /// as measured on each].
        #[arg(long, env = "FASTVISION_CHANNELS_LAST",
              value_parser = clap::builder::BoolishValueParser::new())]
        channels_last: Option<bool>,
        /// Seed for the shuffle, the augmentation and the head's initialisation; change it to see
        /// the run-to-run spread.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// cpu, cuda or cuda:N [default: the first GPU if there is one, else the CPU].
        #[arg(long, env = "FASTVISION_DEVICE")]
        device: Option<String>,
        /// Arithmetic of the forward pass: fp32, fp16 (CUDA, with loss scaling; Learner::to_fp16)
        /// or bf16 (CUDA or CPU; Learner::to_bf16).
        #[arg(long, env = "FASTVISION_PRECISION", default_value = "fp32")]
        precision: Precision,
    },
    /// Classify images with a model from `fastvision train` (or Learner::export): files, and
    /// every image under folders, in batches. Unreadable files are reported and the others
    /// still classified; the exit status is 1 if any failed.
    Predict {
        /// The exported model (.safetensors from `fastvision train` or Learner::export).
        model: PathBuf,
        /// Image files and folders (searched recursively) to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Also write the predictions as CSV (file, class, probability, error).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Classify what can be decoded of truncated or corrupt images instead of refusing them.
        #[arg(long)]
        accept_damaged: bool,
    },
    /// Serve an exported model: a web page to classify a photo, and a JSON API (POST /predict,
    /// POST /analyze, GET /model, /health/live, /health/ready, /metrics, /openapi.json).
    /// Stops gracefully on Ctrl-C or SIGTERM.
    Serve {
        /// The exported model (.safetensors from `fastvision train` or Learner::export).
        model: PathBuf,
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// Save a grid of augmented training images as PNG (Fruits 360 layout: Training/ and Test/).
    ShowBatch {
        /// A folder with Training/ and Test/ (see --train, --valid), one sub-folder per class;
        /// with --valid-pct, a folder of class folders.
        path: PathBuf,
        #[command(flatten)]
        folders: Folders,
        /// The PNG to write.
        #[arg(long, default_value = "show_batch.png")]
        out: PathBuf,
        /// The grid is rows x rows images.
        #[arg(long, default_value_t = 3)]
        rows: usize,
        /// Image size in pixels.
        #[arg(long, default_value_t = 100)]
        size: u32,
    },
}

/// Where the training and validation images are, as `from_folder` takes them.
#[derive(clap::Args)]
struct Folders {
    /// The training folder's name (one sub-folder per class).
    #[arg(long, default_value = "Training")]
    train: String,
    /// The validation folder's name. Without one, --valid-pct splits at random.
    #[arg(long, default_value = "Test")]
    valid: String,
    /// Hold out this fraction of every image under PATH (labelled by its parent folder) for
    /// validation instead of using the two folders (fastai's valid_pct, e.g. 0.2).
    #[arg(long)]
    valid_pct: Option<f64>,
}

impl Folders {
    /// The folder `from_folder` reads and its options: `path` with its two folders, or, with
    /// `--valid-pct` or no validation folder, one folder of class folders split at random.
    fn resolve(&self, path: &std::path::Path) -> (PathBuf, FromFolder) {
        let opts = FromFolder::new(self.train.clone(), self.valid.clone());
        match self.valid_pct {
            Some(pct) => (path.to_path_buf(), opts.valid_pct(pct)),
            None if !path.join(&self.valid).is_dir() && path.join(&self.train).is_dir() => {
                eprintln!(
                    "note: no {}/ in {}: holding out 20% of {}/ at random (set --valid-pct to change it)",
                    self.valid,
                    path.display(),
                    self.train
                );
                (path.join(&self.train), opts.valid_pct(0.2))
            }
            None => (path.to_path_buf(), opts),
        }
    }
}

/// The architectures `--arch` accepts: every one the library ships.
fn arch_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(fastvision::models::Arch::ALL.map(|a| a.name()))
}

/// The flags of `serve`, as [`fastvision::serve::ServeOptions`] names them.
#[derive(clap::Args)]
struct ServeFlags {
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Most images in one forward pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long a queued image waits for others to share its forward pass, in ms.
    #[arg(long, default_value_t = 5)]
    max_delay_ms: u64,
    /// Images that may wait for the model; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Most image files in one request; more are answered 413.
    #[arg(long, default_value_t = 64)]
    max_files: usize,
    /// Largest request body, in bytes (default 10 MB).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_body: usize,
    /// Largest image decoded, in pixels (width x height).
    #[arg(long, default_value_t = 40_000_000)]
    max_pixels: u64,
    /// libtorch threads for the model (default: one per core).
    #[arg(long)]
    threads: Option<i32>,
    /// An origin whose pages may call the API (CORS), e.g. https://example.com; default none.
    #[arg(long)]
    cors_origin: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl ServeFlags {
    fn options(self) -> anyhow::Result<fastvision::serve::ServeOptions> {
        fastvision::device::load_cuda_backend();
        Ok(fastvision::serve::ServeOptions {
            device: fastvision::device::parse_device(&self.device, tch::Cuda::device_count())?,
            host: self.host,
            port: self.port,
            max_batch: self.max_batch,
            max_delay: std::time::Duration::from_millis(self.max_delay_ms),
            queue: self.queue,
            max_files: self.max_files,
            max_body: self.max_body,
            max_pixels: self.max_pixels,
            threads: self.threads,
            cors_origin: self.cors_origin,
            ..Default::default()
        })
    }
}

fn main() -> std::process::ExitCode {
    fastvision::show::logging::init();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message and its causes on one line, without a backtrace: every library error
            // already names the file or value and the fix.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    fastvision::device::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", fastvision::Info::collect()?),
        Command::Lesson {
            data,
            arch,
            out,
            epochs,
            unfrozen_epochs,
            no_pretrained,
        } => {
            let opts = fastvision::lesson::LessonOptions {
                interrupt: Some(ctrl_c()?),
                pretrained: !no_pretrained,
                data: data.parse()?,
                arch: arch.parse()?,
                out,
                epochs: (epochs, unfrozen_epochs),
                ..Default::default()
            };
            fastvision::lesson::run_lesson(&opts)?;
        }
        Command::Download { dataset, dest } => {
            let dest = dest.unwrap_or_else(|| fastvision::config::data_dir().join("fruits-360"));
            let path = fastvision::data::download::download_kaggle_dataset(&dataset, &dest)?;
            let layout = fastvision::data::download::fruits360_variant(&path, None)?;
            println!("{dataset}: {layout}");
        }
        Command::Sample {
            dest,
            classes,
            per_class,
            seed,
        } => {
            let dest = dest.unwrap_or_else(|| {
                fastvision::config::data_dir().join(fastvision::lesson::SYNTHETIC_FOLDER)
            });
            let path = fastvision::generate_sample(&dest, classes, per_class, seed)?;
            println!(
                "synthetic sample (not real photographs) in {}",
                path.display()
            );
        }
        Command::Verify {
            path,
            max_size,
            recurse,
            dry_run,
            delete,
        } => {
            let opts = VerifyOptions {
                max_size,
                recurse,
                dry_run,
                delete,
                ..Default::default()
            };
            let report = fastvision::verify_images(&path, opts)?;
            print!("{report}");
            if report.checked == 0 && !recurse {
                eprintln!(
                    "hint: no images directly in {}; add -r to check its sub-folders (one per class)",
                    path.display()
                );
            }
        }
        Command::Train {
            path,
            folders,
            arch,
            epochs,
            unfrozen_epochs,
            size,
            bs,
            no_pretrained,
            export,
            channels_last,
            seed,
            device,
            precision,
        } => {
            let stop = ctrl_c()?;
            fastvision::device::load_cuda_backend();
            let device = match device {
                Some(spec) => Some(fastvision::device::parse_device(
                    &spec,
                    tch::Cuda::device_count(),
                )?),
                None => None,
            };
            let (path, opts) = folders.resolve(&path);
            let mut opts = opts.size(size).bs(bs).seed(seed);
            opts.device = device;
            let data = fastvision::lesson::lesson_data(&path, opts)?;
            println!("{}", data.summary().line);
            let training = fastvision::lesson::Training {
                arch: arch.parse()?,
                learner: fastvision::learner::CnnOptions {
                    pretrained: !no_pretrained,
                    channels_last,
                    seed,
                    ..Default::default()
                },
                epochs: (epochs as usize, unfrozen_epochs),
                interrupt: Some(stop),
                precision: match precision {
                    Precision::Fp32 => None,
                    Precision::Fp16 => Some(fastvision::learner::callbacks::Precision::Half),
                    Precision::Bf16 => Some(fastvision::learner::callbacks::Precision::BFloat16),
                },
            };
            let mut learn = training.learner(&data)?;
            training.train_frozen(&mut learn)?;
            training.fine_tune(&mut learn)?;
            learn.export(&export)?;
            println!("exported to {}", export.display());
        }
        Command::Serve { model, flags } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,tower_http=info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let opts = flags.options()?;
            fastvision::serve::serve(&model, opts)?;
        }
        Command::Predict {
            model,
            images,
            csv,
            accept_damaged,
        } => {
            let model = fastvision::load_learner(&model)?;
            let mode = if accept_damaged {
                fastvision::data::image::Decode::Lenient
            } else {
                fastvision::data::image::Decode::Strict
            };
            let preds = model.predict_paths_with(&images, mode)?;
            for (file, result) in &preds.rows {
                match result {
                    Ok(p) => println!("{}: {p}", file.display()),
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
            if let Some(csv) = &csv {
                preds.to_csv(csv)?;
                eprintln!("wrote {}", csv.display());
            }
            let failed = preds.failed().count();
            if preds.rows.is_empty() {
                anyhow::bail!("no images found in {}", join_paths(&images));
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} files could not be classified (listed above)",
                    preds.rows.len()
                );
            }
        }
        Command::ShowBatch {
            path,
            folders,
            out,
            rows,
            size,
        } => {
            let (path, opts) = folders.resolve(&path);
            let opts = opts.size(size).tfms(get_transforms());
            let data = ImageDataBunch::from_folder(&path, opts)?.normalize(imagenet_stats)?;
            let inches = rows as f64 * 7.0 / 3.0;
            data.show_batch(rows, (inches, inches * 8.0 / 7.0))?
                .save(&out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stop button pressed by Ctrl-C: training ends cleanly after the current batch.
fn ctrl_c() -> anyhow::Result<fastvision::learner::callbacks::Interrupt> {
    let stop = fastvision::learner::callbacks::Interrupt::new();
    let button = stop.clone();
    ctrlc::set_handler(move || button.request())?;
    Ok(stop)
}

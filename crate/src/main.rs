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

#[derive(Subcommand)]
enum Command {
    /// Print versions, the device chosen, CUDA/cuDNN, threads and the weights and data folders.
    Info,
    /// Download a Kaggle dataset (credentials from KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json).
    Download {
        /// owner/slug, e.g. moltean/fruits
        #[arg(default_value = "moltean/fruits")]
        dataset: String,
        /// Where to unpack it.
        #[arg(long, default_value = "data/fruits-360")]
        dest: PathBuf,
    },
    /// Generate the synthetic offline stand-in for Fruits 360 (drawn shapes, not photographs).
    Sample {
        /// Where to write it.
        #[arg(default_value = "data/fruits-360-synthetic")]
        dest: PathBuf,
        #[arg(long, default_value_t = 30)]
        classes: usize,
        #[arg(long, default_value_t = 100)]
        per_class: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Check a folder of images: quarantine broken files, fix odd ones (see --dry-run).
    Verify {
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
    /// Save a grid of augmented training images as PNG (Fruits 360 layout: Training/ and Test/).
    ShowBatch {
        path: PathBuf,
        #[arg(long, default_value = "show_batch.png")]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        rows: usize,
        #[arg(long, default_value_t = 100)]
        size: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", fastvision::Info::collect()?),
        Command::Download { dataset, dest } => {
            let path = fastvision::data::download::download_kaggle_dataset(&dataset, &dest)?;
            let layout = fastvision::data::download::fruits360_layout(&path)?;
            println!("{dataset} is in {}", layout.display());
        }
        Command::Sample {
            dest,
            classes,
            per_class,
            seed,
        } => {
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
            let report = fastvision::verify_images(&path, &opts)?;
            for issue in &report.issues {
                println!(
                    "  {}: {} -> {}",
                    issue.file.display(),
                    issue.problem,
                    issue.action
                );
            }
        }
        Command::ShowBatch {
            path,
            out,
            rows,
            size,
        } => {
            let opts = FromFolder {
                train: "Training".into(),
                valid: "Test".into(),
                size,
                ds_tfms: Some(get_transforms()),
                ..Default::default()
            };
            let data = ImageDataBunch::from_folder(&path, opts)?.normalize(imagenet_stats)?;
            let inches = rows as f64 * 7.0 / 3.0;
            data.show_batch(rows, (inches, inches * 8.0 / 7.0))?
                .save(&out)?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

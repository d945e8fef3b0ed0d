//! The `fastvision` command: the lesson's steps from a shell.

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => println!("{}", fastvision::Info::collect()?),
    }
    Ok(())
}

//! Records real `lr_find` sweeps as JSON (the learning rates, the smoothed losses and
//! `num_it`), the curves that scripts/lr_find_fixtures.py hands to fastai's own suggestion
//! functions to make the test fixtures in crate/tests/fixtures/lr_find.
//!
//! ```text
//! cargo run --release --example lr_find_curves -- ../shared/data/fruits-360-sample out/curves
//! ```

use std::path::PathBuf;

use fastvision::learner::lr_find::LrFind;
use fastvision::prelude::*;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let (Some(data), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: lr_find_curves DATA_FOLDER OUT_FOLDER");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let bunch = ImageDataBunch::from_folder(
        &data,
        FromFolder::new("Training", "Test")
            .size(100)
            .tfms(get_transforms()),
    )?
    .normalize(imagenet_stats)?;
    let mut learn = cnn_learner(&bunch, mobilenet_v2, &[error_rate])?;
    // As the lesson runs it: frozen, fastai's defaults, stopped where the loss diverges.
    let runs = [
        ("frozen-default", LrFind::default(), false),
        // A sweep that never diverges: the whole network, up to 1e-2, every point kept.
        (
            "unfrozen-to-1e-2",
            LrFind {
                end_lr: 1e-2,
                ..Default::default()
            },
            true,
        ),
        // A short one: fastai's start skip is num_it / 10, not a tenth of what was recorded.
        (
            "frozen-40",
            LrFind {
                num_it: 40,
                ..Default::default()
            },
            false,
        ),
    ];
    for (name, opts, unfrozen) in runs {
        if unfrozen {
            learn.unfreeze();
        } else {
            learn.freeze();
        }
        learn.lr_find_with(opts)?;
        let rec = &learn.recorder;
        let json = serde_json::json!({
            "name": name,
            "data": data.display().to_string(),
            "num_it": opts.num_it,
            "lrs": rec.lrs,
            "losses": rec.losses,
        });
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, json.to_string()).map_err(|e| Error::io(&path, e))?;
        println!("{name}: {} points -> {}", rec.lrs.len(), path.display());
    }
    Ok(())
}

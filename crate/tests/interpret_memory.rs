//! Interpreting 16,000 images runs in bounded memory: predictions are gathered batch by batch
//! and no activations are kept. Its own test binary, since peak memory is per process.

mod common;

use std::sync::Arc;

use fastvision::data::loader::{DataLoader, ImageDataset, Storage};
use fastvision::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, cnn_learner, error_rate,
    imagenet_stats, mobilenet_v2,
};

fn peak_rss_mb() -> f64 {
    common::peak_rss_kb() as f64 / 1024.0
}

fn trained() -> (fastvision::Learner, Option<tempfile::TempDir>) {
    let (path, tmp) = (common::real_sample(), None::<tempfile::TempDir>);
    let opts = FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 64,
        ..Default::default()
    };
    let data = ImageDataBunch::from_folder(&path, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    (
        cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap(),
        tmp,
    )
}

#[test]
fn interpreting_16000_images_keeps_memory_bounded() {
    let (learn, _tmp) = trained();
    let base = learn.data.valid_dl.clone();
    // 16,000 items (the sample's files, repeated), decoded batch by batch.
    let src = &base.dataset;
    let items: Vec<_> = (0..16_000)
        .map(|i| src.items[i % src.len()].clone())
        .collect();
    let labels: Vec<i64> = (0..16_000).map(|i| src.labels[i % src.len()]).collect();
    let dl = DataLoader {
        dataset: Arc::new(ImageDataset::new(
            items,
            labels,
            src.size,
            Storage::OnTheFly,
        )),
        ..base
    };
    let before = peak_rss_mb();
    let interp = ClassificationInterpretation::from_learner_on(&learn, &dl).unwrap();
    let grown = peak_rss_mb() - before;
    assert_eq!(interp.probs.size()[0], 16_000);
    // Keeping the body's activations would take over 1 GB; predictions take about 2 MB.
    assert!(grown < 400.0, "peak memory grew by {grown:.0} MB");
}

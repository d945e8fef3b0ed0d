//! Shared by the integration tests: where the real Fruits 360 sample is.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared/data/fruits-360-sample` beside the clone (or `FASTVISION_REAL_SAMPLE`), if present.
/// Tests that need real images call this and skip, saying so, when it returns None.
pub fn real_sample(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FASTVISION_REAL_SAMPLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/fruits-360-sample"));
    if dir.join("Training").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED {test}: the real Fruits 360 sample is not at {} (set FASTVISION_REAL_SAMPLE to one)",
            dir.display()
        );
        None
    }
}

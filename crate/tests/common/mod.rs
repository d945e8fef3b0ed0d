//! Shared by the integration tests: where the real Fruits 360 photos are, and small generated data.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real Fruits 360 photos every clone has: `samples/fruits-360-slice`, 12 classes with
/// 30 Training and 10 Test images each (see its README). Tests that need real photos use it,
/// so they run on a fresh clone with nothing else at hand.
pub fn real_sample() -> PathBuf {
    // What the fastvision binary does first thing: the library itself leaves the allocator alone.
    fastvision::device::tune_allocator();
    let dir = repo_root().join("samples/fruits-360-slice");
    assert!(
        dir.join("Training").is_dir(),
        "{} is missing: it is committed with the repository",
        dir.display()
    );
    dir
}

/// The larger real sample, `../shared/data/fruits-360-sample` beside the clone (or
/// `FASTVISION_REAL_SAMPLE`): 30 classes, 3,000 Training and 900 Test images, on which
/// fastai's reference error was measured. Tests that need it skip, saying so, when it is not
/// there; under `FASTVISION_REQUIRE_SAMPLE=1` (CI sets it when `../shared` is there) a
/// missing sample fails the test instead, so a moved folder cannot turn them into silent skips.
pub fn shared_sample(test: &str) -> Option<PathBuf> {
    fastvision::device::tune_allocator();
    let dir = std::env::var_os("FASTVISION_REAL_SAMPLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/fruits-360-sample"));
    if dir.join("Training").is_dir() {
        Some(dir)
    } else if std::env::var("FASTVISION_REQUIRE_SAMPLE").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: FASTVISION_REQUIRE_SAMPLE=1 but the shared Fruits 360 sample is not at {} \
             (set FASTVISION_REAL_SAMPLE to one)",
            dir.display()
        );
    } else {
        eprintln!(
            "SKIPPED {test}: the shared Fruits 360 sample is not at {} (set FASTVISION_REAL_SAMPLE to one)",
            dir.display()
        );
        None
    }
}

/// A small generated dataset (4 classes x 20 images, 64 px, bs 16) on the CPU, normalised and
/// augmented: for learner tests that must run anywhere in seconds.
pub fn small_data(dir: &std::path::Path, seed: u64) -> fastvision::ImageDataBunch {
    fastvision::device::tune_allocator();
    let path = fastvision::generate_sample(&dir.join("sample"), 4, 20, 5).unwrap();
    let opts = fastvision::FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 64,
        bs: 16,
        seed,
        ds_tfms: Some(fastvision::get_transforms()),
        device: Some(tch::Device::Cpu),
        ..Default::default()
    };
    fastvision::ImageDataBunch::from_folder(&path, opts)
        .unwrap()
        .normalize(fastvision::imagenet_stats)
        .unwrap()
}

/// The bytes of one generated 100x100 fruit JPEG.
pub fn sample_jpeg(seed: u64) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let s = fastvision::generate_sample(&tmp.path().join("s"), 2, 1, seed).unwrap();
    let class = std::fs::read_dir(s.join("Training"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read(
        std::fs::read_dir(class)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
}

/// Whether two snapshots (`Learner::snapshot`) hold the same names and bit-equal tensors.
pub fn weights_equal(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.equal(&y.1))
}

/// This process's peak resident memory in kB (`VmHWM` in /proc/self/status). The memory tests
/// measure with it, so where it cannot be read they fail instead of passing on a zero.
pub fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_else(|e| {
        panic!("the memory tests read /proc/self/status, which this system lacks (Linux only): {e}")
    });
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in /proc/self/status:\n{status}"))
}

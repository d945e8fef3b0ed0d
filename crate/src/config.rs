//! Where fastvision keeps things: datasets and pretrained weights.
//!
//! Weights live in torch's own cache so that files already downloaded by PyTorch or torchvision
//! are found and reused, as fastai does.

use std::path::{Path, PathBuf};

/// Reads one environment variable (empty counts as unset). The library reads the environment
/// here and in [`crate::lesson::Settings`] only; everything else takes its settings as
/// arguments, so a notebook cell or a test can change them without touching the process.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Python interpreter with torch installed, used once per checkpoint to convert `.pth`
/// files: `$FASTVISION_PYTHON`, else the `.venv` whose torch fastvision was built against
/// when it still exists, else `python3` from `PATH` (a moved binary on a machine with torch).
pub fn torch_python() -> Option<PathBuf> {
    if let Some(p) = var("FASTVISION_PYTHON") {
        return Some(PathBuf::from(p));
    }
    // <venv>/lib/python3.X/site-packages/torch/lib -> <venv>/bin/python
    let lib = Path::new(env!("FASTVISION_LIBTORCH_LIB"));
    if let Some(py) = lib.ancestors().nth(5).map(|venv| venv.join("bin/python"))
        && py.is_file()
    {
        return Some(py);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("python3"))
            .find(|p| p.is_file())
    })
}

/// Environment variable naming the folder datasets are downloaded to and read from.
pub const DATA_ENV: &str = "FASTVISION_DATA_DIR";

/// The folder datasets land in: `$FASTVISION_DATA_DIR`, else `data/` in the current directory
/// (the project's git-ignored `data/` when run from the repository).
///
/// ```
/// let dir = fastvision::config::data_dir();
/// assert!(dir.ends_with("data") || std::env::var_os("FASTVISION_DATA_DIR").is_some());
/// ```
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// torch's checkpoint cache, where pretrained weights are looked for and converted copies kept:
/// `$TORCH_HOME/hub/checkpoints`, with `TORCH_HOME` defaulting to `$XDG_CACHE_HOME/torch`
/// or `~/.cache/torch`, exactly as `torch.hub.get_dir()` decides.
///
/// ```
/// let dir = fastvision::config::weights_dir();
/// assert!(dir.ends_with("hub/checkpoints"));
/// ```
pub fn weights_dir() -> PathBuf {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let torch_home = env_dir("TORCH_HOME").unwrap_or_else(|| {
        let cache = env_dir("XDG_CACHE_HOME")
            .or_else(|| env_dir("HOME").map(|home| home.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("torch")
    });
    torch_home.join("hub").join("checkpoints")
}

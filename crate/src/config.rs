//! Where fastvision keeps things (datasets, pretrained weights) and the environment it reads.
//! A leaf: it imports no other module of the crate, so every module may read it.
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

/// Environment variable naming the folder datasets are downloaded to and read from.
pub const DATA_ENV: &str = "FASTVISION_DATA_DIR";

/// The folder datasets land in, the same from any working directory:
/// 1. `$FASTVISION_DATA_DIR` when set;
/// 2. inside a fastvision checkout (any folder below it), the checkout's git-ignored `data/`;
/// 3. otherwise `~/.fastvision/data`, as fastai keeps `~/.fastai/data`.
///
/// `fastvision info` prints the one in use.
///
/// ```
/// let dir = fastvision::config::data_dir();
/// assert!(dir.is_absolute() || std::env::var_os("FASTVISION_DATA_DIR").is_some());
/// ```
pub fn data_dir() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    data_dir_from(var(DATA_ENV), &cwd, home.as_deref())
}

/// [`data_dir`]'s rule, on explicit inputs.
///
/// ```
/// use std::path::Path;
/// use fastvision::config::data_dir_from;
/// let dir = tempfile::tempdir().unwrap();
/// let home = Path::new("/home/ada");
/// assert_eq!(data_dir_from(Some("/d".into()), dir.path(), Some(home)), Path::new("/d"));
/// assert_eq!(data_dir_from(None, dir.path(), Some(home)), home.join(".fastvision/data"));
/// // A checkout: crate/Cargo.toml and data/ side by side; any folder below finds its data/.
/// std::fs::create_dir_all(dir.path().join("crate")).unwrap();
/// std::fs::write(dir.path().join("crate/Cargo.toml"), "").unwrap();
/// std::fs::create_dir_all(dir.path().join("data")).unwrap();
/// std::fs::create_dir_all(dir.path().join("notebooks/deep")).unwrap();
/// assert_eq!(data_dir_from(None, &dir.path().join("notebooks/deep"), Some(home)), dir.path().join("data"));
/// ```
pub fn data_dir_from(env: Option<String>, cwd: &Path, home: Option<&Path>) -> PathBuf {
    if let Some(dir) = env {
        return PathBuf::from(dir);
    }
    let checkout = cwd
        .ancestors()
        .find(|dir| dir.join("crate/Cargo.toml").is_file() && dir.join("data").is_dir());
    match (checkout, home) {
        (Some(root), _) => root.join("data"),
        (None, Some(home)) => home.join(".fastvision").join("data"),
        (None, None) => cwd.join("data"),
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

/// How often a plain progress line is printed without a terminal, as fastprogress does in a
/// plain console (`FASTVISION_PROGRESS_EVERY` changes it: [`progress_every`]).
pub const PLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a fit prints a plain progress line when stderr is no terminal (a log file, CI):
/// `$FASTVISION_PROGRESS_EVERY` seconds, else 10 s as fastprogress does.
///
/// ```
/// assert!(fastvision::config::progress_every().as_secs_f64() > 0.0);
/// ```
pub fn progress_every() -> std::time::Duration {
    var("FASTVISION_PROGRESS_EVERY")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PLAIN_EVERY, std::time::Duration::from_secs_f64)
}

/// Whether this code runs inside an evcxr notebook kernel (evcxr marks the process that runs
/// the cells): hints such as "type learn.recorder.plot()" are for notebooks only.
///
/// ```
/// assert!(!fastvision::config::in_notebook());
/// ```
pub fn in_notebook() -> bool {
    std::env::var_os("EVCXR_IS_RUNTIME").is_some()
}

/// Whether the notebook kernel passes a line that starts with a carriage return on to Jupyter
/// unchanged, so progress can be redrawn in place: the project's kernel (scripts/kernel.sh,
/// a patched evcxr_jupyter) says so with `FASTVISION_STREAM_CR`. A plain evcxr kernel adds a
/// newline to every line, so there progress falls back to a line every few seconds.
///
/// ```
/// assert!(!fastvision::config::notebook_redraws_in_place());
/// ```
pub fn notebook_redraws_in_place() -> bool {
    in_notebook() && var("FASTVISION_STREAM_CR").is_some()
}

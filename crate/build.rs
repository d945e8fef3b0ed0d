//! Makes every binary and test of this crate find libtorch on its own, with no `LD_LIBRARY_PATH`.
//!
//! torch-sys passes `-rpath` only to its own C++ shim, so we add it. GNU ld's `--as-needed` drops
//! `libtorch_cuda.so` (no symbol of ours references it), which we leave as is on purpose:
//! `device::load_cuda_backend` loads it at run time when the machine has an NVIDIA driver, so a
//! CPU-only machine does not pay its 260 MB of resident memory, and notebooks (whose cells
//! evcxr links without these arguments) get the GPU the same way.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    // Makefile/.cargo/config.toml set these; FASTVISION_TORCH_DIR is the clone's own torch folder
    // (LIBTORCH may be a stable symlink so cached torch-sys builds survive a fresh clone).
    for var in [
        "FASTVISION_TORCH_DIR",
        "LIBTORCH",
        "LIBTORCH_LIB",
        "FASTVISION_VENV",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=../Cargo.lock");

    let lib_dir = torch_lib_dir();
    if let Some(lib) = &lib_dir
        && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }

    let torch_root = lib_dir.as_deref().and_then(Path::parent);
    let libtorch_version = torch_root
        .and_then(|root| std::fs::read_to_string(root.join("version.py")).ok())
        .and_then(|text| python_string(&text, "__version__"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FASTVISION_LIBTORCH_VERSION={libtorch_version}");
    println!(
        "cargo:rustc-env=FASTVISION_LIBTORCH_LIB={}",
        lib_dir
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=FASTVISION_TCH_VERSION={}",
        locked_version("tch")
    );
    // The project's .venv (the Makefile's), where the offline weights package is installed.
    if let Ok(venv) = env::var("FASTVISION_VENV") {
        println!("cargo:rustc-env=FASTVISION_VENV={venv}");
    }
    if let Some(root) = torch_root {
        compile_shim(root);
    }
}

/// The few libtorch calls tch does not expose (crate/shim/*.cpp), compiled against the same
/// torch headers and ABI as torch-sys compiles its own.
fn compile_shim(torch_root: &Path) {
    const FILES: [&str; 2] = ["shim/autocast.cpp", "shim/foreach.cpp"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .files(FILES)
        .include(torch_root.join("include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("fastvision_shim");
}

/// torch's `lib/` folder, resolved through symlinks so the rpath names the real files.
fn torch_lib_dir() -> Option<PathBuf> {
    let root = env::var_os("FASTVISION_TORCH_DIR")
        .or_else(|| env::var_os("LIBTORCH"))
        .map(PathBuf::from);
    let lib = match root {
        Some(root) => root.join("lib"),
        None => PathBuf::from(env::var_os("LIBTORCH_LIB")?),
    };
    lib.canonicalize().ok()
}

/// `__version__ = '2.11.0+cu130'` → `2.11.0+cu130`.
fn python_string(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.trim_start().strip_prefix('=')?;
        Some(
            rest.trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string(),
        )
    })
}

/// The version of `name` that Cargo.lock pins, so `fastvision info` reports what was really built.
fn locked_version(name: &str) -> String {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let lock = std::fs::read_to_string(manifest.join("../Cargo.lock")).unwrap_or_default();
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "unknown".into()
}

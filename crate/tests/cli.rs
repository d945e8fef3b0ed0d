//! The `fastvision` binary runs from a plain shell: no LD_LIBRARY_PATH, no variables at all.

use std::process::Command;

fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastvision"));
    cmd.env_clear()
        .env("HOME", std::env::var_os("HOME").unwrap_or_default());
    cmd
}

#[test]
fn info_runs_with_an_empty_environment() {
    let out = bare_command().arg("info").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fastvision info failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("libtorch    2.11.0"), "{stdout}");
    assert!(stdout.contains("tch         0.24"), "{stdout}");
    let expected = if tch::Cuda::is_available() {
        "device      cuda:0"
    } else {
        "device      cpu"
    };
    assert!(stdout.contains(expected), "{stdout}");
    assert!(stdout.contains("hub/checkpoints"), "{stdout}");
}

#[test]
fn asking_for_a_missing_gpu_is_a_clear_error() {
    let out = bare_command()
        .arg("info")
        .env(
            "FASTVISION_DEVICE",
            format!("cuda:{}", tch::Cuda::device_count()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FASTVISION_DEVICE=cuda:"), "{stderr}");
    assert!(
        stderr.contains("cpu"),
        "the message should offer the fix: {stderr}"
    );
}

#[test]
fn a_misspelt_device_names_the_valid_ones() {
    let out = bare_command()
        .arg("info")
        .env("FASTVISION_DEVICE", "gpu0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"gpu0\" is not a device name: use cpu, cuda or cuda:N"),
        "{stderr}"
    );
}

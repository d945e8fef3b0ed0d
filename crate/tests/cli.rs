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

fn run(args: &[&str]) -> (bool, String, String) {
    let out = bare_command().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn train_explains_its_options_and_refuses_bad_ones_before_reading_data() {
    let (ok, help, _) = run(&["train", "--help"]);
    assert!(ok);
    for needle in [
        "Training/ and Test/",
        "[possible values: resnet18, resnet34, resnet50, mobilenet_v2]",
        "fit_one_cycle with the pretrained body frozen",
        "--seed",
        "--device",
        "Batch size",
    ] {
        assert!(
            help.contains(needle),
            "train --help lacks {needle:?}:\n{help}"
        );
    }
    // The folder does not exist: these must fail on the option, before any data is read.
    let (ok, _, err) = run(&["train", "/nonexistent/fruits", "--arch", "resnet99"]);
    assert!(!ok);
    assert!(
        err.contains("invalid value 'resnet99'") && err.contains("mobilenet_v2"),
        "{err}"
    );
    let (ok, _, err) = run(&["train", "/nonexistent/fruits", "--epochs", "0"]);
    assert!(!ok);
    assert!(
        err.contains("--epochs") && err.contains("0 is not in 1.."),
        "{err}"
    );
    let (ok, _, err) = run(&["train", "/nonexistent/fruits", "--device", "gpu0"]);
    assert!(!ok);
    assert!(err.contains("use cpu, cuda or cuda:N"), "{err}");
}

#[test]
fn verify_without_recurse_on_class_folders_says_to_add_it() {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("Training/Apple");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join("a.jpg"), common_jpeg()).unwrap();
    let training = tmp.path().join("Training");
    let (ok, _, err) = run(&["verify", training.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("add -r"), "{err}");
    let (ok, _, err) = run(&["verify", training.to_str().unwrap(), "-r"]);
    assert!(ok && !err.contains("add -r"), "{err}");
}

/// A small valid JPEG.
fn common_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 30, 40]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    bytes
}

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

/// Every argument and option of every command explains itself in `--help`.
#[test]
fn every_argument_and_option_has_help_text() {
    let commands = [
        "info",
        "lesson",
        "download",
        "sample",
        "verify",
        "train",
        "predict",
        "show-batch",
    ];
    for cmd in commands {
        let (ok, help, err) = run(&[cmd, "--help"]);
        assert!(ok, "{cmd} --help: {err}");
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let entry = line.trim_start();
            let is_entry =
                line.starts_with("  ") && (entry.starts_with('<') || entry.starts_with('-'));
            if !is_entry {
                continue;
            }
            // "  --size <SIZE>  Image size ..." or a wrapped description on the next line.
            let described = entry.contains("  ")
                || lines.get(i + 1).is_some_and(|next| {
                    next.len() - next.trim_start().len() > line.len() - entry.len()
                });
            assert!(
                described,
                "`fastvision {cmd}`: {entry:?} has no help text:\n{help}"
            );
        }
    }
}

#[test]
fn predict_on_a_missing_file_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&[
        "predict",
        tmp.path().join("model.safetensors").to_str().unwrap(),
        "nothere.jpg",
    ]);
    assert!(!ok);
    let os_error = "No such file or directory";
    assert_eq!(err.matches(os_error).count(), 1, "{err}");
    assert!(!err.contains("Caused by"), "{err}");
}

#[test]
fn verify_names_quarantine_paths_without_dot_dot() {
    let tmp = tempfile::tempdir().unwrap();
    let class = tmp.path().join("Training/Apple");
    std::fs::create_dir_all(&class).unwrap();
    for i in 0..3 {
        std::fs::write(class.join(format!("{i}.jpg")), common_jpeg()).unwrap();
    }
    std::fs::write(class.join("broken.jpg"), b"not a jpeg at all").unwrap();
    let out = bare_command()
        .current_dir(tmp.path())
        .args(["verify", "Training", "-r"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("4 images checked, 1 broken"), "{stdout}");
    assert!(
        stdout.contains(".quarantine/Training/Apple/broken.jpg") && !stdout.contains(".."),
        "{stdout}"
    );
    assert!(
        tmp.path()
            .join(".quarantine/Training/Apple/broken.jpg")
            .is_file()
    );
    // One table: the problem is listed once.
    assert_eq!(
        stdout.matches("broken.jpg").count(),
        2,
        "file and its new path:\n{stdout}"
    );
}

#[test]
fn training_into_a_log_file_prints_plain_progress_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("sample");
    let (ok, _, err) = run(&[
        "sample",
        sample.to_str().unwrap(),
        "--classes",
        "3",
        "--per-class",
        "24",
    ]);
    assert!(ok, "{err}");
    let export = tmp.path().join("m.safetensors");
    let out = bare_command()
        .args([
            "train",
            sample.to_str().unwrap(),
            "--no-pretrained",
            "--size",
            "32",
            "--bs",
            "8",
        ])
        .arg("--export")
        .arg(&export)
        .env("FASTVISION_PROGRESS_EVERY", "0")
        .env("FASTVISION_DEVICE", "cpu")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // stderr is a pipe here, as with `> log 2>&1`: a line per batch at interval 0, no bar,
    // then a line per validation batch.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("epoch 1/1 ") && !l.contains("validation"))
        .collect();
    assert_eq!(lines.len(), 9, "72 images, bs 8:\n{stderr}");
    assert!(
        lines[8].contains(" 9/9 [") && lines[8].contains(", loss "),
        "{}",
        lines[8]
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("epoch 1/1 validation ")),
        "{stderr}"
    );
    // The table once, on stdout: header and one row.
    assert_eq!(stdout.matches("train_loss").count(), 1, "{stdout}");
    assert!(export.is_file());
    // A missing image: named once, with the OS error once, no backtrace, then the count.
    let (ok, _, err) = run(&["predict", export.to_str().unwrap(), "nothere.jpg"]);
    assert!(!ok);
    assert_eq!(err.matches("nothere.jpg").count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.lines().count() == 2,
        "{err}"
    );
    assert!(
        err.lines().nth(1).unwrap().contains("1 of 1 files"),
        "{err}"
    );
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

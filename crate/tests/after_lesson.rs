//! The tools after the lesson (fastai's lesson 2), on real Fruits 360 images: TTA,
//! show_results, cleaning into cleaned.csv, near-duplicates, leakage between Training and Test,
//! and predicting a whole folder.

mod common;

use std::path::{Path, PathBuf};

use fastvision::clean::{DatasetFormatter, ImageCleaner, Leakage, Similars};
use fastvision::data::folder::DatasetType;
use fastvision::data::loader::DataLoader;
use fastvision::learner::tta::{N_VIEWS, Tta};
use fastvision::{
    FromFolder, ImageDataBunch, Learner, cnn_learner, error_rate, get_transforms, imagenet_stats,
    mobilenet_v2,
};
use tch::{Device, Kind, Tensor};

/// Copies `n` images of each of `classes` from the real sample's `split` into `dest/<class>/`,
/// so a test can plant, rename or delete files without touching the shared sample.
fn copy_class_images(sample: &Path, split: &str, classes: &[&str], n: usize, dest: &Path) {
    for c in classes {
        let mut files: Vec<PathBuf> = std::fs::read_dir(sample.join(split).join(c))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir_all(dest.join(c)).unwrap();
        for f in files.into_iter().take(n) {
            std::fs::copy(&f, dest.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
}

/// Three fruits of the sample that look nothing alike.
const FRUITS: [&str; 3] = ["Banana Lady Finger", "Cocos", "Strawberry"];

/// Three fruits of the real sample in a temporary Training/Test layout: `n_train` and
/// `n_test` images of each.
fn three_fruits(sample: &Path, n_train: usize, n_test: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_class_images(
        sample,
        "Training",
        &FRUITS,
        n_train,
        &tmp.path().join("Training"),
    );
    copy_class_images(sample, "Test", &FRUITS, n_test, &tmp.path().join("Test"));
    tmp
}

/// A pretrained mobilenet_v2 learner (head untrained) on `path`'s Training/Test, 64 px.
fn learner_on(path: &Path, valid_pct: Option<f64>) -> Learner {
    let mut opts = FromFolder::new("Training", "Test")
        .size(64)
        .bs(32)
        .tfms(get_transforms());
    opts.valid_pct = valid_pct;
    opts.device = Some(Device::Cpu);
    let data = ImageDataBunch::from_folder(path, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    fastvision::seed_everything(3);
    cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn tta_is_the_plain_prediction_mixed_with_the_mean_of_eight_views() {
    let sample = common::real_sample();
    let tmp = tempfile::tempdir().unwrap();
    let classes = ["Banana Lady Finger", "Cocos", "Strawberry", "Lemon"];
    copy_class_images(
        &sample,
        "Training",
        &classes,
        20,
        &tmp.path().join("Training"),
    );
    copy_class_images(&sample, "Test", &classes, 10, &tmp.path().join("Test"));
    let mut learn = learner_on(tmp.path(), None);
    learn.fit_one_cycle(1, 1e-3).unwrap();

    let (preds, y) = learn.tta().unwrap();
    assert_eq!(preds.size(), [40, 4]);

    // By hand: the plain predictions, then each of fastai's eight views as its own loader.
    let dl = &learn.data.valid_dl;
    let (plain, targets, _) = learn.model.get_preds(dl).unwrap();
    let tfms = get_transforms();
    let mut views = Vec::new();
    for v in 0..N_VIEWS {
        let view_dl = DataLoader {
            tfms: Some(tfms.tta_view(v, 1.35)),
            seed: dl.seed + 1 + v as u64,
            ..dl.clone()
        };
        views.push(learn.model.get_preds(&view_dl).unwrap().0);
    }
    let mean = Tensor::stack(&views, 0).mean_dim(0, false, Kind::Float);
    let expected = &plain * 0.4 + &mean * 0.6;
    assert!(y.equal(&targets));
    assert!(
        max_abs_diff(&preds, &expected) < 1e-6,
        "TTA differs from the hand-made mix by {}",
        max_abs_diff(&preds, &expected)
    );
    // The views are not the plain images: they change the predictions.
    assert!(max_abs_diff(&mean, &plain) > 1e-3);
    // beta = 1 is the plain prediction; beta = 0 the views' mean alone.
    let (only_plain, _) = learn
        .tta_with(Tta {
            beta: 1.0,
            ..Tta::default()
        })
        .unwrap();
    assert!(max_abs_diff(&only_plain, &plain) < 1e-6);
    let (only_views, _) = learn
        .tta_with(Tta {
            beta: 0.0,
            ..Tta::default()
        })
        .unwrap();
    assert!(max_abs_diff(&only_views, &mean) < 1e-6);
    // Its error rate is a real one, between 0 and 1, from the same predictions.
    let e = error_rate.compute(&preds, &y);
    let wrong = preds
        .argmax(-1, false)
        .ne_tensor(&y)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    // The same count over the same items; the two means round in f32, a few 1e-9 apart.
    assert!((e - wrong.double_value(&[])).abs() < 1e-6);

    // The interpretation's TTA is the same code.
    let interp =
        fastvision::ClassificationInterpretation::from_learner_tta(&learn, Tta::default()).unwrap();
    assert!(max_abs_diff(&interp.probs, &preds) < 1e-6);

    // The views' geometry, with nothing random left: view 6 (top-right corner, mirrored) is
    // view 2 (top-right corner) mirrored, and view 0 zooms towards the top-left corner.
    let still = get_transforms()
        .max_rotate(0.0)
        .max_warp(0.0)
        .max_lighting(0.0);
    let batch = |view: Option<usize>| {
        let dl = DataLoader {
            tfms: view.map(|v| still.tta_view(v, 1.35)),
            stats: None,
            ..learn.data.valid_dl.clone()
        };
        dl.batch_of(&[0, 1, 2], true).x
    };
    let (plain_x, v0, v2, v6) = (batch(None), batch(Some(0)), batch(Some(2)), batch(Some(6)));
    assert!(
        max_abs_diff(&v6, &v2.flip([3])) < 1e-5,
        "view 6 is not view 2 mirrored"
    );
    assert!(max_abs_diff(&v0, &plain_x) > 0.05, "view 0 does not zoom");
    // Zooming towards the top-left corner keeps that corner's pixel where it was.
    let corner = |x: &Tensor| x.narrow(2, 0, 1).narrow(3, 0, 1);
    assert!(max_abs_diff(&corner(&v0), &corner(&plain_x)) < 0.02);
}

#[test]
fn show_results_titles_each_image_green_when_right_and_red_when_wrong() {
    let sample = common::real_sample();
    let tmp = three_fruits(&sample, 10, 6);
    // An untrained head: some predictions right, some wrong.
    let learn = learner_on(tmp.path(), None);
    let dl = &learn.data.valid_dl;
    let all: Vec<usize> = (0..dl.dataset.len()).collect();
    let batch = dl.batch_of(&all, false);
    let pred = learn.model.eval_logits(&batch.x).argmax(-1, false);
    let n_right = pred.eq_tensor(&batch.y).sum(Kind::Int64).int64_value(&[]);
    let n_wrong = all.len() as i64 - n_right;
    let fig = learn.show_results(3, (9.0, 10.0)).unwrap();
    let img = fig.to_rgb();
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    let (green, red) = (count([0, 128, 0]), count([255, 0, 0]));
    // Mistakes are looked for: red titles whenever the set has a wrong prediction, green
    // ones whenever it has a right one.
    assert_eq!(
        green > 0,
        n_right > 0,
        "green titles for {n_right} right predictions"
    );
    assert_eq!(
        red > 0,
        n_wrong > 0,
        "red titles for {n_wrong} wrong predictions"
    );
    // The pictures of the validation set (sorted by class) are drawn across its classes.
    let first: Vec<i64> = dl
        .display_order()
        .into_iter()
        .take(9)
        .map(|i| dl.dataset.labels[i])
        .collect();
    assert!(
        first.iter().any(|&l| l != first[0]),
        "one class only: {first:?}"
    );
    // show_batch on the validation set: its images, unaugmented.
    let fig = learn
        .data
        .show_batch_of(DatasetType::Valid, 2, (5.0, 6.0))
        .unwrap();
    assert!(fig.size().0 > 300);
}

#[test]
fn cleaned_csv_round_trips_through_from_csv_with_relabels_and_deletions() {
    let sample = common::real_sample();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fruit");
    copy_class_images(&sample, "Training", &FRUITS, 10, &root);
    let learn = learner_on(&root, Some(0.2));
    let (ds, idxs) = DatasetFormatter::from_toplosses(&learn, DatasetType::Train).unwrap();
    let n = ds.files.len();
    assert_eq!(idxs.len(), n);
    assert!(
        idxs.windows(2).all(|w| ds.losses[w[0]] >= ds.losses[w[1]]),
        "top losses first"
    );
    let mut cleaner = ImageCleaner::new(ds.clone(), idxs.clone(), &learn.data.path).unwrap();
    let (moved, gone) = (idxs[0], idxs[1]);
    let new_label = FRUITS
        .iter()
        .find(|c| **c != ds.labels[moved])
        .unwrap()
        .to_string();
    cleaner.relabel(moved, &new_label).unwrap();
    cleaner.delete(gone).unwrap();
    // Bad decisions are clear errors.
    let err = cleaner.relabel(0, "Durian").unwrap_err().to_string();
    assert!(err.contains("Durian") && err.contains("Cocos"), "{err}");
    assert!(
        cleaner
            .delete(n)
            .unwrap_err()
            .to_string()
            .contains(&n.to_string())
    );
    let html = cleaner.gallery_html(0, 3).unwrap();
    assert_eq!(html.matches("<img").count(), 3);
    assert!(html.contains(&format!("#{moved}")) && html.contains("deleted"));

    let csv = cleaner.save().unwrap();
    assert_eq!(csv, root.join("cleaned.csv"));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("name,label\n"), "{text}");
    assert_eq!(text.lines().count(), n); // header + n - 1 items
    // Nothing left the disk.
    assert!(ds.files[gone].is_file());

    let data = ImageDataBunch::from_csv(
        &root,
        ".",
        "cleaned.csv",
        FromFolder::default().valid_pct(0.2).size(64),
    )
    .unwrap();
    let mut read: Vec<(PathBuf, String)> = Vec::new();
    for dl in [&data.train_dl, &data.valid_dl] {
        for (f, &l) in dl.dataset.items.iter().zip(&dl.dataset.labels) {
            read.push((f.clone(), data.classes[l as usize].clone()));
        }
    }
    read.sort();
    let mut expected: Vec<(PathBuf, String)> = (0..n)
        .filter(|&i| i != gone)
        .map(|i| {
            let label = if i == moved {
                new_label.clone()
            } else {
                ds.labels[i].clone()
            };
            (ds.files[i].clone(), label)
        })
        .collect();
    expected.sort();
    assert_eq!(read, expected);

    // Removing files happens only when asked, and only the deleted ones.
    assert_eq!(cleaner.remove_deleted_files().unwrap(), 1);
    assert!(!ds.files[gone].exists() && ds.files[moved].exists());
}

#[test]
fn leakage_flags_planted_copies_and_not_another_fruit() {
    let sample = common::real_sample();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_class_images(&sample, "Training", &FRUITS, 15, &root.join("Training"));
    // Test: a Training image copied as is, the same image mirrored and cropped a little, and
    // a fruit the Training set does not have at all.
    let test = root.join("Test").join("Cocos");
    std::fs::create_dir_all(&test).unwrap();
    let mut train_cocos: Vec<PathBuf> = std::fs::read_dir(root.join("Training/Cocos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    train_cocos.sort();
    let source = &train_cocos[3];
    std::fs::copy(source, test.join("copy.jpg")).unwrap();
    let img = image::open(source).unwrap().fliph();
    img.crop_imm(4, 3, 92, 94)
        .save(test.join("flipped_cropped.png"))
        .unwrap();
    let other: PathBuf = std::fs::read_dir(sample.join("Test/Orange"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&other, test.join("pomegranate.jpg")).unwrap();

    let learn = learner_on(root, None);
    let leak = Leakage::from_learner(&learn).unwrap();
    let at = |name: &str| {
        leak.valid_files
            .iter()
            .position(|f| f.file_name().unwrap() == name)
            .unwrap()
    };
    let (copy, flipped, pomegranate) = (
        at("copy.jpg"),
        at("flipped_cropped.png"),
        at("pomegranate.jpg"),
    );
    assert_eq!(leak.train_files[leak.nearest[copy]], *source);
    assert!(leak.similarity[copy] > 0.999, "{}", leak.similarity[copy]);
    assert!(
        leak.is_leaked(copy) && leak.is_leaked(flipped),
        "{:?}",
        leak.similarity
    );
    assert!(
        !leak.is_leaked(pomegranate),
        "another fruit flagged at similarity {}",
        leak.similarity[pomegranate]
    );
    assert_eq!(leak.n_leaked(), 2);
    // The error split: the parts together are the whole.
    let (e_leaked, e_unleaked) = leak.error_rates();
    let whole = leak.wrong.iter().filter(|w| **w).count() as f64 / 3.0;
    let parts = e_leaked.unwrap() * 2.0 / 3.0 + e_unleaked.unwrap() / 3.0;
    assert!((whole - parts).abs() < 1e-9);
    let fig = leak.plot_closest(2).unwrap();
    assert!(fig.size().0 > 500);
    assert_eq!(leak.summary_df().height(), 3);

    // Near-duplicates within Test: the copy and its flipped crop are the closest pair.
    let sims = Similars::from_learner(&learn, DatasetType::Valid, 3).unwrap();
    let (i, j, s) = sims.pairs[0];
    let mut pair = [i, j];
    pair.sort();
    let mut want = [copy, flipped];
    want.sort();
    assert_eq!(pair, want, "{:?}", sims.pairs);
    assert!(s > leak.threshold);
    assert!(sims.pairs.windows(2).all(|w| w[0].2 >= w[1].2));
}

#[test]
fn predict_folder_equals_predict_file_by_file_and_survives_a_truncated_jpeg() {
    let sample = common::real_sample();
    let tmp = three_fruits(&sample, 10, 4);
    let learn = learner_on(tmp.path(), None);
    // A folder tree: images at two depths, a truncated JPEG, and a text file to skip.
    let photos = tmp.path().join("photos");
    copy_class_images(&sample, "Test", &FRUITS, 10, &photos.join("nested"));
    let whole = std::fs::read(
        std::fs::read_dir(photos.join("nested/Cocos"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    std::fs::write(photos.join("truncated.jpg"), &whole[..whole.len() / 3]).unwrap();
    std::fs::write(photos.join("notes.txt"), "not an image").unwrap();

    let preds = learn.predict_folder(&photos).unwrap();
    assert_eq!(
        preds.rows.len(),
        31,
        "30 images and the truncated one, not the text file"
    );
    let failed: Vec<&Path> = preds.failed().map(|(f, _)| f).collect();
    assert_eq!(failed, [photos.join("truncated.jpg").as_path()]);
    let err = preds.failed().next().unwrap().1.to_string();
    assert!(err.contains("truncated.jpg"), "{err}");
    for (file, p) in preds.ok() {
        let one = learn.predict(file).unwrap();
        assert_eq!(one.index, p.index, "{}", file.display());
        let d = one
            .probs
            .iter()
            .zip(&p.probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d < 1e-5,
            "{}: batched and single predictions differ by {d}",
            file.display()
        );
    }
    let csv = tmp.path().join("out/preds.csv");
    preds.to_csv(&csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("file,class,probability,error"));
    assert_eq!(text.lines().count(), 32);

    // The CLI: the same folder, a CSV, and a failing exit status only after every file.
    let model = tmp.path().join("model.safetensors");
    learn.export(&model).unwrap();
    let csv2 = tmp.path().join("cli.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastvision"))
        .arg("predict")
        .arg(&model)
        .arg(&photos)
        .arg("--csv")
        .arg(&csv2)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 30, "{stdout}");
    assert!(
        stderr.contains("truncated.jpg") && stderr.contains("1 of 31"),
        "{stderr}"
    );
    let cli_text = std::fs::read_to_string(&csv2).unwrap();
    assert_eq!(cli_text.lines().count(), 32);
}

#[test]
fn the_cli_takes_other_folder_names_and_splits_by_valid_pct_without_a_validation_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = fastvision::generate_sample(&tmp.path().join("s"), 3, 10, 9).unwrap();
    // Other names for the two folders.
    let renamed = tmp.path().join("renamed");
    std::fs::create_dir_all(&renamed).unwrap();
    std::fs::rename(sample.join("Training"), renamed.join("train")).unwrap();
    std::fs::rename(sample.join("Test"), renamed.join("val")).unwrap();
    let show_batch = |args: &[&str], out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fastvision"))
            .arg("show-batch")
            .args(args)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let out = tmp.path().join("a.png");
    let r = show_batch(
        &[
            renamed.to_str().unwrap(),
            "--train",
            "train",
            "--valid",
            "val",
        ],
        &out,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(image::open(&out).unwrap().width() > 300);
    // The default names are not there: a clear error that names the flag.
    let r = show_batch(&[renamed.to_str().unwrap()], &out);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && stderr.contains("\"Training\""),
        "{stderr}"
    );
    // No validation folder: 20% of the training folder is held out, and it says so.
    std::fs::remove_dir_all(renamed.join("val")).unwrap();
    let out2 = tmp.path().join("b.png");
    let r = show_batch(&[renamed.to_str().unwrap(), "--train", "train"], &out2);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("holding out 20%"), "{stderr}");
    // --valid-pct on a folder of class folders, as fastai's from_folder(path, valid_pct=0.2).
    let r = show_batch(
        &[
            renamed.join("train").to_str().unwrap(),
            "--valid-pct",
            "0.3",
        ],
        &out2,
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn the_confusion_matrix_takes_figsize_and_dpi() {
    use fastvision::interpret::{ConfusionPlot, plot_confusion};
    let classes: Vec<String> = (0..12).map(|i| format!("Apple Golden {i}")).collect();
    let cm = Tensor::eye(12, (Kind::Int64, Device::Cpu)) * 7;
    let natural = plot_confusion(&cm, &classes, ConfusionPlot::new()).unwrap();
    let six = plot_confusion(&cm, &classes, ConfusionPlot::new().figsize(6.0, 6.0)).unwrap();
    let (w, h) = six.size();
    assert!(
        w <= 600 && h <= 600 && w.max(h) >= 560,
        "figsize (6, 6) at 100 dpi: {w}x{h}"
    );
    assert_ne!(six.size(), natural.size());
    // The same figure at twice the dpi: twice the pixels, to rounding.
    let sharp = plot_confusion(
        &cm,
        &classes,
        ConfusionPlot::new().figsize(6.0, 6.0).dpi(200.0),
    )
    .unwrap();
    let (w2, h2) = sharp.size();
    assert!(
        (w2 as i64 - 2 * w as i64).abs() <= 4 && (h2 as i64 - 2 * h as i64).abs() <= 4,
        "{w2}x{h2} against {w}x{h}"
    );
    let err = plot_confusion(&cm, &classes, ConfusionPlot::new().dpi(0.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dpi"), "{err}");
}

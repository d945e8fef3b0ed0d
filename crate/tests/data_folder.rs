//! ImageDataBunch, the loader and the transforms, on the real sample and on generated files.

mod common;

use std::path::{Path, PathBuf};

use fastvision::data::transforms::{ItemParams, apply_params};
use fastvision::{FromFolder, ImageDataBunch, get_transforms, imagenet_stats};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

fn opts() -> FromFolder {
    FromFolder::new("Training", "Test")
        .size(100)
        .tfms(get_transforms())
        .device(Device::Cpu)
}

fn small_sample(dir: &Path) -> PathBuf {
    fastvision::generate_sample(&dir.join("sample"), 4, 20, 5).unwrap()
}

#[test]
fn real_sample_loads_with_sorted_classes_and_parent_labels() {
    let sample = common::real_sample();
    let data = ImageDataBunch::from_folder(&sample, opts())
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    assert_eq!(data.c(), 12);
    let mut sorted = data.classes.clone();
    sorted.sort();
    assert_eq!(data.classes, sorted);
    let ds = &data.train_dl.dataset;
    assert_eq!((ds.len(), data.valid_dl.dataset.len()), (360, 120));
    assert!(ds.in_memory());
    for (item, &label) in ds.items.iter().zip(&ds.labels).step_by(7) {
        let parent = item
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        assert_eq!(parent, data.classes[label as usize]);
    }
    assert_eq!(data.train_dl.len(), 360 / 64, "drop_last on train");
    assert_eq!(data.valid_dl.len(), 120usize.div_ceil(64));

    let batch = data.train_dl.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.x.size(), vec![64, 3, 100, 100]);
    assert_eq!(batch.y.size(), vec![64]);
    assert_eq!(batch.x.kind(), Kind::Float);
    // Normalised with ImageNet stats: white backgrounds sit near (1 - mean) / std.
    let max = batch.x.max().double_value(&[]);
    assert!(max > 2.0 && max < 2.7, "max {max}");

    let valid: Vec<i64> = data
        .valid_dl
        .epoch(0)
        .flat_map(|b| Vec::<i64>::try_from(&b.unwrap().y).unwrap())
        .collect();
    assert_eq!(
        valid, data.valid_dl.dataset.labels,
        "validation comes in order, complete"
    );
    assert!(
        data.summary()
            .to_string()
            .contains("12 classes, 360 train / 120 valid images")
    );
    assert_eq!(data.summary().df().height(), 12);
}

#[test]
fn shuffling_is_per_epoch_and_seeded_and_augmentation_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path());
    let make = |seed| {
        ImageDataBunch::from_folder(
            &path,
            FromFolder {
                bs: 16,
                seed,
                ..opts()
            },
        )
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap()
    };
    let (a, b, c) = (make(1), make(1), make(2));
    assert_eq!(a.train_dl.order(0), b.train_dl.order(0));
    assert_ne!(a.train_dl.order(0), a.train_dl.order(1));
    assert_ne!(a.train_dl.order(0), c.train_dl.order(0));
    let xa = a.train_dl.epoch(3).next().unwrap().unwrap().x;
    let xb = b.train_dl.epoch(3).next().unwrap().unwrap().x;
    assert_eq!(xa.size(), vec![16, 3, 100, 100]);
    assert!(
        xa.equal(&xb),
        "same seed and epoch must give the same augmented batch"
    );
    // Validation: no augmentation, so two passes agree exactly and equal the plain pixels.
    let v1 = a.valid_dl.epoch(0).next().unwrap().unwrap().x;
    let v2 = a.valid_dl.epoch(5).next().unwrap().unwrap().x;
    assert!(v1.equal(&v2));
}

#[test]
fn identity_and_flip_params_do_exactly_that() {
    let x = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu));
    let id = ItemParams {
        affine: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        warp: (0.0, 0.0),
        brightness: 0.0,
        contrast: 1.0,
    };
    let y = apply_params(&x, &[id, id]);
    assert!((&y - &x).abs().max().double_value(&[]) < 1e-5);
    let flip = ItemParams {
        affine: [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        ..id
    };
    let y = apply_params(&x, &[flip, id]);
    assert!(
        (y.get(0) - x.get(0).flip([2]))
            .abs()
            .max()
            .double_value(&[])
            < 1e-5
    );
    let bright = ItemParams {
        brightness: 1.0,
        ..id
    };
    let y = apply_params(&x, &[bright, id]);
    assert!(
        y.get(0).mean(Kind::Float).double_value(&[])
            > x.get(0).mean(Kind::Float).double_value(&[]) + 0.05
    );
    assert!((y.get(1) - x.get(1)).abs().max().double_value(&[]) < 1e-5);
}

#[test]
fn default_transforms_change_images_but_keep_them_images() {
    let x = Tensor::rand([32, 3, 24, 24], (Kind::Float, Device::Cpu));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let y = get_transforms().apply(&x, &mut rng);
    assert_eq!(y.size(), x.size());
    assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
    let changed = (0..32)
        .filter(|&i| (y.get(i) - x.get(i)).abs().max().double_value(&[]) > 1e-3)
        .count();
    assert!(changed >= 24, "only {changed} of 32 images augmented");
}

#[test]
fn valid_pct_split_is_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path()).join("Training");
    let o = FromFolder {
        valid_pct: Some(0.25),
        ..opts()
    };
    let a = ImageDataBunch::from_folder(&path, o.clone()).unwrap();
    let b = ImageDataBunch::from_folder(&path, o).unwrap();
    assert_eq!(a.valid_dl.dataset.len(), 20);
    assert_eq!(a.train_dl.dataset.len(), 60);
    assert_eq!(a.valid_dl.dataset.items, b.valid_dl.dataset.items);
}

#[test]
fn layout_mistakes_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path());
    let err = |o: FromFolder, p: &Path| ImageDataBunch::from_folder(p, o).unwrap_err().to_string();

    let e = err(
        FromFolder {
            train: "train".into(),
            ..opts()
        },
        &path,
    );
    assert!(
        e.contains("no folder \"train\"") && e.contains("Test, Training"),
        "{e}"
    );

    let empty_class = path.join("Training/Synthetic Empty");
    std::fs::create_dir(&empty_class).unwrap();
    let e = err(opts(), &path);
    assert!(e.contains("Synthetic Empty has no images"), "{e}");
    std::fs::remove_dir(&empty_class).unwrap();

    // valid_pct over the whole tree: "Training"/"Test" would be split folders, not classes.
    let flat = tmp.path().join("flat");
    std::fs::create_dir_all(flat.join("apple")).unwrap();
    std::fs::create_dir_all(flat.join("test")).unwrap();
    let jpg = std::fs::read_dir(path.join("Training"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let jpg = std::fs::read_dir(jpg)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&jpg, flat.join("apple/a.jpg")).unwrap();
    std::fs::copy(&jpg, flat.join("test/unlabelled.jpg")).unwrap();
    let e = err(
        FromFolder {
            valid_pct: Some(0.2),
            ..opts()
        },
        &flat,
    );
    assert!(e.contains("looks like a split folder"), "{e}");

    let empty_split = tmp.path().join("nosplit");
    std::fs::create_dir_all(empty_split.join("Training/a")).unwrap();
    std::fs::create_dir_all(empty_split.join("Test")).unwrap();
    std::fs::copy(&jpg, empty_split.join("Training/a/x.jpg")).unwrap();
    let e = err(opts(), &empty_split);
    assert!(
        e.contains("validation set") && e.contains("is empty"),
        "{e}"
    );
}

#[test]
fn an_unreadable_image_is_skipped_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path());
    let class = std::fs::read_dir(path.join("Training"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // A real JPEG cut short, as a failed download leaves it: lenient decoders fill the rest
    // with grey and say nothing; the loader must skip it (with a warning naming it).
    let good = std::fs::read_dir(&class)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(good).unwrap();
    std::fs::write(class.join("r_999_100.jpg"), &bytes[..bytes.len() * 6 / 10]).unwrap();
    for budget in [u64::MAX, 0] {
        let data = ImageDataBunch::from_folder(
            &path,
            FromFolder {
                memory_budget: budget,
                bs: 8,
                ..opts()
            },
        )
        .unwrap();
        let n: i64 = data.train_dl.epoch(0).map(|b| b.unwrap().x.size()[0]).sum();
        let line = data.summary().line;
        if budget == 0 {
            assert!(
                line.contains("over the memory budget (0 MB)")
                    && line.contains("FromFolder::memory_budget"),
                "the fallback must be visible: {line}"
            );
        } else {
            assert!(line.contains("decoded into memory"), "{line}");
        }
        if budget == u64::MAX {
            // Decoded up front: the bad file is dropped, 80 good images remain.
            assert_eq!(data.train_dl.dataset.len(), 80);
            assert_eq!(n, 80);
            // ... and every image's pixels still belong to its file after the gap is closed.
            let ds = &data.train_dl.dataset;
            for i in 0..ds.len() {
                let want = fastvision::data::image::load_rgb(&ds.items[i], 100).unwrap();
                assert_eq!(
                    &*ds.pixels(i).unwrap(),
                    want.as_raw().as_slice(),
                    "item {i}"
                );
            }
        } else {
            // Decoded per batch: 81 files, 10 full batches; the bad one leaves its batch short.
            assert_eq!(data.train_dl.dataset.len(), 81);
            let bad_in_epoch = data.train_dl.order(0)[..80]
                .iter()
                .any(|&i| data.train_dl.dataset.items[i].ends_with("r_999_100.jpg"));
            assert_eq!(n, if bad_in_epoch { 79 } else { 80 });
            // Met again, it is skipped again, and reported once, not every epoch.
            let ds = &data.train_dl.dataset;
            let bad = ds
                .items
                .iter()
                .position(|p| p.ends_with("r_999_100.jpg"))
                .unwrap();
            assert!(ds.pixels(bad).is_none() && ds.pixels(bad).is_none());
            assert_eq!(ds.unreadable(), [ds.items[bad].clone()]);
        }
    }
}

#[test]
fn labels_from_a_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path());
    let mut csv = String::from("name,label\n");
    for class in std::fs::read_dir(path.join("Training")).unwrap() {
        let class = class.unwrap().path();
        for f in std::fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            let rel = f.strip_prefix(&path).unwrap().display().to_string();
            csv += &format!("{rel},{}\n", class.file_name().unwrap().to_string_lossy());
        }
    }
    std::fs::write(path.join("labels.csv"), csv).unwrap();
    let data =
        ImageDataBunch::from_csv(&path, ".", "labels.csv", FromFolder { size: 64, ..opts() })
            .unwrap();
    assert_eq!(data.c(), 4);
    assert_eq!(
        data.train_dl.dataset.len() + data.valid_dl.dataset.len(),
        80
    );
    assert_eq!(data.valid_dl.dataset.len(), 16);
    std::fs::write(path.join("bad.csv"), "name,label\nnope.jpg,x\n").unwrap();
    let e = ImageDataBunch::from_csv(&path, ".", "bad.csv", opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 1") && e.contains("nope.jpg does not exist"),
        "{e}"
    );
}

#[test]
fn show_batch_draws_the_images_with_correct_colours() {
    let path = common::real_sample();
    let data = ImageDataBunch::from_folder(&path, opts())
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    let fig = data.show_batch(3, (7.0, 8.0)).unwrap();
    let (w, h) = fig.size();
    assert!(w <= 700 && h <= 800 && (w >= 690 || h >= 790), "{w}x{h}");
    let out = common::repo_root().join("out/test-figures/show_batch.png");
    fig.save(&out).unwrap();
    let img = fig.to_rgb();
    // Denormalised correctly, the white fruit backgrounds come back white, not grey or tinted.
    let whites = img
        .pixels()
        .filter(|p| p.0.iter().all(|&v| v > 240))
        .count();
    let colourful = img
        .pixels()
        .filter(|p| {
            let (mx, mn) = (
                *p.0.iter().max().unwrap() as i32,
                *p.0.iter().min().unwrap() as i32,
            );
            mx - mn > 60
        })
        .count();
    let total = (img.width() * img.height()) as usize;
    assert!(whites > total / 3, "{whites} white pixels of {total}");
    assert!(
        colourful > total / 50,
        "{colourful} coloured pixels of {total}"
    );
}

#[test]
fn the_loaders_fast_path_matches_fastais_order() {
    use fastvision::data::loader::{DataLoader, ImageDataset, Warp, prepare_batch};
    let sample = common::real_sample();
    let data = ImageDataBunch::from_folder(&sample, opts()).unwrap();
    let ds: &ImageDataset = &data.train_dl.dataset;
    let idx: Vec<usize> = (0..16).map(|i| i * 22).collect();
    let tfms = get_transforms();

    // Fast path: lighting on u8 through a table, normalise, then resample.
    let dl = DataLoader {
        stats: Some(imagenet_stats),
        ..data.train_dl.clone()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let fast = dl
        .finish(prepare_batch(
            ds,
            &idx,
            Some(&tfms),
            &mut rng,
            Device::Cpu,
            false,
        ))
        .x;

    // The form a GPU loader sends (homographies, grid built by the device), finished here on
    // the CPU: the same batch.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let prepared = prepare_batch(ds, &idx, Some(&tfms), &mut rng, Device::Cuda(0), false);
    assert!(matches!(prepared.warp, Some(Warp::Homographies(_))));
    let from_homographies = dl.finish(prepared).x;
    let diff = (&from_homographies - &fast).abs();
    let worst = diff.max().double_value(&[]);
    assert!(
        worst < 1e-3,
        "homography grid differs from the host grid by {worst}"
    );

    // Reference, fastai's order: resample float pixels, lighting in logit space, normalise.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let params: Vec<_> = (0..16).map(|_| tfms.draw(&mut rng)).collect();
    let (px, _) = ds.gather(&idx);
    let x = Tensor::from_slice(&px)
        .view([16, 100, 100, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    let reference = imagenet_stats.norm(&apply_params(&x, &params));

    let diff = (&fast - &reference).abs();
    let mean = diff.mean(Kind::Float).double_value(&[]);
    assert!(mean < 0.02, "mean difference {mean} (normalised units)");
    // And the augmentation did something: far from the un-augmented batch.
    let plain = imagenet_stats.norm(&x);
    let moved = (&fast - &plain).abs().mean(Kind::Float).double_value(&[]);
    assert!(
        moved > 10.0 * mean,
        "augmented batch differs by only {moved}"
    );
}

#[test]
fn one_batch_is_the_loaders_first_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sample(tmp.path());
    let data = ImageDataBunch::from_folder(&path, FromFolder { bs: 8, ..opts() })
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    let first = data.train_dl.epoch(0).next().unwrap().unwrap();
    let one = data.train_dl.one_batch(true);
    assert_eq!(one.x.size(), [8, 3, 100, 100]);
    assert!(
        one.x.allclose(&first.x, 1e-6, 1e-6, false),
        "augmented like epoch 0"
    );
    assert!(one.y.equal(&first.y));
    let plain = data.train_dl.one_batch(false);
    assert!(plain.y.equal(&first.y), "same images");
    let diff = (&plain.x - &one.x)
        .abs()
        .mean(tch::Kind::Float)
        .double_value(&[]);
    assert!(
        diff > 0.01,
        "without augmentation the pixels differ (mean {diff})"
    );
    let valid = data.valid_dl.one_batch(false);
    let v0 = data.valid_dl.epoch(0).next().unwrap().unwrap();
    assert!(valid.x.allclose(&v0.x, 1e-6, 1e-6, false) && valid.y.equal(&v0.y));
}

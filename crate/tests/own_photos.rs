//! Your own photos: labels from file names (`from_name_re`, `from_name_func`, `from_lists`,
//! `get_image_files`), photos of any shape made square by fastai's resize methods, random
//! crops along a wide photo in training and the centre in validation, and a memory budget
//! whose fallback gives the same batches as the cache.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fastvision::data::from_names::get_image_files;
use fastvision::data::image::{ResizeMethod, crop_at, fit_rgb};
use fastvision::data::loader::{DataLoader, ImageDataset, Storage};
use fastvision::{FromFolder, ImageDataBunch, get_transforms};
use image::{Rgb, RgbImage};

/// Real photos copied into one flat folder named as the pets lesson names its photos
/// (`Class_Name_12.jpg`), 12 of each of 3 classes, plus `notes.jpg`, a photo whose name has
/// no label. Returns the folder and each file's true class.
fn pets_style(dir: &Path) -> (PathBuf, BTreeMap<PathBuf, String>) {
    let sample = common::real_sample();
    let out = dir.join("images");
    std::fs::create_dir_all(&out).unwrap();
    let mut truth = BTreeMap::new();
    for class in ["Apple Red Yellow 1", "Banana Lady Finger", "Orange"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(sample.join("Training").join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for (n, f) in files.iter().take(12).enumerate() {
            let name = format!("{}_{n}.jpg", class.replace(' ', "_"));
            std::fs::copy(f, out.join(&name)).unwrap();
            truth.insert(out.join(name), class.replace(' ', "_"));
        }
    }
    let first = std::fs::read_dir(sample.join("Training/Orange"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(first, out.join("notes.jpg")).unwrap();
    (out, truth)
}

fn opts(seed: u64) -> FromFolder {
    FromFolder {
        size: 64,
        bs: 8,
        seed,
        device: Some(tch::Device::Cpu),
        ..Default::default()
    }
}

fn split_of(data: &ImageDataBunch) -> Vec<PathBuf> {
    let mut v = data.valid_dl.dataset.items.clone();
    v.sort();
    v
}

#[test]
fn from_name_re_labels_real_photos_and_names_the_files_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, truth) = pets_style(tmp.path());
    let fnames = get_image_files(&dir, false).unwrap();
    assert_eq!(fnames.len(), 37);
    let pat = r"/([^/]+)_\d+\.jpg$";

    // notes.jpg has no label in its name: an error that names it, nothing dropped quietly.
    let err = ImageDataBunch::from_name_re(&dir, &fnames, pat, opts(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 of 37 files do not match") && err.contains("notes.jpg"),
        "{err}"
    );
    let err = ImageDataBunch::from_name_re(&dir, &fnames, r"/[^/]+_\d+\.jpg$", opts(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no group"), "{err}");

    let fnames: Vec<PathBuf> = fnames
        .into_iter()
        .filter(|f| truth.contains_key(f))
        .collect();
    let data = ImageDataBunch::from_name_re(&dir, &fnames, pat, opts(1)).unwrap();
    assert_eq!(
        data.classes,
        ["Apple_Red_Yellow_1", "Banana_Lady_Finger", "Orange"]
    );
    // Every image carries its own class, in both splits; 20% (7 of 36) held out.
    assert_eq!(data.valid_dl.dataset.len(), 7);
    assert_eq!(data.train_dl.dataset.len(), 29);
    for ds in [&data.train_dl.dataset, &data.valid_dl.dataset] {
        for (f, &l) in ds.items.iter().zip(&ds.labels) {
            assert_eq!(data.classes[l as usize], truth[f], "{}", f.display());
        }
    }
    // The split is the seed's: the same again with the same seed, another with another.
    let again = ImageDataBunch::from_name_re(&dir, &fnames, pat, opts(1)).unwrap();
    assert_eq!(split_of(&data), split_of(&again));
    let other = ImageDataBunch::from_name_re(&dir, &fnames, pat, opts(2)).unwrap();
    assert_ne!(split_of(&data), split_of(&other));

    // from_name_func and from_lists give the same data set.
    let by_func = ImageDataBunch::from_name_func(
        &dir,
        &fnames,
        |f| {
            let stem = f.file_stem().unwrap().to_str().unwrap();
            stem[..stem.rfind('_').unwrap()].to_string()
        },
        opts(1),
    )
    .unwrap();
    let labels: Vec<&str> = fnames.iter().map(|f| truth[f].as_str()).collect();
    let by_lists = ImageDataBunch::from_lists(&dir, &fnames, &labels, opts(1)).unwrap();
    for d in [&by_func, &by_lists] {
        assert_eq!(d.classes, data.classes);
        assert_eq!(split_of(d), split_of(&data));
    }
    let err = ImageDataBunch::from_lists(&dir, &fnames, &labels[1..], opts(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("36 files and 35 labels"), "{err}");
}

/// A `w` x `h` photo whose red channel tells the column (0 at the left, 255 at the right) and
/// whose green channel tells the row.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, 128])
    })
}

/// A data set of the one photo `file`, decoded into memory, cropped at random when `train`.
fn one_photo(file: &Path, size: u32, train: bool) -> ImageDataset {
    ImageDataset::with_resize(
        vec![file.to_path_buf()],
        vec![0],
        size,
        Storage::InMemory,
        ResizeMethod::Crop,
        train,
        u64::MAX,
    )
}

#[test]
fn a_wide_photo_is_cropped_at_random_in_training_and_at_the_centre_in_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("wide.png");
    gradient(400, 200).save(&file).unwrap();
    let size = 50;
    let train = one_photo(&file, size, true);
    // Kept at 100 x 50: the shorter side at the size, the whole width.
    assert_eq!(train.in_memory_bytes(), 100 * 50 * 3);
    let red = |px: &[u8], x: usize| px[x * 3];
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let (mut lefts, mut rights) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let (px, _) = train.gather_with(&[0], Some(&mut rng));
        assert_eq!(px.len(), 50 * 50 * 3);
        lefts.push(red(&px, 0));
        rights.push(red(&px, 49));
    }
    // Over many draws the crops reach both ends of the photo and places between.
    let (lo, hi) = (*lefts.iter().min().unwrap(), *rights.iter().max().unwrap());
    assert!(lo <= 3 && hi >= 252, "crops span red {lo}..{hi}");
    let distinct: std::collections::BTreeSet<u8> = lefts.iter().copied().collect();
    assert!(
        distinct.len() > 20,
        "{} distinct crop positions",
        distinct.len()
    );

    // Validation, and the training set without an rng: the centre, every time.
    let valid = one_photo(&file, size, false);
    let centre = valid.gather(&[0]).0;
    for _ in 0..5 {
        assert_eq!(valid.gather(&[0]).0, centre);
        assert_eq!(train.gather(&[0]).0, centre);
    }
    let mid = red(&centre, 25) as i32;
    assert!(
        (mid - 128).abs() <= 4,
        "the centre crop's middle is red {mid}"
    );
    // ... which is what prediction sees.
    let fit = fit_rgb(image::open(&file).unwrap(), size, ResizeMethod::Crop);
    assert_eq!(fit.into_raw(), centre);

    // Through the loader: the crop is part of the training augmentation. With transforms that
    // change nothing else, epochs crop in different places; without transforms, the centre.
    let still = get_transforms()
        .do_flip(false)
        .max_rotate(0.0)
        .max_zoom(1.0)
        .max_lighting(0.0)
        .max_warp(0.0);
    let train = Arc::new(train);
    let epochs = |tfms| {
        let dl = DataLoader {
            dataset: Arc::clone(&train),
            bs: 1,
            shuffle: true,
            drop_last: false,
            tfms,
            stats: None,
            device: tch::Device::Cpu,
            seed: 3,
            prefetch: 0,
            before_batch: None,
        };
        (0..6)
            .map(|e| {
                let b = dl.epoch(e).next().unwrap().unwrap();
                // The left column's red: where the crop starts.
                (b.x.double_value(&[0, 0, 25, 0]) * 255.0).round() as i64
            })
            .collect::<Vec<_>>()
    };
    let augmented = epochs(Some(still));
    assert!(
        augmented.windows(2).any(|w| w[0] != w[1]),
        "every epoch cropped alike: {augmented:?}"
    );
    let plain = epochs(None);
    assert!(plain.iter().all(|&r| r == plain[0]), "{plain:?}");

    // An odd margin (a 99 x 50 image kept for a 50 px crop): the centre is the prediction's.
    let odd = tmp.path().join("odd.png");
    gradient(198, 100).save(&odd).unwrap();
    let ds = one_photo(&odd, size, true);
    assert_eq!(ds.in_memory_bytes(), 99 * 50 * 3);
    let fit = fit_rgb(image::open(&odd).unwrap(), size, ResizeMethod::Crop);
    assert_eq!(ds.gather(&[0]).0, fit.into_raw());
}

#[test]
fn squish_and_pad_give_the_pixels_computed_by_hand() {
    // 200 x 100: the top half red, the bottom half blue.
    let img = RgbImage::from_fn(200, 100, |_, y| {
        if y < 50 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let img = image::DynamicImage::ImageRgb8(img);
    let red = [255, 0, 0];
    let blue = [0, 0, 255];

    // Squish: 50 x 50, rows 0..24 red and 25..49 blue (away from the blended edge).
    let s = fit_rgb(img.clone(), 50, ResizeMethod::Squish);
    for (x, y, want) in [(0, 0, red), (49, 22, red), (10, 27, blue), (49, 49, blue)] {
        assert_eq!(s.get_pixel(x, y).0, want, "squish at ({x}, {y})");
    }

    // Pad: the photo becomes 50 x 25 at rows 12..36 (12 rows above, 13 below), and the rows
    // outside reflect it without repeating its edge: canvas row 12 - k shows photo row k, and
    // canvas row 36 + k shows photo row 24 - k.
    let p = fit_rgb(img.clone(), 50, ResizeMethod::Pad);
    assert_eq!(p.dimensions(), (50, 50));
    let photo_row = |canvas: i32| -> i32 {
        let r = canvas - 12;
        if r < 0 {
            -r
        } else if r > 24 {
            48 - r
        } else {
            r
        }
    };
    for y in 0..50 {
        // Photo rows 0..11 are red and 13..24 blue; row 12 straddles the edge.
        let r = photo_row(y);
        if r == 12 {
            continue;
        }
        let want = if r < 12 { red } else { blue };
        for x in [0, 25, 49] {
            assert_eq!(
                p.get_pixel(x, y as u32).0,
                want,
                "pad at ({x}, {y}): photo row {r}"
            );
        }
    }
    // Crop: the shorter side to 50 (100 x 50), the centre 50 columns: red over blue.
    let c = fit_rgb(img, 50, ResizeMethod::Crop);
    assert_eq!(c.get_pixel(0, 10).0, red);
    assert_eq!(c.get_pixel(49, 40).0, blue);
    // crop_at agrees with the centre crop.
    let wide = gradient(100, 50);
    let centre = crop_at(wide.as_raw(), 100, 50, 50, None);
    assert_eq!(centre[0], wide.get_pixel(25, 0).0[0]);
}

#[test]
fn the_budget_fallback_gives_the_batches_of_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    // Real photos, each also put side by side with the next into a wide photo, so random
    // crops have room to move.
    let base = common::real_sample().join("Training/Orange");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.truncate(10);
    let mut items = files.clone();
    for (i, pair) in files.windows(2).enumerate() {
        let (a, b) = (
            image::open(&pair[0]).unwrap().to_rgb8(),
            image::open(&pair[1]).unwrap().to_rgb8(),
        );
        let mut wide = RgbImage::new(a.width() + b.width(), a.height().min(b.height()));
        image::imageops::replace(&mut wide, &a, 0, 0);
        image::imageops::replace(&mut wide, &b, a.width() as i64, 0);
        let f = tmp.path().join(format!("wide{i}.png"));
        wide.save(&f).unwrap();
        items.push(f);
    }
    let labels: Vec<i64> = (0..items.len() as i64).map(|i| i % 2).collect();
    let loader = |budget: u64| {
        let ds = ImageDataset::with_resize(
            items.clone(),
            labels.clone(),
            64,
            Storage::InMemory,
            ResizeMethod::Crop,
            true,
            budget,
        );
        DataLoader {
            dataset: Arc::new(ds),
            bs: 4,
            shuffle: true,
            drop_last: true,
            tfms: Some(get_transforms()),
            stats: Some(fastvision::imagenet_stats),
            device: tch::Device::Cpu,
            seed: 11,
            prefetch: 0,
            before_batch: None,
        }
    };
    let cached = loader(u64::MAX);
    let fallback = loader(100_000);
    assert!(cached.dataset.in_memory());
    assert!(
        !fallback.dataset.in_memory(),
        "a 100 kB budget kept the images"
    );
    for epoch in 0..3 {
        let a: Vec<_> = cached.epoch(epoch).map(|b| b.unwrap()).collect();
        let b: Vec<_> = fallback.epoch(epoch).map(|b| b.unwrap()).collect();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x.x.equal(&y.x) && x.y.equal(&y.y),
                "epoch {epoch}: batches differ"
            );
        }
    }
}

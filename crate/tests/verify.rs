//! verify_images on real files of every awkward kind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::peak_rss_kb;
use fastvision::{VerifyOptions, verify_images};
use image::{ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

fn save_png_with_dims(path: &Path, w: u32, h: u32) {
    // A real 1x1 PNG whose header then claims w x h: a decompression bomb's calling card.
    let mut bytes = Vec::new();
    RgbImage::new(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn cmyk_jpeg(path: &Path) {
    let (w, h) = (40u16, 30u16);
    let data: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| [(i % 255) as u8, 40, 200, 10])
        .collect();
    let enc = jpeg_encoder::Encoder::new_file(path, 90).unwrap();
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
}

/// Builds the folder of awkward files; returns it and the names of the good files.
fn awkward_folder(root: &Path) -> PathBuf {
    let dir = root.join("Äpfel rot ü");
    std::fs::create_dir_all(&dir).unwrap();
    let jpeg = common::sample_jpeg(3);
    std::fs::write(dir.join("good.jpg"), &jpeg).unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    std::fs::write(dir.join("truncated.jpg"), &jpeg[..jpeg.len() * 6 / 10]).unwrap();
    std::fs::write(
        dir.join("notes.jpg"),
        b"this is a text file, not a picture\n",
    )
    .unwrap();
    std::fs::write(dir.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    RgbaImage::from_fn(20, 20, |x, _| {
        Rgba([200, 10, 10, if x < 10 { 0 } else { 255 }])
    })
    .save(dir.join("alpha.png"))
    .unwrap();
    image::GrayImage::from_fn(20, 20, |x, y| image::Luma([(x * y) as u8]))
        .save(dir.join("gray.png"))
        .unwrap();
    ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(20, 20, |x, _| Rgb([x as u16 * 3000, 0, 65535]))
        .save(dir.join("deep.png"))
        .unwrap();
    cmyk_jpeg(&dir.join("cmyk.jpg"));
    RgbImage::from_fn(3000, 2000, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
    .save(dir.join("huge.png"))
    .unwrap();
    save_png_with_dims(&dir.join("bomb.png"), 100_000, 100_000);
    dir
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn every_awkward_case_is_found_fixed_or_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = awkward_folder(tmp.path());
    let before_rss = peak_rss_kb();
    let opts = VerifyOptions {
        max_size: Some(500),
        ..Default::default()
    };
    let report = verify_images(&dir, &opts).unwrap();
    let rss_growth_mb = (peak_rss_kb().saturating_sub(before_rss)) / 1024;

    let problem = |name: &str| -> (String, String) {
        let i = report
            .issues
            .iter()
            .find(|i| i.file == Path::new(name))
            .unwrap_or_else(|| panic!("{name} not reported: {report}"));
        (i.problem.clone(), i.action.clone())
    };
    assert_eq!(report.checked, 10, "{report}");
    assert_eq!(report.ignored, 1, ".DS_Store is not an image: {report}");
    assert_eq!(report.broken, 4, "{report}");
    assert_eq!(report.fixed, 5, "{report}");
    assert!(
        !report
            .issues
            .iter()
            .any(|i| i.file == Path::new("good.jpg"))
    );

    assert!(problem("empty.jpg").0.contains("empty file"));
    assert!(
        problem("truncated.jpg").0.contains("truncated"),
        "{:?}",
        problem("truncated.jpg")
    );
    assert!(problem("bomb.png").0.contains("decompression bomb"));
    for broken in ["empty.jpg", "truncated.jpg", "notes.jpg", "bomb.png"] {
        assert!(
            problem(broken).1.starts_with("quarantined to"),
            "{broken}: {:?}",
            problem(broken)
        );
        assert!(!dir.join(broken).exists());
        let q = tmp
            .path()
            .join(".quarantine")
            .join("Äpfel rot ü")
            .join(broken);
        assert!(q.is_file(), "{} should be in quarantine", q.display());
    }
    assert!(
        rss_growth_mb < 400,
        "verification took {rss_growth_mb} MB more memory"
    );

    assert!(problem("alpha.png").0.contains("RGBA (4 channels)"));
    assert!(problem("gray.png").0.contains("grayscale (1 channel)"));
    assert!(problem("deep.png").0.contains("16-bit"));
    assert!(problem("cmyk.jpg").0.contains("CMYK"));
    assert!(problem("huge.png").0.contains("3000x2000"));
    assert_eq!(problem("huge.png").1, "resized in place");

    let huge = image::open(dir.join("huge.png")).unwrap();
    assert_eq!((huge.width(), huge.height()), (500, 333));
    let alpha = image::open(dir.join("alpha.png")).unwrap();
    assert_eq!(alpha.color(), image::ColorType::Rgb8);
    assert_eq!(
        alpha.to_rgb8().get_pixel(2, 2).0,
        [255, 255, 255],
        "transparent pixels become white"
    );
    assert_eq!(alpha.to_rgb8().get_pixel(15, 2).0, [200, 10, 10]);
    for f in ["gray.png", "deep.png", "cmyk.jpg"] {
        assert_eq!(
            image::open(dir.join(f)).unwrap().color(),
            image::ColorType::Rgb8,
            "{f}"
        );
    }
    assert!(
        dir.join(".DS_Store").is_file(),
        "non-images are never touched"
    );

    // Everything is fine now.
    let again = verify_images(&dir, &opts).unwrap();
    assert!(again.issues.is_empty(), "{again}");
    assert_eq!(again.df().height(), 0);
    assert_eq!(report.df().height(), 9);
    assert_eq!(
        report.df().get_column_names(),
        ["file", "problem", "action"]
    );
}

#[test]
fn a_dry_run_touches_nothing_and_delete_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = awkward_folder(tmp.path());
    let before = snapshot(tmp.path());
    let report = verify_images(
        &dir,
        &VerifyOptions {
            max_size: Some(500),
            dry_run: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((report.broken, report.fixed), (4, 5));
    assert!(
        report.issues.iter().all(|i| i.action.starts_with("would")),
        "{report}"
    );
    assert!(report.summary().contains("dry run"));
    assert_eq!(before, snapshot(tmp.path()), "a dry run changed files");

    let report = verify_images(
        &dir,
        &VerifyOptions {
            delete: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.broken, 4);
    assert!(!dir.join("notes.jpg").exists() && !tmp.path().join(".quarantine").exists());
}

#[test]
fn fixes_go_to_dest_keeping_subfolders_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = awkward_folder(tmp.path());
    let root = tmp.path();
    let out = tmp.path().join("fixed");
    let quarantine = Some(tmp.path().join("q"));
    let opts = VerifyOptions {
        recurse: true,
        max_size: Some(500),
        dest: Some(out.clone()),
        quarantine,
        max_workers: 1,
        ..Default::default()
    };
    let gray_before = std::fs::read(dir.join("gray.png")).unwrap();
    let report = verify_images(root, &opts).unwrap();
    assert_eq!(report.fixed, 5, "{report}");
    assert!(out.join("Äpfel rot ü/gray.png").is_file());
    assert_eq!(
        std::fs::read(dir.join("gray.png")).unwrap(),
        gray_before,
        "the original stays"
    );
    assert!(tmp.path().join("q/Äpfel rot ü/notes.jpg").is_file());
}

#[test]
fn when_every_image_fails_nothing_is_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("all-bad");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..12 {
        std::fs::write(dir.join(format!("{i}.jpg")), b"not a jpeg").unwrap();
    }
    let report = verify_images(&dir, VerifyOptions::new()).unwrap();
    assert_eq!(report.broken, 12);
    assert!(
        report.issues.iter().all(|i| i.action.starts_with("kept")),
        "{report}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 12);
}

#[test]
fn the_real_sample_is_clean() {
    let sample = common::real_sample();
    let report = verify_images(
        &sample,
        &VerifyOptions {
            recurse: true,
            dry_run: true,
            max_size: Some(500),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.checked, 480, "{}", report.summary());
    assert!(
        report.issues.is_empty(),
        "real Fruits 360 images reported: {report}"
    );
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let err = verify_images(Path::new("/no/such/folder"), VerifyOptions::new()).unwrap_err();
    assert!(
        err.to_string().contains("/no/such/folder is not a folder"),
        "{err}"
    );
}

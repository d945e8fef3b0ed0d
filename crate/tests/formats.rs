//! Every format PIL reads (GIF's first frame, BMP, WebP, TIFF) loads like a JPEG in
//! `verify_images`, the loader and `predict`; a JPEG cut short is named wherever it is read;
//! and links that loop back into the dataset are reported instead of multiplying it.

mod common;

use std::path::{Path, PathBuf};

use fastvision::data::image::Decode;
use fastvision::learner::CnnOptions;
use fastvision::{
    FromFolder, ImageDataBunch, VerifyOptions, cnn_learner_with, error_rate, mobilenet_v2,
    verify_images,
};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{DynamicImage, Frame, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// A 100x100 "fruit": a coloured disc on white.
fn fruit(colour: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(100, 100, |x, y| {
        let (dx, dy) = (x as f64 - 50.0, y as f64 - 50.0);
        if dx * dx + dy * dy < 35.0 * 35.0 {
            Rgb(colour)
        } else {
            Rgb([255, 255, 255])
        }
    })
}

/// Writes `img` in `format` (an animated two-frame GIF for GIF, the first frame red).
fn write_as(img: &RgbImage, path: &Path, format: ImageFormat) {
    if format == ImageFormat::Gif {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = GifEncoder::new(file);
        enc.set_repeat(Repeat::Infinite).unwrap();
        let first = DynamicImage::ImageRgb8(img.clone()).to_rgba8();
        let second = RgbaImage::from_pixel(100, 100, Rgba([0, 0, 255, 255]));
        enc.encode_frames([Frame::new(first), Frame::new(second)])
            .unwrap();
        return;
    }
    let img = DynamicImage::ImageRgb8(img.clone());
    if format == ImageFormat::WebP {
        let mut bytes = Vec::new();
        img.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut bytes))
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    } else {
        img.save_with_format(path, format).unwrap();
    }
}

const FORMATS: [(&str, ImageFormat); 5] = [
    ("gif", ImageFormat::Gif),
    ("bmp", ImageFormat::Bmp),
    ("webp", ImageFormat::WebP),
    ("tif", ImageFormat::Tiff),
    ("jpg", ImageFormat::Jpeg),
];

/// Training/{Red,Green}/ and Test/{Red,Green}/ with 6 images of each format per class folder.
fn mixed_dataset(root: &Path) -> PathBuf {
    for (split, n) in [("Training", 6), ("Test", 2)] {
        for (class, colour) in [("Red", [200, 30, 30]), ("Green", [30, 170, 40])] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for (ext, format) in FORMATS {
                for i in 0..n {
                    write_as(&fruit(colour), &dir.join(format!("{i}.{ext}")), format);
                }
            }
        }
    }
    root.to_path_buf()
}

/// A learner with random weights: these tests need its predictions to run, not to be right.
fn untrained(data: &ImageDataBunch) -> fastvision::Learner {
    let opts = CnnOptions {
        pretrained: false,
        ..Default::default()
    };
    cnn_learner_with(data, mobilenet_v2, &[error_rate], opts).unwrap()
}

fn opts() -> FromFolder {
    FromFolder::new("Training", "Test")
        .size(64)
        .bs(8)
        .device(tch::Device::Cpu)
}

#[test]
fn gif_bmp_webp_and_tiff_load_like_jpeg_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let path = mixed_dataset(tmp.path());
    let report = verify_images(&path.join("Training"), VerifyOptions::new().recurse()).unwrap();
    assert_eq!(
        (report.checked, report.broken, report.fixed),
        (60, 0, 0),
        "{report}"
    );
    assert!(!tmp.path().join(".quarantine").exists());

    let data = ImageDataBunch::from_folder(&path, opts()).unwrap();
    assert_eq!(data.train_dl.dataset.len(), 60, "every format decoded");
    assert_eq!(data.valid_dl.dataset.len(), 20);
    // The GIF's first frame (red), not its second (blue).
    let red = &path.join("Training/Red/0.gif");
    let i = data
        .train_dl
        .dataset
        .items
        .iter()
        .position(|p| p == red)
        .unwrap();
    let px = data.train_dl.dataset.pixels(i).unwrap();
    let centre = (32 * 64 + 32) * 3;
    assert!(
        px[centre] > 150 && px[centre + 2] < 80,
        "{:?}",
        &px[centre..centre + 3]
    );

    let learn = untrained(&data);
    for (ext, _) in FORMATS {
        let p = learn
            .predict(&path.join(format!("Test/Green/1.{ext}")))
            .unwrap();
        assert_eq!(p.probs.len(), 2, "{ext}");
    }
}

#[test]
fn a_truncated_jpeg_is_named_by_predict_unless_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 3);
    let learn = untrained(&data);
    let bytes = common::sample_jpeg(9);
    let cut = tmp.path().join("cut short.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let err = learn.predict(&cut).unwrap_err().to_string();
    assert!(
        err.contains("cut short.jpg") && err.contains("truncated or corrupt JPEG"),
        "{err}"
    );
    let p = learn.model.predict_with(&cut, Decode::Lenient).unwrap();
    assert_eq!(p.probs.len(), 4);
    // And verify quarantines the same file.
    let dir = tmp.path().join("check");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&cut, dir.join("cut.jpg")).unwrap();
    std::fs::write(dir.join("fine.jpg"), &bytes).unwrap();
    let report = verify_images(&dir, VerifyOptions::new()).unwrap();
    assert_eq!(report.broken, 1, "{report}");
    assert!(tmp.path().join(".quarantine/check/cut.jpg").is_file());
}

#[cfg(unix)]
#[test]
fn link_loops_are_reported_not_followed_forever() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let path = mixed_dataset(tmp.path());
    // fastai would list the dataset again under each loop and make `self` a class.
    symlink("..", path.join("Training/Red/loop")).unwrap();
    symlink(".", path.join("Training/self")).unwrap();
    // A link to a real folder elsewhere is followed: links are how datasets get assembled.
    let extra = tmp.path().join("elsewhere/Blue");
    std::fs::create_dir_all(&extra).unwrap();
    for i in 0..3 {
        write_as(
            &fruit([30, 30, 200]),
            &extra.join(format!("{i}.jpg")),
            ImageFormat::Jpeg,
        );
    }
    symlink(&extra, path.join("Training/Blue")).unwrap();
    std::fs::create_dir_all(path.join("Test/Blue")).unwrap();
    write_as(
        &fruit([30, 30, 200]),
        &path.join("Test/Blue/0.jpg"),
        ImageFormat::Jpeg,
    );

    let data = ImageDataBunch::from_folder(&path, opts()).unwrap();
    assert_eq!(data.classes, ["Blue", "Green", "Red"]);
    assert_eq!(data.train_dl.dataset.len(), 63, "each image once");

    let report = verify_images(&path.join("Training"), VerifyOptions::new().recurse()).unwrap();
    assert_eq!(report.checked, 63, "{report}");
    let loops: Vec<String> = report
        .issues
        .iter()
        .filter(|i| i.action.starts_with("skipped"))
        .map(|i| i.file.display().to_string())
        .collect();
    assert_eq!(loops, ["Red/loop", "self"], "{report}");
}

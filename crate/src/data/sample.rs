//! A synthetic stand-in for Fruits 360, so the lesson runs on a fresh machine with no network.
//!
//! The images are **synthetic**: simple fruit-like shapes drawn by code, with a colour, outline
//! and surface texture per class, turning from frame to frame on a white background like the
//! real dataset's turntable photos. They are never presented as real data: class names start
//! with `Synthetic` and the folder holds a `SYNTHETIC.txt` saying how it was made.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage, codecs::jpeg::JpegEncoder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{Error, Result};

const SIZE: u32 = 100;
const SHAPES: [&str; 6] = ["Round", "Oval", "Pear", "Crescent", "Heart", "Lobed"];
const TEXTURES: [&str; 4] = ["", "Spotted", "Striped", "Speckled"];
const MARKER: &str = "SYNTHETIC.txt";

/// The fraction of `per_class` generated for `Test/`, as in the real sample (100 vs 30).
const TEST_FRACTION: f64 = 0.3;

/// What one class looks like.
#[derive(Debug, Clone)]
struct ClassLook {
    name: String,
    shape: usize,
    texture: usize,
    /// Hue, saturation and value of the class's colour.
    hsv: [f64; 3],
}

fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

fn colour_name(h: f64) -> &'static str {
    const NAMES: [&str; 12] = [
        "Red", "Orange", "Yellow", "Lime", "Green", "Jade", "Teal", "Sky", "Blue", "Violet",
        "Purple", "Pink",
    ];
    NAMES[((h.rem_euclid(1.0) * 12.0).round() as usize) % 12]
}

/// How far apart in hue the two classes of a look-alike pair are. Each image's own hue jitter
/// ([`HUE_JITTER`], either way) reaches past the middle, so the pairs overlap a little, as
/// Fruits 360's "Apple Red 1" and "Apple Red 2" do, and a model makes a few honest mistakes
/// for the interpretation to show.
const PAIR_HUE_SHIFT: f64 = 0.07;
const HUE_JITTER: f64 = 0.02;

fn class_looks(n: usize) -> Vec<ClassLook> {
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    (0..n)
        .map(|c| {
            // Classes come in look-alike pairs: same shape and texture, nearby colour.
            let (base, twin) = (c / 2, c % 2);
            // Golden-ratio hue steps keep different pairs far apart in colour.
            let hue = (base as f64 * 0.618_033_988_75 + 0.02 + twin as f64 * PAIR_HUE_SHIFT)
                .rem_euclid(1.0);
            let sat = 0.55 + 0.4 * ((base * 7 % 5) as f64 / 4.0) - 0.05 * twin as f64;
            let val = 0.6 + 0.35 * ((base * 3 % 4) as f64 / 3.0);
            let shape = base % SHAPES.len();
            let texture = (base / SHAPES.len()) % TEXTURES.len();
            let mut name = format!("Synthetic {} {}", SHAPES[shape], colour_name(hue));
            if !TEXTURES[texture].is_empty() {
                name = format!("{name} {}", TEXTURES[texture]);
            }
            let count = names.entry(name.clone()).or_default();
            *count += 1;
            if *count > 1 {
                name = format!("{name} {count}");
            }
            ClassLook {
                name,
                shape,
                texture,
                hsv: [hue, sat, val],
            }
        })
        .collect()
}

/// Whether object coordinates (u, v), roughly in [-1, 1], fall inside the shape.
fn inside(shape: usize, u: f64, v: f64) -> bool {
    match shape {
        0 => u * u + v * v * 1.08 < 0.9,
        1 => (u / 1.0).powi(2) + (v / 0.68).powi(2) < 0.92,
        2 => u * u + (v - 0.28).powi(2) < 0.36 || u * u + (v + 0.38).powi(2) < 0.17,
        3 => u * u + v * v < 0.95 && u * u + (v + 0.45).powi(2) > 0.7,
        4 => {
            let (x, y) = (u * 1.4, -v * 1.4 + 0.2);
            (x * x + y * y - 1.0).powi(3) - x * x * y.powi(3) < 0.0
        }
        _ => {
            let (r, phi) = ((u * u + v * v).sqrt(), v.atan2(u));
            r < 0.78 + 0.13 * (5.0 * phi).cos()
        }
    }
}

/// Surface pattern darkening factor at object coordinates (u, v).
fn texture(kind: usize, u: f64, v: f64, grain: u64) -> f64 {
    match kind {
        1 => {
            let (cu, cv) = ((u * 4.0).round() / 4.0, (v * 4.0).round() / 4.0);
            if (u - cu).powi(2) + (v - cv).powi(2) < 0.004 {
                0.55
            } else {
                1.0
            }
        }
        2 if (u * 11.0).sin() > 0.55 => 0.72,
        3 => {
            let cell = ((u * 30.0).floor() as i64 * 7919 + (v * 30.0).floor() as i64 * 104_729)
                as u64
                ^ grain;
            let hash = cell.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
            if hash < 3 { 0.6 } else { 1.0 }
        }
        _ => 1.0,
    }
}

/// Draws frame `frame` of a class: the object turned a little further each frame.
fn draw(look: &ClassLook, frame: usize, rng: &mut ChaCha8Rng) -> RgbImage {
    let angle = (frame as f64 * 9.0 + rng.random_range(-3.0..3.0)) * PI / 180.0;
    let scale = 38.0 * rng.random_range(0.92..1.05);
    let (cx, cy) = (
        50.0 + rng.random_range(-3.0..3.0),
        50.0 + rng.random_range(-3.0..3.0),
    );
    let [h, sat, val] = look.hsv;
    let rgb = hsv(
        h + rng.random_range(-HUE_JITTER..HUE_JITTER),
        sat,
        (val + rng.random_range(-0.05..0.05)).clamp(0.0, 1.0),
    );
    let grain: u64 = rng.random();
    let (sin, cos) = angle.sin_cos();
    const SUB: [f64; 2] = [0.25, 0.75];
    RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let mut acc = [0.0f64; 3];
        for sy in SUB {
            for sx in SUB {
                let (dx, dy) = ((x as f64 + sx - cx) / scale, (y as f64 + sy - cy) / scale);
                let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                let px = if inside(look.shape, u, v) {
                    // Lit from the upper left: darker towards the rim, a soft highlight.
                    let r2 = dx * dx + dy * dy;
                    let shade = (1.0 - 0.35 * r2) * texture(look.texture, u, v, grain);
                    let spec = 0.45 * (-((dx + 0.35).powi(2) + (dy + 0.35).powi(2)) * 9.0).exp();
                    std::array::from_fn(|i| (rgb[i] * shade * (1.0 - spec) + spec).clamp(0.0, 1.0))
                } else {
                    [1.0; 3]
                };
                for i in 0..3 {
                    acc[i] += px[i] / 4.0;
                }
            }
        }
        Rgb(acc.map(|c| (c * 255.0).round() as u8))
    })
}

fn image_seed(seed: u64, class: usize, split: usize, index: usize) -> u64 {
    let mut h = seed ^ 0x5151_F00D;
    for part in [class as u64, split as u64, index as u64] {
        h = (h ^ part).wrapping_mul(0x100_0000_01B3).rotate_left(17);
    }
    h
}

/// Generates a synthetic dataset in the Fruits 360 layout at `dest`: `Training/<class>/` with
/// `per_class` images and `Test/<class>/` with 30% as many, 100x100 JPEGs named like the real
/// ones (`r_<frame>_100.jpg`). Deterministic for a given `seed`.
///
/// Written to a temporary folder and renamed into place, so `dest` is complete or absent. If
/// `dest` already holds a sample made with the same arguments it is reused; any other existing
/// non-empty `dest` is an error (nothing is overwritten).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = fastvision::generate_sample(&dir.path().join("fruits"), 3, 4, 42).unwrap();
/// assert!(path.join("Training").is_dir() && path.join("Test").is_dir());
/// ```
pub fn generate_sample(
    dest: &Path,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Result<PathBuf> {
    if classes < 2 || per_class < 1 {
        return Err(Error::InvalidArgument(format!(
            "generate_sample needs at least 2 classes and 1 image per class, got classes={classes}, per_class={per_class}"
        )));
    }
    let stamp = format!(
        "SYNTHETIC data made by fastvision::generate_sample(classes={classes}, per_class={per_class}, seed={seed}), generator v2.\n\
         These are drawn shapes standing in for Fruits 360; they are not photographs of fruit.\n"
    );
    if dest.exists() {
        let existing = std::fs::read_to_string(dest.join(MARKER)).unwrap_or_default();
        if existing == stamp {
            return Ok(dest.to_path_buf());
        }
        let empty = std::fs::read_dir(dest)
            .map_err(|e| Error::io(dest, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::InvalidArgument(format!(
                "{} already exists and is not a sample made with these arguments; \
                 choose another folder or remove it yourself",
                dest.display()
            )));
        }
        std::fs::remove_dir(dest).map_err(|e| Error::io(dest, e))?;
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fastvision-sample-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;

    let looks = class_looks(classes);
    let n_test = ((per_class as f64 * TEST_FRACTION).ceil() as usize).max(1);
    let jobs: Vec<(usize, usize, usize)> = (0..classes)
        .flat_map(|c| {
            let train = (0..per_class).map(move |i| (c, 0, i));
            let test = (0..n_test).map(move |i| (c, 1, i));
            train.chain(test)
        })
        .collect();
    for look in &looks {
        for split in ["Training", "Test"] {
            let dir = tmp.path().join(split).join(&look.name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    jobs.par_iter().try_for_each(|&(c, split, i)| {
        let mut rng = ChaCha8Rng::seed_from_u64(image_seed(seed, c, split, i));
        // Test frames sit between training frames, as the real dataset's Test set does.
        let frame = if split == 0 { i * 3 } else { i * 10 + 1 };
        let img = draw(&looks[c], frame, &mut rng);
        let name = format!("r_{frame}_100.jpg");
        let path = tmp
            .path()
            .join(["Training", "Test"][split])
            .join(&looks[c].name)
            .join(name);
        let mut bytes = Vec::with_capacity(8 << 10);
        JpegEncoder::new_with_quality(&mut bytes, 92)
            .encode_image(&img)
            .map_err(|e| Error::InvalidArgument(format!("JPEG encoding failed: {e}")))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    })?;
    std::fs::write(tmp.path().join(MARKER), &stamp).map_err(|e| Error::io(tmp.path(), e))?;
    let kept = tmp.keep();
    // Temporary folders are private (0700); a dataset folder is an ordinary one.
    std::fs::set_permissions(&kept, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::io(&kept, e))?;
    if let Err(e) = std::fs::rename(&kept, dest) {
        // Another process made the same sample meanwhile (two tests, two doc tests): theirs
        // is whole, as ours is, so ours goes and theirs is used.
        let _ = std::fs::remove_dir_all(&kept);
        if std::fs::read_to_string(dest.join(MARKER)).unwrap_or_default() == stamp {
            return Ok(dest.to_path_buf());
        }
        return Err(Error::io(dest, e));
    }
    Ok(dest.to_path_buf())
}

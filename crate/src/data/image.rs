//! Opening image files safely: a broken, empty or hostile file is an error naming the file,
//! never a panic or an unbounded allocation.

use std::path::Path;

use image::{DynamicImage, ImageReader, Limits, RgbImage, imageops::FilterType};

use crate::{Error, Result};

/// The most pixels an image may have: Pillow's `MAX_IMAGE_PIXELS`, its decompression-bomb guard.
pub const MAX_PIXELS: u64 = 89_478_485;

/// File extensions read as images (lower case), as fastai's `image_extensions` for our decoders.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Whether `path` has an image extension (case-insensitive).
///
/// ```
/// use fastvision::data::image::is_image_file;
/// assert!(is_image_file("a/B.JPG".as_ref()));
/// assert!(!is_image_file(".DS_Store".as_ref()));
/// ```
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn image_error(path: &Path, reason: impl ToString) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Width and height from the file's header, without decoding the pixels.
///
/// ```no_run
/// let (w, h) = fastvision::data::image::image_dimensions("apple.jpg".as_ref()).unwrap();
/// ```
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() == 0 {
        return Err(image_error(path, "empty file (0 bytes)"));
    }
    ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .into_dimensions()
        .map_err(|e| image_error(path, e))
}

/// Decodes an image file, refusing empty files and images over [`MAX_PIXELS`] before any pixel
/// memory is allocated (a small PNG can claim to be 100,000 pixels square).
///
/// ```no_run
/// let img = fastvision::data::image::open_image("apple.jpg".as_ref()).unwrap();
/// println!("{}x{}", img.width(), img.height());
/// ```
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let (w, h) = image_dimensions(path)?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(image_error(
            path,
            format!("{w}x{h} pixels is over the {MAX_PIXELS}-pixel limit (a decompression bomb?)"),
        ));
    }
    let mut reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // Room for a 16-bit RGBA copy of the image and the decoder's working buffers.
    limits.max_alloc = Some(u64::from(w) * u64::from(h) * 8 + (64 << 20));
    reader.limits(limits);
    reader.decode().map_err(|e| image_error(path, e))
}

/// Decodes an image as 8-bit RGB, `size` x `size`: the shorter side resized to `size`, then the
/// centre cropped square (fastai's crop resize). Images already that size are left untouched.
///
/// ```no_run
/// let rgb = fastvision::data::image::load_rgb("apple.jpg".as_ref(), 100).unwrap();
/// assert_eq!(rgb.dimensions(), (100, 100));
/// ```
pub fn load_rgb(path: &Path, size: u32) -> Result<RgbImage> {
    let img = open_image(path)?;
    Ok(square_rgb(img, size))
}

/// Resizes and centre-crops a decoded image to `size` x `size` RGB.
///
/// ```
/// let img = image::DynamicImage::new_rgb8(200, 100);
/// assert_eq!(fastvision::data::image::square_rgb(img, 50).dimensions(), (50, 50));
/// ```
pub fn square_rgb(img: DynamicImage, size: u32) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    if w == size && h == size {
        return img.into_rgb8();
    }
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(size),
        ((h as f64 * scale).round() as u32).max(size),
    );
    let resized = img.resize_exact(nw, nh, FilterType::Triangle).into_rgb8();
    let (x, y) = ((nw - size) / 2, (nh - size) / 2);
    image::imageops::crop_imm(&resized, x, y, size, size).to_image()
}

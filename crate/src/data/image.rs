//! Opening image files safely: a broken, empty or hostile file is an error naming the file,
//! never a panic or an unbounded allocation.

use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage, imageops::FilterType};

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

/// How strictly damaged data is treated. `Strict` (the default everywhere) refuses a truncated
/// or corrupt JPEG, as PIL does; `Lenient` decodes what it can and fills the rest with grey,
/// for a caller who asked to accept such files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Decode {
    /// Damaged data is an error naming the file.
    #[default]
    Strict,
    /// Damaged JPEG data is decoded as far as it goes.
    Lenient,
}

/// A decoded image and what its file declared.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels (the first frame of an animated GIF, as PIL reads it).
    pub image: DynamicImage,
    /// The file's format, from its content (not its extension).
    pub format: ImageFormat,
    /// Colour components as stored: 4 for a CMYK JPEG even though it decodes to RGB.
    pub stored_channels: u8,
}

/// Decodes an image file (JPEG, PNG, GIF, BMP, WebP, TIFF), reading it once. Empty files,
/// unknown formats, images over [`MAX_PIXELS`] (checked from the header, before any pixel
/// memory is allocated: a small PNG can claim to be 100,000 pixels square) and, with
/// [`Decode::Strict`], truncated or corrupt JPEG data are errors naming the file.
///
/// ```no_run
/// use fastvision::data::image::{Decode, decode_file};
/// let d = decode_file("apple.jpg".as_ref(), Decode::Strict).unwrap();
/// println!("{:?} {}x{}", d.format, d.image.width(), d.image.height());
/// ```
pub fn decode_file(path: &Path, mode: Decode) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(path, &bytes, mode)
}

/// [`decode_file`] on bytes already read; `path` names them in errors.
pub fn decode_bytes(path: &Path, bytes: &[u8], mode: Decode) -> Result<Decoded> {
    decode_bytes_limited(path, bytes, mode, MAX_PIXELS)
}

/// [`decode_bytes`] refusing images over `max_pixels` (width times height), checked from the
/// header before any pixel memory is allocated: what a server takes from strangers.
///
/// ```
/// use fastvision::data::image::{Decode, decode_bytes_limited};
/// let mut png = Vec::new();
/// image::DynamicImage::new_rgb8(40, 30)
///     .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
///     .unwrap();
/// assert!(decode_bytes_limited("a.png".as_ref(), &png, Decode::Strict, 1200).is_ok());
/// let err = decode_bytes_limited("a.png".as_ref(), &png, Decode::Strict, 1199).unwrap_err();
/// assert!(err.to_string().contains("40x30 pixels is over the 1199-pixel limit"));
/// ```
pub fn decode_bytes_limited(
    path: &Path,
    bytes: &[u8],
    mode: Decode,
    max_pixels: u64,
) -> Result<Decoded> {
    if bytes.is_empty() {
        return Err(image_error(path, "empty file (0 bytes)"));
    }
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let format = reader().format().ok_or_else(|| {
        image_error(
            path,
            "not an image format fastvision reads (JPEG, PNG, GIF, BMP, WebP, TIFF)",
        )
    })?;
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|e| image_error(path, e))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(image_error(
            path,
            format!("{w}x{h} pixels is over the {max_pixels}-pixel limit (a decompression bomb?)"),
        ));
    }
    if format == ImageFormat::Jpeg {
        return decode_jpeg(path, bytes, (w, h), mode);
    }
    let mut reader = reader();
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // Room for a 16-bit RGBA copy of the image and the decoder's working buffers.
    limits.max_alloc = Some(u64::from(w) * u64::from(h) * 8 + (64 << 20));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| image_error(path, e))?;
    let stored_channels = image.color().channel_count();
    Ok(Decoded {
        image,
        format,
        stored_channels,
    })
}

/// JPEGs go straight to zune-jpeg (the decoder the image crate wraps) so the strictness is
/// ours to choose and the header's component count (CMYK) comes with the one decode.
fn decode_jpeg(path: &Path, bytes: &[u8], (w, h): (u32, u32), mode: Decode) -> Result<Decoded> {
    use zune_core::colorspace::ColorSpace;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(mode == Decode::Strict)
        .set_max_width(w as usize)
        .set_max_height(h as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| {
        image_error(path, format!("truncated or corrupt JPEG ({e})"))
    };
    decoder.decode_headers().map_err(corrupt)?;
    let stored_channels = decoder.info().map_or(3, |i| i.components);
    let gray = stored_channels == 1;
    decoder.set_options(options.jpeg_set_out_colorspace(if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    }));
    let pixels = decoder.decode().map_err(corrupt)?;
    let image = if gray {
        image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| image_error(path, "JPEG decoded to an unexpected size"))?;
    Ok(Decoded {
        image,
        format: ImageFormat::Jpeg,
        stored_channels,
    })
}

/// Decodes an image file strictly (see [`decode_file`]).
///
/// ```no_run
/// let img = fastvision::data::image::open_image("apple.jpg".as_ref()).unwrap();
/// println!("{}x{}", img.width(), img.height());
/// ```
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    decode_file(path, Decode::Strict).map(|d| d.image)
}

/// Decodes an image as 8-bit RGB, `size` x `size`: the shorter side resized to `size`, then the
/// centre cropped square (fastai's crop resize). Images already that size are left untouched.
///
/// ```no_run
/// let rgb = fastvision::data::image::load_rgb("apple.jpg".as_ref(), 100).unwrap();
/// assert_eq!(rgb.dimensions(), (100, 100));
/// ```
pub fn load_rgb(path: &Path, size: u32) -> Result<RgbImage> {
    load_rgb_with(path, size, Decode::Strict)
}

/// [`load_rgb`] with a choice of strictness.
pub fn load_rgb_with(path: &Path, size: u32, mode: Decode) -> Result<RgbImage> {
    Ok(square_rgb(decode_file(path, mode)?.image, size))
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

/// How a photo of any shape becomes the network's square input: fastai's `ResizeMethod`.
///
/// ```
/// use fastvision::data::image::ResizeMethod;
/// assert_eq!(ResizeMethod::default(), ResizeMethod::Crop);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResizeMethod {
    /// The shorter side resized to the size, then a square cropped: at a random place along
    /// the longer side for training, the centre for validation and prediction (fastai's
    /// default).
    #[default]
    Crop,
    /// Both sides resized to the size: the whole photo, its shapes stretched.
    Squish,
    /// The longer side resized to the size, the shorter one filled out by reflection (fastai's
    /// `pad_mode` reflection): the whole photo, undistorted.
    Pad,
}

/// The square `size` x `size` image that validation and prediction see: [`ResizeMethod`]'s
/// centre view.
///
/// ```
/// use fastvision::data::image::{ResizeMethod, fit_rgb};
/// let img = image::DynamicImage::new_rgb8(200, 100);
/// for m in [ResizeMethod::Crop, ResizeMethod::Squish, ResizeMethod::Pad] {
///     assert_eq!(fit_rgb(img.clone(), 50, m).dimensions(), (50, 50));
/// }
/// ```
pub fn fit_rgb(img: DynamicImage, size: u32, method: ResizeMethod) -> RgbImage {
    match method {
        ResizeMethod::Crop => square_rgb(img, size),
        ResizeMethod::Squish => {
            if img.width() == size && img.height() == size {
                img.into_rgb8()
            } else {
                img.resize_exact(size, size, FilterType::Triangle)
                    .into_rgb8()
            }
        }
        ResizeMethod::Pad => pad_rgb(img, size),
    }
}

/// The longer side resized to `size`, the shorter side reflected out to `size` around the
/// centred photo.
fn pad_rgb(img: DynamicImage, size: u32) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let scale = size as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).clamp(1, size),
        ((h as f64 * scale).round() as u32).clamp(1, size),
    );
    let small = img.resize_exact(nw, nh, FilterType::Triangle).into_rgb8();
    let (x0, y0) = ((size - nw) / 2, (size - nh) / 2);
    // Reflection without repeating the edge (numpy's and PyTorch's "reflect"): -1 -> 1.
    let reflect = |i: i64, n: i64| -> u32 {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as u32
    };
    RgbImage::from_fn(size, size, |x, y| {
        let sx = reflect(x as i64 - x0 as i64, nw as i64);
        let sy = reflect(y as i64 - y0 as i64, nh as i64);
        *small.get_pixel(sx, sy)
    })
}

/// What a training set keeps of a photo for random crops: the shorter side resized to `size`,
/// and of the longer side at most `2 * size` around the centre (a panorama's far ends are
/// left out, which bounds the memory an image takes). A square photo is stored as
/// [`square_rgb`] makes it.
///
/// ```
/// let img = image::DynamicImage::new_rgb8(300, 100);
/// assert_eq!(fastvision::data::image::crop_source_rgb(img, 50).dimensions(), (100, 50));
/// ```
pub fn crop_source_rgb(img: DynamicImage, size: u32) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    if w == h || size == 0 {
        return square_rgb(img, size);
    }
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(size),
        ((h as f64 * scale).round() as u32).max(size),
    );
    let resized = img.resize_exact(nw, nh, FilterType::Triangle).into_rgb8();
    let (cw, ch) = (nw.min(2 * size), nh.min(2 * size));
    let (x, y) = ((nw - cw) / 2, (nh - ch) / 2);
    image::imageops::crop_imm(&resized, x, y, cw, ch).to_image()
}

/// The `size` x `size` square of an HWC RGB buffer `w` x `h` (both at least `size`) whose
/// top-left corner is at fraction `at` of the room along the longer side (0: left or top, 1:
/// right or bottom), or at the centre as [`square_rgb`] crops it when `at` is `None`.
///
/// ```
/// use fastvision::data::image::crop_at;
/// let px: Vec<u8> = (0..4u8).flat_map(|x| [x, x, x]).collect(); // 4 x 1, values 0..4
/// assert_eq!(crop_at(&px, 4, 1, 1, Some(1.0)), vec![3, 3, 3]);
/// assert_eq!(crop_at(&px, 4, 1, 1, Some(0.0)), vec![0, 0, 0]);
/// assert_eq!(crop_at(&px, 4, 1, 1, None), vec![1, 1, 1]);
/// ```
pub fn crop_at(pixels: &[u8], w: u32, h: u32, size: u32, at: Option<f64>) -> Vec<u8> {
    assert!(
        w >= size && h >= size && pixels.len() == (w * h * 3) as usize,
        "crop_at: a {w}x{h} image has no {size}x{size} square"
    );
    let (w, h, s) = (w as usize, h as usize, size as usize);
    let pos = |room: usize| match at {
        // Every place from 0 to room equally likely for `at` uniform in [0, 1).
        Some(at) => ((at.clamp(0.0, 1.0) * (room + 1) as f64) as usize).min(room),
        None => room / 2,
    };
    let (x0, y0) = (pos(w - s), pos(h - s));
    let mut out = Vec::with_capacity(s * s * 3);
    for y in y0..y0 + s {
        let row = (y * w + x0) * 3;
        out.extend_from_slice(&pixels[row..row + s * 3]);
    }
    out
}

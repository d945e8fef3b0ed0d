//! `verify_images`: find broken, oversized and odd images before they spoil a training run.
//!
//! fastai v1's meaning, made safe: broken files are moved to a quarantine folder rather than
//! deleted (unless `delete` is set), fixes are written atomically, a dry run touches nothing, and
//! if *every* image fails to decode nothing is moved at all, since that points to a wrong path or
//! a decoder problem rather than a folder of bad files (the way fastai once deleted whole
//! datasets).

use std::borrow::Borrow;
use std::fmt;
use std::path::{Path, PathBuf};

use image::{ColorType, DynamicImage, ImageFormat};
use polars::prelude::*;
use rayon::prelude::*;

use crate::data::files::{Depth, list_files};
use crate::data::image::{Decode, decode_file, is_image_file};
use crate::show::Progress;
use crate::{Error, Result};

/// How [`verify_images`] checks and fixes a folder, set by name as fastai's keywords are.
/// Defaults: quarantine broken files, no size limit, 3 channels, fix in place, no recursion,
/// all cores, not a dry run.
///
/// ```
/// let opts = fastvision::VerifyOptions::new().recurse().max_size(500);
/// assert!(opts.recurse && opts.max_size == Some(500));
/// assert!(!opts.delete && opts.n_channels == 3);
/// ```
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Delete broken files instead of moving them to the quarantine folder.
    pub delete: bool,
    /// Resize images whose longer side exceeds this many pixels (aspect ratio kept).
    pub max_size: Option<u32>,
    /// Convert images to this many channels (3 = RGB, 1 = grayscale).
    pub n_channels: u8,
    /// Where fixed images are written, keeping their path relative to the verified folder;
    /// relative paths are taken from that folder. `None` replaces them in place (atomically).
    pub dest: Option<PathBuf>,
    /// Where broken files are moved; default `.quarantine/<folder name>/` beside the folder
    /// (a hidden folder, which `from_folder` never mistakes for a class).
    pub quarantine: Option<PathBuf>,
    /// Also check sub-folders.
    pub recurse: bool,
    /// Threads to use; 0 means one per core.
    pub max_workers: usize,
    /// Only report what would be done.
    pub dry_run: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            delete: false,
            max_size: None,
            n_channels: 3,
            dest: None,
            quarantine: None,
            recurse: false,
            max_workers: 0,
            dry_run: false,
        }
    }
}

impl VerifyOptions {
    /// The defaults (see [`VerifyOptions`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Also check sub-folders (fastai's `recurse=True`).
    pub fn recurse(mut self) -> Self {
        self.recurse = true;
        self
    }

    /// Resize images whose longer side exceeds `px` (fastai's `max_size=`).
    pub fn max_size(mut self, px: u32) -> Self {
        self.max_size = Some(px);
        self
    }

    /// Delete broken files instead of quarantining them (fastai's `delete=True`).
    pub fn delete(mut self) -> Self {
        self.delete = true;
        self
    }

    /// Only report what would be done; nothing changes on disk.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Convert images to `n` channels (fastai's `n_channels=`).
    pub fn n_channels(mut self, n: u8) -> Self {
        self.n_channels = n;
        self
    }

    /// Write fixed images under `dest` instead of in place (fastai's `dest=`).
    pub fn dest(mut self, dest: impl Into<PathBuf>) -> Self {
        self.dest = Some(dest.into());
        self
    }

    /// Move broken files to `dir` instead of the default quarantine folder.
    pub fn quarantine(mut self, dir: impl Into<PathBuf>) -> Self {
        self.quarantine = Some(dir.into());
        self
    }

    /// Threads to use (fastai's `max_workers=`); 0 means one per core.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }
}

/// One problem found, and what was done about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyIssue {
    /// The image file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// What was done (or, in a dry run, would be done).
    pub action: String,
}

/// What [`verify_images`] found: one row per problem, plus counts.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The folder that was verified.
    pub path: PathBuf,
    /// Image files checked.
    pub checked: usize,
    /// Files skipped because they are not images by extension (such as `.DS_Store`).
    pub ignored: usize,
    /// Files that could not be decoded.
    pub broken: usize,
    /// Files resized or converted (or that would be, in a dry run).
    pub fixed: usize,
    /// Every problem, sorted by file.
    pub issues: Vec<VerifyIssue>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl VerifyReport {
    /// The report as a DataFrame with columns `file`, `problem`, `action`.
    ///
    /// ```no_run
    /// let report = fastvision::verify_images("data/fruits/Training".as_ref(), fastvision::VerifyOptions::new()).unwrap();
    /// println!("{}", report.df());
    /// ```
    pub fn df(&self) -> DataFrame {
        let col =
            |f: fn(&VerifyIssue) -> String| -> Vec<String> { self.issues.iter().map(f).collect() };
        df!(
            "file" => col(|i| i.file.display().to_string()),
            "problem" => col(|i| i.problem.clone()),
            "action" => col(|i| i.action.clone()),
        )
        .expect("three columns of equal length")
    }

    /// The one-line summary that `verify_images` prints.
    ///
    /// ```
    /// let r = fastvision::data::verify::VerifyReport {
    ///     path: "x".into(), checked: 10, ignored: 1, broken: 2, fixed: 3, issues: vec![], dry_run: false,
    /// };
    /// assert_eq!(r.summary(), "verify_images x: 10 images checked, 2 broken, 3 resized or converted, 1 non-image file ignored");
    /// ```
    pub fn summary(&self) -> String {
        let mut s = format!(
            "verify_images {}: {} images checked, {} broken, {} resized or converted",
            self.path.display(),
            self.checked,
            self.broken,
            self.fixed
        );
        if self.ignored > 0 {
            let plural = if self.ignored == 1 { "" } else { "s" };
            s += &format!(", {} non-image file{plural} ignored", self.ignored);
        }
        if self.dry_run {
            s += " (dry run: nothing changed)";
        }
        s
    }

    /// Shows the summary line and a table of the problems in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.df(), Some(&self.summary()));
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::show::table::text(&self.df(), Some(&self.summary())))
    }
}

/// What became of one file in the parallel pass. Only this row survives the pass: a fixed
/// image is written (or, in a dry run, dropped) before the next file is opened, so memory holds
/// one image per worker whatever the folder's size.
enum Finding {
    Fine,
    /// Not decodable: moved or deleted after the pass, once it is known that not every file
    /// failed.
    Broken(String),
    /// Converted or resized (or would be): the problems and what was done.
    Fixed {
        problems: Vec<String>,
        action: String,
    },
}

fn channels_and_depth(img: &DynamicImage) -> (u8, u16) {
    let c: ColorType = img.color();
    (
        c.channel_count(),
        c.bytes_per_pixel() as u16 * 8 / c.channel_count() as u16,
    )
}

/// Whether every pixel of an image with alpha is fully opaque.
fn opaque(img: &DynamicImage) -> bool {
    match img {
        DynamicImage::ImageRgba8(b) => b.pixels().all(|p| p.0[3] == 255),
        DynamicImage::ImageLumaA8(b) => b.pixels().all(|p| p.0[1] == 255),
        DynamicImage::ImageRgba16(b) => b.pixels().all(|p| p.0[3] == u16::MAX),
        DynamicImage::ImageLumaA16(b) => b.pixels().all(|p| p.0[1] == u16::MAX),
        _ => false,
    }
}

/// Reads `path` once, decodes it once, and fixes it at once if it needs it.
fn examine(path: &Path, target: &Path, opts: &VerifyOptions) -> Finding {
    let decoded = match decode_file(path, Decode::Strict) {
        Ok(d) => d,
        Err(Error::Image { reason, .. }) => return Finding::Broken(reason),
        Err(e) => return Finding::Broken(e.to_string()),
    };
    let img = decoded.image;
    let (w, h) = (img.width(), img.height());
    let mut problems = Vec::new();
    let (mut channels, depth) = channels_and_depth(&img);
    // GIF and WebP decode to RGBA whatever they hold; only real transparency is a problem
    // (PIL reads an opaque GIF as a palette image, which fastai converts on every run).
    if img.color().has_alpha() && opaque(&img) {
        channels -= 1;
    }
    if decoded.format == ImageFormat::Jpeg && decoded.stored_channels == 4 {
        problems.push("CMYK JPEG (4 channels)".to_string());
    } else if channels != opts.n_channels {
        let kind = match channels {
            1 => "grayscale",
            2 => "grayscale with alpha",
            4 => "RGBA",
            _ => "RGB",
        };
        problems.push(format!(
            "{kind} ({channels} channel{})",
            if channels == 1 { "" } else { "s" }
        ));
    }
    if depth != 8 {
        problems.push(format!("{depth}-bit"));
    }
    let too_big = opts.max_size.is_some_and(|max| w.max(h) > max);
    if let Some(max) = opts.max_size.filter(|_| too_big) {
        problems.push(format!("{w}x{h}, larger than max_size {max}"));
    }
    if problems.is_empty() {
        return Finding::Fine;
    }
    let what = if too_big { "resized" } else { "converted" };
    let action = if opts.dry_run {
        format!("would be {what}")
    } else {
        match write_image(&fixed_image(img, opts), target) {
            Ok(()) if target == path => format!("{what} in place"),
            Ok(()) => format!("{what} to {}", target.display()),
            Err(e) => format!("could not fix: {e}"),
        }
    };
    Finding::Fixed { problems, action }
}

/// Flattens alpha onto white (fruit photos sit on white), converts to 8 bits and `n_channels`,
/// and shrinks so the longer side is at most `max_size`.
fn fixed_image(img: DynamicImage, opts: &VerifyOptions) -> DynamicImage {
    let rgb = if img.color().has_alpha() {
        let rgba = img.into_rgba8();
        image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let p = rgba.get_pixel(x, y).0;
            let a = p[3] as f32 / 255.0;
            image::Rgb(std::array::from_fn(|i| {
                (p[i] as f32 * a + 255.0 * (1.0 - a)).round() as u8
            }))
        })
    } else {
        // No copy for the common case, an 8-bit RGB photo that is only too large.
        img.into_rgb8()
    };
    let mut out = if opts.n_channels == 1 {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb).to_luma8())
    } else {
        DynamicImage::ImageRgb8(rgb)
    };
    if let Some(max) = opts.max_size
        && out.width().max(out.height()) > max
    {
        // A camera photo shrunk 8x: box-average it to twice the target first (fast, no
        // aliasing), then Lanczos3 for the last step, instead of a 48-tap filter over every
        // source pixel.
        // The target comes from the original size, so the detour cannot shift its rounding.
        let (w, h) = (out.width() as f64, out.height() as f64);
        let scale = max as f64 / w.max(h);
        let target = (
            ((w * scale).round() as u32).clamp(1, max),
            ((h * scale).round() as u32).clamp(1, max),
        );
        if out.width().max(out.height()) > 2 * max {
            out = out.thumbnail(2 * max, 2 * max);
        }
        out = out.resize_exact(target.0, target.1, image::imageops::FilterType::Lanczos3);
    }
    out
}

fn write_image(img: &DynamicImage, path: &Path) -> Result<()> {
    let format = ImageFormat::from_path(path).unwrap_or(ImageFormat::Png);
    let mut bytes = Vec::new();
    let encoded = if format == ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
        img.write_with_encoder(encoder)
    } else {
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
    };
    encoded.map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: format!("could not encode: {e}"),
    })?;
    crate::io::atomic_write(path, &bytes)
}

fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if std::fs::rename(from, to).is_err() {
        // Across file systems rename fails: copy, then remove the original.
        std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
        std::fs::remove_file(from).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

/// Checks every image in `path` (see [`VerifyOptions`]), fixes what it can, quarantines or
/// deletes what it cannot, and returns the report (its summary line and a table of problems).
///
/// ```no_run
/// use fastvision::{verify_images, VerifyOptions};
/// let report = verify_images("data/fruits-360/Training".as_ref(),
///     VerifyOptions::new().recurse().max_size(500)).unwrap();
/// assert_eq!(report.broken, 0);
/// ```
pub fn verify_images(path: &Path, opts: impl Borrow<VerifyOptions>) -> Result<VerifyReport> {
    let opts: &VerifyOptions = opts.borrow();
    if !path.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "verify_images: {} is not a folder; pass the folder that holds the images",
            path.display()
        )));
    }
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            path.join(p)
        }
    };
    let dest = opts.dest.as_deref().map(resolve);
    let quarantine = opts.quarantine.as_deref().map(resolve).unwrap_or_else(|| {
        // `Training` -> `.quarantine/Training` beside it, spelled without `..` when the path
        // names its folder (the canonical parent only for `.`, `..` and the like).
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent.to_path_buf(), Some(name.to_owned())),
            _ => {
                let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
                let name = abs.file_name().map(|n| n.to_owned());
                (abs.parent().map_or(abs.clone(), Path::to_path_buf), name)
            }
        };
        parent
            .join(".quarantine")
            .join(name.unwrap_or_else(|| "images".into()))
    });
    let skip: Vec<PathBuf> = dest.iter().cloned().collect();
    let depth = if opts.recurse { Depth::All } else { Depth::Top };
    let listing = list_files(path, depth, &skip)?;
    let (images, others): (Vec<_>, Vec<_>) =
        listing.files.into_iter().partition(|f| is_image_file(f));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.max_workers)
        .build()
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "verify_images: cannot start {} workers: {e}",
                opts.max_workers
            ))
        })?;
    let rel = |f: &Path| f.strip_prefix(path).unwrap_or(f).to_path_buf();
    let target_of = |f: &Path| {
        dest.as_ref()
            .map_or_else(|| f.to_path_buf(), |d| d.join(rel(f)))
    };
    let progress = Progress::new("verify_images", images.len() as u64);
    let findings: Vec<(PathBuf, Finding)> = pool.install(|| {
        images
            .par_iter()
            .filter_map(|f| {
                let finding = examine(f, &target_of(f), opts);
                progress.inc(1);
                match finding {
                    Finding::Fine => None,
                    other => Some((f.clone(), other)),
                }
            })
            .collect()
    });
    progress.finish();

    let n_broken = findings
        .iter()
        .filter(|(_, f)| matches!(f, Finding::Broken(_)))
        .count();
    // Every file failing means a wrong path, format or decoder, not a folder of bad images.
    let suspicious = n_broken == images.len() && images.len() >= 10;

    let mut report = VerifyReport {
        path: path.to_path_buf(),
        checked: images.len(),
        ignored: others.len(),
        broken: n_broken,
        fixed: 0,
        issues: Vec::new(),
        dry_run: opts.dry_run,
    };
    for l in listing.loops {
        report.issues.push(VerifyIssue {
            file: rel(&l.link),
            problem: format!("link to {}, already checked", l.target.display()),
            action: "skipped (a link loop or a second link to one folder)".into(),
        });
    }
    for (file, finding) in findings {
        let (problem, action) = match finding {
            Finding::Fine => continue,
            Finding::Broken(problem) => {
                let action = if suspicious {
                    "kept: every image failed, so nothing was moved; check the path and format"
                        .into()
                } else if opts.dry_run {
                    if opts.delete {
                        "would delete".into()
                    } else {
                        format!("would quarantine to {}", quarantine.display())
                    }
                } else if opts.delete {
                    match std::fs::remove_file(&file) {
                        Ok(()) => "deleted".into(),
                        Err(e) => format!("could not delete: {e}"),
                    }
                } else {
                    let target = quarantine.join(rel(&file));
                    match move_file(&file, &target) {
                        Ok(()) => format!("quarantined to {}", target.display()),
                        Err(e) => format!("could not quarantine: {e}"),
                    }
                };
                (problem, action)
            }
            Finding::Fixed { problems, action } => {
                report.fixed += 1;
                (problems.join(", "), action)
            }
        };
        report.issues.push(VerifyIssue {
            file: rel(&file),
            problem,
            action,
        });
    }
    Ok(report)
}

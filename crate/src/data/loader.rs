//! Datasets and loaders: images decoded once in parallel and kept in memory when they fit,
//! batches gathered on a background thread while the model works on the previous one, then
//! moved to the device (pinned memory and non-blocking copies on CUDA), augmented and
//! normalised there.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::data::image::{Decode, ResizeMethod, crop_at, crop_source_rgb, decode_file, fit_rgb};
use crate::data::transforms::{
    Stats, Transforms, apply_lighting_u8, homographies, homography_grid, sampling_grid,
};
use crate::show::Progress;
use crate::{Error, Result};

/// Labelled image files of one split, with their pixels when they were decoded up front.
pub struct ImageDataset {
    /// Image files.
    pub items: Vec<PathBuf>,
    /// Class index of each item.
    pub labels: Vec<i64>,
    /// Side of the square images the network sees, in pixels.
    pub size: u32,
    /// How a photo of any shape becomes that square.
    pub resize: ResizeMethod,
    /// Whether [`ResizeMethod::Crop`] crops at a random place along a photo's longer side
    /// (training) rather than its centre (validation). The crop is part of the training
    /// augmentation: a loader without transforms, and every unaugmented view of the data,
    /// takes the centre.
    pub random_crop: bool,
    /// Every image as stored (see [`ImageDataset::with_resize`]), when kept in memory.
    pixels: Option<Vec<Stored>>,
    /// Items found unreadable while decoding on the fly, each reported once: a damaged file
    /// would otherwise repeat its warning every epoch.
    reported: std::sync::Mutex<std::collections::HashSet<usize>>,
}

/// One decoded image as a dataset keeps it: HWC RGB, `w` x `h`.
struct Stored {
    w: u32,
    h: u32,
    px: Box<[u8]>,
}

// By hand: the derived Debug would print every decoded pixel (hundreds of MB), and a notebook
// shows Debug for a value that has no richer display.
impl std::fmt::Debug for ImageDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDataset")
            .field("items", &self.items.len())
            .field("size", &self.size)
            .field("resize", &self.resize)
            .field("random_crop", &self.random_crop)
            .field("in_memory_bytes", &self.in_memory_bytes())
            .finish()
    }
}

/// Where a dataset's decoded images live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Decoded once, up front, and kept (when they fit the memory budget).
    InMemory,
    /// Decoded again every time a batch needs them.
    OnTheFly,
}

impl ImageDataset {
    /// Builds a dataset of centre-cropped squares; `Storage::InMemory` decodes every image
    /// now, in parallel, dropping (with a warning naming it) any that cannot be read.
    ///
    /// ```no_run
    /// use fastvision::data::loader::{ImageDataset, Storage};
    /// let ds = ImageDataset::new(vec!["a.jpg".into()], vec![0], 100, Storage::OnTheFly);
    /// assert!(!ds.in_memory());
    /// ```
    pub fn new(items: Vec<PathBuf>, labels: Vec<i64>, size: u32, storage: Storage) -> Self {
        Self::with_resize(
            items,
            labels,
            size,
            storage,
            ResizeMethod::Crop,
            false,
            u64::MAX,
        )
    }

    /// Builds a dataset whose photos become squares by `resize`; with `random_crop` (and
    /// [`ResizeMethod::Crop`]) each image is kept with its shorter side at `size` (see
    /// [`crop_source_rgb`]) and every batch crops it at a random place. `Storage::InMemory`
    /// decodes every image now, and falls back to decoding per batch, saying so, if the
    /// decoded images pass `budget` bytes.
    ///
    /// ```no_run
    /// use fastvision::data::image::ResizeMethod;
    /// use fastvision::data::loader::{ImageDataset, Storage};
    /// let ds = ImageDataset::with_resize(vec!["wide.jpg".into()], vec![0], 224,
    ///     Storage::InMemory, ResizeMethod::Crop, true, 1 << 30);
    /// ```
    pub fn with_resize(
        items: Vec<PathBuf>,
        labels: Vec<i64>,
        size: u32,
        storage: Storage,
        resize: ResizeMethod,
        random_crop: bool,
        budget: u64,
    ) -> Self {
        let mut ds = ImageDataset {
            items,
            labels,
            size,
            resize,
            random_crop: random_crop && resize == ResizeMethod::Crop,
            pixels: None,
            reported: Default::default(),
        };
        if storage == Storage::InMemory {
            ds.decode_all(budget);
        }
        ds
    }

    /// Decodes every image into memory, in parallel, dropping the unreadable ones (each named
    /// in a warning); stops and keeps nothing if the images pass `budget` bytes.
    fn decode_all(&mut self, budget: u64) {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let progress = Progress::new(
            format!("decoding {} images", self.items.len()),
            self.items.len() as u64,
        );
        let (used, over) = (AtomicU64::new(0), AtomicBool::new(false));
        let decoded: Vec<Option<Stored>> = self
            .items
            .par_iter()
            .map(|p| {
                if over.load(Ordering::Relaxed) {
                    return None;
                }
                let img = match self.decode(p) {
                    Ok(img) => img,
                    Err(e) => {
                        log::warn!("skipping {e}");
                        progress.inc(1);
                        return None;
                    }
                };
                let (w, h) = img.dimensions();
                let px = img.into_raw().into_boxed_slice();
                if used.fetch_add(px.len() as u64, Ordering::Relaxed) + px.len() as u64 > budget {
                    over.store(true, Ordering::Relaxed);
                }
                progress.inc(1);
                Some(Stored { w, h, px })
            })
            .collect();
        progress.finish();
        if over.load(Ordering::Relaxed) {
            log::info!(
                "the decoded images passed the memory budget ({} MB): they are decoded batch by \
                 batch instead (raise memory_budget to keep them)",
                budget >> 20
            );
            return;
        }
        let keep: Vec<bool> = decoded.iter().map(Option::is_some).collect();
        let mut k = keep.iter();
        self.items.retain(|_| *k.next().unwrap());
        let mut k = keep.iter();
        self.labels.retain(|_| *k.next().unwrap());
        self.pixels = Some(decoded.into_iter().flatten().collect());
    }

    /// One file as this dataset keeps it.
    fn decode(&self, path: &std::path::Path) -> crate::Result<image::RgbImage> {
        let img = decode_file(path, Decode::Strict)?.image;
        Ok(if self.random_crop {
            crop_source_rgb(img, self.size)
        } else {
            fit_rgb(img, self.size, self.resize)
        })
    }

    /// Bytes one square `size` x `size` image takes in memory (a photo kept for random crops
    /// takes up to twice that).
    pub fn bytes_per_image(size: u32) -> usize {
        size as usize * size as usize * 3
    }

    /// Bytes of decoded images held in memory (0 when decoding per batch).
    pub fn in_memory_bytes(&self) -> usize {
        self.pixels
            .as_ref()
            .map_or(0, |p| p.iter().map(|s| s.px.len()).sum())
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the decoded images are held in memory.
    pub fn in_memory(&self) -> bool {
        self.pixels.is_some()
    }

    /// The stored RGB pixels (HWC) of item `i` with their width and height: from memory, or
    /// decoded now. None if unreadable, with a warning naming the file the first time.
    fn stored(&self, i: usize) -> Option<(std::borrow::Cow<'_, [u8]>, u32, u32)> {
        match &self.pixels {
            Some(all) => {
                let s = &all[i];
                Some((std::borrow::Cow::Borrowed(&s.px[..]), s.w, s.h))
            }
            None => match self.decode(&self.items[i]) {
                Ok(img) => {
                    let (w, h) = img.dimensions();
                    Some((std::borrow::Cow::Owned(img.into_raw()), w, h))
                }
                Err(e) => {
                    let first = self
                        .reported
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(i);
                    if first {
                        log::warn!("skipping {e} (in every epoch; said once)");
                    }
                    None
                }
            },
        }
    }

    /// The square RGB pixels (HWC, `size` x `size`) of item `i` as validation sees it (the
    /// centre of a photo kept for random crops): from memory, or decoded now. None if
    /// unreadable, with a warning naming the file the first time.
    pub fn pixels(&self, i: usize) -> Option<std::borrow::Cow<'_, [u8]>> {
        let (px, w, h) = self.stored(i)?;
        Some(if w == self.size && h == self.size {
            px
        } else {
            std::borrow::Cow::Owned(crop_at(&px, w, h, self.size, None))
        })
    }

    /// The files found unreadable so far while decoding on the fly (each was skipped, and
    /// reported once). A dataset decoded into memory drops such files up front instead.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// for file in data.train_dl.dataset.unreadable() {
    ///     println!("skipped {}", file.display());
    /// }
    /// ```
    pub fn unreadable(&self) -> Vec<PathBuf> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let mut idx: Vec<usize> = reported.iter().copied().collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| self.items[i].clone()).collect()
    }

    /// The pixels (`[B, H, W, 3]` u8, items one after another) and labels of the given items,
    /// skipping unreadable ones; each the centre square.
    pub fn gather(&self, idx: &[usize]) -> (Vec<u8>, Vec<i64>) {
        self.gather_with(idx, None)
    }

    /// [`ImageDataset::gather`], cropping photos kept for random crops at a place drawn from
    /// `rng` (one draw per image that is not already square, in the order of `idx`, so a batch
    /// is the same whether its images come from memory or are decoded now).
    pub fn gather_with(&self, idx: &[usize], rng: Option<&mut ChaCha8Rng>) -> (Vec<u8>, Vec<i64>) {
        let per = Self::bytes_per_image(self.size);
        type Got<'a> = (usize, std::borrow::Cow<'a, [u8]>, u32, u32);
        let got: Vec<Got<'_>> = if self.in_memory() {
            idx.iter()
                .filter_map(|&i| self.stored(i).map(|(p, w, h)| (i, p, w, h)))
                .collect()
        } else {
            idx.par_iter()
                .filter_map(|&i| self.stored(i).map(|(p, w, h)| (i, p, w, h)))
                .collect()
        };
        let mut rng = rng;
        let mut buf = Vec::with_capacity(per * got.len());
        let mut labels = Vec::with_capacity(got.len());
        for (i, px, w, h) in &got {
            if *w == self.size && *h == self.size {
                buf.extend_from_slice(px);
            } else {
                let at = rng.as_mut().map(|r| r.random::<f64>());
                buf.extend_from_slice(&crop_at(px, *w, *h, self.size, at));
            }
            labels.push(self.labels[*i]);
        }
        (buf, labels)
    }
}

/// A batch made ready on the loader's background thread: 8-bit pixels with lighting applied,
/// labels, and its geometric augmentation.
#[derive(Debug)]
pub struct Prepared {
    /// `[B, H, W, 3]` u8 pixels.
    pub x: Tensor,
    /// `[B]` class indices.
    pub y: Tensor,
    /// The geometric augmentation, when augmenting.
    pub warp: Option<Warp>,
}

/// A batch's geometric augmentation, in the form that suits the device that resamples it.
#[derive(Debug)]
pub enum Warp {
    /// The sampling grid `[B, H, W, 2]`, computed on the host ([`sampling_grid`]): the cheaper
    /// way when the device is the CPU.
    Grid(Tensor),
    /// One homography per item `[B, 3, 3]`, from which the device computes the grid
    /// ([`homography_grid`]): a GPU then receives 36 bytes an item instead of 8 per pixel,
    /// and the host does no per-pixel work.
    Homographies(Tensor),
}

impl Warp {
    fn map(self, f: impl FnOnce(Tensor) -> Tensor) -> Warp {
        match self {
            Warp::Grid(t) => Warp::Grid(f(t)),
            Warp::Homographies(t) => Warp::Homographies(f(t)),
        }
    }
}

/// Gathers items (cropped at random places when `random_crop`, else at the centre) and does
/// the host half of augmentation: draws each item's parameters, applies lighting to the 8-bit
/// pixels and describes the batch's geometric augmentation in the form that suits `device`
/// (see [`Warp`]).
pub fn prepare_batch(
    ds: &ImageDataset,
    idx: &[usize],
    tfms: Option<&Transforms>,
    rng: &mut ChaCha8Rng,
    device: Device,
    random_crop: bool,
) -> Prepared {
    let (mut buf, labels) = if random_crop {
        ds.gather_with(idx, Some(rng))
    } else {
        ds.gather(idx)
    };
    let (n, s) = (labels.len(), ds.size as usize);
    let warp = tfms.filter(|_| n > 0).map(|t| {
        let params: Vec<_> = (0..n).map(|_| t.draw(rng)).collect();
        apply_lighting_u8(&mut buf, &params);
        if device.is_cuda() {
            Warp::Homographies(homographies(&params))
        } else {
            let grid = sampling_grid(&params, s, s);
            Warp::Grid(Tensor::from_slice(&grid).view([n as i64, s as i64, s as i64, 2]))
        }
    });
    Prepared {
        x: Tensor::from_slice(&buf).view([n as i64, s as i64, s as i64, 3]),
        y: Tensor::from_slice(&labels),
        warp,
    }
}

/// One batch on the device: normalised float images `[B, 3, H, W]` and class indices `[B]`.
#[derive(Debug)]
pub struct Batch {
    /// Images, augmented (training) and normalised.
    pub x: Tensor,
    /// Class indices (int64).
    pub y: Tensor,
}

/// Iterates over a dataset in batches, as fastai's `DataLoader`.
#[derive(Debug, Clone)]
pub struct DataLoader {
    /// The data.
    pub dataset: Arc<ImageDataset>,
    /// Batch size.
    pub bs: usize,
    /// Reshuffle every epoch.
    pub shuffle: bool,
    /// Drop the last incomplete batch (training: keeps BatchNorm statistics sound).
    pub drop_last: bool,
    /// Augmentation, for the training loader.
    pub tfms: Option<Transforms>,
    /// Normalisation applied last.
    pub stats: Option<Stats>,
    /// Where batches go.
    pub device: Device,
    /// Seed for shuffling and augmentation.
    pub seed: u64,
    /// Batches prepared ahead on a background thread; 0 prepares each batch on the calling
    /// thread when it is asked for (see [`default_prefetch`]).
    pub prefetch: usize,
    /// A function of the user's over each batch's 8-bit pixels, run where the batch is
    /// prepared, after the built-in lighting (fastai's `before_batch`).
    pub before_batch: Option<BatchTfm>,
}

/// A function over a batch's 8-bit pixels `[B, H, W, 3]`, returning pixels of the same shape:
/// a custom augmentation run on the loader's thread ([`DataLoader::before_batch`]). A panic in
/// it ends the epoch with an [`Error::Loader`] naming the batch, never a shorter epoch.
///
/// ```
/// use fastvision::data::loader::BatchTfm;
/// let invert = BatchTfm::new(|x: tch::Tensor| 255 - x);
/// let x = tch::Tensor::from_slice(&[0u8, 5, 255]).view([1, 1, 1, 3]);
/// assert_eq!(Vec::<u8>::try_from(invert.apply(x).view([-1])).unwrap(), vec![255, 250, 0]);
/// ```
#[derive(Clone)]
pub struct BatchTfm(Arc<dyn Fn(Tensor) -> Tensor + Send + Sync>);

impl BatchTfm {
    /// Wraps `f`.
    pub fn new(f: impl Fn(Tensor) -> Tensor + Send + Sync + 'static) -> Self {
        BatchTfm(Arc::new(f))
    }

    /// `f(x)`.
    pub fn apply(&self, x: Tensor) -> Tensor {
        (self.0)(x)
    }
}

impl std::fmt::Debug for BatchTfm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchTfm(..)")
    }
}

impl DataLoader {
    /// Number of batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.bs
        } else {
            n.div_ceil(self.bs)
        }
    }

    /// Whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item order of epoch `epoch`: a seeded permutation when shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                self.seed ^ (epoch.wrapping_mul(0x9E37_79B9)),
            ));
        }
        order
    }

    /// The items a picture of this set shows first: the epoch-0 order of a shuffled set, and a
    /// seeded shuffle of one kept in order (a validation set sorted by class would show its
    /// first class only).
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let first_nine: Vec<usize> = data.valid_dl.display_order().into_iter().take(9).collect();
    /// ```
    pub fn display_order(&self) -> Vec<usize> {
        let mut order = self.order(0);
        if !self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed));
        }
        order
    }

    /// The batches of epoch `epoch`, prepared ahead on a background thread. Each is a
    /// `Result`: a failure while preparing one (a panic in a transform, say) comes out as an
    /// [`Error::Loader`] naming the batch, and the epoch ends there.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// for batch in data.train_dl.epoch(0) {
    ///     assert_eq!(batch.unwrap().x.size()[1], 3);
    /// }
    /// ```
    pub fn epoch(&self, epoch: u64) -> BatchIter {
        let batches = Batches {
            order: self.order(epoch),
            next: 0,
            n_batches: self.len(),
            bs: self.bs,
            dataset: Arc::clone(&self.dataset),
            tfms: self.tfms,
            rng: self.augment_rng(epoch),
            device: self.device,
            before_batch: self.before_batch.clone(),
        };
        let n_batches = batches.n_batches;
        if self.prefetch == 0 {
            return BatchIter {
                rx: None,
                worker: None,
                inline: Some(batches),
                loader: self.clone(),
                received: 0,
                n_batches,
                done: false,
            };
        }
        let (tx, rx) = sync_channel(self.prefetch);
        let worker = std::thread::Builder::new()
            .name("fastvision-loader".into())
            .spawn(move || {
                for p in batches {
                    let failed = p.is_err();
                    if tx.send(p).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the data loader's thread");
        BatchIter {
            rx: Some(rx),
            worker: Some(worker),
            inline: None,
            loader: self.clone(),
            received: 0,
            n_batches,
            done: false,
        }
    }

    /// The first batch of epoch 0, as the loader would give it (fastai's `one_batch`), with
    /// or without the loader's augmentation. Only the batch's images are decoded.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let augmented = data.train_dl.one_batch(true);
    /// let plain = data.train_dl.one_batch(false);
    /// assert_eq!(augmented.y.size(), plain.y.size());
    /// ```
    pub fn one_batch(&self, augment: bool) -> Batch {
        let idx: Vec<usize> = self.order(0).into_iter().take(self.bs).collect();
        self.batch_of(&idx, augment)
    }

    /// The items `idx` as one batch, augmented as epoch 0 would (when `augment` and the loader
    /// has transforms) or not.
    pub fn batch_of(&self, idx: &[usize], augment: bool) -> Batch {
        let tfms = self.tfms.as_ref().filter(|_| augment);
        let mut rng = self.augment_rng(0);
        let random_crop = augment && self.tfms.is_some() && self.dataset.random_crop;
        let mut p = prepare_batch(&self.dataset, idx, tfms, &mut rng, self.device, random_crop);
        if let Some(f) = self.before_batch.as_ref().filter(|_| augment) {
            p.x = f.apply(p.x);
        }
        self.finish(p)
    }

    /// The generator behind epoch `epoch`'s augmentation draws.
    pub fn augment_rng(&self, epoch: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed.rotate_left(13) ^ epoch.wrapping_add(1))
    }

    /// The device half: moves a prepared batch to the device and makes it model input, float
    /// and normalised, resampled through its augmentation grid. Normalising before resampling
    /// gives the same result as after (bilinear weights sum to one and reflection padding only
    /// reads real pixels) and folds `/255` and normalisation into one multiply-add.
    pub fn finish(&self, p: Prepared) -> Batch {
        let dev = self.device;
        let x =
            p.x.to_device_(dev, Kind::Uint8, true, false)
                .permute([0, 3, 1, 2]);
        let x = x.to_kind(Kind::Float).contiguous();
        let x = match &self.stats {
            Some(s) => {
                let (scale, shift) = s.u8_affine(dev);
                x * scale + shift
            }
            None => x / 255.0,
        };
        let s = self.dataset.size as usize;
        let grid = p.warp.map(|w| match w {
            Warp::Grid(g) => g.to_device_(dev, Kind::Float, true, false),
            Warp::Homographies(m) => {
                homography_grid(&m.to_device_(dev, Kind::Float, true, false), s, s)
            }
        });
        let x = match grid {
            Some(g) => x.grid_sampler(&g, 0, 2, true),
            None => x,
        };
        Batch {
            x,
            y: p.y.to_device_(dev, Kind::Int64, true, false),
        }
    }
}

/// How many batches to prepare ahead on a background thread, for `device`.
///
/// On a GPU the CPU prepares the next batches while the GPU computes: 2. On a CPU whose every
/// core already runs a libtorch thread, a third busy thread only preempts them, and each
/// parallel kernel then waits for its slowest thread: preparing batches in turn is faster
/// (bench/RESULTS.md has the measurement). Spare cores: 2.
///
/// ```
/// assert_eq!(fastvision::data::loader::default_prefetch(tch::Device::Cuda(0)), 2);
/// ```
pub fn default_prefetch(device: Device) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if device.is_cuda() || cores > tch::get_num_threads().max(1) as usize {
        2
    } else {
        0
    }
}

/// The host half of one epoch's batches, in order: on the background thread, or on the
/// calling thread when `prefetch == 0`.
struct Batches {
    order: Vec<usize>,
    next: usize,
    n_batches: usize,
    bs: usize,
    dataset: Arc<ImageDataset>,
    tfms: Option<Transforms>,
    rng: ChaCha8Rng,
    device: Device,
    before_batch: Option<BatchTfm>,
}

impl Batches {
    /// Batch `b`, ready for the device: gathered, augmented on the host, the user's
    /// `before_batch` applied and, for a GPU, page-locked.
    fn prepare(&mut self, b: usize) -> Prepared {
        let idx = &self.order[b * self.bs..((b + 1) * self.bs).min(self.order.len())];
        let mut p = prepare_batch(
            &self.dataset,
            idx,
            self.tfms.as_ref(),
            &mut self.rng,
            self.device,
            self.dataset.random_crop && self.tfms.is_some(),
        );
        if let Some(f) = &self.before_batch {
            p.x = f.apply(p.x);
        }
        let device = self.device;
        if device.is_cuda() {
            // Page-locked, so the copy to the GPU can run asynchronously.
            p.x = p.x.pin_memory(device);
            p.y = p.y.pin_memory(device);
            p.warp = p.warp.map(|w| w.map(|t| t.pin_memory(device)));
        }
        p
    }
}

impl Iterator for Batches {
    type Item = Result<Prepared>;

    fn next(&mut self) -> Option<Result<Prepared>> {
        if self.next >= self.n_batches {
            return None;
        }
        let b = self.next;
        self.next += 1;
        // A panic here (a transform's, libtorch's) would otherwise end the epoch early with
        // nothing said: it becomes this batch's error, and the epoch stops after it.
        Some(
            catch_unwind(AssertUnwindSafe(|| self.prepare(b))).map_err(|payload| {
                self.next = self.n_batches;
                loader_error(b, self.n_batches, &panic_message(&*payload))
            }),
        )
    }
}

/// What a panic said, when it said it with a string (as `panic!` and `expect` do).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn loader_error(b: usize, n: usize, what: &str) -> Error {
    Error::Loader(format!(
        "the data loader failed while preparing batch {} of {n}: {what}. The epoch stopped \
         there rather than go on with fewer batches; fix the transform or data it names and \
         run again",
        b + 1
    ))
}

/// The batches of one epoch; dropping it early stops the background thread.
pub struct BatchIter {
    rx: Option<Receiver<Result<Prepared>>>,
    worker: Option<JoinHandle<()>>,
    inline: Option<Batches>,
    loader: DataLoader,
    received: usize,
    n_batches: usize,
    done: bool,
}

impl BatchIter {
    /// The next prepared batch, or an error saying why the worker gave none although the
    /// epoch has batches left.
    fn next_prepared(&mut self) -> Option<Result<Prepared>> {
        if let Some(batches) = self.inline.as_mut() {
            return batches.next();
        }
        match self.rx.as_ref()?.recv() {
            Ok(p) => Some(p),
            Err(_) if self.received >= self.n_batches => None,
            // The channel closed early without an error sent: the thread itself died.
            Err(_) => {
                let why = match self.worker.take().map(JoinHandle::join) {
                    Some(Err(payload)) => panic_message(&*payload),
                    _ => "its thread ended early".into(),
                };
                Some(Err(loader_error(self.received, self.n_batches, &why)))
            }
        }
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        let p = match self.next_prepared() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.done = true;
                return Some(Err(e));
            }
            None => return None,
        };
        self.received += 1;
        if p.y.size()[0] == 0 {
            return self.next();
        }
        Some(Ok(self.loader.finish(p)))
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel first lets a blocked worker see the hang-up and return.
        self.rx.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

//! `ImageDataBunch`: the lesson's data, from a folder of class folders or from a CSV of labels.
//!
//! The layout is checked up front and explained when wrong (an empty class, an empty split, a
//! `test/` folder that would silently become a class), and the split sizes are printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::files::{Depth, is_hidden, list_files};
use crate::data::image::{ResizeMethod, is_image_file};
use crate::data::loader::{DataLoader, ImageDataset, Storage};
use crate::data::transforms::{Stats, Transforms};
use crate::{Error, Result};

/// Options of [`ImageDataBunch::from_folder`] (and the CSV sources), with fastai's defaults,
/// set by name as fastai's keywords are.
///
/// ```
/// use fastvision::{FromFolder, get_transforms};
/// let opts = FromFolder::new("Training", "Test").size(100).tfms(get_transforms());
/// assert_eq!((opts.size, opts.bs, opts.train.as_str()), (100, 64, "Training"));
/// ```
#[derive(Debug, Clone)]
pub struct FromFolder {
    /// Training folder name under the path.
    pub train: String,
    /// Validation folder name under the path (ignored when `valid_pct` is set).
    pub valid: String,
    /// Instead of a validation folder, hold out this fraction of all images at random.
    pub valid_pct: Option<f64>,
    /// Seed for the random split, shuffling and augmentation.
    pub seed: u64,
    /// Images are made `size` x `size`, as `resize_method` says.
    pub size: u32,
    /// How photos of any shape become squares: cropped (at random for training, the centre
    /// for validation; fastai's default), squished or padded.
    pub resize_method: ResizeMethod,
    /// Batch size.
    pub bs: usize,
    /// Validation batch size; `None` = [`default_val_bs`] for the device.
    pub val_bs: Option<usize>,
    /// Training-set augmentation (`Some(get_transforms())` in the lesson).
    pub ds_tfms: Option<Transforms>,
    /// Threads decoding images; 0 = one per core.
    pub num_workers: usize,
    /// Most bytes of decoded images to keep in memory; above it images are decoded every epoch.
    pub memory_budget: u64,
    /// Device batches are put on; `None` = [`crate::default_device`].
    pub device: Option<tch::Device>,
}

impl Default for FromFolder {
    fn default() -> Self {
        FromFolder {
            train: "train".into(),
            valid: "valid".into(),
            valid_pct: None,
            seed: 42,
            size: 224,
            resize_method: ResizeMethod::Crop,
            bs: 64,
            val_bs: None,
            ds_tfms: None,
            num_workers: 0,
            memory_budget: 4 << 30,
            device: None,
        }
    }
}

/// The validation batch size for training batch size `bs` on `device`: `bs` on the CPU, where
/// a bigger batch is no faster; four times `bs` on a GPU. Validation keeps no activations for
/// a backward pass, so the larger batch fits in the memory training used, and a GPU pays
/// per batch (kernel launches, one copy in each direction), not per image.
///
/// ```
/// use fastvision::data::folder::default_val_bs;
/// assert_eq!(default_val_bs(64, tch::Device::Cpu), 64);
/// assert_eq!(default_val_bs(64, tch::Device::Cuda(0)), 256);
/// ```
pub fn default_val_bs(bs: usize, device: tch::Device) -> usize {
    if device.is_cuda() { bs * 4 } else { bs }
}

impl FromFolder {
    /// Images from the `train` and `valid` folders under the path, with the other options at
    /// fastai's defaults (`size` 224, `bs` 64, no augmentation).
    pub fn new(train: impl Into<String>, valid: impl Into<String>) -> Self {
        FromFolder {
            train: train.into(),
            valid: valid.into(),
            ..Default::default()
        }
    }

    /// Images are made `size` x `size` (fastai's `size=`).
    pub fn size(mut self, size: u32) -> Self {
        self.size = size;
        self
    }

    /// How photos become squares (fastai's `resize_method=`): [`ResizeMethod::Crop`],
    /// `Squish` or `Pad`.
    pub fn resize_method(mut self, method: ResizeMethod) -> Self {
        self.resize_method = method;
        self
    }

    /// Training-set augmentation (fastai's `ds_tfms=get_transforms()`).
    pub fn tfms(mut self, tfms: Transforms) -> Self {
        self.ds_tfms = Some(tfms);
        self
    }

    /// Batch size (fastai's `bs=`).
    pub fn bs(mut self, bs: usize) -> Self {
        self.bs = bs;
        self
    }

    /// Validation batch size (fastai's `val_bs=`) [default: [`default_val_bs`]].
    ///
    /// ```
    /// let opts = fastvision::FromFolder::default().bs(32).val_bs(256);
    /// assert_eq!((opts.bs, opts.val_bs), (32, Some(256)));
    /// ```
    pub fn val_bs(mut self, val_bs: usize) -> Self {
        self.val_bs = Some(val_bs);
        self
    }

    /// Holds out this fraction of all images at random instead of a validation folder
    /// (fastai's `valid_pct=`).
    ///
    /// ```
    /// let opts = fastvision::FromFolder::default().valid_pct(0.2).seed(7);
    /// assert_eq!((opts.valid_pct, opts.seed), (Some(0.2), 7));
    /// ```
    pub fn valid_pct(mut self, pct: f64) -> Self {
        self.valid_pct = Some(pct);
        self
    }

    /// Seed for the random split, shuffling and augmentation.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Threads decoding images (fastai's `num_workers=`); 0 = one per core.
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// Most bytes of decoded images kept in memory; above it images are decoded every epoch.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// The device batches are put on.
    pub fn device(mut self, device: tch::Device) -> Self {
        self.device = Some(device);
        self
    }
}

/// Training and validation data, ready for a learner: fastai's `ImageDataBunch`. Cloning is
/// cheap: the decoded images are shared.
#[derive(Debug, Clone)]
pub struct ImageDataBunch {
    /// The folder the data came from.
    pub path: PathBuf,
    /// Class names, sorted; labels index into this.
    pub classes: Vec<String>,
    /// Shuffled, augmented training batches (last incomplete batch dropped).
    pub train_dl: DataLoader,
    /// Validation batches in order, not augmented.
    pub valid_dl: DataLoader,
    /// The memory budget the decoded images were held to ([`FromFolder::memory_budget`]).
    pub memory_budget: u64,
}

/// Which of a data bunch's sets: fastai's `DatasetType`.
///
/// ```no_run
/// use fastvision::data::folder::DatasetType;
/// # let data: fastvision::ImageDataBunch = unimplemented!();
/// assert_eq!(data.dl(DatasetType::Valid).dataset.len(), data.valid_dl.dataset.len());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatasetType {
    /// The training set.
    Train,
    /// The validation set (the lesson's `Test` folder).
    #[default]
    Valid,
}

impl ImageDataBunch {
    /// The loader of `ds_type` (fastai's `data.dl(ds_type)`).
    pub fn dl(&self, ds_type: DatasetType) -> &DataLoader {
        match ds_type {
            DatasetType::Train => &self.train_dl,
            DatasetType::Valid => &self.valid_dl,
        }
    }
}

/// An image file and its label.
type Labelled = (PathBuf, String);

const SPLIT_NAMES: [&str; 7] = [
    "train",
    "training",
    "valid",
    "validation",
    "val",
    "test",
    "testing",
];

/// Every image file under `dir`, in its sub-folders too, hidden files left out; link loops are
/// warned about and not followed.
pub(crate) fn images_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let listing = list_files(dir, Depth::All, &[])?;
    for l in &listing.loops {
        log::warn!("{l}");
    }
    // Hidden files are never data (macOS leaves `._apple.jpg` beside `apple.jpg`).
    out.extend(
        listing
            .files
            .into_iter()
            .filter(|p| is_image_file(p) && !is_hidden(p)),
    );
    Ok(())
}

fn subfolders(dir: &Path) -> Vec<String> {
    let here = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // A link back to this folder or above it (`self -> .`) is a loop, not a class.
    let loops_back = |p: &Path| p.canonicalize().is_ok_and(|t| here.starts_with(t));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && !loops_back(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn describe(names: &[String]) -> String {
    if names.is_empty() {
        "no folders".into()
    } else if names.len() > 8 {
        format!("{} folders: {}, ...", names.len(), names[..8].join(", "))
    } else {
        names.join(", ")
    }
}

/// Images of one split folder, labelled by their parent folder's name.
fn labelled_images(split: &Path) -> Result<Vec<Labelled>> {
    let mut files = Vec::new();
    images_under(split, &mut files)?;
    let labelled: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let label = f.parent().and_then(|p| p.file_name()).unwrap_or_default();
            let label = label.to_string_lossy().into_owned();
            (f, label)
        })
        .collect();
    // Images sitting directly in the split folder would make the split's name a class.
    if let Some((f, _)) = labelled.iter().find(|(f, _)| f.parent() == Some(split)) {
        return Err(Error::InvalidArgument(format!(
            "{} holds images directly ({} and maybe more), but labels come from class folders: \
             put each image in a folder named after its class, e.g. {}/<class>/{}",
            split.display(),
            f.file_name().unwrap_or_default().to_string_lossy(),
            split.display(),
            f.file_name().unwrap_or_default().to_string_lossy()
        )));
    }
    Ok(labelled)
}

fn check_classes(split: &Path, labelled: &[(PathBuf, String)]) -> Result<()> {
    let with_images: BTreeSet<&str> = labelled.iter().map(|(_, l)| l.as_str()).collect();
    let folders = subfolders(split);
    if let Some(empty) = folders.iter().find(|f| !with_images.contains(f.as_str())) {
        return Err(Error::InvalidArgument(format!(
            "class folder {} has no images; remove it or add images (found classes: {})",
            split.join(empty).display(),
            describe(&folders)
        )));
    }
    if let Some(split_like) = with_images
        .iter()
        .find(|l| SPLIT_NAMES.contains(&l.to_ascii_lowercase().as_str()))
    {
        return Err(Error::InvalidArgument(format!(
            "{} would become a class named {split_like:?}, which looks like a split folder, not a \
             class. Pass the split folders' names (train/valid), or move it out of {}",
            split.join(split_like).display(),
            split.display()
        )));
    }
    Ok(())
}

impl ImageDataBunch {
    /// Loads labelled images from `path`: by default `path/<train>/<class>/*` and
    /// `path/<valid>/<class>/*`, or, with `valid_pct`, every image under `path` split at random.
    /// Labels are parent folder names; classes are sorted.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch, get_transforms, imagenet_stats};
    /// let data = ImageDataBunch::from_folder("data/fruits-360".as_ref(), FromFolder {
    ///     train: "Training".into(), valid: "Test".into(), size: 100,
    ///     ds_tfms: Some(get_transforms()), ..Default::default()
    /// }).unwrap().normalize(imagenet_stats).unwrap();
    /// assert_eq!(data.classes.len(), 131);
    /// ```
    pub fn from_folder(path: &Path, opts: FromFolder) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a folder; download the data first (download_kaggle_dataset, untar_data \
                 or generate_sample)",
                path.display()
            )));
        }
        let (train, valid) = match opts.valid_pct {
            Some(pct) => {
                let all = labelled_images(path)?;
                check_classes(path, &all)?;
                random_split(all, pct, opts.seed)?
            }
            None => {
                let found = subfolders(path);
                let split = |name: &str| -> Result<Vec<(PathBuf, String)>> {
                    let dir = path.join(name);
                    if !dir.is_dir() {
                        return Err(Error::InvalidArgument(format!(
                            "no folder {:?} in {} (found {}); pass the split folders' names \
                             (for Fruits 360: train \"Training\", valid \"Test\"), or set valid_pct \
                             to split at random",
                            name,
                            path.display(),
                            describe(&found)
                        )));
                    }
                    let items = labelled_images(&dir)?;
                    check_classes(&dir, &items)?;
                    Ok(items)
                };
                (split(&opts.train)?, split(&opts.valid)?)
            }
        };
        Self::from_items(path, train, valid, opts)
    }

    pub(crate) fn from_items(
        path: &Path,
        train: Vec<(PathBuf, String)>,
        valid: Vec<(PathBuf, String)>,
        opts: FromFolder,
    ) -> Result<Self> {
        for (name, split) in [("training", &train), ("validation", &valid)] {
            if split.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the {name} set of {} is empty: no images found (extensions read: {})",
                    path.display(),
                    crate::data::image::IMAGE_EXTENSIONS.join(", ")
                )));
            }
        }
        if opts.bs == 0 || opts.size == 0 || opts.val_bs == Some(0) {
            return Err(Error::InvalidArgument(format!(
                "bs, val_bs and size must be at least 1 (got bs={}, val_bs={:?}, size={})",
                opts.bs, opts.val_bs, opts.size
            )));
        }
        let classes: Vec<String> = train
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&str, i64> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as i64))
            .collect();
        if let Some((f, l)) = valid.iter().find(|(_, l)| !index.contains_key(l.as_str())) {
            return Err(Error::InvalidArgument(format!(
                "validation image {} has class {l:?}, which the training set does not have \
                 (training classes: {})",
                f.display(),
                describe(&classes)
            )));
        }
        let device = match opts.device {
            Some(d) => d,
            None => crate::default_device()?,
        };
        let total = (train.len() + valid.len()) as u64;
        // Decided from square images; photos kept for random crops can take more, and then
        // the training set falls back to decoding per batch by itself (ImageDataset::with_resize).
        let in_memory =
            total * ImageDataset::bytes_per_image(opts.size) as u64 <= opts.memory_budget;
        let storage = if in_memory {
            Storage::InMemory
        } else {
            Storage::OnTheFly
        };
        let make = |items: Vec<(PathBuf, String)>, train: bool, budget: u64| {
            let labels = items.iter().map(|(_, l)| index[l.as_str()]).collect();
            let files = items.into_iter().map(|(f, _)| f).collect();
            ImageDataset::with_resize(
                files,
                labels,
                opts.size,
                storage,
                opts.resize_method,
                train,
                budget,
            )
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.num_workers)
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("num_workers={}: {e}", opts.num_workers))
            })?;
        let (train_ds, valid_ds) = pool.install(|| {
            let valid_ds = make(valid, false, u64::MAX);
            let rest = opts
                .memory_budget
                .saturating_sub(valid_ds.in_memory_bytes() as u64);
            (make(train, true, rest), valid_ds)
        });
        let val_bs = opts
            .val_bs
            .unwrap_or_else(|| default_val_bs(opts.bs, device));
        let loader = |ds: ImageDataset, train: bool| DataLoader {
            dataset: Arc::new(ds),
            bs: if train { opts.bs } else { val_bs },
            shuffle: train,
            drop_last: train,
            tfms: if train { opts.ds_tfms } else { None },
            stats: None,
            device,
            seed: opts.seed,
            prefetch: crate::data::loader::default_prefetch(device),
            before_batch: None,
        };
        Ok(ImageDataBunch {
            path: path.to_path_buf(),
            classes,
            train_dl: loader(train_ds, true),
            valid_dl: loader(valid_ds, false),
            memory_budget: opts.memory_budget,
        })
    }

    /// Normalises every batch with `stats` (the lesson uses `imagenet_stats`). Calling it twice
    /// is an error, as in fastai, since it would normalise twice.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let data = data.normalize(fastvision::imagenet_stats).unwrap();
    /// ```
    pub fn normalize(mut self, stats: Stats) -> Result<Self> {
        if let Some(old) = self.stats() {
            return Err(Error::InvalidArgument(format!(
                "the data is already normalised (mean {:?}, std {:?}); call normalize once",
                old.mean, old.std
            )));
        }
        self.train_dl.stats = Some(stats);
        self.valid_dl.stats = Some(stats);
        Ok(self)
    }

    /// The normalisation of its batches, once [`ImageDataBunch::normalize`] has been called.
    /// Each loader normalises its own batches, so the stats live in the loaders, which
    /// `normalize` sets together; this reads them.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// let data = data.normalize(fastvision::imagenet_stats).unwrap();
    /// assert_eq!(data.stats().unwrap().mean, fastvision::imagenet_stats.mean);
    /// ```
    pub fn stats(&self) -> Option<Stats> {
        self.train_dl.stats
    }

    /// Number of classes.
    pub fn c(&self) -> usize {
        self.classes.len()
    }

    pub(crate) fn summary_line(&self) -> String {
        let t = &self.train_dl.dataset;
        let v = &self.valid_dl.dataset;
        let mb = |bytes: u64| bytes.div_ceil(1 << 20);
        let decoded = ((t.len() + v.len()) * ImageDataset::bytes_per_image(t.size)) as u64;
        let memory = if t.in_memory() {
            let held = (t.in_memory_bytes() + v.in_memory_bytes()) as u64;
            format!("decoded into memory ({} MB)", mb(held))
        } else {
            format!(
                "decoded every epoch: the decoded images ({} MB) are over the memory budget \
                 ({} MB); raise it with FromFolder::memory_budget to decode once",
                mb(decoded),
                mb(self.memory_budget)
            )
        };
        format!(
            "ImageDataBunch {}: {} classes, {} train / {} valid images, {}px, bs {}, {}, on {}",
            self.path.display(),
            self.c(),
            t.len(),
            v.len(),
            t.size,
            self.train_dl.bs,
            memory,
            crate::device::device_name(self.train_dl.device)
        )
    }
}

/// Shuffles with `seed` and holds out the first `pct` of items, as fastai's random split does.
pub(crate) fn random_split(
    mut items: Vec<(PathBuf, String)>,
    pct: f64,
    seed: u64,
) -> Result<(Vec<Labelled>, Vec<Labelled>)> {
    if !(0.0..1.0).contains(&pct) || pct == 0.0 {
        return Err(Error::InvalidArgument(format!(
            "valid_pct must be between 0 and 1 (exclusive), got {pct}"
        )));
    }
    items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_valid = (pct * items.len() as f64) as usize;
    let train = items.split_off(n_valid);
    Ok((train, items))
}

pub use super::summary::DataSummary;

//! Datasets and loaders: images decoded once in parallel and kept in memory when they fit,
//! batches gathered on a background thread while the model works on the previous one, then
//! moved to the device (pinned memory and non-blocking copies on CUDA), augmented and
//! normalised there.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::data::image::load_rgb;
use crate::data::transforms::{Stats, Transforms};

/// Labelled image files of one split, with their pixels when they were decoded up front.
#[derive(Debug)]
pub struct ImageDataset {
    /// Image files.
    pub items: Vec<PathBuf>,
    /// Class index of each item.
    pub labels: Vec<i64>,
    /// Side of the square images, in pixels.
    pub size: u32,
    /// All images as `[N, size, size, 3]` u8, when kept in memory.
    pixels: Option<Vec<u8>>,
}

impl ImageDataset {
    /// Builds a dataset; with `in_memory`, decodes every image now, in parallel, dropping (with a
    /// warning naming it) any that cannot be read.
    pub fn new(items: Vec<PathBuf>, labels: Vec<i64>, size: u32, in_memory: bool) -> Self {
        let mut ds = ImageDataset {
            items,
            labels,
            size,
            pixels: None,
        };
        if in_memory {
            let per = Self::bytes_per_image(size);
            let decoded: Vec<Option<Vec<u8>>> = ds
                .items
                .par_iter()
                .map(|p| match load_rgb(p, size) {
                    Ok(img) => Some(img.into_raw()),
                    Err(e) => {
                        eprintln!("warning: skipping {e}");
                        None
                    }
                })
                .collect();
            let keep: Vec<bool> = decoded.iter().map(Option::is_some).collect();
            let mut pixels = Vec::with_capacity(per * keep.iter().filter(|k| **k).count());
            for img in decoded.into_iter().flatten() {
                pixels.extend_from_slice(&img);
            }
            let mut k = keep.iter();
            ds.items.retain(|_| *k.next().unwrap());
            let mut k = keep.iter();
            ds.labels.retain(|_| *k.next().unwrap());
            ds.pixels = Some(pixels);
        }
        ds
    }

    /// Bytes one decoded image takes in memory.
    pub fn bytes_per_image(size: u32) -> usize {
        size as usize * size as usize * 3
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

    /// The RGB pixels (HWC) of item `i`: from memory, or decoded now. None if unreadable.
    pub fn pixels(&self, i: usize) -> Option<std::borrow::Cow<'_, [u8]>> {
        let per = Self::bytes_per_image(self.size);
        match &self.pixels {
            Some(all) => Some(std::borrow::Cow::Borrowed(&all[i * per..(i + 1) * per])),
            None => match load_rgb(&self.items[i], self.size) {
                Ok(img) => Some(std::borrow::Cow::Owned(img.into_raw())),
                Err(e) => {
                    eprintln!("warning: skipping {e}");
                    None
                }
            },
        }
    }

    /// A u8 batch `[B, H, W, 3]` of the given items and their labels, skipping unreadable ones.
    pub fn gather(&self, idx: &[usize]) -> (Tensor, Tensor) {
        let per = Self::bytes_per_image(self.size);
        let got: Vec<(usize, std::borrow::Cow<'_, [u8]>)> = if self.in_memory() {
            idx.iter()
                .filter_map(|&i| Some((i, self.pixels(i)?)))
                .collect()
        } else {
            idx.par_iter()
                .filter_map(|&i| Some((i, self.pixels(i)?)))
                .collect()
        };
        let mut buf = Vec::with_capacity(per * got.len());
        let mut labels = Vec::with_capacity(got.len());
        for (i, px) in &got {
            buf.extend_from_slice(px);
            labels.push(self.labels[*i]);
        }
        let s = self.size as i64;
        let x = Tensor::from_slice(&buf).view([got.len() as i64, s, s, 3]);
        (x, Tensor::from_slice(&labels))
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
    /// Batches prepared ahead on the background thread.
    pub prefetch: usize,
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

    /// The batches of epoch `epoch`, prepared one ahead on a background thread.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// for batch in data.train_dl.epoch(0) {
    ///     assert_eq!(batch.x.size()[1], 3);
    /// }
    /// ```
    pub fn epoch(&self, epoch: u64) -> BatchIter {
        let order = self.order(epoch);
        let n_batches = self.len();
        let bs = self.bs;
        let ds = Arc::clone(&self.dataset);
        let device = self.device;
        let (tx, rx) = sync_channel(self.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            for b in 0..n_batches {
                let idx = &order[b * bs..((b + 1) * bs).min(order.len())];
                let (x, y) = ds.gather(idx);
                let (x, y) = if device.is_cuda() {
                    (x.pin_memory(device), y.pin_memory(device))
                } else {
                    (x, y)
                };
                if tx.send((x, y)).is_err() {
                    return;
                }
            }
        });
        BatchIter {
            rx: Some(rx),
            worker: Some(worker),
            loader: self.clone(),
            rng: ChaCha8Rng::seed_from_u64(self.seed.rotate_left(13) ^ epoch.wrapping_add(1)),
        }
    }

    /// Moves a u8 `[B, H, W, 3]` batch to the device and makes it model input: float in [0, 1],
    /// channels first, augmented when this loader augments, then normalised.
    pub fn prepare(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
        let x = x
            .to_device_(self.device, Kind::Uint8, true, false)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0;
        let x = match &self.tfms {
            Some(t) => t.apply(&x, rng),
            None => x,
        };
        match &self.stats {
            Some(s) => s.norm(&x),
            None => x,
        }
    }
}

/// The batches of one epoch; dropping it early stops the background thread.
pub struct BatchIter {
    rx: Option<Receiver<(Tensor, Tensor)>>,
    worker: Option<JoinHandle<()>>,
    loader: DataLoader,
    rng: ChaCha8Rng,
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let (x, y) = self.rx.as_ref()?.recv().ok()?;
        if x.size()[0] == 0 {
            return self.next();
        }
        let x = self.loader.prepare(&x, &mut self.rng);
        let y = y.to_device_(self.loader.device, Kind::Int64, true, false);
        Some(Batch { x, y })
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

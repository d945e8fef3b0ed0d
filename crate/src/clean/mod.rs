//! After the lesson, the data itself: fastai v1 lesson 2's cleaning tools. [`cleaner`] shows
//! the images the model finds hardest and records relabels and deletions into `cleaned.csv`
//! (fastai's `DatasetFormatter().from_toplosses` and `ImageCleaner`); [`similars`] finds
//! near-duplicate pairs (`DatasetFormatter().from_similars`); [`leakage`] finds validation
//! images with a near-twin in the training set, which flatter the validation error.
//!
//! Each compares images by the model's pooled body features
//! ([`crate::models::Model::features`]).

pub mod cleaner;
pub mod leakage;
pub mod similars;

pub use cleaner::{DatasetFormatter, ImageCleaner, Items};
pub use leakage::Leakage;
pub use similars::Similars;

use crate::data::loader::DataLoader;

/// `dl` in item order, unaugmented, every item kept: what features and predictions of a
/// whole set are computed over.
pub(crate) fn plain(dl: &DataLoader) -> DataLoader {
    DataLoader {
        shuffle: false,
        drop_last: false,
        tfms: None,
        before_batch: None,
        ..dl.clone()
    }
}

/// Rows of `a` (unit vectors `[N, C]`) against rows of `b` (`[M, C]`): for each row of `a`,
/// its `k` most similar rows of `b` (cosine similarities and indices, `[N, k]`, most similar
/// first), computed in blocks of rows on the features' device so the `N x M` matrix is never
/// held whole. `exclude_self` skips the same index (for `a == b`).
pub(crate) fn nearest(
    a: &tch::Tensor,
    b: &tch::Tensor,
    k: i64,
    exclude_self: bool,
) -> (tch::Tensor, tch::Tensor) {
    const CHUNK: i64 = 2048;
    let n = a.size()[0];
    let (mut sims, mut idxs) = (Vec::new(), Vec::new());
    let bt = b.tr();
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        let mut s = tch::no_grad(|| a.narrow(0, start, len).matmul(&bt));
        if exclude_self {
            let rows =
                tch::Tensor::arange_start(start, start + len, (tch::Kind::Int64, s.device()));
            let _ = s.index_put_(
                &[
                    Some(tch::Tensor::arange(len, (tch::Kind::Int64, s.device()))),
                    Some(rows),
                ],
                &tch::Tensor::from(-2.0f32).to_device(s.device()),
                false,
            );
        }
        let (v, i) = s.topk(k.min(s.size()[1]), 1, true, true);
        sims.push(v);
        idxs.push(i);
        start += len;
    }
    let cpu = |p: Vec<tch::Tensor>| tch::Tensor::cat(&p, 0).to_device(tch::Device::Cpu);
    (cpu(sims), cpu(idxs))
}

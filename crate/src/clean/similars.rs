//! Near-duplicates within a set: fastai's `DatasetFormatter().from_similars(learn)`, pairs of
//! images whose pooled body features are nearly the same (cosine similarity).

use std::path::PathBuf;

use image::RgbImage;
use polars::prelude::*;
use tch::Kind;

use crate::data::folder::DatasetType;
use crate::learner::Learner;
use crate::show::Figure;
use crate::show::grid::image_grid_titled;
use crate::{Error, Result};

/// The most similar pairs of a set, most similar first.
#[derive(Debug, Clone)]
pub struct Similars {
    /// The set's image files.
    pub files: Vec<PathBuf>,
    /// The set's labels, as class names.
    pub labels: Vec<String>,
    /// `(i, j, cosine similarity)` with `i < j`, most similar first.
    pub pairs: Vec<(usize, usize, f32)>,
}

impl Similars {
    /// The `n` most similar pairs of images in the `ds_type` set, each pair once (fastai's
    /// `from_similars`). Every image is compared with every other, by blocks.
    ///
    /// ```no_run
    /// use fastvision::clean::Similars;
    /// use fastvision::data::folder::DatasetType;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let sims = Similars::from_learner(&learn, DatasetType::Train, 20).unwrap();
    /// sims.plot(8).unwrap();
    /// ```
    pub fn from_learner(learn: &Learner, ds_type: DatasetType, n: usize) -> Result<Self> {
        let dl = super::plain(learn.data.dl(ds_type));
        let f = learn.model.features(&dl, true)?;
        // A pair among the n most similar is among the n nearest of both its images, so each
        // image's n nearest hold them all; a pair appears from both ends and is kept once.
        let k = n.max(1) as i64;
        let (sim, idx) = super::nearest(&f, &f, k, true);
        let k = sim.size()[1] as usize;
        let sim: Vec<f32> = Vec::try_from(sim.to_kind(Kind::Float).flatten(0, -1))?;
        let idx: Vec<i64> = Vec::try_from(idx.flatten(0, -1))?;
        let mut pairs: Vec<(usize, usize, f32)> = sim
            .iter()
            .zip(&idx)
            .enumerate()
            .map(|(r, (&s, &j))| {
                let i = r / k;
                (i.min(j as usize), i.max(j as usize), s)
            })
            .filter(|p| p.0 != p.1)
            .collect();
        pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        // The same pair from its two ends may differ in the last bit of its similarity.
        let mut seen = std::collections::HashSet::new();
        pairs.retain(|p| seen.insert((p.0, p.1)));
        pairs.truncate(n);
        let classes = &learn.data.classes;
        Ok(Similars {
            files: dl.dataset.items.clone(),
            labels: dl
                .dataset
                .labels
                .iter()
                .map(|&l| classes[l as usize].clone())
                .collect(),
            pairs,
        })
    }

    /// The pairs as a table: both files, both labels and their similarity.
    pub fn df(&self) -> DataFrame {
        let col = |f: &dyn Fn(&(usize, usize, f32)) -> String| -> Vec<String> {
            self.pairs.iter().map(f).collect()
        };
        df!(
            "file_a" => col(&|p| self.files[p.0].display().to_string()),
            "label_a" => col(&|p| self.labels[p.0].clone()),
            "file_b" => col(&|p| self.files[p.1].display().to_string()),
            "label_b" => col(&|p| self.labels[p.1].clone()),
            "similarity" => self.pairs.iter().map(|p| p.2).collect::<Vec<f32>>()
        )
        .expect("columns of one length")
    }

    /// The first `n` pairs side by side, each titled with its label and the similarity.
    pub fn plot(&self, n: usize) -> Result<Figure> {
        plot_pairs(
            &self.files,
            &self.files,
            self.pairs
                .iter()
                .take(n)
                .map(|&(i, j, s)| (i, j, s, self.labels[i].clone(), self.labels[j].clone())),
            "Most similar pairs",
        )
    }

    /// Shows the pairs' table in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::table::display(
            &self.df(),
            Some("Most similar pairs (cosine similarity of pooled features)"),
        );
    }
}

/// Pairs `(a index, b index, similarity, a title, b title)` drawn two images to a pair, two
/// pairs to a row.
pub(crate) fn plot_pairs(
    files_a: &[PathBuf],
    files_b: &[PathBuf],
    pairs: impl Iterator<Item = (usize, usize, f32, String, String)>,
    title: &str,
) -> Result<Figure> {
    let mut cells: Vec<(RgbImage, String)> = Vec::new();
    for (i, j, s, ta, tb) in pairs {
        for (file, t) in [(&files_a[i], ta), (&files_b[j], tb)] {
            let img =
                crate::data::image::load_rgb_with(file, 128, crate::data::image::Decode::Lenient)?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            cells.push((img, format!("{t}\n{name}\nsimilarity {s:.3}")));
        }
    }
    if cells.is_empty() {
        return Err(Error::InvalidArgument("no pairs to show".into()));
    }
    let n_rows = cells.len().div_ceil(4) as f64;
    image_grid_titled(&cells, 4, (12.0, 3.6 * n_rows + 0.5), Some(title))
}

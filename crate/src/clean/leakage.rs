//! Leakage between the training and validation sets. Fruits 360's images are frames of one
//! video per fruit, so many validation images have a near-twin in the training set, and the
//! validation error then says more about recognising frames already seen than about a new
//! photo of a fruit. For every validation image this finds its nearest training image by
//! pooled body features (one batched matrix product on the model's device), and splits the
//! validation error into the leaked and the unleaked part.

use std::path::PathBuf;

use polars::prelude::*;
use tch::Kind;

use crate::clean::similars::plot_pairs;
use crate::learner::Learner;
use crate::show::Figure;
use crate::{Error, Result};

/// Each validation image's nearest training image, and what that says about the validation
/// error.
#[derive(Debug, Clone)]
pub struct Leakage {
    /// Validation image files.
    pub valid_files: Vec<PathBuf>,
    /// Their labels, as class names.
    pub valid_labels: Vec<String>,
    /// Training image files.
    pub train_files: Vec<PathBuf>,
    /// Their labels, as class names.
    pub train_labels: Vec<String>,
    /// For each validation image, its nearest training image's index.
    pub nearest: Vec<usize>,
    /// For each validation image, the cosine similarity to that image.
    pub similarity: Vec<f32>,
    /// For each validation image, whether the model gets it wrong.
    pub wrong: Vec<bool>,
    /// Similarity from which a validation image counts as leaked.
    pub threshold: f32,
}

/// The similarity from which a validation image counts as a near-twin of a training image.
/// A copy of a training image after a flip and a small crop stays above it, and another
/// fruit stays below it (crate/tests/after_lesson.rs holds both).
pub const DEFAULT_THRESHOLD: f32 = 0.9;

impl Learner {
    /// Finds, for each validation image, its nearest training image ([`Leakage`]).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let leak = learn.leakage().unwrap();
    /// println!("{:.1}% of the validation set has a near-twin in training", 100.0 * leak.share_leaked());
    /// let (leaked, unleaked) = leak.error_rates();
    /// ```
    pub fn leakage(&self) -> Result<Leakage> {
        Leakage::from_learner(self)
    }
}

impl Leakage {
    /// See [`Learner::leakage`].
    pub fn from_learner(learn: &Learner) -> Result<Self> {
        let train = super::plain(&learn.data.train_dl);
        let valid = super::plain(&learn.data.valid_dl);
        let ft = learn.model.features(&train, true)?;
        let fv = learn.model.features(&valid, true)?;
        let (sim, idx) = super::nearest(&fv, &ft, 1, false);
        let (probs, targets, _) = learn.get_preds(&valid)?;
        let wrong: Vec<bool> = Vec::try_from(probs.argmax(-1, false).ne_tensor(&targets))?;
        let classes = &learn.data.classes;
        let names = |l: &[i64]| l.iter().map(|&l| classes[l as usize].clone()).collect();
        Ok(Leakage {
            valid_files: valid.dataset.items.clone(),
            valid_labels: names(&valid.dataset.labels),
            train_files: train.dataset.items.clone(),
            train_labels: names(&train.dataset.labels),
            nearest: Vec::<i64>::try_from(idx.squeeze_dim(1))?
                .into_iter()
                .map(|i| i as usize)
                .collect(),
            similarity: Vec::try_from(sim.squeeze_dim(1).to_kind(Kind::Float))?,
            wrong,
            threshold: DEFAULT_THRESHOLD,
        })
    }

    /// The same search judged at another threshold.
    ///
    /// ```no_run
    /// # let leak: fastvision::clean::Leakage = unimplemented!();
    /// let strict = leak.clone().with_threshold(0.98);
    /// assert!(strict.n_leaked() <= leak.n_leaked());
    /// ```
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Whether validation image `i` has a training image at least `threshold` similar.
    pub fn is_leaked(&self, i: usize) -> bool {
        self.similarity[i] >= self.threshold
    }

    /// How many validation images are leaked.
    pub fn n_leaked(&self) -> usize {
        (0..self.similarity.len())
            .filter(|&i| self.is_leaked(i))
            .count()
    }

    /// The share of validation images that are leaked.
    pub fn share_leaked(&self) -> f64 {
        self.n_leaked() as f64 / self.similarity.len().max(1) as f64
    }

    /// The error rate on the leaked validation images and on the others (`None` for a part
    /// with no images).
    pub fn error_rates(&self) -> (Option<f64>, Option<f64>) {
        let rate = |leaked: bool| {
            let part: Vec<bool> = (0..self.wrong.len())
                .filter(|&i| self.is_leaked(i) == leaked)
                .map(|i| self.wrong[i])
                .collect();
            (!part.is_empty())
                .then(|| part.iter().filter(|w| **w).count() as f64 / part.len() as f64)
        };
        (rate(true), rate(false))
    }

    /// The summary as a table: part, images, share and error rate, for the leaked, unleaked
    /// and whole validation set.
    pub fn summary_df(&self) -> DataFrame {
        let n = self.similarity.len();
        let leaked = self.n_leaked();
        let (e_leaked, e_unleaked) = self.error_rates();
        let errors = self.wrong.iter().filter(|w| **w).count() as f64;
        df!(
            "part" => [
                format!("similarity ≥ {:.2} (leaked)", self.threshold),
                format!("similarity < {:.2}", self.threshold),
                "whole validation set".to_string(),
            ],
            "images" => [leaked as u64, (n - leaked) as u64, n as u64],
            "share" => [self.share_leaked(), 1.0 - self.share_leaked(), 1.0],
            "error_rate" => [e_leaked, e_unleaked, Some(errors / n.max(1) as f64)]
        )
        .expect("columns of one length")
    }

    /// Every validation image with its nearest training image and their similarity, most
    /// similar first.
    pub fn df(&self) -> DataFrame {
        let mut order: Vec<usize> = (0..self.similarity.len()).collect();
        order.sort_by(|&a, &b| self.similarity[b].total_cmp(&self.similarity[a]));
        df!(
            "valid_file" => order.iter().map(|&i| self.valid_files[i].display().to_string()).collect::<Vec<_>>(),
            "valid_label" => order.iter().map(|&i| self.valid_labels[i].clone()).collect::<Vec<_>>(),
            "train_file" => order.iter().map(|&i| self.train_files[self.nearest[i]].display().to_string()).collect::<Vec<_>>(),
            "train_label" => order.iter().map(|&i| self.train_labels[self.nearest[i]].clone()).collect::<Vec<_>>(),
            "similarity" => order.iter().map(|&i| self.similarity[i]).collect::<Vec<f32>>(),
            "wrong" => order.iter().map(|&i| self.wrong[i]).collect::<Vec<bool>>()
        )
        .expect("columns of one length")
    }

    /// The `n` validation images closest to a training image, each beside that image.
    pub fn plot_closest(&self, n: usize) -> Result<Figure> {
        self.plot_at(
            n,
            0,
            "The validation images closest to a training image (the most certain leaks)",
        )
    }

    /// `n` pairs from the middle of the ranking: validation images just above or at the
    /// threshold, to judge where it sits.
    pub fn plot_at_threshold(&self, n: usize) -> Result<Figure> {
        let above = self.n_leaked();
        let title = format!(
            "Validation images around the threshold ({:.2}): the last counted as leaked, then the first not",
            self.threshold
        );
        self.plot_at(n, above.saturating_sub(n / 2), &title)
    }

    fn plot_at(&self, n: usize, skip: usize, title: &str) -> Result<Figure> {
        if self.similarity.is_empty() {
            return Err(Error::InvalidArgument("no validation images".into()));
        }
        let mut order: Vec<usize> = (0..self.similarity.len()).collect();
        order.sort_by(|&a, &b| self.similarity[b].total_cmp(&self.similarity[a]));
        let pairs = order.into_iter().skip(skip).take(n).map(|i| {
            (
                i,
                self.nearest[i],
                self.similarity[i],
                format!("valid: {}", self.valid_labels[i]),
                format!("train: {}", self.train_labels[self.nearest[i]]),
            )
        });
        plot_pairs(&self.valid_files, &self.train_files, pairs, title)
    }

    /// Shows the summary table in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::table::display(
            &self.summary_df(),
            Some("Validation images with a near-twin in the training set"),
        );
    }
}

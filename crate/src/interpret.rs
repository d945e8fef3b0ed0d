//! `ClassificationInterpretation`: what the model gets wrong, and why. Top losses (as a table
//! and as a grid with Grad-CAM heatmaps), a confusion matrix that stays readable at 131
//! classes, and the most confused pairs.

use std::fmt;
use std::path::PathBuf;

use image::RgbImage;
use polars::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::data::loader::DataLoader;
use crate::learner::Learner;
use crate::learner::tta::Tta;
use crate::models::Model;
use crate::show::Figure;
use crate::show::colors::overlay_heatmap;
use crate::show::grid::{batch_to_images, image_grid_titled};
use crate::{Error, Result};

mod confusion;
pub use confusion::{ConfusionPlot, plot_confusion};

/// Predictions on a split, with its own copy of the model for heatmaps.
pub struct ClassificationInterpretation {
    /// Softmax probabilities `[N, C]` (CPU).
    pub probs: Tensor,
    /// Actual classes `[N]`.
    pub y_true: Tensor,
    /// Predicted classes `[N]`.
    pub pred_class: Tensor,
    /// Cross-entropy of each item `[N]`.
    pub losses: Tensor,
    /// The image file of each item.
    pub items: Vec<PathBuf>,
    /// Class names.
    pub classes: Vec<String>,
    model: Model,
    dl: DataLoader,
}

impl fmt::Debug for ClassificationInterpretation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClassificationInterpretation({} items, {} classes, {} errors)",
            self.items.len(),
            self.classes.len(),
            self.n_errors()
        )
    }
}

/// Options of [`ClassificationInterpretation::plot_top_losses_with`], with fastai's defaults.
///
/// ```
/// use fastvision::interpret::TopLosses;
/// let opts = TopLosses { heatmap: true, ..Default::default() };
/// assert_eq!(opts.alpha, 0.6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopLosses {
    /// Overlay each image with its Grad-CAM map for the predicted class.
    pub heatmap: bool,
    /// Opacity of the heatmap where it is hottest (fastai's `alpha`); cooler parts are
    /// fainter, so the photo shows through ([`crate::show::colors::overlay_heatmap`]).
    pub alpha: f64,
}

impl Default for TopLosses {
    fn default() -> Self {
        TopLosses {
            heatmap: false,
            alpha: 0.6,
        }
    }
}

impl TopLosses {
    /// The defaults with the Grad-CAM heatmap on (fastai's `heatmap=True`).
    ///
    /// ```
    /// let opts = fastvision::interpret::TopLosses::heatmap();
    /// assert!(opts.heatmap && opts.alpha == 0.6);
    /// ```
    pub fn heatmap() -> Self {
        TopLosses {
            heatmap: true,
            ..Default::default()
        }
    }
}

/// (actual, predicted, count) pairs from [`ClassificationInterpretation::most_confused`].
#[derive(Debug, Clone, PartialEq)]
pub struct MostConfused(pub Vec<(String, String, i64)>);

impl ClassificationInterpretation {
    /// Interprets the learner on its validation set (the lesson's `Test` folder).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let interp = fastvision::ClassificationInterpretation::from_learner(&learn).unwrap();
    /// interp.plot_top_losses(9, (15.0, 11.0)).unwrap();
    /// ```
    pub fn from_learner(learn: &Learner) -> Result<Self> {
        Self::from_learner_on(learn, &learn.data.valid_dl)
    }

    /// Interprets the learner on any loader of its data (for example the training set).
    pub fn from_learner_on(learn: &Learner, dl: &DataLoader) -> Result<Self> {
        let (probs, y_true, losses) = learn.get_preds(dl)?;
        Self::from_preds(&learn.model, dl, probs, y_true, losses)
    }

    /// Like [`ClassificationInterpretation::from_learner`], on predictions with test-time
    /// augmentation ([`Learner::tta_with`], fastai v1's `from_learner(learn, tta=True)`); the
    /// losses are recomputed from them.
    ///
    /// ```no_run
    /// use fastvision::learner::tta::Tta;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let interp = fastvision::ClassificationInterpretation::from_learner_tta(&learn, Tta::default()).unwrap();
    /// ```
    pub fn from_learner_tta(learn: &Learner, opts: Tta) -> Result<Self> {
        let (probs, y_true) = learn.tta_with(opts)?;
        let losses = -probs
            .gather(1, &y_true.unsqueeze(1), false)
            .squeeze_dim(1)
            .clamp_min(1e-12)
            .log();
        Self::from_preds(
            &learn.model,
            learn.data.dl(opts.ds_type),
            probs,
            y_true,
            losses,
        )
    }

    fn from_preds(
        learn: &Model,
        dl: &DataLoader,
        probs: Tensor,
        y_true: Tensor,
        losses: Tensor,
    ) -> Result<Self> {
        let pred_class = probs.argmax(-1, false);
        // A private copy of the model (one copy of each weight), so the interpretation stands
        // alone in a notebook cell while the learner trains on.
        let model = learn.copy()?;
        Ok(ClassificationInterpretation {
            probs,
            y_true,
            pred_class,
            losses,
            items: dl.dataset.items.clone(),
            classes: learn.classes.clone(),
            model,
            dl: dl.clone(),
        })
    }

    /// The interpretation's own copy of the model, the one its heatmaps use (fastai's
    /// `interp.learn.model`): the learner may train on while the interpretation stays as it was.
    ///
    /// ```no_run
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// println!("{:?}", interp.model());
    /// ```
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of wrong predictions.
    pub fn n_errors(&self) -> i64 {
        self.pred_class
            .ne_tensor(&self.y_true)
            .sum(Kind::Int64)
            .int64_value(&[])
    }

    /// Every item's loss and index, largest loss first: the lesson's
    /// `losses, idxs = interp.top_losses()`.
    ///
    /// ```no_run
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// let (losses, idxs) = interp.top_losses();
    /// assert_eq!(losses.size(), idxs.size());
    /// ```
    pub fn top_losses(&self) -> (Tensor, Tensor) {
        self.top_losses_k(self.losses.size()[0] as usize)
    }

    /// The item with the `rank`-th largest loss (0: the largest): its index, its file and its
    /// loss, so a cell names it without tensor indexing. The file is the path itself, not a
    /// borrow of the interpretation, so a notebook cell can keep it in a `let` (evcxr keeps a
    /// cell's variables for the next cells only when they borrow nothing).
    ///
    /// ```no_run
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// let (i, file, loss) = interp.top_loss(0).unwrap();
    /// println!("largest loss {loss:.2}, item {i} ({})", file.display());
    /// ```
    pub fn top_loss(&self, rank: usize) -> Option<(usize, std::path::PathBuf, f64)> {
        let (losses, idxs) = self.top_losses_k(rank + 1);
        let r = rank as i64;
        if losses.size()[0] <= r {
            return None;
        }
        let i = idxs.int64_value(&[r]) as usize;
        Some((i, self.items[i].clone(), losses.double_value(&[r])))
    }

    /// The `k` largest losses and their item indices, largest first (fastai's
    /// `top_losses(k)`).
    pub fn top_losses_k(&self, k: usize) -> (Tensor, Tensor) {
        let k = (k as i64).min(self.losses.size()[0]);
        self.losses.topk(k, -1, true, true)
    }

    /// The top losses as a table: file, actual, predicted, loss, P(actual), P(predicted).
    pub fn top_losses_df(&self, k: usize) -> DataFrame {
        let (losses, idx) = self.top_losses_k(k);
        let idx: Vec<i64> = Vec::try_from(&idx).expect("int64 indices");
        let losses: Vec<f64> = Vec::try_from(&losses.to_kind(Kind::Double)).expect("losses");
        let actual: Vec<i64> = idx.iter().map(|&i| self.y_true.int64_value(&[i])).collect();
        let pred: Vec<i64> = idx
            .iter()
            .map(|&i| self.pred_class.int64_value(&[i]))
            .collect();
        df!(
            "file" => idx.iter().map(|&i| self.items[i as usize].display().to_string()).collect::<Vec<_>>(),
            "actual" => actual.iter().map(|&c| self.classes[c as usize].clone()).collect::<Vec<_>>(),
            "predicted" => pred.iter().map(|&c| self.classes[c as usize].clone()).collect::<Vec<_>>(),
            "loss" => losses,
            "P(actual)" => idx.iter().zip(&actual).map(|(&i, &c)| self.probs.double_value(&[i, c])).collect::<Vec<_>>(),
            "P(predicted)" => idx.iter().zip(&pred).map(|(&i, &c)| self.probs.double_value(&[i, c])).collect::<Vec<_>>(),
        )
        .expect("equal-length columns")
    }

    /// Grad-CAM heatmaps for a normalised batch and one class per image
    /// ([`Model::gradcam`]).
    pub fn gradcam(&self, x: &Tensor, classes: &[i64]) -> Result<Tensor> {
        self.model.gradcam(x, classes)
    }

    /// A grid of the `k` images with the highest loss, each titled with the predicted and
    /// actual class, the loss and the probability of the actual class, on a figure of up to
    /// `figsize` inches. If there are no mistakes the grid shows the `k` least certain
    /// predictions and says so.
    ///
    /// ```no_run
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// interp.plot_top_losses(9, (15.0, 11.0)).unwrap().save("top_losses.png".as_ref()).unwrap();
    /// ```
    pub fn plot_top_losses(&self, k: usize, figsize: (f64, f64)) -> Result<Figure> {
        self.plot_top_losses_with(k, figsize, TopLosses::default())
    }

    /// [`ClassificationInterpretation::plot_top_losses`] with options. With `heatmap`, each
    /// image is overlaid with its Grad-CAM map for the *predicted* class, which shows what the
    /// model looked at when it made the mistake (a map with no positive evidence is left off).
    ///
    /// ```no_run
    /// use fastvision::interpret::TopLosses;
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// let fig = interp.plot_top_losses_with(9, (15.0, 11.0), TopLosses::heatmap());
    /// ```
    pub fn plot_top_losses_with(
        &self,
        k: usize,
        figsize: (f64, f64),
        opts: TopLosses,
    ) -> Result<Figure> {
        let heatmap = opts.heatmap;
        if k == 0 || self.items.is_empty() {
            return Err(Error::InvalidArgument(
                "plot_top_losses: k must be at least 1 and the split non-empty".into(),
            ));
        }
        let (losses, idx) = self.top_losses_k(k);
        let idx: Vec<i64> = Vec::try_from(&idx).expect("int64 indices");
        let losses: Vec<f64> = Vec::try_from(&losses.to_kind(Kind::Double)).expect("losses");
        let idx_usize: Vec<usize> = idx.iter().map(|&i| i as usize).collect();
        // Decode only the images shown, with the validation transforms.
        let batch = self.dl.batch_of(&idx_usize, false);
        let actual: Vec<i64> = idx.iter().map(|&i| self.y_true.int64_value(&[i])).collect();
        let x01 = match &self.model.stats {
            Some(s) => s.denorm(&batch.x),
            None => batch.x.shallow_clone(),
        };
        let mut images = batch_to_images(&x01);
        if heatmap {
            let predicted: Vec<i64> = idx
                .iter()
                .map(|&i| self.pred_class.int64_value(&[i]))
                .collect();
            let cams = self.gradcam(&batch.x, &predicted)?.to_device(Device::Cpu);
            for (i, img) in images.iter_mut().enumerate() {
                let cam = cams.get(i as i64);
                if cam.max().double_value(&[]) > 0.0 {
                    let values: Vec<f32> =
                        Vec::try_from(cam.contiguous().view([-1])).expect("float map");
                    overlay_heatmap(img, &values, opts.alpha);
                }
            }
        }
        let cells: Vec<(RgbImage, String)> = images
            .into_iter()
            .enumerate()
            .map(|(j, img)| {
                let i = idx[j];
                let pred = self.pred_class.int64_value(&[i]) as usize;
                let act = actual[j] as usize;
                let title = format!(
                    "predicted: {}\nactual: {}\nloss {:.2}, P(actual) {:.2}",
                    self.classes[pred],
                    self.classes[act],
                    losses[j],
                    self.probs.double_value(&[i, act as i64])
                );
                (img, title)
            })
            .collect();
        let errors = self.n_errors();
        let mut sup = if errors == 0 {
            format!(
                "No mistakes on these {} images: the {} least certain predictions",
                self.items.len(),
                cells.len()
            )
        } else {
            format!(
                "Top {} losses ({} mistake{} in {} images)",
                cells.len(),
                errors,
                if errors == 1 { "" } else { "s" },
                self.items.len()
            )
        };
        if heatmap {
            sup += "; heatmap: where the model looked for its prediction";
        }
        let ncols = (cells.len() as f64).sqrt().ceil() as usize;
        image_grid_titled(&cells, ncols, figsize, Some(&sup))
    }

    /// Counts `[C, C]`: rows are actual classes, columns predicted.
    pub fn confusion_matrix(&self) -> Tensor {
        let c = self.classes.len() as i64;
        let flat = &self.y_true * c + &self.pred_class;
        flat.bincount::<Tensor>(None, c * c)
            .view([c, c])
            .to_kind(Kind::Int64)
    }

    /// The confusion matrix as a DataFrame: an `actual` column, then one column per predicted class.
    pub fn confusion_df(&self) -> DataFrame {
        let cm = self.confusion_matrix();
        let mut cols = vec![Column::new("actual".into(), self.classes.clone())];
        for (j, name) in self.classes.iter().enumerate() {
            let values: Vec<i64> = Vec::try_from(&cm.select(1, j as i64)).expect("counts");
            cols.push(Column::new(name.as_str().into(), values));
        }
        DataFrame::new(self.classes.len(), cols).expect("square matrix")
    }

    /// (actual, predicted, count) for every off-diagonal cell with at least `min_val` items,
    /// most frequent first.
    pub fn most_confused(&self, min_val: i64) -> MostConfused {
        let cm = self.confusion_matrix();
        let c = self.classes.len();
        let mut pairs = Vec::new();
        for a in 0..c {
            for p in 0..c {
                let n = cm.int64_value(&[a as i64, p as i64]);
                if a != p && n >= min_val && n > 0 {
                    pairs.push((self.classes[a].clone(), self.classes[p].clone(), n));
                }
            }
        }
        pairs.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
        MostConfused(pairs)
    }

    /// The confusion matrix as a figure sized to the class count: numbers in the cells only
    /// when they fit, tick labels that never overlap.
    ///
    /// ```no_run
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// interp.plot_confusion_matrix().unwrap().save("confusion.png".as_ref()).unwrap();
    /// ```
    pub fn plot_confusion_matrix(&self) -> Result<Figure> {
        self.plot_confusion_matrix_with(ConfusionPlot::default())
    }

    /// [`ClassificationInterpretation::plot_confusion_matrix`] with options: rows as
    /// fractions, or only the classes involved in a mistake (for 100+ classes).
    ///
    /// ```no_run
    /// use fastvision::interpret::ConfusionPlot;
    /// # let interp: fastvision::ClassificationInterpretation = unimplemented!();
    /// let fig = interp.plot_confusion_matrix_with(ConfusionPlot { only_mistakes: true, ..Default::default() });
    /// ```
    pub fn plot_confusion_matrix_with(&self, opts: ConfusionPlot) -> Result<Figure> {
        plot_confusion(&self.confusion_matrix(), &self.classes, opts)
    }
}

impl MostConfused {
    /// As a DataFrame: actual, predicted, count.
    pub fn df(&self) -> DataFrame {
        df!(
            "actual" => self.0.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            "predicted" => self.0.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
            "count" => self.0.iter().map(|p| p.2).collect::<Vec<_>>(),
        )
        .expect("equal-length columns")
    }

    /// Shows the pairs as a table in a notebook (or says there is nothing to show).
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.df(), self.caption());
    }

    fn caption(&self) -> Option<&'static str> {
        self.0
            .is_empty()
            .then_some("no pair of classes was confused that often")
    }
}

impl fmt::Display for MostConfused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::show::table::text(&self.df(), self.caption()))
    }
}

//! `show_results`: validation images with their label and the model's prediction, green when
//! right and red when wrong (fastai's `learn.show_results`).

use image::RgbImage;
use plotters::style::RGBColor;
use tch::{Device, Kind};

use crate::data::folder::DatasetType;
use crate::learner::Learner;
use crate::show::Figure;
use crate::show::grid::{batch_to_images, image_grid_colored};
use crate::{Error, Result};

/// matplotlib's `green`, fastai's colour for a right prediction.
pub const RIGHT: RGBColor = RGBColor(0, 128, 0);
/// matplotlib's `red`, for a wrong one.
pub const WRONG: RGBColor = RGBColor(255, 0, 0);

impl Learner {
    /// `rows` x `rows` validation images, each titled with its label over the model's
    /// prediction, green when right and red when wrong: fastai's `learn.show_results(rows=3)`.
    /// fastai shows the first batch, one class in a sorted validation set, and a good model
    /// gets it all right; this shows images drawn across the classes, and up to a third of
    /// them mistakes where the set has any, found batch by batch in the same draw.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// learn.show_results(3, (9.0, 10.0)).unwrap().save("results.png".as_ref()).unwrap();
    /// ```
    pub fn show_results(&self, rows: usize, figsize: (f64, f64)) -> Result<Figure> {
        self.show_results_of(DatasetType::Valid, rows, figsize)
    }

    /// [`Learner::show_results`] on either set, shown without augmentation.
    pub fn show_results_of(
        &self,
        ds_type: DatasetType,
        rows: usize,
        figsize: (f64, f64),
    ) -> Result<Figure> {
        let dl = self.data.dl(ds_type);
        let n = (rows * rows).min(dl.dataset.len());
        if n == 0 {
            return Err(Error::InvalidArgument(
                "show_results: rows must be at least 1 and the set non-empty".into(),
            ));
        }
        let idx = self.pick_results(dl, n);
        let batch = dl.batch_of(&idx, false);
        let pred: Vec<i64> = Vec::try_from(
            self.model
                .eval_logits(&batch.x)
                .argmax(-1, false)
                .to_device(Device::Cpu),
        )
        .expect("int64 predictions");
        let y: Vec<i64> = Vec::try_from(batch.y.to_device(Device::Cpu)).expect("int64 labels");
        let x = match &dl.stats {
            Some(s) => s.denorm(&batch.x),
            None => batch.x.to_kind(Kind::Float),
        };
        let classes = &self.data.classes;
        let cells: Vec<(RgbImage, String)> = batch_to_images(&x)
            .into_iter()
            .zip(y.iter().zip(&pred))
            .map(|(img, (&y, &p))| {
                let title = format!("{}\n{}", classes[y as usize], classes[p as usize]);
                (img, title)
            })
            .collect();
        let colors: Vec<RGBColor> = y
            .iter()
            .zip(&pred)
            .map(|(y, p)| if y == p { RIGHT } else { WRONG })
            .collect();
        let ncols = (n as f64).sqrt().ceil() as usize;
        image_grid_colored(
            &cells,
            ncols,
            figsize,
            Some("Ground truth / Predictions"),
            &colors,
        )
    }

    /// `n` items of `dl` for [`Learner::show_results`]: in `display_order`, up to a third of
    /// them mistakes, the rest the first right ones, in the order drawn. Batches are predicted
    /// only until both are found, so a nearly perfect model's set is read further than a poor
    /// one's.
    fn pick_results(&self, dl: &crate::data::loader::DataLoader, n: usize) -> Vec<usize> {
        let order = dl.display_order();
        let want_wrong = n / 3;
        let (mut right, mut wrong) = (Vec::new(), Vec::new());
        for chunk in order.chunks(dl.bs.max(1)) {
            if wrong.len() >= want_wrong && right.len() >= n - wrong.len().min(want_wrong) {
                break;
            }
            let batch = dl.batch_of(chunk, false);
            let pred = self.model.eval_logits(&batch.x).argmax(-1, false);
            let hit: Vec<bool> = Vec::try_from(pred.eq_tensor(&batch.y).to_device(Device::Cpu))
                .expect("bool comparisons");
            for (&i, ok) in chunk.iter().zip(hit) {
                if ok {
                    right.push(i);
                } else if wrong.len() < want_wrong {
                    wrong.push(i);
                }
            }
        }
        let mut chosen = wrong;
        chosen.extend(right.into_iter().take(n - chosen.len()));
        // Mistakes among the right ones, as they came in the draw.
        let rank: std::collections::HashMap<usize, usize> =
            order.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        chosen.sort_by_key(|i| rank[i]);
        chosen
    }
}

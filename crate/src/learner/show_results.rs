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
    /// The first `rows` x `rows` validation images, each titled with its label over the
    /// model's prediction: fastai's `learn.show_results(rows=3)`.
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
        let idx: Vec<usize> = dl.order(0).into_iter().take(n).collect();
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
}

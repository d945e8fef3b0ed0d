//! `show_batch`: a grid of training (or validation) images as the model sees them, augmented
//! where the set is, titled with their class.

use image::RgbImage;

use crate::data::folder::{DatasetType, ImageDataBunch};
use crate::show::Figure;
use crate::show::grid::{batch_to_images, image_grid};
use crate::{Error, Result};

impl ImageDataBunch {
    /// A grid of `rows` x `rows` augmented training images from the loader's first batch,
    /// denormalised, titled with their class, on a figure of `figsize` inches.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// data.show_batch(3, (7.0, 8.0)).unwrap().save("batch.png".as_ref()).unwrap();
    /// ```
    pub fn show_batch(&self, rows: usize, figsize: (f64, f64)) -> Result<Figure> {
        self.show_batch_of(DatasetType::Train, rows, figsize)
    }

    /// [`ImageDataBunch::show_batch`] on either set (fastai's `ds_type`): the validation set's
    /// images as the model sees them there, unaugmented, drawn across its classes.
    ///
    /// ```no_run
    /// use fastvision::data::folder::DatasetType;
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// data.show_batch_of(DatasetType::Valid, 3, (7.0, 8.0)).unwrap();
    /// ```
    pub fn show_batch_of(
        &self,
        ds_type: DatasetType,
        rows: usize,
        figsize: (f64, f64),
    ) -> Result<Figure> {
        let dl = self.dl(ds_type);
        let n = (rows * rows).min(dl.dataset.len());
        if n == 0 {
            return Err(Error::InvalidArgument(format!(
                "show_batch: rows must be at least 1 and the {ds_type:?} set non-empty"
            )));
        }
        // A varied set (the validation set is sorted by class); a grid bigger than a loader's
        // batch takes the next ones too.
        let idx: Vec<usize> = dl.display_order().into_iter().take(n).collect();
        let batch = dl.batch_of(&idx, true);
        let x = match &dl.stats {
            Some(s) => s.denorm(&batch.x),
            None => batch.x,
        };
        let labels: Vec<i64> = Vec::try_from(&batch.y).expect("int64 labels");
        let cells: Vec<(RgbImage, String)> = batch_to_images(&x)
            .into_iter()
            .zip(labels)
            .map(|(img, l)| (img, self.classes[l as usize].clone()))
            .collect();
        let ncols = (cells.len() as f64).sqrt().ceil() as usize;
        image_grid(&cells, ncols, figsize)
    }
}

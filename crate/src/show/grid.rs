//! Grids of titled images: `show_batch` and, later, the top-losses grid.

use image::{RgbImage, imageops::FilterType};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tch::{Kind, Tensor};

use crate::data::folder::ImageDataBunch;
use crate::data::loader::prepare_batch;
use crate::show::Figure;
use crate::{Error, Result};

/// Pixels per inch when a size is given in inches, as matplotlib's `figsize`.
pub const DPI: f64 = 100.0;

/// Draws images in a grid of `ncols` columns, each with its title above it, on a figure of
/// `figsize` inches (at [`DPI`]). Titles may have several lines (`\n`); lines too long for
/// their cell are shortened with "…".
///
/// ```
/// let cells = vec![(image::RgbImage::new(10, 10), "apple".to_string()); 4];
/// let fig = fastvision::show::grid::image_grid(&cells, 2, (4.0, 4.0)).unwrap();
/// assert_eq!(fig.size(), (400, 400));
/// ```
pub fn image_grid(
    cells: &[(RgbImage, String)],
    ncols: usize,
    figsize: (f64, f64),
) -> Result<Figure> {
    image_grid_titled(cells, ncols, figsize, None)
}

/// [`image_grid`] with a title over the whole figure.
pub fn image_grid_titled(
    cells: &[(RgbImage, String)],
    ncols: usize,
    figsize: (f64, f64),
    suptitle: Option<&str>,
) -> Result<Figure> {
    if cells.is_empty() || ncols == 0 {
        return Err(Error::InvalidArgument("image_grid: nothing to show".into()));
    }
    let nrows = cells.len().div_ceil(ncols);
    let (w, h) = (
        (figsize.0 * DPI).round() as u32,
        (figsize.1 * DPI).round() as u32,
    );
    let sup_h = if suptitle.is_some() { 40 } else { 0 };
    let (cell_w, cell_h) = (w / ncols as u32, (h - sup_h) / nrows as u32);
    let font_px = (cell_w as f64 / 13.0).clamp(11.0, 17.0);
    let lines = cells
        .iter()
        .map(|c| c.1.lines().count())
        .max()
        .unwrap_or(1)
        .max(1) as u32;
    let line_h = (font_px * 1.3) as u32;
    let title_h = lines * line_h + 4;
    let pad = (cell_w / 30).max(2);
    let side = (cell_w - 2 * pad)
        .min(cell_h.saturating_sub(title_h + pad))
        .max(1);

    Figure::draw(w, h, |root| {
        let style = TextStyle::from(("sans-serif", font_px).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        if let Some(t) = suptitle {
            let big = TextStyle::from(("sans-serif", 20.0).into_font().style(FontStyle::Bold))
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(
                t.to_string(),
                ((w / 2) as i32, (sup_h / 2) as i32),
                &big,
            ))?;
        }
        let max_chars = ((cell_w as f64 - 4.0) / (font_px * 0.55)).max(4.0) as usize;
        for (i, (img, title)) in cells.iter().enumerate() {
            let (col, row) = ((i % ncols) as u32, (i / ncols) as u32);
            let (x0, y0) = (col * cell_w, sup_h + row * cell_h);
            let cx = (x0 + cell_w / 2) as i32;
            for (l, line) in title.lines().enumerate() {
                let line = if line.chars().count() > max_chars {
                    format!("{}…", line.chars().take(max_chars - 1).collect::<String>())
                } else {
                    line.to_string()
                };
                let y = (y0 + pad / 2 + l as u32 * line_h + line_h / 2) as i32;
                root.draw(&Text::new(line, (cx, y), &style))?;
            }
            let scaled = image::imageops::resize(img, side, side, FilterType::Triangle);
            let ix = (x0 + (cell_w - side) / 2) as i32;
            let iy = (y0 + title_h + pad / 2) as i32;
            let elem: BitMapElement<(i32, i32)> =
                BitMapElement::with_owned_buffer((ix, iy), (side, side), scaled.into_raw())
                    .expect("buffer matches the size");
            root.draw(&elem)?;
        }
        Ok(())
    })
}

/// Converts a float batch `[N, 3, H, W]` in [0, 1] (any device) into RGB images.
pub fn batch_to_images(x: &Tensor) -> Vec<RgbImage> {
    let size = x.size();
    let (n, h, w) = (size[0], size[2] as u32, size[3] as u32);
    let bytes = (x.clamp(0.0, 1.0) * 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous()
        .to_device(tch::Device::Cpu);
    let flat: Vec<u8> = Vec::try_from(bytes.flatten(0, -1)).expect("u8 tensor to Vec");
    let per = (h * w * 3) as usize;
    (0..n as usize)
        .map(|i| RgbImage::from_raw(w, h, flat[i * per..(i + 1) * per].to_vec()).expect("size"))
        .collect()
}

impl ImageDataBunch {
    /// A grid of `rows` x `rows` augmented training images, denormalised, titled with their
    /// class, on a figure of `figsize` inches. Only the images shown are decoded.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// data.show_batch(3, (7.0, 8.0)).unwrap().save("batch.png".as_ref()).unwrap();
    /// ```
    pub fn show_batch(&self, rows: usize, figsize: (f64, f64)) -> Result<Figure> {
        let dl = &self.train_dl;
        let n = (rows * rows).min(dl.dataset.len());
        if n == 0 {
            return Err(Error::InvalidArgument(
                "show_batch: rows must be at least 1 and the training set non-empty".into(),
            ));
        }
        let idx: Vec<usize> = dl.order(0).into_iter().take(n).collect();
        let mut rng = dl.augment_rng(0);
        let batch = dl.finish(prepare_batch(&dl.dataset, &idx, dl.tfms.as_ref(), &mut rng));
        let (x, y) = (batch.x, batch.y);
        let x = match &self.stats {
            Some(s) => s.denorm(&x),
            None => x,
        };
        let labels: Vec<i64> = Vec::try_from(&y).expect("int64 labels");
        let cells: Vec<(RgbImage, String)> = batch_to_images(&x)
            .into_iter()
            .zip(labels)
            .map(|(img, l)| (img, self.classes[l as usize].clone()))
            .collect();
        let ncols = (cells.len() as f64).sqrt().ceil() as usize;
        image_grid(&cells, ncols, figsize)
    }
}

//! Grids of titled images (what `show_batch` and the top-losses plot draw on), and batch
//! tensors turned back into pictures.

use image::{RgbImage, imageops::FilterType};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tch::{Kind, Tensor};

use crate::show::Figure;
use crate::{Error, Result};

/// Pixels per inch when a size is given in inches, as matplotlib's `figsize`.
pub const DPI: f64 = 100.0;

/// Draws images in a grid of `ncols` columns, each with its title above it, on a figure of at
/// most `figsize` inches (at [`DPI`]): the images are as large as the figure allows and fill
/// their cells, so the figure gives up the room it cannot use. Titles may have several lines
/// (`\n`); lines too long for their cell are shortened with "…".
///
/// ```
/// let cells = vec![(image::RgbImage::new(10, 10), "apple".to_string()); 4];
/// let fig = fastvision::show::grid::image_grid(&cells, 2, (4.0, 4.0)).unwrap();
/// let (w, h) = fig.size();
/// assert!(w <= 400 && h == 400 && w > 350, "{w}x{h}");
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
    image_grid_colored(cells, ncols, figsize, suptitle, &[])
}

/// [`image_grid_titled`] with each cell's title in its own colour (`colors[i]`; black where
/// `colors` is shorter), as fastai titles right predictions green and wrong ones red.
///
/// ```
/// use plotters::style::RGBColor;
/// let cells = vec![(image::RgbImage::new(10, 10), "apple/apple".to_string()); 2];
/// let fig = fastvision::show::grid::image_grid_colored(&cells, 2, (4.0, 2.5), None, &[RGBColor(0, 128, 0), RGBColor(255, 0, 0)]).unwrap();
/// assert!(fig.to_rgb().pixels().any(|p| p.0 == [255, 0, 0]));
/// ```
pub fn image_grid_colored(
    cells: &[(RgbImage, String)],
    ncols: usize,
    figsize: (f64, f64),
    suptitle: Option<&str>,
    colors: &[RGBColor],
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
    let (max_cell_w, max_cell_h) = (w / ncols as u32, (h - sup_h) / nrows as u32);
    let font_px = (max_cell_w as f64 / 13.0).clamp(11.0, 17.0);
    let lines = cells
        .iter()
        .map(|c| c.1.lines().count())
        .max()
        .unwrap_or(1)
        .max(1) as u32;
    let line_h = (font_px * 1.3) as u32;
    let title_h = lines * line_h + 4;
    let pad = (max_cell_w / 30).max(2);
    let side = (max_cell_w - 2 * pad)
        .min(max_cell_h.saturating_sub(title_h + pad))
        .max(1);
    // Square images fill their cells: the figure shrinks in the direction with room to spare
    // instead of leaving white bands beside (or below) every image.
    let (cell_w, cell_h) = (side + 2 * pad, title_h + side + pad);
    let (w, h) = (ncols as u32 * cell_w, sup_h + nrows as u32 * cell_h);

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
                let style = match colors.get(i) {
                    Some(c) => style.color(c),
                    None => style.clone(),
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_fill_their_cells() {
        // The top-losses layout: 9 images with three-line titles on 15 x 11 inches.
        let red = RgbImage::from_pixel(100, 100, image::Rgb([200, 0, 0]));
        let cells = vec![(red, "predicted: a\nactual: b\nloss 1.00".to_string()); 9];
        let fig = image_grid_titled(&cells, 3, (15.0, 11.0), Some("Top 9 losses")).unwrap();
        let (w, h) = fig.size();
        assert!(w <= 1500 && h <= 1100, "{w}x{h}");
        let img = fig.to_rgb();
        let red_px = img.pixels().filter(|p| p.0 == [200, 0, 0]).count() as f64;
        let share = red_px / (w * h) as f64;
        // Square images in 500 px wide cells covered 39% of the figure; filling them, 65%.
        assert!(
            share > 0.6,
            "images cover only {:.0}% of the figure",
            100.0 * share
        );
        // Each image is as tall as the rows allow: 267 px of a 353 px row.
        let column: Vec<bool> = (0..h)
            .map(|y| img.get_pixel(w / 6, y).0 == [200, 0, 0])
            .collect();
        let first_run = column
            .iter()
            .skip_while(|r| !**r)
            .take_while(|r| **r)
            .count();
        assert!(first_run >= 260, "image height {first_run}");
    }
}

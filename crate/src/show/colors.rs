//! Colours as matplotlib users know them: the `tab10` cycle for lines, `magma` for heatmaps and
//! `Blues` for matrices. The colour maps come from `colorous` (the d3/matplotlib scales), not
//! from hand-copied stops.

use plotters::style::RGBColor;

/// matplotlib's default colour cycle (`tab:blue`, `tab:orange`, `tab:green`, ...), which is
/// d3's category10.
///
/// ```
/// use fastvision::show::colors::tab;
/// assert_eq!(tab(0), plotters::style::RGBColor(0x1f, 0x77, 0xb4)); // tab:blue
/// assert_eq!(tab(1), plotters::style::RGBColor(0xff, 0x7f, 0x0e)); // tab:orange
/// assert_eq!(tab(10), tab(0));
/// ```
pub fn tab(i: usize) -> RGBColor {
    let c = colorous::CATEGORY10[i % colorous::CATEGORY10.len()];
    RGBColor(c.r, c.g, c.b)
}

fn sample(g: colorous::Gradient, t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let c = g.eval_continuous(t);
    [c.r, c.g, c.b]
}

/// matplotlib's `magma` (black, purple, orange, pale yellow), fastai's Grad-CAM colours; `t`
/// in [0, 1].
///
/// ```
/// assert_eq!(fastvision::show::colors::magma(0.0), [0, 0, 4]);
/// assert_eq!(fastvision::show::colors::magma(1.0), [252, 253, 191]);
/// ```
pub fn magma(t: f64) -> [u8; 3] {
    sample(colorous::MAGMA, t)
}

/// matplotlib's `Blues` (white to dark blue), fastai's confusion-matrix colours; `t` in [0, 1].
///
/// ```
/// let [r, g, b] = fastvision::show::colors::blues(0.0);
/// assert!(r > 240 && g > 245 && b > 250);
/// let [r, _, b] = fastvision::show::colors::blues(1.0);
/// assert!(r < 16 && b > 100);
/// ```
pub fn blues(t: f64) -> [u8; 3] {
    sample(colorous::BLUES, t)
}

/// Blends a heatmap (values in [0, 1], row by row, one per pixel) over an image in magma
/// colours, fastai's `alpha=0.6` overlay.
///
/// ```
/// let mut img = image::RgbImage::new(2, 1);
/// fastvision::show::colors::overlay_heatmap(&mut img, &[0.0, 1.0], 1.0);
/// assert_eq!(img.get_pixel(1, 0).0, fastvision::show::colors::magma(1.0));
/// ```
pub fn overlay_heatmap(img: &mut image::RgbImage, values: &[f32], alpha: f64) {
    let w = img.width();
    for (x, y, p) in img.enumerate_pixels_mut() {
        let c = magma(values[(y * w + x) as usize] as f64);
        p.0 = std::array::from_fn(|i| {
            (p.0[i] as f64 * (1.0 - alpha) + c[i] as f64 * alpha).round() as u8
        });
    }
}

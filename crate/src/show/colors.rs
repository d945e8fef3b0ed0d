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

/// matplotlib's "Oranges" colour map at `t` in [0, 1]: the confusion matrix's mistakes, set
/// apart from its blue diagonal.
///
/// ```
/// let [r, g, b] = fastvision::show::colors::oranges(1.0);
/// assert!(r > g && g > b);
/// ```
pub fn oranges(t: f64) -> [u8; 3] {
    sample(colorous::ORANGES, t)
}

/// Lays a heatmap (values in [0, 1], row by row, one per pixel) over an image as a
/// spotlight: where the network looked hardest the photo keeps its own colours under a
/// magma tint of `alpha / 2`, and the less it looked the more the photo dims, to `1 - alpha`
/// of its brightness where it did not look at all. fastai lays the whole magma map over the
/// photo at `alpha=0.6`, which hides the fruit; here the fruit always shows.
///
/// ```
/// let mut img = image::RgbImage::from_pixel(2, 1, image::Rgb([200, 150, 100]));
/// fastvision::show::colors::overlay_heatmap(&mut img, &[0.0, 1.0], 0.6);
/// assert_eq!(img.get_pixel(0, 0).0, [80, 60, 40], "cold: dimmed, its own colours");
/// let hot = img.get_pixel(1, 0).0;
/// assert!(hot[0] > 200 && hot[1] > 150, "hot: bright, tinted: {hot:?}");
/// ```
pub fn overlay_heatmap(img: &mut image::RgbImage, values: &[f32], alpha: f64) {
    let w = img.width();
    let alpha = alpha.clamp(0.0, 1.0);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let v = (values[(y * w + x) as usize] as f64).clamp(0.0, 1.0);
        let c = magma(v);
        let light = 1.0 - alpha * (1.0 - v);
        let tint = alpha * v / 2.0;
        p.0 = std::array::from_fn(|i| {
            (p.0[i] as f64 * light * (1.0 - tint) + c[i] as f64 * tint).round() as u8
        });
    }
}

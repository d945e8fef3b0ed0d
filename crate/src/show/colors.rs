//! Colour maps for heatmaps and matrices (matplotlib's `magma` and `Blues`, sampled), so
//! figures look like the fastai ones users know without any plotting backend.

/// Linear interpolation along evenly spaced colour stops, `t` in [0, 1].
fn interpolate(stops: &[[u8; 3]], t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    std::array::from_fn(|c| {
        (stops[i][c] as f64 * (1.0 - f) + stops[i + 1][c] as f64 * f).round() as u8
    })
}

/// matplotlib's `magma` (black, purple, orange, pale yellow), fastai's Grad-CAM colours.
///
/// ```
/// assert_eq!(fastvision::show::colors::magma(0.0), [0, 0, 4]);
/// assert_eq!(fastvision::show::colors::magma(1.0), [252, 253, 191]);
/// ```
pub fn magma(t: f64) -> [u8; 3] {
    const STOPS: [[u8; 3]; 9] = [
        [0, 0, 4],
        [28, 16, 68],
        [79, 18, 123],
        [129, 37, 129],
        [181, 54, 122],
        [229, 80, 100],
        [251, 135, 97],
        [254, 194, 135],
        [252, 253, 191],
    ];
    interpolate(&STOPS, t)
}

/// matplotlib's `Blues` (white to dark blue), fastai's confusion-matrix colours.
///
/// ```
/// assert_eq!(fastvision::show::colors::blues(0.0), [247, 251, 255]);
/// ```
pub fn blues(t: f64) -> [u8; 3] {
    const STOPS: [[u8; 3]; 5] = [
        [247, 251, 255],
        [198, 219, 239],
        [107, 174, 214],
        [33, 113, 181],
        [8, 48, 107],
    ];
    interpolate(&STOPS, t)
}

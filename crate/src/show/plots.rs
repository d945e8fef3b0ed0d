//! Helpers for line charts drawn with plotters: matplotlib-like axis ranges and tick labels,
//! and the default figure size. The charts themselves live beside their data (the recorder's
//! in `learner/recorder`).

use crate::Error;

/// Default chart size in pixels (matplotlib's 8x5 inches at 100 dpi).
pub const W: u32 = 800;
/// See [`W`].
pub const H: u32 = 500;

/// The finite values' range with 5% padding, as matplotlib's autoscale; (0, 1) if there is none.
///
/// ```
/// let (lo, hi) = fastvision::show::plots::axis_range([1.0, 3.0, f64::NAN].into_iter());
/// assert!((lo - 0.9).abs() < 1e-12 && (hi - 3.1).abs() < 1e-12);
/// ```
pub fn axis_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Decimals that make neighbouring tick labels differ on an axis spanning `lo..hi`.
///
/// ```
/// assert_eq!(fastvision::show::plots::decimals(0.0, 1.0), 2);
/// ```
pub fn decimals(lo: f64, hi: f64) -> usize {
    let span = (hi - lo).abs().max(1e-12);
    ((-(span / 5.0).log10()).ceil().max(0.0) as usize + 1).min(8)
}

/// The error for a plot with no data, saying what to do first.
pub fn nothing_to_plot(what: &str) -> Error {
    Error::InvalidArgument(format!("nothing to plot: {what}"))
}

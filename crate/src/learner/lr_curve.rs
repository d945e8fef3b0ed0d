//! An `lr_find` sweep's own result, [`LrCurve`]: the learning rates and smoothed losses of the
//! sweep, fastai's three suggestions on it, and its plot. `learn.lr_find()` returns one;
//! `learn.recorder.plot()` draws the last one, as fastai's name for it.

use plotters::prelude::*;

use crate::show::Figure;
use crate::show::colors::tab;
use crate::show::plots::{H, W, axis_range as range, decimals, nothing_to_plot as empty};
use crate::{Error, Result};

/// The lowest best loss a sweep's divergence test compares against (a smoothed
/// cross-entropy): `lr_find` stops past four times the best loss but never below four times
/// this, and the plot's loss axis reaches at least as high.
pub const LOSS_FLOOR: f64 = 0.025;

/// One `lr_find` sweep: the learning rate and the smoothed training loss of each batch, and
/// the sweep's length asked for (its first tenth is skipped when suggesting, as fastai does).
///
/// ```no_run
/// # let mut learn: fastvision::Learner = unimplemented!();
/// let sweep = learn.lr_find().unwrap();
/// let s = sweep.suggestions().unwrap();
/// println!("valley {:.2e}", s.valley);
/// sweep.plot().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LrCurve {
    /// Learning rate of each batch (the last layer group's).
    pub lrs: Vec<f64>,
    /// Smoothed training loss of each batch.
    pub losses: Vec<f64>,
    /// The sweep's `num_it`.
    pub num_it: usize,
}

/// Learning-rate suggestions from an `lr_find` run (fastai v2's three methods), with the
/// point on the curve each one marks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestions {
    /// The rate at the minimum loss, divided by 10.
    pub minimum: f64,
    /// Where the loss falls fastest against log(lr).
    pub steep: f64,
    /// fastai's default: two thirds of the way down the longest falling stretch.
    pub valley: f64,
    /// (lr, loss) of the minimum itself (its rate is ten times `minimum`).
    pub minimum_at: (f64, f64),
    /// (lr, loss) where the curve is steepest.
    pub steep_at: (f64, f64),
    /// (lr, loss) of the valley suggestion.
    pub valley_at: (f64, f64),
}

impl LrCurve {
    /// The sweep up to its first NaN or infinite loss: what the plot draws.
    pub fn sweep(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.lrs.len().min(self.losses.len());
        let end = self.losses[..n]
            .iter()
            .position(|l| !l.is_finite())
            .unwrap_or(n);
        (self.lrs[..end].to_vec(), self.losses[..end].to_vec())
    }

    /// The curve fastai's suggestions read (`lr_find` in fastai 2.8's callback/schedule.py):
    /// the sweep without its first `num_it / 10` points and its last 5, cut at the first NaN.
    ///
    /// ```
    /// use fastvision::learner::lr_curve::LrCurve;
    /// let lrs: Vec<f64> = (0..30).map(|i| 1e-7 * 1.5f64.powi(i)).collect();
    /// let mut losses = vec![1.0; 30];
    /// losses[20] = f64::NAN;
    /// let sweep = LrCurve { lrs: lrs.clone(), losses, num_it: 100 };
    /// let (l, _) = sweep.curve();
    /// assert_eq!(l, lrs[10..20]); // 100 / 10 skipped at the start, then up to the NaN
    /// ```
    pub fn curve(&self) -> (Vec<f64>, Vec<f64>) {
        let n = self.lrs.len().min(self.losses.len());
        let (start, end) = (self.num_it / 10, n.saturating_sub(5));
        if start >= end {
            return (vec![], vec![]);
        }
        let mut lrs = self.lrs[start..end].to_vec();
        let mut losses = self.losses[start..end].to_vec();
        if let Some(nan) = losses.iter().position(|l| l.is_nan()) {
            lrs.truncate(nan);
            losses.truncate(nan);
        }
        (lrs, losses)
    }

    /// fastai's learning-rate suggestions for this sweep: `valley`, `steep` and `minimum`
    /// exactly as fastai 2.8 computes them (in single precision, as its tensors are), on
    /// [`LrCurve::curve`]. Tested against fastai's own functions on recorded curves
    /// (crate/tests/fixtures/lr_find).
    ///
    /// ```
    /// use fastvision::learner::lr_curve::LrCurve;
    /// let lrs: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
    /// // A loss that falls fastest around lr = 1e-3 and blows up after 1e-1.
    /// let losses = lrs.iter().map(|lr: &f64| 2.0 - (lr.log10() + 3.0).tanh() + if *lr > 0.1 { 50.0 * lr } else { 0.0 }).collect();
    /// let s = LrCurve { lrs, losses, num_it: 100 }.suggestions().unwrap();
    /// assert!(s.steep > 3e-4 && s.steep < 3e-3, "{s:?}");
    /// assert_eq!(s.minimum_at.0, s.minimum * 10.0);
    /// ```
    pub fn suggestions(&self) -> Result<Suggestions> {
        let (lrs, losses) = self.curve();
        if losses.len() < 6 {
            return Err(Error::InvalidArgument(format!(
                "only {} usable points in the lr_find curve (the loss diverged almost at once, or \
                 num_it was small): run lr_find again with more iterations or a lower start_lr",
                losses.len()
            )));
        }
        Ok(suggest(&lrs, &losses))
    }

    /// The line the sweep's notebook output shows, as fastai's.
    ///
    /// ```
    /// use fastvision::learner::lr_curve::LrCurve;
    /// let lrs: Vec<f64> = (0..100).map(|i| 1e-7 * 10f64.powf(i as f64 * 8.0 / 100.0)).collect();
    /// let losses = lrs.iter().map(|lr: &f64| 2.0 - (lr.log10() + 3.0).tanh()).collect();
    /// let line = LrCurve { lrs, losses, num_it: 100 }.suggestion_line().unwrap();
    /// assert!(line.starts_with("Suggested learning rates: valley "));
    /// ```
    pub fn suggestion_line(&self) -> Result<String> {
        let s = self.suggestions()?;
        Ok(format!(
            "Suggested learning rates: valley {:.2e}, steep {:.2e}, minimum/10 {:.2e}",
            s.valley, s.steep, s.minimum
        ))
    }

    /// Shows the plot in a notebook (a cell ending in `learn.lr_find()?`).
    pub fn evcxr_display(&self) {
        if let Ok(fig) = self.plot() {
            fig.evcxr_display();
        }
    }
}

/// fastai 2.8's `valley`, `steep` and `minimum` on one curve, in f32 as fastai's tensors are.
fn suggest(lrs: &[f64], losses: &[f64]) -> Suggestions {
    let lrs: Vec<f32> = lrs.iter().map(|&v| v as f32).collect();
    let losses: Vec<f32> = losses.iter().map(|&v| v as f32).collect();
    let point = |i: usize| (lrs[i] as f64, losses[i] as f64);
    // torch's argmin: the first of equal minima.
    let argmin = |v: &[f32]| {
        v.iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0)
    };
    let i_min = argmin(&losses);
    let grads: Vec<f32> = (1..losses.len())
        .map(|i| (losses[i] - losses[i - 1]) / (lrs[i].ln() - lrs[i - 1].ln()))
        .collect();
    let i_steep = argmin(&grads);
    // `valley`: the longest decreasing subsequence, then two thirds of the way down it.
    let n = losses.len();
    let mut lds = vec![1usize; n];
    let (mut max_start, mut max_end) = (0isize, 0usize);
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as isize - lds[max_end] as isize;
            }
        }
    }
    let sections = (max_end as isize - max_start) as f64 / 3.0;
    let idx = max_start + sections as isize + (sections / 2.0) as isize;
    // Python indexing: fastai's start can be -1, and a negative index counts from the end.
    let i_valley = if idx < 0 { n as isize + idx } else { idx } as usize;
    Suggestions {
        minimum: lrs[i_min] as f64 / 10.0,
        steep: lrs[i_steep] as f64,
        valley: lrs[i_valley] as f64,
        minimum_at: point(i_min),
        steep_at: point(i_steep),
        valley_at: point(i_valley),
    }
}

/// Options of [`LrCurve::plot_with`], the lr_find plot.
///
/// ```
/// let o = fastvision::learner::lr_curve::LrPlot::default();
/// assert!(o.suggestion);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LrPlot {
    /// Mark the suggested learning rates (valley, steep, minimum/10), with their values in
    /// the legend.
    pub suggestion: bool,
}

impl Default for LrPlot {
    fn default() -> Self {
        LrPlot { suggestion: true }
    }
}

impl LrCurve {
    /// The lr_find plot, as fastai v2 draws it: the smoothed loss of the whole sweep against
    /// the learning rate on a log axis, up to where the loss diverged, with fastai's
    /// suggestions marked where they sit on the curve (the minimum at its own rate, labelled
    /// with a tenth of it); [`LrCurve::suggestions`] returns them as values.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.lr_find().unwrap().plot().unwrap().save("lr_find.png".as_ref()).unwrap();
    /// ```
    pub fn plot(&self) -> Result<Figure> {
        self.plot_with(LrPlot::default())
    }

    /// [`LrCurve::plot`] with options, e.g. without the suggestions.
    ///
    /// ```no_run
    /// use fastvision::learner::lr_curve::LrPlot;
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// let fig = learn.lr_find().unwrap().plot_with(LrPlot { suggestion: false }).unwrap();
    /// ```
    pub fn plot_with(&self, opts: LrPlot) -> Result<Figure> {
        let suggestion = opts.suggestion;
        let (lrs, losses) = self.sweep();
        if lrs.len() < 2 {
            return Err(empty(
                "the lr_find run has too few points; run it with more iterations",
            ));
        }
        let marks = if suggestion {
            let s = self.suggestions()?;
            vec![
                (format!("valley: {:.2e}", s.valley), s.valley_at, tab(1)),
                (format!("steep: {:.2e}", s.steep), s.steep_at, tab(2)),
                (
                    format!("minimum/10: {:.2e}", s.minimum),
                    s.minimum_at,
                    tab(3),
                ),
            ]
        } else {
            vec![]
        };
        // The whole sweep up to the divergence, so the rise shows; the y axis stops a little
        // above where the run stopped (the divergence threshold, four times the best but no
        // lower than lr_find's floor) or where it started, whichever is higher, so one wild
        // batch cannot flatten the rest of the curve, and a trained model's rise from a tiny
        // loss is not cut off where its noise would be.
        let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
        let top = losses[0].max(4.0 * lowest.max(LOSS_FLOOR));
        let shown: Vec<f64> = losses.iter().map(|&l| l.min(top)).collect();
        let (y0, y1) = range(shown.iter().copied());
        Figure::draw(W, H, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption("lr_find", ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d((lrs[0]..*lrs.last().unwrap()).log_scale(), y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("Learning rate (log scale)")
                .y_desc("Loss (smoothed)")
                .x_label_formatter(&|v| format!("{v:.0e}"))
                .y_label_formatter(&|v| format!("{v:.*}", decimals(y0, y1)))
                .light_line_style(WHITE)
                .label_style(("sans-serif", 15))
                .draw()?;
            chart.draw_series(LineSeries::new(
                lrs.iter().copied().zip(shown.iter().copied()),
                tab(0).stroke_width(2),
            ))?;
            for (label, (lr, loss), colour) in marks {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (lr, loss.min(top)),
                        7,
                        colour.filled(),
                    )))?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, colour.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 16))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            Ok(())
        })
    }
}

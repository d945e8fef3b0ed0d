//! The one-cycle policy (fastai v1 `OneCycleScheduler`): learning rates warm up from
//! `max_lr / div_factor` to `max_lr` over the first `pct_start` of the iterations and anneal
//! to `max_lr / (div_factor * 1e4)`, both on a cosine; momentum moves the other way,
//! 0.95 → 0.85 → 0.95.

use crate::Result;
use crate::learner::fit::{Callback, FitContext};

/// fastai's cosine annealing from `start` to `end` at fraction `pct` of the way.
///
/// ```
/// use fastvision::learner::one_cycle::annealing_cos;
/// assert_eq!(annealing_cos(1.0, 0.0, 0.0), 1.0);
/// assert!((annealing_cos(1.0, 0.0, 0.5) - 0.5).abs() < 1e-12);
/// assert!(annealing_cos(1.0, 0.0, 1.0).abs() < 1e-12);
/// ```
pub fn annealing_cos(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

/// A learning rate for every layer group: one value, or fastai's `slice`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lr {
    /// The same rate for every group.
    Single(f64),
    /// `slice(lo, hi)`: geometrically spaced from `lo` (first group) to `hi` (head).
    Slice(f64, f64),
    /// `slice(hi)`: `hi / 10` for the body groups, `hi` for the head.
    Upper(f64),
}

/// fastai's default learning rate, `slice(3e-3)`.
pub const DEFAULT_LR: Lr = Lr::Upper(3e-3);

/// `slice(lo, hi)`, as in the lesson's `fit_one_cycle(2, slice(1e-6, 10**-5.5))`.
///
/// ```
/// let lrs = fastvision::slice(1e-6, 10f64.powf(-5.5)).expand(3);
/// assert!((lrs[1] - 1.778e-6).abs() < 1e-9 && (lrs[2] - 3.162e-6).abs() < 1e-9);
/// ```
pub fn slice(lo: f64, hi: f64) -> Lr {
    Lr::Slice(lo, hi)
}

impl Lr {
    /// One rate per group, as fastai's `lr_range` spreads them.
    ///
    /// ```
    /// let lrs = fastvision::learner::one_cycle::DEFAULT_LR.expand(3);
    /// assert!((lrs[0] - 3e-4).abs() < 1e-15 && lrs[2] == 3e-3);
    /// ```
    pub fn expand(self, n: usize) -> Vec<f64> {
        match self {
            Lr::Single(v) => vec![v; n],
            Lr::Upper(hi) => (0..n)
                .map(|i| if i + 1 == n { hi } else { hi / 10.0 })
                .collect(),
            Lr::Slice(lo, hi) if n > 1 => (0..n)
                .map(|i| lo * (hi / lo).powf(i as f64 / (n - 1) as f64))
                .collect(),
            Lr::Slice(_, hi) => vec![hi],
        }
    }
}

impl From<f64> for Lr {
    fn from(v: f64) -> Lr {
        Lr::Single(v)
    }
}

impl From<Option<f64>> for Lr {
    /// `None` is fastai's default, `slice(3e-3)`.
    fn from(v: Option<f64>) -> Lr {
        v.map_or(DEFAULT_LR, Lr::Single)
    }
}

/// Schedules learning rates and momentum over a whole fit.
#[derive(Debug, Clone)]
pub struct OneCycle {
    /// Peak learning rate of each group.
    pub max_lrs: Vec<f64>,
    /// Start at `max_lr / div_factor`.
    pub div_factor: f64,
    /// Fraction of iterations spent warming up.
    pub pct_start: f64,
    /// (max, min) momentum.
    pub moms: (f64, f64),
    /// End at `max_lr / final_div`.
    pub final_div: f64,
}

impl OneCycle {
    /// fastai v1's defaults: div_factor 25, pct_start 0.3, moms (0.95, 0.85), final_div 25e4.
    pub fn new(max_lrs: Vec<f64>) -> Self {
        OneCycle {
            max_lrs,
            div_factor: 25.0,
            pct_start: 0.3,
            moms: (0.95, 0.85),
            final_div: 25.0 * 1e4,
        }
    }

    /// Learning rates and momentum at iteration `i` of `n`.
    ///
    /// ```
    /// let oc = fastvision::learner::one_cycle::OneCycle::new(vec![1e-2]);
    /// let (lrs, mom) = oc.at(0, 100);
    /// assert!((lrs[0] - 4e-4).abs() < 1e-12 && mom == 0.95);
    /// let (lrs, mom) = oc.at(30, 100);
    /// assert!((lrs[0] - 1e-2).abs() < 1e-12 && (mom - 0.85).abs() < 1e-12);
    /// ```
    pub fn at(&self, i: usize, n: usize) -> (Vec<f64>, f64) {
        let warm = ((n as f64) * self.pct_start) as usize;
        let (hi_mom, lo_mom) = self.moms;
        if i < warm {
            let pct = i as f64 / warm as f64;
            let lrs = self
                .max_lrs
                .iter()
                .map(|&m| annealing_cos(m / self.div_factor, m, pct))
                .collect();
            (lrs, annealing_cos(hi_mom, lo_mom, pct))
        } else {
            let pct = (i - warm) as f64 / (n - warm).max(1) as f64;
            let lrs = self
                .max_lrs
                .iter()
                .map(|&m| annealing_cos(m, m / self.final_div, pct))
                .collect();
            (lrs, annealing_cos(lo_mom, hi_mom, pct))
        }
    }
}

impl Callback for OneCycle {
    fn on_batch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let (lrs, mom) = self.at(cx.iteration, cx.total_iterations);
        cx.lrs = lrs;
        cx.mom = mom;
        Ok(())
    }
}

//! Metrics shown in the progress table, in fastai's shape: a metric is reset before
//! validation, accumulates every batch's logits and targets, and gives its value at the end.
//! So `error_rate` is exact over the whole validation set whatever the last batch's size, and a
//! metric that is no mean over items (F1, a per-class error) can be written too. Accumulating
//! stays on the device; only `value` reads back.
//!
//! A metric of your own, macro-averaged F1 (counts kept on the device):
//!
//! ```
//! use fastvision::learner::metrics::{Metric, MetricFn};
//! use tch::{Kind, Tensor};
//!
//! #[derive(Default)]
//! struct F1 { tp: Option<Tensor>, fp: Option<Tensor>, fneg: Option<Tensor> }
//!
//! impl Metric for F1 {
//!     fn name(&self) -> String { "f1_macro".into() }
//!     fn reset(&mut self) { *self = F1::default(); }
//!     fn accumulate(&mut self, logits: &Tensor, targets: &Tensor) {
//!         let c = logits.size()[1];
//!         let pred = logits.argmax(-1, false).one_hot(c).to_kind(Kind::Float);
//!         let truth = targets.one_hot(c).to_kind(Kind::Float);
//!         let add = |acc: &mut Option<Tensor>, t: Tensor| {
//!             *acc = Some(match acc.take() { Some(a) => a + t, None => t });
//!         };
//!         let per_class = |t: Tensor| t.sum_dim_intlist(Some(&[0i64][..]), false, Kind::Float);
//!         let (not_pred, not_truth) = (pred.neg() + 1.0, truth.neg() + 1.0);
//!         add(&mut self.tp, per_class(&pred * &truth));
//!         add(&mut self.fp, per_class(&pred * &not_truth));
//!         add(&mut self.fneg, per_class(&not_pred * &truth));
//!     }
//!     fn value(&self) -> f64 {
//!         let (Some(tp), Some(fp), Some(fneg)) = (&self.tp, &self.fp, &self.fneg) else { return f64::NAN };
//!         let denominator = (tp * 2.0 + fp + fneg).clamp_min(1.0);
//!         (tp * 2.0 / denominator).mean(Kind::Float).double_value(&[])
//!     }
//! }
//!
//! let f1 = MetricFn::new(F1::default);
//! let mut m = f1.fresh();
//! let logits = Tensor::from_slice(&[0.9f32, 0.1, 0.2, 0.8, 0.7, 0.3]).view([3, 2]);
//! m.accumulate(&logits, &Tensor::from_slice(&[0i64, 1, 1]));
//! // class 0: tp 1, fp 1, fn 0 -> 2/3; class 1: tp 1, fp 0, fn 1 -> 2/3
//! assert!((m.value() - 2.0 / 3.0).abs() < 1e-6);
//! // then: cnn_learner(&data, resnet34, &[error_rate, f1])
//! ```

use std::sync::Arc;

use tch::{Kind, Tensor};

/// fastai's `Metric`: state over a whole validation pass.
pub trait Metric {
    /// Column name in the progress table.
    fn name(&self) -> String;
    /// Forgets everything accumulated (called before each validation pass).
    fn reset(&mut self);
    /// Takes in one batch: logits `[B, C]` and targets `[B]`, on the training device.
    fn accumulate(&mut self, logits: &Tensor, targets: &Tensor);
    /// The value over everything accumulated since `reset`.
    fn value(&self) -> f64;
}

/// A running mean kept on the device: sums in f64, one read-back in [`Mean::value`]. What
/// `AvgMetric`, top-k accuracy and the validation loss accumulate into.
#[derive(Debug, Default)]
pub struct Mean {
    total: Option<Tensor>,
    count: i64,
}

impl Mean {
    /// Nothing accumulated.
    pub const fn new() -> Self {
        Mean {
            total: None,
            count: 0,
        }
    }

    /// Adds `count` items whose values sum to `sum` (a 0-d tensor).
    pub fn add_sum(&mut self, sum: Tensor, count: i64) {
        let sum = sum.to_kind(Kind::Double);
        self.total = Some(match self.total.take() {
            Some(t) => t + sum,
            None => sum,
        });
        self.count += count;
    }

    /// Adds one value per item (`[B]`).
    pub fn add(&mut self, per_item: &Tensor) {
        self.add_sum(per_item.sum(Kind::Double), per_item.size()[0]);
    }

    /// The mean of everything added (NaN when nothing was).
    ///
    /// ```
    /// let mut m = fastvision::learner::metrics::Mean::new();
    /// m.add(&tch::Tensor::from_slice(&[1.0f32, 0.0]));
    /// m.add(&tch::Tensor::from_slice(&[1.0f32]));
    /// assert!((m.value() - 2.0 / 3.0).abs() < 1e-12);
    /// ```
    pub fn value(&self) -> f64 {
        match &self.total {
            Some(t) if self.count > 0 => t.double_value(&[]) / self.count as f64,
            _ => f64::NAN,
        }
    }
}

/// fastai's `AvgMetric`: a per-item value averaged over every validation item.
pub struct AvgMetric {
    name: &'static str,
    per_item: fn(&Tensor, &Tensor) -> Tensor,
    mean: Mean,
}

impl AvgMetric {
    /// A metric from a function giving one value per item (`[B]`) for a batch.
    pub const fn new(name: &'static str, per_item: fn(&Tensor, &Tensor) -> Tensor) -> Self {
        AvgMetric {
            name,
            per_item,
            mean: Mean::new(),
        }
    }
}

impl Clone for AvgMetric {
    /// A fresh metric of the same kind (what [`MetricFn::fresh`] needs).
    fn clone(&self) -> Self {
        AvgMetric::new(self.name, self.per_item)
    }
}

impl Metric for AvgMetric {
    fn name(&self) -> String {
        self.name.to_string()
    }
    fn reset(&mut self) {
        self.mean = Mean::new();
    }
    fn accumulate(&mut self, logits: &Tensor, targets: &Tensor) {
        self.mean.add(&(self.per_item)(logits, targets));
    }
    fn value(&self) -> f64 {
        self.mean.value()
    }
}

/// A metric as the learner holds it: `error_rate`, `accuracy`, `top_k_accuracy(5)`, or any
/// [`Metric`] through [`MetricFn::new`]. Each validation pass starts from a fresh copy.
#[derive(Clone)]
pub enum MetricFn {
    /// A mean over items (const, so `error_rate` and `accuracy` are plain values).
    Avg(AvgMetric),
    /// Any metric, copied from this prototype for each pass.
    Custom(Arc<dyn Fn() -> Box<dyn Metric>>),
}

impl std::fmt::Debug for MetricFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl MetricFn {
    /// A metric of your own, from a function that makes a fresh one (see the module's F1
    /// example): `MetricFn::new(F1::default)`.
    pub fn new<M: Metric + 'static>(make: impl Fn() -> M + 'static) -> Self {
        MetricFn::Custom(Arc::new(move || {
            let mut m = make();
            m.reset();
            Box::new(m)
        }))
    }

    /// A fresh, reset instance to accumulate one pass into.
    pub fn fresh(&self) -> Box<dyn Metric> {
        match self {
            MetricFn::Avg(m) => {
                let mut m = m.clone();
                m.reset();
                Box::new(m)
            }
            MetricFn::Custom(make) => make(),
        }
    }

    /// The metric over whole predictions at once, e.g. TTA's (probabilities or logits: only
    /// their order matters to error_rate and accuracy).
    ///
    /// ```
    /// let preds = tch::Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2, 0.3, 0.7]).view([3, 2]);
    /// let y = tch::Tensor::from_slice(&[1i64, 1, 1]);
    /// assert!((fastvision::error_rate.compute(&preds, &y) - 1.0 / 3.0).abs() < 1e-12);
    /// ```
    pub fn compute(&self, preds: &Tensor, targets: &Tensor) -> f64 {
        let mut m = self.fresh();
        m.accumulate(preds, targets);
        m.value()
    }

    /// The column name.
    pub fn name(&self) -> String {
        match self {
            MetricFn::Avg(m) => m.name.to_string(),
            MetricFn::Custom(make) => make().name(),
        }
    }
}

fn correct(logits: &Tensor, targets: &Tensor) -> Tensor {
    logits
        .argmax(-1, false)
        .eq_tensor(targets)
        .to_kind(Kind::Float)
}

fn wrong(logits: &Tensor, targets: &Tensor) -> Tensor {
    1.0 - correct(logits, targets)
}

/// Fraction of correct predictions.
///
/// ```
/// let logits = tch::Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).view([2, 2]);
/// let mut m = fastvision::accuracy.fresh();
/// m.accumulate(&logits, &tch::Tensor::from_slice(&[1i64, 1]));
/// assert_eq!(m.value(), 0.5);
/// ```
#[allow(non_upper_case_globals)]
pub const accuracy: MetricFn = MetricFn::Avg(AvgMetric::new("accuracy", correct));

/// Fraction of wrong predictions, `1 - accuracy`: the lesson's metric.
///
/// ```
/// let logits = tch::Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).view([2, 2]);
/// let mut m = fastvision::error_rate.fresh();
/// m.accumulate(&logits, &tch::Tensor::from_slice(&[1i64, 0]));
/// // A second batch of one item weighs one item, not half.
/// m.accumulate(&logits.narrow(0, 0, 1), &tch::Tensor::from_slice(&[0i64]));
/// assert!((m.value() - 1.0 / 3.0).abs() < 1e-12);
/// ```
#[allow(non_upper_case_globals)]
pub const error_rate: MetricFn = MetricFn::Avg(AvgMetric::new("error_rate", wrong));

/// Whether the target is among the `k` highest logits, averaged over items.
struct TopK {
    k: i64,
    mean: Mean,
}

impl Metric for TopK {
    fn name(&self) -> String {
        format!("top_{}_accuracy", self.k)
    }
    fn reset(&mut self) {
        self.mean = Mean::new();
    }
    fn accumulate(&mut self, logits: &Tensor, targets: &Tensor) {
        let (_, idx) = logits.topk(self.k.min(logits.size()[1]), -1, true, false);
        let hits = idx
            .eq_tensor(&targets.unsqueeze(1))
            .any_dim(1, false)
            .to_kind(Kind::Float);
        self.mean.add(&hits);
    }
    fn value(&self) -> f64 {
        self.mean.value()
    }
}

/// Top-k accuracy (fastai's `top_k_accuracy`, k = 5 there): the target is among the `k`
/// most likely classes.
///
/// ```
/// let logits = tch::Tensor::from_slice(&[0.5f32, 0.3, 0.2, 0.1, 0.2, 0.7]).view([2, 3]);
/// let mut m = fastvision::top_k_accuracy(2).fresh();
/// m.accumulate(&logits, &tch::Tensor::from_slice(&[1i64, 0]));
/// assert_eq!(m.value(), 0.5);
/// ```
pub fn top_k_accuracy(k: usize) -> MetricFn {
    let k = k.max(1) as i64;
    MetricFn::new(move || TopK {
        k,
        mean: Mean::new(),
    })
}

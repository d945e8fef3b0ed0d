//! Metrics shown in the progress table: fastai's `accuracy` and `error_rate`, each averaged
//! over the validation set weighted by batch size.

use tch::{Kind, Tensor};

/// A named metric: from logits `[B, C]` and targets `[B]`, the batch's value.
#[derive(Clone, Copy)]
pub struct Metric {
    /// Column name in the progress table.
    pub name: &'static str,
    /// Computes the value for one batch.
    pub f: fn(&Tensor, &Tensor) -> f64,
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn accuracy_fn(logits: &Tensor, targets: &Tensor) -> f64 {
    logits
        .argmax(-1, false)
        .eq_tensor(targets)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

fn error_rate_fn(logits: &Tensor, targets: &Tensor) -> f64 {
    1.0 - accuracy_fn(logits, targets)
}

/// Fraction of correct predictions.
///
/// ```
/// let logits = tch::Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).view([2, 2]);
/// let targets = tch::Tensor::from_slice(&[1i64, 1]);
/// assert_eq!((fastvision::accuracy.f)(&logits, &targets), 0.5);
/// ```
#[allow(non_upper_case_globals)]
pub const accuracy: Metric = Metric {
    name: "accuracy",
    f: accuracy_fn,
};

/// Fraction of wrong predictions, `1 - accuracy`: the lesson's metric.
///
/// ```
/// let logits = tch::Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).view([2, 2]);
/// let targets = tch::Tensor::from_slice(&[1i64, 0]);
/// assert_eq!((fastvision::error_rate.f)(&logits, &targets), 0.0);
/// ```
#[allow(non_upper_case_globals)]
pub const error_rate: Metric = Metric {
    name: "error_rate",
    f: error_rate_fn,
};

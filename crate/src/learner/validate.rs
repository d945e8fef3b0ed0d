//! Validation: the loss and metrics over the validation set, from the model's evaluation step
//! ([`crate::models::Model::eval_logits`]), summed on the device and read back once. `fit`
//! runs the same step batch by batch between its validation hooks.

use tch::Kind;

use crate::Result;
use crate::data::loader::{Batch, DataLoader};
use crate::learner::Learner;
use crate::learner::metrics::{self, MetricFn};

impl Learner {
    /// Validation loss and metrics on the validation set.
    pub fn validate(&self) -> Result<(f64, Vec<f64>)> {
        self.validate_on(&self.data.valid_dl)
    }

    /// One figure of [`Learner::validate`] by name: `valid_loss` or a metric's name
    /// (`error_rate`); an unknown name is an error that lists the known ones.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// println!("error_rate {:.6}", learn.metric("error_rate").unwrap());
    /// ```
    pub fn metric(&self, name: &str) -> Result<f64> {
        let names: Vec<String> = self.metrics.iter().map(MetricFn::name).collect();
        let at = names.iter().position(|n| n == name);
        if name != "valid_loss" && at.is_none() {
            return Err(crate::Error::InvalidArgument(format!(
                "no metric called {name:?}: this learner reports valid_loss, {}",
                names.join(", ")
            )));
        }
        let (loss, values) = self.validate()?;
        Ok(at.map_or(loss, |i| values[i]))
    }

    /// Loss and metrics over `dl`, accumulated on the device and read back once at the end.
    pub(crate) fn validate_on(&self, dl: &DataLoader) -> Result<(f64, Vec<f64>)> {
        let mut totals = self.eval_totals();
        for batch in dl.epoch(0) {
            self.eval_batch(&mut totals, &batch?);
        }
        Ok(totals.value())
    }

    /// Empty validation totals for this learner's metrics.
    pub(crate) fn eval_totals(&self) -> EvalTotals {
        EvalTotals {
            loss: metrics::Mean::new(),
            metrics: self.metrics.iter().map(MetricFn::fresh).collect(),
        }
    }

    /// Adds one validation batch to `totals`: the model's evaluation step, then the loss and
    /// the metrics on its logits.
    pub(crate) fn eval_batch(&self, totals: &mut EvalTotals, batch: &Batch) {
        // fp32 for the loss and metrics, also when a validation pass runs under autocast.
        let logits = self.model.eval_logits(&batch.x).to_kind(Kind::Float);
        tch::no_grad(|| {
            let bs = batch.y.size()[0];
            // The batch mean times its size, in f64 as the mean would be read back.
            let batch_loss = self.loss_func.loss(&logits, &batch.y).to_kind(Kind::Double);
            totals.loss.add_sum(batch_loss * bs as f64, bs);
            for m in totals.metrics.iter_mut() {
                m.accumulate(&logits, &batch.y);
            }
        });
    }
}

/// Validation loss and metrics summed over batches on the device (one read-back at the end).
pub(crate) struct EvalTotals {
    loss: metrics::Mean,
    metrics: Vec<Box<dyn metrics::Metric>>,
}

impl EvalTotals {
    /// The mean loss and each metric's value.
    pub(crate) fn value(&self) -> (f64, Vec<f64>) {
        (
            self.loss.value(),
            self.metrics.iter().map(|m| m.value()).collect(),
        )
    }
}

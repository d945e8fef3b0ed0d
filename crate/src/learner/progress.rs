//! fastai's progress table: one row per epoch as it ends, with the epoch's progress shown
//! live while it runs (training batches, then validation). This callback says what to show;
//! the learner's renderer ([`crate::show::render`]) shows it: in a notebook the epoch's row
//! replaces its progress line, so the saved output is the table fastai prints.

use crate::Result;
use crate::learner::fit::{Callback, FitContext, format_time};

pub use crate::show::progress::PLAIN_EVERY;

/// The progress table and the live progress, part of every fit.
#[derive(Debug, Default)]
pub struct ProgressTable;

impl ProgressTable {
    /// The running part of an epoch's progress line: the smoothed training loss.
    ///
    /// ```
    /// assert_eq!(fastvision::learner::progress::ProgressTable::loss_suffix(0.41234), "loss 0.4123");
    /// ```
    pub fn loss_suffix(loss: f64) -> String {
        format!("loss {loss:.4}")
    }

    /// The table's columns for these metrics.
    ///
    /// ```
    /// let h = fastvision::learner::progress::ProgressTable::columns(&["error_rate".into()]);
    /// assert_eq!(h, ["epoch", "train_loss", "valid_loss", "error_rate", "time"]);
    /// ```
    pub fn columns(metric_names: &[String]) -> Vec<String> {
        let mut cols = vec![
            "epoch".to_string(),
            "train_loss".into(),
            "valid_loss".into(),
        ];
        cols.extend(metric_names.iter().cloned());
        cols.push("time".into());
        cols
    }

    /// The row of the epoch that just ended (`#na#` where nothing was validated).
    fn row(cx: &mut FitContext) -> Vec<String> {
        let mut cols = vec![cx.epoch.to_string(), format!("{:.6}", cx.smooth_loss())];
        match &cx.valid {
            Some((loss, metrics)) => {
                cols.push(format!("{loss:.6}"));
                cols.extend(metrics.iter().map(|m| format!("{m:.6}")));
            }
            None => cols.extend(std::iter::repeat_n(
                "#na#".to_string(),
                1 + cx.metric_names.len(),
            )),
        }
        cols.push(format_time(cx.epoch_start.elapsed().as_secs_f64()));
        cols
    }
}

impl Callback for ProgressTable {
    fn order(&self) -> i32 {
        100
    }
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let columns = Self::columns(&cx.metric_names);
        cx.learn.renderer.header(&columns);
        Ok(())
    }
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let what = format!("epoch {}/{}", cx.epoch + 1, cx.n_epochs);
        cx.learn.renderer.start(&what, cx.n_batches as u64);
        Ok(())
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        let done = cx.batch as u64 + 1;
        // Reading the loss waits for the device, so only when the line is redrawn.
        cx.render(|r, cx| r.update(done, &mut || Self::loss_suffix(cx.smooth_loss())));
        Ok(())
    }
    fn on_validate_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let what = format!("epoch {}/{} validation", cx.epoch + 1, cx.n_epochs);
        cx.learn.renderer.start(&what, cx.n_valid_batches as u64);
        Ok(())
    }
    fn on_validate_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        let done = cx.valid_batch as u64 + 1;
        cx.learn.renderer.update(done, &mut String::new);
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        let row = Self::row(cx);
        cx.learn.renderer.end(Some(&row));
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        cx.learn.renderer.end(None);
        if let Some(why) = cx.stopped_because.clone() {
            cx.learn.renderer.note(&format!("stopped early: {why}"));
        }
        Ok(())
    }
}

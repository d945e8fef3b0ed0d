//! fastai's progress table: one line per epoch as it ends, with the epoch's progress shown
//! live while it runs (training batches, then validation) through [`crate::show::Progress`]:
//! a bar on a terminal, a line redrawn in place in the notebook, a plain line every 10 s
//! otherwise. In a notebook the epoch's row replaces its progress line, so the saved output is
//! the table fastai prints. `lr_find` gets one progress line for its sweep and no table.

use crate::Result;
use crate::learner::fit::{Callback, FitContext, format_time};
use crate::show::Progress;

pub use crate::show::progress::PLAIN_EVERY;

/// The progress table and the live progress, part of every fit.
#[derive(Default)]
pub struct ProgressTable {
    live: Option<Progress>,
}

impl ProgressTable {
    /// The running part of an epoch's progress line: the smoothed training loss.
    ///
    /// ```
    /// assert_eq!(fastvision::learner::progress::ProgressTable::loss_suffix(0.41234), "loss 0.4123");
    /// ```
    pub fn loss_suffix(loss: f64) -> String {
        format!("loss {loss:.4}")
    }

    /// The header line for these metrics.
    ///
    /// ```
    /// let h = fastvision::learner::progress::ProgressTable::header(&["error_rate".into()]);
    /// assert!(h.starts_with("epoch") && h.ends_with("time"));
    /// ```
    pub fn header(metric_names: &[String]) -> String {
        let mut cols = vec![
            "epoch".to_string(),
            "train_loss".into(),
            "valid_loss".into(),
        ];
        cols.extend(metric_names.iter().cloned());
        cols.push("time".into());
        Self::line(&cols)
    }

    fn line(cols: &[String]) -> String {
        cols.iter()
            .map(|c| format!("{c:<12}"))
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    /// The line for the epoch that just ended.
    fn row(cx: &mut FitContext) -> String {
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
        Self::line(&cols)
    }
}

impl Callback for ProgressTable {
    fn order(&self) -> i32 {
        100
    }
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if cx.validate {
            println!("{}", Self::header(&cx.metric_names));
        } else {
            // lr_find: one line for the whole sweep (its finder has set the length by now).
            self.live = Some(Progress::new("lr_find", cx.total_iterations as u64));
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if cx.validate {
            let what = format!("epoch {}/{}", cx.epoch + 1, cx.n_epochs);
            self.live = Some(Progress::new(what, cx.n_batches as u64));
        }
        Ok(())
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        let done = if cx.validate {
            cx.batch + 1
        } else {
            cx.iteration + 1
        };
        if let Some(p) = self.live.take() {
            // Reading the loss waits for the device, so only when the line is redrawn.
            p.set_with(done as u64, || Self::loss_suffix(cx.smooth_loss()));
            self.live = Some(p);
        }
        Ok(())
    }
    fn on_validate_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Some(p) = &self.live {
            let what = format!("epoch {}/{} validation", cx.epoch + 1, cx.n_epochs);
            p.restart(what, cx.n_valid_batches as u64);
        }
        Ok(())
    }
    fn on_validate_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Some(p) = &self.live {
            p.set(cx.valid_batch as u64 + 1);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if cx.validate {
            let row = Self::row(cx);
            match self.live.take() {
                Some(p) => p.finish_with(&row),
                None => println!("{row}"),
            }
        }
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Some(p) = self.live.take() {
            p.finish();
        }
        match &cx.stopped_because {
            Some(why) if cx.validate => println!("stopped early: {why}"),
            // lr_find always ends this way; it is no failure.
            Some(why) => println!("{why}"),
            None => {}
        }
        Ok(())
    }
}

//! fastai's progress table: one line per epoch as it ends (so a notebook shows it live), with
//! a progress bar and ETA over the batches when stderr is a terminal.

use crate::Result;
use crate::learner::fit::{Callback, FitContext, format_time};

/// The progress table and bar, part of every fit.
#[derive(Default)]
pub struct ProgressTable {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressTable {
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
        // lr_find (which skips validation) has no table to show.
        if cx.validate {
            println!("{}", Self::header(&cx.metric_names));
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        let bar = indicatif::ProgressBar::new(cx.n_batches as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {msg} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        );
        bar.set_message(format!("{}/{}", cx.epoch + 1, cx.n_epochs));
        self.bar = Some(bar);
        Ok(())
    }
    fn on_batch_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if cx.validate {
            println!("{}", Self::row(cx));
        }
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
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

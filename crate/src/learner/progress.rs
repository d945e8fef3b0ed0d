//! fastai's progress table: one line per epoch as it ends (so a notebook shows it live), with
//! a progress bar and ETA over the batches when stderr is a terminal, and a plain progress
//! line about every 10 s when it is not (a log file, CI, nohup), as fastprogress prints in a
//! plain console, so a long epoch never looks hung.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::Result;
use crate::learner::fit::{Callback, FitContext, format_time};

/// How often the plain progress line is printed without a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// How progress within an epoch is shown.
enum Live {
    /// indicatif's bar on a terminal.
    Bar(indicatif::ProgressBar),
    /// A line on stderr every [`PLAIN_EVERY`], with no terminal.
    Plain { last: Instant },
    /// Nothing: a notebook, which shows the epoch lines as they come.
    Quiet,
}

/// The progress table and bar, part of every fit.
pub struct ProgressTable {
    live: Live,
    every: Duration,
}

impl Default for ProgressTable {
    /// Plain lines every [`crate::config::progress_every`] (10 s unless set).
    fn default() -> Self {
        ProgressTable {
            live: Live::Quiet,
            every: crate::config::progress_every(),
        }
    }
}

impl ProgressTable {
    /// The plain progress line: where the epoch is, the running loss and the time left.
    ///
    /// ```
    /// use fastvision::learner::progress::ProgressTable;
    /// let line = ProgressTable::plain_line(0, 4, 120, 300, 0.41234, 12.0);
    /// assert_eq!(line, "epoch 1/4: batch 120/300, loss 0.412340, 00:12 elapsed, 00:18 left");
    /// ```
    pub fn plain_line(
        epoch: usize,
        n_epochs: usize,
        done: usize,
        total: usize,
        loss: f64,
        elapsed: f64,
    ) -> String {
        let left = elapsed / done.max(1) as f64 * total.saturating_sub(done) as f64;
        format!(
            "epoch {}/{n_epochs}: batch {done}/{total}, loss {loss:.6}, {} elapsed, {} left",
            epoch + 1,
            format_time(elapsed),
            format_time(left)
        )
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
        // lr_find (which skips validation) has no table to show.
        if cx.validate {
            println!("{}", Self::header(&cx.metric_names));
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.live = if crate::show::in_notebook() {
            Live::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(cx.n_batches as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {msg} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
                )
                .expect("valid template"),
            );
            bar.set_message(format!("{}/{}", cx.epoch + 1, cx.n_epochs));
            Live::Bar(bar)
        } else {
            Live::Plain {
                last: Instant::now(),
            }
        };
        Ok(())
    }
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        match &mut self.live {
            Live::Bar(b) => b.inc(1),
            Live::Plain { last } if last.elapsed() >= self.every => {
                *last = Instant::now();
                // Reading the loss costs one transfer, every 10 s at most.
                let done = cx.batch + 1;
                eprintln!(
                    "{}",
                    Self::plain_line(
                        cx.epoch,
                        cx.n_epochs,
                        done,
                        cx.n_batches,
                        cx.smooth_loss(),
                        cx.epoch_start.elapsed().as_secs_f64(),
                    )
                );
            }
            _ => {}
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Live::Bar(b) = std::mem::replace(&mut self.live, Live::Quiet) {
            b.finish_and_clear();
        }
        if cx.validate {
            println!("{}", Self::row(cx));
        }
        Ok(())
    }
    fn on_train_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if let Live::Bar(b) = std::mem::replace(&mut self.live, Live::Quiet) {
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

//! Progress of a long step (an epoch, decoding a dataset, verifying images, predicting, a
//! download), shown where the person running it looks:
//!
//! - on a terminal, indicatif's bar on stderr;
//! - in the project's notebook kernel, one line redrawn in place (a carriage return, as tqdm
//!   does in Python), at most about once a second, so a 4-minute epoch visibly moves and the
//!   saved notebook keeps one line per step;
//! - anywhere else (a log file, CI, a kernel that cannot redraw), a plain line every
//!   [`crate::config::progress_every`], so a long step never looks hung.
//!
//! A step that ends before its first redraw shows nothing, so quick steps stay quiet.
//! [`Progress`] can be shared between threads (rayon workers call [`Progress::inc`]).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a [`Progress`] shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// indicatif's bar on stderr (a terminal).
    Bar,
    /// One line on stdout, redrawn in place with a carriage return (the notebook kernel).
    InPlace,
    /// A new line on stderr every so often (no terminal).
    Lines,
    /// Nothing.
    Hidden,
}

impl Live {
    /// The style for this process: [`Live::InPlace`] in the project's notebook kernel,
    /// [`Live::Bar`] when stderr is a terminal, else [`Live::Lines`].
    ///
    /// ```
    /// use fastvision::show::progress::Live;
    /// assert_ne!(Live::detect(), Live::InPlace); // tests run outside a notebook
    /// ```
    pub fn detect() -> Live {
        use std::io::IsTerminal;
        if crate::config::notebook_redraws_in_place() {
            Live::InPlace
        } else if std::io::stderr().is_terminal() && !crate::config::in_notebook() {
            Live::Bar
        } else {
            Live::Lines
        }
    }
}

/// What the counts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Items, batches, files.
    Items,
    /// Bytes (shown in MB).
    Bytes,
}

pub use crate::config::PLAIN_EVERY;

/// How often an in-place line is redrawn, and how long a step runs before it shows at all.
pub const IN_PLACE_EVERY: Duration = Duration::from_secs(1);

/// The progress of one step of `total` units.
///
/// ```
/// use fastvision::show::progress::Progress;
/// let p = Progress::new("verify_images", 3);
/// p.inc(1);
/// p.inc(2);
/// p.finish(); // prints nothing: the step ended before its first redraw
/// ```
pub struct Progress {
    live: Live,
    unit: Unit,
    every: Duration,
    delay: Duration,
    total: AtomicU64,
    done: AtomicU64,
    state: Mutex<State>,
}

struct State {
    what: String,
    start: Instant,
    last: Option<Instant>,
    /// Widest line drawn in place, so a shorter one can blank what it does not cover.
    width: usize,
    bar: Option<indicatif::ProgressBar>,
    out: Box<dyn Write + Send>,
    finished: bool,
}

impl Progress {
    /// Progress of `total` items, shown as [`Live::detect`] decides.
    pub fn new(what: impl Into<String>, total: u64) -> Progress {
        Progress::styled(what, total, Live::detect())
    }

    /// Progress of `total` items shown in the style `live`, where that style shows: the
    /// in-place line on stdout, the bar and plain lines on stderr.
    ///
    /// ```
    /// use fastvision::show::progress::{Live, Progress};
    /// let p = Progress::styled("predicting", 10, Live::Hidden);
    /// p.set(10);
    /// p.finish();
    /// ```
    pub fn styled(what: impl Into<String>, total: u64, live: Live) -> Progress {
        let out: Box<dyn Write + Send> = match live {
            Live::InPlace => Box::new(std::io::stdout()),
            _ => Box::new(std::io::stderr()),
        };
        // FASTVISION_PROGRESS_EVERY under a second redraws an in-place line that often too.
        let every = match live {
            Live::InPlace => IN_PLACE_EVERY.min(crate::config::progress_every()),
            _ => crate::config::progress_every(),
        };
        Progress::with(what, total, live, out, every)
    }

    /// Progress of a download of `total` bytes (0: unknown size).
    pub fn bytes(what: impl Into<String>, total: u64) -> Progress {
        let mut p = Progress::new(what, total);
        p.unit = Unit::Bytes;
        if let Some(bar) = &p.state.get_mut().expect("fresh lock").bar {
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
        }
        p
    }

    /// Progress shown in a given style on a given writer, redrawn at most every `every` and
    /// first drawn after `every` too (tests use [`Duration::ZERO`] to see every update).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use fastvision::show::progress::{Live, Progress};
    /// #[derive(Clone)]
    /// struct Buf(Arc<Mutex<Vec<u8>>>);
    /// impl std::io::Write for Buf {
    ///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
    ///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// }
    /// let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    /// let p = Progress::with("decoding", 4, Live::InPlace, Box::new(buf.clone()), Duration::ZERO);
    /// p.inc(2);
    /// p.finish();
    /// let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    /// assert!(text.starts_with("\rdecoding ") && text.contains(" 2/4 "), "{text:?}");
    /// // The last line stays, padded over the longer one it replaces, and is ended.
    /// assert!(text.ends_with("\n\n") && text.trim_end().ends_with(" 4/4 [00:00]"), "{text:?}");
    /// ```
    pub fn with(
        what: impl Into<String>,
        total: u64,
        live: Live,
        out: Box<dyn Write + Send>,
        every: Duration,
    ) -> Progress {
        let what = what.into();
        let bar = (live == Live::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {pos}/{len} [{elapsed}<{eta}]",
                )
                .expect("valid template"),
            );
            bar.set_message(what.clone());
            bar
        });
        Progress {
            live,
            unit: Unit::Items,
            every,
            delay: every,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            state: Mutex::new(State {
                what,
                start: Instant::now(),
                last: None,
                width: 0,
                bar,
                out,
                finished: false,
            }),
        }
    }

    /// Adds `n` done units, and redraws if it is time.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.tick(String::new);
    }

    /// Sets the done count, and redraws if it is time.
    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.tick(String::new);
    }

    /// Sets the done count and redraws if it is time, with `suffix()` after the counts (for
    /// example the running loss). `suffix` runs only when the line is drawn, so it may be
    /// costly (reading a loss waits for the GPU).
    pub fn set_with(&self, done: u64, suffix: impl FnOnce() -> String) {
        self.done.store(done, Ordering::Relaxed);
        self.tick(suffix);
    }

    /// Starts a new phase on the same line (an epoch's validation after its training): the
    /// label, total and clock start again, and the next redraw replaces the old line.
    pub fn restart(&self, what: impl Into<String>, total: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.what = what.into();
        st.start = Instant::now();
        if let Some(bar) = &st.bar {
            bar.reset();
            bar.set_length(total);
            bar.set_message(st.what.clone());
        }
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    fn tick(&self, suffix: impl FnOnce() -> String) {
        let done = self.done.load(Ordering::Relaxed);
        if self.live == Live::Hidden {
            return;
        }
        // A worker that finds another one drawing just goes on: the next tick will draw.
        let Ok(mut guard) = self.state.try_lock() else {
            return;
        };
        let st = &mut *guard;
        if st.finished {
            return;
        }
        let now = Instant::now();
        let due = match st.last {
            None => now.duration_since(st.start) >= self.delay,
            Some(last) => now.duration_since(last) >= self.every,
        };
        if let Some(bar) = &st.bar {
            bar.set_position(done);
            if due {
                st.last = Some(now);
                let s = suffix();
                if !s.is_empty() {
                    bar.set_message(format!("{} {s}", st.what));
                }
            }
            return;
        }
        if due {
            st.last = Some(now);
            let line = self.line(st, done, &suffix());
            self.draw(st, &line, false);
        }
    }

    /// The line for `done` units: label, bar, counts, elapsed and time left, as fastprogress.
    fn line(&self, st: &State, done: u64, suffix: &str) -> String {
        let total = self.total.load(Ordering::Relaxed);
        let elapsed = st.start.elapsed().as_secs_f64();
        let count = |n: u64| match self.unit {
            Unit::Items => n.to_string(),
            Unit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
        };
        let mut line = st.what.clone();
        if total > 0 {
            let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (frac * 20.0).round() as usize;
            line += &format!(
                " {}{} {}/{}",
                "█".repeat(filled),
                "░".repeat(20 - filled),
                count(done),
                count(total)
            );
        } else {
            line += &format!(" {}", count(done));
        }
        let left = if done > 0 && total > done {
            format!(
                "<{}",
                format_time(elapsed / done as f64 * (total - done) as f64)
            )
        } else {
            String::new()
        };
        line += &format!(" [{}{left}", format_time(elapsed));
        if !suffix.is_empty() {
            line += ", ";
            line += suffix;
        }
        line + "]"
    }

    /// Writes `line`: in place (padded over the previous one), or as a new line.
    fn draw(&self, st: &mut State, line: &str, last: bool) {
        let text = match self.live {
            Live::InPlace => {
                let chars = line.chars().count();
                let pad = st.width.saturating_sub(chars);
                st.width = st.width.max(chars);
                // The kernel passes a line that starts with '\r' on without its newline, so
                // Jupyter redraws it; the empty line after the last one ends it.
                format!(
                    "\r{line}{}\n{}",
                    " ".repeat(pad),
                    if last { "\n" } else { "" }
                )
            }
            _ => format!("{line}\n"),
        };
        let _ = st.out.write_all(text.as_bytes());
        let _ = st.out.flush();
    }

    /// Ends the step: a line that was drawn is left showing the final count and time.
    pub fn finish(&self) {
        self.finish_showing(false);
    }

    /// Ends a step that stopped short (an lr_find sweep that diverged, a fit that failed): a
    /// line that was drawn is left showing the count it reached, not the total.
    ///
    /// ```
    /// use fastvision::show::progress::{Live, Progress};
    /// # #[derive(Clone, Default)] struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    /// # impl std::io::Write for Buf {
    /// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
    /// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// let buf = Buf::default();
    /// let p = Progress::with("lr_find", 100, Live::Lines, Box::new(buf.clone()), std::time::Duration::ZERO);
    /// p.set(67);
    /// p.finish_short();
    /// let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    /// assert!(text.lines().last().unwrap().contains(" 67/100 "), "{text:?}");
    /// ```
    pub fn finish_short(&self) {
        self.finish_showing(true);
    }

    fn finish_showing(&self, reached: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut st.finished, true) {
            return;
        }
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        } else if st.last.is_some() {
            let total = self.total.load(Ordering::Relaxed);
            let done = if total > 0 && !reached {
                total
            } else {
                self.done.load(Ordering::Relaxed)
            };
            // At the final count the line has no time left, only the time taken.
            let line = self.line(&st, done, "");
            if self.live == Live::InPlace {
                self.draw(&mut st, &line, true);
            } else {
                self.draw(&mut st, &line, false);
            }
        }
    }

    /// Ends the step and, drawn in place, shows `line` in its place (an epoch's row of the
    /// progress table replaces the epoch's line); says whether it did. In the other styles
    /// the bar or line just ends, and the caller shows `line` itself.
    pub fn finish_with(&self, line: &str) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.finished = true;
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        }
        if self.live != Live::InPlace {
            return false;
        }
        if st.last.is_some() {
            self.draw(&mut st, line, true);
        } else {
            let _ = writeln!(st.out, "{line}");
            let _ = st.out.flush();
        }
        true
    }
}

impl Drop for Progress {
    /// A step that ends early (an error) still ends its line.
    fn drop(&mut self) {
        self.finish();
    }
}

/// `m:ss` (or `h:mm:ss`), as fastprogress formats times.
///
/// ```
/// assert_eq!(fastvision::show::progress::format_time(75.4), "01:15");
/// assert_eq!(fastvision::show::progress::format_time(3725.0), "1:02:05");
/// ```
pub fn format_time(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

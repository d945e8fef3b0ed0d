//! What a fit shows, as a layer apart from the training loop (burn-train's
//! `MetricsRenderer`): the progress table's header and rows, the live progress of the step
//! running (an epoch's batches, its validation, an `lr_find` sweep) and notes under the table
//! ("stopped early: ...", the suggested learning rates). The callbacks that show a fit
//! ([`crate::learner::progress::ProgressTable`], `lr_find`) say what to show; a [`Renderer`]
//! decides how and where:
//!
//! - [`Console::notebook`]: in the notebook kernel, a line redrawn in place that the epoch's row
//!   replaces, so the saved notebook holds fastai's table;
//! - [`Console::terminal`]: indicatif's bar on stderr, rows and notes on stdout;
//! - [`Console::lines`]: no terminal (a log file, CI): a plain progress line every so often;
//! - [`LogRenderer`]: everything through the `log` crate, for services and batch jobs.
//!
//! A learner starts with [`default_renderer`] (the console, as this process is run) and
//! `learn.renderer` swaps it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::show::progress::{Live, Progress};

/// Where what a fit shows goes. The strings are the finished cells and lines; a renderer
/// only lays them out.
///
/// ```
/// use fastvision::show::render::Renderer;
/// /// Keeps the table's rows, e.g. to send them elsewhere.
/// #[derive(Default)]
/// struct Rows(Vec<Vec<String>>);
/// impl Renderer for Rows {
///     fn header(&mut self, _columns: &[String]) {}
///     fn start(&mut self, _what: &str, _total: u64) {}
///     fn update(&mut self, _done: u64, _suffix: &mut dyn FnMut() -> String) {}
///     fn end(&mut self, row: Option<&[String]>) {
///         self.0.extend(row.map(|r| r.to_vec()));
///     }
///     fn note(&mut self, _text: &str) {}
/// }
/// let mut r = Rows::default();
/// r.end(Some(&["0".into(), "0.5".into()]));
/// assert_eq!(r.0.len(), 1);
/// ```
pub trait Renderer: Send {
    /// A table starts: its column names (`epoch`, `train_loss`, `valid_loss`, the metrics,
    /// `time`).
    fn header(&mut self, columns: &[String]);
    /// A step of `total` units starts (it replaces a step still running).
    fn start(&mut self, what: &str, total: u64);
    /// The running step has done `done` units. `suffix` (the running loss, say) waits for the
    /// device, so a renderer calls it only when it draws.
    fn update(&mut self, done: u64, suffix: &mut dyn FnMut() -> String);
    /// The running step ends, and `row` (a table row's cells), if any, shows in its place;
    /// without a row, the step's line shows the count it reached.
    fn end(&mut self, row: Option<&[String]>);
    /// A line of text under the table.
    fn note(&mut self, text: &str);
}

/// The renderer of this process: [`Console::notebook`] in the project's notebook kernel,
/// [`Console::terminal`] when stderr is a terminal, else [`Console::lines`].
///
/// ```
/// let r = fastvision::show::render::default_renderer();
/// ```
pub fn default_renderer() -> Box<dyn Renderer> {
    Box::new(Console::new(Live::detect()))
}

/// A table with its progress on the console: rows and notes on stdout, the live progress as
/// `live` says (see the module docs).
pub struct Console {
    live: Live,
    /// Where everything goes when set with [`Console::to`]; rows and notes go to stdout
    /// otherwise.
    out: Option<Shared>,
    /// Set by [`Console::to`]: everything to `out`, redrawn this often.
    every: Option<Duration>,
    progress: Option<Progress>,
}

type Shared = Arc<Mutex<Box<dyn Write + Send>>>;

impl Console {
    /// The console in the style `live`, writing rows and notes to stdout.
    pub fn new(live: Live) -> Console {
        Console {
            live,
            out: None,
            every: None,
            progress: None,
        }
    }

    /// In the notebook kernel: the progress line redrawn in place, replaced by the row.
    pub fn notebook() -> Console {
        Console::new(Live::InPlace)
    }

    /// On a terminal: indicatif's bar.
    pub fn terminal() -> Console {
        Console::new(Live::Bar)
    }

    /// Without a terminal: a plain progress line every so often.
    pub fn lines() -> Console {
        Console::new(Live::Lines)
    }

    /// The same console writing everything, progress included, to `out`, redrawing every
    /// `every` (what tests read back).
    ///
    /// ```
    /// use fastvision::show::progress::Live;
    /// use fastvision::show::render::{Console, Renderer};
    /// #[derive(Clone, Default)]
    /// struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    /// impl std::io::Write for Buf {
    ///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
    ///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// }
    /// let buf = Buf::default();
    /// let mut c = Console::new(Live::Lines).to(Box::new(buf.clone()), std::time::Duration::ZERO);
    /// c.header(&["epoch".into(), "train_loss".into()]);
    /// c.start("epoch 1/1", 2);
    /// c.update(1, &mut || "loss 0.5".into());
    /// c.end(Some(&["0".into(), "0.500000".into()]));
    /// c.note("stopped early: why");
    /// let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    /// assert!(text.starts_with("epoch       train_loss\n"), "{text:?}");
    /// assert!(text.contains("epoch 1/1") && text.contains("loss 0.5"), "{text:?}");
    /// assert!(text.ends_with("0           0.500000\nstopped early: why\n"), "{text:?}");
    /// ```
    pub fn to(mut self, out: Box<dyn Write + Send>, every: Duration) -> Console {
        self.out = Some(Arc::new(Mutex::new(out)));
        self.every = Some(every);
        self
    }

    fn writeln(&self, line: &str) {
        match &self.out {
            Some(out) => {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            // Through print!, so a test harness captures it as it does any output.
            None => println!("{line}"),
        }
    }
}

/// Cells padded to fastprogress's column width (a longer one keeps a space after it).
fn table_line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| format!("{c:<11} "))
        .collect::<String>()
        .trim_end()
        .to_string()
}

impl Renderer for Console {
    fn header(&mut self, columns: &[String]) {
        self.writeln(&table_line(columns));
    }
    fn start(&mut self, what: &str, total: u64) {
        match &self.progress {
            // The same line goes on (an epoch's validation after its batches).
            Some(p) => p.restart(what, total),
            None => {
                self.progress = Some(match (&self.out, self.every) {
                    (Some(out), Some(every)) => {
                        let out = Box::new(SharedOut(out.clone()));
                        Progress::with(what, total, self.live, out, every)
                    }
                    _ => Progress::styled(what, total, self.live),
                })
            }
        }
    }
    fn update(&mut self, done: u64, suffix: &mut dyn FnMut() -> String) {
        if let Some(p) = &self.progress {
            p.set_with(done, suffix);
        }
    }
    fn end(&mut self, row: Option<&[String]>) {
        let line = row.map(table_line);
        let shown = match (self.progress.take(), &line) {
            // In place, the row replaces the progress line.
            (Some(p), Some(line)) => p.finish_with(line),
            // No row: the step stopped where it was (a sweep that diverged, a failed fit).
            (Some(p), None) => {
                p.finish_short();
                false
            }
            (None, _) => false,
        };
        if let Some(line) = line.filter(|_| !shown) {
            self.writeln(&line);
        }
    }
    fn note(&mut self, text: &str) {
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        self.writeln(text);
    }
}

/// One writer shared by a console and its progress line.
struct SharedOut(Shared);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Everything through the `log` crate at info level: the header and each row as one line,
/// progress as a plain line every [`crate::config::progress_every`], notes as they come. For
/// a service or a batch job whose output goes to a log.
///
/// ```
/// use fastvision::show::render::{LogRenderer, Renderer};
/// let mut r = LogRenderer::default();
/// r.header(&["epoch".into(), "train_loss".into()]);
/// r.end(Some(&["0".into(), "0.5".into()])); // logs "epoch 0: train_loss 0.5"
/// ```
#[derive(Default)]
pub struct LogRenderer {
    columns: Vec<String>,
    progress: Option<Progress>,
}

/// Lines written to it go to `log::info!`.
struct LogLines(Vec<u8>);

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        while let Some(end) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if !line.trim().is_empty() {
                log::info!("{}", line.trim_end());
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Renderer for LogRenderer {
    fn header(&mut self, columns: &[String]) {
        self.columns = columns.to_vec();
    }
    fn start(&mut self, what: &str, total: u64) {
        match &self.progress {
            Some(p) => p.restart(what, total),
            None => {
                let out = Box::new(LogLines(Vec::new()));
                let every = crate::config::progress_every();
                self.progress = Some(Progress::with(what, total, Live::Lines, out, every));
            }
        }
    }
    fn update(&mut self, done: u64, suffix: &mut dyn FnMut() -> String) {
        if let Some(p) = &self.progress {
            p.set_with(done, suffix);
        }
    }
    fn end(&mut self, row: Option<&[String]>) {
        if let Some(p) = self.progress.take() {
            // Without a row the step stopped where it was: its count, not the total.
            if row.is_some() {
                p.finish();
            } else {
                p.finish_short();
            }
        }
        if let Some(row) = row {
            let mut cells = self.columns.iter().zip(row);
            let first = cells
                .next()
                .map(|(c, v)| format!("{c} {v}"))
                .unwrap_or_default();
            let rest: Vec<String> = cells.map(|(c, v)| format!("{c} {v}")).collect();
            log::info!("{first}: {}", rest.join(", "));
        }
    }
    fn note(&mut self, text: &str) {
        log::info!("{text}");
    }
}

/// Shows nothing.
///
/// ```
/// use fastvision::show::render::{Renderer, Silent};
/// Silent.note("not shown");
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Renderer for Silent {
    fn header(&mut self, _columns: &[String]) {}
    fn start(&mut self, _what: &str, _total: u64) {}
    fn update(&mut self, _done: u64, _suffix: &mut dyn FnMut() -> String) {}
    fn end(&mut self, _row: Option<&[String]>) {}
    fn note(&mut self, _text: &str) {}
}

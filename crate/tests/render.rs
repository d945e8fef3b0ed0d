//! What a fit shows goes through the learner's renderer: the console's table and progress into
//! any writer, the log renderer's rows into the `log` crate, and nothing after `no_bar()`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastvision::learner::lr_find::LrFind;
use fastvision::show::progress::Live;
use fastvision::show::render::{Console, LogRenderer};
use fastvision::{cnn_learner, error_rate, mobilenet_v2};

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Keeps every log record's message.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

static LOGS: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn a_fit_shows_through_the_learners_renderer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 8);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();

    // The console, into a buffer: the header, each epoch's progress, then its row.
    let buf = Buf::default();
    learn.renderer = Box::new(Console::new(Live::Lines).to(Box::new(buf.clone()), Duration::ZERO));
    learn.fit(2, 1e-3).unwrap();
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "epoch       train_loss  valid_loss  error_rate  time"
    );
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("0   ") || l.starts_with("1   "))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, rec) in rows.iter().zip(&learn.recorder.epochs) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2], format!("{:.6}", rec.valid_loss.unwrap()), "{row}");
    }
    assert!(
        text.contains("epoch 1/2") && text.contains("loss "),
        "{text}"
    );

    // lr_find shows its one line, where it stopped and fastai's suggestions, no table.
    let buf = Buf::default();
    learn.renderer = Box::new(Console::new(Live::Lines).to(Box::new(buf.clone()), Duration::ZERO));
    let sweep = learn
        .lr_find_with(LrFind {
            num_it: 30,
            ..Default::default()
        })
        .unwrap();
    let text = buf.text();
    assert!(text.starts_with("lr_find "), "{text}");
    assert!(!text.contains("valid_loss"), "no table for a sweep: {text}");
    assert!(text.contains(&sweep.suggestion_line().unwrap()), "{text}");

    // The log renderer: one line per epoch, each value named.
    log::set_logger(&LOGS).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    learn.renderer = Box::new(LogRenderer::default());
    learn.fit(1, 1e-3).unwrap();
    let rec = &learn.recorder.epochs[0];
    let want = format!(
        "epoch 0: train_loss {:.6}, valid_loss {:.6}, error_rate {:.6}",
        rec.train_loss,
        rec.valid_loss.unwrap(),
        rec.metrics[0]
    );
    let logs = LOGS.0.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.starts_with(&want)),
        "{want} not in {logs:?}"
    );

    // no_bar: nothing at all.
    let buf = Buf::default();
    learn.renderer = Box::new(Console::new(Live::Lines).to(Box::new(buf.clone()), Duration::ZERO));
    learn.no_bar().fit(1, 1e-3).unwrap();
    learn
        .lr_find_with(LrFind {
            num_it: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(buf.text(), "");
}

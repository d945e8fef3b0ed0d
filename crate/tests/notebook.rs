//! The lesson notebook (notebooks/lesson1-fruits.ipynb), executed headlessly with the project's
//! "Rust (fastvision)" kernel exactly as a reader would run it: every cell must succeed, the
//! lesson's pictures must be in the outputs, the HTML rendering must embed them, and a Kaggle
//! key in the environment must appear nowhere.
//!
//! Runs on the real Fruits 360 sample with mobilenet_v2 when `../shared` has it, else on the
//! generated synthetic sample. Needs the kernel (`make kernel`; `make test` installs it first).

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

const SECRET_KEY: &str = "fvtestkey0c4f9e1d7b2a46c8must-never-be-printed";
const NOTEBOOK: &str = "notebooks/lesson1-fruits.ipynb";
/// The second notebook, after the lesson: it goes on from the first one's export.
const NOTEBOOK2: &str = "notebooks/lesson2-beyond.ipynb";

/// The second notebook's cells that must show a picture.
const PICTURES2: [&str; 6] = [
    "show_batch_valid",
    "show_results",
    "confusion_figsize",
    "similars",
    "leakage_closest",
    "leakage_threshold",
];

/// The cells whose output must hold a picture, by their tag in the notebook.
const PICTURES: [&str; 6] = [
    "show_batch",
    "plot_losses",
    "top_losses",
    "confusion_matrix",
    "confusion_mistakes",
    "lr_find",
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn tagged<'a>(nb: &'a Value, tag: &str) -> &'a Value {
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["metadata"]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == tag))
        })
        .unwrap_or_else(|| panic!("no cell tagged {tag:?} in the notebook"))
}

/// The outputs' data of one MIME type, concatenated.
fn output_data(cell: &Value, mime: &str) -> Vec<String> {
    cell["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["data"].get(mime).map(text))
        .collect()
}

fn streams(cell: &Value) -> String {
    cell["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["output_type"] == "stream")
        .map(|o| text(&o["text"]))
        .collect()
}

/// The rows of a fit cell's progress table as it streamed: epoch, train_loss, valid_loss, the
/// metrics and the time, one row per epoch.
fn table_rows(cell: &Value) -> Vec<Vec<String>> {
    streams(cell)
        .lines()
        // A row drawn over its progress line comes after the line's last carriage return.
        .filter_map(|l| l.rsplit('\r').next())
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|e| e.parse::<usize>().is_ok())
        })
        .filter(|l| l.split_whitespace().count() >= 5)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The error rate of a fit cell's last epoch: its streamed table's last row, or the last row
/// of its HTML table where it showed one.
fn last_error_rate_of(cell: &Value) -> f64 {
    match table_rows(cell).last() {
        Some(row) => row[3]
            .parse()
            .unwrap_or_else(|_| panic!("no error_rate in the row {row:?}")),
        None => last_error_rate(&output_data(cell, "text/html").concat()),
    }
}

fn last_error_rate(html: &str) -> f64 {
    let last_row = html.rsplit("<tr>").next().unwrap_or("");
    let cells: Vec<&str> = last_row
        .split("<td")
        .skip(1)
        .filter_map(|c| {
            c.split_once('>')
                .map(|(_, rest)| rest.split('<').next().unwrap_or(""))
        })
        .collect();
    cells
        .get(3)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no error_rate in the fit table: {html}"))
}

/// A cell's value shown as text, trimmed (evcxr's `text/plain`).
fn shown_text(cell: &Value) -> String {
    output_data(cell, "text/plain").concat().trim().to_string()
}

/// No cell shows `()`: a cell that ends in a call returning nothing ends with `;`.
fn assert_no_unit_outputs(nb: &Value) {
    for cell in nb["cells"].as_array().unwrap() {
        assert_ne!(
            shown_text(cell),
            "()",
            "a cell shows (): end it with ';': {}",
            text(&cell["source"])
        );
    }
}

/// The fine-tune keeps the best weights it saw: of the weights it started from (the frozen
/// fit's last epoch, which lr_find put back) and its own epochs, the one with the lowest
/// valid_loss, which the `kept` cell names and whose error rate it shows.
fn assert_kept_the_best(nb: &Value) {
    let frozen = table_rows(tagged(nb, "fit"));
    let tuned = table_rows(tagged(nb, "fine_tune"));
    assert!(
        !frozen.is_empty() && !tuned.is_empty(),
        "fit tables: {frozen:?} {tuned:?}"
    );
    let num = |row: &[String], i: usize| -> f64 {
        row[i]
            .parse()
            .unwrap_or_else(|_| panic!("column {i} of {row:?}"))
    };
    let start = frozen.last().unwrap();
    let (mut best, mut best_loss, mut best_error) = (
        "the starting weights".to_string(),
        num(start, 2),
        num(start, 3),
    );
    for row in &tuned {
        if num(row, 2) < best_loss {
            best = format!("epoch {}", row[0]);
            (best_loss, best_error) = (num(row, 2), num(row, 3));
        }
    }
    let kept = tagged(nb, "kept");
    // The line the cell prints, beside the progress line of the validation it runs.
    let said = streams(kept)
        .lines()
        .filter_map(|l| l.rsplit('\r').next())
        .find(|l| l.starts_with("kept: "))
        .map(str::to_string);
    assert_eq!(said, Some(format!("kept: {best}")), "{tuned:?}");
    let error: f64 = shown_text(kept)
        .parse()
        .unwrap_or_else(|_| panic!("the kept cell shows no number: {kept}"));
    assert!(
        (error - best_error).abs() < 5e-7,
        "kept error_rate {error}, the best row's {best_error} ({best}): {start:?} {tuned:?}"
    );
}

/// Each value shows once: a cell's streamed text never repeats its table's caption (the data
/// and verify summaries used to print as a line and again above their table), and no two
/// cells show the same table. A fit cell's live epoch lines followed by its one final table
/// are the progress table as fastai shows it, not a repeat.
fn assert_no_repeated_tables(nb: &Value) {
    let mut seen = std::collections::HashSet::new();
    for cell in nb["cells"].as_array().unwrap() {
        for html in output_data(cell, "text/html") {
            if let Some(caption) = html
                .strip_prefix("<p>")
                .and_then(|rest| rest.split_once("</p>"))
                .map(|(c, _)| c.replace("&amp;", "&"))
            {
                assert!(
                    !streams(cell).contains(&caption),
                    "shown twice, as text and as a table: {caption}"
                );
            }
            if html.contains("<table") {
                assert!(seen.insert(html.clone()), "the same table twice: {html}");
            }
        }
    }
}

/// The committed notebook (what a reader opens, and what GitHub renders) is as short as the
/// lesson's Python, complete, and free of errors and repeats; no kernel needed.
#[test]
fn the_committed_notebook_is_short_and_shows_everything_once() {
    let path = common::repo_root().join(NOTEBOOK);
    let nb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let code: Vec<String> = nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| text(&c["source"]))
        .collect();
    let lines = code
        .iter()
        .flat_map(|c| c.lines())
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(lines <= 60, "{lines} non-blank code lines (at most 60)");
    for source in &code {
        for needless in ["..Default::default()", "true)", "false)", "true,", "false,"] {
            assert!(
                !source.contains(needless),
                "ceremony in a cell ({needless:?}): {source}"
            );
        }
    }
    let pngs: usize = PICTURES
        .iter()
        .map(|t| output_data(tagged(&nb, t), "image/png").len())
        .sum();
    assert!(pngs >= PICTURES.len(), "{pngs} inline pictures");
    for cell in nb["cells"].as_array().unwrap() {
        for o in cell["outputs"].as_array().into_iter().flatten() {
            assert_ne!(o["output_type"], "error", "a committed cell failed: {o}");
        }
    }
    assert_no_repeated_tables(&nb);
    assert_no_unit_outputs(&nb);
    assert_kept_the_best(&nb);
}

/// The committed second notebook: executed, without errors, every picture in place.
#[test]
fn the_committed_second_notebook_shows_every_tool() {
    let path = common::repo_root().join(NOTEBOOK2);
    let nb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_second_notebook(&nb);
}

/// An executed notebook's common checks: no cell failed, and each cell tagged in `tags` shows
/// one picture of at least 300 x 200. Returns the pictures, by tag, for further checks.
fn assert_ran_with_pictures(
    nb: &Value,
    name: &str,
    tags: &[&'static str],
) -> Vec<(&'static str, image::DynamicImage)> {
    for cell in nb["cells"].as_array().unwrap() {
        for o in cell["outputs"].as_array().into_iter().flatten() {
            assert_ne!(o["output_type"], "error", "a cell of {name} failed: {o}");
        }
    }
    tags.iter()
        .map(|&tag| {
            let pngs = output_data(tagged(nb, tag), "image/png");
            assert_eq!(
                pngs.len(),
                1,
                "{name}: cell {tag:?} should show one picture"
            );
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(pngs[0].trim())
                .unwrap();
            let img = image::load_from_memory(&bytes).unwrap();
            assert!(
                img.width() >= 300 && img.height() >= 200,
                "{name}: cell {tag:?}: {}x{}",
                img.width(),
                img.height()
            );
            (tag, img)
        })
        .collect()
}

/// What the second notebook must show once executed: no errors, a picture in each picture
/// cell, the cleaner's gallery, the TTA line, the leakage table and the folder's predictions.
fn assert_second_notebook(nb: &Value) {
    for (tag, img) in assert_ran_with_pictures(nb, NOTEBOOK2, &PICTURES2) {
        // Not a blank figure: many distinct colours.
        let colours: std::collections::HashSet<[u8; 3]> =
            img.to_rgb8().pixels().map(|p| p.0).collect();
        assert!(
            colours.len() > 100,
            "cell {tag:?} looks blank ({} colours)",
            colours.len()
        );
    }
    assert_no_unit_outputs(nb);
    let tta = streams(tagged(nb, "tta"));
    assert!(tta.contains("with TTA"), "{tta}");
    let gallery = output_data(tagged(nb, "cleaner"), "text/html").concat();
    assert_eq!(gallery.matches("<img").count(), 20, "the cleaner's gallery");
    let leakage = output_data(tagged(nb, "leakage"), "text/html").concat();
    assert!(
        leakage.contains("leaked") && leakage.contains("<table"),
        "{leakage}"
    );
    let cleaned = output_data(tagged(nb, "from_csv"), "text/html").concat();
    assert!(
        cleaned.contains("<table"),
        "from_csv shows its data: {cleaned}"
    );
    let preds = output_data(tagged(nb, "predict_folder"), "text/html").concat();
    assert!(
        preds.contains("0 could not be read") && preds.contains("<table"),
        "{preds}"
    );
}

/// Runs `jupyter nbconvert ARGS... --output-dir DIR EXECUTED` and fails the test with its
/// error output if it fails.
fn nbconvert(jupyter: &Path, args: &[&str], dir: &Path, executed: &Path) {
    let run = Command::new(jupyter)
        .arg("nbconvert")
        .args(args)
        .arg("--output-dir")
        .arg(dir)
        .arg(executed)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "nbconvert {args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The notebook as saved after nbconvert's stream coalescing (what `make notebook-run` commits).
fn coalesce(jupyter: &Path, executed: &Path, dir: &Path) -> Value {
    let args = [
        "--to",
        "notebook",
        "--CoalesceStreamsPreprocessor.enabled=True",
        "--output",
        "coalesced",
    ];
    nbconvert(jupyter, &args, dir, executed);
    serde_json::from_str(&std::fs::read_to_string(dir.join("coalesced.ipynb")).unwrap()).unwrap()
}

/// Executes `notebook` with the project kernel into `dir`, as a reader would run it: the data
/// and the architecture from the environment, outputs (the export, cleaned.csv) in `dir/out`,
/// and a Kaggle key present that must appear nowhere. Fails the test with the kernel's log.
fn execute(jupyter: &Path, root: &Path, notebook: &str, dir: &Path, data: &str) {
    let run = Command::new(jupyter)
        .current_dir(root)
        .args([
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.kernel_name=fastvision",
            "--ExecutePreprocessor.timeout=-1",
            // The first start compiles nothing (cells do), but a loaded machine starts slowly.
            "--ExecutePreprocessor.startup_timeout=600",
            "--output-dir",
        ])
        .arg(dir)
        .arg(notebook)
        .env("FASTVISION_DATA", data)
        // The slice's epochs last a couple of seconds: redraw often enough to see them move.
        .env("FASTVISION_PROGRESS_EVERY", "0.05")
        .env("FASTVISION_ARCH", "mobilenet_v2")
        .env("FASTVISION_OUT", dir.join("out"))
        .env("FASTVISION_DATA_DIR", dir.join("data"))
        .env("KAGGLE_USERNAME", "fastvision-notebook-test")
        .env("KAGGLE_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "executing {notebook} failed:\n{}",
        &log[log.len().saturating_sub(8000)..]
    );
}

/// One notebook executes at a time: two kernels training at once on a small machine each take
/// far more than twice as long.
static ONE_KERNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn jupyter(root: &Path) -> std::path::PathBuf {
    let jupyter = root.join(".venv/bin/jupyter");
    let spec = root.join(".venv/share/jupyter/kernels/fastvision/kernel.json");
    assert!(
        jupyter.is_file() && spec.is_file(),
        "the notebook kernel is not installed ({} / {}): run `make kernel` (`make test` does it first)",
        jupyter.display(),
        spec.display()
    );
    jupyter
}

#[test]
fn the_lesson_notebook_runs_headless_and_shows_every_picture() {
    let _one = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::repo_root().canonicalize().unwrap();
    let jupyter = jupyter(&root);
    let tmp = tempfile::tempdir().unwrap();
    let data = common::real_sample()
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    execute(&jupyter, &root, NOTEBOOK, tmp.path(), &data);
    let executed = tmp.path().join("lesson1-fruits.ipynb");
    let raw = std::fs::read_to_string(&executed).unwrap();
    assert!(
        !raw.contains(SECRET_KEY),
        "the Kaggle key leaked into the notebook"
    );
    let nb: Value = serde_json::from_str(&raw).unwrap();

    for cell in nb["cells"].as_array().unwrap() {
        for o in cell["outputs"].as_array().into_iter().flatten() {
            assert_ne!(o["output_type"], "error", "a cell failed: {o}");
        }
    }

    for tag in PICTURES {
        let pngs = output_data(tagged(&nb, tag), "image/png");
        assert_eq!(
            pngs.len(),
            1,
            "cell {tag:?} should show exactly one picture"
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(pngs[0].trim())
            .unwrap();
        let img = image::load_from_memory(&bytes)
            .unwrap_or_else(|e| panic!("cell {tag:?}: the picture does not decode: {e}"));
        assert!(
            img.width() >= 300 && img.height() >= 200,
            "cell {tag:?}: picture only {}x{}",
            img.width(),
            img.height()
        );
    }

    // Live progress: while the fit runs, the kernel streams its progress line redrawn in place
    // (a carriage return and no newline, which Jupyter draws over the previous one), many
    // times an epoch, and each epoch's row replaces its line.
    let fit_outputs: Vec<String> = tagged(&nb, "fit")["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["output_type"] == "stream")
        .map(|o| text(&o["text"]))
        .collect();
    let in_place = |label: &str| {
        fit_outputs
            .iter()
            .position(|t| t.starts_with(&format!("\r{label} ")) && !t.contains('\n'))
    };
    let updates = fit_outputs
        .iter()
        .filter(|t| t.starts_with("\repoch ") && !t.contains('\n'))
        .count();
    assert!(updates >= 8, "{updates} in-place updates: {fit_outputs:?}");
    let row = |epoch: usize| {
        fit_outputs
            .iter()
            .position(|t| t.starts_with(&format!("\r{epoch} ")))
            .unwrap_or_else(|| panic!("no row for epoch {epoch} in place: {fit_outputs:?}"))
    };
    for epoch in 1..=4 {
        let update = in_place(&format!("epoch {epoch}/4"))
            .unwrap_or_else(|| panic!("no live line for epoch {epoch}: {fit_outputs:?}"));
        assert!(
            update < row(epoch - 1),
            "epoch {epoch}'s line after its row"
        );
    }
    assert!(
        fit_outputs.iter().any(|t| t.contains(", loss ")),
        "the live line shows the running loss: {fit_outputs:?}"
    );
    assert!(
        in_place("epoch 4/4 validation").is_some(),
        "validation shows its progress: {fit_outputs:?}"
    );

    // What is saved (nbconvert's coalescing, as `make notebook-run` and GitHub see it): one
    // line per step. The fit cell keeps only the table; quick steps (the sample's verify and
    // decode) print at most their one progress line beside their table.
    let coalesced = coalesce(&jupyter, &executed, tmp.path());
    let fit_saved = streams(tagged(&coalesced, "fit"));
    assert_eq!(
        fit_saved.lines().count(),
        5,
        "the saved fit output is the header and four rows: {fit_saved:?}"
    );
    assert!(!fit_saved.contains('█'), "{fit_saved:?}");
    for tag in ["verify", "databunch", "top_losses", "lr_find", "fine_tune"] {
        let saved = streams(tagged(&coalesced, tag));
        let bars = saved.lines().filter(|l| l.contains('█')).count();
        assert!(
            bars <= 2,
            "cell {tag:?} saves {bars} progress lines: {saved:?}"
        );
    }
    for tag in ["verify", "databunch"] {
        let saved = streams(tagged(&coalesced, tag));
        assert!(
            saved.lines().all(|l| l.contains('█')),
            "cell {tag:?} prints beside its table: {saved:?}"
        );
    }
    assert_no_repeated_tables(&coalesced);

    let settings = output_data(tagged(&nb, "settings"), "text/html").concat();
    assert!(settings.contains("mobilenet_v2"), "{settings}");
    let source = streams(tagged(&nb, "data"));
    assert!(
        !source.contains("SYNTHETIC"),
        "real photos are not called synthetic: {source}"
    );
    let verify = output_data(tagged(&nb, "verify"), "text/html").concat();
    assert!(verify.contains("360"), "verify report: {verify}");

    let databunch = output_data(tagged(&nb, "databunch"), "text/html").concat();
    assert!(
        databunch.contains("classes") && databunch.contains("<table"),
        "the data should show its summary: {databunch}"
    );
    assert!(
        raw.len() < 10 << 20,
        "the executed notebook is {} bytes: some output is far too large",
        raw.len()
    );

    // The table streams as the epochs end, once: no second copy of it as HTML.
    let fit = tagged(&coalesced, "fit");
    let live = streams(fit);
    assert!(
        live.contains("train_loss") && table_rows(fit).len() == 4,
        "live progress lines: {live}"
    );
    assert!(
        output_data(fit, "text/html").is_empty(),
        "the fit table shows twice"
    );
    let error = last_error_rate_of(fit);
    let limit = 0.05;
    assert!(
        error < limit,
        "error_rate after fit_one_cycle(4): {error} (limit {limit})"
    );
    let tuned = last_error_rate_of(tagged(&coalesced, "fine_tune"));
    assert!(tuned < limit, "error_rate after fine-tuning: {tuned}");
    assert_kept_the_best(&coalesced);
    assert_no_unit_outputs(&coalesced);

    let confused = output_data(tagged(&nb, "most_confused"), "text/html").concat();
    assert!(
        confused.contains("<table") || confused.contains("no pair"),
        "{confused}"
    );
    for tag in ["predict", "export"] {
        let p = output_data(tagged(&nb, tag), "text/html").concat();
        assert!(p.contains("predicted: <b>"), "cell {tag:?}: {p}");
    }
    assert!(tmp.path().join("out/export.safetensors").is_file());
    assert!(tmp.path().join("out/models/stage-1.safetensors").is_file());

    // What a reader opens in a browser: the HTML rendering embeds every picture.
    nbconvert(&jupyter, &["--to", "html"], tmp.path(), &executed);
    let html = std::fs::read_to_string(tmp.path().join("lesson1-fruits.html")).unwrap();
    let embedded = html.matches("src=\"data:image/png;base64,").count();
    assert!(
        embedded >= PICTURES.len(),
        "the HTML embeds {embedded} pictures, expected at least {}",
        PICTURES.len()
    );
    assert!(!html.contains(SECRET_KEY));

    // The second notebook goes on from the first one's export, with the same settings.
    execute(&jupyter, &root, NOTEBOOK2, tmp.path(), &data);
    let raw = std::fs::read_to_string(tmp.path().join("lesson2-beyond.ipynb")).unwrap();
    assert!(
        !raw.contains(SECRET_KEY),
        "the Kaggle key leaked into {NOTEBOOK2}"
    );
    assert_second_notebook(&serde_json::from_str(&raw).unwrap());
    assert!(tmp.path().join("out/cleaned.csv").is_file());
    assert!(tmp.path().join("out/predictions.csv").is_file());
}

/// The own-photos notebook: labels from file names, photos of every shape at 224 px.
const NOTEBOOK3: &str = "notebooks/lesson1-own-photos.ipynb";

/// The cells of the own-photos notebook that must show a picture.
const PICTURES3: [&str; 4] = ["show_batch", "top_losses", "confusion_matrix", "lr_find"];

/// What the own-photos notebook shows once executed on `photos` photos of `classes` classes:
/// no errors, every picture, the data's summary, a four-row fit table and a prediction.
fn assert_own_photos_notebook(nb: &Value, photos: usize, classes: usize) {
    assert_ran_with_pictures(nb, NOTEBOOK3, &PICTURES3);
    assert_no_unit_outputs(nb);
    let fnames = streams(tagged(nb, "fnames"));
    assert!(fnames.contains(&format!("{photos} photos")), "{fnames}");
    let databunch = output_data(tagged(nb, "databunch"), "text/html").concat();
    assert!(
        databunch.contains(&format!("{classes} classes")) && databunch.contains("224"),
        "the data should show its summary: {databunch}"
    );
    let fit = tagged(nb, "fit");
    let rows = table_rows(fit);
    let html = output_data(fit, "text/html").concat();
    assert!(
        rows.len() == 4 || (rows.is_empty() && html.matches("<tr>").count() == 5),
        "four epochs: {rows:?} {html}"
    );
    let predicted = output_data(tagged(nb, "predict"), "text/html").concat();
    assert!(predicted.contains("predicted: <b>"), "{predicted}");
}

/// The committed own-photos notebook ran on the whole 20-class set, without errors.
#[test]
fn the_committed_own_photos_notebook_ran_on_the_whole_set() {
    let path = common::repo_root().join(NOTEBOOK3);
    let nb: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_own_photos_notebook(&nb, 1875, 20);
}

/// The own-photos notebook, executed on the 90-photo slice that comes with the project (what
/// a fresh clone without the whole set runs on).
#[test]
fn the_own_photos_notebook_runs_on_the_committed_slice() {
    let _one = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::repo_root().canonicalize().unwrap();
    let jupyter = jupyter(&root);
    let tmp = tempfile::tempdir().unwrap();
    // No FASTVISION_PHOTOS and an empty data folder: the notebook must find the slice itself.
    execute(&jupyter, &root, NOTEBOOK3, tmp.path(), "synthetic");
    let raw = std::fs::read_to_string(tmp.path().join("lesson1-own-photos.ipynb")).unwrap();
    assert!(!raw.contains(SECRET_KEY));
    assert_own_photos_notebook(&serde_json::from_str(&raw).unwrap(), 90, 6);
    assert!(
        tmp.path()
            .join("out/models/photos-stage-1.safetensors")
            .is_file()
    );
}

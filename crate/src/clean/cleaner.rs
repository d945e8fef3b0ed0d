//! fastai v1 lesson 2's data cleaning: `DatasetFormatter().from_toplosses(learn)` picks the
//! images the model finds hardest, and `ImageCleaner` records what to do with each, relabel or
//! delete, into `cleaned.csv` (columns `name,label`), which `ImageDataBunch::from_csv` reads
//! back. evcxr has no widgets, so the cleaner shows an HTML gallery and takes its decisions as
//! calls. Nothing on disk changes unless [`ImageCleaner::remove_deleted_files`] is called.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tch::Kind;

use crate::clean::Similars;
use crate::data::folder::DatasetType;
use crate::learner::Learner;
use crate::show::Figure;
use crate::show::display::{display_html, escape, png_data_uri};
use crate::{Error, Result};

/// The items of one set with what the model made of them: what a cleaner shows and edits
/// (fastai's `ds`).
#[derive(Debug, Clone)]
pub struct Items {
    /// Image files.
    pub files: Vec<PathBuf>,
    /// Each file's label.
    pub labels: Vec<String>,
    /// The model's prediction for each.
    pub predicted: Vec<String>,
    /// Each item's loss (cross-entropy of its label).
    pub losses: Vec<f32>,
    /// Every class name.
    pub classes: Vec<String>,
}

/// Picks items to review: fastai's `DatasetFormatter`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasetFormatter;

impl DatasetFormatter {
    /// Every item of the `ds_type` set, and their indices ordered by loss, largest first:
    /// fastai's `ds, idxs = DatasetFormatter().from_toplosses(learn)`. The set is predicted
    /// unaugmented, in order.
    ///
    /// ```no_run
    /// use fastvision::clean::{DatasetFormatter, ImageCleaner};
    /// use fastvision::data::folder::DatasetType;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let (ds, idxs) = DatasetFormatter::from_toplosses(&learn, DatasetType::Valid).unwrap();
    /// let cleaner = ImageCleaner::new(ds, idxs, &learn.data.path).unwrap();
    /// ```
    pub fn from_toplosses(learn: &Learner, ds_type: DatasetType) -> Result<(Items, Vec<usize>)> {
        let dl = super::plain(learn.data.dl(ds_type));
        let (probs, targets, losses) = learn.get_preds(&dl)?;
        let classes = learn.data.classes.clone();
        let pred: Vec<i64> = Vec::try_from(probs.argmax(-1, false))?;
        let targets: Vec<i64> = Vec::try_from(targets)?;
        let losses: Vec<f32> = Vec::try_from(losses.to_kind(Kind::Float))?;
        let mut idxs: Vec<usize> = (0..losses.len()).collect();
        idxs.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
        let items = Items {
            files: dl.dataset.items.clone(),
            labels: targets
                .iter()
                .map(|&t| classes[t as usize].clone())
                .collect(),
            predicted: pred.iter().map(|&p| classes[p as usize].clone()).collect(),
            losses,
            classes,
        };
        Ok((items, idxs))
    }
}

impl DatasetFormatter {
    /// The `n` most similar pairs of images in the `ds_type` set: fastai's
    /// `DatasetFormatter().from_similars(learn)` ([`Similars::from_learner`]).
    ///
    /// ```no_run
    /// use fastvision::clean::DatasetFormatter;
    /// use fastvision::data::folder::DatasetType;
    /// # let learn: fastvision::Learner = unimplemented!();
    /// let pairs = DatasetFormatter::from_similars(&learn, DatasetType::Train, 10).unwrap();
    /// ```
    pub fn from_similars(learn: &Learner, ds_type: DatasetType, n: usize) -> Result<Similars> {
        Similars::from_learner(learn, ds_type, n)
    }
}

/// Decisions about items, saved as fastai's `cleaned.csv`: fastai's `ImageCleaner`.
#[derive(Debug, Clone)]
pub struct ImageCleaner {
    items: Items,
    idxs: Vec<usize>,
    path: PathBuf,
    relabelled: BTreeMap<usize, String>,
    deleted: BTreeSet<usize>,
}

impl ImageCleaner {
    /// A cleaner over `items`, showing them in the order `idxs`; `cleaned.csv` goes in `path`,
    /// with file names relative to it (fastai: `ImageCleaner(ds, idxs, path)`).
    pub fn new(items: Items, idxs: Vec<usize>, path: &Path) -> Result<Self> {
        if let Some(&bad) = idxs.iter().find(|&&i| i >= items.files.len()) {
            return Err(Error::InvalidArgument(format!(
                "ImageCleaner: index {bad} is past the {} items",
                items.files.len()
            )));
        }
        if let Some(f) = items.files.iter().find(|f| !f.starts_with(path)) {
            return Err(Error::InvalidArgument(format!(
                "ImageCleaner: {} is not under {}; pass the folder the data came from \
                 (learn.data.path), since cleaned.csv names files relative to it",
                f.display(),
                path.display()
            )));
        }
        Ok(ImageCleaner {
            items,
            idxs,
            path: path.to_path_buf(),
            relabelled: BTreeMap::new(),
            deleted: BTreeSet::new(),
        })
    }

    /// The items under review.
    pub fn items(&self) -> &Items {
        &self.items
    }

    /// The order the gallery shows the items in (for `from_toplosses`, largest loss first).
    pub fn order(&self) -> &[usize] {
        &self.idxs
    }

    /// Gives item `i` the label `label`, one of the classes.
    ///
    /// ```no_run
    /// # let mut cleaner: fastvision::clean::ImageCleaner = unimplemented!();
    /// cleaner.relabel(12, "Apple Red 1").unwrap();
    /// ```
    pub fn relabel(&mut self, i: usize, label: &str) -> Result<&mut Self> {
        self.check(i)?;
        if !self.items.classes.iter().any(|c| c == label) {
            return Err(Error::InvalidArgument(format!(
                "relabel: {label:?} is not a class; the classes are {}",
                self.items.classes.join(", ")
            )));
        }
        if self.items.labels[i] == label {
            self.relabelled.remove(&i);
        } else {
            self.relabelled.insert(i, label.to_string());
        }
        Ok(self)
    }

    /// Leaves item `i` out of `cleaned.csv` (the file stays on disk).
    pub fn delete(&mut self, i: usize) -> Result<&mut Self> {
        self.check(i)?;
        self.deleted.insert(i);
        Ok(self)
    }

    /// Takes back a relabel or delete of item `i`.
    pub fn undo(&mut self, i: usize) -> Result<&mut Self> {
        self.check(i)?;
        self.relabelled.remove(&i);
        self.deleted.remove(&i);
        Ok(self)
    }

    fn check(&self, i: usize) -> Result<()> {
        if i >= self.items.files.len() {
            return Err(Error::InvalidArgument(format!(
                "item {i} does not exist: there are {} items (the gallery shows each one's index)",
                self.items.files.len()
            )));
        }
        Ok(())
    }

    /// The label item `i` has now.
    pub fn label(&self, i: usize) -> &str {
        self.relabelled
            .get(&i)
            .unwrap_or(&self.items.labels[i])
            .as_str()
    }

    /// The items relabelled so far, with their new labels.
    pub fn relabelled(&self) -> &BTreeMap<usize, String> {
        &self.relabelled
    }

    /// The items deleted so far.
    pub fn deleted(&self) -> &BTreeSet<usize> {
        &self.deleted
    }

    /// Every item not deleted, with its label after relabelling, as `(name, label)` rows with
    /// names relative to the cleaner's path.
    pub fn rows(&self) -> Vec<(String, String)> {
        (0..self.items.files.len())
            .filter(|i| !self.deleted.contains(i))
            .map(|i| {
                let name = self.items.files[i]
                    .strip_prefix(&self.path)
                    .expect("checked in new")
                    .to_string_lossy()
                    .into_owned();
                (name, self.label(i).to_string())
            })
            .collect()
    }

    /// Writes `cleaned.csv` (`name,label`) into the cleaner's path, atomically, and returns
    /// its path; `ImageDataBunch::from_csv(path, ".", "cleaned.csv", ...)` reads it back.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// # let cleaner: fastvision::clean::ImageCleaner = unimplemented!();
    /// let csv = cleaner.save().unwrap();
    /// let data = ImageDataBunch::from_csv(csv.parent().unwrap(), ".", "cleaned.csv",
    ///     FromFolder::default().valid_pct(0.2).size(100)).unwrap();
    /// ```
    pub fn save(&self) -> Result<PathBuf> {
        self.save_to(&self.path)
    }

    /// [`ImageCleaner::save`] into another folder, for data that should stay untouched; the
    /// names stay relative to the cleaner's path.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// # let cleaner: fastvision::clean::ImageCleaner = unimplemented!();
    /// # let path = std::path::PathBuf::new();
    /// let csv = cleaner.save_to("out".as_ref()).unwrap();
    /// let data = ImageDataBunch::from_csv(&path, ".", &csv, FromFolder::default().size(100)).unwrap();
    /// ```
    pub fn save_to(&self, dir: &Path) -> Result<PathBuf> {
        let out = dir.join("cleaned.csv");
        let mut text = String::from("name,label\n");
        for (name, label) in self.rows() {
            let _ = writeln!(text, "{},{}", csv_field(&name), csv_field(&label));
        }
        crate::io::atomic_write(&out, text.as_bytes())?;
        Ok(out)
    }

    /// Removes the deleted items' files from disk: only when asked, and only those. Returns
    /// how many were removed.
    pub fn remove_deleted_files(&self) -> Result<usize> {
        for &i in &self.deleted {
            let f = &self.items.files[i];
            std::fs::remove_file(f).map_err(|e| Error::io(f, e))?;
        }
        Ok(self.deleted.len())
    }

    /// HTML for `n` items of the review order from position `start`: each thumbnail with its
    /// index, file, label, prediction and loss, and any decision taken.
    pub fn gallery_html(&self, start: usize, n: usize) -> Result<String> {
        let mut html = String::from(
            "<div style=\"display:flex;flex-wrap:wrap;gap:8px;font:12px sans-serif\">",
        );
        for &i in self.idxs.iter().skip(start).take(n) {
            let img = crate::data::image::load_rgb_with(
                &self.items.files[i],
                112,
                crate::data::image::Decode::Lenient,
            )?;
            let png = Figure::from_rgb(img);
            let name = self.items.files[i]
                .strip_prefix(&self.path)
                .unwrap_or(&self.items.files[i])
                .display()
                .to_string();
            let decision = if self.deleted.contains(&i) {
                "<br><b style=\"color:#c00\">deleted</b>".to_string()
            } else if let Some(l) = self.relabelled.get(&i) {
                format!("<br><b style=\"color:#060\">→ {}</b>", escape(l))
            } else {
                String::new()
            };
            let _ = write!(
                html,
                "<div style=\"width:150px\"><img src=\"{}\" width=\"112\" height=\"112\"><br>\
                 <b>#{i}</b> loss {:.2}<br>label: {}<br>predicted: {}<br>\
                 <span style=\"color:#666;word-break:break-all\">{}</span>{decision}</div>",
                png_data_uri(png.png()),
                self.items.losses[i],
                escape(&self.items.labels[i]),
                escape(&self.items.predicted[i]),
                escape(&name),
            );
        }
        html.push_str("</div>");
        Ok(html)
    }

    /// Shows `n` items from position `start` of the review order in a notebook.
    pub fn show(&self, start: usize, n: usize) -> Result<()> {
        display_html(&self.gallery_html(start, n)?);
        Ok(())
    }

    /// Shows the first 20 items in a notebook ([`ImageCleaner::show`] pages on).
    pub fn evcxr_display(&self) {
        match self.gallery_html(0, 20) {
            Ok(html) => display_html(&html),
            Err(e) => display_html(&format!(
                "<p>cannot show the gallery: {}</p>",
                escape(&e.to_string())
            )),
        }
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

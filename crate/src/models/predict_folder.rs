//! Classifying many images at once: every image under a folder (recursively) or a list of
//! files, in batches. A file that cannot be read gets its error in its row; the others are
//! still classified.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::data::folder::images_under;
use crate::data::image::Decode;
use crate::models::{Model, Prediction};
use crate::{Error, Result};

/// Images per forward pass.
pub const PREDICT_BS: usize = 64;

/// One prediction per file, in the order the files were found: the result of
/// [`Model::predict_folder`] and [`Model::predict_paths`].
#[derive(Debug)]
pub struct FolderPredictions {
    /// Each file with its prediction, or the reason it could not be classified.
    pub rows: Vec<(PathBuf, Result<Prediction>)>,
}

impl Model {
    /// Classifies every image under `dir`, in its sub-folders too, in batches (fastai users
    /// loop over `learn.predict`; this is that loop, batched).
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let preds = model.predict_folder("photos".as_ref()).unwrap();
    /// preds.to_csv("predictions.csv".as_ref()).unwrap();
    /// for (file, err) in preds.failed() {
    ///     eprintln!("{}: {err}", file.display());
    /// }
    /// ```
    pub fn predict_folder(&self, dir: &Path) -> Result<FolderPredictions> {
        if !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a folder; pass a folder of images, or use predict_paths for files",
                dir.display()
            )));
        }
        self.predict_paths(&[dir.to_path_buf()])
    }

    /// Classifies image files and every image under folders, as the CLI's `predict` does:
    /// folders are searched recursively for image files; files named directly are always
    /// tried. A path that does not exist gets an error row like an unreadable image.
    ///
    /// ```no_run
    /// # let model: fastvision::models::Model = unimplemented!();
    /// let preds = model.predict_paths(&["a.jpg".into(), "more/".into()]).unwrap();
    /// println!("{} classified, {} failed", preds.ok().count(), preds.failed().count());
    /// ```
    pub fn predict_paths(&self, paths: &[PathBuf]) -> Result<FolderPredictions> {
        self.predict_paths_with(paths, Decode::Strict)
    }

    /// [`Model::predict_paths`], decoding as `mode` says: `Decode::Lenient` classifies what
    /// can be read of a truncated image instead of reporting it.
    pub fn predict_paths_with(&self, paths: &[PathBuf], mode: Decode) -> Result<FolderPredictions> {
        let mut rows: Vec<(PathBuf, Option<Error>)> = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut files = Vec::new();
                images_under(p, &mut files)?;
                rows.extend(files.into_iter().map(|f| (f, None)));
            } else if p.exists() {
                rows.push((p.clone(), None));
            } else {
                // The OS's own words for why: missing, or a broken link.
                let e = std::fs::metadata(p)
                    .err()
                    .unwrap_or_else(|| std::io::ErrorKind::NotFound.into());
                rows.push((p.clone(), Some(Error::io(p, e))));
            }
        }
        let todo: Vec<PathBuf> = rows
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(f, _)| f.clone())
            .collect();
        let progress = crate::show::Progress::new("predicting", todo.len() as u64);
        let mut preds = Vec::with_capacity(todo.len());
        for chunk in todo.chunks(PREDICT_BS) {
            preds.extend(self.predict_batch_with(chunk, PREDICT_BS, mode));
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        let mut preds = preds.into_iter();
        let rows = rows
            .into_iter()
            .map(|(f, e)| match e {
                Some(e) => (f, Err(e)),
                None => (f, preds.next().expect("one result per file tried")),
            })
            .collect();
        Ok(FolderPredictions { rows })
    }
}

impl FolderPredictions {
    /// The files classified, with their predictions.
    pub fn ok(&self) -> impl Iterator<Item = (&Path, &Prediction)> {
        self.rows
            .iter()
            .filter_map(|(f, r)| r.as_ref().ok().map(|p| (f.as_path(), p)))
    }

    /// The files that could not be classified, with why.
    pub fn failed(&self) -> impl Iterator<Item = (&Path, &Error)> {
        self.rows
            .iter()
            .filter_map(|(f, r)| r.as_ref().err().map(|e| (f.as_path(), e)))
    }

    /// One row per file: `file`, `class` and `probability` (empty when it failed) and `error`
    /// (empty when it did not).
    ///
    /// ```
    /// use fastvision::models::predict_folder::FolderPredictions;
    /// let none = FolderPredictions { rows: vec![] };
    /// assert_eq!(none.df().get_column_names(), ["file", "class", "probability", "error"]);
    /// ```
    pub fn df(&self) -> DataFrame {
        let file: Vec<String> = self
            .rows
            .iter()
            .map(|(f, _)| f.display().to_string())
            .collect();
        let class: Vec<Option<String>> = self
            .rows
            .iter()
            .map(|(_, r)| r.as_ref().ok().map(|p| p.class.clone()))
            .collect();
        let prob: Vec<Option<f32>> = self
            .rows
            .iter()
            .map(|(_, r)| r.as_ref().ok().map(|p| p.probs[p.index]))
            .collect();
        let error: Vec<Option<String>> = self
            .rows
            .iter()
            .map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        df!("file" => file, "class" => class, "probability" => prob, "error" => error)
            .expect("columns of one length")
    }

    /// Writes [`FolderPredictions::df`] as CSV, atomically.
    pub fn to_csv(&self, path: &Path) -> Result<()> {
        let mut df = self.df();
        crate::io::atomic_write_with(path, |f| {
            CsvWriter::new(f)
                .include_header(true)
                .finish(&mut df)
                .map_err(std::io::Error::other)
        })
    }

    /// Shows the predictions in a notebook: a table of the first rows and the count of
    /// failures.
    pub fn evcxr_display(&self) {
        let n_failed = self.failed().count();
        let caption = format!(
            "{} images: {} classified, {} could not be read",
            self.rows.len(),
            self.rows.len() - n_failed,
            n_failed
        );
        crate::show::table::display(&self.df().head(Some(20)), Some(&caption));
    }
}

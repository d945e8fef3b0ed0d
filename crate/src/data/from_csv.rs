//! Labels from a table: fastai's `ImageDataBunch.from_csv` and `from_df`, which is also how
//! a cleaned data set comes back ([`crate::clean::ImageCleaner`] writes `cleaned.csv`).

use std::path::Path;

use polars::prelude::*;

use crate::data::folder::{FromFolder, ImageDataBunch, random_split};
use crate::{Error, Result};

impl ImageDataBunch {
    /// Loads images listed in a CSV file under `path` (columns: file name relative to
    /// `path/folder`, label), split at random by `opts.valid_pct` (default 0.2), like fastai's
    /// `from_csv`. `csv_labels` may also be a path elsewhere, such as an
    /// [`crate::clean::ImageCleaner`]'s `cleaned.csv`.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// let data = ImageDataBunch::from_csv("data/fruits".as_ref(), "images", "labels.csv",
    ///     FromFolder { size: 100, ..Default::default() }).unwrap();
    /// ```
    pub fn from_csv(
        path: &Path,
        folder: &str,
        csv_labels: impl AsRef<Path>,
        opts: FromFolder,
    ) -> Result<Self> {
        // An absolute csv_labels (a cleaned.csv written elsewhere) is used as it is.
        let csv = path.join(csv_labels);
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(csv.clone()))
            .and_then(|r| r.finish())
            .map_err(|e| {
                Error::InvalidArgument(format!("{}: cannot read labels CSV: {e}", csv.display()))
            })?;
        Self::from_df(path, folder, &df, opts)
    }

    /// Like [`ImageDataBunch::from_csv`], with the labels already in a DataFrame whose first
    /// column is the file name and second the label.
    ///
    /// ```no_run
    /// use polars::prelude::*;
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// let df = df!("name" => ["a.jpg", "b.jpg"], "label" => ["apple", "pear"]).unwrap();
    /// let data = ImageDataBunch::from_df("data/x".as_ref(), ".", &df, FromFolder::default());
    /// ```
    pub fn from_df(path: &Path, folder: &str, df: &DataFrame, opts: FromFolder) -> Result<Self> {
        let bad = |what: String| Error::InvalidArgument(format!("labels table: {what}"));
        if df.width() < 2 {
            return Err(bad(format!(
                "needs two columns (file name, label), found {:?}",
                df.get_column_names()
            )));
        }
        let as_strings = |i: usize| -> Result<Vec<Option<String>>> {
            let col = df.columns()[i]
                .cast(&DataType::String)
                .map_err(|e| bad(e.to_string()))?;
            let ca = col.str().map_err(|e| bad(e.to_string()))?.clone();
            Ok(ca.iter().map(|v| v.map(str::to_owned)).collect())
        };
        let (names, labels) = (as_strings(0)?, as_strings(1)?);
        let base = path.join(folder);
        let mut items = Vec::with_capacity(names.len());
        for (row, (name, label)) in names.into_iter().zip(labels).enumerate() {
            let (Some(name), Some(label)) = (name, label) else {
                return Err(bad(format!(
                    "row {} has an empty file name or label",
                    row + 1
                )));
            };
            let file = base.join(&name);
            if !file.is_file() {
                return Err(bad(format!(
                    "row {}: {} does not exist (file names are relative to {})",
                    row + 1,
                    file.display(),
                    base.display()
                )));
            }
            items.push((file, label));
        }
        let pct = opts.valid_pct.unwrap_or(0.2);
        let (train, valid) = random_split(items, pct, opts.seed)?;
        Self::from_items(path, train, valid, opts)
    }
}

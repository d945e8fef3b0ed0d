//! What a data bunch holds, as a table: classes and images per split, shown under the data
//! cell of the notebook and printed by the CLI.

use std::fmt;

use polars::prelude::*;

use crate::data::folder::ImageDataBunch;
use crate::data::loader::ImageDataset;

impl ImageDataBunch {
    /// Classes, counts per split, image size and a class-count table.
    ///
    /// ```no_run
    /// # let data: fastvision::ImageDataBunch = unimplemented!();
    /// println!("{}", data.summary());
    /// ```
    pub fn summary(&self) -> DataSummary {
        let count = |ds: &ImageDataset| {
            let mut c = vec![0usize; self.classes.len()];
            for &l in &ds.labels {
                c[l as usize] += 1;
            }
            c
        };
        DataSummary {
            line: self.summary_line(),
            classes: self.classes.clone(),
            train_counts: count(&self.train_dl.dataset),
            valid_counts: count(&self.valid_dl.dataset),
        }
    }
}

impl ImageDataBunch {
    /// Shows the data in a notebook as its summary: the one-line description and the number of
    /// training and validation images per class.
    pub fn evcxr_display(&self) {
        self.summary().evcxr_display();
    }
}

/// What [`ImageDataBunch::summary`] returns: printable, and an HTML table in a notebook.
#[derive(Debug, Clone)]
pub struct DataSummary {
    /// The one-line description.
    pub line: String,
    /// Class names.
    pub classes: Vec<String>,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Validation images per class.
    pub valid_counts: Vec<usize>,
}

impl DataSummary {
    /// The class counts as a DataFrame: class, train, valid.
    pub fn df(&self) -> DataFrame {
        let to_u64 = |v: &[usize]| v.iter().map(|&c| c as u64).collect::<Vec<_>>();
        df!(
            "class" => self.classes.clone(),
            "train" => to_u64(&self.train_counts),
            "valid" => to_u64(&self.valid_counts),
        )
        .expect("equal-length columns")
    }

    /// Shows the summary line and the class-count table in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.df(), Some(&self.line));
    }
}

impl fmt::Display for DataSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::show::table::text(&self.df(), Some(&self.line)))
    }
}

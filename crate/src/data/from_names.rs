//! Labels from the files themselves: fastai v1's `from_name_re` (a regex group on the file's
//! path, as the pets lesson labels its photos), `from_name_func` and `from_lists`, with
//! `get_image_files` to list the photos. Each holds out `valid_pct` (default 0.2) at random
//! with the options' `seed`, as fastai does.

use std::path::{Path, PathBuf};

use crate::data::files::{Depth, is_hidden, list_files};
use crate::data::folder::{FromFolder, ImageDataBunch, random_split};
use crate::data::image::is_image_file;
use crate::{Error, Result};

/// The image files in `path` (and its sub-folders with `recurse`), sorted, hidden files left
/// out: fastai's `get_image_files`.
///
/// ```no_run
/// let fnames = fastvision::data::from_names::get_image_files("data/pets/images".as_ref(), false).unwrap();
/// println!("{} photos, the first {}", fnames.len(), fnames[0].display());
/// ```
pub fn get_image_files(path: &Path, recurse: bool) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: not a folder; give get_image_files the folder that holds the photos",
            path.display()
        )));
    }
    let listing = list_files(path, if recurse { Depth::All } else { Depth::Top }, &[])?;
    for l in &listing.loops {
        log::warn!("{l}");
    }
    let mut files: Vec<PathBuf> = listing
        .files
        .into_iter()
        .filter(|p| is_image_file(p) && !is_hidden(p))
        .collect();
    files.sort();
    Ok(files)
}

/// An error naming the first few of the `bad` files out of `total` (the rest counted), unless
/// there are none: "`caller`: 2 of 40 files `says`: a.jpg, b.jpg`fix`".
fn refuse_any(caller: &str, bad: &[String], total: usize, says: &str, fix: &str) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let mut shown = bad.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if bad.len() > 5 {
        shown += &format!(" and {} more", bad.len() - 5);
    }
    Err(Error::InvalidArgument(format!(
        "{caller}: {} of {total} files {says}: {shown}{fix}",
        bad.len()
    )))
}

impl ImageDataBunch {
    /// Labels each of `fnames` by the first group of the regular expression `pat`, searched in
    /// the file's path (fastai v1's `from_name_re`: `pat.search(str(fn)).group(1)`), and holds
    /// out `opts.valid_pct` (default 0.2) of them for validation. A file the pattern does not
    /// match is an error that names it: none is dropped without a word.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// use fastvision::data::from_names::get_image_files;
    /// let path = std::path::Path::new("data/oxford-iiit-pet/images");
    /// let fnames = get_image_files(path, false).unwrap();
    /// let data = ImageDataBunch::from_name_re(path, &fnames, r"/([^/]+)_\d+\.jpg$",
    ///     FromFolder::default().size(224)).unwrap();
    /// ```
    pub fn from_name_re(
        path: &Path,
        fnames: &[PathBuf],
        pat: &str,
        opts: FromFolder,
    ) -> Result<Self> {
        let re = regex::Regex::new(pat).map_err(|e| {
            Error::InvalidArgument(format!(
                "from_name_re: {pat:?} is not a regular expression: {e}"
            ))
        })?;
        if re.captures_len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "from_name_re: {pat:?} has no group: put the label's part in parentheses, as in \
                 r\"/([^/]+)_\\d+.jpg$\""
            )));
        }
        let mut unmatched = Vec::new();
        let mut labels = Vec::with_capacity(fnames.len());
        for f in fnames {
            // As fastai: the path with forward slashes, so one pattern works everywhere.
            let text = f.to_string_lossy().replace('\\', "/");
            match re.captures(&text).and_then(|c| c.get(1)) {
                Some(m) if !m.as_str().is_empty() => labels.push(m.as_str().to_string()),
                _ => unmatched.push(text),
            }
        }
        refuse_any(
            "from_name_re",
            &unmatched,
            fnames.len(),
            &format!("do not match {pat:?} (or match it with an empty group)"),
            ". Change the pattern, or leave those files out of fnames",
        )?;
        Self::from_lists(path, fnames, &labels, opts)
    }

    /// Labels each of `fnames` with `label_func(file)` (fastai v1's `from_name_func`) and holds
    /// out `opts.valid_pct` (default 0.2) for validation.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// let path = std::path::Path::new("photos");
    /// let fnames = fastvision::data::from_names::get_image_files(path, true).unwrap();
    /// // "cat.123.jpg" -> "cat"
    /// let data = ImageDataBunch::from_name_func(path, &fnames, |f| {
    ///     f.file_name().unwrap().to_string_lossy().split('.').next().unwrap().to_string()
    /// }, FromFolder::default()).unwrap();
    /// ```
    pub fn from_name_func(
        path: &Path,
        fnames: &[PathBuf],
        label_func: impl Fn(&Path) -> String,
        opts: FromFolder,
    ) -> Result<Self> {
        let labels: Vec<String> = fnames.iter().map(|f| label_func(f)).collect();
        let empty: Vec<String> = fnames
            .iter()
            .zip(&labels)
            .filter(|(_, l)| l.trim().is_empty())
            .map(|(f, _)| f.display().to_string())
            .collect();
        refuse_any(
            "from_name_func",
            &empty,
            fnames.len(),
            "got an empty label from the label function",
            "",
        )?;
        Self::from_lists(path, fnames, &labels, opts)
    }

    /// Images `fnames` with their `labels`, one each in the same order (fastai v1's
    /// `from_lists`), `opts.valid_pct` (default 0.2) of them held out at random with
    /// `opts.seed`.
    ///
    /// ```no_run
    /// use fastvision::{FromFolder, ImageDataBunch};
    /// let fnames = vec!["photos/a.jpg".into(), "photos/b.jpg".into()];
    /// let data = ImageDataBunch::from_lists("photos".as_ref(), &fnames, &["apple", "pear"],
    ///     FromFolder::default().valid_pct(0.5)).unwrap();
    /// ```
    pub fn from_lists(
        path: &Path,
        fnames: &[PathBuf],
        labels: &[impl AsRef<str>],
        opts: FromFolder,
    ) -> Result<Self> {
        if fnames.len() != labels.len() {
            return Err(Error::InvalidArgument(format!(
                "from_lists: {} files and {} labels; give one label per file, in the same order",
                fnames.len(),
                labels.len()
            )));
        }
        let missing: Vec<String> = fnames
            .iter()
            .filter(|f| !f.is_file())
            .map(|f| f.display().to_string())
            .collect();
        refuse_any("from_lists", &missing, fnames.len(), "do not exist", "")?;
        let items: Vec<(PathBuf, String)> = fnames
            .iter()
            .cloned()
            .zip(labels.iter().map(|l| l.as_ref().to_string()))
            .collect();
        let pct = opts.valid_pct.unwrap_or(0.2);
        let (train, valid) = random_split(items, pct, opts.seed)?;
        Self::from_items(path, train, valid, opts)
    }
}

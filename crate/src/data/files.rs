//! Listing a folder's files the way a user expects from a dataset on disk: symbolic links are
//! followed (datasets are often assembled from links), each folder is listed once, and a link
//! that leads back into a folder already listed (`loop -> ..`, `self -> .`) is reported
//! instead of multiplying the dataset or becoming a class.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A link to a folder that was not followed because its target was already listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLoop {
    /// The link (or folder) as it appears under the listed folder.
    pub link: PathBuf,
    /// Where it leads (canonical).
    pub target: PathBuf,
}

impl std::fmt::Display for LinkLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} leads to {}, which is already listed (a link loop?); skipped",
            self.link.display(),
            self.target.display()
        )
    }
}

/// How deep [`list_files`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Only the folder's own files.
    Top,
    /// Its sub-folders too, all the way down (fastai's `recurse=True`).
    All,
}

/// What [`list_files`] found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Files, sorted.
    pub files: Vec<PathBuf>,
    /// Folders not entered again.
    pub loops: Vec<LinkLoop>,
}

/// Lists the files in `dir` (with [`Depth::All`], in its sub-folders too), following links, each
/// folder once. Hidden folders (`.quarantine`, `.git`) and the folders in `skip` are left out;
/// hidden files are listed, for the caller to judge.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::create_dir_all(dir.path().join("Apple")).unwrap();
/// std::fs::write(dir.path().join("Apple/1.jpg"), b"x").unwrap();
/// #[cfg(unix)]
/// std::os::unix::fs::symlink("..", dir.path().join("Apple/loop")).unwrap();
/// use fastvision::data::files::{Depth, list_files};
/// let listing = list_files(dir.path(), Depth::All, &[]).unwrap();
/// assert_eq!(listing.files, [dir.path().join("Apple/1.jpg")]);
/// # #[cfg(unix)]
/// assert_eq!(listing.loops[0].link, dir.path().join("Apple/loop"));
/// ```
pub fn list_files(dir: &Path, depth: Depth, skip: &[PathBuf]) -> Result<Listing> {
    let recurse = depth == Depth::All;
    let mut listing = Listing::default();
    let mut seen = HashSet::new();
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    seen.insert(root);
    walk(dir, recurse, skip, &mut seen, &mut listing)?;
    listing.files.sort();
    Ok(listing)
}

fn walk(
    dir: &Path,
    recurse: bool,
    skip: &[PathBuf],
    seen: &mut HashSet<PathBuf>,
    out: &mut Listing,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if !path.is_dir() {
            out.files.push(path);
            continue;
        }
        if !recurse || is_hidden(&path) || skip.contains(&path) {
            continue;
        }
        // A link to a missing target is not a dir and was kept as a file above, to be reported
        // broken by whoever reads it.
        let Ok(target) = path.canonicalize() else {
            continue;
        };
        if !seen.insert(target.clone()) {
            out.loops.push(LinkLoop { link: path, target });
            continue;
        }
        walk(&path, recurse, skip, seen, out)?;
    }
    Ok(())
}

/// Whether a file or folder name starts with a dot.
///
/// ```
/// assert!(fastvision::data::files::is_hidden("a/.DS_Store".as_ref()));
/// assert!(!fastvision::data::files::is_hidden("a/apple.jpg".as_ref()));
/// ```
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

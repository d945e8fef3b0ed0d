//! Where Fruits 360's `Training/` and `Test/` folders are in what was downloaded or unpacked:
//! today's Kaggle archive holds several variants side by side, the 2019 release one folder.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The variants of Fruits 360 in today's Kaggle archive, by the name used to pick one
/// (`kaggle:moltean/fruits#original-size`), with their folder in the archive. The lesson's is
/// the first: 100x100 photos, as in the 2019 release.
pub const FRUITS360_VARIANTS: [(&str, &str); 4] = [
    ("100x100", "fruits-360_100x100"),
    ("original-size", "fruits-360_original-size"),
    ("3-body-problem", "fruits-360_3-body-problem"),
    ("multi", "fruits-360_multi"),
];

/// Where Fruits 360's `Training/` and `Test/` are in an unpacked archive, and which variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fruits360Layout {
    /// The folder holding `Training/` and `Test/`.
    pub path: PathBuf,
    /// The variant's name (`100x100`, `original-size`, ...), or `fruits-360` for an archive
    /// with one layout only (the 2019 release: a top-level `fruits-360/`).
    pub variant: String,
    /// The other variants the archive holds.
    pub others: Vec<String>,
}

impl std::fmt::Display for Fruits360Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fruits 360, {} variant, in {}",
            self.variant,
            self.path.display()
        )?;
        if !self.others.is_empty() {
            write!(
                f,
                " (the archive also has: {}; pick one with FASTVISION_DATA=kaggle:moltean/fruits#{})",
                self.others.join(", "),
                self.others[0]
            )?;
        }
        Ok(())
    }
}

/// Every folder under `dest` (at most 4 levels down) holding both `Training/` and `Test/`,
/// breadth-first and sorted.
fn split_folders(dest: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut queue = std::collections::VecDeque::from([(dest.to_path_buf(), 0)]);
    while let Some((dir, depth)) = queue.pop_front() {
        if dir.join("Training").is_dir() && dir.join("Test").is_dir() {
            found.push(dir);
            continue;
        }
        if depth < 4 {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir() && !crate::data::files::is_hidden(p))
                .collect();
            subs.sort();
            queue.extend(subs.into_iter().map(|p| (p, depth + 1)));
        }
    }
    Ok(found)
}

/// The variant a `Training/`+`Test/` folder belongs to: the known variant folder it sits in,
/// a future `fruits-360_<name>/` folder by its name, else `fruits-360` (the 2019 release, whose
/// zip wrapped it in `fruits-360_dataset/`).
fn variant_of(dest: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(dest).unwrap_or(dir);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((name, _)) = FRUITS360_VARIANTS
        .iter()
        .find(|(_, folder)| *folder == first)
    {
        return name.to_string();
    }
    match first.strip_prefix("fruits-360_") {
        Some(name) if name != "dataset" => name.to_string(),
        _ => "fruits-360".to_string(),
    }
}

/// Finds Fruits 360's `Training/` and `Test/` in an unpacked archive and says which variant it
/// took. Today's Kaggle archive holds several variants side by side (see
/// [`FRUITS360_VARIANTS`]); without `variant` the lesson's 100x100 one is taken, by name. The
/// 2019 release (a top-level `fruits-360/`, perhaps inside `fruits-360_dataset/`) and any
/// folder that holds `Training/` and `Test/` itself work as they are.
///
/// ```
/// use fastvision::data::download::fruits360_variant;
/// let dir = tempfile::tempdir().unwrap();
/// for v in ["fruits-360_original-size/fruits-360-original-size", "fruits-360_100x100/fruits-360"] {
///     std::fs::create_dir_all(dir.path().join(v).join("Training")).unwrap();
///     std::fs::create_dir_all(dir.path().join(v).join("Test")).unwrap();
/// }
/// let l = fruits360_variant(dir.path(), None).unwrap();
/// assert_eq!((l.variant.as_str(), l.others.clone()), ("100x100", vec!["original-size".to_string()]));
/// let o = fruits360_variant(dir.path(), Some("original-size")).unwrap();
/// assert!(o.path.ends_with("fruits-360-original-size"));
/// assert!(fruits360_variant(dir.path(), Some("multi")).unwrap_err().to_string().contains("100x100, original-size"));
/// ```
pub fn fruits360_variant(dest: &Path, variant: Option<&str>) -> Result<Fruits360Layout> {
    let found: Vec<(String, PathBuf)> = split_folders(dest)?
        .into_iter()
        .map(|d| (variant_of(dest, &d), d))
        .collect();
    if found.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no folder with both Training/ and Test/ under {} (looked 4 levels deep); is this Fruits 360?",
            dest.display()
        )));
    }
    let names: Vec<String> = found.iter().map(|(n, _)| n.clone()).collect();
    let pick = match variant {
        Some(want) => found.iter().position(|(n, _)| n == want).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Fruits 360 in {} has no {want:?} variant; it has: {}",
                dest.display(),
                names.join(", ")
            ))
        })?,
        None => found
            .iter()
            .position(|(n, _)| n == FRUITS360_VARIANTS[0].0)
            .unwrap_or(0),
    };
    let (name, path) = found[pick].clone();
    Ok(Fruits360Layout {
        path,
        others: names.into_iter().filter(|n| *n != name).collect(),
        variant: name,
    })
}

/// The folder holding the lesson's `Training/` and `Test/` (the 100x100 variant of today's
/// archive; see [`fruits360_variant`] for the others).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let inner = dir.path().join("fruits-360_dataset/fruits-360");
/// std::fs::create_dir_all(inner.join("Training")).unwrap();
/// std::fs::create_dir_all(inner.join("Test")).unwrap();
/// assert_eq!(fastvision::data::download::fruits360_layout(dir.path()).unwrap(), inner);
/// ```
pub fn fruits360_layout(dest: &Path) -> Result<PathBuf> {
    fruits360_variant(dest, None).map(|l| l.path)
}

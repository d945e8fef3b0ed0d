//! Writing files safely: everything fastvision writes goes to a temporary file in the same folder
//! first and is renamed into place, so a crash or a full disk never leaves half a file behind.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename),
/// creating the parent folder if needed.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a/b.txt");
/// fastvision::io::atomic_write(&path, b"hello").unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"hello");
/// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |file| file.write_all(bytes))
}

/// Like [`atomic_write`], with the content produced by `write` into the temporary file.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("n.txt");
/// fastvision::io::atomic_write_with(&path, |f| writeln!(f, "{}", 42)).unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
/// ```
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".fastvision-tmp-")
        .tempfile_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    write(tmp.as_file_mut()).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // Temporary files are private (0600); the result should be as readable as the file it
    // replaces, or as an ordinary new file.
    let perms = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    std::fs::set_permissions(tmp.path(), perms).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

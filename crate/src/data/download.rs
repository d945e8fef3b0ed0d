//! Getting the data: the Kaggle API (as the official `kaggle` client does it) and plain URLs.
//!
//! Downloads stream into a hidden `.part` file next to the destination with a progress bar,
//! resume where the server allows it, and are unpacked into a temporary folder that is renamed
//! into place, so the destination is either complete or untouched. Archive entries that would
//! land outside the destination (zip-slip) make the whole archive refused. The Kaggle key is
//! never printed, logged or put in an error message.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::show::Progress;
use crate::{Error, Result};

/// The Kaggle API's address.
pub const KAGGLE_API: &str = "https://www.kaggle.com/api/v1";

/// A Kaggle user name and API key. `Debug` and `Display` never show the key.
///
/// ```
/// let c = fastvision::data::download::KaggleCredentials { username: "ann".into(), key: "0123abcd".into() };
/// assert!(!format!("{c:?} {c}").contains("0123abcd"));
/// ```
#[derive(Clone)]
pub struct KaggleCredentials {
    /// Kaggle user name.
    pub username: String,
    /// API key (secret).
    pub key: String,
}

impl fmt::Debug for KaggleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KaggleCredentials {{ username: {:?}, key: <hidden> }}",
            self.username
        )
    }
}

impl fmt::Display for KaggleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kaggle user {}", self.username)
    }
}

impl KaggleCredentials {
    /// Reads credentials like the official client: `KAGGLE_USERNAME` and `KAGGLE_KEY`, else
    /// `kaggle.json` in `$KAGGLE_CONFIG_DIR` or `~/.kaggle`.
    ///
    /// ```no_run
    /// let creds = fastvision::data::download::KaggleCredentials::from_env().unwrap();
    /// println!("{creds}");
    /// ```
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(crate::config::var)
    }

    /// Like [`KaggleCredentials::from_env`], reading variables through `lookup`.
    ///
    /// ```
    /// use fastvision::data::download::KaggleCredentials;
    /// let c = KaggleCredentials::from_lookup(|k| match k {
    ///     "KAGGLE_USERNAME" => Some("ann".into()),
    ///     "KAGGLE_KEY" => Some("secret".into()),
    ///     _ => None,
    /// }).unwrap();
    /// assert_eq!(c.username, "ann");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |n: &str| lookup(n).filter(|v| !v.trim().is_empty());
        if let (Some(username), Some(key)) = (var("KAGGLE_USERNAME"), var("KAGGLE_KEY")) {
            return Ok(KaggleCredentials { username, key });
        }
        let dir = var("KAGGLE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".kaggle")))
            .unwrap_or_else(|| PathBuf::from(".kaggle"));
        let file = dir.join("kaggle.json");
        let text = std::fs::read_to_string(&file).map_err(|_| {
            Error::Credentials(format!(
                "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save kaggle.json \
                 (kaggle.com > Settings > API > Create New Token) as {}",
                file.display()
            ))
        })?;
        #[derive(serde::Deserialize)]
        struct Json {
            username: String,
            key: String,
        }
        // serde's message could quote the file's content, key included: keep our own words.
        let json: Json = serde_json::from_str(&text).map_err(|_| {
            Error::Credentials(format!(
                "{} is not valid kaggle.json: it needs \"username\" and \"key\" fields; \
                 download a fresh one from kaggle.com > Settings > API",
                file.display()
            ))
        })?;
        Ok(KaggleCredentials {
            username: json.username,
            key: json.key,
        })
    }

    fn basic_auth(&self) -> String {
        let token = format!("{}:{}", self.username, self.key);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        )
    }
}

/// A Kaggle API client: credentials and the API address (changeable for tests and mirrors).
#[derive(Debug, Clone)]
pub struct Kaggle {
    /// Who downloads.
    pub credentials: KaggleCredentials,
    /// API base address, default [`KAGGLE_API`].
    pub api: String,
}

impl Kaggle {
    /// A client with credentials from the environment (see [`KaggleCredentials::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(Kaggle {
            credentials: KaggleCredentials::from_env()?,
            api: KAGGLE_API.into(),
        })
    }

    /// Downloads dataset `owner/slug` and unpacks it into `dest` (see [`download_kaggle_dataset`]).
    pub fn download(&self, dataset: &str, dest: &Path) -> Result<PathBuf> {
        let parts: Vec<&str> = dataset.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "Kaggle dataset {dataset:?} should be owner/slug, e.g. moltean/fruits"
            )));
        }
        let url = format!(
            "{}/datasets/download/{}",
            self.api.trim_end_matches('/'),
            dataset
        );
        let what = format!("Kaggle dataset {dataset}");
        fetch_and_unpack(&url, Some(&self.credentials), &what, dest)
    }
}

/// Downloads the Kaggle dataset `owner/slug` (e.g. `moltean/fruits`) with the credentials from
/// the environment or `~/.kaggle/kaggle.json`, and unpacks it into `dest`. If `dest` already
/// exists and is not empty it is left alone and returned.
///
/// ```no_run
/// let path = fastvision::data::download::download_kaggle_dataset("moltean/fruits", "data/fruits-360".as_ref()).unwrap();
/// let path = fastvision::data::download::fruits360_layout(&path).unwrap();
/// ```
pub fn download_kaggle_dataset(dataset: &str, dest: &Path) -> Result<PathBuf> {
    if is_filled(dest) {
        return Ok(dest.to_path_buf());
    }
    Kaggle::from_env()?.download(dataset, dest)
}

/// Downloads an archive (`.zip`, `.tgz`/`.tar.gz` or `.tar`) from `url` and unpacks it into
/// `dest`, with the same guarantees as the Kaggle download. An existing non-empty `dest` is
/// returned untouched.
///
/// ```no_run
/// let path = fastvision::data::download::untar_data("https://example.com/fruits.tgz", "data/fruits".as_ref()).unwrap();
/// ```
pub fn untar_data(url: &str, dest: &Path) -> Result<PathBuf> {
    if is_filled(dest) {
        return Ok(dest.to_path_buf());
    }
    fetch_and_unpack(url, None, url, dest)
}

pub use super::fruits360::{
    FRUITS360_VARIANTS, Fruits360Layout, fruits360_layout, fruits360_variant,
};

fn is_filled(dest: &Path) -> bool {
    std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn host_of(url: &str) -> &str {
    let rest = url.split("://").nth(1).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

fn status_error(status: u16, what: &str, creds: Option<&KaggleCredentials>) -> Error {
    let fix = match (status, creds) {
        (401 | 403, Some(c)) => format!(
            "{c} was refused: check KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json (a new token from \
             kaggle.com > Settings > API), and accept the dataset's rules on its Kaggle page"
        ),
        (401 | 403, None) => "access denied: the URL needs permission".into(),
        (404, Some(_)) => "not found: check the dataset's owner/slug (e.g. moltean/fruits)".into(),
        (404, None) => "not found: check the URL".into(),
        (429, _) => "too many requests: wait a minute and try again".into(),
        (s, _) if s >= 500 => "the server failed: try again later".into(),
        _ => "unexpected answer".into(),
    };
    Error::Download(format!("{what}: HTTP {status}, {fix}"))
}

/// Streams `url` into `part`, resuming from its current length when the server allows it.
/// Retries a dropped connection a few times, each time continuing where it stopped.
fn fetch(url: &str, creds: Option<&KaggleCredentials>, what: &str, part: &Path) -> Result<()> {
    let agent = agent();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic_auth());
        }
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) if attempts < 4 => {
                log::warn!("{what}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500 * attempts));
                continue;
            }
            Err(e) => {
                return Err(Error::Download(format!(
                    "{what}: could not reach {} ({e}); check the network connection, or work \
                     offline with generate_sample",
                    host_of(url)
                )));
            }
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (append, total) = match status {
            206 => {
                // "bytes START-END/TOTAL": resume only if it starts where we stopped.
                let range = header("content-range").unwrap_or_default();
                let start = range
                    .split([' ', '-'])
                    .nth(1)
                    .and_then(|s| s.parse::<u64>().ok());
                let total = range.rsplit('/').next().and_then(|t| t.parse::<u64>().ok());
                (start == Some(have), total)
            }
            200 => (false, header("content-length").and_then(|l| l.parse().ok())),
            416 if have > 0 => {
                // Our partial file is already the whole thing, or stale: start over once.
                std::fs::remove_file(part).map_err(|e| Error::io(part, e))?;
                if attempts < 4 {
                    continue;
                }
                return Err(status_error(status, what, creds));
            }
            s => return Err(status_error(s, what, creds)),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| Error::io(part, e))?;
        let start = if append { have } else { 0 };
        let bar = Progress::bytes(what, total.unwrap_or(0));
        bar.set(start);
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = start;
        let outcome = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    file.write_all(&buf[..n]).map_err(|e| Error::io(part, e))?;
                    done += n as u64;
                    bar.inc(n as u64);
                }
                Err(e) => break Err(e),
            }
        };
        file.sync_all().map_err(|e| Error::io(part, e))?;
        bar.finish();
        let complete = total.is_none_or(|t| done == t);
        match outcome {
            Ok(()) if complete => return Ok(()),
            Ok(()) | Err(_) if attempts < 4 => {
                log::warn!("{what}: connection dropped at {done} bytes; resuming");
                continue;
            }
            Ok(()) => {
                return Err(Error::Download(format!(
                    "{what}: the download stopped at {done} of {} bytes; run again to resume",
                    total.unwrap_or(0)
                )));
            }
            Err(e) => {
                return Err(Error::Download(format!(
                    "{what}: the connection failed at {done} bytes ({e}); run again to resume"
                )));
            }
        }
    }
}

/// Downloads `url` to the file `dest` (resuming, with a progress bar), atomically: the file
/// appears complete or not at all.
///
/// ```no_run
/// fastvision::data::download::download_file("https://example.com/w.pth", "w.pth".as_ref()).unwrap();
/// ```
pub fn download_file(url: &str, dest: &Path) -> Result<()> {
    let (_, part) = part_file(dest)?;
    fetch(url, None, url, &part)?;
    std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))
}

/// The existing parent folder of `dest` and the hidden `.part` file a download to `dest`
/// streams into (beside it, so the final rename stays on one file system and can resume).
fn part_file(dest: &Path) -> Result<(&Path, PathBuf)> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or("download".into());
    Ok((parent, parent.join(format!(".{name}.download.part"))))
}

fn fetch_and_unpack(
    url: &str,
    creds: Option<&KaggleCredentials>,
    what: &str,
    dest: &Path,
) -> Result<PathBuf> {
    let (parent, part) = part_file(dest)?;
    fetch(url, creds, what, &part)?;

    let staging = tempfile::Builder::new()
        .prefix(".fastvision-unpack-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    unpack(&part, staging.path())?;
    if dest.exists() {
        // Only an empty folder can be here (is_filled was checked); replace it.
        std::fs::remove_dir(dest).map_err(|e| Error::io(dest, e))?;
    }
    let staged = staging.keep();
    // Temporary folders are private (0700); a dataset folder is an ordinary one.
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| Error::io(&staged, e))?;
    std::fs::rename(&staged, dest).map_err(|e| Error::io(dest, e))?;
    std::fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
    Ok(dest.to_path_buf())
}

/// A relative path made only of normal components, or an error naming the entry.
fn safe_relative(name: &str, archive: &Path) -> Result<PathBuf> {
    let path = Path::new(name);
    let ok = !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(Error::Download(format!(
            "{}: archive entry {name:?} would be written outside the destination (zip-slip); \
             refusing to unpack this archive",
            archive.display()
        )))
    }
}

/// Unpacks a zip or (gzipped) tar archive into `into`, checking every entry's path first.
fn unpack(archive: &Path, into: &Path) -> Result<()> {
    let mut magic = [0u8; 4];
    let mut f = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(archive, e))?;
    let bad = |e: &dyn fmt::Display| {
        Error::Download(format!(
            "{}: not a readable archive ({e})",
            archive.display()
        ))
    };
    if n >= 4 && magic == *b"PK\x03\x04" {
        let mut zip = zip::ZipArchive::new(File::open(archive).map_err(|e| Error::io(archive, e))?)
            .map_err(|e| bad(&e))?;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| bad(&e))?;
            safe_relative(entry.name(), archive)?;
            if entry.is_symlink() {
                return Err(Error::Download(format!(
                    "{}: archive entry {:?} is a symbolic link; refusing to unpack",
                    archive.display(),
                    entry.name()
                )));
            }
        }
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
            let rel = safe_relative(entry.name(), archive)?;
            let out = into.join(rel);
            if entry.is_dir() {
                std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
            } else {
                if let Some(p) = out.parent() {
                    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
                }
                let mut w = File::create(&out).map_err(|e| Error::io(&out, e))?;
                std::io::copy(&mut entry, &mut w).map_err(|e| Error::io(&out, e))?;
            }
        }
        return Ok(());
    }
    let gz = n >= 2 && magic[..2] == [0x1F, 0x8B];
    let open = || -> Result<Box<dyn Read>> {
        let f = File::open(archive).map_err(|e| Error::io(archive, e))?;
        Ok(if gz {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        })
    };
    // First pass: check every entry before writing anything.
    let mut tar = tar::Archive::new(open()?);
    for entry in tar.entries().map_err(|e| bad(&e))? {
        let entry = entry.map_err(|e| bad(&e))?;
        let path = entry
            .path()
            .map_err(|e| bad(&e))?
            .to_string_lossy()
            .into_owned();
        safe_relative(&path, archive)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(Error::Download(format!(
                "{}: archive entry {path:?} is a link or special file; refusing to unpack",
                archive.display()
            )));
        }
    }
    let mut tar = tar::Archive::new(open()?);
    tar.set_preserve_permissions(false);
    tar.unpack(into).map_err(|e| bad(&e))
}

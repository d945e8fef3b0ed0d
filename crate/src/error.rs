//! The one error type of the library. Every message says what went wrong, with which file or
//! value, and what to do about it, because its reader is usually a notebook user mid-lesson.

use std::path::PathBuf;

/// Everything that can go wrong in fastvision.
///
/// ```
/// use fastvision::Error;
/// let err = Error::io("data/fruits", std::io::Error::from(std::io::ErrorKind::NotFound));
/// assert!(err.to_string().contains("data/fruits"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    // The OS error is part of the message and deliberately not a `source`, so a report of the
    // error chain (anyhow's "Caused by") does not say it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// An image file could not be decoded.
    #[error(
        "{path}: not a readable image ({reason}); remove it or run verify_images on its folder"
    )]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's explanation.
        reason: String,
    },

    /// A device was asked for that this machine does not have, or named in a way we don't read.
    #[error("{0}")]
    Device(String),

    /// An argument or setting has a value we cannot use; the message names it and the fix.
    #[error("{0}")]
    InvalidArgument(String),

    /// Kaggle credentials are missing or unreadable (the message never contains the key).
    #[error("{0}")]
    Credentials(String),

    /// A download or an archive failed; the message names the source and what to do.
    #[error("{0}")]
    Download(String),

    /// Pretrained weights or a saved model could not be found, converted or loaded.
    #[error("{0}")]
    Weights(String),

    /// Training stopped: the loss became NaN or infinite (the message says where and what to try).
    #[error("{0}")]
    Diverged(String),

    /// A callback's hook failed; the message names the callback and the event, as fastai's
    /// does, then what went wrong.
    #[error("{callback} in {event}: {error}")]
    Callback {
        /// The callback's type name (`SaveModel`).
        callback: String,
        /// The hook that failed (`on_epoch_end`).
        event: &'static str,
        /// What the hook returned.
        error: Box<Error>,
    },

    /// The data loader could not prepare a batch (its transform or its thread failed); the
    /// message names the batch. The epoch stops there instead of going on shorter.
    #[error("{0}")]
    Loader(String),

    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// An I/O error about `path`.
    ///
    /// ```
    /// let e = fastvision::Error::io("x.jpg", std::io::Error::other("boom"));
    /// assert_eq!(e.to_string(), "x.jpg: boom");
    /// ```
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// The error itself, under any callback that passed it on: what to match on.
    ///
    /// ```
    /// use fastvision::Error;
    /// let e = Error::Callback {
    ///     callback: "NanGuard".into(),
    ///     event: "on_batch_end",
    ///     error: Box::new(Error::Diverged("the loss became NaN".into())),
    /// };
    /// assert_eq!(e.to_string(), "NanGuard in on_batch_end: the loss became NaN");
    /// assert!(matches!(e.root(), Error::Diverged(_)));
    /// ```
    pub fn root(&self) -> &Error {
        match self {
            Error::Callback { error, .. } => error.root(),
            other => other,
        }
    }
}

/// The library's result type.
///
/// ```
/// fn half(x: i64) -> fastvision::Result<i64> { Ok(x / 2) }
/// assert_eq!(half(4).unwrap(), 2);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

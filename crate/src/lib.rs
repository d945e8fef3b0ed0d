//! # fastvision
//!
//! fastai's lesson-1 image classifier (Fruits 360, `cnn_learner`, `fit_one_cycle`, `lr_find`,
//! top losses) rebuilt on libtorch, for Rust programs and Jupyter notebooks via evcxr.
//! Names follow fastai v1, so every call of the lesson is recognisable.
//!
//! Data flows one way: source → verify → dataset → loader → learner → interpretation → figures.
//!
//! ```
//! let device = fastvision::default_device().unwrap();
//! println!("computing on {}", fastvision::device::device_name(device));
//! ```

pub mod config;
pub mod device;
pub mod error;
pub mod info;

pub use device::default_device;
pub use error::{Error, Result};
pub use info::Info;

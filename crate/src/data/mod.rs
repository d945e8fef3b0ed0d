//! The data half of the lesson, in the order data flows: get it ([`download`], [`sample`]),
//! check it ([`verify`]), label and split it ([`folder`]), batch it ([`loader`]) and augment
//! it ([`transforms`]).

pub mod download;
pub mod files;
pub mod folder;
pub mod from_csv;
pub mod from_names;
pub mod fruits360;
pub mod image;
pub mod loader;
pub mod sample;
pub mod show_batch;
pub mod summary;
pub mod transforms;
pub mod verify;

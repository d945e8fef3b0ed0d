//! What fastvision adds to libtorch beside tch, in one place: the C++ shim's calls
//! (crate/shim: multi-tensor kernels and fused AdamW in [`foreach`], autocast with a dtype in
//! [`autocast`]) and the channels-last layout switch ([`layout`]). No C++ exception crosses
//! into Rust: the shim catches them and returns an error string or a status.

pub mod autocast;
pub mod foreach;
pub mod layout;

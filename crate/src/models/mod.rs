//! Models: the architectures ([`archs`]), fastai's classification head ([`head`]) and
//! pretrained weights ([`weights`]). Parameter names follow torchvision, so torchvision
//! checkpoints load unchanged.

pub mod archs;
pub mod head;
pub mod weights;

pub use archs::{Arch, mobilenet_v2, resnet18, resnet34, resnet50};

//! The channels-last ("NHWC") memory layout, which tch has no argument for.

use tch::Tensor;

/// `t` with NHWC strides (same shape, same values). tch has no memory-format argument, so the
/// layout is made by permuting to NHWC, copying, and permuting the view back.
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// let t = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([1, 2, 3, 4]);
/// let nhwc = fastvision::torch_ext::layout::channels_last(&t);
/// assert_eq!(nhwc.stride(), vec![24, 1, 8, 2]);
/// assert!(nhwc.equal(&t));
/// ```
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let [_, c, h, w] = t.size()[..] else {
        unreachable!("4-D")
    };
    let nhwc_strides = [c * h * w, 1, w * c, c];
    if t.stride() == nhwc_strides || c == 1 {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

//! Mixed precision: autocast in fp16 or bf16 around the forward pass, and dynamic loss scaling
//! for fp16 training (fastai's `MixedPrecision`, torch's `GradScaler`). `Learner::to_fp16`
//! runs the forward pass under fp16 autocast and adds the scaler to every fit;
//! `Learner::to_bf16` needs no scaler.

use std::ffi::c_int;

use tch::{Device, Kind, Tensor};

/// The reduced precision autocast computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float16: fast on every CUDA GPU, needs loss scaling.
    Half,
    /// bfloat16: fp32's range, no loss scaling; Ampere GPUs and newer, and CPUs.
    BFloat16,
}

// crate/shim/autocast.cpp: ATen's autocast switches with a dtype, which tch cannot set.
unsafe extern "C" {
    fn fv_autocast_begin(cuda: c_int, bf16: c_int) -> c_int;
    fn fv_autocast_end(cuda: c_int, previous: c_int);
}

/// Runs `f` under autocast on `device` in `precision` (torch's `autocast(dtype=...)`):
/// convolutions and matrix products in the reduced type, reductions and BatchNorm in fp32.
/// The previous autocast state comes back afterwards, also if `f` panics.
///
/// ```
/// use fastvision::learner::callbacks::{Precision, autocast};
/// use tch::{Device, Kind, Tensor};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// let kind = autocast(Device::Cpu, Precision::BFloat16, || a.matmul(&a).kind());
/// assert_eq!(kind, Kind::BFloat16);
/// assert_eq!(a.matmul(&a).kind(), Kind::Float);
/// ```
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> T {
    struct Restore(c_int, c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain calls into ATen's thread-local autocast state.
            unsafe { fv_autocast_end(self.0, self.1) }
        }
    }
    let cuda = c_int::from(device.is_cuda());
    let bf16 = c_int::from(precision == Precision::BFloat16);
    // SAFETY: as above; begin and end are paired by the guard.
    let _restore = Restore(cuda, unsafe { fv_autocast_begin(cuda, bf16) });
    f()
}

use crate::Result;
use crate::learner::fit::{Callback, FitContext};
use crate::learner::foreach;

/// Multiplies the loss by a large factor before backward, so small fp16 gradients do not
/// flush to zero, and divides the gradients by it before the step. When any gradient
/// overflowed, the step is skipped (the batch still counts: the recorder, the progress bar and
/// the schedule all move on) and the scale is halved; after `growth_interval` good steps in a
/// row it doubles.
///
/// ```
/// let mp = fastvision::learner::callbacks::MixedPrecision::new();
/// assert_eq!(mp.loss_scale, 65536.0);
/// assert_eq!(mp.skipped_steps, 0);
/// ```
#[derive(Debug, Clone)]
pub struct MixedPrecision {
    /// The current loss scale.
    pub loss_scale: f64,
    /// Good steps in a row before the scale doubles.
    pub growth_interval: u32,
    /// Steps skipped because a gradient overflowed.
    pub skipped_steps: usize,
    good_steps: u32,
}

impl Default for MixedPrecision {
    fn default() -> Self {
        Self::new()
    }
}

impl MixedPrecision {
    /// torch's defaults: scale 2^16, doubled after 1000 good steps.
    pub fn new() -> Self {
        MixedPrecision {
            loss_scale: 65536.0,
            growth_interval: 1000,
            skipped_steps: 0,
            good_steps: 0,
        }
    }

    /// Starts from another scale.
    pub fn with_scale(mut self, loss_scale: f64) -> Self {
        self.loss_scale = loss_scale;
        self
    }
}

impl Callback for MixedPrecision {
    fn order(&self) -> i32 {
        -10
    }
    fn on_backward_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if !cx.skip_backward {
            cx.loss = &cx.loss * self.loss_scale;
        }
        Ok(())
    }
    fn on_backward_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if cx.skip_backward {
            return Ok(());
        }
        let grads = cx.learn.opt.grads();
        // GradScaler's unscale: one launch over every gradient, then one read-back.
        if let Some(first) = grads.first() {
            let dev = first.device();
            let found_inf = Tensor::zeros([1], (Kind::Float, dev));
            let inv_scale = Tensor::from_slice(&[(1.0 / self.loss_scale) as f32]).to_device(dev);
            foreach::unscale_(&grads.iter().collect::<Vec<_>>(), &found_inf, &inv_scale);
            if found_inf.double_value(&[0]) != 0.0 {
                cx.skip_step = true;
                self.skipped_steps += 1;
                self.loss_scale /= 2.0;
                self.good_steps = 0;
                return Ok(());
            }
        }
        self.good_steps += 1;
        if self.good_steps == self.growth_interval {
            self.loss_scale *= 2.0;
            self.good_steps = 0;
        }
        Ok(())
    }
}

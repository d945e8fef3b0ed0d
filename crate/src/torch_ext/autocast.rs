//! Autocast with a chosen reduced type, from crate/shim/autocast.cpp: ATen's autocast
//! switches take a dtype that tch cannot set.

use std::ffi::c_int;

use tch::Device;

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
    fn fv_autocast_end(cuda: c_int, previous: c_int) -> c_int;
}

/// Runs `f` under autocast on `device` in `precision` (torch's `autocast(dtype=...)`):
/// convolutions and matrix products in the reduced type, reductions and BatchNorm in fp32.
/// The previous autocast state comes back afterwards, also if `f` panics.
///
/// ```
/// use fastvision::torch_ext::autocast::{Precision, autocast};
/// use tch::{Device, Kind, Tensor};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// let kind = autocast(Device::Cpu, Precision::BFloat16, || a.matmul(&a).kind());
/// assert_eq!(kind, Kind::BFloat16);
/// assert_eq!(a.matmul(&a).kind(), Kind::Float);
/// ```
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> T {
    let _on = AutocastGuard::enter(device, precision);
    f()
}

/// Autocast switched on for `device` in `precision` until the guard drops, which puts back
/// the state it found: for a caller whose autocast spans several calls, as the mixed-precision
/// callback's spans from a batch's start to its loss.
///
/// ```
/// use fastvision::torch_ext::autocast::{AutocastGuard, Precision};
/// use tch::{Device, Kind, Tensor};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// let on = AutocastGuard::enter(Device::Cpu, Precision::BFloat16);
/// assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
/// drop(on);
/// assert_eq!(a.matmul(&a).kind(), Kind::Float);
/// ```
///
/// Autocast's state belongs to the thread that set it, so the guard stays on that thread: it
/// is neither `Send` nor `Sync`, and dropping it elsewhere does not compile.
///
/// ```compile_fail
/// use fastvision::torch_ext::autocast::{AutocastGuard, Precision};
/// let on = AutocastGuard::enter(tch::Device::Cpu, Precision::BFloat16);
/// std::thread::spawn(move || drop(on));
/// ```
#[derive(Debug)]
pub struct AutocastGuard {
    cuda: c_int,
    previous: c_int,
    /// A raw pointer's marker: the guard restores thread-local state, so it must not move.
    _thread_bound: std::marker::PhantomData<*const ()>,
}

impl AutocastGuard {
    /// Switches autocast on (see [`autocast`]).
    pub fn enter(device: Device, precision: Precision) -> Self {
        let cuda = c_int::from(device.is_cuda());
        let bf16 = c_int::from(precision == Precision::BFloat16);
        // SAFETY: plain calls into ATen's thread-local autocast state; begin and end are
        // paired by this guard's drop.
        let previous = unsafe { fv_autocast_begin(cuda, bf16) };
        // ATen threw: its autocast does not know this device. An invariant broken inside
        // libtorch, not bad input, so it is not an Error a caller could act on.
        assert!(
            previous >= 0,
            "libtorch refused autocast on {device:?} in {precision:?}"
        );
        AutocastGuard {
            cuda,
            previous,
            _thread_bound: std::marker::PhantomData,
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in enter. A failure here cannot be reported from a drop; ATen only
        // throws for a device it lacks, which enter would have refused first.
        let _ = unsafe { fv_autocast_end(self.cuda, self.previous) };
    }
}

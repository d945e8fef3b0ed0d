//! ATen's multi-tensor kernels, which tch cannot reach (its generator skips ops over tensor
//! lists): torch's `_foreach_*` ops, fused AdamW and GradScaler's unscale, from
//! crate/shim/foreach.cpp. Each call is one kernel launch (or a few) for all of a model's
//! parameters; a loop over tch tensors is several launches per parameter, and on a GPU every
//! launch costs host time that the step then waits for.

use std::ffi::{CStr, c_char, c_int};

use tch::Tensor;
use torch_sys::C_tensor;

type Handle = *const C_tensor;

unsafe extern "C" {
    fn fv_free_error(message: *mut c_char);
    fn fv_fused_adamw(
        params: *const Handle,
        grads: *const Handle,
        exp_avgs: *const Handle,
        exp_avg_sqs: *const Handle,
        steps: *const Handle,
        n: c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: Handle,
    ) -> *mut c_char;
    fn fv_foreach_sub_tensor(ts: *const Handle, n: c_int, other: Handle) -> *mut c_char;
    fn fv_foreach_add_scalar(ts: *const Handle, n: c_int, value: f64) -> *mut c_char;
    fn fv_foreach_zero(ts: *const Handle, n: c_int) -> *mut c_char;
    fn fv_foreach_mul_tensor(ts: *const Handle, n: c_int, factor: Handle) -> *mut c_char;
    fn fv_foreach_total_norm(ts: *const Handle, n: c_int, out: *mut *mut C_tensor) -> *mut c_char;
    fn fv_amp_unscale(
        ts: *const Handle,
        n: c_int,
        found_inf: Handle,
        inv_scale: Handle,
    ) -> *mut c_char;
}

fn handles(ts: &[&Tensor]) -> Vec<Handle> {
    ts.iter().map(|t| t.as_ptr()).collect()
}

/// Panics with ATen's message, as tch's own infallible methods do: these calls only fail on
/// a programming error (mixed devices or dtypes), never on user input.
fn check(op: &str, message: *mut c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: the shim returns a NUL-terminated strdup'd string, freed here once.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { fv_free_error(message) };
    panic!("{op}: {text}");
}

/// Runs one shim call over the tensor list `ts` (nothing for an empty list) and panics with
/// ATen's message if it failed.
fn over(op: &str, ts: &[&Tensor], call: impl FnOnce(*const Handle, c_int) -> *mut c_char) -> bool {
    if ts.is_empty() {
        return false;
    }
    let h = handles(ts);
    check(op, call(h.as_ptr(), h.len() as c_int));
    true
}

/// AdamW's hyper-parameters for one layer group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// The per-parameter lists of one fused AdamW call.
pub(crate) struct AdamWLists<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
    pub steps: &'a [&'a Tensor],
}

/// One fused AdamW update (torch's `AdamW(fused=True)` kernel) of `params` in place, with
/// step counts read from `steps`. All lists have one entry per parameter. Where `found_inf`
/// (a one-element float tensor) is non-zero, nothing changes: the decision stays on the device.
pub(crate) fn fused_adamw(l: AdamWLists, h: AdamWHyper, found_inf: Option<&Tensor>) {
    let AdamWLists {
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        steps,
    } = l;
    let n = params.len();
    assert!(
        [grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()]
            .iter()
            .all(|&l| l == n),
        "fused_adamw: one gradient, moment pair and step per parameter"
    );
    if n == 0 {
        return;
    }
    let (p, g, m, v, s) = (
        handles(params),
        handles(grads),
        handles(exp_avgs),
        handles(exp_avg_sqs),
        handles(steps),
    );
    // SAFETY: every handle is a live tch tensor borrowed for the call; n matches each list.
    let r = unsafe {
        fv_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n as c_int,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            found_inf.map_or(std::ptr::null(), Tensor::as_ptr),
        )
    };
    check("fused AdamW", r);
}

/// `t -= other` for every tensor, where `other` is a one-element tensor on their device.
///
/// ```
/// let a = tch::Tensor::from_slice(&[1.0f32, 2.0]);
/// fastvision::torch_ext::foreach::sub_(&[&a], &tch::Tensor::from_slice(&[1.0f32]));
/// assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [0.0, 1.0]);
/// ```
pub fn sub_(ts: &[&Tensor], other: &Tensor) {
    // SAFETY: live tensors, borrowed for the call.
    over("foreach sub", ts, |h, n| unsafe {
        fv_foreach_sub_tensor(h, n, other.as_ptr())
    });
}

/// `t += value` for every tensor, in one launch.
///
/// ```
/// let a = tch::Tensor::from_slice(&[1.0f32, 2.0]);
/// let b = tch::Tensor::from_slice(&[0.5f32]);
/// fastvision::torch_ext::foreach::add_scalar_(&[&a, &b], 1.0);
/// assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [2.0, 3.0]);
/// assert_eq!(b.double_value(&[0]), 1.5);
/// ```
pub fn add_scalar_(ts: &[&Tensor], value: f64) {
    // SAFETY: live tensors, borrowed for the call.
    over("foreach add", ts, |h, n| unsafe {
        fv_foreach_add_scalar(h, n, value)
    });
}

/// Zeroes every tensor, in one launch (the optimizer's `zero_grad`).
///
/// ```
/// let a = tch::Tensor::from_slice(&[1.0f32, 2.0]);
/// fastvision::torch_ext::foreach::zero_(&[&a]);
/// assert_eq!(a.abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
/// ```
pub fn zero_(ts: &[&Tensor]) {
    // SAFETY: live tensors, borrowed for the call.
    over("foreach zero", ts, |h, n| unsafe { fv_foreach_zero(h, n) });
}

/// `t *= factor` for every tensor, where `factor` is a one-element tensor on their device
/// (so the factor never has to be read back to the host).
///
/// ```
/// let a = tch::Tensor::from_slice(&[1.0f32, 2.0]);
/// fastvision::torch_ext::foreach::mul_(&[&a], &tch::Tensor::from(0.5f32));
/// assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [0.5, 1.0]);
/// ```
pub fn mul_(ts: &[&Tensor], factor: &Tensor) {
    // SAFETY: live tensors, borrowed for the call.
    over("foreach mul", ts, |h, n| unsafe {
        fv_foreach_mul_tensor(h, n, factor.as_ptr())
    });
}

/// The L2 norm of all the tensors' elements together, as a float scalar on their device.
///
/// ```
/// let a = tch::Tensor::from_slice(&[3.0f32]);
/// let b = tch::Tensor::from_slice(&[4.0f32]);
/// assert_eq!(fastvision::torch_ext::foreach::total_norm(&[&a, &b]).double_value(&[]), 5.0);
/// ```
pub fn total_norm(ts: &[&Tensor]) -> Tensor {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: live tensors; on success the shim stores a new at::Tensor* in `out`, which
    // Tensor::from_ptr takes over (and frees on drop).
    if over("foreach norm", ts, |h, n| unsafe {
        fv_foreach_total_norm(h, n, &mut out)
    }) {
        unsafe { Tensor::from_ptr(out) }
    } else {
        Tensor::from(0.0f32)
    }
}

/// GradScaler's unscale: multiplies every tensor by `inv_scale` and sets `found_inf` (a
/// one-element float tensor) to 1 when any element of any of them is infinite or NaN.
///
/// ```
/// use tch::Tensor;
/// let g = Tensor::from_slice(&[2.0f32, 4.0]);
/// let found_inf = Tensor::from_slice(&[0.0f32]);
/// fastvision::torch_ext::foreach::unscale_(&[&g], &found_inf, &Tensor::from_slice(&[0.5f32]));
/// assert_eq!(Vec::<f32>::try_from(&g).unwrap(), [1.0, 2.0]);
/// assert_eq!(found_inf.double_value(&[0]), 0.0);
/// ```
pub fn unscale_(ts: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) {
    // SAFETY: live tensors, borrowed for the call.
    over("AMP unscale", ts, |h, n| unsafe {
        fv_amp_unscale(h, n, found_inf.as_ptr(), inv_scale.as_ptr())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn unscale_finds_an_infinity_in_any_tensor() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]);
        let b = Tensor::from_slice(&[f32::INFINITY]);
        let found = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu));
        unscale_(&[&a, &b], &found, &Tensor::from_slice(&[1.0f32]));
        assert_eq!(found.double_value(&[0]), 1.0);
    }

    #[test]
    #[should_panic(expected = "foreach mul")]
    fn an_aten_error_is_a_panic_with_its_message() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]);
        mul_(&[&a], &Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
    }
}

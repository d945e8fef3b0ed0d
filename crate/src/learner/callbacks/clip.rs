//! Gradient clipping by global norm (fastai's `GradientClipping`, torch's `clip_grad_norm_`).

use tch::Tensor;

use crate::Result;
use crate::learner::fit::{Callback, FitContext};
use crate::torch_ext::foreach;

/// Scales `grads` together so their global L2 norm is at most `max_norm`, on the device
/// (no read-back); returns the norm they had.
///
/// ```
/// use tch::Tensor;
/// let g = [Tensor::from_slice(&[3.0f32]), Tensor::from_slice(&[4.0f32])];
/// let norm = fastvision::learner::callbacks::clip_grad_norm(&g, 1.0);
/// assert_eq!(norm.double_value(&[]), 5.0);
/// assert!((g[0].double_value(&[0]) - 0.6).abs() < 1e-6);
/// ```
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Tensor {
    let grads: Vec<&Tensor> = grads.iter().collect();
    let total = foreach::total_norm(&grads);
    let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
    tch::no_grad(|| foreach::mul_(&grads, &coef));
    total
}

/// Clips the gradients' global norm to `max_norm` before every step.
///
/// ```no_run
/// # let mut learn: fastvision::Learner = unimplemented!();
/// learn.add_cb(fastvision::learner::callbacks::GradientClipping::new(0.1));
/// ```
#[derive(Debug, Clone)]
pub struct GradientClipping {
    /// The largest global gradient norm let through.
    pub max_norm: f64,
}

impl GradientClipping {
    /// Clipping at `max_norm`.
    pub fn new(max_norm: f64) -> Self {
        GradientClipping { max_norm }
    }
}

impl Callback for GradientClipping {
    fn on_backward_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if !(cx.skip_backward || cx.skip_step) {
            let _ = clip_grad_norm(&cx.learn.opt.grads(), self.max_norm);
        }
        Ok(())
    }
}

//! Dynamic loss scaling for fp16 training (fastai's `MixedPrecision`, torch's `GradScaler`).
//! `Learner::to_fp16` runs the forward pass under autocast and adds this callback to every fit.

use tch::{Kind, Tensor};

use crate::Result;
use crate::learner::fit::{Callback, FitContext};

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

/// Whether every gradient is finite: one reduction per gradient and one read-back in all.
fn all_finite(grads: &[Tensor]) -> bool {
    if grads.is_empty() {
        return true;
    }
    // A sum is non-finite when any element is (an fp32 sum of finite values overflowing also
    // counts as overflow, which is what it is).
    let sums: Vec<Tensor> = grads.iter().map(|g| g.sum(Kind::Float)).collect();
    Tensor::stack(&sums, 0)
        .sum(Kind::Float)
        .isfinite()
        .int64_value(&[])
        == 1
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
        if !all_finite(&grads) {
            cx.skip_step = true;
            self.skipped_steps += 1;
            self.loss_scale /= 2.0;
            self.good_steps = 0;
            return Ok(());
        }
        let inv = 1.0 / self.loss_scale;
        tch::no_grad(|| {
            for mut g in grads {
                let _ = g.g_mul_scalar_(inv);
            }
        });
        self.good_steps += 1;
        if self.good_steps == self.growth_interval {
            self.loss_scale *= 2.0;
            self.good_steps = 0;
        }
        Ok(())
    }
}

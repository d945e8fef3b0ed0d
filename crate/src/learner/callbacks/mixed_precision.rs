//! Mixed precision: autocast in fp16 or bf16 around the forward pass, and dynamic loss scaling
//! for fp16 training (fastai's `MixedPrecision`, torch's `GradScaler`), both halves in one
//! callback. `Learner::to_fp16` adds it in fp16 with the scaler, `Learner::to_bf16` in bf16,
//! which needs no scaler.

use tch::{Device, Kind, Tensor};

pub use crate::torch_ext::autocast::{AutocastGuard, Precision, autocast};

use crate::Result;
use crate::learner::fit::{Callback, FitContext};
use crate::torch_ext::foreach;

/// Multiplies the loss by a large factor before backward, so small fp16 gradients do not
/// flush to zero, and divides the gradients by it before the step. When any gradient
/// overflowed, the step is skipped (the batch still counts: the recorder, the progress bar and
/// the schedule all move on) and the scale is halved; after `growth_interval` good steps in a
/// row it doubles.
///
/// All of it happens on the device, as torch's `GradScaler` with a fused optimizer does: the
/// scale, the overflow flag and the count of skipped steps are tensors there, the gradients
/// and the skipped step go through the learner's optimizer ([`crate::learner::optim::Optimizer::grads`],
/// [`crate::learner::optim::Optimizer::skip_step_if`]; AdamW's fused kernel reads the flag itself), and the host
/// never waits for a batch. [`MixedPrecision::loss_scale`] and
/// [`MixedPrecision::skipped_steps`] read the values back when asked.
///
/// ```
/// let mp = fastvision::learner::callbacks::MixedPrecision::new();
/// assert_eq!(mp.loss_scale(), 65536.0);
/// assert_eq!(mp.skipped_steps(), 0);
/// ```
#[derive(Debug)]
pub struct MixedPrecision {
    /// Good steps in a row before the scale doubles.
    pub growth_interval: u32,
    init_scale: f64,
    state: Option<Scaler>,
    precision: Precision,
    /// Autocast while a batch's forward pass or a validation pass runs.
    on: Option<AutocastGuard>,
}

/// The scaler's state on the training device, made with the first batch.
#[derive(Debug)]
struct Scaler {
    /// The loss scale, a float scalar.
    scale: Tensor,
    /// Good steps in a row (int32), as `_amp_update_scale_` keeps it.
    growth_tracker: Tensor,
    /// 1 when the last backward pass overflowed.
    found_inf: Tensor,
    /// Steps skipped so far.
    skipped: Tensor,
}

impl Default for MixedPrecision {
    fn default() -> Self {
        Self::new()
    }
}

impl MixedPrecision {
    /// fp16 autocast (on CUDA; a CPU computes in fp32) with the loss scaler at torch's
    /// defaults: scale 2^16, doubled after 1000 good steps.
    pub fn new() -> Self {
        MixedPrecision {
            growth_interval: 1000,
            init_scale: 65536.0,
            state: None,
            precision: Precision::Half,
            on: None,
        }
    }

    /// bf16 autocast, on CUDA or on the CPU, without loss scaling: bf16 has fp32's range.
    ///
    /// ```
    /// use fastvision::learner::callbacks::{MixedPrecision, Precision};
    /// assert_eq!(MixedPrecision::bf16().precision(), Precision::BFloat16);
    /// ```
    pub fn bf16() -> Self {
        MixedPrecision {
            precision: Precision::BFloat16,
            ..Self::new()
        }
    }

    /// The reduced precision the forward pass computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Autocast for the model's device: bf16 anywhere, fp16 on CUDA only.
    fn enter(&mut self, cx: &FitContext) {
        if self.on.is_none() {
            self.on = self.autocast_on(cx.learn.model.device());
        }
    }

    /// The autocast this callback computes a forward pass under on `device` (bf16 anywhere,
    /// fp16 on CUDA only), for another callback that validates as the fit does.
    pub(crate) fn autocast_on(&self, device: tch::Device) -> Option<AutocastGuard> {
        (self.precision == Precision::BFloat16 || device.is_cuda())
            .then(|| AutocastGuard::enter(device, self.precision))
    }

    /// Starts from another scale. The scale lives on the device as an f32, as torch's
    /// GradScaler keeps it, so it is capped at 2^127, the largest power of two an f32 holds.
    ///
    /// ```
    /// use fastvision::learner::callbacks::MixedPrecision;
    /// assert_eq!(MixedPrecision::new().with_scale(1024.0).loss_scale(), 1024.0);
    /// assert_eq!(MixedPrecision::new().with_scale(1e40).loss_scale(), 2f64.powi(127));
    /// ```
    pub fn with_scale(mut self, loss_scale: f64) -> Self {
        self.init_scale = loss_scale.min(2f64.powi(127));
        self.state = None;
        self
    }

    /// The current loss scale (read back from the device).
    pub fn loss_scale(&self) -> f64 {
        self.state
            .as_ref()
            .map_or(self.init_scale, |s| s.scale.double_value(&[]))
    }

    /// Steps skipped so far because a gradient overflowed (read back from the device).
    pub fn skipped_steps(&self) -> usize {
        self.state
            .as_ref()
            .map_or(0, |s| s.skipped.double_value(&[]) as usize)
    }

    fn scaler(&mut self, device: Device) -> &mut Scaler {
        let init = self.init_scale;
        self.state.get_or_insert_with(|| {
            let scalar = |v: f64, kind| Tensor::full([0i64; 0], v, (kind, device));
            Scaler {
                scale: scalar(init, Kind::Float),
                growth_tracker: scalar(0.0, Kind::Int),
                found_inf: scalar(0.0, Kind::Float),
                skipped: scalar(0.0, Kind::Float),
            }
        })
    }
}

impl Callback for MixedPrecision {
    fn order(&self) -> i32 {
        -10
    }
    fn on_batch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.enter(cx);
        Ok(())
    }
    fn on_loss_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        // The loss, the metrics and every callback after this see fp32 logits.
        if self.on.take().is_some() {
            cx.logits = cx.logits.to_kind(Kind::Float);
        }
        Ok(())
    }
    fn on_validate_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.enter(cx);
        Ok(())
    }
    fn on_validate_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        self.on = None;
        Ok(())
    }
    fn on_train_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        // After an error mid-batch, autocast must not outlive the fit.
        self.on = None;
        Ok(())
    }
    fn on_backward_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if self.precision == Precision::Half && !cx.skip_backward {
            let scale = &self.scaler(cx.loss.device()).scale;
            cx.loss = &cx.loss * scale;
        }
        Ok(())
    }
    fn on_backward_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if self.precision != Precision::Half || cx.skip_backward {
            return Ok(());
        }
        let grads = cx.learn.opt.grads();
        let Some(first) = grads.first() else {
            return Ok(());
        };
        let growth_interval = i64::from(self.growth_interval);
        let s = self.scaler(first.device());
        tch::no_grad(|| {
            // GradScaler's unscale: one launch over every gradient, setting the flag.
            let _ = s.found_inf.zero_();
            let inv_scale = s.scale.reciprocal();
            foreach::unscale_(&grads.iter().collect::<Vec<_>>(), &s.found_inf, &inv_scale);
            cx.learn.opt.skip_step_if(&s.found_inf);
            let _ = s.skipped.g_add_(&s.found_inf);
            // Halve on overflow, double after growth_interval good steps: also on the device.
            let _ = s.scale.internal_amp_update_scale_(
                &s.growth_tracker,
                &s.found_inf,
                2.0,
                0.5,
                growth_interval,
            );
        });
        Ok(())
    }
}

//! Stops training when the loss turns NaN or infinite, and puts back the weights the epoch
//! started with, so one bad learning rate does not leave a ruined model behind.

use tch::Tensor;

use crate::learner::fit::{Callback, FitContext};
use crate::learner::optim::OptimizerState;
use crate::{Error, Result};

/// The NaN guard, part of every fit but `lr_find`.
///
/// On the CPU it reads each batch's loss before the step (reading is free there), so the bad
/// step is never taken. On a GPU reading the loss would stall the device every batch, so it
/// checks every `check_every` batches and at the end of each epoch, and restores the
/// optimizer state too.
///
/// ```
/// let guard = fastvision::learner::callbacks::NanGuard::new(tch::Device::Cpu);
/// assert_eq!(guard.check_every, 1);
/// ```
#[derive(Debug)]
pub struct NanGuard {
    /// Batches between two looks at the loss.
    pub check_every: usize,
    weights: Vec<(String, Tensor)>,
    opt_state: Option<OptimizerState>,
    epoch_first_iteration: usize,
    checked: usize,
}

impl NanGuard {
    /// A guard for training on `device`: every batch on the CPU, every 32 on a GPU.
    pub fn new(device: tch::Device) -> Self {
        NanGuard {
            check_every: if device.is_cuda() { 32 } else { 1 },
            weights: vec![],
            opt_state: None,
            epoch_first_iteration: 0,
            checked: 0,
        }
    }

    fn check(&mut self, cx: &mut FitContext) -> Result<()> {
        let (raw, _) = cx.loss_history();
        let bad = raw[self.checked.min(raw.len())..]
            .iter()
            .position(|l| !l.is_finite())
            .map(|i| (self.checked + i, raw[self.checked + i]));
        self.checked = raw.len();
        let Some((iteration, loss)) = bad else {
            return Ok(());
        };
        cx.skip_backward = true;
        cx.learn.model.restore(&self.weights);
        if let Some(state) = &self.opt_state {
            cx.learn.opt.set_state(state);
        }
        Err(Error::Diverged(format!(
            "the training loss became {loss} at epoch {}, batch {} (learning rates {}); training \
             stopped and the weights from the start of that epoch were restored. Try a lower \
             learning rate (see lr_find)",
            cx.epoch,
            iteration - self.epoch_first_iteration,
            cx.lrs
                .iter()
                .map(|l| format!("{l:.2e}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

impl Callback for NanGuard {
    fn on_train_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.checked = cx.iteration;
        Ok(())
    }
    fn on_epoch_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        self.weights = cx.learn.model.snapshot();
        self.opt_state = (self.check_every > 1).then(|| cx.learn.opt.state());
        self.epoch_first_iteration = cx.iteration;
        Ok(())
    }
    fn on_backward_begin(&mut self, cx: &mut FitContext) -> Result<()> {
        if (cx.iteration + 1).is_multiple_of(self.check_every) {
            self.check(cx)?;
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        self.check(cx)
    }
    fn on_train_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        self.weights.clear();
        self.opt_state = None;
        Ok(())
    }
}

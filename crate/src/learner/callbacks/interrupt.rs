//! Stopping a fit from outside it (Ctrl-C in the command line), after the current batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Result;
use crate::learner::fit::{Callback, FitContext};

/// A stop button for training. Clone it, hand one copy to whatever presses it (a Ctrl-C
/// handler, another thread), and add the other to the learner: the fit stops cleanly after
/// the batch it is on, and the model keeps the weights of the last completed step.
///
/// ```
/// use fastvision::learner::callbacks::Interrupt;
/// let stop = Interrupt::new();
/// let button = stop.clone();
/// button.request();
/// assert!(stop.is_requested());
/// // learn.add_cb(stop); ctrlc::set_handler(move || button.request())?;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A button nobody has pressed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the running fit (or the next one) to stop after its current batch.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop is pending.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Callback for Interrupt {
    fn on_batch_end(&mut self, cx: &mut FitContext) -> Result<()> {
        if self.0.swap(false, Ordering::SeqCst) {
            cx.stop(format!(
                "interrupted at epoch {}, batch {}",
                cx.epoch, cx.batch
            ));
        }
        Ok(())
    }
}

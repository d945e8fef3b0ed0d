//! The training loop, written once. [`Learner::fit_with`] runs epochs and batches and calls
//! the hooks of every [`Callback`] with a [`FitContext`]: the batch, the logits, the loss
//! tensor, and the learner itself (model and optimizer). One-cycle scheduling, `lr_find`, the
//! recorder, the progress table, the NaN guard, mixed precision and interruption are
//! callbacks, so the loop keeps one shape and `fit_one_cycle` and `lr_find` are short
//! functions over it (fastai v1's `train.py` design).
//!
//! One batch, in order (fastai v1's hook names):
//! `on_batch_begin` (set learning rates, change `x`/`y`) → forward → `on_loss_begin` (change the
//! logits) → loss → `on_loss` (change the loss, e.g. label smoothing) → the loss is logged →
//! `on_backward_begin` (scale the loss, or set `skip_backward`) → backward → `on_backward_end`
//! (gradients: clip, unscale, or set `skip_step`) → optimizer step → `on_step_end` →
//! `on_batch_end`. A skipped step is still a batch: every hook runs and the iteration advances.
//!
//! After the training batches, validation: `on_validate_begin` → one `on_validate_batch_end`
//! per batch → `on_validate_end` (`valid` is set) → `on_epoch_end`.
//!
//! [`Learner::fit_with`]: crate::Learner::fit_with

use std::any::{Any, TypeId};
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::Result;
use crate::learner::Learner;
use crate::models::Mode;
use crate::show::render::{Renderer, Silent};

/// The training loss of every batch, kept on the device until someone reads it, so the loop
/// never waits for the GPU just to log a number. Reading (the recorder at the end of an
/// epoch, a progress line, `lr_find`'s divergence check) copies everything pending back in
/// one transfer and smooths it as fastai does.
#[derive(Debug, Default)]
pub(crate) struct LossLog {
    pending: Vec<Tensor>,
    raw: Vec<f64>,
    smooth: Vec<f64>,
    avg: f64,
}

impl LossLog {
    const BETA: f64 = 0.98;

    fn push(&mut self, loss: &Tensor) {
        self.pending.push(loss.detach());
    }

    /// fastai's `SmoothenValue`: `avg = β·avg + (1-β)·loss`, reported as `avg / (1 - β^n)`.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let values = Tensor::stack(&self.pending, 0)
            .to_kind(Kind::Double)
            .to_device(Device::Cpu);
        self.pending.clear();
        let values = Vec::<f64>::try_from(values.view([-1])).unwrap_or_default();
        for v in values {
            self.avg = Self::BETA * self.avg + (1.0 - Self::BETA) * v;
            self.raw.push(v);
            let n = self.raw.len() as i32;
            self.smooth.push(self.avg / (1.0 - Self::BETA.powi(n)));
        }
    }
}

/// Everything a callback can see and change during a fit.
///
/// `learn` is the learner being trained (its model, `learn.opt`, its data). The batch, logits
/// and loss are plain tensors on the training device; replacing them changes what the loop uses
/// next. Reading a loss as a number ([`FitContext::last_loss`], [`FitContext::smooth_loss`])
/// waits for the device, so do it when you need it, not on every batch.
pub struct FitContext<'a> {
    /// The learner being trained.
    pub learn: &'a mut Learner,
    /// Epochs asked for.
    pub n_epochs: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches per epoch.
    pub n_batches: usize,
    /// Batch within the epoch.
    pub batch: usize,
    /// Batches done in this fit.
    pub iteration: usize,
    /// `n_epochs * n_batches`.
    pub total_iterations: usize,
    /// Learning rate of each layer group for the coming step (schedulers set it in
    /// `on_batch_begin`).
    pub lrs: Vec<f64>,
    /// The momentum for the coming step (Adam's beta1, SGD's momentum).
    pub mom: f64,
    /// The batch's images `[B, 3, H, W]`, augmented and normalised, on the device.
    pub x: Tensor,
    /// The batch's targets `[B]`.
    pub y: Tensor,
    /// The model's output for `x` (defined from `on_loss_begin` on).
    pub logits: Tensor,
    /// The training loss for this batch (defined from `on_loss` on); backward runs on it.
    pub loss: Tensor,
    /// Set in `on_backward_begin` to skip backward and the step for this batch.
    pub skip_backward: bool,
    /// Set in `on_backward_end` to skip the optimizer step for this batch.
    pub skip_step: bool,
    /// Set to end the epoch after this batch (validation still runs).
    pub stop_epoch: bool,
    /// Set to end training after this batch (this epoch still validates).
    pub stop_training: bool,
    /// Why training stopped early, shown under the progress table.
    pub stopped_because: Option<String>,
    /// Whether each epoch ends with validation (`lr_find` turns it off).
    pub validate: bool,
    /// Batches in the validation pass.
    pub n_valid_batches: usize,
    /// Validation batch just done (in `on_validate_batch_end`).
    pub valid_batch: usize,
    /// Validation loss and metrics of the epoch just ended (in `on_epoch_end`).
    pub valid: Option<(f64, Vec<f64>)>,
    /// Metric names, in table order.
    pub metric_names: Vec<String>,
    /// When the epoch began.
    pub epoch_start: Instant,
    pub(crate) losses: LossLog,
    /// The fit's callbacks in the order their hooks run (see [`Slot`]).
    slots: Vec<Slot<'a>>,
    /// How many of the learner's callbacks the slots know of; those past it were added by a
    /// hook and join at the next event.
    known: usize,
    /// The learner's callbacks of these types sit this fit out.
    sit_out: Vec<TypeId>,
}

/// Where a callback of the fit lives: the learner's recorder, the learner's callback list
/// (by index: a fit only appends to it, and removals leave a hole until the fit ends), or the
/// call's own list. Each stays where it lives, whole, except while its own hook runs, so a
/// hook sees `learn.recorder`, `learn.cb::<T>()` and [`FitContext::cb`] as they are.
pub(crate) enum Slot<'a> {
    Recorder,
    Own(usize),
    Call(Option<&'a mut dyn Callback>),
}

/// A callback out of its place while its hook runs.
enum Out<'a> {
    Recorder(Box<dyn Callback>),
    Own(usize, Box<dyn Callback>),
    Call(&'a mut dyn Callback),
}

impl Out<'_> {
    fn cb(&mut self) -> &mut dyn Callback {
        match self {
            Out::Recorder(cb) | Out::Own(_, cb) => cb.as_mut(),
            Out::Call(cb) => &mut **cb,
        }
    }
}

/// What stands in a learner's callback list for a callback whose hook is running (so
/// `learn.cb::<T>()` does not find it, and `remove_cb::<T>()` can still remove it), or for
/// one removed during the fit (until the fit ends, so the others keep their places).
pub(crate) struct Hole {
    /// The type of the callback out running, if one is.
    pub(crate) running: Option<TypeId>,
    /// Removed while the fit runs: dropped (with its callback, if out) when it can be.
    pub(crate) removed: bool,
}

impl Callback for Hole {}

impl Hole {
    /// The hole a list entry is, if it is one.
    pub(crate) fn of(cb: &dyn Callback) -> Option<&Hole> {
        (cb as &dyn Any).downcast_ref::<Hole>()
    }

    fn of_mut(cb: &mut dyn Callback) -> Option<&mut Hole> {
        (cb as &mut dyn Any).downcast_mut::<Hole>()
    }
}

impl<'a> FitContext<'a> {
    /// The state at the start of a fit of `n_epochs` epochs of `n_batches` batches, starting
    /// from learning rates `lrs`.
    pub(crate) fn new<'b: 'a>(
        learn: &'a mut Learner,
        n_epochs: usize,
        n_batches: usize,
        lrs: Vec<f64>,
        call: &'a mut [&'b mut dyn Callback],
        sit_out: &[TypeId],
    ) -> Self {
        let metric_names = learn.metrics.iter().map(|m| m.name()).collect();
        // The recorder, the call's callbacks and the learner's (less those sitting out), in
        // order; the sort is stable, so equal orders keep this order.
        let mut ordered: Vec<(i32, Slot<'a>)> = vec![(learn.recorder.order(), Slot::Recorder)];
        for cb in call.iter_mut() {
            ordered.push((cb.order(), Slot::Call(Some(&mut **cb))));
        }
        for (i, cb) in learn.callbacks.iter().enumerate() {
            if !sit_out.contains(&(cb.as_ref() as &dyn Any).type_id()) {
                ordered.push((cb.order(), Slot::Own(i)));
            }
        }
        ordered.sort_by_key(|(order, _)| *order);
        let known = learn.callbacks.len();
        FitContext {
            learn,
            n_epochs,
            epoch: 0,
            n_batches,
            batch: 0,
            iteration: 0,
            total_iterations: n_epochs * n_batches,
            lrs,
            mom: 0.9,
            x: Tensor::new(),
            y: Tensor::new(),
            logits: Tensor::new(),
            loss: Tensor::new(),
            skip_backward: false,
            skip_step: false,
            stop_epoch: false,
            stop_training: false,
            stopped_because: None,
            validate: true,
            n_valid_batches: 0,
            valid_batch: 0,
            valid: None,
            metric_names,
            epoch_start: Instant::now(),
            losses: LossLog::default(),
            slots: ordered.into_iter().map(|(_, slot)| slot).collect(),
            known,
            sit_out: sit_out.to_vec(),
        }
    }

    /// The callback of type `T` in this fit, the learner's or the call's, other than the one
    /// whose hook is running: what a hook uses to read another callback's state.
    ///
    /// ```
    /// use fastvision::learner::callbacks::EarlyStopping;
    /// use fastvision::learner::fit::{Callback, FitContext};
    /// struct Report;
    /// impl Callback for Report {
    ///     fn on_epoch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
    ///         if let Some(es) = cx.cb::<EarlyStopping>() {
    ///             println!("{es:?}");
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn cb<T: Callback>(&self) -> Option<&T> {
        self.learn.cb::<T>().or_else(|| {
            self.slots.iter().find_map(|slot| match slot {
                Slot::Call(Some(cb)) => (&**cb as &dyn Any).downcast_ref::<T>(),
                _ => None,
            })
        })
    }

    /// Calls `f` with the learner's renderer and this context, for a line whose suffix reads
    /// the context (the running loss).
    ///
    /// ```
    /// use fastvision::learner::fit::{Callback, FitContext};
    /// struct LossLine;
    /// impl Callback for LossLine {
    ///     fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
    ///         let done = cx.batch as u64 + 1;
    ///         cx.render(|r, cx| r.update(done, &mut || format!("loss {:.3}", cx.smooth_loss())));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn render(&mut self, f: impl FnOnce(&mut dyn Renderer, &mut FitContext)) {
        let mut renderer = std::mem::replace(&mut self.learn.renderer, Box::new(Silent));
        // The suffix reads the device, which can panic (CUDA out of memory): the renderer
        // goes back first.
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(renderer.as_mut(), self)));
        self.learn.renderer = renderer;
        if let Err(panic) = r {
            std::panic::resume_unwind(panic);
        }
    }

    /// Callbacks a hook added to the learner join the fit, after the fit's own.
    fn join_added(&mut self) {
        let n = self.learn.callbacks.len();
        for i in self.known..n {
            let cb = self.learn.callbacks[i].as_ref();
            if Hole::of(cb).is_none() && !self.sit_out.contains(&(cb as &dyn Any).type_id()) {
                self.slots.push(Slot::Own(i));
            }
        }
        self.known = n;
    }

    /// Takes slot `i`'s callback out of its place for its hook; `None` if it is gone
    /// (removed during the fit).
    fn take(&mut self, i: usize) -> Option<Out<'a>> {
        match &mut self.slots[i] {
            Slot::Recorder => Some(Out::Recorder(self.learn.take_recorder())),
            Slot::Call(cb) => cb.take().map(Out::Call),
            &mut Slot::Own(at) => {
                let entry = self.learn.callbacks.get_mut(at)?;
                if Hole::of(entry.as_ref()).is_some() {
                    return None;
                }
                let running = Some((entry.as_ref() as &dyn Any).type_id());
                let hole = Box::new(Hole {
                    running,
                    removed: false,
                });
                Some(Out::Own(at, std::mem::replace(entry, hole)))
            }
        }
    }

    /// Puts a callback back where [`FitContext::take`] found it (or drops it, if it was
    /// removed meanwhile).
    fn put_back(&mut self, i: usize, out: Out<'a>) {
        match out {
            Out::Recorder(cb) => self.learn.put_recorder(cb),
            Out::Call(cb) => self.slots[i] = Slot::Call(Some(cb)),
            Out::Own(at, cb) => {
                if let Some(entry) = self.learn.callbacks.get_mut(at)
                    && let Some(hole) = Hole::of_mut(entry.as_mut())
                    && hole.running.is_some()
                {
                    if hole.removed {
                        hole.running = None;
                    } else {
                        *entry = cb;
                    }
                }
            }
        }
    }

    /// Runs one hook of every callback in order, stopping at the first error, which then
    /// names the callback and the hook. Each callback is out of its place only while its own
    /// hook runs, and goes back even if the hook panics.
    fn hook(
        &mut self,
        event: &'static str,
        f: fn(&mut dyn Callback, &mut FitContext) -> Result<()>,
    ) -> Result<()> {
        self.join_added();
        for i in 0..self.slots.len() {
            let Some(mut out) = self.take(i) else {
                continue;
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(out.cb(), self)));
            let named = r.map(|r| r.map_err(|e| in_callback(out.cb(), event, e)));
            self.put_back(i, out);
            match named {
                Ok(r) => r?,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    }

    /// The training loss of the last logged batch (reads it back from the device).
    pub fn last_loss(&mut self) -> f64 {
        self.losses.flush();
        self.losses.raw.last().copied().unwrap_or(f64::NAN)
    }

    /// The exponentially smoothed training loss (β = 0.98, debiased), as fastai reports it.
    pub fn smooth_loss(&mut self) -> f64 {
        self.losses.flush();
        self.losses.smooth.last().copied().unwrap_or(f64::NAN)
    }

    /// Every logged batch loss of this fit, raw and smoothed (reads pending ones back).
    pub fn loss_history(&mut self) -> (&[f64], &[f64]) {
        self.losses.flush();
        (&self.losses.raw, &self.losses.smooth)
    }

    /// Ends training after this batch and says why under the progress table.
    pub fn stop(&mut self, why: impl Into<String>) {
        self.stop_training = true;
        self.stopped_because = Some(why.into());
    }

    /// The value a monitor name refers to after validation: `valid_loss`, `train_loss` or a
    /// metric's name. `None` before the first validation or for an unknown name.
    pub fn monitored(&mut self, name: &str) -> Option<f64> {
        match name {
            "train_loss" => Some(self.smooth_loss()),
            "valid_loss" => self.valid.as_ref().map(|v| v.0),
            metric => {
                let i = self.metric_names.iter().position(|m| m == metric)?;
                self.valid.as_ref().and_then(|v| v.1.get(i).copied())
            }
        }
    }
}

/// Hooks into the training loop; every method has a default that does nothing. A hook that
/// returns an error ends training (after `on_train_end`), and `fit` returns that error.
///
/// A callback that stops training once the smoothed loss is low enough:
///
/// ```
/// use fastvision::learner::fit::{Callback, FitContext};
/// struct StopBelow(f64);
/// impl Callback for StopBelow {
///     fn on_batch_end(&mut self, cx: &mut FitContext) -> fastvision::Result<()> {
///         // Reading the loss waits for the device: once every 10 batches is plenty.
///         if cx.iteration % 10 == 9 && cx.smooth_loss() < self.0 {
///             cx.stop(format!("the loss fell below {}", self.0));
///         }
///         Ok(())
///     }
/// }
/// ```
///
/// Add it for every fit with `learn.add_cb(StopBelow(0.1))`, or for one call with
/// `learn.fit_one_cycle_with(4, None, &mut [&mut StopBelow(0.1)])`.
pub trait Callback: std::any::Any {
    /// The name an error from one of its hooks carries: the type's own name by default.
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path).to_string()
    }
    /// Hooks of callbacks with a lower order run first (fastai's `_order`); the default is 0.
    /// Mixed precision runs at -10 (its unscaled gradients are what clipping sees), the
    /// recorder at 10 and the progress table last.
    fn order(&self) -> i32 {
        0
    }
    /// Before the first epoch.
    fn on_train_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// Before each epoch.
    fn on_epoch_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// Before each batch's forward pass: set `lrs` and `mom`, or change `x` and `y`.
    fn on_batch_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the forward pass, before the loss: `logits` is set and may be replaced.
    fn on_loss_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the loss is computed, before it is logged: `loss` may be replaced.
    fn on_loss(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the loss is logged, before backward: scale `loss`, or set `skip_backward`.
    fn on_backward_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After backward, before the step: gradients are in place; set `skip_step` to skip it.
    fn on_backward_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the optimizer step (also called when the step was skipped).
    fn on_step_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// At the end of each batch.
    fn on_batch_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// Before the epoch's validation pass, after its training batches (not called when
    /// validation is off).
    fn on_validate_begin(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After each validation batch: `valid_batch` of `n_valid_batches` is done.
    fn on_validate_batch_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the validation pass: `valid` holds the loss and metrics.
    fn on_validate_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After the epoch's validation (`valid` is set unless validation is off).
    fn on_epoch_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
    /// After training, however it ended.
    fn on_train_end(&mut self, _cx: &mut FitContext) -> Result<()> {
        Ok(())
    }
}

/// `error`, from `cb`'s hook `event`, as [`crate::Error::Callback`] (once: an error a callback
/// passed on from another keeps the first name).
fn in_callback(cb: &dyn Callback, event: &'static str, error: crate::Error) -> crate::Error {
    match error {
        e @ crate::Error::Callback { .. } => e,
        e => crate::Error::Callback {
            callback: cb.name(),
            event,
            error: Box::new(e),
        },
    }
}

pub use crate::show::progress::format_time;

/// Runs `n_epochs` epochs over the learner's data with the callbacks `cx` holds. Every
/// special case lives in a callback; this is only the loop.
///
/// A panic in a hook or in libtorch (CUDA out of memory, a failed kernel check) still ends the
/// fit as an error would: every callback hears `on_train_end` (bars close, autocast ends), and
/// then the panic goes on to the caller.
pub(crate) fn run_fit(cx: &mut FitContext) -> Result<()> {
    let train_dl = cx.learn.data.train_dl.clone();
    let valid_dl = cx.learn.data.valid_dl.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
        cx.hook("on_train_begin", |cb, cx| cb.on_train_begin(cx))?;
        for epoch in 0..cx.n_epochs {
            cx.epoch = epoch;
            cx.epoch_start = Instant::now();
            cx.valid = None;
            cx.stop_epoch = false;
            cx.hook("on_epoch_begin", |cb, cx| cb.on_epoch_begin(cx))?;
            // Each epoch of a learner's life gets its own shuffle and augmentation draw.
            let epoch_id = cx.learn.epochs_done;
            cx.learn.epochs_done += 1;
            for (b, batch) in train_dl.epoch(epoch_id).enumerate() {
                let batch = batch?;
                cx.batch = b;
                cx.x = batch.x;
                cx.y = batch.y;
                cx.skip_backward = false;
                cx.skip_step = false;
                cx.hook("on_batch_begin", |cb, cx| cb.on_batch_begin(cx))?;
                cx.learn.opt.set_hypers(&cx.lrs, cx.mom);
                cx.logits = cx.learn.model.forward(&cx.x, Mode::Train);
                cx.hook("on_loss_begin", |cb, cx| cb.on_loss_begin(cx))?;
                cx.loss = cx.learn.loss_func.loss(&cx.logits, &cx.y);
                cx.hook("on_loss", |cb, cx| cb.on_loss(cx))?;
                cx.losses.push(&cx.loss);
                cx.hook("on_backward_begin", |cb, cx| cb.on_backward_begin(cx))?;
                if !cx.skip_backward {
                    cx.learn.opt.zero_grad();
                    cx.loss.backward();
                }
                cx.hook("on_backward_end", |cb, cx| cb.on_backward_end(cx))?;
                if !(cx.skip_backward || cx.skip_step) {
                    cx.learn.opt.step();
                }
                cx.hook("on_step_end", |cb, cx| cb.on_step_end(cx))?;
                cx.hook("on_batch_end", |cb, cx| cb.on_batch_end(cx))?;
                cx.iteration += 1;
                if cx.stop_epoch || cx.stop_training {
                    break;
                }
            }
            if cx.validate {
                cx.n_valid_batches = valid_dl.len();
                cx.hook("on_validate_begin", |cb, cx| cb.on_validate_begin(cx))?;
                let mut totals = cx.learn.eval_totals();
                for (b, batch) in valid_dl.epoch(0).enumerate() {
                    cx.learn.eval_batch(&mut totals, &batch?);
                    cx.valid_batch = b;
                    cx.hook("on_validate_batch_end", |cb, cx| {
                        cb.on_validate_batch_end(cx)
                    })?;
                }
                cx.valid = Some(totals.value());
                cx.hook("on_validate_end", |cb, cx| cb.on_validate_end(cx))?;
            }
            cx.hook("on_epoch_end", |cb, cx| cb.on_epoch_end(cx))?;
            if cx.stop_training {
                break;
            }
        }
        Ok(())
    }));
    // Every callback hears the end, even after an error or a panic, so bars close and state
    // is restored; the first error of these is the fit's if it had none.
    cx.join_added();
    let mut end = Ok(());
    let mut end_panic = None;
    for i in 0..cx.slots.len() {
        let Some(mut out) = cx.take(i) else {
            continue;
        };
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| out.cb().on_train_end(cx)));
        let r = r.map(|r| r.map_err(|e| in_callback(out.cb(), "on_train_end", e)));
        cx.put_back(i, out);
        match r {
            Ok(r) if end.is_ok() => end = r,
            Ok(_) => {}
            // The others still hear the end; the first panic goes on after them.
            Err(panic) => {
                end_panic.get_or_insert(panic);
            }
        }
    }
    match (outcome, end_panic) {
        (Err(panic), _) | (Ok(_), Some(panic)) => std::panic::resume_unwind(panic),
        (Ok(outcome), None) => outcome.and(end),
    }
}

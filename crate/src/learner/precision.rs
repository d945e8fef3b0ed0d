//! Mixed precision, the learner's switch for it: `to_fp16` (CUDA, with loss scaling), `to_bf16`
//! (CUDA or CPU) and `to_fp32`, each adding or removing the one
//! [`crate::learner::callbacks::MixedPrecision`] callback.

use crate::learner::Learner;
use crate::learner::callbacks::{MixedPrecision, Precision};

impl Learner {
    /// Mixed precision on CUDA, as fastai's `to_fp16`: every fit's forward passes, training
    /// and validation, run under fp16 autocast with dynamic loss scaling, both done by one
    /// callback ([`callbacks::MixedPrecision`]). On a CPU it warns and changes nothing.
    /// Predictions outside a fit stay in fp32.
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_fp16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_fp16(&mut self) -> &mut Self {
        if !self.model.device().is_cuda() {
            log::warn!(
                "to_fp16 needs a CUDA device; training stays in fp32 on the CPU (to_bf16 works there)"
            );
            return self;
        }
        self.remove_cb::<MixedPrecision>();
        self.add_cb(MixedPrecision::new());
        self
    }

    /// Mixed precision in bfloat16, on CUDA or on the CPU: autocast without loss scaling
    /// ([`callbacks::MixedPrecision::bf16`]).
    ///
    /// ```no_run
    /// # let mut learn: fastvision::Learner = unimplemented!();
    /// learn.to_bf16().fit_one_cycle(4, None).unwrap();
    /// ```
    pub fn to_bf16(&mut self) -> &mut Self {
        self.remove_cb::<MixedPrecision>();
        self.add_cb(MixedPrecision::bf16());
        self
    }

    /// Back to plain fp32.
    pub fn to_fp32(&mut self) -> &mut Self {
        self.remove_cb::<MixedPrecision>();
        self
    }

    /// The reduced precision fits compute in, if any (set by `to_fp16` or `to_bf16`).
    pub fn precision(&self) -> Option<Precision> {
        self.cb::<MixedPrecision>().map(MixedPrecision::precision)
    }
}

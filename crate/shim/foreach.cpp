// ATen's multi-tensor kernels, which tch cannot reach: its generator skips every op that takes
// or returns a list of tensors. One call here is one kernel launch (or a handful) for all of a
// model's parameters, where a loop over tch tensors is several launches per parameter, and on
// a GPU each launch is a few microseconds of host time.
//
// Tensors come in as tch's handles (at::Tensor*). Every function returns nullptr, or a message
// that the caller frees with fv_free_error, so no C++ exception crosses into Rust.
#include <ATen/ATen.h>

#include <cstring>
#include <optional>
#include <vector>

namespace {
std::vector<at::Tensor> list(at::Tensor** ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

char* error(const char* what) { return strdup(what); }
}  // namespace

#define FV_GUARD(body)                     \
  try {                                    \
    body                                   \
    return nullptr;                        \
  } catch (const std::exception& e) {      \
    return error(e.what());                \
  } catch (...) {                          \
    return error("unknown C++ exception"); \
  }

extern "C" {

void fv_free_error(char* message) { free(message); }

// torch.optim.AdamW(fused=True)'s kernel: decoupled weight decay, then the Adam step, with
// each parameter's step count read from `steps` (float scalars the caller has incremented).
// With `found_inf` (a one-element float tensor, or null), the kernel leaves everything alone
// where it is non-zero: GradScaler's skipped step, decided on the device.
char* fv_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                     at::Tensor** exp_avg_sqs, at::Tensor** steps, int n, double lr,
                     double beta1, double beta2, double weight_decay, double eps,
                     at::Tensor* found_inf) {
  FV_GUARD({
    std::optional<at::Tensor> inf;
    if (found_inf) inf = *found_inf;
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                      {}, list(steps, n), lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
  })
}

// ts[i] += value, for every tensor (the optimizer's step counts).
char* fv_foreach_add_scalar(at::Tensor** ts, int n, double value) {
  FV_GUARD({ at::_foreach_add_(list(ts, n), value); })
}

// ts[i] -= other (a one-element tensor), for every tensor.
char* fv_foreach_sub_tensor(at::Tensor** ts, int n, at::Tensor* other) {
  FV_GUARD({
    auto l = list(ts, n);
    std::vector<at::Tensor> others(l.size(), *other);
    at::_foreach_sub_(l, others);
  })
}

// ts[i] = 0, for every tensor (zero_grad).
char* fv_foreach_zero(at::Tensor** ts, int n) { FV_GUARD({ at::_foreach_zero_(list(ts, n)); }) }

// ts[i] *= factor (a one-element tensor on the same device), for every tensor.
char* fv_foreach_mul_tensor(at::Tensor** ts, int n, at::Tensor* factor) {
  FV_GUARD({ at::_foreach_mul_(list(ts, n), *factor); })
}

// The global L2 norm of all the tensors together, as a new float tensor in *out.
char* fv_foreach_total_norm(at::Tensor** ts, int n, at::Tensor** out) {
  FV_GUARD({
    auto norms = at::_foreach_norm(list(ts, n), 2);
    for (auto& t : norms) t = t.to(at::kFloat);
    *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2));
  })
}

// GradScaler's unscale: ts[i] *= inv_scale, and found_inf becomes 1 if any element of any
// tensor is inf or NaN.
char* fv_amp_unscale(at::Tensor** ts, int n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  FV_GUARD({
    at::_amp_foreach_non_finite_check_and_unscale_(list(ts, n), *found_inf, *inv_scale);
  })
}
}

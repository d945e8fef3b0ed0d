// Autocast with a chosen reduced-precision type, which tch's API cannot ask for: it only
// switches CUDA autocast on or off, in fp16. Two C functions around ATen's own switches, so
// the forward pass can run in bf16 (on CUDA, or on the CPU) as torch.autocast(dtype=...) does.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}

extern "C" {

// Turns autocast on for the device with `bf16` ? bfloat16 : float16; returns the previous
// state (bit 0: enabled) for fv_autocast_end, or -1 when ATen threw (nothing was changed
// then). A C++ exception must not cross extern "C", as in foreach.cpp.
int fv_autocast_begin(int cuda, int bf16) {
  try {
    auto dev = device_type(cuda);
    int previous = at::autocast::is_autocast_enabled(dev) ? 1 : 0;
    at::ScalarType previous_dtype = at::autocast::get_autocast_dtype(dev);
    at::autocast::set_autocast_dtype(dev, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
    return previous | (static_cast<int>(previous_dtype) << 8);
  } catch (...) {
    return -1;
  }
}

// Puts back what fv_autocast_begin found, and drops autocast's weight cache on the way out.
// Returns 0, or -1 when ATen threw.
int fv_autocast_end(int cuda, int previous) {
  try {
    auto dev = device_type(cuda);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, (previous & 1) != 0);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(previous >> 8));
    return 0;
  } catch (...) {
    return -1;
  }
}

}

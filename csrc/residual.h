// Per-sample residual norms, shared by the CPU and CUDA paths.
#pragma once
#include <torch/extension.h>

namespace getkern {

// ||fx_b - x_b||_2 for each sample b of two (B, ...) tensors; returns (B,) float32.
at::Tensor residual_norms(const at::Tensor& fx, const at::Tensor& x);

}  // namespace getkern

// LayerNorm over the last dim on CPU for inference (getkern.ops.cpu_layernorm): ATen's kernel keeps
// per-row statistics for the backward and spends ~3.5x a copy's time at the GETs' widths (64 and 256);
// this one normalises each row in L1 and keeps nothing. The kernel is layernorm_kernel.h, compiled
// here once per vector width (per_isa.h).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#define GETKERN_KERNEL "layernorm_kernel.h"
#include "per_isa.h"

namespace {

void layer_norm_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                        const at::Tensor& out) {
  auto f32 = [](const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(); };
  TORCH_CHECK(f32(x) && x.dim() >= 1, "cpu_layer_norm: x must be a contiguous float32 CPU tensor");
  const int64_t d = x.size(-1);
  TORCH_CHECK(f32(weight) && f32(bias) && weight.numel() == d && bias.numel() == d,
              "cpu_layer_norm: weight and bias must be contiguous float32 of x's last size ", d);
  TORCH_CHECK(f32(out) && out.sizes() == x.sizes(), "cpu_layer_norm: out must be contiguous float32 like x");
  if (x.numel() == 0) return;
  const float* in = x.const_data_ptr<float>();
  const float* w = weight.const_data_ptr<float>();
  const float* b = bias.const_data_ptr<float>();
  float* y = out.data_ptr<float>();
  const float e = static_cast<float>(eps);
  const int64_t rows = x.numel() / d;
  // Grain: enough rows per task that scheduling is noise next to the work (~3 d loads a row).
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d));
  at::parallel_for(0, rows, grain, [&](int64_t first, int64_t last) {
    switch (getkern_cpu::selected_isa()) {
#ifdef GETKERN_X86
      case getkern_cpu::Isa::avx512: return avx512::layer_norm_rows(in, w, b, e, y, d, first, last);
      case getkern_cpu::Isa::avx2: return avx2::layer_norm_rows(in, w, b, e, y, d, first, last);
#endif
      default: return baseline::layer_norm_rows(in, w, b, e, y, d, first, last);
    }
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(getkern_cpu, m) {
  m.def("layer_norm_forward(Tensor x, Tensor weight, Tensor bias, float eps, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(getkern_cpu, CPU, m) { m.impl("layer_norm_forward", &layer_norm_forward); }

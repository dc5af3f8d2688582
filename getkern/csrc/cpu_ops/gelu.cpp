// Exact GELU on CPU for training (getkern.ops.cpu_gelu): act = GELU(x) and slope = GELU'(x) in one pass,
// so the backward is one multiply (dx = dact * slope) instead of ATen's gelu_backward, which evaluates
// erf and exp again. The kernel is gelu_kernel.h, compiled here once per vector width (per_isa.h).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>

#define GETKERN_KERNEL "gelu_kernel.h"
#include "per_isa.h"

namespace {

void gelu_forward(const at::Tensor& x, const at::Tensor& act, const std::optional<at::Tensor>& slope) {
  auto ok = [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.sizes() == x.sizes();
  };
  TORCH_CHECK(ok(x), "cpu_gelu: x must be a contiguous float32 CPU tensor");
  TORCH_CHECK(ok(act) && (!slope.has_value() || ok(*slope)), "cpu_gelu: act and slope must be contiguous float32 like x");
  const float* in = x.const_data_ptr<float>();
  float* out = act.data_ptr<float>();
  float* s = slope.has_value() ? slope->data_ptr<float>() : nullptr;
  at::parallel_for(0, x.numel(), 16384, [&](int64_t first, int64_t last) {
    switch (getkern_cpu::selected_isa()) {
#ifdef GETKERN_X86
      case getkern_cpu::Isa::avx512: return avx512::gelu_range(in, out, s, first, last);
      case getkern_cpu::Isa::avx2: return avx2::gelu_range(in, out, s, first, last);
#endif
      default: return baseline::gelu_range(in, out, s, first, last);
    }
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(getkern_cpu, m) { m.def("gelu_forward(Tensor x, Tensor(a!) act, Tensor(b!)? slope) -> ()"); }

TORCH_LIBRARY_IMPL(getkern_cpu, CPU, m) { m.impl("gelu_forward", &gelu_forward); }

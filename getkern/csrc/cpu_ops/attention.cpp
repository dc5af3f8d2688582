// Softmax attention for short sequences on CPU (getkern.ops.cpu_attention; built by
// getkern/_extension.py). One (image, head) at a time: K and V of one head fit in L1, so scores,
// softmax and the weighted sum never leave the cache. ATen's flash kernel tiles for long sequences and
// spends most of its time in bookkeeping at N = 16 (the digits GET: 21 % of its time for 3 % of its FLOPs).
//
// Layout is the qkv linear's own: qkv (B, N, 3, H, Dh) contiguous in, out (B, N, H, Dh) out, so no
// transpose or copy is needed on either side. The backward takes the log-sum-exp the forward saved.
// The kernel itself is attention_kernel.h, compiled here once per vector width.
#include "isa.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Shape {
  int64_t n, heads, dh;
  int64_t row() const { return 3 * heads * dh; }  // floats between two tokens' qkv rows
  int64_t out_row() const { return heads * dh; }
};

}  // namespace

#define GETKERN_KERNEL "attention_kernel.h"
#include "per_isa.h"

namespace {

using getkern_cpu::Isa;
using getkern_cpu::selected_isa;

void forward_range(const float* qkv, float* out, float* lse, const Shape& sh, float scale, int64_t first,
                   int64_t last) {
  switch (selected_isa()) {
#ifdef GETKERN_X86
    case Isa::avx512: return avx512::forward_range(qkv, out, lse, sh, scale, first, last);
    case Isa::avx2: return avx2::forward_range(qkv, out, lse, sh, scale, first, last);
#endif
    default: return baseline::forward_range(qkv, out, lse, sh, scale, first, last);
  }
}

void backward_range(const float* qkv, const float* out, const float* lse, const float* dout, float* dqkv,
                    const Shape& sh, float scale, int64_t first, int64_t last) {
  switch (selected_isa()) {
#ifdef GETKERN_X86
    case Isa::avx512: return avx512::backward_range(qkv, out, lse, dout, dqkv, sh, scale, first, last);
    case Isa::avx2: return avx2::backward_range(qkv, out, lse, dout, dqkv, sh, scale, first, last);
#endif
    default: return baseline::backward_range(qkv, out, lse, dout, dqkv, sh, scale, first, last);
  }
}

Shape check(const at::Tensor& qkv, int64_t heads, const at::Tensor& out) {
  TORCH_CHECK(qkv.device().is_cpu() && qkv.scalar_type() == at::kFloat && qkv.dim() == 3 && qkv.is_contiguous(),
              "cpu_attention: qkv must be a contiguous float32 CPU tensor (B, N, 3D), got ", qkv.sizes());
  TORCH_CHECK(heads > 0 && qkv.size(2) % (3 * heads) == 0, "cpu_attention: qkv's last size ", qkv.size(2),
              " is not 3 * heads * head_dim for heads=", heads);
  Shape sh{qkv.size(1), heads, qkv.size(2) / (3 * heads)};
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == at::kFloat && out.dim() == 3 &&
                  out.size(0) == qkv.size(0) && out.size(1) == sh.n && out.size(2) == heads * sh.dh,
              "cpu_attention: out must be contiguous float32 (B, N, D)");
  return sh;
}

// Grain: enough pairs per task that scheduling is noise next to the work (~n * n * dh FMAs a pair).
int64_t grain(const Shape& sh) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, sh.n * sh.n * sh.dh)); }

void attention_forward(const at::Tensor& qkv, int64_t heads, double scale, const at::Tensor& out,
                       const std::optional<at::Tensor>& lse) {
  const Shape sh = check(qkv, heads, out);
  const int64_t pairs = qkv.size(0) * heads;
  float* lse_ptr = nullptr;
  if (lse.has_value()) {
    TORCH_CHECK(lse->is_contiguous() && lse->scalar_type() == at::kFloat && lse->numel() == pairs * sh.n,
                "cpu_attention: lse must be contiguous float32 (B, H, N)");
    lse_ptr = lse->data_ptr<float>();
  }
  const float* q = qkv.const_data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, pairs, grain(sh), [&](int64_t first, int64_t last) {
    forward_range(q, o, lse_ptr, sh, static_cast<float>(scale), first, last);
  });
}

void attention_backward(const at::Tensor& qkv, const at::Tensor& out, const at::Tensor& lse, const at::Tensor& dout,
                        int64_t heads, double scale, const at::Tensor& dqkv) {
  const Shape sh = check(qkv, heads, out);
  check(qkv, heads, dout);
  TORCH_CHECK(dqkv.is_contiguous() && dqkv.sizes() == qkv.sizes() && dqkv.scalar_type() == at::kFloat,
              "cpu_attention: dqkv must be contiguous float32 of qkv's shape");
  TORCH_CHECK(lse.is_contiguous() && lse.scalar_type() == at::kFloat && lse.numel() == qkv.size(0) * heads * sh.n,
              "cpu_attention: lse must be contiguous float32 (B, H, N)");
  const int64_t pairs = qkv.size(0) * heads;
  at::parallel_for(0, pairs, grain(sh), [&](int64_t first, int64_t last) {
    backward_range(qkv.const_data_ptr<float>(), out.const_data_ptr<float>(), lse.const_data_ptr<float>(),
                   dout.const_data_ptr<float>(), dqkv.data_ptr<float>(), sh, static_cast<float>(scale), first, last);
  });
}

}  // namespace

TORCH_LIBRARY(getkern_cpu, m) {
  m.def("attention_forward(Tensor qkv, int heads, float scale, Tensor(a!) out, Tensor(b!)? lse) -> ()");
  // No tensor arguments: one implementation for every dispatch key.
  m.def("isa() -> str", &getkern_cpu::isa_name);
  m.def("widest_isa() -> str", &getkern_cpu::widest_isa_name);
  m.def("set_isa(str name) -> ()", &getkern_cpu::set_isa);
  m.def(
      "attention_backward(Tensor qkv, Tensor out, Tensor lse, Tensor dout, int heads, float scale, "
      "Tensor(a!) dqkv) -> ()");
}

TORCH_LIBRARY_IMPL(getkern_cpu, CPU, m) {
  m.impl("attention_forward", &attention_forward);
  m.impl("attention_backward", &attention_backward);
}

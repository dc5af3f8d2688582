#include "residual.h"

namespace getkern {

at::Tensor residual_norms(const at::Tensor& fx, const at::Tensor& x) {
  TORCH_CHECK(fx.sizes() == x.sizes(), "residual_norms: fx and x must have the same shape, got ",
              fx.sizes(), " and ", x.sizes());
  TORCH_CHECK(fx.dim() >= 1, "residual_norms: inputs need a batch dimension");
  auto diff = (fx - x).reshape({fx.size(0), -1}).to(at::kFloat);
  return diff.norm(2, {1});
}

}  // namespace getkern

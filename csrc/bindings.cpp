// Python bindings of the getkern C++ extension (module getkern._C).
#include <torch/extension.h>

#include "residual.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "getkern C++/CUDA extension";
  m.def("residual_norms", &getkern::residual_norms, "Per-sample L2 norm of fx - x, (B,) float32");
#ifdef GETKERN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}

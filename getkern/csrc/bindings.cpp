// Python bindings of the getkern C++ extension (module getkern_C, compiled by getkern/_extension.py).
// getkern/deq/cpp_backend.py is the public entry; this layer only converts arguments and results.
#include <torch/extension.h>
#include <torch/headeronly/version.h>

#include "solver.h"

namespace {

// (z_star, info) with info holding the tensors and counts of getkern::SolveInfo; cpp_backend.py adds
// the string entries.
py::tuple solve(const py::function& f, const at::Tensor& z0, const std::string& solver, int64_t max_iter,
                std::optional<double> tol, const std::string& stop, int64_t m, double lam, double tau,
                int64_t check_every) {
  getkern::SolveOptions o;
  o.solver = solver;
  o.max_iter = max_iter;
  o.tol = tol;
  o.stop = stop;
  o.m = m;
  o.lam = lam;
  o.tau = tau;
  o.check_every = check_every;
  // Python is entered only here, to evaluate f; a Python exception propagates as py::error_already_set.
  getkern::EvalFn eval = [&f](const at::Tensor& z) {
    py::object out = f(z);
    TORCH_CHECK(THPVariable_Check(out.ptr()), "f must return a torch.Tensor, got ",
                std::string(py::str(py::type::of(out))));
    return out.cast<at::Tensor>();
  };
  auto [z, info] = getkern::solve(eval, z0, o);
  py::dict d;
  d["nstep"] = info.nstep;
  d["abs_trace"] = info.abs_trace;
  d["rel_trace"] = info.rel_trace;
  d["abs_lowest"] = info.abs_lowest;
  d["rel_lowest"] = info.rel_lowest;
  d["best_res"] = info.best_res;
  d["nan"] = info.nan;
  d["fallback"] = info.fallback;
  d["restarts"] = info.restarts;
  d["nfev"] = info.nfev;
  return py::make_tuple(z, d);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "getkern C++/CUDA extension: the DEQ solver loop (see docs/cpp.md)";
  m.def("solve", &solve, "The fixed-point / Anderson solver loop of docs/solvers.md", py::arg("f"), py::arg("z0"),
        py::arg("solver"), py::arg("max_iter"), py::arg("tol"), py::arg("stop"), py::arg("m"), py::arg("lam"),
        py::arg("tau"), py::arg("check_every"));
  // Checked at load against the importing torch (getkern/_extension.py): never a silent mismatch.
  m.attr("torch_version") = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                            std::to_string(TORCH_VERSION_PATCH);
#ifdef GETKERN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}

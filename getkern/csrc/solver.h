// The DEQ solver loop in C++ (fixed point and Anderson), the same options and results as
// getkern.deq.solve. Only ATen: no Python here; f is any callable (a Python function via bindings.cpp,
// a C++ lambda in the ctest suite).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace getkern {

using EvalFn = std::function<at::Tensor(const at::Tensor&)>;

struct SolveOptions {
  std::string solver = "fixed_point";  // "fixed_point" | "anderson"
  int64_t max_iter = 6;
  std::optional<double> tol;           // none: exactly max_iter iterations, no host synchronisation
  std::string stop = "abs";            // residual the stopping test and the best iterate use: "abs" | "rel"
  int64_t m = 6;                       // Anderson history size
  double lam = 1e-4;                   // Anderson regularisation, relative to the newest residual's energy
  double tau = 1.0;                    // Anderson damping
  int64_t check_every = 1;             // early-exit test every this many iterations (one host sync each)
};

struct SolveInfo {
  at::Tensor nstep;       // (B,) int64
  at::Tensor abs_trace;   // (T, B) float32, T = iterations up to the batch's stop (or max_iter)
  at::Tensor rel_trace;   // (T, B) float32
  at::Tensor abs_lowest;  // (B,) float32
  at::Tensor rel_lowest;  // (B,) float32
  at::Tensor best_res;    // (B,) float32: the stop-metric residual of the returned iterate
  at::Tensor nan;         // (B,) bool: a non-finite residual was seen
  at::Tensor fallback;    // (B,) int32: Anderson solves that fell back to a plain step
  at::Tensor restarts;    // (B,) int32: Anderson steps the safeguard rejected (restart from the best iterate)
  int64_t nfev = 0;       // f-evaluations run
};

// Solves z = f(z) from z0 (B, ...). Returns the per-sample best iterate and the statistics.
std::pair<at::Tensor, SolveInfo> solve(const EvalFn& f, const at::Tensor& z0, const SolveOptions& options);

}  // namespace getkern

// Batched per-sample steps of the solver loop: CPU loops over samples (sample_ops.cpp), CUDA kernels
// with one thread per sample (sample_ops_cuda.cu). Both run the functions of solver_math.h. No host
// synchronisation on CUDA: every input and output stays on the device.
#pragma once

#include <ATen/ATen.h>

namespace getkern {

// Bookkeeping of iteration k (see math::track_sample / track_batch). In: res (B,) float32 (the stopping
// metric: abs_res or rel_res), abs_res, rel_res (B,) float32, tol (< 0: none). In/out: best_res (B,) float32, nstep (B,) int64,
// passed (B,) bool, nan (B,) bool, stopped (1,) bool, k_stop (1,) int64. Out: improved (B,) bool.
struct TrackState {
  at::Tensor best_res, nstep, passed, nan, stopped, k_stop, improved;
};
void track_samples(int64_t k, const at::Tensor& res, const at::Tensor& abs_res, const at::Tensor& rel_res, double tol,
                   TrackState& st);

// Anderson mixing weights, newest ring entry at `slot`, each sample's history its depth[b] newest
// entries (depth (B,) int64): gram (B, m, m) float32 -> alpha (B, m) float32 (docs/solvers.md,
// bordered_solve; the system in double); fallback (B,) int32 is incremented where a sample falls back
// to the plain step. CPU: the systems are built here and solved by at::linalg_solve_ex, as the Python
// solver does; CUDA: one fused kernel (math::anderson_weights), no cuSOLVER call, no host synchronisation.
void anderson_weights(const at::Tensor& gram, int64_t slot, const at::Tensor& depth, double lam, at::Tensor& alpha,
                      at::Tensor& fallback);

#ifdef GETKERN_WITH_CUDA
void track_samples_cuda(int64_t k, const at::Tensor& res, const at::Tensor& abs_res, const at::Tensor& rel_res,
                        double tol, TrackState& st);
void anderson_weights_cuda(const at::Tensor& gram, int64_t slot, const at::Tensor& depth, double lam,
                           at::Tensor& alpha, at::Tensor& fallback);
#endif

}  // namespace getkern

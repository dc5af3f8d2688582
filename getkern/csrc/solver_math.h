// Per-sample logic of the solver loop (docs/solvers.md), compiled into both the CPU path (plain C++,
// sample_ops.cpp) and the CUDA kernels (nvcc, sample_ops_cuda.cu), so the CPU tests exercise the code the
// GPU runs. Whole-state arithmetic (residual norms, Gram rows, mixing, the batched LU solve) stays in
// ATen so that it matches the Python solvers operation for operation.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define GETKERN_HD __host__ __device__ __forceinline__
#else
#define GETKERN_HD inline
#endif

namespace getkern {
namespace math {

constexpr float kAlphaMax = 1e4f;  // sum |alpha| above this: numerically singular, take a plain step
constexpr float kSafeguard = 8.f;  // getkern.deq.anderson.SAFEGUARD: residual above this x best rejects the step

// isfinite/isnan: CUDA's device overloads in device code, <cmath>'s on the host.
GETKERN_HD bool is_finite(float x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

GETKERN_HD bool is_nan(double x) {
#if defined(__CUDA_ARCH__)
  return isnan(x);
#else
  return std::isnan(x);
#endif
}

// Per-sample solver state, all updated in place by track_sample.
struct SampleState {
  float* best_res;  // residual of the best iterate so far (+inf: none yet)
  int64_t* nstep;   // k + 1 at the first iteration passing the stopping test; max_iter until then
  bool* passed;     // has passed the stopping test
  bool* nan;        // has produced a non-finite residual
};

// Iteration k of one sample with residuals abs_res, rel_res; `res` is the one `stop` selects.
// `stopped` says the batch had stopped before k: the iteration is then frozen (no best-iterate
// update, nstep kept). tol < 0: no stopping test. Returns whether the iterate becomes the sample's
// best (the caller copies it); *settled says the sample meets the batch stopping rule at k
// (res < tol, or a non-finite residual so far).
GETKERN_HD bool track_sample(int64_t k, float res, float abs_res, float rel_res, float tol, bool stopped,
                             SampleState s, bool* settled) {
  const float res_best = stopped ? INFINITY : res;
  const bool improved = res_best < *s.best_res;  // strict; a NaN never improves
  if (improved) *s.best_res = res_best;
  if (!(is_finite(abs_res) && is_finite(rel_res))) *s.nan = true;
  const bool below = res < tol;
  if (tol >= 0.f && below && !*s.passed && !stopped) {
    *s.passed = true;
    *s.nstep = k + 1;
  }
  *settled = below || *s.nan;
  return improved;
}

// Batch stopping rule after iteration k (tol set): the batch stops at the first k at which every
// sample is settled; k_stop remembers that iteration.
GETKERN_HD void track_batch(int64_t k, bool all_settled, bool* stopped, int64_t* k_stop) {
  if (all_settled && !*stopped) {
    *stopped = true;
    *k_stop = k;
  }
}

// Whether ring slot i is in a sample's history: its `depth` newest entries, the newest at `slot`.
GETKERN_HD bool in_history(int i, int m, int slot, int depth) { return (slot - i + m) % m < depth; }

// The bordered Anderson system of one sample into H ((m+1) x (m+1), row-major, double: the system is
// tiny and its entries span the squared range of the residuals), from its fp32 Gram matrix gram
// (m x m, row-major); h_i = in_history(i, m, slot, depth):
//   s = max(gram[slot, slot], FLT_MIN) (NaN propagates), H[0, 1+i] = H[1+i, 0] = h_i,
//   H[1+i, 1+j] = gram[i, j] / s (+ lam on the diagonal) for h_i, h_j; H[1+i, 1+i] = 1 where !h_i.
// Each entry is computed as (h_i h_j ? gram/s : 0) + (i == j ? lam or 1 : 0), the Python operations.
GETKERN_HD void bordered_system(const float* gram, int m, int slot, int depth, double lam, double* H) {
  const double d = gram[slot * m + slot];
  const double s = is_nan(d) ? NAN : (d > FLT_MIN ? d : FLT_MIN);
  const int w = m + 1;
  H[0] = 0.0;
  for (int i = 0; i < m; ++i) {
    const bool hi = in_history(i, m, slot, depth);
    H[1 + i] = hi ? 1.0 : 0.0;
    H[(1 + i) * w] = hi ? 1.0 : 0.0;
    for (int j = 0; j < m; ++j) {
      const bool pair = hi && in_history(j, m, slot, depth);
      H[(1 + i) * w + 1 + j] = (pair ? gram[i * m + j] / s : 0.0) + (i == j ? (hi ? lam : 1.0) : 0.0);
    }
  }
}

// Mixing weights of one sample from the solution sol (m + 1) of the bordered system (LAPACK status
// `info`): alpha = float(sol[1:]) on the history's slots, 0 elsewhere. Guard: a failed factorisation, a
// non-finite weight or sum |alpha| > kAlphaMax replaces alpha by a plain step (one-hot on `slot`, the
// newest entry). Returns whether the solve was accepted.
GETKERN_HD bool guard_alpha(const double* sol, int info, int m, int slot, int depth, float* alpha) {
  bool ok = info == 0;
  float l1 = 0.f;
  for (int i = 0; i < m; ++i) {
    alpha[i] = in_history(i, m, slot, depth) ? static_cast<float>(sol[1 + i]) : 0.f;
    ok = ok && is_finite(alpha[i]);
    l1 += alpha[i] < 0.f ? -alpha[i] : alpha[i];
  }
  ok = ok && l1 <= kAlphaMax;
  if (!ok)
    for (int i = 0; i < m; ++i) alpha[i] = i == slot ? 1.f : 0.f;
  return ok;
}

// Solves A x = e_0 for one small w x w system (row-major, overwritten) by Gaussian elimination with
// partial pivoting in double, as LAPACK's getrf/getrs do (first largest pivot; the result agrees with
// LAPACK up to rounding). Returns LAPACK's info: 0, or i + 1 when pivot i is exactly zero.
GETKERN_HD int solve_e0(double* A, int w, double* x) {
  for (int i = 0; i < w; ++i) x[i] = i == 0 ? 1.0 : 0.0;
  for (int c = 0; c < w; ++c) {
    int p = c;
    double best = A[c * w + c] < 0.0 ? -A[c * w + c] : A[c * w + c];
    for (int r = c + 1; r < w; ++r) {
      const double v = A[r * w + c] < 0.0 ? -A[r * w + c] : A[r * w + c];
      if (v > best) {
        best = v;
        p = r;
      }
    }
    if (A[p * w + c] == 0.0) return c + 1;  // exactly singular (a NaN pivot is left to the guard)
    if (p != c) {
      for (int j = 0; j < w; ++j) {
        const double t = A[c * w + j];
        A[c * w + j] = A[p * w + j];
        A[p * w + j] = t;
      }
      const double t = x[c];
      x[c] = x[p];
      x[p] = t;
    }
    for (int r = c + 1; r < w; ++r) {
      const double l = A[r * w + c] / A[c * w + c];
      for (int j = c + 1; j < w; ++j) A[r * w + j] -= l * A[c * w + j];
      x[r] -= l * x[c];
    }
  }
  for (int r = w - 1; r >= 0; --r) {
    double acc = x[r];
    for (int j = r + 1; j < w; ++j) acc -= A[r * w + j] * x[j];
    x[r] = acc / A[r * w + r];
  }
  return 0;
}

// Largest history the device path supports: its bordered system lives in per-thread local memory.
constexpr int kMaxDeviceHistory = 16;

// The whole weight computation of one sample, as the CUDA kernel runs it: system, solve, guard.
// H: (m+1)^2 and sol: m+1 doubles of work space. Returns whether the solve was accepted.
GETKERN_HD bool anderson_weights(const float* gram, int m, int slot, int depth, double lam, double* H, double* sol,
                                 float* alpha) {
  bordered_system(gram, m, slot, depth, lam, H);
  const int info = solve_e0(H, m + 1, sol);
  return guard_alpha(sol, info, m, slot, depth, alpha);
}

}  // namespace math
}  // namespace getkern

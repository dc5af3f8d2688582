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

// isfinite/isnan: CUDA's device overloads in device code, <cmath>'s on the host.
GETKERN_HD bool is_finite(float x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

GETKERN_HD bool is_nan(float x) {
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

// The bordered Anderson system of one sample into H ((m+1) x (m+1), row-major), from its Gram matrix
// gram (m x m, row-major) of which the first `valid` ring slots hold history:
//   s = max(max_{i<valid} gram[i,i], FLT_MIN) (NaN propagates), H[0, 1+i] = H[1+i, 0] = [i < valid],
//   H[1+i, 1+j] = gram[i, j] / s (+ lam on the diagonal) for valid i, j; H[1+i, 1+i] = 1 for unused i.
GETKERN_HD void bordered_system(const float* gram, int m, int valid, float lam, float* H) {
  float s = 0.f;  // Gram diagonals are >= 0, so 0 is a neutral start
  bool nan_diag = false;
  for (int i = 0; i < valid; ++i) {
    const float d = gram[i * m + i];
    nan_diag = nan_diag || is_nan(d);
    s = d > s ? d : s;
  }
  s = nan_diag ? NAN : (s > FLT_MIN ? s : FLT_MIN);
  const int w = m + 1;
  for (int i = 0; i < w * w; ++i) H[i] = 0.f;
  for (int i = 0; i < m; ++i) {
    const bool vi = i < valid;
    H[1 + i] = vi ? 1.f : 0.f;
    H[(1 + i) * w] = vi ? 1.f : 0.f;
    if (!vi) {
      H[(1 + i) * w + 1 + i] = 1.f;
      continue;
    }
    for (int j = 0; j < valid; ++j) H[(1 + i) * w + 1 + j] = gram[i * m + j] / s;
    H[(1 + i) * w + 1 + i] += lam;
  }
}

// Mixing weights of one sample from the solution sol (m + 1) of the bordered system (LAPACK status
// `info`): alpha = sol[1:] on the valid slots, 0 elsewhere. Guard: a failed factorisation, a non-finite
// weight or sum |alpha| > kAlphaMax replaces alpha by a plain step (one-hot on `slot`, the newest
// entry). Returns whether the solve was accepted.
GETKERN_HD bool guard_alpha(const float* sol, int info, int m, int valid, int slot, float* alpha) {
  bool ok = info == 0;
  float l1 = 0.f;
  for (int i = 0; i < m; ++i) {
    alpha[i] = i < valid ? sol[1 + i] : 0.f;
    ok = ok && is_finite(alpha[i]);
    l1 += alpha[i] < 0.f ? -alpha[i] : alpha[i];
  }
  ok = ok && l1 <= kAlphaMax;
  if (!ok)
    for (int i = 0; i < m; ++i) alpha[i] = i == slot ? 1.f : 0.f;
  return ok;
}

// Solves A x = e_0 for one small w x w system (row-major, overwritten) by Gaussian elimination with
// partial pivoting in fp32, as LAPACK's getrf/getrs do (first largest pivot; the result agrees with
// LAPACK up to rounding). Returns LAPACK's info: 0, or i + 1 when pivot i is exactly zero.
GETKERN_HD int solve_e0(float* A, int w, float* x) {
  for (int i = 0; i < w; ++i) x[i] = i == 0 ? 1.f : 0.f;
  for (int c = 0; c < w; ++c) {
    int p = c;
    float best = A[c * w + c] < 0.f ? -A[c * w + c] : A[c * w + c];
    for (int r = c + 1; r < w; ++r) {
      const float v = A[r * w + c] < 0.f ? -A[r * w + c] : A[r * w + c];
      if (v > best) {
        best = v;
        p = r;
      }
    }
    if (A[p * w + c] == 0.f) return c + 1;  // exactly singular (a NaN pivot is left to the guard)
    if (p != c) {
      for (int j = 0; j < w; ++j) {
        const float t = A[c * w + j];
        A[c * w + j] = A[p * w + j];
        A[p * w + j] = t;
      }
      const float t = x[c];
      x[c] = x[p];
      x[p] = t;
    }
    for (int r = c + 1; r < w; ++r) {
      const float l = A[r * w + c] / A[c * w + c];
      for (int j = c + 1; j < w; ++j) A[r * w + j] -= l * A[c * w + j];
      x[r] -= l * x[c];
    }
  }
  for (int r = w - 1; r >= 0; --r) {
    float acc = x[r];
    for (int j = r + 1; j < w; ++j) acc -= A[r * w + j] * x[j];
    x[r] = acc / A[r * w + r];
  }
  return 0;
}

// Largest history the device path supports: its bordered system lives in per-thread local memory.
constexpr int kMaxDeviceHistory = 16;

// The whole weight computation of one sample, as the CUDA kernel runs it: system, solve, guard.
// H: (m+1)^2 and sol: m+1 floats of work space. Returns whether the solve was accepted.
GETKERN_HD bool anderson_weights(const float* gram, int m, int valid, float lam, int slot, float* H, float* sol,
                                 float* alpha) {
  bordered_system(gram, m, valid, lam, H);
  const int info = solve_e0(H, m + 1, sol);
  return guard_alpha(sol, info, m, valid, slot, alpha);
}

}  // namespace math
}  // namespace getkern

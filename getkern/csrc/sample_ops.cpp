#include "sample_ops.h"

#include "solver_math.h"

namespace getkern {

namespace {

// True when t lives on a CUDA device (and the CUDA part was built); CPU otherwise; error for the rest.
bool on_cuda(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu() || t.device().is_cuda(), op, ": unsupported device ", t.device());
#ifndef GETKERN_WITH_CUDA
  TORCH_CHECK(t.device().is_cpu(), op, ": getkern._C was built without its CUDA part; see docs/cpp.md");
#endif
  return t.device().is_cuda();
}

}  // namespace

void track_samples(int64_t k, const at::Tensor& res, const at::Tensor& abs_res, const at::Tensor& rel_res, double tol,
                   TrackState& st) {
  TORCH_CHECK(res.is_contiguous() && abs_res.is_contiguous() && rel_res.is_contiguous(),
              "track_samples: residuals must be contiguous");
#ifdef GETKERN_WITH_CUDA
  if (on_cuda(res, "track_samples")) return track_samples_cuda(k, res, abs_res, rel_res, tol, st);
#else
  on_cuda(res, "track_samples");
#endif
  const int64_t B = res.size(0);
  const float* r = res.data_ptr<float>();
  const float* ab = abs_res.data_ptr<float>();
  const float* re = rel_res.data_ptr<float>();
  bool* stopped = st.stopped.data_ptr<bool>();
  bool* improved = st.improved.data_ptr<bool>();
  const bool was_stopped = *stopped;
  bool all_settled = true;
  for (int64_t b = 0; b < B; ++b) {
    math::SampleState s{st.best_res.data_ptr<float>() + b, st.nstep.data_ptr<int64_t>() + b,
                        st.passed.data_ptr<bool>() + b, st.nan.data_ptr<bool>() + b};
    bool settled = false;
    improved[b] = math::track_sample(k, r[b], ab[b], re[b], static_cast<float>(tol), was_stopped, s, &settled);
    all_settled = all_settled && settled;
  }
  if (tol >= 0) math::track_batch(k, all_settled, stopped, st.k_stop.data_ptr<int64_t>());
}

void anderson_weights(const at::Tensor& gram, int64_t slot, const at::Tensor& depth, double lam, at::Tensor& alpha,
                      at::Tensor& fallback) {
  TORCH_CHECK(gram.is_contiguous() && depth.is_contiguous() && alpha.is_contiguous() && fallback.is_contiguous(),
              "anderson_weights: gram, depth, alpha and fallback must be contiguous");
#ifdef GETKERN_WITH_CUDA
  if (on_cuda(gram, "anderson_weights")) return anderson_weights_cuda(gram, slot, depth, lam, alpha, fallback);
#else
  on_cuda(gram, "anderson_weights");
#endif
  const int64_t B = gram.size(0), m = gram.size(1);
  const auto dopts = gram.options().dtype(at::kDouble);
  at::Tensor H = at::empty({B, m + 1, m + 1}, dopts);
  const float* g = gram.data_ptr<float>();
  const int64_t* d = depth.data_ptr<int64_t>();
  double* h = H.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b)
    math::bordered_system(g + b * m * m, static_cast<int>(m), static_cast<int>(slot), static_cast<int>(d[b]), lam,
                          h + b * (m + 1) * (m + 1));
  at::Tensor rhs = at::zeros({B, m + 1}, dopts);
  rhs.select(1, 0).fill_(1.0);
  auto [sol_strided, info_strided] = at::linalg_solve_ex(H, rhs);
  const at::Tensor sol = sol_strided.contiguous(), info = info_strided.contiguous();  // LAPACK's layout is batch-minor
  const double* x = sol.data_ptr<double>();
  const int32_t* status = info.data_ptr<int32_t>();
  float* a = alpha.data_ptr<float>();
  int32_t* fb = fallback.data_ptr<int32_t>();
  for (int64_t b = 0; b < B; ++b)
    fb[b] += !math::guard_alpha(x + b * (m + 1), status[b], static_cast<int>(m), static_cast<int>(slot),
                                static_cast<int>(d[b]), a + b * m);
}

}  // namespace getkern

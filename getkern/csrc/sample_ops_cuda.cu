// CUDA versions of the per-sample solver steps: the same solver_math.h code the CPU path runs, one
// thread per sample, on the current stream, no host synchronisation (so the loop is capturable).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "sample_ops.h"
#include "solver_math.h"

namespace getkern {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// One block: every thread reads the batch flag before thread 0 may update it, and the block-wide AND
// of the samples' `settled` is the batch stopping test.
__global__ void track_samples_kernel(int64_t B, int64_t k, const float* res, const float* abs_res,
                                     const float* rel_res, float tol,
                                     float* best_res, int64_t* nstep, bool* passed, bool* nan, bool* stopped,
                                     int64_t* k_stop, bool* improved) {
  const bool was_stopped = *stopped;
  int all_settled = 1;
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
    math::SampleState s{best_res + b, nstep + b, passed + b, nan + b};
    bool settled = false;
    improved[b] = math::track_sample(k, res[b], abs_res[b], rel_res[b], tol, was_stopped, s, &settled);
    all_settled &= settled;
  }
  all_settled = __syncthreads_and(all_settled);
  if (threadIdx.x == 0 && tol >= 0.f) math::track_batch(k, all_settled, stopped, k_stop);
}

// Per thread (sample): its bordered system in local memory, solved in double and guarded (solver_math.h).
__global__ void anderson_weights_kernel(int64_t B, int m, int slot, const int64_t* depth, double lam,
                                        const float* gram, float* alpha, int32_t* fallback) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  constexpr int W = math::kMaxDeviceHistory + 1;
  double H[W * W], sol[W];
  fallback[b] += !math::anderson_weights(gram + b * m * m, m, slot, static_cast<int>(depth[b]), lam, H, sol,
                                         alpha + b * m);
}

}  // namespace

void track_samples_cuda(int64_t k, const at::Tensor& res, const at::Tensor& abs_res, const at::Tensor& rel_res,
                        double tol, TrackState& st) {
  const c10::cuda::CUDAGuard guard(res.device());
  track_samples_kernel<<<1, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      res.size(0), k, res.data_ptr<float>(), abs_res.data_ptr<float>(), rel_res.data_ptr<float>(), static_cast<float>(tol),
      st.best_res.data_ptr<float>(), st.nstep.data_ptr<int64_t>(), st.passed.data_ptr<bool>(),
      st.nan.data_ptr<bool>(), st.stopped.data_ptr<bool>(), st.k_stop.data_ptr<int64_t>(),
      st.improved.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void anderson_weights_cuda(const at::Tensor& gram, int64_t slot, const at::Tensor& depth, double lam,
                           at::Tensor& alpha, at::Tensor& fallback) {
  const int64_t B = gram.size(0), m = gram.size(1);
  TORCH_CHECK(m <= math::kMaxDeviceHistory, "anderson on CUDA supports m <= ", math::kMaxDeviceHistory, ", got ", m);
  const c10::cuda::CUDAGuard guard(gram.device());
  anderson_weights_kernel<<<blocks_for(B), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      B, static_cast<int>(m), static_cast<int>(slot), depth.data_ptr<int64_t>(), lam, gram.data_ptr<float>(),
      alpha.data_ptr<float>(), fallback.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace getkern

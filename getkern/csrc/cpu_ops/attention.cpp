// Softmax attention for short sequences on CPU (getkern.ops.cpu_attention; built by
// getkern/_cpu_ops.py). One (image, head) at a time: K and V of one head fit in L1, so scores,
// softmax and the weighted sum never leave the cache. ATen's flash kernel tiles for long sequences and
// spends most of its time in bookkeeping at N = 16 (the digits GET: 21 % of its time for 3 % of its FLOPs).
//
// Layout is the qkv linear's own: qkv (B, N, 3, H, Dh) contiguous in, out (B, N, H, Dh) out, so no
// transpose or copy is needed on either side. The backward takes the log-sum-exp the forward saved.
// Numerics: float32 arithmetic throughout; exp is a Cephes-style polynomial accurate to about 2 ulp
// (written out so that the compiler can vectorize it), the rest are ordinary float32 sums.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
// One binary for every x86-64 CPU: the loader picks the widest vector unit this CPU has.
#define GETKERN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GETKERN_VECTOR_CLONES
#endif
// Helpers are inlined into each clone: a 64-byte vector passed by value between code compiled for
// different vector units would not agree on where it is passed.
#define GETKERN_INLINE __attribute__((always_inline))

namespace {

// 16 floats: one AVX-512 register, two AVX2 ones, four SSE ones; GCC's vector extension lowers it to
// whatever the clone it is compiled in has. Explicit vectors because the compiler fully unrolls the
// 16-long loops of plain code into scalar instructions instead of vectorizing them.
constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

GETKERN_INLINE inline vf splat(float x) { return vf{} + x; }

// exp(x) lane-wise for x <= 0 (scores minus their row maximum or log-sum-exp), about 2 ulp. Below -30 it
// is 0: such a term is under 1e-13 of the row's largest, which is 1, so float32 sums never see it, and
// the tiny products it would make (denormals, 100x slower to multiply) never arise.
GETKERN_INLINE inline vf exp_nonpositive(vf x) {
  const vf cut = x < -30.0f ? splat(0.0f) : splat(1.0f);
  x = x < -30.0f ? splat(-30.0f) : x;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const vf n = (x * 1.44269504088896341f + kRound) - kRound;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * r * r + r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return y * two_n * cut;
}

struct Shape {
  int64_t n, heads, dh;
  int64_t row() const { return 3 * heads * dh; }  // floats between two tokens' qkv rows
  int64_t out_row() const { return heads * dh; }
  int64_t dv() const { return (dh + kLanes - 1) / kLanes; }  // vectors a head-dim row takes
};

// Scratch of one task, reused for every (image, head) pair it takes, in vectors.
//   forward:  qt dh | K n*dv (the forward keeps its output rows here) | V n*dv | P^T n
//   backward: the same plus gt dh | Q n*dv | dO n*dv | dK n*dv | dV n*dv | dS^T n
struct Scratch {
  std::vector<float> buf;  // floats, not vf: a vector type as a template argument loses its alignment
  vf *qt, *k, *v, *pt, *gt, *q, *g, *dk, *dvv, *dst;
  Scratch(const Shape& sh, bool backward) {
    const int64_t n = sh.n, rows = sh.n * sh.dv(), qt_rows = sh.dh;
    const int64_t vectors = backward ? 2 * qt_rows + 6 * rows + 2 * n : qt_rows + 2 * rows + n;
    buf.assign((vectors + 1) * kLanes, 0.0f);
    const auto address = reinterpret_cast<uintptr_t>(buf.data());
    const uintptr_t align = sizeof(vf);
    qt = reinterpret_cast<vf*>((address + align - 1) / align * align);
    k = qt + qt_rows, v = k + rows, pt = v + rows;
    gt = pt + n, q = gt + qt_rows, g = q + rows, dk = g + rows, dvv = dk + rows, dst = dvv + rows;
  }
};

GETKERN_INLINE inline float lane(const vf* vectors, int64_t index, int64_t i) { return reinterpret_cast<const float*>(vectors + index)[i]; }
GETKERN_INLINE inline float* lanes(vf* vectors, int64_t index) { return reinterpret_cast<float*>(vectors + index); }

// One head's K and V into rows of dv vectors (zero past dh).
GETKERN_INLINE inline void load_rows(const float* src, int64_t stride, int64_t n, int64_t dh, int64_t dv, vf* dst) {
  for (int64_t j = 0; j < n; ++j) {
    float* row = reinterpret_cast<float*>(dst + j * dv);
    for (int64_t d = 0; d < dh; ++d) row[d] = src[j * stride + d];
    for (int64_t d = dh; d < dv * kLanes; ++d) row[d] = 0.0f;
  }
}

// Scores of a block of up to 16 queries (lanes) against every key: st[j] = sum_d k_jd * qt[d]. Four
// keys at a time: four independent FMA chains instead of one that waits on itself.
GETKERN_INLINE inline void scores(const vf* qt, const float* keys, int64_t stride, int64_t n, int64_t dh, vf* st) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float *k0 = keys + j * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
    vf s0{}, s1{}, s2{}, s3{};
    for (int64_t d = 0; d < dh; ++d) {
      s0 += k0[d] * qt[d];
      s1 += k1[d] * qt[d];
      s2 += k2[d] * qt[d];
      s3 += k3[d] * qt[d];
    }
    st[j] = s0, st[j + 1] = s1, st[j + 2] = s2, st[j + 3] = s3;
  }
  for (; j < n; ++j) {
    const float* kj = keys + j * stride;
    vf s{};
    for (int64_t d = 0; d < dh; ++d) s += kj[d] * qt[d];
    st[j] = s;
  }
}

// out[r][c] += sum_j weight(j, r) * src[j][c] for r < nr, c < dv; four rows at a time in registers.
template <int DV, typename Weight>
GETKERN_INLINE inline void add_weighted_rows(int64_t nr, int64_t n, int64_t dv_runtime, const vf* src, Weight weight,
                                             vf* out, int64_t out_stride) {
  const int64_t dv = DV ? DV : dv_runtime;
  int64_t r = 0;
  if constexpr (DV != 0) {
    for (; r + 4 <= nr; r += 4) {
      vf a0[DV] = {}, a1[DV] = {}, a2[DV] = {}, a3[DV] = {};
      for (int64_t j = 0; j < n; ++j) {
        const float w0 = weight(j, r), w1 = weight(j, r + 1), w2 = weight(j, r + 2), w3 = weight(j, r + 3);
        for (int64_t c = 0; c < DV; ++c) {
          const vf x = src[j * DV + c];
          a0[c] += w0 * x, a1[c] += w1 * x, a2[c] += w2 * x, a3[c] += w3 * x;
        }
      }
      vf* o = out + r * out_stride;
      for (int64_t c = 0; c < DV; ++c) {
        o[c] += a0[c], o[out_stride + c] += a1[c], o[2 * out_stride + c] += a2[c], o[3 * out_stride + c] += a3[c];
      }
    }
  }
  for (; r < nr; ++r) {
    vf* acc = out + r * out_stride;
    for (int64_t j = 0; j < n; ++j) {
      const float w = weight(j, r);
      for (int64_t c = 0; c < dv; ++c) acc[c] += w * src[j * dv + c];
    }
  }
}

// Pairs [first, last) of (image, head). Queries are taken 16 at a time as vector lanes, so the row
// maximum, exp and row sum are lane-wise; each lane adds its terms in key order.
template <int DV>
GETKERN_VECTOR_CLONES void forward_pairs(const float* __restrict__ qkv, float* __restrict__ out, float* __restrict__ lse, Shape sh,
                   float scale, int64_t first, int64_t last, Scratch& w) {
  const int64_t n = sh.n, dh = sh.dh, dv = DV ? DV : sh.dv(), row = sh.row(), orow = sh.out_row();
  for (int64_t pair = first; pair < last; ++pair) {
    const int64_t b = pair / sh.heads, h = pair % sh.heads;
    const float* base = qkv + b * n * row + h * dh;
    const float* keys = base + sh.heads * dh;
    load_rows(base + 2 * sh.heads * dh, row, n, dh, dv, w.v);
    for (int64_t i0 = 0; i0 < n; i0 += kLanes) {
      const int64_t m_lanes = std::min<int64_t>(kLanes, n - i0);
      for (int64_t d = 0; d < dh; ++d) {
        float* t = lanes(w.qt, d);
        for (int64_t i = 0; i < kLanes; ++i) t[i] = i < m_lanes ? base[(i0 + i) * row + d] * scale : 0.0f;
      }
      scores(w.qt, keys, row, n, dh, w.pt);
      vf m = w.pt[0];
      for (int64_t j = 1; j < n; ++j) m = w.pt[j] > m ? w.pt[j] : m;
      vf l{};
      for (int64_t j = 0; j < n; ++j) {
        w.pt[j] = exp_nonpositive(w.pt[j] - m);
        l += w.pt[j];
      }
      const vf inv = 1.0f / l;
      vf* acc = w.k;  // free in the forward: m_lanes <= n rows of dv vectors for the outputs
      for (int64_t x = 0; x < m_lanes * dv; ++x) acc[x] = vf{};
      add_weighted_rows<DV>(m_lanes, n, dv, w.v, [&](int64_t j, int64_t i) { return lane(w.pt, j, i); }, acc, dv);
      for (int64_t i = 0; i < m_lanes; ++i) {
        float* o = out + (b * n + i0 + i) * orow + h * dh;
        const float* a = reinterpret_cast<const float*>(acc + i * dv);
        for (int64_t d = 0; d < dh; ++d) o[d] = a[d] * inv[i];
        if (lse != nullptr) lse[pair * n + i0 + i] = m[i] + std::log(l[i]);
      }
    }
  }
}

// dq, dk, dv of pairs [first, last), from the forward's output and log-sum-exp.
template <int DV>
GETKERN_VECTOR_CLONES void backward_pairs(const float* __restrict__ qkv, const float* __restrict__ out, const float* __restrict__ lse,
                    const float* __restrict__ dout, float* __restrict__ dqkv, Shape sh, float scale, int64_t first,
                    int64_t last, Scratch& w) {
  const int64_t n = sh.n, dh = sh.dh, dv = DV ? DV : sh.dv(), row = sh.row(), orow = sh.out_row();
  for (int64_t pair = first; pair < last; ++pair) {
    const int64_t b = pair / sh.heads, h = pair % sh.heads;
    const float* base = qkv + b * n * row + h * dh;
    const float* keys = base + sh.heads * dh;
    const float* values = base + 2 * sh.heads * dh;
    float* dbase = dqkv + b * n * row + h * dh;
    load_rows(keys, row, n, dh, dv, w.k);
    load_rows(values, row, n, dh, dv, w.v);
    for (int64_t x = 0; x < n * dv; ++x) w.dk[x] = vf{}, w.dvv[x] = vf{};
    for (int64_t i0 = 0; i0 < n; i0 += kLanes) {
      const int64_t m_lanes = std::min<int64_t>(kLanes, n - i0);
      load_rows(base + i0 * row, row, m_lanes, dh, dv, w.q);
      load_rows(dout + (b * n + i0) * orow + h * dh, orow, m_lanes, dh, dv, w.g);
      vf li{}, delta{};
      for (int64_t i = 0; i < m_lanes; ++i) {
        li[i] = lse[pair * n + i0 + i];
        const float* o = out + (b * n + i0 + i) * orow + h * dh;
        const float* g = reinterpret_cast<const float*>(w.g + i * dv);
        float dl = 0.0f;  // sum_d dO_id O_id = sum_j P_ij dP_ij
        for (int64_t d = 0; d < dh; ++d) dl += g[d] * o[d];
        delta[i] = dl;
      }
      for (int64_t d = 0; d < dh; ++d) {
        float* t = lanes(w.qt, d);
        float* u = lanes(w.gt, d);
        for (int64_t i = 0; i < kLanes; ++i) {
          t[i] = i < m_lanes ? lane(w.q, i * dv + d / kLanes, d % kLanes) * scale : 0.0f;
          u[i] = i < m_lanes ? lane(w.g, i * dv + d / kLanes, d % kLanes) : 0.0f;
        }
      }
      scores(w.qt, keys, row, n, dh, w.pt);
      scores(w.gt, values, row, n, dh, w.dst);  // dP^T: dO_i . v_j
      for (int64_t j = 0; j < n; ++j) {
        const vf p = exp_nonpositive(w.pt[j] - li);
        w.pt[j] = p;
        w.dst[j] = p * (w.dst[j] - delta) * scale;  // dS^T, with the scale dq and dk carry
      }
      add_weighted_rows<DV>(n, m_lanes, dv, w.g, [&](int64_t i, int64_t j) { return lane(w.pt, j, i); }, w.dvv, dv);
      add_weighted_rows<DV>(n, m_lanes, dv, w.q, [&](int64_t i, int64_t j) { return lane(w.dst, j, i); }, w.dk, dv);
      vf* dq = w.q;  // the block's query rows are used up: dq accumulates in their place
      for (int64_t x = 0; x < m_lanes * dv; ++x) dq[x] = vf{};
      add_weighted_rows<DV>(m_lanes, n, dv, w.k, [&](int64_t j, int64_t i) { return lane(w.dst, j, i); }, dq, dv);
      for (int64_t i = 0; i < m_lanes; ++i) {
        const float* a = reinterpret_cast<const float*>(dq + i * dv);
        float* dst = dbase + (i0 + i) * row;
        for (int64_t d = 0; d < dh; ++d) dst[d] = a[d];
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      const float* a = reinterpret_cast<const float*>(w.dk + j * dv);
      const float* c = reinterpret_cast<const float*>(w.dvv + j * dv);
      float* dkj = dbase + j * row + sh.heads * dh;
      float* dvj = dkj + sh.heads * dh;
      for (int64_t d = 0; d < dh; ++d) dkj[d] = a[d], dvj[d] = c[d];
    }
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

// Head dims of 16, 32 and 64 floats get loops of constant length (registers, no loop overhead).
template <typename Run, typename Fn>
void dispatch_dv(const Shape& sh, Run& run, Fn dv1, Fn dv2, Fn dv4, Fn any) {
  switch (sh.dh) {
    case kLanes: return run(dv1);
    case 2 * kLanes: return run(dv2);
    case 4 * kLanes: return run(dv4);
    default: return run(any);
  }
}

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
    Scratch w(sh, false);
    auto run = [&](auto fn) { fn(q, o, lse_ptr, sh, static_cast<float>(scale), first, last, w); };
    dispatch_dv(sh, run, &forward_pairs<1>, &forward_pairs<2>, &forward_pairs<4>, &forward_pairs<0>);
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
    Scratch w(sh, true);
    auto run = [&](auto fn) {
      fn(qkv.const_data_ptr<float>(), out.const_data_ptr<float>(), lse.const_data_ptr<float>(),
         dout.const_data_ptr<float>(), dqkv.data_ptr<float>(), sh, static_cast<float>(scale), first, last, w);
    };
    dispatch_dv(sh, run, &backward_pairs<1>, &backward_pairs<2>, &backward_pairs<4>, &backward_pairs<0>);
  });
}

}  // namespace

TORCH_LIBRARY(getkern_cpu, m) {
  m.def("attention_forward(Tensor qkv, int heads, float scale, Tensor(a!) out, Tensor(b!)? lse) -> ()");
  m.def(
      "attention_backward(Tensor qkv, Tensor out, Tensor lse, Tensor dout, int heads, float scale, "
      "Tensor(a!) dqkv) -> ()");
}

TORCH_LIBRARY_IMPL(getkern_cpu, CPU, m) {
  m.impl("attention_forward", &attention_forward);
  m.impl("attention_backward", &attention_backward);
}

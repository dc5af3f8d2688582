// The attention kernel of attention.cpp, written once on kLanes-float vectors (per_isa.h compiles it
// for each vector width; no include guard: included once per copy). Queries are processed kLanes at a time.
// Numerics: float32 throughout; exp is a Cephes-style polynomial accurate to about 2 ulp, the rest are
// ordinary float32 sums in key order, the same on every vector width.

inline int64_t vectors_per_row(const Shape& sh) { return (sh.dh + kLanes - 1) / kLanes; }

// Scratch of one task, reused for every (image, head) pair it takes, in vectors.
//   forward:  qt dh | K n*dv (the forward keeps its output rows here) | V n*dv | P^T n
//   backward: the same plus gt dh | Q n*dv | dO n*dv | dK n*dv | dV n*dv | dS^T n
struct Scratch {
  std::vector<float> buf;  // floats, not vf: a vector type as a template argument loses its alignment
  vf *qt, *k, *v, *pt, *gt, *q, *g, *dk, *dvv, *dst;
  Scratch(const Shape& sh, bool backward) {
    const int64_t n = sh.n, rows = sh.n * vectors_per_row(sh), qt_rows = sh.dh;
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

// Scores of a block of up to kLanes queries (lanes) against every key: st[j] = sum_d k_jd * qt[d].
// kKeys keys at a time: that many independent FMA chains (with a latency of 4 cycles and two FMA units,
// 8 chains keep them busy), instead of one chain that waits on itself.
constexpr int kKeys = 8;

GETKERN_INLINE inline void scores(const vf* qt, const float* keys, int64_t stride, int64_t n, int64_t dh, vf* st) {
  int64_t j = 0;
  for (; j + kKeys <= n; j += kKeys) {
    const float* k0 = keys + j * stride;
    vf s[kKeys] = {};
    for (int64_t d = 0; d < dh; ++d) {
      const vf q = qt[d];
      for (int c = 0; c < kKeys; ++c) s[c] += k0[c * stride + d] * q;
    }
    for (int c = 0; c < kKeys; ++c) st[j + c] = s[c];
  }
  for (; j < n; ++j) {
    const float* kj = keys + j * stride;
    vf s{};
    for (int64_t d = 0; d < dh; ++d) s += kj[d] * qt[d];
    st[j] = s;
  }
}

// The register tile of add_weighted_rows: kTileRows output rows by tile_columns(DV) vectors of
// accumulators, at most kAccumulators (the weights take most of the other half of the registers). Each
// source vector loaded serves kTileRows rows: with one row at a time, a head of 64 on AVX2 (8 vectors,
// too many for 4 rows) re-read all of V for every query and ran 1.2x slower at 256 tokens on a Zen 3.
constexpr int kTileRows = 4;
constexpr int tile_columns(int dv) { return dv * kTileRows <= kAccumulators ? dv : kAccumulators / kTileRows; }

// out[r][c] += sum_j weight(j, r) * src[j][c] for r < nr, c < dv, each sum in key order (j = 0, 1, ...)
// whatever the tile; tiles of kTileRows rows by tile_columns(DV) vectors.
template <int DV, typename Weight>
GETKERN_INLINE inline void add_weighted_rows(int64_t nr, int64_t n, int64_t dv_runtime, const vf* src, Weight weight,
                                             vf* out, int64_t out_stride) {
  const int64_t dv = DV ? DV : dv_runtime;
  int64_t r = 0;
  if constexpr (DV != 0) {
    constexpr int R = kTileRows, C = tile_columns(DV);
    static_assert(DV % C == 0, "column tiles must cover the row");
    for (; r + R <= nr; r += R) {
      for (int c0 = 0; c0 < DV; c0 += C) {
        vf a[R][C] = {};
        for (int64_t j = 0; j < n; ++j) {
          float w[R];
          for (int q = 0; q < R; ++q) w[q] = weight(j, r + q);
          for (int c = 0; c < C; ++c) {
            const vf x = in_register(src[j * DV + c0 + c]);  // one load for R rows' FMAs
            for (int q = 0; q < R; ++q) a[q][c] += w[q] * x;
          }
        }
        for (int q = 0; q < R; ++q) {
          for (int c = 0; c < C; ++c) out[(r + q) * out_stride + c0 + c] += a[q][c];
        }
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

// Pairs [first, last) of (image, head). Queries are taken kLanes at a time as vector lanes, so the row
// maximum, exp and row sum are lane-wise; each lane adds its terms in key order.
template <int DV>
void forward_pairs(const float* __restrict__ qkv, float* __restrict__ out, float* __restrict__ lse, Shape sh,
                   float scale, int64_t first, int64_t last, Scratch& w) {
  const int64_t n = sh.n, dh = sh.dh, dv = DV ? DV : vectors_per_row(sh), row = sh.row(), orow = sh.out_row();
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
void backward_pairs(const float* __restrict__ qkv, const float* __restrict__ out, const float* __restrict__ lse,
                    const float* __restrict__ dout, float* __restrict__ dqkv, Shape sh, float scale, int64_t first,
                    int64_t last, Scratch& w) {
  const int64_t n = sh.n, dh = sh.dh, dv = DV ? DV : vectors_per_row(sh), row = sh.row(), orow = sh.out_row();
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

// The entry points: pairs [first, last), with loops of constant length where the head dim is 1, 2, 4 or 8
// vectors (head dims 16, 32, 64 and 128 on every vector width).
template <int DV>
inline bool fits(const Shape& sh) { return DV * kLanes == sh.dh; }

void forward_range(const float* qkv, float* out, float* lse, const Shape& sh, float scale, int64_t first,
                   int64_t last) {
  Scratch w(sh, false);
  if (fits<1>(sh)) return forward_pairs<1>(qkv, out, lse, sh, scale, first, last, w);
  if (fits<2>(sh)) return forward_pairs<2>(qkv, out, lse, sh, scale, first, last, w);
  if (fits<4>(sh)) return forward_pairs<4>(qkv, out, lse, sh, scale, first, last, w);
  if (fits<8>(sh)) return forward_pairs<8>(qkv, out, lse, sh, scale, first, last, w);
  forward_pairs<0>(qkv, out, lse, sh, scale, first, last, w);
}

void backward_range(const float* qkv, const float* out, const float* lse, const float* dout, float* dqkv,
                    const Shape& sh, float scale, int64_t first, int64_t last) {
  Scratch w(sh, true);
  if (fits<1>(sh)) return backward_pairs<1>(qkv, out, lse, dout, dqkv, sh, scale, first, last, w);
  if (fits<2>(sh)) return backward_pairs<2>(qkv, out, lse, dout, dqkv, sh, scale, first, last, w);
  if (fits<4>(sh)) return backward_pairs<4>(qkv, out, lse, dout, dqkv, sh, scale, first, last, w);
  if (fits<8>(sh)) return backward_pairs<8>(qkv, out, lse, dout, dqkv, sh, scale, first, last, w);
  backward_pairs<0>(qkv, out, lse, dout, dqkv, sh, scale, first, last, w);
}

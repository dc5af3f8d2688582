// LayerNorm of whole rows for inference, written once on kLanes-float vectors (per_isa.h compiles it
// for each vector width; no include guard: included once per copy). A row (D floats, a few KiB) stays
// in L1 over three passes: its mean, the mean of its squared deviations (no cancellation of E[x^2] -
// E[x]^2), then y = (x - mean) * rstd * w + b. The mean is summed as deviations from the row's first
// element, so rows far from zero (a residual stream's offset) keep the digits their spread needs.
// Float32 sums in four vector accumulators, then their lanes in order.

GETKERN_INLINE inline float lane_sum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// sum_i f(x_i) over one row of d floats.
template <typename F>
GETKERN_INLINE inline float row_sum(const float* x, int64_t d, F f) {
  vf acc[4] = {};
  int64_t i = 0;
  for (; i + 4 * kLanes <= d; i += 4 * kLanes) {
    for (int c = 0; c < 4; ++c) acc[c] += f(load(x + i + c * kLanes));
  }
  for (; i + kLanes <= d; i += kLanes) acc[0] += f(load(x + i));
  float s = lane_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; i < d; ++i) s += f(splat(x[i]))[0];
  return s;
}

// Rows [first, last) of x (rows x d, contiguous) into y; w and b of length d.
void layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y, int64_t d, int64_t first,
                     int64_t last) {
  for (int64_t r = first; r < last; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    const vf shift = splat(xr[0]);
    const float mean = xr[0] + row_sum(xr, d, [&](vf v) { return v - shift; }) / static_cast<float>(d);
    const vf m = splat(mean);
    const float var = row_sum(xr, d, [&](vf v) { return (v - m) * (v - m); }) / static_cast<float>(d);
    const float rstd = 1.0f / std::sqrt(var + eps);
    const vf s = splat(rstd);
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes) {
      store(yr + i, (load(xr + i) - m) * s * load(w + i) + load(b + i));
    }
    for (; i < d; ++i) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
  }
}

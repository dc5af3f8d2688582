// Exact (erf) GELU and its derivative in one pass, written once on kLanes-float vectors (per_isa.h
// compiles it for each vector width; no include guard: included once per copy).
//   act   = x Phi(x),                Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   slope = Phi(x) + x phi(x),       phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// Phi comes from erfc of |z|, z = x / sqrt 2, in Abramowitz and Stegun's 7.1.26 form (absolute error of
// erf <= 1.5e-7; within 2.4 ulp of |x| of the float64 GELU, ATen's float32 GELU 2.2), sharing one exp
// with phi. Cephes's three-range erf/erfc (1.05 ulp) ran 1.6x slower: the vector code evaluates every
// range for every lane.
// For x below -7.7, exp(-x^2 / 2) is under e^-30 and is taken as 0 (vector_math.h): Phi there is under
// 1e-14, so act and slope are 0 to within x * 1e-14.

GETKERN_INLINE inline void gelu_lanes(vf x, vf* act, vf* slope) {
  // erfc(a) = t (c1 + c2 t + ... + c5 t^4) exp(-a^2), t = 1 / (1 + p a), a = |x| / sqrt 2 >= 0
  // (Abramowitz and Stegun 7.1.26, |error| <= 1.5e-7): one division, five FMAs and the exp phi needs.
  constexpr float p = 0.3275911f, c1 = 0.254829592f, c2 = -0.284496736f, c3 = 1.421413741f,
                  c4 = -1.453152027f, c5 = 1.061405429f;
  const vf z = x * 0.70710678118654752f;
  const vf a = z < 0.0f ? -z : z;
  const vf t = 1.0f / (1.0f + p * a);
  const vf e = exp_nonpositive(-(z * z));  // exp(-x^2 / 2): erfc's factor and phi's
  const vf half_erfc = (0.5f * t) * ((((c5 * t + c4) * t + c3) * t + c2) * t + c1) * e;
  const vf cdf = z < 0.0f ? half_erfc : 1.0f - half_erfc;  // Phi(x)
  *act = x * cdf;
  *slope = cdf + x * e * 0.39894228040143268f;
}

// Elements [first, last) of x; act and slope (slope may be null) of the same length.
void gelu_range(const float* x, float* act, float* slope, int64_t first, int64_t last) {
  int64_t i = first;
  for (; i + kLanes <= last; i += kLanes) {
    vf a, s;
    gelu_lanes(load(x + i), &a, &s);
    store(act + i, a);
    if (slope != nullptr) store(slope + i, s);
  }
  if (i < last) {  // the last partial vector, through a zero-padded copy
    const int64_t rest = last - i;
    vf v{}, a, s;
    std::memcpy(&v, x + i, rest * sizeof(float));
    gelu_lanes(v, &a, &s);
    std::memcpy(act + i, &a, rest * sizeof(float));
    if (slope != nullptr) std::memcpy(slope + i, &s, rest * sizeof(float));
  }
}

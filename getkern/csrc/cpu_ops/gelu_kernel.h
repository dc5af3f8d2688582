// Exact (erf) GELU and its derivative in one pass, written once on kLanes-float vectors (per_isa.h
// compiles it for each vector width; no include guard: included once per copy).
//   act   = x Phi(x),                Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   slope = Phi(x) + x phi(x),       phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
// erf and erfc are Cephes's single-precision approximations (erf(z) = z T(z^2) below |z| = 1, erfc(z) =
// exp(-z^2) / z P(1 / z^2) above; absolute error of Phi about 1e-7), sharing one exp with phi.
// For x below -7.7, exp(-x^2 / 2) is under e^-30 and is taken as 0 (vector_math.h): Phi there is under
// 1e-14, so act and slope are 0 to within x * 1e-14.

GETKERN_INLINE inline vf polynomial(vf x, const float* c, int n) {
  vf p = splat(c[0]);
  for (int i = 1; i < n; ++i) p = p * x + c[i];
  return p;
}

GETKERN_INLINE inline void gelu_lanes(vf x, vf* act, vf* slope) {
  static constexpr float kErfSmall[] = {7.853861353153693e-5f, -8.010193625184903e-4f, 5.188327685732524e-3f,
                                        -2.685381193529856e-2f, 1.128358514861418e-1f, -3.761262582423300e-1f,
                                        1.128379165726710e+0f};  // erf(z) = z T(z^2), |z| < 1
  static constexpr float kErfcMid[] = {2.326819970068386e-2f, -1.387039388740657e-1f, 3.687424674597105e-1f,
                                       -5.824733027278666e-1f, 6.210004621745983e-1f, -4.944515323274145e-1f,
                                       3.404879937665872e-1f, -2.741127028184656e-1f, 5.638259427386472e-1f};  // 1 <= z < 2
  static constexpr float kErfcLarge[] = {-1.047766399936249e+1f, 1.297719955372516e+1f, -7.495518717768503e+0f,
                                         2.921019019210786e+0f, -1.015265279202700e+0f, 4.218463358204948e-1f,
                                         -2.820767439740514e-1f, 5.641895067754075e-1f};  // z >= 2
  const vf z = x * 0.70710678118654752f;
  const vf a = z < 0.0f ? -z : z;
  const vf zz = z * z;
  const vf e = exp_nonpositive(-zz);  // exp(-x^2 / 2): erfc's factor and phi's
  // |z| < 1: Phi = 1/2 + erf(z) / 2.
  const vf phi_small = 0.5f + 0.5f * z * polynomial(zz, kErfSmall, 7);
  // |z| >= 1: erfc(|z|) = e / |z| P(1 / z^2); Phi = erfc / 2 below 0, 1 - erfc / 2 above.
  const vf q = 1.0f / (a < 1.0f ? splat(1.0f) : a);
  const vf qq = q * q;
  const vf tail = a < 2.0f ? polynomial(qq, kErfcMid, 9) : polynomial(qq, kErfcLarge, 8);
  const vf half_erfc = 0.5f * e * q * tail;
  const vf phi_large = z < 0.0f ? half_erfc : 1.0f - half_erfc;
  const vf cdf = a < 1.0f ? phi_small : phi_large;
  *act = x * cdf;
  *slope = cdf + x * e * 0.39894228040143268f;
}

// Elements [first, last) of x; act and slope (slope may be null) of the same length.
void gelu_range(const float* x, float* act, float* slope, int64_t first, int64_t last) {
  int64_t i = first;
  for (; i + kLanes <= last; i += kLanes) {
    vf v, a, s;
    std::memcpy(&v, x + i, sizeof v);
    gelu_lanes(v, &a, &s);
    std::memcpy(act + i, &a, sizeof a);
    if (slope != nullptr) std::memcpy(slope + i, &s, sizeof s);
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

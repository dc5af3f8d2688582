// Vector helpers shared by the kernels, on per_isa.h's vf / vi (no include guard: included once per copy).

GETKERN_INLINE inline vf splat(float x) { return vf{} + x; }

// A vector from / to kLanes floats at any address (a tensor's rows need not be vector-aligned).
GETKERN_INLINE inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
GETKERN_INLINE inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

// x, held in a register from here on: GCC otherwise folds a vector used by several FMAs back into each
// of them as a memory operand, one load per FMA, and a tile that reuses its operands becomes load-bound.
GETKERN_INLINE inline vf in_register(vf x) {
#ifdef GETKERN_X86
  asm("" : "+v"(x));
#endif
  return x;
}

// exp(x) lane-wise for x <= 0 (attention scores minus their row maximum, GELU's -x^2/2), about 2 ulp.
// Below -30 it is 0: such a term is under 1e-13 of a softmax row's largest, which is 1, so float32 sums
// never see it, and the tiny products it would make (denormals, 100x slower to multiply) never arise.
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

// Includes the kernel header GETKERN_KERNEL once per vector width, each copy in its own namespace
// (avx512, avx2, baseline) and compiled for its instruction set, after defining what the kernel is
// written on:
//   kLanes          floats in one vector,
//   kAccumulators   vectors of accumulators a kernel may keep in registers (half the register file),
//   vf, vi          kLanes floats / int32s as GCC vector types (the compiler lowers them to the unit).
// The lane count follows the register file: 16 lanes on AVX2's 16 registers spilled (2-9x slower than
// 8 lanes, measured on a Zen 3 EPYC). A .cpp defines GETKERN_KERNEL, includes this, and dispatches on
// getkern_cpu::selected_isa() (isa.h).
#include "isa.h"

// Helpers are inlined into each copy: a vector passed by value between code compiled for different
// vector units would not agree on where it is passed.
#define GETKERN_INLINE __attribute__((always_inline))

namespace {
#ifdef GETKERN_X86
namespace avx512 {  // 32 registers of 16 floats (x86-64-v4)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2")
constexpr int kLanes = 16, kAccumulators = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));
#include "vector_math.h"
#include GETKERN_KERNEL
#pragma GCC pop_options
}  // namespace avx512
namespace avx2 {  // 16 registers of 8 floats (x86-64-v3)
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2")
constexpr int kLanes = 8, kAccumulators = 8;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));
#include "vector_math.h"
#include GETKERN_KERNEL
#pragma GCC pop_options
}  // namespace avx2
#endif
namespace baseline {  // what the compiler targets by default (SSE2 on x86-64, NEON on aarch64): 4 floats
constexpr int kLanes = 4, kAccumulators = 8;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));
#include "vector_math.h"
#include GETKERN_KERNEL
}  // namespace baseline
}  // namespace

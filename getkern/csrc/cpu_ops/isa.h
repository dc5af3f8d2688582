// Which vector instruction set getkern's CPU kernels run on: the widest this CPU has (detected once),
// or a narrower one a test picked (set_isa). One choice for every kernel of the library.
#pragma once

#include <c10/util/Exception.h>

#include <atomic>
#include <string>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define GETKERN_X86 1  // the AVX2 and AVX-512 copies exist (per_isa.h)
#endif

namespace getkern_cpu {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };
inline const char* const kIsaNames[] = {"baseline", "avx2", "avx512"};

inline Isa detected_isa() {
#ifdef GETKERN_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (avx2) return Isa::avx2;
#endif
  return Isa::baseline;
}

inline std::atomic<int> selected{static_cast<int>(detected_isa())};  // one for the whole library

inline Isa selected_isa() { return static_cast<Isa>(selected.load(std::memory_order_relaxed)); }
inline std::string isa_name() { return kIsaNames[static_cast<int>(selected_isa())]; }
inline std::string widest_isa_name() { return kIsaNames[static_cast<int>(detected_isa())]; }

// For tests: run a narrower instruction set's copies than the CPU's widest (never a wider one).
inline void set_isa(const std::string& name) {
  const int widest = static_cast<int>(detected_isa());
  for (int i = 0; i < 3; ++i) {
    if (name != kIsaNames[i]) continue;
    TORCH_CHECK(i <= widest, "getkern_cpu: this CPU cannot run '", name, "'; it has '", kIsaNames[widest], "'");
    selected.store(i);
    return;
  }
  TORCH_CHECK(false, "getkern_cpu: unknown instruction set '", name, "' (baseline, avx2, avx512)");
}

}  // namespace getkern_cpu

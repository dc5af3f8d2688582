// C++ unit tests of the solver loop (csrc/solver.cpp), run by ctest: `test_solver <case>`.
// CPU only (see CMakeLists.txt). The Python suite (tests/test_cpp_*.py) covers the bindings.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "sample_ops.h"
#include "solver.h"
#include "solver_math.h"

namespace {

// c10 defines CHECK; ours returns false from the test case instead of aborting.
#define EXPECT(cond)                                                              \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, __LINE__, #cond); \
      return false;                                                               \
    }                                                                             \
  } while (0)

using getkern::SolveOptions;

bool close(const at::Tensor& a, const at::Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes()) {
    std::fprintf(stderr, "shape mismatch\n");
    return false;
  }
  const bool ok = at::allclose(a.to(at::kDouble), b.to(at::kDouble), rtol, atol, /*equal_nan=*/true);
  if (!ok) std::fprintf(stderr, "max abs diff %g\n", (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>());
  return ok;
}

// f(z) = z W^T + c with W of spectral norm `rho`: the fixed point solves (I - W) z = c.
struct Affine {
  at::Tensor w, c;
  at::Tensor operator()(const at::Tensor& z) const { return at::matmul(z, w.t()) + c; }
};

Affine random_affine(int64_t n, double rho, at::ScalarType dtype, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor w = at::randn({n, n}, gen, at::kDouble);
  w = w * (rho / at::linalg_matrix_norm(w, 2).item<double>());
  at::Tensor c = at::randn({n}, gen, at::kDouble);
  return {w.to(dtype), c.to(dtype)};
}

bool fixed_point_linear() {
  const int64_t B = 3, n = 9;
  Affine f = random_affine(n, 0.5, at::kDouble, 1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  at::Tensor z0 = at::randn({B, n}, gen, at::kDouble);
  at::Tensor exact = at::linalg_solve(at::eye(n, at::kDouble) - f.w, f.c).expand({B, n});
  SolveOptions o;
  o.max_iter = 100;
  o.tol = 1e-10;
  o.check_every = 1;
  auto [z, info] = getkern::solve(f, z0, o);
  EXPECT(close(z, exact, 0, 1e-9));
  EXPECT(info.nstep.max().item<int64_t>() < 100);
  EXPECT(info.abs_trace.size(0) == info.nstep.max().item<int64_t>());
  EXPECT(info.nfev == info.abs_trace.size(0));
  EXPECT(!info.nan.any().item<bool>());
  // Contraction by 0.5 per step: each residual at most half the previous one (plus rounding).
  at::Tensor tr = info.abs_trace;
  EXPECT((tr.slice(0, 1) <= tr.slice(0, 0, -1) * 0.5 + 1e-12).all().item<bool>());
  return true;
}

// name -> tensor, from the text fixture written by make_fixture.py.
std::map<std::string, at::Tensor> load_fixture() {
  std::map<std::string, at::Tensor> out;
  std::ifstream in(GETKERN_FIXTURE);
  TORCH_CHECK(in, "cannot open ", GETKERN_FIXTURE);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string name, dtype;
    int64_t numel = 0;
    s >> name >> dtype >> numel;
    at::Tensor t = at::empty({numel}, at::kDouble);
    for (int64_t i = 0; i < numel; ++i) s >> t.data_ptr<double>()[i];
    out[name] = t;
  }
  return out;
}

bool anderson_matches_python() {
  auto fx = load_fixture();
  const int64_t B = 3, n = 7;  // make_fixture.py
  for (auto [dtype, tag] : {std::pair{at::kFloat, "float32"}, std::pair{at::kDouble, "float64"}}) {
    Affine f{fx.at("w").view({n, n}).to(dtype), fx.at("c").to(dtype)};
    SolveOptions o;
    o.solver = "anderson";
    o.max_iter = 12;
    o.m = 4;
    o.lam = 1e-4;
    o.tau = 0.8;
    auto [z, info] = getkern::solve(f, fx.at("z0").view({B, n}).to(dtype), o);
    const std::string t = tag;
    // Same ATen operations in the same order as the Python loop: equal up to BLAS/threading effects.
    EXPECT(close(z, fx.at("z_" + t).view({B, n}), 1e-6, 1e-7));
    EXPECT(close(info.abs_trace, fx.at("abs_trace_" + t).view({12, B}), 1e-5, 1e-7));
    EXPECT(close(info.rel_trace, fx.at("rel_trace_" + t).view({12, B}), 1e-5, 1e-7));
    EXPECT(close(info.best_res, fx.at("best_res_" + t), 1e-5, 1e-7));
    EXPECT(at::equal(info.nstep, fx.at("nstep_" + t).to(at::kLong)));
    EXPECT(at::equal(info.fallback, fx.at("fallback_" + t).to(at::kInt)));
  }
  return true;
}

// f(z) = z + d: every residual is d (powers of two: exact along the plain steps), the history's Gram
// matrix is rank one and, with lam = 0, the bordered system is exactly singular. Every mixing step
// must fall back to the plain step.
bool singular_history() {
  const int64_t B = 2, n = 5;
  at::Tensor d = at::tensor({0.5f, 1.f, 0.25f, 2.f, 0.125f});
  at::Tensor z0 = at::zeros({B, n}, at::kFloat);
  SolveOptions o;
  o.solver = "anderson";
  o.max_iter = 6;
  o.m = 3;
  o.lam = 0.0;
  auto [z, info] = getkern::solve([&](const at::Tensor& z) { return z + d; }, z0, o);
  EXPECT(at::equal(info.fallback, at::full({B}, 5, at::kInt)));
  EXPECT(!info.nan.any().item<bool>());
  EXPECT(at::isfinite(z).all().item<bool>());
  // Plain steps z_k = k d; every residual is ||d||; the best is the first f-value, d.
  EXPECT(close(info.abs_trace, at::full({6, B}, at::linalg_vector_norm(d, 2).item<double>()), 1e-6, 0));
  EXPECT(close(z, d.expand({B, n}), 0, 0));
  return true;
}

// One sample's f-value turns NaN from the third evaluation: it is flagged, keeps its best finite
// iterate, and does not disturb the other sample.
bool nan_sample() {
  const int64_t B = 2, n = 4;
  Affine lin = random_affine(n, 0.5, at::kFloat, 3);
  int calls = 0;
  auto f = [&](const at::Tensor& z) {
    at::Tensor out = lin(z);
    if (++calls >= 3) out.select(0, 1).fill_(NAN);
    return out;
  };
  for (const char* solver : {"fixed_point", "anderson"}) {
    calls = 0;
    SolveOptions o;
    o.solver = solver;
    o.max_iter = 6;
    o.tol = 1e-3;
    auto [z, info] = getkern::solve(f, at::ones({B, n}, at::kFloat), o);
    EXPECT(!info.nan[0].item<bool>() && info.nan[1].item<bool>());
    EXPECT(at::isfinite(z).all().item<bool>());
    EXPECT(std::isfinite(info.best_res[1].item<float>()));
    EXPECT(info.nstep[1].item<int64_t>() == 6);
  }
  return true;
}

bool bordered_solve_guard() {
  using namespace getkern::math;
  // A well-posed 2-slot system, newest entry in slot 1 (scale gram[1][1] = 2):
  // H = [[0, 1, 1, 0], [1, 0.5 + lam, 0, 0], [1, 0, 1 + lam, 0], [0, 0, 0, 1]].
  const float gram[9] = {1, 0, 0, 0, 2, 0, 0, 0, 0};
  double H[16];
  bordered_system(gram, 3, 1, 2, 0.0, H);
  const double expect[16] = {0, 1, 1, 0, 1, 0.5, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1};
  for (int i = 0; i < 16; ++i) EXPECT(H[i] == expect[i]);
  // A restarted history (depth 1 at slot 1): only the newest slot is in it.
  bordered_system(gram, 3, 1, 1, 1e-4, H);
  const double restarted[16] = {0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1 + 1e-4, 0, 0, 0, 0, 1};
  for (int i = 0; i < 16; ++i) EXPECT(H[i] == restarted[i]);
  // A wrapped ring: newest at slot 0, depth 2 holds slots 0 and 2 (slot 2 was written before slot 0).
  EXPECT(in_history(0, 3, 0, 2) && in_history(2, 3, 0, 2) && !in_history(1, 3, 0, 2));
  float alpha[3];
  const double sol[4] = {-0.5, 0.5, 0.5, 0};
  EXPECT(guard_alpha(sol, 0, 3, 1, 2, alpha));
  EXPECT(alpha[0] == 0.5f && alpha[1] == 0.5f && alpha[2] == 0.f);
  // A failed factorisation, a non-finite weight and a huge extrapolation all fall back to slot 1.
  const double nan_sol[4] = {0, NAN, 1, 0};
  const double big_sol[4] = {0, 2e4, -2e4 + 1, 0};
  for (auto [s, info] : {std::pair{sol, 3}, std::pair{nan_sol, 0}, std::pair{big_sol, 0}}) {
    EXPECT(!guard_alpha(s, info, 3, 1, 2, alpha));
    EXPECT(alpha[0] == 0.f && alpha[1] == 1.f && alpha[2] == 0.f);
  }
  // A NaN newest diagonal poisons the scale, so the whole system (and then the solve) is NaN.
  const float nan_gram[4] = {1, 0, 0, NAN};
  double H2[9];
  bordered_system(nan_gram, 2, 1, 2, 1e-4, H2);
  EXPECT(std::isnan(H2[4]) && std::isnan(H2[8]));
  return true;
}

// The CUDA kernel's per-sample path (system, Gaussian elimination, guard: math::anderson_weights) agrees
// with the CPU path (LAPACK via at::linalg_solve_ex) on random, rank-deficient and NaN histories.
bool device_weights_match_lapack() {
  const int64_t B = 6, m = 5, n = 11;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  for (int64_t valid = 1; valid <= m; ++valid) {
    for (double lam : {1e-4, 0.0}) {
      at::Tensor g = at::randn({B, m, n}, gen, at::kFloat);
      g.select(0, 1).select(0, 0).copy_(g.select(0, 1).select(0, valid - 1));  // repeated residual
      g.select(0, 2).fill_(1.0);                                                // all residuals equal
      g.select(0, 3).select(0, 0).fill_(NAN);                                   // poisoned history
      at::Tensor gram = at::bmm(g, g.transpose(1, 2)).contiguous();
      const int64_t slot = valid - 1;
      at::Tensor depth = at::full({B}, valid, at::kLong);
      depth[5] = 1;  // a sample whose history was just restarted
      at::Tensor alpha = at::empty({B, m}, at::kFloat), fallback = at::zeros({B}, at::kInt);
      getkern::anderson_weights(gram, slot, depth, lam, alpha, fallback);
      for (int64_t b = 0; b < B; ++b) {
        double H[(m + 1) * (m + 1)], sol[m + 1];
        float a[m];
        const bool ok = getkern::math::anderson_weights(gram[b].data_ptr<float>(), m, slot,
                                                        static_cast<int>(depth[b].item<int64_t>()), lam, H, sol, a);
        EXPECT(std::abs(at::from_blob(a, {m}, at::kFloat).sum().item<float>() - 1.f) < 1e-3f);
        // Exactly singular systems (lam = 0, samples 1 and 2) may be caught by either guard clause.
        if (lam == 0.0 && (b == 1 || b == 2)) continue;
        EXPECT(ok == (fallback[b].item<int32_t>() == 0));
        EXPECT(close(at::from_blob(a, {m}, at::kFloat), alpha[b], 1e-3, 1e-4));
      }
      EXPECT(fallback[3].item<int32_t>() == 1);  // NaN history: plain step
      at::Tensor plain = at::zeros({m}, at::kFloat);
      plain[slot] = 1.0;
      EXPECT(at::equal(alpha[5], plain));  // a restarted history of one entry: the plain step
    }
  }
  return true;
}

// The answer, nstep and traces do not depend on how often the host checks for the early exit.
bool early_stop_check_every() {
  Affine f = random_affine(6, 0.6, at::kDouble, 4);
  at::Tensor z0 = at::randn({4, 6}, at::make_generator<at::CPUGeneratorImpl>(5), at::kDouble);
  for (const char* solver : {"fixed_point", "anderson"}) {
    SolveOptions o;
    o.solver = solver;
    o.max_iter = 40;
    o.tol = 1e-6;
    o.stop = "rel";
    o.check_every = 1;
    auto [z1, i1] = getkern::solve(f, z0, o);
    o.check_every = 7;
    auto [z7, i7] = getkern::solve(f, z0, o);
    EXPECT(i1.abs_trace.size(0) < 40);
    EXPECT(at::equal(z1, z7) && at::equal(i1.nstep, i7.nstep));
    EXPECT(at::equal(i1.abs_trace, i7.abs_trace) && at::equal(i1.rel_trace, i7.rel_trace));
    EXPECT(i7.nfev >= i1.nfev && i7.nfev < i1.nfev + 7);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<bool()>> cases = {
      {"fixed_point_linear", fixed_point_linear},   {"anderson_matches_python", anderson_matches_python},
      {"singular_history", singular_history},       {"nan_sample", nan_sample},
      {"bordered_solve_guard", bordered_solve_guard}, {"early_stop_check_every", early_stop_check_every},
      {"device_weights_match_lapack", device_weights_match_lapack},
  };
  if (argc > 1 && !cases.count(argv[1])) {
    std::fprintf(stderr, "unknown test case %s\n", argv[1]);
    return 2;
  }
  int failed = 0;
  for (const auto& [name, run] : cases) {
    if (argc > 1 && name != argv[1]) continue;
    bool ok = false;
    try {
      ok = run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: exception: %s\n", name.c_str(), e.what());
    }
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", name.c_str());
    failed += !ok;
  }
  return failed ? 1 : 0;
}

// The solver loop of docs/solvers.md, operation for operation: whole-state arithmetic in the same ATen
// ops the Python solvers call (so the CPU results are bitwise equal), per-sample steps through
// sample_ops (solver_math.h). Nothing here reads device memory on the host except the early-exit
// check every `check_every` iterations and the final trim, both only when a tolerance is set.
#include "solver.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/util/irange.h>

#include <limits>
#include <vector>

#include "sample_ops.h"
#include "solver_math.h"

namespace getkern {

namespace {

constexpr double kRelEps = 1e-5;  // getkern.ops.anderson.REL_EPS

void check_options(const at::Tensor& z0, const SolveOptions& o) {
  TORCH_CHECK(o.solver == "fixed_point" || o.solver == "anderson",
              "solver must be 'fixed_point' or 'anderson', got '", o.solver, "'");
  TORCH_CHECK(o.stop == "abs" || o.stop == "rel", "stop must be 'abs' or 'rel', got '", o.stop, "'");
  TORCH_CHECK(o.max_iter >= 1, "max_iter must be >= 1, got ", o.max_iter);
  TORCH_CHECK(o.check_every >= 1, "check_every must be >= 1, got ", o.check_every);
  TORCH_CHECK(!o.tol || *o.tol > 0, "tol must be > 0 or None, got ", *o.tol);
  TORCH_CHECK(o.m >= 1, "m must be >= 1, got ", o.m);
  TORCH_CHECK(o.lam >= 0, "lam must be >= 0, got ", o.lam);
  TORCH_CHECK(o.tau > 0 && o.tau <= 1, "tau must lie in (0, 1], got ", o.tau);
  TORCH_CHECK(z0.dim() >= 1 && z0.size(0) >= 1, "z0 must have shape (B, ...) with B >= 1, got ", z0.sizes());
  TORCH_CHECK(at::isFloatingType(z0.scalar_type()), "z0 must be a floating-point tensor, got ", z0.scalar_type());
}

// Residuals of the step x -> fx, (B,) float32 each: abs = ||fx - x||, rel = abs / (||fx|| + REL_EPS).
std::pair<at::Tensor, at::Tensor> residuals(const at::Tensor& d, const at::Tensor& fx) {
  at::Tensor abs_res = at::linalg_vector_norm(d.to(at::kFloat), 2, {1});
  at::Tensor rel_res = abs_res / (at::linalg_vector_norm(fx.to(at::kFloat), 2, {1}) + kRelEps);
  return {abs_res, rel_res};
}

// Statistics shared by both solvers (getkern/deq/stats.py): traces, per-sample state, stopping.
class Stats {
 public:
  Stats(const at::Tensor& z0, const SolveOptions& o) : o_(o), tol_(o.tol ? *o.tol : -1.0) {
    const int64_t B = z0.size(0);
    const auto dev = z0.device();
    st_.best_res = at::full({B}, std::numeric_limits<float>::infinity(), at::dtype(at::kFloat).device(dev));
    st_.nstep = at::full({B}, o.max_iter, at::dtype(at::kLong).device(dev));
    st_.passed = at::zeros({B}, at::dtype(at::kBool).device(dev));
    st_.nan = at::zeros({B}, at::dtype(at::kBool).device(dev));
    st_.improved = at::empty({B}, at::dtype(at::kBool).device(dev));
    st_.stopped = at::zeros({1}, at::dtype(at::kBool).device(dev));
    st_.k_stop = at::full({1}, o.max_iter - 1, at::dtype(at::kLong).device(dev));
    fallback = at::zeros({B}, at::dtype(at::kInt).device(dev));
    restarts = at::zeros({B}, at::dtype(at::kInt).device(dev));
    abs_rows_.reserve(o.max_iter);
    rel_rows_.reserve(o.max_iter);
  }

  // Records iteration k; returns the (B,) mask of samples whose iterate becomes their best one
  // (best_res is already updated).
  const at::Tensor& observe(int64_t k, const at::Tensor& abs_res, const at::Tensor& rel_res) {
    abs_rows_.push_back(abs_res);
    rel_rows_.push_back(rel_res);
    track_samples(k, o_.stop == "abs" ? abs_res : rel_res, abs_res, rel_res, tol_, st_);
    return st_.improved;
  }

  // The host check: only every check_every iterations, only with a tolerance.
  bool should_break(int64_t k) const {
    if (!o_.tol || (k + 1) % o_.check_every || k + 1 >= o_.max_iter) return false;
    return st_.stopped.item<bool>();
  }

  SolveInfo info() const {
    int64_t rows = static_cast<int64_t>(abs_rows_.size());
    if (o_.tol) rows = std::min(rows, st_.k_stop.item<int64_t>() + 1);
    SolveInfo info;
    info.abs_trace = at::stack(at::TensorList(abs_rows_).slice(0, rows));
    info.rel_trace = at::stack(at::TensorList(rel_rows_).slice(0, rows));
    info.abs_lowest = nanmin_rows(info.abs_trace);
    info.rel_lowest = nanmin_rows(info.rel_trace);
    info.nstep = st_.nstep;
    info.best_res = st_.best_res;
    info.nan = st_.nan;
    info.fallback = fallback;
    info.restarts = restarts;
    info.nfev = static_cast<int64_t>(abs_rows_.size());
    return info;
  }

  // The residual of the best iterate so far (+inf: none yet), updated by observe.
  const at::Tensor& best_res() const { return st_.best_res; }

  at::Tensor fallback;  // (B,) int32, Anderson only
  at::Tensor restarts;  // (B,) int32, Anderson only

 private:
  static at::Tensor nanmin_rows(const at::Tensor& trace) {
    return at::where(at::isnan(trace), std::numeric_limits<float>::infinity(), trace).amin(0);
  }

  const SolveOptions& o_;
  double tol_;
  TrackState st_;
  std::vector<at::Tensor> abs_rows_, rel_rows_;
};

// f on the flattened (B, n) state: called with z0's shape, its output cast to z0's dtype.
class FlatFn {
 public:
  FlatFn(const EvalFn& f, const at::Tensor& z0) : f_(f), shape_(z0.sizes().vec()), dtype_(z0.scalar_type()) {}

  at::Tensor operator()(const at::Tensor& x) const {
    at::Tensor out = f_(x.view(shape_));
    TORCH_CHECK_VALUE(out.sizes() == at::IntArrayRef(shape_), "f must return a tensor of z0's shape ",
                      at::IntArrayRef(shape_), ", got ", out.sizes());
    return out.reshape({shape_[0], -1}).to(dtype_);
  }

 private:
  const EvalFn& f_;
  std::vector<int64_t> shape_;
  at::ScalarType dtype_;
};

at::Tensor fixed_point(const FlatFn& f, const at::Tensor& z0, const SolveOptions& o, Stats& stats) {
  at::Tensor best = z0.clone();
  at::Tensor x = z0;
  for (const auto k : c10::irange(o.max_iter)) {
    at::Tensor fx = f(x);
    auto [abs_res, rel_res] = residuals(fx - x, fx);
    const at::Tensor& improved = stats.observe(k, abs_res, rel_res);
    best = at::where(improved.unsqueeze(1), fx, best);
    x = fx;
    if (stats.should_break(k)) break;
  }
  return best;
}

// getkern.ops.anderson's two passes, the guarded bordered solve and the safeguard of docs/solvers.md.
at::Tensor anderson(const FlatFn& f, const at::Tensor& z0, const SolveOptions& o, Stats& stats) {
  const int64_t B = z0.size(0), n = z0.size(1), m = o.m;
  const auto fopts = at::dtype(at::kFloat).device(z0.device());
  const auto acc = z0.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;  // the mix's accumulation
  at::Tensor F = at::zeros({B, m, n}, z0.options());
  at::Tensor G = at::zeros({B, m, n}, z0.options());
  at::Tensor gram = at::zeros({B, m, m}, fopts);
  at::Tensor alpha = at::empty({B, m}, fopts);
  at::Tensor best = z0.clone();
  at::Tensor since = at::zeros({B}, at::dtype(at::kLong).device(z0.device()));  // each history's first iteration
  at::Tensor z = z0;
  for (const auto k : c10::irange(o.max_iter)) {
    at::Tensor fz = f(z).contiguous();
    const int64_t slot = k % m, valid = std::min(k + 1, m);
    // Pass 1 (anderson_record): history slot, Gram row/column, residuals.
    at::Tensor F_k = F.select(1, slot), G_k = G.select(1, slot);
    F_k.copy_(fz);
    G_k.copy_(fz - z);
    at::Tensor g = G_k.to(at::kFloat);
    at::Tensor row = at::bmm(G.slice(1, 0, valid).to(at::kFloat), g.unsqueeze(2)).squeeze(2);
    gram.select(1, slot).slice(1, 0, valid).copy_(row);
    gram.slice(1, 0, valid).select(2, slot).copy_(row);
    at::Tensor abs_res = at::linalg_vector_norm(g, 2, {1});
    at::Tensor rel_res = abs_res / (at::linalg_vector_norm(F_k.to(at::kFloat), 2, {1}) + kRelEps);
    // Safeguard: the live residual against the best one before this iteration's update.
    at::Tensor restart = (o.stop == "abs" ? abs_res : rel_res).le(stats.best_res() * math::kSafeguard).logical_not();
    const at::Tensor& improved = stats.observe(k, abs_res, rel_res);
    stats.restarts += restart.to(at::kInt);
    // The weights: a plain first step, then the guarded bordered solve over each sample's history.
    if (k == 0) {
      alpha.zero_();
      alpha.select(1, slot).fill_(1.0);
    } else {
      at::Tensor depth = (-since + (k + 1)).clamp_max(valid);
      anderson_weights(gram, slot, depth, o.lam, alpha, stats.fallback);
    }
    since = at::where(restart, k + 1, since);
    // Pass 2 (anderson_mix): the mix relative to the newest slot (or the best f-value where restarted),
    // and the best f-value.
    at::Tensor a = alpha.to(acc).unsqueeze(1);
    at::Tensor f_slot = F_k.to(acc);
    at::Tensor mixed = f_slot + at::bmm(a, F - f_slot.unsqueeze(1)).squeeze(1);  // promoted to acc
    if (o.tau != 1.0) {
      at::Tensor g_slot = G_k.to(acc);
      mixed -= (g_slot + at::bmm(a, G - g_slot.unsqueeze(1)).squeeze(1)) * (1.0 - o.tau);
    }
    mixed = at::where(restart.unsqueeze(1), best.to(acc), mixed);
    best.copy_(at::where(improved.unsqueeze(1), F_k, best));
    z = mixed.to(z0.scalar_type());
    if (stats.should_break(k)) break;
  }
  return best;
}

}  // namespace

std::pair<at::Tensor, SolveInfo> solve(const EvalFn& f, const at::Tensor& z0_in, const SolveOptions& options) {
  check_options(z0_in, options);
  c10::NoGradGuard no_grad;
  const at::Tensor z0 = z0_in.detach().reshape({z0_in.size(0), -1}).contiguous();
  const FlatFn flat_f(f, z0_in);
  Stats stats(z0, options);
  at::Tensor best = options.solver == "anderson" ? anderson(flat_f, z0, options, stats)
                                                 : fixed_point(flat_f, z0, options, stats);
  return {best.view(z0_in.sizes()), stats.info()};
}

}  // namespace getkern

"""getkern.deq.solve on toy maps with known fixed points: convergence, traces, best iterate, stopping,
host synchronisation, NaN handling, the guarded Anderson solve, backends and argument errors."""

import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import getkern.deq.anderson as deq_anderson
import getkern.deq.core as deq_core
from getkern import deq
from getkern._backend import BackendUnavailable

SOLVERS = ("fixed_point", "anderson")


def linear_problem(n=24, batch=3, top=0.95, seed=0, dtype=torch.float32):
    """f(z) = z A^T + b with symmetric A, eigenvalues in [-0.5, top]; returns f, the fixed point, b."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(-0.5, top, n, dtype=torch.float64)) @ Q.T
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    z_star = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - A, b.T).T
    A, b = A.to(dtype), b.to(dtype)
    return (lambda z: z @ A.T + b), z_star.to(dtype)


class Recorder:
    """Wraps f and keeps every (input, output) pair it saw."""

    def __init__(self, f):
        self.f, self.calls = f, []

    def __call__(self, z):
        out = self.f(z)
        self.calls.append((z.clone(), out.clone()))
        return out


class CountSyncs(TorchDispatchMode):
    """Counts device->host scalar reads (.item(), bool(tensor), int(tensor) all dispatch to this op)."""

    def __init__(self):
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- convergence and traces


@pytest.mark.parametrize("solver", SOLVERS)
def test_converges_to_the_known_fixed_point_of_a_linear_contraction(solver):
    f, z_star = linear_problem()
    z, info = deq.solve(f, torch.zeros_like(z_star), solver=solver, max_iter=400, tol=1e-5, stop="rel", backend="torch")
    # error <= residual / (1 - spectral radius)
    assert ((z - z_star).norm(dim=1) <= 1e-5 * z_star.norm(dim=1) * 20 / (1 - 0.95)).all()
    assert (info["rel_trace"][info["nstep"] - 1, torch.arange(3)] < 1e-5).all()
    assert info["abs_trace"].shape == info["rel_trace"].shape == (int(info["nstep"].max()), 3)
    assert not info["nan"].any() and (info["fallback"] == 0).all()
    assert info["solver"] == solver and info["backend"] == "torch"


def test_anderson_needs_far_fewer_evaluations_than_the_fixed_point():
    f, z_star = linear_problem()
    nfev = {
        s: deq.solve(
            f, torch.zeros_like(z_star), solver=s, max_iter=400, tol=1e-4, stop="rel", check_every=1, backend="torch"
        )[1]["nfev"]
        for s in SOLVERS
    }
    assert nfev["anderson"] * 3 < nfev["fixed_point"], nfev


@pytest.mark.parametrize("solver", SOLVERS)
def test_traces_are_the_residuals_of_the_evaluations_made(solver):
    f, z_star = linear_problem(n=10, top=0.8)
    rec = Recorder(f)
    _, info = deq.solve(rec, torch.randn_like(z_star), solver=solver, max_iter=7, backend="torch")
    assert len(rec.calls) == info["nfev"] == 7
    abs_ref = torch.stack([(fz - z).double().norm(dim=1) for z, fz in rec.calls])
    rel_ref = torch.stack([(fz - z).double().norm(dim=1) / (fz.double().norm(dim=1) + 1e-5) for z, fz in rec.calls])
    torch.testing.assert_close(info["abs_trace"].double(), abs_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(info["rel_trace"].double(), rel_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(info["abs_lowest"], info["abs_trace"].amin(0))
    assert torch.equal(info["nstep"], torch.full((3,), 7))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("stop", ["abs", "rel"])
def test_returns_the_f_value_with_the_lowest_residual(solver, stop):
    # An expansive map: the residual grows after a while, so the best f-value is an early one.
    g = torch.Generator().manual_seed(1)
    A = torch.randn(12, 12, generator=g) * 0.45
    b = torch.randn(4, 12, generator=g)
    rec = Recorder(lambda z: torch.tanh(z @ A.T) * 3 + b)
    z, info = deq.solve(rec, torch.randn(4, 12, generator=g), solver=solver, max_iter=9, stop=stop, backend="torch")
    res = info["abs_trace"] if stop == "abs" else info["rel_trace"]
    best = res.argmin(0)
    expected = torch.stack([rec.calls[k][1][i] for i, k in enumerate(best.tolist())])
    assert torch.equal(z, expected)
    torch.testing.assert_close(info["best_res"], res.amin(0))


def test_state_of_any_shape_and_dtype_is_returned_in_that_shape_and_dtype():
    f, z_star = linear_problem(n=60, batch=2, top=0.6)
    for solver in SOLVERS:
        for dtype in (torch.float32, torch.bfloat16):
            z, info = deq.solve(
                lambda z: f(z.reshape(2, 60).float()).reshape(2, 3, 4, 5),
                torch.zeros(2, 3, 4, 5, dtype=dtype),
                solver=solver,
                max_iter=30,
                backend="torch",
            )
            assert z.shape == (2, 3, 4, 5) and z.dtype == dtype
            tol = 0.02 if dtype == torch.bfloat16 else 1e-4
            torch.testing.assert_close(z.reshape(2, 60).float(), z_star, rtol=tol, atol=tol * 10)


# ---------------------------------------------------------------- the reference's inference, exactly


def reference_inference(f, z0, iters, tol):
    """The reference GET's inference loop, as published (get-reference.md)."""
    x, lowest, answer = z0, torch.full((z0.shape[0],), float("inf")), z0.clone()
    for _ in range(iters):
        fx = f(x)
        r = (fx - x).flatten(1).norm(dim=1)
        better = r < lowest
        answer[better] = fx[better]
        lowest = torch.where(better, r, lowest)
        x = fx
        if (r < tol).all():
            break
    return answer


@pytest.mark.parametrize("check_every", [1, 4])
def test_fixed_point_is_the_reference_inference_exactly_including_the_early_stop(check_every):
    f, z_star = linear_problem(n=16, batch=3, top=0.5)
    z0 = torch.randn(3, 16)
    for iters, tol in ((6, 1e-3), (40, 1e-3), (40, 1e-6)):
        z, info = deq.solve(f, z0, max_iter=iters, tol=tol, check_every=check_every, backend="torch")
        assert torch.equal(z, reference_inference(f, z0, iters, tol))


@pytest.mark.parametrize("solver", SOLVERS)
def test_results_do_not_depend_on_check_every(solver):
    f, z_star = linear_problem(n=16, top=0.9)
    z0 = torch.randn_like(z_star)
    runs = [deq.solve(f, z0, solver=solver, max_iter=100, tol=1e-4, check_every=c, backend="torch") for c in (1, 3, 8)]
    z1, info1 = runs[0]
    assert int(info1["nstep"].max()) < 100, "the test needs an early stop"
    for z, info in runs[1:]:
        assert torch.equal(z, z1)
        for key in ("nstep", "abs_trace", "rel_trace", "best_res", "abs_lowest"):
            assert torch.equal(info[key], info1[key]), key
    assert info1["nfev"] == info1["abs_trace"].shape[0] <= runs[2][1]["nfev"] <= info1["nfev"] + 7


@pytest.mark.parametrize("solver", SOLVERS)
def test_no_host_synchronisation_without_tol_and_one_per_check_with_it(solver):
    f, z_star = linear_problem(n=16, top=0.99)
    z0 = torch.randn_like(z_star)
    with CountSyncs() as mode:
        _, info = deq.solve(f, z0, solver=solver, max_iter=20, tol=None, backend="torch")
    assert mode.syncs == 0 and info["nfev"] == 20
    with CountSyncs() as mode:
        _, info = deq.solve(f, z0, solver=solver, max_iter=20, tol=1e-12, check_every=5, backend="torch")
    assert mode.syncs == 3 + 1  # checks after iterations 5, 10, 15; one read of the stop index at the end


def test_nstep_is_per_sample_first_success():
    f, z_star = linear_problem(n=8, batch=2, top=0.5)
    z0 = z_star.clone()
    z0[1] += 10.0  # sample 0 starts at the fixed point, sample 1 far from it
    _, info = deq.solve(f, z0, max_iter=60, tol=1e-4, check_every=1, backend="torch")
    assert info["nstep"][0] == 1 and info["nstep"][1] > 5
    assert info["abs_trace"].shape[0] == info["nstep"][1]


# ---------------------------------------------------------------- NaN / Inf


class PoisonAfter:
    """f, except that sample `which` gets `value` from call `start` on."""

    def __init__(self, f, which, start, value=float("nan")):
        self.f, self.which, self.start, self.value, self.calls = f, which, start, value, 0

    def __call__(self, z):
        out = self.f(z).clone()
        if self.calls >= self.start:
            out[self.which, 3] = self.value
        self.calls += 1
        return out


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_f_values_are_reported_and_the_sample_keeps_its_best_finite_iterate(solver, value):
    f, z_star = linear_problem(n=16, top=0.8)
    z0 = torch.randn_like(z_star)
    clean, clean_info = deq.solve(f, z0, solver=solver, max_iter=12, backend="torch")
    rec = Recorder(PoisonAfter(f, which=1, start=4, value=value))
    z, info = deq.solve(rec, z0, solver=solver, max_iter=12, backend="torch")
    assert info["nan"].tolist() == [False, True, False]
    assert torch.isfinite(z).all()
    finite_res = info["abs_trace"][:4, 1]
    expected = rec.calls[int(finite_res.argmin())][1][1]
    assert torch.equal(z[1], expected)
    torch.testing.assert_close(z[[0, 2]], clean[[0, 2]])
    assert torch.isfinite(info["abs_lowest"]).all()


def test_a_dead_sample_does_not_block_the_early_stop():
    f, z_star = linear_problem(n=16, top=0.5)
    _, info = deq.solve(
        PoisonAfter(f, which=0, start=0),
        torch.randn_like(z_star),
        max_iter=200,
        tol=1e-4,
        check_every=1,
        backend="torch",
    )
    assert info["nfev"] < 50 and info["nan"].tolist() == [True, False, False]
    assert info["nstep"][0] == 200 and torch.isinf(info["best_res"][0])


# ---------------------------------------------------------------- the guarded Anderson solve


def test_bordered_solve_matches_the_constrained_least_squares_in_float64():
    g = torch.Generator().manual_seed(2)
    B, m, n, lam = 3, 6, 40, 1e-4
    G = torch.randn(B, m, n, generator=g, dtype=torch.float64)
    for k in (1, 3, 9):
        slot, filled = k % m, min(k + 1, m)
        for depth in (None, torch.tensor([1, 2, filled])):
            gram = torch.zeros(B, m, m)
            gram[:, :filled, :filled] = (G[:, :filled] @ G[:, :filled].transpose(1, 2)).float()
            alpha, ok = deq.bordered_solve(gram, k, lam, depth=depth)
            assert ok.all()
            for b in range(B):
                # the sample's history: its newest depth entries, newest at the slot of iteration k
                hist = [(slot - age) % m for age in range(filled if depth is None else int(depth[b]))]
                outside = [i for i in range(m) if i not in hist]
                assert (alpha[b, outside] == 0).all()
                Gh = G[b, hist]
                gram64 = Gh @ Gh.T
                s = gram64[0, 0]  # the newest residual's energy: lam is relative to it
                # KKT system of min ||alpha G||^2 / s + lam ||alpha||^2 subject to sum(alpha) = 1
                v = len(hist)
                H = torch.zeros(v + 1, v + 1, dtype=torch.float64)
                H[0, 1:] = H[1:, 0] = 1
                H[1:, 1:] = gram64 / s + lam * torch.eye(v, dtype=torch.float64)
                ref = torch.linalg.solve(H, torch.eye(v + 1, dtype=torch.float64)[0])[1:]
                # the fp32 Gram's rounding is all that separates them (the system is solved in float64)
                torch.testing.assert_close(alpha[b, hist].double(), ref, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alpha.sum(1), torch.ones(B))


def test_bordered_solve_flags_singular_and_non_finite_systems():
    gram = torch.ones(3, 4, 4)  # repeated identical residuals: exactly singular without lam
    gram[1] = float("nan")
    gram[2, :2, :2] = torch.tensor([[1.0, 1 - 1e-7], [1 - 1e-7, 1.0]])  # numerically singular
    alpha, ok = deq.bordered_solve(gram, 3, 0.0)
    assert ok.tolist() == [False, False, False]
    alpha, ok = deq.bordered_solve(torch.ones(1, 4, 4), 3, 1e-4)  # regularised: fine, equal weights
    assert ok.all()
    torch.testing.assert_close(alpha, torch.full((1, 4), 0.25))


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_singular_anderson_history_falls_back_to_plain_steps_instead_of_nan(shift):
    # f(z) = z + shift: every residual identical (shift=1) or zero (shift=0); with lam=0 every
    # bordered system is exactly singular.
    d = torch.full((2, 10), shift)
    z0 = torch.randint(-5, 5, (2, 10)).float()  # integers: z + d - z == d exactly
    z, info = deq.solve(lambda z: z + d, z0, solver="anderson", max_iter=8, lam=0.0, backend="torch")
    assert info["fallback"].tolist() == [7, 7] and not info["nan"].any()
    torch.testing.assert_close(z, z0 + d)  # every f-value has the same residual: the first is kept
    z, info = deq.solve(lambda z: z + d, z0, solver="anderson", max_iter=8, backend="torch")
    assert torch.isfinite(z).all() and (info["fallback"] == 0).all()  # lam regularises both cases


def test_anderson_damping_and_history_options_still_converge():
    f, z_star = linear_problem(n=20, top=0.9)
    for m, tau in ((1, 1.0), (3, 0.5), (8, 0.8)):
        z, info = deq.solve(
            f,
            torch.zeros_like(z_star),
            solver="anderson",
            max_iter=200,
            tol=1e-5,
            stop="rel",
            m=m,
            tau=tau,
            backend="torch",
        )
        assert (info["best_res"] < 1e-5).all(), (m, tau)


# ---------------------------------------------------------------- precision floor and safeguard


def tanh_problem(n=64, batch=3, rho=0.95, seed=0, dtype=torch.float64):
    """f(z) = tanh(z W^T + b) with ||W||_2 = rho: a nonlinear contraction."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=torch.float64)
    W *= rho / torch.linalg.matrix_norm(W, ord=2)
    b = torch.randn(batch, n, generator=g, dtype=torch.float64)
    W, b = W.to(dtype), b.to(dtype)
    return lambda z: torch.tanh(z @ W.T + b)


CONTRACTIONS = {
    "linear": lambda dtype: linear_problem(n=64, batch=3, top=0.95, dtype=dtype)[0],  # the problem
    "tanh": tanh_problem,
}
FLOOR_ITERS = 600


@functools.cache
def floor_traces(problem, dtype):
    """Per solver, the (600, 3) relative-residual trace from z0 = 0 (no early exit), on the torch path."""
    f, z0 = CONTRACTIONS[problem](dtype=dtype), torch.zeros(3, 64, dtype=dtype)
    return {
        s: deq.solve(f, z0, solver=s, max_iter=FLOOR_ITERS, stop="rel", backend="torch")[1]["rel_trace"]
        for s in SOLVERS
    }


def attainable(traces, dtype):
    """Per sample, the lowest relative residual the arithmetic allows: the fixed point's, but at least one
    ulp (plain iteration may land on an exact fixed point of the rounded map, a residual of 0 by luck)."""
    return traces["fixed_point"].amin(0).clamp_min(torch.finfo(dtype).eps)


def first_below(trace, tol):
    """(B,) 1-based index of the first iteration with a residual below tol; len(trace) + 1 if none."""
    hit = trace < tol
    return torch.where(hit.any(0), hit.int().argmax(0) + 1, trace.shape[0] + 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("problem", list(CONTRACTIONS))
def test_anderson_reaches_the_attainable_residual_in_each_dtype(problem, dtype, one_thread):
    traces = floor_traces(problem, dtype)
    best = traces["anderson"].amin(0)
    assert (best <= 10 * attainable(traces, dtype)).all(), (best, traces["fixed_point"].amin(0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("problem", list(CONTRACTIONS))
def test_anderson_is_never_slower_than_the_fixed_point_to_any_tolerance(problem, dtype, one_thread):
    traces = floor_traces(problem, dtype)
    lowest = 10 * attainable(traces, dtype)
    for tol in torch.logspace(0, -17, 69, dtype=torch.float64).tolist():
        reach = {s: first_below(traces[s], tol) for s in SOLVERS}
        slower = (reach["anderson"] > reach["fixed_point"]) & (lowest <= tol)
        assert not slower.any(), (tol, reach)


def test_anderson_converges_to_1e8_in_fewer_iterations_than_the_fixed_point():
    """The issue's call: fp64, tol=1e-8 relative, 400 iterations (Anderson stalled at 1.8e-8 before)."""
    f, z_star = linear_problem(n=64, batch=3, top=0.95, dtype=torch.float64)
    runs = {
        s: deq.solve(
            f, torch.zeros_like(z_star), solver=s, max_iter=400, tol=1e-8, stop="rel", check_every=1, backend="torch"
        )
        for s in SOLVERS
    }
    (z, info), (_, fixed) = runs["anderson"], runs["fixed_point"]
    assert (info["best_res"] < 1e-8).all() and (fixed["best_res"] < 1e-8).all()
    assert (3 * info["nstep"] < fixed["nstep"]).all(), (info["nstep"], fixed["nstep"])
    assert ((z - z_star).norm(dim=1) <= 1e-8 * z_star.norm(dim=1) * 20 / (1 - 0.95)).all()


class GlitchAt:
    """f, except that sample `which` gets `size` added to its output at call `call` (a transient fault)."""

    def __init__(self, f, which, call, size):
        self.f, self.which, self.call, self.size, self.calls = f, which, call, size, 0

    def __call__(self, z):
        out = self.f(z).clone()
        if self.calls == self.call:
            out[self.which] += self.size
        self.calls += 1
        return out


def test_a_step_that_raises_the_residual_restarts_from_the_best_f_value(monkeypatch):
    f, z0, K = tanh_problem(), torch.zeros(3, 64, dtype=torch.float64), 8
    kw = dict(max_iter=100, tol=1e-8, stop="rel", check_every=1, backend="torch")
    rec = Recorder(GlitchAt(f, which=1, call=K, size=10.0))
    _, info = deq.solve(rec, z0, solver="anderson", **kw)
    assert info["restarts"].tolist() == [0, 1, 0] and (info["best_res"] < 1e-8).all()
    # the iterate after the faulty one is the best f-value before it (a plain step from the best iterate),
    best_call = int(info["rel_trace"][:K, 1].argmin())
    assert torch.equal(rec.calls[K + 1][0][1], rec.calls[best_call][1][1])
    # then the history restarts with it: one plain step before mixing resumes
    assert torch.equal(rec.calls[K + 2][0][1], rec.calls[K + 1][1][1])
    assert not torch.equal(rec.calls[K + 3][0][1], rec.calls[K + 2][1][1])
    fixed = deq.solve(GlitchAt(f, 1, K, 10.0), z0, solver="fixed_point", **kw)[1]
    monkeypatch.setattr(deq_anderson, "SAFEGUARD", float("inf"))
    unguarded = deq.solve(GlitchAt(f, 1, K, 10.0), z0, solver="anderson", **kw)[1]
    assert unguarded["restarts"].sum() == 0
    assert info["nstep"][1] < unguarded["nstep"][1] and info["nstep"][1] < fixed["nstep"][1]


# ---------------------------------------------------------------- backends and errors


def test_anderson_passes_receive_the_resolved_backend(monkeypatch):
    seen = []

    def spy(real):
        def wrapped(*args, backend, **kwargs):
            seen.append(backend)
            return real(*args, backend="torch", **kwargs)

        return wrapped

    monkeypatch.setattr(deq_anderson, "anderson_record", spy(deq_anderson.anderson_record))
    monkeypatch.setattr(deq_anderson, "anderson_mix", spy(deq_anderson.anderson_mix))
    monkeypatch.setattr(deq_core.cpp_backend, "cpp_available", lambda device=None, build=False: False)
    f, z_star = linear_problem(n=8)
    _, info = deq.solve(f, z_star, solver="anderson", max_iter=3, backend="triton")  # interpreter is on
    assert seen == ["triton"] * 6 and info["backend"] == "triton"


def test_anderson_triton_passes_agree_with_torch_when_available():
    f, z_star = linear_problem(n=40, batch=2, top=0.9)
    z0 = torch.randn_like(z_star)
    ref, ref_info = deq.solve(f, z0, solver="anderson", max_iter=6, backend="torch")
    try:
        z, info = deq.solve(f, z0, solver="anderson", max_iter=6, backend="triton")
    except NotImplementedError:
        pytest.skip("Triton Anderson passes not written yet")
    torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(info["abs_trace"], ref_info["abs_trace"], rtol=1e-4, atol=1e-5)


def test_cpp_backend_is_used_when_available_and_a_clear_error_when_not(monkeypatch):
    f, z_star = linear_problem(n=8)
    monkeypatch.setattr(deq_core.cpp_backend, "cpp_available", lambda device=None, build=False: False)
    with pytest.raises(BackendUnavailable, match="cpp"):
        deq.solve(f, z_star, max_iter=3, backend="cpp")
    assert deq.solve(f, z_star, max_iter=3, backend="auto")[1]["backend"] == "torch"

    def solve_cpp(f, z0, **options):
        assert options["max_iter"] == 3 and options["m"] == 6 and "backend" not in options
        return z0, {"nstep": torch.zeros(z0.shape[0]), "backend": "cpp"}

    monkeypatch.setattr(deq_core.cpp_backend, "cpp_available", lambda device=None, build=False: True)
    monkeypatch.setattr(deq_core.cpp_backend, "solve_cpp", solve_cpp)
    for backend in ("cpp", "auto"):
        assert deq.solve(f, z_star, max_iter=3, backend=backend)[1]["backend"] == "cpp"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solver="broyden"), "solver"),
        (dict(backend="cuda"), "backend"),
        (dict(stop="max"), "stop"),
        (dict(max_iter=0), "max_iter"),
        (dict(tol=0.0), "tol"),
        (dict(m=0), "m must"),
        (dict(tau=1.5), "tau"),
        (dict(lam=-1.0), "lam"),
        (dict(check_every=0), "check_every"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    f, z_star = linear_problem(n=8)
    with pytest.raises((ValueError, TypeError), match=match):
        deq.solve(f, z_star, **{"max_iter": 3, **kwargs})


def test_f_with_the_wrong_output_shape_is_named():
    with pytest.raises(ValueError, match="f must return"):
        deq.solve(lambda z: z[:, :2], torch.zeros(2, 4), max_iter=2, backend="torch")
    with pytest.raises(TypeError, match="z0"):
        deq.solve(lambda z: z, torch.zeros(2, 4, dtype=torch.int64), max_iter=2)

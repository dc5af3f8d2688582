"""The C++ solver loop (getkern.deq.cpp_backend) against the Python solvers (docs/solvers.md).

On CPU the C++ loop runs the same ATen operations in the same order, so iterates, answers and
statistics must be bitwise equal, not merely close.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from getkern import deq
from getkern._backend import BackendUnavailable
from getkern.deq import cpp_backend

pytestmark = pytest.mark.cpp  # needs the C++ extension (conftest.py)

INFO_TENSORS = (
    "nstep",
    "abs_trace",
    "rel_trace",
    "abs_lowest",
    "rel_lowest",
    "best_res",
    "nan",
    "fallback",
    "restarts",
)


class Recording:
    """A toy contractive map z -> 0.9 tanh(z W^T + c) on (B, 3, 5) states that records its inputs.
    Optionally sample 1 turns NaN from call ``nan_sample_from`` on, or gets 10 added at call ``glitch_at``."""

    def __init__(self, dtype: torch.dtype, seed: int, nan_sample_from: int | None = None, glitch_at: int | None = None):
        g = torch.Generator().manual_seed(seed)
        n = 15
        w = torch.randn(n, n, generator=g, dtype=torch.float64)
        self.w = (w / torch.linalg.matrix_norm(w, ord=2)).to(dtype)
        self.c = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
        self.nan_sample_from, self.glitch_at = nan_sample_from, glitch_at
        self.inputs: list[torch.Tensor] = []

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.inputs.append(z.clone())
        out = 0.9 * torch.tanh(z.reshape(z.shape[0], -1) @ self.w.T + self.c).reshape(z.shape)
        if self.nan_sample_from is not None and len(self.inputs) > self.nan_sample_from:
            out[1] = float("nan")
        if self.glitch_at is not None and len(self.inputs) == self.glitch_at + 1:
            out[1] += 10.0
        return out


def run_both(dtype, seed=0, nan_sample_from=None, glitch_at=None, batch=5, **options):
    z0 = torch.randn(batch, 3, 5, generator=torch.Generator().manual_seed(seed + 100), dtype=dtype)
    f_py, f_cpp = (Recording(dtype, seed, nan_sample_from, glitch_at) for _ in range(2))
    z_py, info_py = deq.solve(f_py, z0, backend="torch", **options)
    z_cpp, info_cpp = deq.solve(f_cpp, z0, backend="cpp", **options)
    return (z_py, info_py, f_py.inputs), (z_cpp, info_cpp, f_cpp.inputs)


def assert_same(py, cpp):
    (z_py, info_py, inputs_py), (z_cpp, info_cpp, inputs_cpp) = py, cpp
    assert info_cpp["backend"] == "cpp" and info_py["backend"] == "torch"
    assert info_cpp.keys() == info_py.keys()
    assert len(inputs_cpp) == len(inputs_py) == info_py["nfev"] == info_cpp["nfev"]
    for a, b in zip(inputs_cpp, inputs_py):  # every iterate f was evaluated at
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(z_cpp, z_py, rtol=0, atol=0, equal_nan=True)
    for key in INFO_TENSORS:
        assert info_cpp[key].dtype == info_py[key].dtype, key
        torch.testing.assert_close(info_cpp[key], info_py[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert info_cpp["solver"] == info_py["solver"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
@pytest.mark.parametrize("tol,stop,check_every", [(None, "abs", 4), (1e-4, "abs", 1), (1e-3, "rel", 3)])
def test_matches_python(dtype, solver, tol, stop, check_every):
    py, cpp = run_both(dtype, solver=solver, max_iter=25, tol=tol, stop=stop, check_every=check_every, m=4, tau=0.7)
    assert_same(py, cpp)
    if tol is not None:  # the early exit was reached, so the trimming and the check were exercised
        assert py[1]["abs_trace"].shape[0] < 25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stop", ["abs", "rel"])
def test_matches_python_down_to_the_precision_floor(dtype, stop):
    """Long enough to reach the rounding floor (where fp64 samples start to restart)."""
    py, cpp = run_both(dtype, solver="anderson", max_iter=80, tol=None, stop=stop, m=6)
    assert_same(py, cpp)
    assert (cpp[1]["rel_lowest"] < 10 * torch.finfo(dtype).eps).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_safeguard_restart_matches_python(dtype, tau):
    """A transient fault in f: the rejected step, the jump to the best iterate and the restarted history."""
    py, cpp = run_both(dtype, glitch_at=6, solver="anderson", max_iter=20, tol=None, m=4, tau=tau)
    assert_same(py, cpp)
    assert cpp[1]["restarts"].tolist() == [0, 1, 0, 0, 0]


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_nan_sample(solver):
    py, cpp = run_both(torch.float32, solver=solver, nan_sample_from=3, max_iter=10, tol=1e-3, check_every=2)
    assert_same(py, cpp)
    info = cpp[1]
    assert info["nan"].tolist() == [False, True, False, False, False]
    assert torch.isfinite(cpp[0]).all()


def test_singular_history_falls_back():
    """f(z) = z + d: identical residuals, with lam=0 an exactly singular bordered system every step
    (d holds powers of two, so z + d - z == d exactly along the plain steps)."""
    d = torch.tensor([0.5, 1.0, 0.25, 2.0] * 3).view(1, 3, 4)
    z0 = torch.zeros(3, 3, 4)
    results = [
        deq.solve(lambda z: z + d, z0, solver="anderson", max_iter=7, lam=0.0, m=3, backend=b) for b in ("torch", "cpp")
    ]
    (z_py, info_py), (z_cpp, info_cpp) = results
    assert info_cpp["fallback"].tolist() == [6, 6, 6]
    torch.testing.assert_close(z_cpp, z_py, rtol=0, atol=0)
    torch.testing.assert_close(info_cpp["abs_trace"], info_py["abs_trace"], rtol=0, atol=0)
    assert not info_cpp["nan"].any()


def test_f_errors_propagate():
    z0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="z0's shape"):
        deq.solve(lambda z: z[:, :2], z0, max_iter=3, backend="cpp")

    def boom(z):
        raise KeyError("inside f")

    with pytest.raises(KeyError, match="inside f"):
        deq.solve(boom, z0, max_iter=3, backend="cpp")
    with pytest.raises(RuntimeError, match="max_iter"):
        cpp_backend.solve_cpp(lambda z: z, z0, max_iter=0)


def test_auto_prefers_cpp():
    _, info = deq.solve(lambda z: 0.5 * z, torch.ones(2, 3), max_iter=3, backend="auto")
    assert info["backend"] == "cpp"


def test_failed_build_warns_once_and_cpp_raises(monkeypatch):
    """A build that fails: "auto" warns once and runs the Python loop; an explicit "cpp" is an error
    naming the cause."""
    from getkern import _extension

    def failing_build(**kwargs):
        raise _extension.ExtensionError("no compiler (simulated)")

    monkeypatch.setattr(cpp_backend, "_loaded", None)
    monkeypatch.setattr(cpp_backend, "_failure", None)
    monkeypatch.setattr(_extension, "build", failing_build)
    monkeypatch.setattr(_extension, "cached", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info1 = deq.solve(lambda z: 0.5 * z, torch.ones(2, 3), max_iter=3, backend="auto")
        _, info2 = deq.solve(lambda z: 0.5 * z, torch.ones(2, 3), max_iter=3, backend="auto")
    assert info1["backend"] == info2["backend"] == "torch"
    assert len([w for w in caught if "simulated" in str(w.message)]) == 1
    with pytest.raises(BackendUnavailable, match="cpp"):
        deq.solve(lambda z: 0.5 * z, torch.ones(2, 3), max_iter=3, backend="cpp")


def test_auto_never_compiles(monkeypatch):
    """Without a cached build "auto" takes the Python loop at once; it never starts a compiler."""
    from getkern import _extension

    def build(**kwargs):
        raise AssertionError("auto started a build")

    monkeypatch.setattr(cpp_backend, "_loaded", None)
    monkeypatch.setattr(cpp_backend, "_failure", None)
    monkeypatch.setattr(_extension, "build", build)
    monkeypatch.setattr(_extension, "cached", lambda: False)
    assert deq.solve(lambda z: 0.5 * z, torch.ones(2, 3), max_iter=3, backend="auto")[1]["backend"] == "torch"

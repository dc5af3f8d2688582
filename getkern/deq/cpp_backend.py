"""The C++ solver loop (getkern._C, csrc/solver.cpp): ``getkern.deq.solve(..., backend="cpp")``.

Same algorithm, options, results and info dict as the Python solvers (docs/solvers.md); the loop and
all its bookkeeping run in C++ (ATen) and Python is entered only to evaluate ``f``. On CPU the results
equal the Python loop's bitwise (same ATen operations in the same order). See docs/cpp.md.
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import torch

Tensor = torch.Tensor


@functools.lru_cache(maxsize=None)
def _extension():
    """getkern._C, or None when it was not built (getkern works without it)."""
    try:
        from getkern import _C
    except ImportError as error:
        warnings.warn(f"getkern._C (the C++ solver loop) is not built ({error}); solvers fall back to the "
                      "Python loop. Build it with `pip install --no-build-isolation -e .` (docs/cpp.md).",
                      RuntimeWarning, stacklevel=3)
        return None
    if not hasattr(_C, "solve"):  # an older build of the extension: rebuild
        warnings.warn("getkern._C is out of date (no solver loop); solvers fall back to the Python loop. "
                      "Rebuild with `pip install --no-build-isolation -e .` (docs/cpp.md).",
                      RuntimeWarning, stacklevel=3)
        return None
    return _C


def cpp_available(device: torch.device | str | None = None) -> bool:
    """Whether the C++ loop can run (for tensors on ``device``, when given: CUDA needs the CUDA build).

    Warns once per process when the extension is not built.
    """
    ext = _extension()
    if ext is None:
        return False
    if device is not None and torch.device(device).type == "cuda":
        return bool(ext.with_cuda)
    return device is None or torch.device(device).type == "cpu"


def solve_cpp(f: Callable[[Tensor], Tensor], z0: Tensor, *, solver: str = "fixed_point", max_iter: int,
              tol: float | None = None, stop: str = "abs", m: int = 6, lam: float = 1e-4, tau: float = 1.0,
              check_every: int = 4) -> tuple[Tensor, dict]:
    """``getkern.deq.solve`` in the C++ loop. f: (B, ...) -> (B, ...) of z0's shape (any callable,
    including a captured CUDA graph from :mod:`getkern.deq.cuda_graph`). Returns (z_star, info) with
    z_star of z0's shape and dtype and the info dict of docs/solvers.md (``backend="cpp"``).
    Forward only: no autograd graph is built (gradients come from ``train_iterates``).
    """
    ext = _extension()
    if ext is None:
        from getkern._backend import BackendUnavailable
        raise BackendUnavailable("solve_cpp: getkern._C is not built; install with "
                                 "`pip install --no-build-isolation -e .` or use backend='torch'")
    if z0.is_cuda and not ext.with_cuda:
        from getkern._backend import BackendUnavailable
        raise BackendUnavailable("solve_cpp: getkern._C was built without its CUDA part; rebuild with a CUDA "
                                 "toolkit (docs/cpp.md) or use backend='torch'")
    with torch.no_grad():
        z, info = ext.solve(f, z0, solver=solver, max_iter=max_iter, tol=tol, stop=stop, m=m, lam=lam, tau=tau,
                            check_every=check_every)
    return z, {"solver": solver, "backend": "cpp", **info}

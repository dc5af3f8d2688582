"""The C++ solver loop (getkern/csrc/solver.cpp, compiled by getkern/_extension.py):
``getkern.deq.solve(..., backend="cpp")``.

Same algorithm, options, results and info dict as the Python solvers (docs/solvers.md); the loop and
all its bookkeeping run in C++ (ATen) and Python is entered only to evaluate ``f``. On CPU the results
equal the Python loop's bitwise (same ATen operations in the same order). See docs/cpp.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from getkern import _extension as _extension_mod
from getkern._backend import BackendUnavailable

Tensor = torch.Tensor


_loaded = None
_failure: str | None = None


def _extension(build: bool):
    """The compiled extension, or None. ``build``: compile it now if it is not in the cache (explicit
    ``backend="cpp"``); "auto" only takes a build that is already there, so ``model(noise)`` never
    starts a compiler behind the user's back. A failed build or load warns once and is not retried."""
    global _loaded, _failure
    if _loaded is not None or _failure is not None:
        return _loaded
    if not build and not _extension_mod.cached():
        return None
    try:
        _loaded = _extension_mod.build()
    except _extension_mod.ExtensionError as error:
        _failure = str(error)
        warnings.warn(
            f"the C++ solver loop is unavailable ({error}); solvers use the Python loop", RuntimeWarning, stacklevel=3
        )
    return _loaded


def cpp_available(device: torch.device | str | None = None, *, build: bool = False) -> bool:
    """Whether the C++ loop can run (for tensors on ``device``, when given: CUDA needs the CUDA part).
    ``build=True`` compiles the extension first if needed (once; getkern/_extension.py)."""
    ext = _extension(build)
    if ext is None:
        return False
    if device is not None and torch.device(device).type == "cuda":
        return bool(ext.with_cuda)
    return device is None or torch.device(device).type == "cpu"


def solve_cpp(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    *,
    solver: str = "fixed_point",
    max_iter: int,
    tol: float | None = None,
    stop: str = "abs",
    m: int = 6,
    lam: float = 1e-4,
    tau: float = 1.0,
    check_every: int = 4,
) -> tuple[Tensor, dict]:
    """``getkern.deq.solve`` in the C++ loop. f: (B, ...) -> (B, ...) of z0's shape (any callable,
    including a captured CUDA graph from :mod:`getkern.deq.cuda_graph`). Returns (z_star, info) with
    z_star of z0's shape and dtype and the info dict of docs/solvers.md (``backend="cpp"``).
    Forward only: no autograd graph is built (gradients come from ``train_iterates``).
    """
    ext = _extension(build=True)
    if ext is None:
        raise BackendUnavailable(
            f"solve_cpp: the C++ extension could not be built or loaded ({_failure}); use backend='torch'"
        )
    if z0.is_cuda and not ext.with_cuda:
        raise BackendUnavailable(
            "solve_cpp: the C++ extension was built without its CUDA part "
            f"({_extension_mod.plan().why_no_cuda}); use backend='torch'"
        )
    with torch.no_grad():
        z, info = ext.solve(
            f, z0, solver=solver, max_iter=max_iter, tol=tol, stop=stop, m=m, lam=lam, tau=tau, check_every=check_every
        )
    return z, {"solver": solver, "backend": "cpp", **info}

"""``solve``: argument checks, flattening to (B, n), backend routing, then the chosen solver."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from getkern._backend import BackendUnavailable, resolve_backend, triton_can_run
from getkern.deq import cpp_backend
from getkern.deq.anderson import anderson
from getkern.deq.fixed_point import fixed_point
from getkern.errors import UsageError

Tensor = torch.Tensor

SOLVERS = ("fixed_point", "anderson")
SOLVER_BACKENDS = ("auto", "torch", "triton", "cpp")
STOPS = ("abs", "rel")


def solve(
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
    backend: str = "auto",
) -> tuple[Tensor, dict]:
    """Find z* = f(z*) from z0 without building an autograd graph.

    f: maps a tensor of z0's shape (B, ...) to one of the same shape (its dtype is cast to z0's).
    Returns (z_star, info): z_star has z0's shape and dtype and is, per sample, the f-value with the
    lowest ``stop`` residual seen (z0 if none was finite); info holds per-sample statistics
    (docs/solvers.md). ``tol=None`` runs exactly ``max_iter`` iterations with no host synchronisation;
    otherwise the early-exit test is read every ``check_every`` iterations. ``m``, ``lam``, ``tau``
    configure Anderson (history, relative regularisation, damping). ``backend``: "auto" | "torch" |
    "triton" (Anderson memory passes) | "cpp" (the C++ loop).
    """
    _check_args(
        f,
        z0,
        solver=solver,
        max_iter=max_iter,
        tol=tol,
        stop=stop,
        m=m,
        lam=lam,
        tau=tau,
        check_every=check_every,
        backend=backend,
    )
    options = dict(solver=solver, max_iter=max_iter, tol=tol, stop=stop, m=m, lam=lam, tau=tau, check_every=check_every)
    if backend == "cpp" and torch.compiler.is_compiling():
        raise BackendUnavailable(
            "deq.solve: the C++ loop cannot be traced by torch.compile; use backend='auto' "
            "(the Python loop while compiling) or 'torch'"
        )
    if backend in ("auto", "cpp") and not torch.compiler.is_compiling():  # compiled: the traceable Python loop
        if cpp_backend.cpp_available(z0.device, build=backend == "cpp") and not _fused_anderson_first(
            backend, solver, z0
        ):
            with torch.no_grad():
                z, info = cpp_backend.solve_cpp(f, z0, **options)
            return z, info
        if backend == "cpp":
            raise BackendUnavailable(
                f"deq.solve: backend='cpp' requested but the C++ solver loop cannot run on "
                f"{z0.device.type} tensors here (see the warning above, docs/cpp.md); "
                "use backend='torch' or 'auto'"
            )
        backend = "auto"

    shape, dtype = z0.shape, z0.dtype
    flat = z0.detach().reshape(shape[0], -1).contiguous()

    def f_flat(z: Tensor) -> Tensor:
        out = f(z.view(shape))
        if not isinstance(out, torch.Tensor) or out.shape != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UsageError(f"f must return a tensor of z0's shape {tuple(shape)}, got {got}")
        return out.reshape(flat.shape).to(dtype)

    with torch.no_grad():
        if solver == "fixed_point":
            resolve_backend(backend, z0.device, op="deq.fixed_point")  # validates an explicit "triton"
            z, info = fixed_point(f_flat, flat, max_iter=max_iter, tol=tol, stop=stop, check_every=check_every)
        else:
            path = resolve_backend(backend, z0.device, op="deq.anderson")
            z, info = anderson(
                f_flat,
                flat,
                max_iter=max_iter,
                tol=tol,
                stop=stop,
                check_every=check_every,
                m=m,
                lam=lam,
                tau=tau,
                backend=path,
            )
    return z.view(shape), info


def _fused_anderson_first(backend: str, solver: str, z0: Tensor) -> bool:
    """ "auto" on CUDA runs Anderson in the Python loop with the fused Triton passes (3 launches, 1.004x
    their byte floor) rather than the C++ loop's unfused ATen passes (2.8x the floor's bytes in fp32,
    6.1x in bf16; docs/anderson.md). Fixed point stays in the C++ loop (no history to move: its
    launches and host round trips are all there is to save). Reasoning and figures: docs/defaults.md."""
    return backend == "auto" and solver == "anderson" and z0.is_cuda and triton_can_run(z0.device)


def _check_args(f, z0, *, solver, max_iter, tol, stop, m, lam, tau, check_every, backend) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(z0, torch.Tensor):
        raise TypeError(f"z0 must be a torch.Tensor, got {type(z0).__name__}")
    if z0.dim() < 1 or z0.shape[0] == 0 or z0.numel() == 0:
        raise UsageError(f"z0 must have shape (B, ...) with B >= 1 and no empty dimension, got {tuple(z0.shape)}")
    if not z0.is_floating_point():
        raise TypeError(f"z0 must be a floating-point tensor, got {z0.dtype}")
    if solver not in SOLVERS:
        raise UsageError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if backend not in SOLVER_BACKENDS:
        raise UsageError(f"backend must be one of {SOLVER_BACKENDS}, got {backend!r}")
    if stop not in STOPS:
        raise UsageError(f"stop must be one of {STOPS}, got {stop!r}")
    for name, value in (("max_iter", max_iter), ("m", m), ("check_every", check_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    if tol is not None and not 0 < tol < math.inf:
        raise UsageError(f"tol must be None or a finite number > 0, got {tol!r}")
    if not 0 <= lam < math.inf:
        raise UsageError(f"lam must be a finite number >= 0, got {lam!r}")
    if not 0 < tau <= 1:
        raise UsageError(f"tau must lie in (0, 1], got {tau!r}")

"""Training iterates with gradients: unrolled (reference recipe), phantom, implicit (adjoint fixed point)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from getkern.deq.core import SOLVERS, solve
from getkern.deq.stats import SolverStats
from getkern.ops.anderson import REL_EPS

Tensor = torch.Tensor

GRADS = ("unrolled", "phantom", "implicit")


def train_iterates(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    *,
    iters: int,
    grad: str = "unrolled",
    solver: str = "fixed_point",
    tol: float | None = None,
    stop: str = "abs",
    backend: str = "auto",
    phantom_steps: int = 3,
    phantom_damping: float = 0.8,
    adjoint_solver: str | None = None,
    adjoint_max_iter: int = 40,
    adjoint_tol: float | None = 1e-6,
    recompute: bool = True,
    **solver_options,
) -> tuple[list[Tensor], dict]:
    """States to decode for the fixed-point-correction loss, with gradients from ``grad``.

    - "unrolled": [f(z0), f(f(z0)), ...] (``iters`` states), autograd through every step.
    - "phantom": solve (no graph, ``iters`` iterations), then ``phantom_steps`` damped steps
      z <- (1 - phantom_damping) z + phantom_damping f(z) with autograd; those steps are the states.
    - "implicit": solve (no graph), then [f(z*)] whose backward solves the adjoint fixed point
      g = J^T g + v (``adjoint_solver``, default ``solver``; ``adjoint_max_iter``, ``adjoint_tol``).
      With ``recompute`` (default) f(z*) keeps no activations between forward and backward: backward
      runs f once more for the adjoint's vector-Jacobian products and once more (activation
      checkpointing) to carry the result into f's parameters, so activation memory is that of the
      rest of the model plus z* whatever the iteration count. ``recompute=False`` keeps f(z*)'s graph.
    Every state has z0's shape. ``solver_options`` (m, lam, tau, check_every) go to :func:`solve`.
    info is the forward solve's statistics plus "grad"; for "implicit" the adjoint solve's statistics
    appear under info["adjoint"] once backward has run.
    """
    if grad not in GRADS:
        raise ValueError(f"grad must be one of {GRADS}, got {grad!r}")
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, got {iters!r}")
    if grad == "unrolled":
        if solver != "fixed_point":
            raise ValueError(
                f"grad='unrolled' backpropagates through plain fixed-point steps (the reference "
                f"recipe); solver={solver!r} needs grad='phantom' or 'implicit'"
            )
        states, info = _unrolled(f, z0, iters, stop)
        return states, {**info, "grad": grad}

    z_star, info = solve(f, z0, solver=solver, max_iter=iters, tol=tol, stop=stop, backend=backend, **solver_options)
    info["grad"] = grad
    if grad == "phantom":
        if not isinstance(phantom_steps, int) or phantom_steps < 1:
            raise ValueError(f"phantom_steps must be an integer >= 1, got {phantom_steps!r}")
        if not 0 < phantom_damping <= 1:
            raise ValueError(f"phantom_damping must lie in (0, 1], got {phantom_damping!r}")
        states, z = [], z_star
        for _ in range(phantom_steps):
            z = torch.lerp(z, f(z), phantom_damping)
            states.append(z)
        return states, info

    adjoint_solver = solver if adjoint_solver is None else adjoint_solver
    if adjoint_solver not in SOLVERS:
        raise ValueError(f"adjoint_solver must be one of {SOLVERS}, got {adjoint_solver!r}")
    adjoint = dict(
        solver=adjoint_solver, max_iter=adjoint_max_iter, tol=adjoint_tol, stop=stop, backend=backend, **solver_options
    )
    z_leaf = z_star.detach().requires_grad_()
    with torch.enable_grad():
        fz = checkpoint(f, z_leaf, use_reentrant=False) if recompute else f(z_leaf)
    return [_ImplicitGradient.apply(fz, z_leaf, f if recompute else None, adjoint, info)], info


class _ImplicitGradient(torch.autograd.Function):
    """Identity on fz = f(z*) forward; backward maps v to the adjoint fixed point g = J^T g + v.

    J = df/dz at z*, applied as vector-Jacobian products on a one-step graph fz(z_leaf): the saved one,
    or, when ``f`` is given (recompute), one rebuilt here and freed on return. The autograd engine
    then carries g from fz into f's parameters and inputs.
    """

    @staticmethod
    def forward(
        ctx, fz: Tensor, z_leaf: Tensor, f: Callable[[Tensor], Tensor] | None, adjoint: dict, info: dict
    ) -> Tensor:
        ctx.save_for_backward(fz, z_leaf)
        ctx.f, ctx.adjoint, ctx.info = f, adjoint, info
        return fz.detach().clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, v: Tensor):
        fz, z_leaf = ctx.saved_tensors
        if ctx.f is not None:
            z_leaf = z_leaf.detach().requires_grad_()
            with torch.enable_grad():
                fz = ctx.f(z_leaf)

        def adjoint_map(g: Tensor) -> Tensor:
            (vjp,) = torch.autograd.grad(fz, z_leaf, g, retain_graph=True)
            return vjp + v

        g, ctx.info["adjoint"] = solve(adjoint_map, torch.zeros_like(v), **ctx.adjoint)
        return g, None, None, None, None


def _unrolled(f: Callable[[Tensor], Tensor], z0: Tensor, iters: int, stop: str) -> tuple[list[Tensor], dict]:
    """The reference's training iterates, with the same statistics as a fixed-point solve."""
    B = z0.shape[0]
    stats = SolverStats(
        B, z0.device, max_iter=iters, tol=None, stop=stop, check_every=1, solver="fixed_point", backend="torch"
    )
    best_res = torch.full((B,), float("inf"), dtype=torch.float32, device=z0.device)
    states, z = [], z0
    for k in range(iters):
        fz = f(z)
        with torch.no_grad():
            abs_res = (fz - z).reshape(B, -1).float().norm(dim=1)
            rel_res = abs_res / (fz.reshape(B, -1).float().norm(dim=1) + REL_EPS)
            res = stats.observe(k, abs_res, rel_res)
            best_res = torch.where(res < best_res, res, best_res)
        states.append(fz)
        z = fz
    return states, stats.info(best_res)

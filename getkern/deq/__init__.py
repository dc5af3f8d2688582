"""DEQ solvers and gradients (placeholder: reference fixed point + unrolled; see issue #3)."""
from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor


def solve(f: Callable[[Tensor], Tensor], z0: Tensor, *, solver: str = "fixed_point", max_iter: int = 6,
          tol: float | None = None, stop: str = "abs", **_unused) -> tuple[Tensor, dict]:
    """Plain fixed-point iteration; returns the per-sample lowest-residual f-value and statistics."""
    if solver != "fixed_point":
        raise NotImplementedError(solver)
    B = z0.shape[0]
    x, best = z0, z0
    lowest = torch.full((B,), float("inf"), device=z0.device)
    trace = []
    for _ in range(max_iter):
        fx = f(x)
        r = (fx - x).flatten(1).norm(dim=1)
        better = r < lowest
        best = torch.where(better.view(-1, *[1] * (z0.dim() - 1)), fx, best)
        lowest = torch.where(better, r, lowest)
        trace.append(r)
        x = fx
        if tol is not None and bool((r < tol).all()):
            break
    return best, {"abs_trace": torch.stack(trace), "abs_lowest": lowest, "nstep": len(trace)}


def train_iterates(f: Callable[[Tensor], Tensor], z0: Tensor, *, iters: int = 6, grad: str = "unrolled",
                   **_unused) -> tuple[list[Tensor], dict]:
    """Unrolled iterates f(z0), f(f(z0)), ... with autograd, for the fixed-point-correction loss."""
    if grad != "unrolled":
        raise NotImplementedError(grad)
    out, z = [], z0
    for _ in range(iters):
        z = f(z)
        out.append(z)
    return out, {"nstep": iters}

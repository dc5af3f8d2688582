"""Plain fixed-point iteration: exactly the reference GET's inference procedure."""

from __future__ import annotations

from collections.abc import Callable

import torch

from getkern.deq.stats import SolverStats
from getkern.ops.anderson import REL_EPS

Tensor = torch.Tensor


def fixed_point(
    f: Callable[[Tensor], Tensor], z0: Tensor, *, max_iter: int, tol: float | None, stop: str, check_every: int
) -> tuple[Tensor, dict]:
    """x_0 = z0; fx_k = f(x_k); x_{k+1} = fx_k. z0: (B, n) contiguous; f maps (B, n) -> (B, n).

    Returns the per-sample lowest-residual f-value (B, n) and the info dict.
    """
    B = z0.shape[0]
    stats = SolverStats(
        B,
        z0.device,
        max_iter=max_iter,
        tol=tol,
        stop=stop,
        check_every=check_every,
        solver="fixed_point",
        backend="torch",
    )
    best = z0.clone()
    best_res = torch.full((B,), float("inf"), dtype=torch.float32, device=z0.device)
    x = z0
    for k in range(max_iter):
        fx = f(x)
        abs_res = (fx - x).float().norm(dim=1)
        rel_res = abs_res / (fx.float().norm(dim=1) + REL_EPS)
        res = stats.observe(k, abs_res, rel_res)
        improved = res < best_res
        best = torch.where(improved.unsqueeze(1), fx, best)
        best_res = torch.where(improved, res, best_res)
        x = fx
        if stats.should_break(k):
            break
    return best, stats.info(best_res)

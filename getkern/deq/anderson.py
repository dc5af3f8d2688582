"""Anderson acceleration over the two memory passes of getkern.ops.anderson, with a guarded bordered solve."""
from __future__ import annotations

from typing import Callable

import torch

from getkern.deq.stats import SolverStats
from getkern.ops.anderson import anderson_mix, anderson_record

Tensor = torch.Tensor

ALPHA_MAX = 1e4  # sum |alpha| beyond this means the system was numerically singular: fall back
FLT_MIN = torch.finfo(torch.float32).tiny


def anderson(f: Callable[[Tensor], Tensor], z0: Tensor, *, max_iter: int, tol: float | None, stop: str,
             check_every: int, m: int, lam: float, tau: float, backend: str) -> tuple[Tensor, dict]:
    """Anderson(m) with damping tau. z0: (B, n) contiguous; f maps (B, n) -> (B, n) in z0's dtype.

    ``backend`` is the resolved pass implementation ("torch" or "triton"). Returns the per-sample
    lowest-residual f-value (B, n) and the info dict.
    """
    B, n = z0.shape
    dev = z0.device
    stats = SolverStats(B, dev, max_iter=max_iter, tol=tol, stop=stop, check_every=check_every,
                        solver="anderson", backend=backend)
    F = torch.zeros(B, m, n, dtype=z0.dtype, device=dev)
    G = torch.zeros_like(F)
    gram = torch.zeros(B, m, m, dtype=torch.float32, device=dev)
    best = z0.clone()
    best_res = torch.full((B,), float("inf"), dtype=torch.float32, device=dev)
    z = z0
    for k in range(max_iter):
        fz = f(z).contiguous()
        abs_res, rel_res = anderson_record(fz, z, F, G, gram, k, backend=backend)
        res = stats.observe(k, abs_res, rel_res)
        plain = _one_hot(k % m, B, m, dev)
        if k == 0:  # the plain first step (torchdeq: X_1 = f(X_0)); mixing starts with two entries
            alpha = plain
        else:
            alpha, ok = bordered_solve(gram, k, lam)
            alpha = torch.where(ok.unsqueeze(1), alpha, plain).contiguous()
            stats.fallback += (~ok).int()
        z = anderson_mix(F, G, alpha, tau, k=k, res=res, best=best, best_res=best_res, backend=backend)
        if stats.should_break(k):
            break
    return best, stats.info(best_res)


def bordered_solve(gram: Tensor, k: int, lam: float) -> tuple[Tensor, Tensor]:
    """Mixing weights after iteration k from the (B, m, m) fp32 Gram of the residual ring.

    Solves, per sample, [[0, 1^T], [1, gram/s + lam I]] [nu; alpha] = [1; 0] over the valid slots
    (s = largest valid diagonal entry, so lam is relative), unused slots pinned to alpha = 0.
    Returns alpha (B, m) fp32 and ok (B,) bool: False where the solve was singular, non-finite or
    extrapolated beyond ALPHA_MAX (the caller then takes a plain step for that sample).
    """
    B, m, _ = gram.shape
    dev = gram.device
    valid = torch.arange(m, device=dev) < min(k + 1, m)                        # (m,)
    pair = valid.unsqueeze(1) & valid.unsqueeze(0)                             # (m, m)
    diag = torch.diagonal(gram, dim1=1, dim2=2)                                 # (B, m)
    scale = torch.where(valid, diag, torch.zeros_like(diag)).amax(1).clamp_min(FLT_MIN)  # NaN stays NaN
    inner = torch.where(pair, gram / scale.view(B, 1, 1), torch.zeros_like(gram))
    inner = inner + torch.diag(torch.where(valid, lam, 1.0))
    border = valid.to(torch.float32).expand(B, m)
    H = torch.zeros(B, m + 1, m + 1, dtype=torch.float32, device=dev)
    H[:, 0, 1:] = border
    H[:, 1:, 0] = border
    H[:, 1:, 1:] = inner
    rhs = torch.zeros(B, m + 1, dtype=torch.float32, device=dev)
    rhs[:, 0] = 1.0
    sol, status = torch.linalg.solve_ex(H, rhs)
    alpha = torch.where(valid, sol[:, 1:], torch.zeros_like(sol[:, 1:]))
    ok = (status == 0) & torch.isfinite(alpha).all(1) & (alpha.abs().sum(1) <= ALPHA_MAX)
    return alpha.contiguous(), ok


def _one_hot(slot: int, batch: int, m: int, device: torch.device) -> Tensor:
    alpha = torch.zeros(batch, m, dtype=torch.float32, device=device)
    alpha[:, slot] = 1.0
    return alpha

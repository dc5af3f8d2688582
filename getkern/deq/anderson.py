"""Anderson acceleration over the two memory passes of getkern.ops.anderson, with a guarded bordered
solve and a safeguarded step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from getkern.deq.stats import SolverStats
from getkern.ops.anderson import anderson_mix, anderson_record

Tensor = torch.Tensor

ALPHA_MAX = 1e4  # sum |alpha| beyond this means the system was numerically singular: fall back
FLT_MIN = torch.finfo(torch.float32).tiny
SAFEGUARD = 8.0  # a residual above this times the best so far rejects the step (a power of two: exact in fp32)


def anderson(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    *,
    max_iter: int,
    tol: float | None,
    stop: str,
    check_every: int,
    m: int,
    lam: float,
    tau: float,
    backend: str,
) -> tuple[Tensor, dict]:
    """Anderson(m) with damping tau. z0: (B, n) contiguous; f maps (B, n) -> (B, n) in z0's dtype.

    ``backend`` is the resolved pass implementation ("torch" or "triton"). Returns the per-sample
    lowest-residual f-value (B, n) and the info dict.
    """
    B, n = z0.shape
    dev = z0.device
    stats = SolverStats(
        B, dev, max_iter=max_iter, tol=tol, stop=stop, check_every=check_every, solver="anderson", backend=backend
    )
    F = torch.zeros(B, m, n, dtype=z0.dtype, device=dev)
    G = torch.zeros_like(F)
    gram = torch.zeros(B, m, m, dtype=torch.float32, device=dev)
    best = z0.clone()
    best_res = torch.full((B,), float("inf"), dtype=torch.float32, device=dev)
    since = torch.zeros(B, dtype=torch.int64, device=dev)  # iteration each sample's history starts at
    z = z0
    for k in range(max_iter):
        fz = f(z).contiguous()
        abs_res, rel_res = anderson_record(fz, z, F, G, gram, k, backend=backend)
        res = stats.observe(k, abs_res, rel_res)
        # Safeguard, per sample on the device: an iterate whose residual is not below SAFEGUARD x the
        # best one (or NaN) rejects the step that made it; the sample restarts from its best f-value
        # with an empty history. Judged on the live residual (res is +inf once the batch has stopped).
        restart = ~((abs_res if stop == "abs" else rel_res) <= SAFEGUARD * best_res)
        stats.restarts += restart.int()
        plain = _one_hot(k % m, B, m, dev)
        if k == 0:  # the plain first step (torchdeq: X_1 = f(X_0)); mixing starts with two entries
            alpha = plain
        else:
            depth = (k + 1 - since).clamp_max(min(k + 1, m))
            alpha, ok = bordered_solve(gram, k, lam, depth=depth)
            alpha = torch.where(ok.unsqueeze(1), alpha, plain).contiguous()
            stats.fallback += (~ok).int()
        since = torch.where(restart, k + 1, since)
        z = anderson_mix(F, G, alpha, tau, k=k, res=res, best=best, best_res=best_res, restart=restart, backend=backend)
        if stats.should_break(k):
            break
    return best, stats.info(best_res)


def bordered_solve(gram: Tensor, k: int, lam: float, *, depth: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mixing weights after iteration k from the (B, m, m) fp32 Gram of the residual ring.

    A sample's history is its ``depth`` (B,) int64 newest ring entries (default, and at most,
    min(k + 1, m)): slot i holds one iff (k - i) mod m < depth. Solves, per sample in float64,
    [[0, 1^T], [1, gram/s + lam I]] [nu; alpha] = [1; 0] over those slots (s = the newest residual's
    energy gram[k % m, k % m], so lam is relative to it), other slots pinned to alpha = 0.
    Returns alpha (B, m) fp32 and ok (B,) bool: False where the solve was singular, non-finite or
    extrapolated beyond ALPHA_MAX (the caller then takes a plain step for that sample).
    """
    B, m, _ = gram.shape
    dev = gram.device
    slot = k % m
    depth = torch.full((B,), min(k + 1, m), device=dev) if depth is None else depth
    age = (slot - torch.arange(m, device=dev)) % m  # (m,): iterations since written
    valid = age.unsqueeze(0) < depth.unsqueeze(1)  # (B, m)
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)  # (B, m, m)
    gram64 = gram.double()
    scale = gram64[:, slot, slot].clamp_min(FLT_MIN)  # NaN stays NaN
    inner = torch.where(pair, gram64 / scale.view(B, 1, 1), torch.zeros_like(gram64))
    reg = torch.full((B, m), lam, dtype=torch.float64, device=dev).masked_fill_(~valid, 1.0)  # lam exact
    inner = inner + torch.diag_embed(reg)
    border = valid.double()
    H = torch.zeros(B, m + 1, m + 1, dtype=torch.float64, device=dev)
    H[:, 0, 1:] = border
    H[:, 1:, 0] = border
    H[:, 1:, 1:] = inner
    rhs = torch.zeros(B, m + 1, dtype=torch.float64, device=dev)
    rhs[:, 0] = 1.0
    sol, status = torch.linalg.solve_ex(H, rhs)
    alpha = torch.where(valid, sol[:, 1:], torch.zeros_like(sol[:, 1:])).float()
    ok = (status == 0) & torch.isfinite(alpha).all(1) & (alpha.abs().sum(1) <= ALPHA_MAX)
    return alpha.contiguous(), ok


def _one_hot(slot: int, batch: int, m: int, device: torch.device) -> Tensor:
    alpha = torch.zeros(batch, m, dtype=torch.float32, device=device)
    alpha[:, slot] = 1.0
    return alpha

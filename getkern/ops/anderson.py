"""The two memory passes of one Anderson iteration (the tiny bordered solve between them is elsewhere).

State layout, per sample b (flattened state of n elements, state dtype fp32/bf16/fp16):
  F: (B, m, n) ring of f-values, G: (B, m, n) ring of residuals g = f(z) - z, slot = k % m;
  gram: (B, m, m) fp32, gram[b, i, j] = <G[b, i], G[b, j]> over the valid slots i, j < min(k + 1, m).
Keeping G beside F (rather than X) is what lets the Gram row come from the same pass that writes g.
All arithmetic uses the stored (state-dtype-rounded) values, accumulated in fp32.

Pass 1, :func:`anderson_record`: write fz, g into slot; fill the Gram row/column of that slot;
  return the per-sample residual norms.
Pass 2, :func:`anderson_mix`: z_next = sum_i alpha_i (F_i - (1 - tau) G_i)  (= tau F_i + (1 - tau) X_i),
  and update the per-sample best iterate (the f-value with the lowest residual so far).
"""
from __future__ import annotations

import torch

from getkern._backend import resolve_backend

REL_EPS = 1e-5  # rel residual = ||f(z) - z|| / (||f(z)|| + REL_EPS)


def _check_record_args(fz, z, F, G, gram, k):
    if F.dim() != 3 or G.shape != F.shape:
        raise ValueError(f"F and G must be (B, m, n) of one shape, got {tuple(F.shape)} and {tuple(G.shape)}")
    B, m, n = F.shape
    for name, t in (("fz", fz), ("z", z)):
        if tuple(t.shape) != (B, n):
            raise ValueError(f"{name} must have shape (B, n) = {(B, n)}, got {tuple(t.shape)}")
        if t.dtype != F.dtype or t.device != F.device:
            raise ValueError(f"{name} must be {F.dtype} on {F.device} like the history, got {t.dtype} on {t.device}")
    if gram.shape != (B, m, m) or gram.dtype != torch.float32:
        raise ValueError(f"gram must be float32 of shape {(B, m, m)}, got {gram.dtype} {tuple(gram.shape)}")
    if not all(t.is_contiguous() for t in (fz, z, F, G, gram)):
        raise ValueError("fz, z, F, G and gram must be contiguous")
    if k < 0:
        raise ValueError(f"iteration index k must be >= 0, got {k}")


def anderson_record(fz: torch.Tensor, z: torch.Tensor, F: torch.Tensor, G: torch.Tensor,
                    gram: torch.Tensor, k: int, *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1 of iteration k. Writes F[:, k % m] = fz, G[:, k % m] = fz - z and the Gram row/column
    of that slot (in place). Returns (abs_res, rel_res), each (B,) float32."""
    _check_record_args(fz, z, F, G, gram, k)
    path = resolve_backend(backend, F.device, op="anderson_record")
    if path == "torch":
        return _record_torch(fz, z, F, G, gram, k)
    raise NotImplementedError("Triton Anderson kernels: issue #6")


def anderson_mix(F: torch.Tensor, G: torch.Tensor, alpha: torch.Tensor, tau: float, *, k: int,
                 res: torch.Tensor, best: torch.Tensor, best_res: torch.Tensor,
                 backend: str = "auto") -> torch.Tensor:
    """Pass 2 of iteration k. alpha: (B, m) float32, zero on unused slots. Returns z_next (B, n) in the
    state dtype. Where res < best_res: best <- F[:, k % m] and best_res <- res (in place; a NaN
    residual never replaces the best iterate)."""
    B, m, n = F.shape
    if alpha.shape != (B, m) or alpha.dtype != torch.float32:
        raise ValueError(f"alpha must be float32 of shape {(B, m)}, got {alpha.dtype} {tuple(alpha.shape)}")
    if best.shape != (B, n) or best.dtype != F.dtype:
        raise ValueError(f"best must be {F.dtype} of shape {(B, n)}, got {best.dtype} {tuple(best.shape)}")
    if res.shape != (B,) or best_res.shape != (B,):
        raise ValueError(f"res and best_res must have shape ({B},)")
    path = resolve_backend(backend, F.device, op="anderson_mix")
    if path == "torch":
        return _mix_torch(F, G, alpha, tau, k, res, best, best_res)
    raise NotImplementedError("Triton Anderson kernels: issue #6")


def _record_torch(fz, z, F, G, gram, k):
    m = F.shape[1]
    slot, valid = k % m, min(k + 1, m)
    F[:, slot].copy_(fz)
    G[:, slot].copy_(fz - z)
    g = G[:, slot].float()                                                   # (B, n)
    row = torch.bmm(G[:, :valid].float(), g.unsqueeze(2)).squeeze(2)         # (B, valid)
    gram[:, slot, :valid] = row
    gram[:, :valid, slot] = row
    abs_res = g.norm(dim=1)
    rel_res = abs_res / (F[:, slot].float().norm(dim=1) + REL_EPS)
    return abs_res, rel_res


def _mix_torch(F, G, alpha, tau, k, res, best, best_res):
    slot = k % F.shape[1]
    mixed = torch.bmm(alpha.unsqueeze(1), F.float()).squeeze(1)             # (B, n)
    if tau != 1.0:
        mixed -= (1.0 - tau) * torch.bmm(alpha.unsqueeze(1), G.float()).squeeze(1)
    improved = res < best_res
    best.copy_(torch.where(improved.unsqueeze(1), F[:, slot], best))
    best_res.copy_(torch.where(improved, res, best_res))
    return mixed.to(F.dtype)

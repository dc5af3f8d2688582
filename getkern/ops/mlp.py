"""The GET block's MLP: fc1 + bias + exact GELU, then fc2 + bias (+ residual)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import resolve_backend


def mlp(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, *,
        residual: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """fc2(GELU(fc1(h))) (+ residual). h: (..., D); w1: (H, D); w2: (D, H)."""
    path = resolve_backend(backend, h.device, op="mlp")
    if path == "torch":
        out = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)
        return out if residual is None else residual + out
    raise NotImplementedError("Triton MLP kernels: issue #5")

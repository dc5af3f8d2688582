"""LayerNorm of the GET block, optionally fused with the residual add that precedes it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import resolve_backend


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6, *,
               residual: torch.Tensor | None = None, backend: str = "auto"):
    """LN over the last dim. With ``residual``: s = x + residual and returns (s, LN(s))."""
    path = resolve_backend(backend, x.device, op="layer_norm")
    if path == "torch":
        if residual is None:
            return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
        s = x + residual
        return s, F.layer_norm(s, s.shape[-1:], weight, bias, eps)
    raise NotImplementedError("Triton LayerNorm kernel: issue #5")

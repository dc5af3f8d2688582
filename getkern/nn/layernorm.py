"""LayerNorm with an optional fused residual add (same parameters as torch.nn.LayerNorm)."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.ops.layernorm import layer_norm


class LayerNorm(nn.LayerNorm):
    """``forward(x)`` -> LN(x); ``forward(x, residual=r)`` -> (x + r, LN(x + r)) in one pass."""

    def __init__(self, dim: int, eps: float = 1e-6, backend: str = "auto"):
        super().__init__(dim, eps=eps, elementwise_affine=True)
        self.backend = backend

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        return layer_norm(x, self.weight, self.bias, self.eps, residual=residual, backend=self.backend)

"""Attention sub-layer of the GET block: qkv projection, fused attention, output projection."""
from __future__ import annotations

import torch
import torch.nn as nn

from getkern.ops.attention import fused_attention


class Attention(nn.Module):
    """proj(attention(qkv(h) + c + u)). h: (B, N, D); c: (B, 1, 3D) or None; u: (B, N, 3D) or None.

    The middle step is :func:`getkern.ops.fused_attention` (c and u added inside the kernel);
    ``backend = "torch"`` forces the PyTorch reference, "auto"/"triton" as in getkern._backend.
    """

    def __init__(self, dim: int, num_heads: int, backend: str = "auto"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.backend = backend

    def forward(self, h: torch.Tensor, c: torch.Tensor | None = None,
                u: torch.Tensor | None = None) -> torch.Tensor:
        a = fused_attention(self.qkv(h), self.num_heads, c=c, u=u, backend=self.backend)  # (B, N, D)
        return self.proj(a)

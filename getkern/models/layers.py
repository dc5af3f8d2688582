"""The GET/ViT block, as the paper writes it. The shared front and back end: getkern/models/frontend.py."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.nn import MLP, Attention, FusedBlock, LayerNorm


class Block(nn.Module):
    """Pre-LN transformer block with additive QKV injection (c: class, u: DEQ injection).

    x: (B, N, D); c: (B, 1, 3D) or None; u: (B, N, 3D) or None. This is the reference computation
    (the torch backend); ``set_backend`` replaces it by ``fused_class``, the same function on the
    fused kernels around these same submodules.
    """

    fused_class = FusedBlock

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, backend: str = "auto"):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6, backend=backend)
        self.attn = Attention(dim, num_heads, backend=backend)
        self.norm2 = LayerNorm(dim, eps=1e-6, backend=backend)
        self.mlp = MLP(dim, int(dim * mlp_ratio), backend=backend)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), c, u)  # (B, N, D)
        x = x + self.mlp(self.norm2(x))
        return x

"""Attention sub-layer of the GET block: qkv projection, fused attention, output projection."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.ops import cpu_epilogues, cpu_linear
from getkern.ops.attention import fused_attention


class Attention(nn.Module):
    """proj(attention(qkv(h) + c + u)) (+ residual). h: (B, N, D); c: (B, 1, 3D) or None;
    u: (B, N, 3D) or None; residual: (B, N, D) or None.

    The middle step is :func:`getkern.ops.fused_attention` (c and u added inside the kernel);
    ``backend = "torch"`` forces the PyTorch reference, "auto"/"triton" as in getkern._backend. On a
    CPU without gradients, "auto" adds c + u, the biases and the residual inside the two matmuls
    (getkern.ops.cpu_epilogues); with gradients, the two matmuls run in oneDNN where it is faster than
    torch.mm's BLAS (getkern.ops.cpu_linear).
    """

    def __init__(self, dim: int, num_heads: int, backend: str = "auto"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.backend = backend

    def forward(
        self,
        h: torch.Tensor,
        c: torch.Tensor | None = None,
        u: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.residual_in_matmul(h):
            return cpu_epilogues.attention(
                h, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.num_heads, c, u, residual
            )
        qkv = cpu_linear.linear(h, self.qkv.weight, self.qkv.bias, self.backend)  # F.linear unless CPU training
        a = fused_attention(qkv, self.num_heads, c=c, u=u, backend=self.backend)
        a = cpu_linear.linear(a, self.proj.weight, self.proj.bias, self.backend)
        return a if residual is None else residual + a

    def residual_in_matmul(self, h: torch.Tensor) -> bool:
        """Whether the residual is added in place into proj's output here (the CPU inference path,
        getkern.ops.cpu_epilogues) rather than by the block, which then fuses that add with LN2."""
        return cpu_epilogues.applies(self.backend, h, *self.parameters())

"""The GET/ViT block, as the paper writes it. The shared front and back end: getkern/models/frontend.py."""

from __future__ import annotations

import torch
import torch.nn as nn

from getkern.nn import MLP, Attention, FusedBlock, LayerNorm
from getkern.ops import cpu_epilogues, cpu_linear


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


class Injection(nn.Linear):
    """The injection transformer's output projection (``qkv_inj``): x (B, N, D) -> [u_1, .., u_L], the L
    equilibrium blocks' QKV injections, (B, N, 3D) each; one bias-free linear, split by block.

    On CPU inference ("auto") it is L oneDNN matmuls, one per block's rows of the weight, rather than one
    and a split: a single (B, N, 3DL) output can pass glibc's 32 MiB limit above which every allocation
    is fresh pages to fault in (GET-T/2 at batch 16: one 38 MB output 24.3 ms, three of 12.6 MB 20.0 ms)."""

    def __init__(self, dim: int, blocks: int, backend: str = "auto"):
        super().__init__(dim, 3 * dim * blocks, bias=False)
        self.blocks, self.backend = blocks, backend

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if cpu_epilogues.applies(self.backend, x, self.weight):
            return [cpu_epilogues.linear(x, w, None) for w in self.weight.chunk(self.blocks)]
        return list(cpu_linear.linear(x, self.weight, None, self.backend).chunk(self.blocks, dim=-1))

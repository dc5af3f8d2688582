"""The block's Triton path with both LayerNorms in matmul prologues (issue #5's launch target).

Two Triton paths exist for a block, one switch picks (``BLOCK_PATH``, env ``GETKERN_BLOCK_PATH``):
- ``"per_op"`` (default): the per-module sequence: LN1 kernel, qkv (cuBLAS), fused attention, proj
  (cuBLAS), add+LN2 kernel, MLP with fused epilogues; 6 launches.
- ``"prologue"``: this module; 2 fewer launches and 0.49x the LN+MLP bytes, but its statistics pass is
  a dot-free loop recomputed by every column tile (72 times for fc1 at GET-B), so on an H100/H200 it is
  expected at 0.5-0.8x the per-op path (docs/layernorm_mlp.md). Until a GPU has timed both
  (getkern gpu-validate), the per-op path is the default; switching is this one constant.
``Block.forward`` (getkern/models/layers.py) takes the prologue path when BLOCK_PATH says so, its
norm1, norm2 and mlp modules all resolve to the Triton backend and autocast is off; otherwise the
per-module sequence (which is also the plain PyTorch sequence on the torch backend). Same parameters,
same math:

    qkv = layer_norm_linear(x, norm1, attn.qkv)         # LN1 in the qkv matmul's prologue
    a   = attn.proj(fused_attention(qkv + c + u))         # as Attention.forward after its qkv
    out = add_layer_norm_mlp(x, a, norm2, mlp.fc1, mlp.fc2)  # 2 launches, s = x + a never stored

Autocast keeps the per-module path: the trainer's amp runs an fp32 residual stream with 16-bit
matmuls, which the one-dtype fused kernels do not read.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from getkern._backend import resolve_backend
from getkern.ops.attention import fused_attention
from getkern.ops.ln_linear import layer_norm_linear
from getkern.ops.ln_mlp import add_layer_norm_mlp
from getkern.ops.mlp import ieee_fp32_on_cuda


BLOCK_PATHS = ("per_op", "prologue")
BLOCK_PATH = os.environ.get("GETKERN_BLOCK_PATH", "per_op")
if BLOCK_PATH not in BLOCK_PATHS:
    raise ValueError(f"GETKERN_BLOCK_PATH must be one of {BLOCK_PATHS}, got {BLOCK_PATH!r}")


def fused_prologues_apply(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` (norm1, attn, norm2, mlp) takes the fused-prologue path for input x."""
    if BLOCK_PATH != "prologue" or ieee_fp32_on_cuda(x):  # IEEE fp32 matmuls go to cuBLAS (per-op path)
        return False
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    return (all(resolve_backend(m.backend, x.device, op="block", unsupported=unsupported) == "triton"
                for m in (block.norm1, block.norm2, block.mlp))
            and not torch.is_autocast_enabled(x.device.type))


def fused_prologues_forward(block: nn.Module, x: torch.Tensor, c: torch.Tensor | None = None,
                            u: torch.Tensor | None = None) -> torch.Tensor:
    """The block on x (B, N, D): LN1 inside the qkv projection, LN2 + MLP in two launches."""
    norm1, attn, norm2, mlp = block.norm1, block.attn, block.norm2, block.mlp
    qkv = layer_norm_linear(x, norm1.weight, norm1.bias, attn.qkv.weight, attn.qkv.bias, norm1.eps,
                            backend="triton")
    a = attn.proj(fused_attention(qkv, attn.num_heads, c=c, u=u, backend=attn.backend))
    return add_layer_norm_mlp(x, a, norm2.weight, norm2.bias, mlp.fc1.weight, mlp.fc1.bias,
                              mlp.fc2.weight, mlp.fc2.bias, norm2.eps, backend="triton")

"""The block's Triton path with both LayerNorms in matmul prologues (issue #5's launch target).

``Block.forward`` (getkern/models/layers.py) takes this path when its norm1, norm2 and mlp modules
all resolve to the Triton backend and autocast is off; otherwise it runs the per-module sequence
(which is also the plain PyTorch sequence on the torch backend). Same parameters, same math:

    qkv = layer_norm_linear(x, norm1, attn.qkv)         # LN1 in the qkv matmul's prologue
    a   = attn.proj(fused_attention(qkv + c + u))         # as Attention.forward after its qkv
    out = add_layer_norm_mlp(x, a, norm2, mlp.fc1, mlp.fc2)  # 2 launches, s = x + a never stored

Autocast keeps the per-module path: the trainer's amp runs an fp32 residual stream with 16-bit
matmuls, which the one-dtype fused kernels do not read.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from getkern._backend import resolve_backend
from getkern.ops.attention import fused_attention
from getkern.ops.ln_linear import layer_norm_linear
from getkern.ops.ln_mlp import add_layer_norm_mlp


def fused_prologues_apply(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` (norm1, attn, norm2, mlp) takes the fused-prologue path for input x."""
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

"""Fused attention of the GET block: (qkv + c + u) -> split heads -> softmax attention -> merge."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import resolve_backend


def attention_reference(qkv: torch.Tensor, num_heads: int, c: torch.Tensor | None = None,
                        u: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """The unfused PyTorch sequence the reference GET runs. qkv, u: (B, N, 3D); c: (B, 1, 3D)."""
    B, N, three_d = qkv.shape
    D = three_d // 3
    if c is not None:
        qkv = qkv + c
    if u is not None:
        qkv = qkv + u
    q, k, v = qkv.reshape(B, N, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)  # (B, H, N, Dh)
    return out.transpose(1, 2).reshape(B, N, D)


def fused_attention(qkv: torch.Tensor, num_heads: int, *, c: torch.Tensor | None = None,
                    u: torch.Tensor | None = None, scale: float | None = None,
                    backend: str = "auto") -> torch.Tensor:
    """Softmax attention over the (B, N, 3D) qkv projection, with c (B, 1, 3D) and u (B, N, 3D)
    added on load. Returns (B, N, D)."""
    path = resolve_backend(backend, qkv.device, op="fused_attention")
    if path == "torch":
        return attention_reference(qkv, num_heads, c, u, scale)
    raise NotImplementedError("Triton attention kernel: issue #4")

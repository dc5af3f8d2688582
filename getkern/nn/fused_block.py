"""The GET/ViT block on the fused kernels: :class:`FusedBlock`, which ``set_backend`` swaps in for the
plain block (``getkern.models.layers.Block``, the paper's two lines) on the "auto" and "triton" backends.

It holds the plain block's own submodules (norm1, attn, norm2, mlp: the same objects, so parameters and
state-dict keys are the plain block's) and computes the same function with fewer passes over the
residual stream, taking the first path that applies:

- Triton with both LayerNorms in matmul prologues (``BLOCK_PATH = "prologue"``)::

      qkv = layer_norm_linear(x, norm1, attn.qkv)               # LN1 in the qkv matmul's prologue
      a   = attn.proj(fused_attention(qkv + c + u))               # as Attention.forward after its qkv
      out = add_layer_norm_mlp(x, a, norm2, mlp.fc1, mlp.fc2)     # 2 launches, s = x + a never stored

- CPU inference (``attn.residual_in_matmul``): both residual adds inside the oneDNN matmuls.
- Otherwise per module: LN1, attention, x + a fused with LN2 in one pass, the MLP with x added in its
  fc2 epilogue. On the torch backend each of these is exactly the plain block's op.

Two Triton paths exist for a block, one switch picks (``BLOCK_PATH``, env ``GETKERN_BLOCK_PATH``):
- ``"per_op"`` (default): LN1 kernel, qkv (cuBLAS), fused attention, proj (cuBLAS), add+LN2 kernel, MLP
  with fused epilogues; 6 launches.
- ``"prologue"``: 2 fewer launches and 0.49x the LN+MLP bytes, but its statistics pass is a dot-free
  loop recomputed by every column tile (72 times for fc1 at GET-B), so on an H100/H200 it is expected at
  0.5-0.8x the per-op path (docs/layernorm_mlp.md). Until a GPU has timed both (getkern gpu-validate),
  the per-op path is the default; switching is this one constant.
The prologue path needs norm1, norm2 and mlp all resolving to the Triton backend and autocast off:
the trainer's amp runs an fp32 residual stream with 16-bit matmuls, which the one-dtype fused kernels
do not read.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from getkern._backend import resolve_backend
from getkern.ops.attention import fused_attention
from getkern.ops.ln_linear import layer_norm_linear
from getkern.ops.ln_mlp import add_layer_norm_mlp
from getkern.ops.matmul import ieee_fp32_on_cuda

BLOCK_PATHS = ("per_op", "prologue")
BLOCK_PATH = os.environ.get("GETKERN_BLOCK_PATH", "per_op")
if BLOCK_PATH not in BLOCK_PATHS:
    raise ValueError(f"GETKERN_BLOCK_PATH must be one of {BLOCK_PATHS}, got {BLOCK_PATH!r}")


def fused_prologues_apply(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` (norm1, attn, norm2, mlp) takes the fused-prologue path for input x."""
    if BLOCK_PATH != "prologue" or ieee_fp32_on_cuda(x):  # IEEE fp32 matmuls go to cuBLAS (per-op path)
        return False
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    return all(
        resolve_backend(m.backend, x.device, op="block", unsupported=unsupported) == "triton"
        for m in (block.norm1, block.norm2, block.mlp)
    ) and not torch.is_autocast_enabled(x.device.type)


class FusedBlock(nn.Module):
    """``FusedBlock(block)``: ``block``'s function on the fused kernels, around its own submodules.

    ``forward(x, c, u)``: x (B, N, D); c (B, 1, 3D) or None; u (B, N, 3D) or None -> (B, N, D).
    :meth:`unfused` gives the plain block back (what ``set_backend(model, "torch")`` does).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        for name, child in block.named_children():  # norm1, attn, norm2, mlp, in the block's order
            self.add_module(name, child)
        self.training = block.training
        self.unfused_class = type(block)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
        if fused_prologues_apply(self, x):  # Triton: LN1, LN2 inside the qkv and fc1 matmuls
            return self._prologue_forward(x, c, u)
        if self.attn.residual_in_matmul(x):  # CPU inference: residual adds inside the matmuls (oneDNN)
            x = self.attn(self.norm1(x), c, u, residual=x)
            return self.mlp(self.norm2(x), residual=x)
        a = self.attn(self.norm1(x), c, u)  # (B, N, D)
        x, h = self.norm2(a, residual=x)  # x <- x + a; h = LN2(x), one pass
        return self.mlp(h, residual=x)  # x + fc2(GELU(fc1(h)))

    def _prologue_forward(self, x, c, u):
        norm1, attn, norm2, mlp = self.norm1, self.attn, self.norm2, self.mlp
        qkv = layer_norm_linear(
            x, norm1.weight, norm1.bias, attn.qkv.weight, attn.qkv.bias, norm1.eps, backend="triton"
        )
        a = attn.proj(fused_attention(qkv, attn.num_heads, c=c, u=u, backend=attn.backend))
        return add_layer_norm_mlp(
            x,
            a,
            norm2.weight,
            norm2.bias,
            mlp.fc1.weight,
            mlp.fc1.bias,
            mlp.fc2.weight,
            mlp.fc2.bias,
            norm2.eps,
            backend="triton",
        )

    def unfused(self) -> nn.Module:
        """The plain block around these same submodules. Its own __init__ is skipped (it would build
        fresh parameters): a block that declares a fused class keeps all its state in its submodules."""
        block = self.unfused_class.__new__(self.unfused_class)
        nn.Module.__init__(block)
        for name, child in self.named_children():
            block.add_module(name, child)
        block.training = self.training
        return block

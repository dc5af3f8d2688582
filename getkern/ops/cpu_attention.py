"""Softmax attention for short sequences on CPU: getkern/csrc/cpu_ops/attention.cpp as a torch op.

At the digits GET's 16 tokens and head dim 16, ATen's flash-attention kernel spends most of its time
on bookkeeping sized for long sequences (21 % of the model's time for 3 % of its FLOPs); this kernel
takes one (image, head) at a time with its K and V in L1 and one query per vector lane, reads q, k,
v straight from the qkv projection's (B, N, 3, H, Dh) layout and writes the (B, N, H * Dh) layout the
output projection reads, so no transpose or copy is made. Forward and backward (from the saved
log-sum-exp), float32, equal to the PyTorch reference to float rounding (tests/test_cpu_attention.py).

One copy of the kernel per vector width is compiled (AVX-512: 16 queries a vector, AVX2: 8, otherwise
4) and the widest the CPU has runs. ``backend="auto"`` takes it for float32 CPU tensors of at most
``MAX_TOKENS`` tokens, outside torch.compile and autocast, on CPUs with AVX2 or AVX-512, once the CPU
operators are loaded (getkern.ops.cpu_library); for up to ``MAX_PROBED_TOKENS`` tokens where a one-time
probe finds it clearly faster than SDPA on this CPU; ``backend="torch"`` keeps
``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from getkern import _extension
from getkern.ops import cpu_library, cpu_probe

# Up to here the kernel was measured faster than SDPA on every CPU tried (docs/results/cpu-speed.md:
# 2.5x at 16 tokens, 1.4x at 64).
MAX_TOKENS = 64
# Longer sequences depend on the CPU: at 256 tokens the kernel ran 0.8x SDPA's speed on a Zen 4 EPYC
# and 1.8x on a Zen 5 (SDPA's GEMMs are MKL's, which keeps to AVX2 there; the kernel uses AVX-512), so
# up to here "auto" takes it where a one-time probe finds it PROBE_MIN_SPEEDUP times faster.
MAX_PROBED_TOKENS = 256
PROBE_MIN_SPEEDUP = 1.2

# On the baseline copy (SSE2, NEON) the kernel was measured no faster than SDPA
# (docs/results/cpu-speed.md), so "auto" takes it only on these.
FASTER_THAN_SDPA = ("avx2", "avx512")


def applies(qkv: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Whether "auto" runs this kernel for qkv (B, N, 3D) and the tensors added to it."""
    if (
        qkv.device.type != "cpu"
        or qkv.dim() != 3
        or qkv.shape[1] > MAX_PROBED_TOKENS
        or qkv.shape[0] * qkv.shape[1] == 0
    ):
        return False
    if any(t is not None and (t.dtype != torch.float32 or t.device.type != "cpu") for t in (qkv, *others)):
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    if not (cpu_library.available() and cpu_library.isa() in FASTER_THAN_SDPA):
        return False
    return qkv.shape[1] <= MAX_TOKENS or faster_at_long_sequences()


@functools.cache
def faster_at_long_sequences() -> bool:
    """Whether the kernel's forward runs PROBE_MIN_SPEEDUP times SDPA's at 256 tokens and head dim 64
    (4 images, 4 heads: GET-T/2's attention at 32x32), timed once a process (~50 ms)."""
    batch, n, heads, head_dim = 4, 256, 4, 64
    qkv = torch.randn(batch, n, 3 * heads * head_dim, generator=torch.Generator().manual_seed(0))
    q, k, v = qkv.view(batch, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    with torch.no_grad():
        return cpu_probe.clearly_faster(
            lambda: F.scaled_dot_product_attention(q, k, v),
            lambda: cpu_attention(qkv, heads),
            PROBE_MIN_SPEEDUP,
        )


class _Attention(torch.autograd.Function):
    """The C++ forward and backward (from the saved log-sum-exp). An autograd.Function calling the C++
    ops directly, not a torch.library op: this path runs only in eager mode (``applies``), and a
    Python custom op's dispatch cost 9 % of the digits GET's CPU training step."""

    @staticmethod
    def forward(ctx, qkv, num_heads, scale):
        B, N, three_d = qkv.shape
        out = qkv.new_empty(B, N, three_d // 3)
        lse = qkv.new_empty(B, num_heads, N)
        torch.ops.getkern_cpu.attention_forward(qkv, num_heads, scale, out, lse)
        ctx.save_for_backward(qkv, out, lse)
        ctx.num_heads, ctx.scale = num_heads, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        qkv, out, lse = ctx.saved_tensors
        dqkv = torch.empty_like(qkv)
        torch.ops.getkern_cpu.attention_backward(qkv, out, lse, dout.contiguous(), ctx.num_heads, ctx.scale, dqkv)
        return dqkv, None, None


def cpu_attention(qkv: torch.Tensor, num_heads: int, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v per head. qkv: (B, N, 3D) float32 on CPU, split as (3, heads, D / heads)
    on its last dim; returns (B, N, D). Differentiable in qkv. scale defaults to 1/sqrt(D / num_heads).
    Needs the CPU operators (:func:`getkern.ops.cpu_library.available`)."""
    if qkv.dim() != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"cpu_attention: qkv must be (B, N, 3 * heads * head_dim), got {tuple(qkv.shape)}")
    if not cpu_library.available():
        raise _extension.ExtensionError("cpu_attention: getkern's CPU operators could not be built or loaded")
    head_dim = qkv.shape[-1] // 3 // num_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    if torch.is_grad_enabled() and qkv.requires_grad:
        return _Attention.apply(qkv.contiguous(), num_heads, scale)
    # Inference: no autograd node and no log-sum-exp (a scalar log per query row: at the digits GET's
    # 600 x 4 x 16 rows, 0.10 of the forward's 0.40 ms on a Zen 5 EPYC).
    out = qkv.new_empty(qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3)
    torch.ops.getkern_cpu.attention_forward(qkv.contiguous(), num_heads, scale, out, None)
    return out

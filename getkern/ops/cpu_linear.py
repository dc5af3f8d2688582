"""CPU training: a linear layer whose forward and backward matmuls run in oneDNN, where oneDNN's float32
GEMM is measured faster than the BLAS behind torch.mm.

On AMD CPUs with AVX-512 (a Zen 5 EPYC here), MKL's sgemm keeps to its AVX2 code while oneDNN uses the
AVX-512 units: 210 vs 420-460 GFLOP/s on 2 threads at GET-T/2's shapes, so F.linear and its backward
(three MKL matmuls) run at half the machine's rate. This op does the same three products in oneDNN
(``torch.ops.mkldnn._linear_pointwise``, the call the inference path makes, getkern.ops.cpu_epilogues):
y = x W^T + b, dx = dy W, and dW = dy^T x with the operands passed as transposed views (oneDNN reads
the strides; which operand it gets as "weight" is chosen by the output's shape, measured faster).
Numerically the same products in float32 in another summation order: equal to F.linear to float
rounding (tests/test_cpu_linear.py).

``backend="auto"`` takes it for float32 CPU tensors that need a gradient, outside torch.compile and
autocast, for matmuls of at least ``MIN_MACS`` multiply-adds (below that oneDNN's per-call cost loses),
and only where a one-time probe per process finds oneDNN at least ``PROBE_MIN_SPEEDUP`` times faster
than torch.mm (on CPUs where both reach the same rate, such as a Zen 3 EPYC, nothing changes).
Without gradients the inference path (getkern.ops.cpu_epilogues) already runs in oneDNN.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from getkern.ops import cpu_epilogues, cpu_probe

# 2-thread Zen 5 EPYC, forward + dx + dW, oneDNN vs MKL: 1024 x 64 x 64 0.77x, 1024 x 64 x 192 1.33x,
# 4096 x 64 x 64 1.24x, 2048 x 256 x 768 1.84x (docs/results/cpu-speed.md).
MIN_MACS = 8_000_000
# The probe's gap is 2x where MKL lacks AVX-512 and about 1x elsewhere: a margin far from both.
PROBE_MIN_SPEEDUP = 1.3


@functools.cache
def faster_here() -> bool:
    """Whether oneDNN's float32 GEMM runs at least PROBE_MIN_SPEEDUP times torch.mm's on this CPU, at
    the current thread count: a 1024 x 512 x 512 linear timed both ways, 11 interleaved rounds once a
    process (150-190 ms on a Zen 3 EPYC). There the two run 1.10x apart in the median and up to 1.3x in
    one round in ten; with 5 rounds the probe picked oneDNN in some processes, and the digits GET's
    training step ran 0.90x as fast with it (201 vs 178 ms, one process)."""
    if not cpu_epilogues._AVAILABLE:
        return False
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=gen) for s in ((1024, 512), (512, 512), (512,)))
    with torch.no_grad():
        return cpu_probe.clearly_faster(
            lambda: torch.addmm(b, x, w.t()),
            lambda: cpu_epilogues.onednn_linear(x, w, b),
            PROBE_MIN_SPEEDUP,
            rounds=11,
        )


def applies(backend: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether ``backend`` runs this op for ``F.linear(x, weight, bias)``."""
    if backend != "auto" or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    macs = x.numel() * weight.shape[0]  # rows x K x N
    return macs >= MIN_MACS and faster_here()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str = "auto") -> torch.Tensor:
    """``F.linear(x, weight, bias)``; in oneDNN, forward and backward, where :func:`applies`."""
    if applies(backend, x, weight, bias):
        return _Linear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class _Linear(torch.autograd.Function):
    """x: (..., K); weight: (N, K); bias: (N,) or None. Saves x and weight, as addmm's backward does."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return cpu_epilogues.onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        N, K = weight.shape
        dy2d, x2d = dy.reshape(-1, N), x.reshape(-1, K)
        dx = dweight = dbias = None
        if torch.is_grad_enabled():  # create_graph=True: differentiable products, so double backward holds
            dx = dy @ weight if ctx.needs_input_grad[0] else None
            dweight = dy2d.t() @ x2d if ctx.needs_input_grad[1] else None
            dbias = dy2d.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
            return dx, dweight, dbias
        if ctx.needs_input_grad[0]:
            dx = cpu_epilogues.onednn_linear(dy, weight.t(), None)
        if ctx.needs_input_grad[1]:
            # dW = dy^T x (N, K). oneDNN ran faster with the longer side of the output as its rows
            # (2048 rows, K 256, N 1024: 357 vs 252 GFLOP/s; K 1024, N 256: 341 vs 237).
            dweight = (
                cpu_epilogues.onednn_linear(x2d.t(), dy2d.t(), None).t()
                if N >= K
                else cpu_epilogues.onednn_linear(dy2d.t(), x2d.t(), None)
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            dbias = dy2d.sum(0)
        return dx, dweight, dbias

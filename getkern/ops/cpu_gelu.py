"""Exact GELU for CPU training: getkern/csrc/cpu_ops/gelu.cpp as a torch op.

The forward writes GELU(x) and its derivative GELU'(x) in one pass (they share one exp), so the
backward is a single multiply, dx = dact * GELU'(x), where ATen's gelu_backward evaluates erf and exp
again: in the digits GET's training step GELU forward and backward were 10 % of the time (1 thread,
docs/results/cpu-speed.md). erfc in Abramowitz and Stegun's 7.1.26 form: within 2.4 ulp of |x| of the
float64 GELU, like ATen's 2.2 (tests/test_cpu_gelu.py). Inference takes it too, in place after the fc1
matmul (:func:`gelu_`), on CPUs where a one-time probe finds it faster than oneDNN's GELU post-op
(getkern.ops.cpu_epilogues.gelu_post_op_faster: so on a Zen 3 EPYC, not on a Zen 5).

``backend="auto"`` takes it in the MLP (getkern.ops.mlp) for float32 CPU tensors that need a gradient,
outside torch.compile and autocast, on CPUs with AVX2 or AVX-512, once the CPU operators are loaded
(getkern.ops.cpu_library); without gradients the oneDNN path (getkern.ops.cpu_epilogues) applies GELU
inside fc1. ``backend="torch"`` keeps ``F.gelu``.
"""

from __future__ import annotations

import torch

from getkern import _extension
from getkern.ops import cpu_library

# Measured faster than F.gelu + gelu_backward on the AVX2 copy (Zen 3, docs/results/cpu-speed.md); the
# AVX-512 copy is the same code on twice the lanes, not yet timed; the baseline copy was not timed.
FASTER_THAN_ATEN = ("avx2", "avx512")


def applies(x: torch.Tensor) -> bool:
    """Whether "auto" runs this kernel for the pre-activation x."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not (torch.is_grad_enabled() and x.requires_grad):
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    return faster_here()


def faster_here() -> bool:
    """Whether the kernel runs on this CPU in a copy measured faster than the alternatives."""
    return cpu_library.available() and cpu_library.isa() in FASTER_THAN_ATEN


def gelu_(x: torch.Tensor) -> torch.Tensor:
    """GELU_exact(x) in place (no derivative, no autograd), for inference: x contiguous float32 on CPU."""
    torch.ops.getkern_cpu.gelu_forward(x, x, None)
    return x


class _Gelu(torch.autograd.Function):
    """GELU and GELU' in one C++ pass; GELU' is kept for the backward. An autograd.Function, not a
    torch.library op, for the reason getkern.ops.cpu_attention gives (eager only, less dispatch)."""

    @staticmethod
    def forward(ctx, x):
        act, slope = torch.empty_like(x), torch.empty_like(x)
        torch.ops.getkern_cpu.gelu_forward(x, act, slope)
        ctx.save_for_backward(slope)
        return act

    @staticmethod
    def backward(ctx, dact):
        (slope,) = ctx.saved_tensors
        return dact * slope


def cpu_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU_exact(x) for a float32 CPU tensor, differentiable; needs the CPU operators."""
    if not cpu_library.available():
        raise _extension.ExtensionError("cpu_gelu: getkern's CPU operators could not be built or loaded")
    return _Gelu.apply(x.contiguous())

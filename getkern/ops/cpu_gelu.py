"""Exact GELU for CPU training: getkern/csrc/cpu_ops/gelu.cpp as a torch op.

The forward writes GELU(x) and its derivative GELU'(x) in one pass (they share one exp), so the
backward is a single multiply, dx = dact * GELU'(x), where ATen's gelu_backward evaluates erf and exp
again: in the digits GET's training step GELU forward and backward were 10 % of the time (1 thread,
docs/results/cpu-speed.md). Cephes's float32 erf/erfc: within about 1 ulp of |x| of the float64 GELU,
like ATen's (tests/test_cpu_gelu.py).

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
    return cpu_library.available() and cpu_library.isa() in FASTER_THAN_ATEN


@torch.library.custom_op("getkern::cpu_gelu", mutates_args=())
def _forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    act, slope = torch.empty_like(x), torch.empty_like(x)
    torch.ops.getkern_cpu.gelu_forward(x, act, slope)
    return act, slope


@_forward.register_fake
def _(x):
    return torch.empty_like(x), torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    _, slope = output
    ctx.mark_non_differentiable(slope)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.save_for_backward(slope)


def _autograd_backward(ctx, dact, _dslope):
    (slope,) = ctx.saved_tensors
    return dact * slope


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def cpu_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU_exact(x) for a float32 CPU tensor, differentiable; needs the CPU operators."""
    if not cpu_library.available():
        raise _extension.ExtensionError("cpu_gelu: getkern's CPU operators could not be built or loaded")
    return _forward(x.contiguous())[0]

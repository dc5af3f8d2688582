"""LayerNorm for CPU inference: getkern/csrc/cpu_ops/layernorm.cpp as a torch op.

ATen's CPU LayerNorm computes and keeps per-row statistics for a backward and takes about 3.5x the time
of a copy of its input at the GETs' widths (9600 x 64 and 4096 x 256: 171-173 us against 28-46 us on a
Zen 5 EPYC, 2 threads); the digits GET's 28 LayerNorms a sample were 5-7 % of its time. This kernel
normalises each row in L1 (mean, then the mean squared deviation, then the affine output) and keeps
nothing, so it has no backward: ``backend="auto"`` takes it in getkern.ops.layernorm for float32 CPU
tensors when no gradient is needed, outside torch.compile and autocast, on CPUs with AVX2 or AVX-512,
once the CPU operators are loaded (getkern.ops.cpu_library). Equal to F.layer_norm to float rounding
(tests/test_cpu_layernorm.py).
"""

from __future__ import annotations

import torch

from getkern import _extension
from getkern.ops import cpu_epilogues, cpu_library

# Measured faster than F.layer_norm on these copies (docs/results/cpu-speed.md); the baseline copy
# (SSE2, NEON) was not timed.
FASTER_THAN_ATEN = ("avx2", "avx512")


def applies(backend: str, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """Whether ``backend`` runs this kernel for F.layer_norm(x, (D,), weight, bias)."""
    if backend != "auto" or weight is None or bias is None:
        return False
    if any(t.dtype != x.dtype or t.device != x.device for t in (weight, bias)):
        return False
    if not cpu_epilogues.eager_cpu_inference(x, weight, bias):
        return False
    return cpu_library.available() and cpu_library.isa() in FASTER_THAN_ATEN


def cpu_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LN over the last dim of x (..., D) with weight and bias (D,), float32 on CPU; no autograd."""
    if not cpu_library.available():
        raise _extension.ExtensionError("cpu_layer_norm: getkern's CPU operators could not be built or loaded")
    x = x.contiguous()
    out = torch.empty_like(x)
    torch.ops.getkern_cpu.layer_norm_forward(x, weight.contiguous(), bias.contiguous(), float(eps), out)
    return out

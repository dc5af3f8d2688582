"""CPU inference: a matmul's bias and exact GELU as oneDNN post-ops, the residual added in place.

On a CPU the block's eager sequence spends about a third of its time outside the matmuls: addmm
copies the bias into its output before the GEMM, and GELU and each residual add are further passes
over (B, N, H) activations. oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor's
CPU freezing passes emit) applies bias and GELU to each output tile while it is still in cache; the
residual (or the injection c + u) is then added in place into the fresh output, which measured faster
than oneDNN's binary "add" post-op (see ``linear``). Numerically the same operations in float32, in
another summation order: equal to the plain sequence to float rounding (tests/test_cpu_epilogues.py).

``backend="auto"`` takes this path for float32 CPU tensors when no gradient is needed (the oneDNN
ops have no backward), outside torch.compile (inductor fuses on its own) and outside autocast;
``backend="torch"`` keeps the plain PyTorch sequence, the reference every path is tested against.
"""

from __future__ import annotations

import torch

from getkern.ops import cpu_attention, cpu_gelu
from getkern.ops.attention import attention_reference


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# Decided once at import: a plain constant keeps dispatch free of guards under torch.compile.
_AVAILABLE = _onednn_available()


def applies(backend: str, x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether ``backend`` runs the oneDNN epilogue path for input ``x`` and these parameters."""
    if backend != "auto" or not _AVAILABLE or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params)))


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``residual + x @ weight^T + bias`` or ``GELU_exact(x @ weight^T + bias)``: one oneDNN call, and
    an in-place add of the residual into its output. x: (..., K); weight: (N, K); residual: x's
    leading shape with N last, or broadcastable to it."""
    if residual is not None and gelu:
        raise ValueError("linear: gelu and residual are exclusive (the MLP applies them in different layers)")
    if gelu and cpu_gelu.faster_here():
        # getkern's GELU in place after the GEMM: 1.4x faster than oneDNN's GELU post-op on a Zen 3 EPYC
        # (9600 x 256 elements: 1.5 vs 2.2 ms over the bare matmul), and as accurate as ATen's.
        return cpu_gelu.gelu_(torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], ""))
    out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    # oneDNN's binary "add" post-op ran 1.1-1.4x slower than this separate in-place add on a Zen 3 EPYC
    # (9600 x 64 x 192, the digits GET's qkv: 4.50 vs 3.14 ms; GET-T/2's qkv 16.8 vs 14.1 ms).
    return out if residual is None else out.add_(residual)


def mlp(
    h: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """fc2(GELU_exact(fc1(h))) (+ residual): two oneDNN calls, nothing else."""
    return linear(linear(h, w1, b1, gelu=True), w2, b2, residual=residual)


def attention(
    h: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    num_heads: int,
    c: torch.Tensor | None,
    u: torch.Tensor | None,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    """proj(attention(qkv(h) + c + u)) (+ residual) with the injection added inside the qkv matmul.

    c: (B, 1, 3D) and u: (B, N, 3D) are summed first (one pass instead of two over qkv)."""
    inject = u if c is None else (c if u is None else u + c)
    qkv = linear(h, qkv_weight, qkv_bias, residual=inject)
    a = (
        cpu_attention.cpu_attention(qkv, num_heads)
        if cpu_attention.applies(qkv)
        else attention_reference(qkv, num_heads)
    )
    return linear(a, proj_weight, proj_bias, residual=residual)

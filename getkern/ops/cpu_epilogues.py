"""CPU inference: a matmul's bias and exact GELU as oneDNN post-ops, the residual added in place.

On a CPU the block's eager sequence spends about a third of its time outside the matmuls: addmm
copies the bias into its output before the GEMM, and GELU and each residual add are further passes
over (B, N, H) activations. oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor's
CPU freezing passes emit) applies bias and GELU to each output tile while it is still in cache (or,
on CPUs where a one-time probe finds it faster, getkern's GELU runs in place after the matmul: see
``gelu_post_op_faster``); the residual (or the injection c + u) is then added in place into the fresh
output, which measured faster than oneDNN's binary "add" post-op (see ``linear``). Large MLPs run in
blocks of rows so their hidden activations stay in cache (``mlp``). Numerically the same operations in
float32, in another summation order: equal to the plain sequence to float rounding
(tests/test_cpu_epilogues.py).

``backend="auto"`` takes this path for float32 CPU tensors when no gradient is needed (the oneDNN
ops have no backward), outside torch.compile (inductor fuses on its own) and outside autocast;
``backend="torch"`` keeps the plain PyTorch sequence, the reference every path is tested against.
"""

from __future__ import annotations

import functools

import torch

from getkern.ops import cpu_attention, cpu_gelu, cpu_probe
from getkern.ops.attention import attention_reference


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# Decided once at import: a plain constant keeps dispatch free of guards under torch.compile.
_AVAILABLE = _onednn_available()


# getkern's GELU in place after the GEMM ran 1.4x faster than oneDNN's GELU post-op on a Zen 3 EPYC
# (AVX2; 9600 x 256 elements: 1.5 vs 2.2 ms over the bare matmul) and 1.5-1.9x slower on a Zen 5 (AVX-512;
# GET-T/2's fc1, 4096 x 1536: 1.1-1.2 vs 0.6-0.85 ms). A probe picks, at an fc1 block of GET-T/2's
# (512 x 256 -> 1024): on the Zen 3 the post-op's cost grows with K (in place/post-op 1.04x at K = 16,
# 0.84-0.92x at 64 and 256), so a GELU-bound K = 16 probe picked the post-op in some processes and GET-T/2's
# solve ran 1.05x slower with it. The faster in the median of 9 rounds wins (at a near tie either is fine).
GELU_PROBE_SHAPE = (512, 256, 1024)  # rows, K, N
GELU_PROBE_MIN_SPEEDUP = 1.0

# The MLP's hidden activations go through in blocks of at most HIDDEN_BLOCK_BYTES where they would
# exceed BLOCKED_ABOVE_BYTES (:func:`mlp`). GET-T/2's DEQ block at batch 16 has 24 MiB of them, more than
# a core's L2 and most of the L3: in 4 MiB blocks its sampling ran 3 % faster on a Zen 5 EPYC and its
# page faults fell from ~46000 a call to ~500 (malloc maps a buffer that size afresh time and again),
# though the MLP alone, timed on hot buffers, is the same speed either way. The digits GET's 9.4 MiB in
# 3 blocks: 1.07-1.16x faster in four A/Bs of 15-30 interleaved rounds there (page faults 7500-11000
# -> 800-3600 a sample), 0.98x with every library held to AVX2. Below 8 MiB a block would be too
# little work a call for what it saves.
HIDDEN_BLOCK_BYTES = 4 << 20
BLOCKED_ABOVE_BYTES = 8 << 20


@functools.cache
def gelu_post_op_faster() -> bool:
    """Whether oneDNN's exact-GELU post-op runs GELU_PROBE_MIN_SPEEDUP times as fast as the matmul
    followed by getkern's in-place GELU on this CPU: a GELU_PROBE_SHAPE linear timed both ways once a
    process (~90 ms on a Zen 3 EPYC). Without getkern's CPU operators the post-op is the only way."""
    if not cpu_gelu.faster_here():
        return True
    gen = torch.Generator().manual_seed(0)
    rows, k, n = GELU_PROBE_SHAPE
    x, w, b = (torch.randn(*s, generator=gen) for s in ((rows, k), (n, k), (n,)))
    with torch.no_grad():
        return cpu_probe.clearly_faster(
            lambda: cpu_gelu.gelu_(onednn_linear(x, w, b)),
            lambda: onednn_linear(x, w, b, gelu=True),
            GELU_PROBE_MIN_SPEEDUP,
            rounds=9,
        )


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False) -> torch.Tensor:
    """``x @ weight^T + bias``, then the exact GELU if ``gelu``, in one oneDNN call (no autograd)."""
    if gelu:  # algorithm "none": the exact (erf) GELU, as nn.GELU()
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def eager_cpu_inference(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether x is float32 on CPU, outside torch.compile and autocast, and neither it nor ``params``
    needs a gradient: where the CPU inference kernels (these, getkern.ops.cpu_layernorm) may run."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params)))


def applies(backend: str, x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether ``backend`` runs the oneDNN epilogue path for input ``x`` and these parameters."""
    return backend == "auto" and _AVAILABLE and eager_cpu_inference(x, *params)


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
    if gelu:
        return (
            onednn_linear(x, weight, bias, gelu=True)
            if gelu_post_op_faster()
            else cpu_gelu.gelu_(onednn_linear(x, weight, bias))
        )
    out = onednn_linear(x, weight, bias)
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
    """fc2(GELU_exact(fc1(h))) (+ residual): two oneDNN calls per block of rows, nothing else.

    Where the hidden activations would exceed BLOCKED_ABOVE_BYTES, the rows go through in equal blocks
    whose hidden part stays in cache between fc1 and fc2, instead of one buffer that fc1 writes to
    memory and fc2 reads back (see HIDDEN_BLOCK_BYTES). Each row's arithmetic is the same either way."""
    rows, hidden = h.numel() // h.shape[-1], w1.shape[0]
    hidden_bytes = rows * hidden * h.element_size()
    if hidden_bytes <= BLOCKED_ABOVE_BYTES:
        return linear(linear(h, w1, b1, gelu=True), w2, b2, residual=residual)
    blocks = -(-hidden_bytes // HIDDEN_BLOCK_BYTES)
    lead = h.shape[:-1]
    h2 = h.reshape(rows, h.shape[-1])
    r2 = None if residual is None else residual.expand(*lead, w2.shape[0]).reshape(rows, w2.shape[0])
    out = h.new_empty(rows, w2.shape[0])
    step = -(-rows // blocks)
    for start in range(0, rows, step):
        part = slice(start, start + step)
        y = onednn_linear(linear(h2[part], w1, b1, gelu=True), w2, b2)
        if r2 is None:
            out[part] = y
        else:
            torch.add(y, r2[part], out=out[part])
    return out.view(*lead, w2.shape[0])


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

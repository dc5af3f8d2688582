"""Fused attention of the GET block: (qkv + c + u) -> split heads -> softmax attention -> merge.

Layout (token-major, as the block's Linear produces it): qkv is (B, N, 3D) with, for head h and
channel d < Dh = D / H, q = qkv[b, n, h*Dh + d], k = qkv[b, n, D + h*Dh + d], v = qkv[b, n, 2D + h*Dh + d]
(the reference's ``reshape(B, N, 3, H, Dh)``). The kernels add c (B, 1, 3D) and u (B, N, 3D) on load,
split and merge heads by indexing, and write out (B, N, D) ready for the output projection.

Kernels (flash-attention style, non-causal, fp32 accumulation and softmax statistics):
- ``_attn_fwd_kernel``: one program per (query block, batch*head); online softmax over key blocks.
  Saves only out and the per-row log-sum-exp ``lse`` (B, H, N) fp32 of the scaled scores.
- ``_attn_bwd_delta_kernel``: delta = rowsum(dout * out) per head, (B, H, N) fp32.
- ``_attn_bwd_kernel``: one program per (block, batch*head); first dk, dv of its key block (loop over
  query blocks), then dq of its query block (loop over key blocks); writes d(qkv) once, every element.
  d(c) is the token sum of d(qkv), d(u) is d(qkv).

Dtypes: fp16/bf16/fp32 inputs (mixed allowed); everything is computed in the promoted ("compute")
dtype: values are loaded, upcast to fp32 and summed, then rounded to the compute dtype for the dots
(bf16/fp16 tensor-core dots, fp32 dots with input_precision="ieee", i.e. true fp32, never TF32).
Under the Triton interpreter, bf16 dots are wrong, so bf16 operands are rounded to bf16 and then
multiplied in fp32: the same products a bf16 tensor-core dot with fp32 accumulation computes.

The op is the torch.library custom op ``getkern::attention_forward`` (backward:
``getkern::attention_backward``), so torch.compile(fullgraph=True) sees one opaque node.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from getkern._backend import cuda_fp32_matmul_is_tf32, interpreter_enabled, resolve_backend
from getkern.ops import cpu_attention
from getkern.ops._aot import GET_TOKENS, AotSpec, distinct_specializations
from getkern.ops._triton import constexpr, jit, tl, triton

HEAD_DIMS = (32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # the Triton kernels
REFERENCE_DTYPES = DTYPES + (torch.float64,)  # the PyTorch path also takes float64
_LOG2E = constexpr(1.4426950408889634)  # log2(e): softmax runs in exp2


#################################################################################
#                                Triton kernels                                 #
#################################################################################


@jit
def _load_tile(
    QKV,
    C,
    U,
    b,
    rows,
    cols,
    N,
    stride_qkv_b,
    stride_qkv_n,
    stride_c_b,
    stride_u_b,
    stride_u_n,
    HAS_C: tl.constexpr,
    HAS_U: tl.constexpr,
    ALIGNED: tl.constexpr,
):
    """(len(rows), len(cols)) fp32 tile of qkv + c + u; rows >= N load as c (masked by the caller).

    ALIGNED (checked by the host): every row starts 16-byte aligned. The JIT would specialize on that
    by itself; stating it on the pointer tiles (inline: a hint set inside a helper function is lost)
    lets ahead-of-time builds vectorize these loads too. Without it they spill."""
    b64 = b.to(tl.int64)  # batch offsets can pass 2**31 elements
    mask = rows[:, None] < N
    p = QKV + b64 * stride_qkv_b + rows[:, None] * stride_qkv_n + cols[None, :]
    if ALIGNED:
        p = tl.multiple_of(p, [1, 16])
    x = tl.load(p, mask=mask, other=0.0)
    x = x.to(tl.float32)
    if HAS_C:
        x += tl.load(C + b64 * stride_c_b + cols).to(tl.float32)[None, :]
    if HAS_U:
        pu = U + b64 * stride_u_b + rows[:, None] * stride_u_n + cols[None, :]
        if ALIGNED:
            pu = tl.multiple_of(pu, [1, 16])
        x += tl.load(pu, mask=mask, other=0.0).to(tl.float32)
    return x


@jit
def _operand(x, DTYPE: tl.constexpr, DOT_IN_FP32: tl.constexpr):
    """Round an fp32 tile to the compute dtype for tl.dot (kept in fp32 under the interpreter for bf16)."""
    if DOT_IN_FP32:
        return x.to(DTYPE).to(tl.float32)
    return x.to(DTYPE)


@jit
def _attn_fwd_kernel(
    QKV,
    C,
    U,
    Out,
    Lse,
    stride_qkv_b,
    stride_qkv_n,
    stride_c_b,
    stride_u_b,
    stride_u_n,
    N,
    H,
    qk_scale_log2,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_C: tl.constexpr,
    HAS_U: tl.constexpr,
    ALIGNED: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)  # fastest-varying: the query blocks of one head run together (K/V in L2)
    h = tl.program_id(1)  # heads and batch on axes 1 and 2 (65535 each), not B*H on one
    b = tl.program_id(2)
    bh = b.to(tl.int64) * H + h  # int64: B*H*N may pass 2**31 in the lse/delta offsets
    D = H * HEAD_DIM
    DTYPE: tl.constexpr = Out.dtype.element_ty
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_cols = h * HEAD_DIM + offs_d
    strides = (stride_qkv_b, stride_qkv_n, stride_c_b, stride_u_b, stride_u_n)

    q = _operand(_load_tile(QKV, C, U, b, offs_m, q_cols, N, *strides, HAS_C, HAS_U, ALIGNED), DTYPE, DOT_IN_FP32)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)  # running row max, log2 units
    l_i = tl.zeros((BLOCK_M,), tl.float32)  # running row sum of exp2
    acc = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(QKV, C, U, b, offs_n, D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED)
        k = _operand(k, DTYPE, DOT_IN_FP32)
        v = _load_tile(QKV, C, U, b, offs_n, 2 * D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED)
        v = _operand(v, DTYPE, DOT_IN_FP32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
        s = tl.where(offs_n[None, :] < N, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(_operand(p, DTYPE, DOT_IN_FP32), v, input_precision=DOT_PRECISION)
        m_i = m_new

    row_ok = offs_m < N
    out = acc / l_i[:, None]
    b64 = b.to(tl.int64)
    out_ptrs = Out + b64 * N * D + offs_m[:, None] * D + q_cols[None, :]
    tl.store(out_ptrs, out.to(DTYPE), mask=row_ok[:, None])
    tl.store(Lse + bh * N + offs_m, (m_i + tl.math.log2(l_i)) / _LOG2E, mask=row_ok)  # natural log


@jit
def _attn_bwd_delta_kernel(Out, dOut, Delta, N, H, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta[b, h, n] = sum_d out * dout over head h's channels (both (B, N, D) contiguous)."""
    pid_m = tl.program_id(0)
    h = tl.program_id(1)  # heads and batch on axes 1 and 2 (65535 each), not B*H on one
    b = tl.program_id(2)
    bh = b.to(tl.int64) * H + h  # int64: B*H*N may pass 2**31 in the lse/delta offsets
    D = H * HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = h * HEAD_DIM + tl.arange(0, HEAD_DIM)
    mask = offs_m[:, None] < N
    offsets = b.to(tl.int64) * N * D + offs_m[:, None] * D + cols[None, :]
    o = tl.load(Out + offsets, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(dOut + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(Delta + bh * N + offs_m, tl.sum(o * do, 1), mask=offs_m < N)


@jit
def _bwd_dk_dv(
    QKV,
    C,
    U,
    dout_base,
    lse_base,
    delta_base,
    b,
    offs_n,
    q_cols,
    D,
    N,
    strides,
    qk_scale_log2,
    HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr,
    HAS_C: tl.constexpr,
    HAS_U: tl.constexpr,
    ALIGNED: tl.constexpr,
    DTYPE: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dk (unscaled), dv of key rows offs_n, looping over every query block. Scores are kept
    transposed (sT = k q^T) so dk and dv accumulate row-major."""
    k = _operand(_load_tile(QKV, C, U, b, offs_n, D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED), DTYPE, DOT_IN_FP32)
    v = _load_tile(QKV, C, U, b, offs_n, 2 * D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED)
    v = _operand(v, DTYPE, DOT_IN_FP32)
    dk = tl.zeros((offs_n.shape[0], HEAD_DIM), tl.float32)
    dv = tl.zeros((offs_n.shape[0], HEAD_DIM), tl.float32)
    for start_m in range(0, N, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < N
        q = _operand(_load_tile(QKV, C, U, b, offs_m, q_cols, N, *strides, HAS_C, HAS_U, ALIGNED), DTYPE, DOT_IN_FP32)
        do_ptrs = tl.multiple_of(dout_base + offs_m[:, None] * D + q_cols[None, :], [1, 16])  # host-made aligned
        do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
        do = _operand(do.to(tl.float32), DTYPE, DOT_IN_FP32)
        lse = tl.load(lse_base + offs_m, mask=row_ok, other=0.0) * _LOG2E
        delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
        sT = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale_log2
        pT = tl.where(row_ok[None, :], tl.math.exp2(sT - lse[None, :]), 0.0)  # padded queries: p = 0
        dv += tl.dot(_operand(pT, DTYPE, DOT_IN_FP32), do, input_precision=DOT_PRECISION)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(_operand(dsT, DTYPE, DOT_IN_FP32), q, input_precision=DOT_PRECISION)
    return dk, dv


@jit
def _bwd_dq(
    QKV,
    C,
    U,
    dout_base,
    lse_base,
    delta_base,
    b,
    offs_m,
    q_cols,
    D,
    N,
    strides,
    qk_scale_log2,
    HEAD_DIM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_C: tl.constexpr,
    HAS_U: tl.constexpr,
    ALIGNED: tl.constexpr,
    DTYPE: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """dq (unscaled) of query rows offs_m, looping over every key block."""
    row_ok = offs_m < N
    q = _operand(_load_tile(QKV, C, U, b, offs_m, q_cols, N, *strides, HAS_C, HAS_U, ALIGNED), DTYPE, DOT_IN_FP32)
    do_ptrs = tl.multiple_of(dout_base + offs_m[:, None] * D + q_cols[None, :], [1, 16])  # host-made aligned
    do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
    do = _operand(do.to(tl.float32), DTYPE, DOT_IN_FP32)
    lse = tl.load(lse_base + offs_m, mask=row_ok, other=0.0) * _LOG2E
    delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros((offs_m.shape[0], HEAD_DIM), tl.float32)
    for start_n in range(0, N, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = _load_tile(QKV, C, U, b, offs_n, D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED)
        k = _operand(k, DTYPE, DOT_IN_FP32)
        v = _load_tile(QKV, C, U, b, offs_n, 2 * D + q_cols, N, *strides, HAS_C, HAS_U, ALIGNED)
        v = _operand(v, DTYPE, DOT_IN_FP32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale_log2
        p = tl.where(offs_n[None, :] < N, tl.math.exp2(s - lse[:, None]), 0.0)  # padded keys: p = 0
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(_operand(ds, DTYPE, DOT_IN_FP32), k, input_precision=DOT_PRECISION)
    return dq


@jit
def _attn_bwd_kernel(
    QKV,
    C,
    U,
    dOut,
    Lse,
    Delta,
    dQKV,
    stride_qkv_b,
    stride_qkv_n,
    stride_c_b,
    stride_u_b,
    stride_u_n,
    N,
    H,
    sm_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_M1: tl.constexpr,
    BLOCK_N1: tl.constexpr,
    BLOCK_N2: tl.constexpr,
    HAS_C: tl.constexpr,
    HAS_U: tl.constexpr,
    ALIGNED: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Program (j, bh): dk, dv of key rows [j*BLOCK_N1, +BLOCK_N1), then dq of the same query rows."""
    pid = tl.program_id(0)
    h = tl.program_id(1)  # heads and batch on axes 1 and 2 (65535 each), not B*H on one
    b = tl.program_id(2)
    bh = b.to(tl.int64) * H + h  # int64: B*H*N may pass 2**31 in the lse/delta offsets
    D = H * HEAD_DIM
    DTYPE: tl.constexpr = dQKV.dtype.element_ty
    qk_scale_log2 = sm_scale * _LOG2E
    b64 = b.to(tl.int64)
    q_cols = h * HEAD_DIM + tl.arange(0, HEAD_DIM)
    strides = (stride_qkv_b, stride_qkv_n, stride_c_b, stride_u_b, stride_u_n)
    dout_base = dOut + b64 * N * D
    dqkv_base = dQKV + b64 * N * 3 * D
    rows = pid * BLOCK_N1 + tl.arange(0, BLOCK_N1)
    row_ok = rows[:, None] < N

    dk, dv = _bwd_dk_dv(
        QKV,
        C,
        U,
        dout_base,
        Lse + bh * N,
        Delta + bh * N,
        b,
        rows,
        q_cols,
        D,
        N,
        strides,
        qk_scale_log2,
        HEAD_DIM,
        BLOCK_M1,
        HAS_C,
        HAS_U,
        ALIGNED,
        DTYPE,
        DOT_IN_FP32,
        DOT_PRECISION,
    )
    dqkv_rows = dqkv_base + rows[:, None] * 3 * D
    tl.store(dqkv_rows + (D + q_cols)[None, :], (dk * sm_scale).to(DTYPE), mask=row_ok)
    tl.store(dqkv_rows + (2 * D + q_cols)[None, :], dv.to(DTYPE), mask=row_ok)
    dq = _bwd_dq(
        QKV,
        C,
        U,
        dout_base,
        Lse + bh * N,
        Delta + bh * N,
        b,
        rows,
        q_cols,
        D,
        N,
        strides,
        qk_scale_log2,
        HEAD_DIM,
        BLOCK_N2,
        HAS_C,
        HAS_U,
        ALIGNED,
        DTYPE,
        DOT_IN_FP32,
        DOT_PRECISION,
    )
    tl.store(dqkv_rows + q_cols[None, :], (dq * sm_scale).to(DTYPE), mask=row_ok)


#################################################################################
#                        Launch configuration (one rule)                        #
#################################################################################


@dataclass(frozen=True)
class AttentionConfig:
    """Tile sizes and launch parameters of the three kernels for one (head dim, dtype, arch)."""

    fwd_block_m: int
    fwd_block_n: int
    fwd_warps: int
    fwd_stages: int
    bwd_block_m1: int  # query rows per step of the dk/dv loop
    bwd_block_n1: int  # key rows per program (also its query rows for dq)
    bwd_block_n2: int  # key rows per step of the dq loop
    bwd_warps: int
    bwd_stages: int
    delta_block_m: int = 64


INTERPRETER_ARCH = (9, 0)  # the interpreter runs the sm_90 tiles: the largest, so the fewest steps


def attention_config(
    head_dim: int, dtype: torch.dtype, arch: tuple[int, int], precision: str | None = None
) -> AttentionConfig:
    """The launch configuration for ``head_dim`` in HEAD_DIMS, compute ``dtype`` and GPU ``arch``
    (compute capability; the interpreter uses INTERPRETER_ARCH); ``precision``: the DOT_PRECISION of
    fp32 inputs ("ieee" or "tf32"; default: what _dot_flags passes under torch's current setting).

    Rule (each case compiled for sm_80 and sm_90 by getkern.tools.gpu_check with zero spills; figures
    in docs/attention.md). The K/V tiles pass through registers (c and u are added on load), so
    tiles are smaller than in a plain flash kernel, the backward's most of all:
    - sm_90 (wgmma, accumulators of a 4-warp group): forward 256 query rows x 64 keys on 8 warps
      for head dims 32/64 (at GET's N = 256 one program per head: K/V read once), 128 x 64 at 128;
      backward 128 key rows per program with 32-row steps on 8 warps; at head dim 128 only 16-row
      tiles on 4 warps fit (mma.sync, not wgmma).
    - sm_80 (mma.sync): forward 128 query rows on 8 warps with 64 / 32 / 16 keys per step at head
      dim 32 / 64 / 128 (128 x 64 at head dim 64 spills 268 B in bf16 with c and u under the JIT's
      argument specialisation); backward 16-row steps on 4 warps with 64 / 32 / 16 key rows per
      program at head dim 32 / 64 / 128.
    - fp32 inputs: ieee dots (CUDA-core FMA, whose operand layouts replicate rows across threads) or
      TF32 dots: 32 x 16 forward tiles, 16-row backward steps with 16 key rows per program (32 with
      TF32: 16 spills on sm_80 at head dim 128 and sm_90 at 64), 8 warps, no pipelining (in the ieee
      backward at head dim 64 two stages: one spills 12 B on sm_80 under triton 3.9), every arch.
    """
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {head_dim}")
    if dtype == torch.float32:
        tf32 = (precision or _dot_flags(dtype)["DOT_PRECISION"]) == "tf32"
        return AttentionConfig(
            fwd_block_m=32,
            fwd_block_n=16,
            fwd_warps=8,
            fwd_stages=1,
            bwd_block_m1=16,
            bwd_block_n1=32 if tf32 else 16,
            bwd_block_n2=16,
            bwd_warps=8,
            bwd_stages=2 if head_dim == 64 and not tf32 else 1,
        )
    big = head_dim == 128
    if arch[0] >= 9:
        return AttentionConfig(
            fwd_block_m=128 if big else 256,
            fwd_block_n=64,
            fwd_warps=8,
            fwd_stages=2 if big else 3,
            bwd_block_m1=16 if big else 32,
            bwd_block_n1=16 if big else 128,
            bwd_block_n2=16 if big else 32,
            bwd_warps=4 if big else 8,
            bwd_stages=2,
        )
    return AttentionConfig(
        fwd_block_m=128,
        fwd_block_n={32: 64, 64: 32, 128: 16}[head_dim],
        fwd_warps=8,
        fwd_stages=2,
        bwd_block_m1=16,
        bwd_block_n1={32: 64, 64: 32, 128: 16}[head_dim],
        bwd_block_n2=16,
        bwd_warps=4,
        bwd_stages=2,
    )


def _device_arch(device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)
    return INTERPRETER_ARCH


#################################################################################
#                               Input validation                                #
#################################################################################


def _check_inputs(qkv, num_heads, c, u, scale) -> None:
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 3 or qkv.shape[-1] % 3:
        shape = tuple(qkv.shape) if isinstance(qkv, torch.Tensor) else type(qkv).__name__
        raise ValueError(f"qkv must be a (B, N, 3D) tensor, got {shape}")
    B, N, three_d = qkv.shape
    if B == 0 or N == 0 or three_d == 0:
        raise ValueError(f"qkv must be non-empty, got shape {tuple(qkv.shape)}")
    D = three_d // 3
    if not isinstance(num_heads, int) or num_heads <= 0 or D % num_heads:
        raise ValueError(f"num_heads must be a positive int dividing D = {D}, got {num_heads!r}")
    for name, t, shape in (("qkv", qkv, (B, N, three_d)), ("c", c, (B, 1, three_d)), ("u", u, (B, N, three_d))):
        if t is None:
            continue
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        if t.dtype not in REFERENCE_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 (or float64, PyTorch path only), got {t.dtype}")
        if t.device != qkv.device:
            raise ValueError(f"{name} is on {t.device} but qkv is on {qkv.device}")
    if scale is not None and not math.isfinite(scale):
        raise ValueError(f"scale must be a finite float, got {scale!r}")


def _compute_dtype(qkv, c, u) -> torch.dtype:
    dtype = qkv.dtype
    for t in (c, u):
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


#################################################################################
#                              Triton host launches                              #
#################################################################################


def _kernel_args(qkv, c, u):
    """(c, u, strides, aligned) for the kernels. An absent c or u passes qkv with zero strides (never
    read). aligned: every row of qkv, c, u starts 16-byte aligned (checked with margin: pointers and
    strides multiples of 16 elements), true for fresh tensors and for GET's views at head dims 32+."""
    c_arg = qkv if c is None else c
    u_arg = qkv if u is None else u
    strides = (
        qkv.stride(0),
        qkv.stride(1),
        0 if c is None else c.stride(0),
        0 if u is None else u.stride(0),
        0 if u is None else u.stride(1),
    )
    aligned = all(t.data_ptr() % (16 * t.element_size()) == 0 for t in (qkv, c_arg, u_arg)) and all(
        s % 16 == 0 for s in strides
    )
    return c_arg, u_arg, strides, aligned


def _dot_flags(dtype: torch.dtype) -> dict:
    """fp32 operands follow torch's CUDA fp32 matmul setting ("ieee" unless TF32 is allowed, as for the
    matmul ops); fp16/bf16 ignore the precision argument (the interpreter's bf16 runs as exact fp32)."""
    interp_bf16 = interpreter_enabled() and dtype == torch.bfloat16
    ieee = interp_bf16 or (dtype == torch.float32 and not cuda_fp32_matmul_is_tf32())
    return dict(DOT_IN_FP32=interp_bf16, DOT_PRECISION="ieee" if ieee else "tf32")


def _forward_triton(qkv, c, u, num_heads: int, scale: float):
    B, N, three_d = qkv.shape
    D = three_d // 3
    head_dim = D // num_heads
    dtype = _compute_dtype(qkv, c, u)
    cfg = attention_config(head_dim, dtype, _device_arch(qkv.device))
    out = torch.empty((B, N, D), dtype=dtype, device=qkv.device)
    lse = torch.empty((B, num_heads, N), dtype=torch.float32, device=qkv.device)
    c_arg, u_arg, strides, aligned = _kernel_args(qkv, c, u)
    grid = (triton.cdiv(N, cfg.fwd_block_m), num_heads, B)
    _attn_fwd_kernel[grid](
        qkv,
        c_arg,
        u_arg,
        out,
        lse,
        *strides,
        N,
        num_heads,
        scale * _LOG2E.value,
        HEAD_DIM=head_dim,
        BLOCK_M=cfg.fwd_block_m,
        BLOCK_N=cfg.fwd_block_n,
        HAS_C=c is not None,
        HAS_U=u is not None,
        ALIGNED=aligned,
        **_dot_flags(dtype),
        num_warps=cfg.fwd_warps,
        num_stages=cfg.fwd_stages,
    )
    return out, lse


def _backward_triton(dout, qkv, c, u, out, lse, num_heads: int, scale: float):
    B, N, three_d = qkv.shape
    D = three_d // 3
    head_dim = D // num_heads
    dtype = out.dtype
    cfg = attention_config(head_dim, dtype, _device_arch(qkv.device))
    dout = dout.to(dtype).contiguous()
    if dout.data_ptr() % (16 * dout.element_size()):  # the kernels read dout as an aligned buffer
        dout = dout.clone()
    delta = torch.empty_like(lse)
    _attn_bwd_delta_kernel[(triton.cdiv(N, cfg.delta_block_m), num_heads, B)](
        out, dout, delta, N, num_heads, HEAD_DIM=head_dim, BLOCK_M=cfg.delta_block_m
    )
    dqkv = torch.empty((B, N, three_d), dtype=dtype, device=qkv.device)
    c_arg, u_arg, strides, aligned = _kernel_args(qkv, c, u)
    grid = (triton.cdiv(N, cfg.bwd_block_n1), num_heads, B)
    _attn_bwd_kernel[grid](
        qkv,
        c_arg,
        u_arg,
        dout,
        lse,
        delta,
        dqkv,
        *strides,
        N,
        num_heads,
        scale,
        HEAD_DIM=head_dim,
        BLOCK_M1=cfg.bwd_block_m1,
        BLOCK_N1=cfg.bwd_block_n1,
        BLOCK_N2=cfg.bwd_block_n2,
        HAS_C=c is not None,
        HAS_U=u is not None,
        ALIGNED=aligned,
        **_dot_flags(dtype),
        num_warps=cfg.bwd_warps,
        num_stages=cfg.bwd_stages,
    )
    return dqkv


#################################################################################
#                     torch.library custom op with autograd                     #
#################################################################################


@torch.library.custom_op("getkern::attention_forward", mutates_args=())
def _attention_forward_op(
    qkv: torch.Tensor, c: torch.Tensor | None, u: torch.Tensor | None, num_heads: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (out (B, N, D) in the compute dtype, lse (B, H, N) float32)."""
    return _forward_triton(qkv, c, u, num_heads, scale)


@_attention_forward_op.register_fake
def _(qkv, c, u, num_heads, scale):
    B, N, three_d = qkv.shape
    out = qkv.new_empty((B, N, three_d // 3), dtype=_compute_dtype(qkv, c, u))
    return out, qkv.new_empty((B, num_heads, N), dtype=torch.float32)


@torch.library.custom_op("getkern::attention_backward", mutates_args=())
def _attention_backward_op(
    dout: torch.Tensor,
    qkv: torch.Tensor,
    c: torch.Tensor | None,
    u: torch.Tensor | None,
    out: torch.Tensor,
    lse: torch.Tensor,
    num_heads: int,
    scale: float,
) -> torch.Tensor:
    """Returns d(qkv + c + u) as (B, N, 3D) in the compute dtype."""
    return _backward_triton(dout, qkv, c, u, out, lse, num_heads, scale)


@_attention_backward_op.register_fake
def _(dout, qkv, c, u, out, lse, num_heads, scale):
    return qkv.new_empty(qkv.shape, dtype=out.dtype)


def _setup_context(ctx, inputs, output):
    qkv, c, u, num_heads, scale = inputs
    out, lse = output
    ctx.save_for_backward(qkv, c, u, out, lse)
    ctx.num_heads, ctx.scale = num_heads, scale


def _backward(ctx, dout, _dlse):
    qkv, c, u, out, lse = ctx.saved_tensors
    dsum = _attention_backward_op(dout, qkv, c, u, out, lse, ctx.num_heads, ctx.scale)
    need_qkv, need_c, need_u = ctx.needs_input_grad[:3]
    dqkv = dsum.to(qkv.dtype) if need_qkv else None
    dc = dsum.sum(dim=1, keepdim=True, dtype=torch.float32).to(c.dtype) if need_c else None
    du = dsum.to(u.dtype) if need_u else None
    return dqkv, dc, du, None, None


_attention_forward_op.register_autograd(_backward, setup_context=_setup_context)


#################################################################################
#                                  Public API                                   #
#################################################################################


def attention_reference(
    qkv: torch.Tensor,
    num_heads: int,
    c: torch.Tensor | None = None,
    u: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
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


def fused_attention(
    qkv: torch.Tensor,
    num_heads: int,
    *,
    c: torch.Tensor | None = None,
    u: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """softmax(q k^T * scale) v per head, with q, k, v split from qkv + c + u.

    qkv: (B, N, 3D) fp16/bf16/fp32, token-major (see the module docstring); c: (B, 1, 3D) or None;
    u: (B, N, 3D) or None; any strides (views such as ``chunk`` outputs need no copy; a last dim
    that is not unit-stride is copied once). scale defaults to 1/sqrt(D / num_heads).
    Returns (B, N, D) in the promoted dtype of qkv, c, u. Differentiable in qkv, c and u.
    backend: "auto" | "triton" | "torch" (see getkern._backend); Triton needs D / num_heads in
    HEAD_DIMS.
    """
    _check_inputs(qkv, num_heads, c, u, scale)
    head_dim = qkv.shape[-1] // 3 // num_heads
    unsupported = None
    if head_dim not in HEAD_DIMS:
        unsupported = f"head dim {head_dim} (supported: {HEAD_DIMS})"
    elif any(t is not None and t.dtype not in DTYPES for t in (qkv, c, u)):
        unsupported = "float64 inputs"
    path = resolve_backend(backend, qkv.device, op="fused_attention", unsupported=unsupported)
    if path == "torch":
        if backend == "auto" and cpu_attention.applies(qkv, c, u):  # CPU, short sequences: one C++ pass
            for t in (c, u):
                qkv = qkv if t is None else qkv + t
            return cpu_attention.cpu_attention(qkv, num_heads, scale)
        return attention_reference(qkv, num_heads, c, u, scale)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    # The kernels take any row/batch strides; only the channel dim must be dense (else one copy).
    qkv, c, u = (t if t is None or t.stride(-1) == 1 else t.contiguous() for t in (qkv, c, u))
    return _attention_forward_op(qkv, c, u, num_heads, scale)[0]


#################################################################################
#                             Traffic of the fused op                           #
#################################################################################


def fused_attention_traffic(
    B: int, N: int, D: int, H: int, dtype: torch.dtype, arch: tuple[int, int], backward: bool = False
) -> dict[str, int]:
    """Bytes the fused op moves with c and u present, from the kernels' access pattern under the
    configuration for ``arch``: {"op_bytes", "tile_bytes", "launches"}.

    op_bytes: each launch reads its inputs and writes its outputs once (every re-read an L2 hit: the
    model of count_torch_traffic). tile_bytes: every tile load and store the programs issue (K/V once
    per query block in the forward; Q/dout and K/V once per block in the backward): no cache at all.
    The backward adds the delta kernel and the torch d(c) reduction and its cast.
    """
    s = torch.finfo(dtype).bits // 8
    dh = D // H
    cfg = attention_config(dh, dtype, arch)
    row = N * dh  # one head's q, k, v or out: elements
    c_tile = dh * s  # c is added on every tile load (L2-resident)
    in_row = row * 2 * s  # a q/k/v tile's qkv + u bytes over all N rows
    op = B * (3 * N * D * 2 + 3 * D) * s + B * N * D * s + B * H * N * 4  # qkv, u, c; out; lse
    blocks_m = math.ceil(N / cfg.fwd_block_m)
    blocks_n = math.ceil(N / cfg.fwd_block_n)
    tile = (
        B
        * H
        * (
            in_row
            + blocks_m * 2 * in_row  # q once, k/v per q block
            + blocks_m * (1 + 2 * blocks_n) * c_tile
            + row * s
            + N * 4
        )
    )  # c; out; lse
    launches = 1
    if backward:
        # delta: read out, dout, write delta; bwd: read qkv, c, u, dout, lse, delta, write dqkv;
        # dc = token sum of dqkv (one torch reduction); d(qkv) and d(u) are the same tensor.
        stats = B * H * N * 4
        op += (
            (2 * B * N * D * s + stats)
            + (B * (6 * N * D + 3 * D) * s + B * N * D * s + 2 * stats + 3 * B * N * D * s)
            + (3 * B * N * D * s + 3 * B * D * s)
        )
        blocks = math.ceil(N / cfg.bwd_block_n1)
        per_head = (
            2 * row * s
            + N * 4  # delta kernel
            + blocks * (in_row + row * s + 2 * N * 4)  # dk/dv: all q, dout, stats
            + 2 * in_row  # own k, v rows
            + in_row
            + row * s
            + 2 * N * 4  # dq: own q, dout, stats
            + blocks * 2 * in_row  # dq: all k, v
            + 3 * row * s
        )  # write dq, dk, dv
        tile += B * H * per_head + 3 * B * N * D * s + 3 * B * D * s  # + dc reduction
        launches += 4  # delta, bwd, the dc token sum and its cast to c.dtype
    return {"op_bytes": op, "tile_bytes": tile, "launches": launches}


#################################################################################
#                          Ahead-of-time compile specs                          #
#################################################################################

_TRITON_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
AOT_ARCHS = ((8, 0), (9, 0))


# (compute dtype, DOT_PRECISION) pairs _dot_flags can pass: fp32 runs IEEE dots under torch's default
# "highest" fp32 matmul precision and TF32 dots (tensor cores) once torch allows TF32.
_AOT_PRECISIONS = ((torch.float16, "tf32"), (torch.bfloat16, "tf32"), (torch.float32, "ieee"), (torch.float32, "tf32"))
# Head counts of the GET and ViT configs (getkern/models/configs.py), taken at every head dim: with
# GET_TOKENS, the (N, H) the kernels get at GET sizes. H = 16 (ViT-L) is a multiple of 16, which the JIT
# specialises on: a binary of its own.
GET_HEADS = (4, 6, 8, 12, 16)


def _aot_values(N: int, H: int, head_dim: int, has_c: bool, has_u: bool) -> dict[str, int]:
    """The ints _forward_triton / _backward_triton pass for fresh (B, N, 3D) qkv and u, (B, 1, 3D) c."""
    three_d = 3 * H * head_dim
    return {
        "stride_qkv_b": N * three_d,
        "stride_qkv_n": three_d,
        "stride_c_b": three_d if has_c else 0,
        "stride_u_b": N * three_d if has_u else 0,
        "stride_u_n": three_d if has_u else 0,
        "N": N,
        "H": H,
    }


def aot_specs() -> Iterator[AotSpec]:
    """Every kernel configuration attention_config can choose, for sm_80 and sm_90 (one spec per arch),
    fp16, bf16 and fp32 (IEEE and TF32 dots), with c and u both present and both absent (the other two
    mixes load a subset of the same tiles), once per JIT specialisation the GET sizes (GET_TOKENS x
    GET_HEADS) give."""
    specs = []
    for arch in AOT_ARCHS:
        for dtype, precision in _AOT_PRECISIONS:
            ty = _TRITON_DTYPE[dtype]
            dots = dtype != torch.float32 or precision == "tf32"  # fp32 ieee dots: FMA, not tensor cores
            for head_dim in HEAD_DIMS:
                cfg = attention_config(head_dim, dtype, arch, precision)
                tag = f"sm{arch[0]}{arch[1]},hd={head_dim},{ty}"
                dot_tag = f"{tag},{precision}" if dtype == torch.float32 else tag
                cc = (arch[0] * 10 + arch[1],)
                sizes = [(N, H) for H in GET_HEADS for N in GET_TOKENS]
                specs += [
                    AotSpec(
                        name=f"attention_bwd_delta[{tag}]",
                        kernel=_attn_bwd_delta_kernel,
                        signature={
                            "Out": f"*{ty}",
                            "dOut": f"*{ty}",
                            "Delta": "*fp32",
                            "N": "i32",
                            "H": "i32",
                            "HEAD_DIM": "constexpr",
                            "BLOCK_M": "constexpr",
                        },
                        constexprs={"HEAD_DIM": head_dim, "BLOCK_M": cfg.delta_block_m},
                        num_warps=4,
                        num_stages=1,
                        archs=cc,
                        values={"N": N, "H": H},
                    )
                    for N, H in sizes
                ]
                for has_c, has_u in ((True, True), (False, False)):
                    common_sig = {"QKV": f"*{ty}", "C": f"*{ty}", "U": f"*{ty}"}
                    stride_sig = {
                        s: "i32" for s in ("stride_qkv_b", "stride_qkv_n", "stride_c_b", "stride_u_b", "stride_u_n")
                    }
                    flags = {
                        "HAS_C": has_c,
                        "HAS_U": has_u,
                        "ALIGNED": True,
                        "DOT_IN_FP32": False,
                        "DOT_PRECISION": precision,
                    }
                    inj = f"{'c' if has_c else ''}{'u' if has_u else ''}" or "none"
                    specs += [
                        AotSpec(
                            name=f"attention_fwd[{dot_tag},inj={inj}]",
                            kernel=_attn_fwd_kernel,
                            signature={
                                **common_sig,
                                "Out": f"*{ty}",
                                "Lse": "*fp32",
                                **stride_sig,
                                "N": "i32",
                                "H": "i32",
                                "qk_scale_log2": "fp32",
                                **{k: "constexpr" for k in ("HEAD_DIM", "BLOCK_M", "BLOCK_N", *flags)},
                            },
                            constexprs={
                                "HEAD_DIM": head_dim,
                                "BLOCK_M": cfg.fwd_block_m,
                                "BLOCK_N": cfg.fwd_block_n,
                                **flags,
                            },
                            num_warps=cfg.fwd_warps,
                            num_stages=cfg.fwd_stages,
                            uses_dot=dots,
                            archs=cc,
                            values=_aot_values(N, H, head_dim, has_c, has_u),
                        )
                        for N, H in sizes
                    ]
                    specs += [
                        AotSpec(
                            name=f"attention_bwd[{dot_tag},inj={inj}]",
                            kernel=_attn_bwd_kernel,
                            signature={
                                **common_sig,
                                "dOut": f"*{ty}",
                                "Lse": "*fp32",
                                "Delta": "*fp32",
                                "dQKV": f"*{ty}",
                                **stride_sig,
                                "N": "i32",
                                "H": "i32",
                                "sm_scale": "fp32",
                                **{k: "constexpr" for k in ("HEAD_DIM", "BLOCK_M1", "BLOCK_N1", "BLOCK_N2", *flags)},
                            },
                            constexprs={
                                "HEAD_DIM": head_dim,
                                "BLOCK_M1": cfg.bwd_block_m1,
                                "BLOCK_N1": cfg.bwd_block_n1,
                                "BLOCK_N2": cfg.bwd_block_n2,
                                **flags,
                            },
                            num_warps=cfg.bwd_warps,
                            num_stages=cfg.bwd_stages,
                            uses_dot=dots,
                            archs=cc,
                            values=_aot_values(N, H, head_dim, has_c, has_u),
                        )
                        for N, H in sizes
                    ]
    yield from distinct_specializations(specs)

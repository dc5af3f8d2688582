"""The matmul kernel family of the GET block's fused ops: kernels, launchers, configs, input check, AOT specs.

Two Triton kernels, C (M, N) = epilogue(A (M, K) @ W^T + bias), W (N, K) an nn.Linear weight:

- ``_linear_kernel``: a tiled ``tl.dot`` matmul; A is read as it is. Epilogues "none", "gelu" (exact
  erf GELU, optionally keeping the pre-activation), "residual", "residual2" (adds two tensors never
  summed in memory) and "gelu_grad" (the backward of fc1). Launched by :func:`linear_launch`.
- ``_ln_linear_kernel``: A = LN(x [+ x2]), the LayerNorm in the matmul's prologue, so the normalised
  activations (and s = x + x2) never go through device memory at inference:
  pass 1 over K, per row block: fp32 mean and M2 of x (+ x2) in BLOCK_K chunks, merged with Chan's
  formula (each chunk centred on its own mean: no E[x^2] - E[x]^2 cancellation), rstd = 1/sqrt(var + eps);
  pass 2 (the K loop): load x (+ x2), normalise, apply gamma/beta, round to the input dtype (the
  operand the unfused path would read back from memory), then ``tl.dot`` with the W tile. Every program
  of a row block recomputes the statistics (there are N / BLOCK_N of them): the price of not writing
  them. When autograd needs them (``STORE_NORMED``), the programs of the first column tile also write
  s, LN(s), mean and rstd for the backward. Epilogues "none" and "gelu". Launched by
  :func:`ln_linear_launch`.

Both share the grouped tile order (``_tile_coords``), the epilogue code (``_epilogue_store``), one
tile-config rule (``_gpu_config``), the ALIGNED contract (``_aligned``) and torch's fp32 matmul
precision (``_dot_precision``). docs/layernorm_mlp.md gives the reasoning, the block-size rule and
the TF32/IEEE choice for fp32.

The ops built on these (getkern.ops.mlp, getkern.ops.ln_linear, getkern.ops.ln_mlp) share one input
check, :func:`check_inputs`; :func:`aot_specs` yields the gate's specs of both kernels.
"""

from __future__ import annotations

import torch

from getkern._backend import cuda_fp32_matmul_is_tf32, interpreter_enabled
from getkern.ops._aot import GET_BATCH, GET_DIMS, GET_MLP_RATIOS, GET_TOKENS, AotSpec, distinct_specializations
from getkern.ops._triton import constexpr, jit, tl, triton

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_SQRT1_2 = constexpr(0.7071067811865476)  # 1/sqrt(2)
_INV_SQRT_2PI = constexpr(0.3989422804014327)  # 1/sqrt(2*pi)


#################################################################################
#                                   Kernels                                     #
#################################################################################


@jit
def _tile_coords(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of this program in grouped order: GROUP_M row-tiles share each W column-tile
    while it is in L2."""
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    group_size = GROUP_M * tiles_n
    first_m = (pid // group_size) * GROUP_M
    group_m = min(tiles_m - first_m, GROUP_M)
    return first_m + (pid % group_size) % group_m, (pid % group_size) // group_m


@jit
def _epilogue_store(
    acc,
    rows,
    cols,
    M,
    N,
    BIAS,
    RES,
    RES2,
    PRE,
    C,
    EPILOGUE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    STORE_PRE: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """C[rows, cols] = epilogue(acc + bias), all arithmetic in fp32. EPILOGUE: "none"; "gelu"
    (exact erf GELU; STORE_PRE also writes the pre-activation to PRE); "residual" (adds RES);
    "residual2" (adds RES + RES2: the block's x + a, never summed in memory); "gelu_grad"
    (multiplies by GELU'(PRE), the backward of fc1). C, RES, RES2, PRE are (M, N) row-major."""
    col_ok = cols < N
    if ALIGNED:  # BLOCK_N divides N: only rows can run out
        mask = rows[:, None] < M
    else:
        mask = (rows[:, None] < M) & col_ok[None, :]
    offs = rows[:, None].to(tl.int64) * N + cols[None, :]
    bias_ptrs, pre_ptrs, c_ptrs = BIAS + cols, PRE + offs, C + offs
    res_ptrs, res2_ptrs = RES + offs, RES2 + offs
    if ALIGNED:  # rows of BLOCK_N contiguous elements starting on 16 bytes: vector access
        bias_ptrs = tl.max_contiguous(tl.multiple_of(bias_ptrs, 16), BLOCK_N)
        pre_ptrs = tl.max_contiguous(tl.multiple_of(pre_ptrs, [16, 16]), [1, BLOCK_N])
        res_ptrs = tl.max_contiguous(tl.multiple_of(res_ptrs, [16, 16]), [1, BLOCK_N])
        res2_ptrs = tl.max_contiguous(tl.multiple_of(res2_ptrs, [16, 16]), [1, BLOCK_N])
        c_ptrs = tl.max_contiguous(tl.multiple_of(c_ptrs, [16, 16]), [1, BLOCK_N])
    if HAS_BIAS:
        if ALIGNED:
            bias = tl.load(bias_ptrs)
        else:
            bias = tl.load(bias_ptrs, mask=col_ok, other=0.0)
        acc += bias.to(tl.float32)[None, :]
    if EPILOGUE == "gelu":
        if STORE_PRE:
            tl.store(pre_ptrs, acc.to(PRE.dtype.element_ty), mask=mask)
        acc = 0.5 * acc * (1.0 + tl.erf(acc * _SQRT1_2))
    elif EPILOGUE == "residual":
        acc += tl.load(res_ptrs, mask=mask, other=0.0).to(tl.float32)
    elif EPILOGUE == "residual2":
        acc += tl.load(res_ptrs, mask=mask, other=0.0).to(tl.float32) + tl.load(res2_ptrs, mask=mask, other=0.0).to(
            tl.float32
        )
    elif EPILOGUE == "gelu_grad":
        z = tl.load(pre_ptrs, mask=mask, other=0.0).to(tl.float32)
        acc *= 0.5 * (1.0 + tl.erf(z * _SQRT1_2)) + z * _INV_SQRT_2PI * tl.exp(-0.5 * z * z)
    tl.store(c_ptrs, acc.to(C.dtype.element_ty), mask=mask)


@jit
def _linear_kernel(
    A,
    W,
    BIAS,
    RES,
    RES2,
    PRE,
    C,
    M,
    N,
    K,
    stride_wn,
    stride_wk,
    EPILOGUE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    STORE_PRE: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    ALIGNED: tl.constexpr,
    W_K_CONTIGUOUS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """C (M, N) = epilogue(A (M, K) @ W^T + bias), W (N, K) with any strides; A, C, RES, RES2, PRE
    are row-major; epilogues as in _epilogue_store.

    ALIGNED (checked by _aligned; true at every GET size from D = 128): every row of every operand
    starts on a multiple of 16 elements, W is unit-stride along K (W_K_CONTIGUOUS) or along N, and
    BLOCK_K and BLOCK_N divide K and N. The kernel then masks rows only and tells the compiler the
    alignment: 16-byte vector loads and stores and cp.async pipelining, also in an ahead-of-time
    compile that lacks the JIT's argument specialisation."""
    pid_m, pid_n = _tile_coords(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = A + rows[:, None].to(tl.int64) * K + ks[None, :]
    w_ptrs = W + cols[None, :].to(tl.int64) * stride_wn + ks[:, None] * stride_wk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        if ALIGNED:
            a = tl.load(
                tl.max_contiguous(tl.multiple_of(a_ptrs, [16, 16]), [1, BLOCK_K]), mask=rows[:, None] < M, other=0.0
            )
            if W_K_CONTIGUOUS:
                w = tl.load(tl.max_contiguous(tl.multiple_of(w_ptrs, [16, 16]), [BLOCK_K, 1]))
            else:
                w = tl.load(tl.max_contiguous(tl.multiple_of(w_ptrs, [16, 16]), [1, BLOCK_N]))
        else:
            k_ok = ks < K - k
            a = tl.load(a_ptrs, mask=(rows[:, None] < M) & k_ok[None, :], other=0.0)
            w = tl.load(w_ptrs, mask=k_ok[:, None] & (cols[None, :] < N), other=0.0)
        if UPCAST:  # interpreter only: its bf16 arithmetic is wrong, fp32 products are exact
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wk
    _epilogue_store(acc, rows, cols, M, N, BIAS, RES, RES2, PRE, C, EPILOGUE, HAS_BIAS, STORE_PRE, ALIGNED, BLOCK_N)


@jit
def _load_input(X, X2, offs, row_ok, k_ok, ADD_INPUT: tl.constexpr, ALIGNED: tl.constexpr, BLOCK_K: tl.constexpr):
    """fp32 (BLOCK_M, BLOCK_K) tile of x (+ x2) at offs; upcast before any arithmetic (bf16)."""
    x_ptrs, x2_ptrs = X + offs, X2 + offs
    if ALIGNED:  # BLOCK_K divides K: only rows can run out; 16-byte vector loads
        x_ptrs = tl.max_contiguous(tl.multiple_of(x_ptrs, [16, 16]), [1, BLOCK_K])
        x2_ptrs = tl.max_contiguous(tl.multiple_of(x2_ptrs, [16, 16]), [1, BLOCK_K])
        mask = row_ok[:, None]
    else:
        mask = row_ok[:, None] & k_ok[None, :]
    t = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    if ADD_INPUT:
        t += tl.load(x2_ptrs, mask=mask, other=0.0).to(tl.float32)
    return t


@jit
def _ln_linear_kernel(
    X,
    X2,
    LN_W,
    LN_B,
    W,
    BIAS,
    PRE,
    C,
    S,
    H,
    MEAN,
    RSTD,
    M,
    N,
    K,
    eps,
    ADD_INPUT: tl.constexpr,
    EPILOGUE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    STORE_PRE: tl.constexpr,
    STORE_NORMED: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    ALIGNED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """C (M, N) = epilogue(LN(X [+ X2]) @ W^T + BIAS). X, X2, S, H: (M, K) row-major; W: (N, K)
    row-major (an nn.Linear weight); LN_W, LN_B: (K,); MEAN, RSTD: (M,) fp32. EPILOGUE "none" or
    "gelu" (STORE_PRE writes the pre-activation to PRE). STORE_NORMED: the pid_n == 0 programs also
    write s = X + X2 (ADD_INPUT), h = LN(s), mean and rstd. ALIGNED: as in _linear_kernel."""
    pid_m, pid_n = _tile_coords(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    row_offs = rows[:, None].to(tl.int64) * K + ks[None, :]

    # Pass 1: row statistics, chunk by chunk (Chan et al.'s pairwise merge of mean and M2).
    mean = tl.zeros((BLOCK_M,), dtype=tl.float32)
    m2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        k_ok = ks < K - k
        t = _load_input(X, X2, row_offs + k, row_ok, k_ok, ADD_INPUT, ALIGNED, BLOCK_K)
        n_chunk = tl.minimum(K - k, BLOCK_K).to(tl.float32)
        mean_chunk = tl.sum(t, axis=1) / n_chunk
        if ALIGNED:
            d = t - mean_chunk[:, None]
        else:
            d = tl.where(k_ok[None, :], t - mean_chunk[:, None], 0.0)
        delta = mean_chunk - mean
        frac = n_chunk / (k + n_chunk)  # weight of the new chunk in the merged mean
        mean += delta * frac
        m2 += tl.sum(d * d, axis=1) + delta * delta * (k * frac)
    rstd = 1.0 / tl.sqrt(m2 / K + eps)

    # Pass 2: the K loop of the matmul on normalised A tiles.
    # Rows the pid_n == 0 programs store s, h for (a scalar bool in a mask turns int32 in triton 3.9's interpreter).
    normed_rows_ok = rows < M * (pid_n == 0).to(tl.int32)
    w_ptrs = W + cols[None, :].to(tl.int64) * K + ks[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        k_ok = ks < K - k
        t = _load_input(X, X2, row_offs + k, row_ok, k_ok, ADD_INPUT, ALIGNED, BLOCK_K)
        if ALIGNED:
            g = tl.load(tl.max_contiguous(tl.multiple_of(LN_W + k + ks, 16), BLOCK_K))
            b = tl.load(tl.max_contiguous(tl.multiple_of(LN_B + k + ks, 16), BLOCK_K))
            w = tl.load(tl.max_contiguous(tl.multiple_of(w_ptrs, [16, 16]), [BLOCK_K, 1]))
        else:
            g = tl.load(LN_W + k + ks, mask=k_ok, other=0.0)
            b = tl.load(LN_B + k + ks, mask=k_ok, other=0.0)
            w = tl.load(w_ptrs, mask=k_ok[:, None] & (cols[None, :] < N), other=0.0)
        # Columns past K get gamma = beta = 0, so a = 0 there and add nothing to the dot.
        a = (t - mean[:, None]) * rstd[:, None] * g.to(tl.float32)[None, :] + b.to(tl.float32)[None, :]
        a = a.to(X.dtype.element_ty)
        if STORE_NORMED:
            normed_mask = normed_rows_ok[:, None] & k_ok[None, :]
            tl.store(H + row_offs + k, a, mask=normed_mask)
            if ADD_INPUT:
                tl.store(S + row_offs + k, t.to(S.dtype.element_ty), mask=normed_mask)
        if UPCAST:  # interpreter only: its bf16 arithmetic is wrong, fp32 products are exact
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=DOT_PRECISION)
        w_ptrs += BLOCK_K
    if STORE_NORMED:
        tl.store(MEAN + rows, mean, mask=normed_rows_ok)
        tl.store(RSTD + rows, rstd, mask=normed_rows_ok)
    _epilogue_store(acc, rows, cols, M, N, BIAS, C, C, PRE, C, EPILOGUE, HAS_BIAS, STORE_PRE, ALIGNED, BLOCK_N)


#################################################################################
#                     Launch configuration (one rule, documented)               #
#################################################################################


def _gpu_config(dtype: torch.dtype, epilogue: str, N: int, narrow: bool = False, precision: str = "tf32") -> dict:
    """Tile config on a GPU for an (M, N) output: 128x128 tiles (8 warps, 64 fp32 accumulators per
    thread), BLOCK_K 64 for 16-bit inputs and 32 for fp32 (16 for fp32 at ``precision`` "ieee": its
    FMA dots hold both operand tiles in registers, and BLOCK_K 32 spills on sm_80), so 3 stages take
    at most 96 KiB of shared memory on sm_80 and sm_90. Smaller tiles where 128x128 would spill:
    - 128x64 for the backward's "gelu_grad" epilogue (it loads a second (M, H) tile and evaluates
      erf and exp) and for N not a multiple of 128 (the masked path spills at 128x128; with 64, the
      N = D = 64 and qkv width 3D = 192 of the smallest models stay on the ALIGNED path);
    - 64-row tiles for launches the caller marks ``narrow``: the LayerNorm-prologue kernel's
      training launches, which also hold and store s and LN(s) tiles (128-row tiles spill there).
    Every GET width is a multiple of 64 and M = B*N is large, so these few configs serve every GET
    size."""
    block_m = 64 if narrow else 128
    block_n = 64 if epilogue == "gelu_grad" or N % 128 else 128
    block_k = (16 if precision == "ieee" else 32) if dtype == torch.float32 else 64
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, num_warps=8, num_stages=3)


def _config(dtype: torch.dtype, epilogue: str, N: int, narrow: bool = False) -> dict:
    """The GPU rule, or under the interpreter one small config (its cost grows with the number of
    tiles and K steps, and tests use tiny odd shapes)."""
    if interpreter_enabled():
        return dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=32, GROUP_M=4, num_warps=4, num_stages=1)
    return _gpu_config(dtype, epilogue, N, narrow, _dot_precision(dtype))


def _dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs follow torch's own matmul setting (IEEE by default, TF32 once the user allows it),
    so the Triton path matches F.linear; 16-bit inputs go to the tensor cores as they are."""
    if dtype == torch.float32 and not cuda_fp32_matmul_is_tf32():
        return "ieee"
    return "tf32"


def ieee_fp32_on_cuda(x: torch.Tensor) -> bool:
    """fp32 CUDA matmuls at torch's "highest" precision: Triton would run them as FMA dots at about half
    cuBLAS' fp32 rate (docs/layernorm_mlp.md), so "auto" hands these to torch."""
    return x.is_cuda and x.dtype == torch.float32 and _dot_precision(x.dtype) == "ieee"


def shapes_aligned(K: int, block_k: int, N: int, block_n: int) -> bool:
    """The size part of the ALIGNED contract (the AOT specs enumerate it over GET sizes)."""
    return K % block_k == 0 and N % block_n == 0 and K % 16 == 0 and N % 16 == 0


def _aligned(K: int, block_k: int, N: int, block_n: int, w: torch.Tensor, *tensors) -> bool:
    """Whether a kernel of this family may take its ALIGNED path: BLOCK_K divides K and BLOCK_N
    divides N; K, N and W's non-unit stride are multiples of 16 elements; W is unit-stride along K or
    N; every base pointer is aligned to 16 elements (torch's allocators align fresh tensors to more)."""
    w_outer_stride = w.stride(0) if w.stride(1) == 1 else w.stride(1)
    return (
        shapes_aligned(K, block_k, N, block_n)
        and 1 in w.stride()
        and w_outer_stride % 16 == 0
        and all(t.data_ptr() % (16 * t.element_size()) == 0 for t in (w, *tensors) if t is not None)
    )


#################################################################################
#                                  Launchers                                    #
#################################################################################


def linear_launch(
    a2d: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    epilogue: str,
    res: torch.Tensor | None = None,
    res2: torch.Tensor | None = None,
    pre: torch.Tensor | None = None,
    store_pre: bool = False,
) -> torch.Tensor:
    """One launch of _linear_kernel: a2d (M, K) row-major, w (N, K) (any strides) -> (M, N)."""
    M, K = a2d.shape
    N = w.shape[0]
    c = torch.empty(M, N, device=a2d.device, dtype=a2d.dtype)
    cfg = _config(a2d.dtype, epilogue, N)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _linear_kernel[grid](
        a2d,
        w,
        bias if bias is not None else c,
        res if res is not None else c,
        res2 if res2 is not None else c,
        pre if pre is not None else c,
        c,
        M,
        N,
        K,
        w.stride(0),
        w.stride(1),
        EPILOGUE=epilogue,
        HAS_BIAS=bias is not None,
        STORE_PRE=store_pre,
        UPCAST=interpreter_enabled() and a2d.dtype == torch.bfloat16,
        DOT_PRECISION=_dot_precision(a2d.dtype),
        ALIGNED=_aligned(K, cfg["BLOCK_K"], N, cfg["BLOCK_N"], w, a2d, bias, res, res2, pre, c),
        W_K_CONTIGUOUS=w.stride(1) == 1,
        **cfg,
    )
    return c


def ln_linear_launch(
    x2d: torch.Tensor,
    x2_2d: torch.Tensor | None,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    eps: float,
    *,
    epilogue: str,
    train: bool,
):
    """One launch of _ln_linear_kernel. x2d, x2_2d: (M, K) contiguous; weight (N, K) contiguous.

    -> (y (M, N), s, h, mean, rstd, pre). With ``train``: h = LN(s) (M, K), s = x + x2 (M, K; None
    without x2), fp32 mean and rstd (M,), and for the "gelu" epilogue the pre-activation (M, N);
    all None at inference."""
    M, K = x2d.shape
    N = weight.shape[0]
    dtype, device = x2d.dtype, x2d.device
    y = torch.empty(M, N, device=device, dtype=dtype)
    h = s = mean = rstd = pre = None
    if train:
        h = torch.empty_like(x2d)
        s = torch.empty_like(x2d) if x2_2d is not None else None
        mean = torch.empty(M, device=device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        pre = torch.empty_like(y) if epilogue == "gelu" else None
    cfg = _config(dtype, epilogue, N, narrow=train)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _ln_linear_kernel[grid](
        x2d,
        x2_2d if x2_2d is not None else x2d,
        norm_weight,
        norm_bias,
        weight,
        bias if bias is not None else y,
        pre if pre is not None else y,
        y,
        s if s is not None else y,
        h if h is not None else y,
        mean if mean is not None else y,
        rstd if rstd is not None else y,
        M,
        N,
        K,
        eps,
        ADD_INPUT=x2_2d is not None,
        EPILOGUE=epilogue,
        HAS_BIAS=bias is not None,
        STORE_PRE=pre is not None,
        STORE_NORMED=train,
        UPCAST=interpreter_enabled() and dtype == torch.bfloat16,
        DOT_PRECISION=_dot_precision(dtype),
        # weight is contiguous (N, K), so _aligned's stride rule holds whenever the sizes align.
        ALIGNED=_aligned(
            K, cfg["BLOCK_K"], N, cfg["BLOCK_N"], weight, x2d, x2_2d, norm_weight, norm_bias, bias, pre, y, s, h
        ),
        **cfg,
    )
    return y, s, h, mean, rstd, pre


#################################################################################
#                     Input check of the ops built on these kernels             #
#################################################################################


def check_activation(op: str, name: str, x, dim: str) -> None:
    """``x`` must be a tensor of shape (..., dim) with dim > 0 (what the backend is resolved from)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: {name} must be a tensor of shape (..., {dim}) with {dim} > 0")


def out_features(weight, symbol: str) -> int | str:
    """N of an (N, K) weight, or ``symbol`` (its name in the docs, "N", "H") where ``weight`` is no
    2-D tensor: no tensor has that shape, so check_inputs reports it as e.g. "(H, 768)"."""
    return weight.shape[0] if isinstance(weight, torch.Tensor) and weight.dim() == 2 else symbol


def _shape_text(shape) -> str:
    shape = tuple(shape)
    return str(shape) if len(shape) == 1 else f"({', '.join(map(str, shape))})"


def check_inputs(op: str, ref_name: str, ref: torch.Tensor, expected: dict) -> None:
    """Clear errors naming the argument: ``expected`` maps name -> (tensor, shape); every tensor
    must have the shape, ref's dtype (fp32/fp16/bf16) and device (callers make them contiguous)."""
    if ref.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {ref_name} has dtype {ref.dtype}; supported: {SUPPORTED_DTYPES}")
    for name, (t, shape) in expected.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{op}: {name} must have shape {_shape_text(shape)}, got {tuple(t.shape)}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}, {ref_name} has {ref.dtype}")
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device}, {ref_name} is on {ref.device}")


#################################################################################
#                       Ahead-of-time compile specifications                    #
#################################################################################

# (torch dtype, its name in specs, DOT_PRECISION): 16-bit inputs, and fp32 as GET.from_config(...).cuda()
# runs it: TF32 once torch allows TF32 matmuls, IEEE (FMA dots, no tensor cores) under torch's default
# "highest" precision, which "auto" hands to cuBLAS but backend="triton" still runs here.
AOT_DTYPES = (
    (torch.float16, "fp16", "tf32"),
    (torch.bfloat16, "bf16", "tf32"),
    (torch.float32, "fp32", "tf32"),
    (torch.float32, "fp32", "ieee"),
)

_LINEAR_ARGS = {
    "A": "*",
    "W": "*",
    "BIAS": "*",
    "RES": "*",
    "RES2": "*",
    "PRE": "*",
    "C": "*",
    "M": "i32",
    "N": "i32",
    "K": "i32",
    "stride_wn": "i32",
    "stride_wk": "i32",
}

# (name, EPILOGUE, HAS_BIAS, STORE_PRE, W is transposed, (K, N) of the launch from (D, H)): every
# linear_launch the MLP ops make (getkern.ops.mlp forward and backward, the fc2 of getkern.ops.ln_mlp).
# Tile sizes depend only on dtype, precision and epilogue (see _gpu_config); M, N, K are runtime
# arguments, so a spec covers every (D, ratio) that takes the same ALIGNED branch and specialises
# alike (getkern.ops._aot.distinct_specializations).
_LINEAR_LAUNCHES = (
    ("fc1_gelu", "gelu", True, False, False, lambda D, H: (D, H)),
    ("fc1_gelu_keep_pre", "gelu", True, True, False, lambda D, H: (D, H)),
    ("fc2_bias", "none", True, False, False, lambda D, H: (H, D)),
    ("fc2_bias_residual", "residual", True, False, False, lambda D, H: (H, D)),
    ("fc2_bias_residual2", "residual2", True, False, False, lambda D, H: (H, D)),
    ("fc1_gelu_grad", "gelu_grad", False, False, True, lambda D, H: (D, H)),
)

_LN_LINEAR_ARGS = {
    "X": "*",
    "X2": "*",
    "LN_W": "*",
    "LN_B": "*",
    "W": "*",
    "BIAS": "*",
    "PRE": "*",
    "C": "*",
    "S": "*",
    "H": "*",
    "MEAN": "*fp32",
    "RSTD": "*fp32",
    "M": "i32",
    "N": "i32",
    "K": "i32",
    "eps": "fp32",
}

# (name, ADD_INPUT, EPILOGUE, (K, N) from (D, hidden)): the ln_linear_launch calls the block makes. qkv:
# LN1 of x before the (3D, D) projection (getkern.ops.ln_linear); fc1: LN2 of x + a before the (H, D)
# fc1 with the GELU epilogue (getkern.ops.ln_mlp).
_LN_LINEAR_LAUNCHES = (
    ("qkv", False, "none", lambda D, H: (D, 3 * D)),
    ("fc1_gelu", True, "gelu", lambda D, H: (D, H)),
)


def linear_spec(
    name: str,
    kernel,
    extra_args: dict[str, str],
    dtype: str,
    cfg: dict,
    constexprs: dict,
    values: dict[str, int] | None = None,
    uses_dot: bool = True,
) -> AotSpec:
    """AotSpec of a matmul kernel of this family: pointer args get the element type, the tile
    config becomes constexprs; ``values``: the int arguments at one GET size."""
    constexprs = {**constexprs, **{k: cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")}}
    signature = {k: (f"*{dtype}" if v == "*" else v) for k, v in extra_args.items()}
    signature.update({k: "constexpr" for k in constexprs})
    return AotSpec(
        name=name,
        kernel=kernel,
        signature=signature,
        constexprs=constexprs,
        num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
        uses_dot=uses_dot,
        values=dict(values or {}),
    )


def launch_sizes(torch_dtype: torch.dtype, epilogue: str, k_n, narrow: bool = False, precision: str = "tf32"):
    """(tile config, ALIGNED, M, K, N) of a launch of (K, N) = k_n(D, H) at every GET size:
    GET_DIMS x GET_MLP_RATIOS, M = GET_BATCH x each of GET_TOKENS rows."""
    for D in GET_DIMS:
        for ratio in GET_MLP_RATIOS:
            K, N = k_n(D, D * ratio)
            cfg = _gpu_config(torch_dtype, epilogue, N, narrow, precision)
            for tokens in GET_TOKENS:
                yield cfg, shapes_aligned(K, cfg["BLOCK_K"], N, cfg["BLOCK_N"]), GET_BATCH * tokens, K, N


def spec_tag(dtype: str, cfg: dict, aligned: bool) -> str:
    """'bf16,128x64' (+ ',masked' off the ALIGNED path): the parts of a spec name that vary."""
    return f"{dtype},{cfg['BLOCK_M']}x{cfg['BLOCK_N']}{'' if aligned else ',masked'}"


def _linear_specs():
    """Every _linear_kernel config the dispatcher can pick at GET sizes on a GPU, fp16, bf16 and fp32
    (TF32 and IEEE): each launch with every (tile, ALIGNED, JIT specialisation) some GET size takes.
    Spec values are the ints linear_launch passes: M, N, K and W's strides (w (N, K) contiguous, or the
    (H, D) view w2.t() of the backward; its unit stride becomes a constant at launch)."""
    specs = []
    for torch_dtype, dtype, precision in AOT_DTYPES:
        dtype_tag = f"{dtype},{precision}" if torch_dtype == torch.float32 else dtype
        for name, epilogue, has_bias, store_pre, w_transposed, k_n in _LINEAR_LAUNCHES:
            for cfg, aligned, M, K, N in launch_sizes(torch_dtype, epilogue, k_n, precision=precision):
                constexprs = {
                    "EPILOGUE": epilogue,
                    "HAS_BIAS": has_bias,
                    "STORE_PRE": store_pre,
                    "UPCAST": False,
                    "DOT_PRECISION": precision,
                    "ALIGNED": aligned,
                    "W_K_CONTIGUOUS": not w_transposed,
                }
                strides = {"stride_wn": 1, "stride_wk": N} if w_transposed else {"stride_wn": K, "stride_wk": 1}
                specs.append(
                    linear_spec(
                        f"mlp_{name}[{spec_tag(dtype_tag, cfg, aligned)}]",
                        _linear_kernel,
                        _LINEAR_ARGS,
                        dtype,
                        cfg,
                        constexprs,
                        {"M": M, "N": N, "K": K, **strides},
                        uses_dot=precision != "ieee" or torch_dtype != torch.float32,
                    )
                )
    return distinct_specializations(specs)


def _ln_linear_specs():
    """Every _ln_linear_kernel config the dispatcher picks at GET sizes, same dtypes, inference and
    training (STORE_NORMED, and STORE_PRE for fc1; 64-row tiles), with every (tile, ALIGNED, JIT
    specialisation) some GET size takes; values: the M, N, K that ln_linear_launch passes."""
    specs = []
    for torch_dtype, dtype, precision in AOT_DTYPES:
        dtype_tag = f"{dtype},{precision}" if torch_dtype == torch.float32 else dtype
        for name, add_input, epilogue, k_n in _LN_LINEAR_LAUNCHES:
            for train in (False, True):
                for cfg, aligned, M, K, N in launch_sizes(torch_dtype, epilogue, k_n, train, precision):
                    constexprs = {
                        "ADD_INPUT": add_input,
                        "EPILOGUE": epilogue,
                        "HAS_BIAS": True,
                        "STORE_PRE": train and epilogue == "gelu",
                        "STORE_NORMED": train,
                        "UPCAST": False,
                        "DOT_PRECISION": precision,
                        "ALIGNED": aligned,
                    }
                    tag = spec_tag(dtype_tag, cfg, aligned) + (",train" if train else "")
                    specs.append(
                        linear_spec(
                            f"ln_linear_{name}[{tag}]",
                            _ln_linear_kernel,
                            _LN_LINEAR_ARGS,
                            dtype,
                            cfg,
                            constexprs,
                            {"M": M, "N": N, "K": K},
                            uses_dot=precision != "ieee" or torch_dtype != torch.float32,
                        )
                    )
    return distinct_specializations(specs)


def aot_specs():
    """The gate's specs of both kernels (getkern.tools.gpu_check): the MLP launches ("mlp_*"), then the
    LayerNorm-prologue launches ("ln_linear_*")."""
    yield from _linear_specs()
    yield from _ln_linear_specs()

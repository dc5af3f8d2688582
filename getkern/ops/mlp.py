"""The GET block's MLP: fc1 + bias + exact GELU, then fc2 + bias (+ residual).

Triton path: one tiled matmul kernel (``tl.dot``) with the elementwise work fused into its epilogue.
Forward is two launches: fc1 with bias + erf-GELU, fc2 with bias + residual. Backward fuses the
GELU derivative into the epilogue of dout @ W2 and leaves the three plain matmuls (dW2, dW1, dh) and
the bias sums to cuBLAS; docs/layernorm_mlp.md gives the reasoning, the block-size rule and the
TF32/IEEE choice for fp32.

Custom ops: ``getkern::mlp`` (inference: the pre-activation is never written),
``getkern::mlp_train`` (also returns the fc1 pre-activation and activation for the backward) and
``getkern::mlp_backward``; all have fake implementations, so torch.compile does not break graphs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import cuda_fp32_matmul_is_tf32, dense, interpreter_enabled, resolve_backend
from getkern.ops._triton import constexpr, jit, tl, triton
from getkern.ops import cpu_epilogues
from getkern.ops._aot import GET_BATCH, GET_TOKENS, AotSpec, distinct_specializations

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_SQRT1_2 = constexpr(0.7071067811865476)       # 1/sqrt(2)
_INV_SQRT_2PI = constexpr(0.3989422804014327)  # 1/sqrt(2*pi)


#################################################################################
#                                   Kernel                                      #
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
def _epilogue_store(acc, rows, cols, M, N, BIAS, RES, RES2, PRE, C,
                    EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_PRE: tl.constexpr,
                    ALIGNED: tl.constexpr, BLOCK_N: tl.constexpr):
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
        acc += (tl.load(res_ptrs, mask=mask, other=0.0).to(tl.float32)
                + tl.load(res2_ptrs, mask=mask, other=0.0).to(tl.float32))
    elif EPILOGUE == "gelu_grad":
        z = tl.load(pre_ptrs, mask=mask, other=0.0).to(tl.float32)
        acc *= 0.5 * (1.0 + tl.erf(z * _SQRT1_2)) + z * _INV_SQRT_2PI * tl.exp(-0.5 * z * z)
    tl.store(c_ptrs, acc.to(C.dtype.element_ty), mask=mask)


@jit
def _linear_kernel(A, W, BIAS, RES, RES2, PRE, C, M, N, K, stride_wn, stride_wk,
                   EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_PRE: tl.constexpr,
                   UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
                   ALIGNED: tl.constexpr, W_K_CONTIGUOUS: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr):
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
            a = tl.load(tl.max_contiguous(tl.multiple_of(a_ptrs, [16, 16]), [1, BLOCK_K]),
                        mask=rows[:, None] < M, other=0.0)
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
    _epilogue_store(acc, rows, cols, M, N, BIAS, RES, RES2, PRE, C,
                    EPILOGUE, HAS_BIAS, STORE_PRE, ALIGNED, BLOCK_N)


#################################################################################
#                     Launch configuration (one rule, documented)               #
#################################################################################

def _gpu_config(dtype: torch.dtype, epilogue: str, N: int, narrow: bool = False,
                precision: str = "tf32") -> dict:
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
    return dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, num_warps=8,
                num_stages=3)


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


def _linear(a2d: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, *, epilogue: str,
            res: torch.Tensor | None = None, res2: torch.Tensor | None = None,
            pre: torch.Tensor | None = None, store_pre: bool = False) -> torch.Tensor:
    """Launch _linear_kernel: a2d (M, K) row-major, w (N, K) (any strides) -> (M, N)."""
    M, K = a2d.shape
    N = w.shape[0]
    c = torch.empty(M, N, device=a2d.device, dtype=a2d.dtype)
    cfg = _config(a2d.dtype, epilogue, N)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _linear_kernel[grid](
        a2d, w, bias if bias is not None else c, res if res is not None else c,
        res2 if res2 is not None else c, pre if pre is not None else c, c, M, N, K,
        w.stride(0), w.stride(1),
        EPILOGUE=epilogue, HAS_BIAS=bias is not None, STORE_PRE=store_pre,
        UPCAST=interpreter_enabled() and a2d.dtype == torch.bfloat16,
        DOT_PRECISION=_dot_precision(a2d.dtype),
        ALIGNED=_aligned(K, cfg["BLOCK_K"], N, cfg["BLOCK_N"], w, a2d, bias, res, res2, pre, c),
        W_K_CONTIGUOUS=w.stride(1) == 1, **cfg)
    return c


def shapes_aligned(K: int, block_k: int, N: int, block_n: int) -> bool:
    """The size part of the ALIGNED contract (the AOT specs enumerate it over GET sizes)."""
    return K % block_k == 0 and N % block_n == 0 and K % 16 == 0 and N % 16 == 0


def _aligned(K: int, block_k: int, N: int, block_n: int, w: torch.Tensor, *tensors) -> bool:
    """Whether _linear_kernel may take its ALIGNED path: BLOCK_K divides K and BLOCK_N divides N;
    K, N and W's non-unit stride are multiples of 16 elements; W is unit-stride along K or N;
    every base pointer is aligned to 16 elements (torch's allocators align fresh tensors to more)."""
    w_outer_stride = w.stride(0) if w.stride(1) == 1 else w.stride(1)
    return (shapes_aligned(K, block_k, N, block_n)
            and 1 in w.stride() and w_outer_stride % 16 == 0
            and all(t.data_ptr() % (16 * t.element_size()) == 0
                    for t in (w, *tensors) if t is not None))


#################################################################################
#                         Custom ops (Triton path)                              #
#################################################################################

def _forward(h, w1, b1, w2, b2, residual, keep_pre: bool):
    D = h.shape[-1]
    h2d = h.reshape(-1, D)
    pre = torch.empty(h2d.shape[0], w1.shape[0], device=h.device, dtype=h.dtype) if keep_pre else None
    act = _linear(h2d, w1, b1, epilogue="gelu", pre=pre, store_pre=keep_pre)
    if residual is None:
        out = _linear(act, w2, b2, epilogue="none")
    else:
        out = _linear(act, w2, b2, epilogue="residual", res=residual.reshape(-1, D))
    return out.reshape(h.shape), act, pre


@torch.library.custom_op("getkern::mlp", mutates_args=())
def _mlp_op(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
            b2: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    return _forward(h, w1, b1, w2, b2, residual, keep_pre=False)[0]


@torch.library.custom_op("getkern::mlp_train", mutates_args=())
def _mlp_train_op(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor, residual: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out, act, pre): pre = h @ w1^T + b1 and act = GELU(pre), both (M, H), kept for backward."""
    return _forward(h, w1, b1, w2, b2, residual, keep_pre=True)


@torch.library.custom_op("getkern::mlp_backward", mutates_args=())
def _mlp_backward_op(dout: torch.Tensor, h: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                     act: torch.Tensor, pre: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dh, dw1, db1, dw2, db2). Only dpre = (dout @ w2) * GELU'(pre) is a Triton kernel: it
    saves a full (M, H) write and re-read; the rest are plain matmuls and sums (cuBLAS)."""
    D = h.shape[-1]
    dout2d = dout.reshape(-1, D).contiguous()
    h2d = h.reshape(-1, D)
    dpre = _linear(dout2d, w2.t(), None, epilogue="gelu_grad", pre=pre)  # w2.t(): (H, D) view
    dh = (dpre @ w1).reshape(h.shape)
    return dh, dpre.t() @ h2d, dpre.sum(0), dout2d.t() @ act, dout2d.sum(0)


@_mlp_op.register_fake
def _(h, w1, b1, w2, b2, residual):
    return torch.empty_like(h)


@_mlp_train_op.register_fake
def _(h, w1, b1, w2, b2, residual):
    hidden = h.new_empty(h.numel() // h.shape[-1], w1.shape[0])
    return torch.empty_like(h), hidden, torch.empty_like(hidden)


@_mlp_backward_op.register_fake
def _(dout, h, w1, w2, act, pre):
    return (torch.empty_like(h), torch.empty_like(w1), w1.new_empty(w1.shape[0]),
            torch.empty_like(w2), w2.new_empty(w2.shape[0]))


def _setup_mlp_train(ctx, inputs, output):
    h, w1, _, w2, _, residual = inputs
    _, act, pre = output
    ctx.mark_non_differentiable(act, pre)
    ctx.has_residual = residual is not None
    ctx.save_for_backward(h, w1, w2, act, pre)


def _backward_mlp_train(ctx, dout, _dact, _dpre):
    h, w1, w2, act, pre = ctx.saved_tensors
    dh, dw1, db1, dw2, db2 = _mlp_backward_op(dout, h, w1, w2, act, pre)
    return dh, dw1, db1, dw2, db2, (dout if ctx.has_residual else None)


_mlp_train_op.register_autograd(_backward_mlp_train, setup_context=_setup_mlp_train)


#################################################################################
#                               Public function                                 #
#################################################################################

def _check_inputs(h, w1, b1, w2, b2, residual) -> None:
    if not isinstance(h, torch.Tensor) or h.dim() < 1 or h.shape[-1] == 0:
        raise ValueError("mlp: h must be a tensor of shape (..., D) with D > 0")
    if h.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"mlp: h has dtype {h.dtype}; supported: {SUPPORTED_DTYPES}")
    D = h.shape[-1]
    if w1.dim() != 2 or w1.shape[1] != D:
        raise ValueError(f"mlp: w1 must have shape (H, {D}), got {tuple(w1.shape)}")
    H = w1.shape[0]
    expected = {"b1": (H,), "w2": (D, H), "b2": (D,)}
    named = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    if residual is not None:
        expected["residual"] = tuple(h.shape)
        named["residual"] = residual
    for name, shape in expected.items():
        if tuple(named[name].shape) != shape:
            raise ValueError(f"mlp: {name} must have shape {shape}, got {tuple(named[name].shape)}")
    for name, t in named.items():
        if t.dtype != h.dtype:
            raise TypeError(f"mlp: {name} has dtype {t.dtype}, h has {h.dtype}")
        if t.device != h.device:
            raise ValueError(f"mlp: {name} is on {t.device}, h is on {h.device}")


def mlp(h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, *,
        residual: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """fc2(GELU_exact(fc1(h))) (+ residual). h, residual: (..., D); w1: (H, D); b1: (H,);
    w2: (D, H); b2: (D,). One dtype (fp32, fp16 or bf16) and device for all; fp32 accumulation.
    Under autocast, h and the parameters are cast to the autocast dtype first (as for F.linear)."""
    unsupported = "float64 (PyTorch path only)" if h.dtype == torch.float64 else None
    path = resolve_backend(backend, h.device, op="mlp", unsupported=unsupported, slower=ieee_fp32_on_cuda(h))
    if path == "torch":
        if cpu_epilogues.applies(backend, h, w1, b1, w2, b2, residual):  # CPU inference: 2 oneDNN calls
            return cpu_epilogues.mlp(h, w1, b1, w2, b2, residual)
        out = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)
        return out if residual is None else residual + out
    if torch.is_autocast_enabled(h.device.type):
        # Autocast does not touch custom ops: cast as it would for F.linear; a wider residual stream
        # keeps its dtype, as in ``residual + out``, at the cost of one separate add.
        dtype = torch.get_autocast_dtype(h.device.type)
        h, w1, b1, w2, b2 = (t.to(dtype) for t in (h, w1, b1, w2, b2))
        if residual is not None and residual.dtype != dtype:
            return residual + mlp(h, w1, b1, w2, b2, backend=backend)
    h, w1, b1, w2, b2, residual = dense(h, w1, b1, w2, b2, residual)
    _check_inputs(h, w1, b1, w2, b2, residual)
    tensors = (h, w1, b1, w2, b2, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return torch.ops.getkern.mlp_train(*tensors)[0]
    return torch.ops.getkern.mlp(*tensors)


#################################################################################
#                       Ahead-of-time compile specifications                    #
#################################################################################

# Hidden sizes of the GET and ViT configs (getkern/models/configs.py) and the small test/demo
# models, and every MLP ratio they use.
GET_DIMS = (64, 128, 256, 384, 512, 768, 1024, 1152)
GET_MLP_RATIOS = (4, 6, 8, 12)

# (torch dtype, its name in specs, DOT_PRECISION): 16-bit inputs, and fp32 as GET.from_config(...).cuda()
# runs it: TF32 once torch allows TF32 matmuls, IEEE (FMA dots, no tensor cores) under torch's default
# "highest" precision, which "auto" hands to cuBLAS but backend="triton" still runs here.
AOT_DTYPES = ((torch.float16, "fp16", "tf32"), (torch.bfloat16, "bf16", "tf32"),
              (torch.float32, "fp32", "tf32"), (torch.float32, "fp32", "ieee"))

# (name, EPILOGUE, HAS_BIAS, STORE_PRE, W is transposed, (K, N) of the launch from (D, H)): every
# launch _forward and _mlp_backward_op make. Tile sizes depend only on dtype, precision and epilogue
# (see _gpu_config); M, N, K are runtime arguments, so a spec covers every (D, ratio) that takes the
# same ALIGNED branch and specialises alike (getkern.ops._aot.distinct_specializations).
_LAUNCHES = (
    ("fc1_gelu", "gelu", True, False, False, lambda D, H: (D, H)),
    ("fc1_gelu_keep_pre", "gelu", True, True, False, lambda D, H: (D, H)),
    ("fc2_bias", "none", True, False, False, lambda D, H: (H, D)),
    ("fc2_bias_residual", "residual", True, False, False, lambda D, H: (H, D)),
    ("fc2_bias_residual2", "residual2", True, False, False, lambda D, H: (H, D)),
    ("fc1_gelu_grad", "gelu_grad", False, False, True, lambda D, H: (D, H)),
)


def linear_spec(name: str, kernel, extra_args: dict[str, str], dtype: str, cfg: dict,
                constexprs: dict, values: dict[str, int] | None = None, uses_dot: bool = True) -> AotSpec:
    """AotSpec of a matmul kernel of this family: pointer args get the element type, the tile
    config becomes constexprs; ``values``: the int arguments at one GET size. Shared with
    getkern.ops.ln_linear."""
    constexprs = {**constexprs, **{k: cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")}}
    signature = {k: (f"*{dtype}" if v == "*" else v) for k, v in extra_args.items()}
    signature.update({k: "constexpr" for k in constexprs})
    return AotSpec(name=name, kernel=kernel, signature=signature, constexprs=constexprs,
                   num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], uses_dot=uses_dot,
                   values=dict(values or {}))


def launch_sizes(torch_dtype: torch.dtype, epilogue: str, k_n, narrow: bool = False,
                 precision: str = "tf32"):
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


def aot_specs():
    """Every MLP kernel config the dispatcher can pick at GET sizes on a GPU, fp16, bf16 and fp32
    (TF32 and IEEE): each launch with every (tile, ALIGNED, JIT specialisation) some GET size takes.
    Spec values are the ints _linear passes: M, N, K and W's strides (w (N, K) contiguous, or the
    (H, D) view w2.t() of the backward; its unit stride becomes a constant at launch)."""
    args = {"A": "*", "W": "*", "BIAS": "*", "RES": "*", "RES2": "*", "PRE": "*", "C": "*",
            "M": "i32", "N": "i32", "K": "i32", "stride_wn": "i32", "stride_wk": "i32"}
    specs = []
    for torch_dtype, dtype, precision in AOT_DTYPES:
        dtype_tag = f"{dtype},{precision}" if torch_dtype == torch.float32 else dtype
        for name, epilogue, has_bias, store_pre, w_transposed, k_n in _LAUNCHES:
            for cfg, aligned, M, K, N in launch_sizes(torch_dtype, epilogue, k_n, precision=precision):
                constexprs = {"EPILOGUE": epilogue, "HAS_BIAS": has_bias, "STORE_PRE": store_pre,
                              "UPCAST": False, "DOT_PRECISION": precision, "ALIGNED": aligned,
                              "W_K_CONTIGUOUS": not w_transposed}
                strides = {"stride_wn": 1, "stride_wk": N} if w_transposed else {"stride_wn": K, "stride_wk": 1}
                specs.append(linear_spec(f"mlp_{name}[{spec_tag(dtype_tag, cfg, aligned)}]", _linear_kernel,
                                         args, dtype, cfg, constexprs, {"M": M, "N": N, "K": K, **strides},
                                         uses_dot=precision != "ieee" or torch_dtype != torch.float32))
    yield from distinct_specializations(specs)

"""A matmul with a LayerNorm prologue: y = epilogue(LN(x [+ x2]) @ W^T + bias), one launch.

The GET block normalises right before a matmul twice: LN1 before the qkv projection, LN2 (of the
residual sum s = x + a) before fc1. Here the normalisation happens inside the matmul kernel, so the
normalised activations (and s) never go through device memory at inference:

- pass 1 over K, per row block: fp32 mean and M2 of x (+ x2) in BLOCK_K chunks, merged with Chan's
  formula (each chunk centred on its own mean: no E[x^2] - E[x]^2 cancellation); rstd = 1/sqrt(var + eps);
- pass 2 (the K loop): load x (+ x2), normalise, apply gamma/beta, round to the input dtype (the
  operand the unfused path would read back from memory), then ``tl.dot`` with the W tile;
- epilogue: bias, optionally exact GELU (getkern.ops.mlp._epilogue_store, shared with the MLP).

Every program of a row block recomputes the statistics (there are N / BLOCK_N of them): the price of
not writing them; docs/layernorm_mlp.md discusses what this costs on a GPU. When autograd needs them
(``STORE_NORMED``), the programs of the first column tile also write s, LN(s), mean and rstd for the
backward.

Custom ops: ``getkern::layer_norm_linear`` (inference) and ``getkern::layer_norm_linear_train``
(also returns LN(x), mean, rstd; autograd backward: cuBLAS matmuls + the LayerNorm backward kernel).
The block-level LN2 + MLP op built on the same kernel is getkern/ops/ln_mlp.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import dense, interpreter_enabled, resolve_backend
from getkern.ops._triton import jit, tl, triton
from getkern.ops.layernorm import _layer_norm_backward_op
from getkern.ops._aot import distinct_specializations
from getkern.ops.mlp import (AOT_DTYPES, _config, _dot_precision, _epilogue_store, _tile_coords,
                             ieee_fp32_on_cuda, launch_sizes, linear_spec, shapes_aligned, spec_tag)

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


#################################################################################
#                                   Kernel                                      #
#################################################################################

@jit
def _load_input(X, X2, offs, row_ok, k_ok, ADD_INPUT: tl.constexpr, ALIGNED: tl.constexpr,
                BLOCK_K: tl.constexpr):
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
def _ln_linear_kernel(X, X2, LN_W, LN_B, W, BIAS, PRE, C, S, H, MEAN, RSTD, M, N, K, eps,
                      ADD_INPUT: tl.constexpr, EPILOGUE: tl.constexpr, HAS_BIAS: tl.constexpr,
                      STORE_PRE: tl.constexpr, STORE_NORMED: tl.constexpr,
                      UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr, ALIGNED: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      GROUP_M: tl.constexpr):
    """C (M, N) = epilogue(LN(X [+ X2]) @ W^T + BIAS). X, X2, S, H: (M, K) row-major; W: (N, K)
    row-major (an nn.Linear weight); LN_W, LN_B: (K,); MEAN, RSTD: (M,) fp32. EPILOGUE "none" or
    "gelu" (STORE_PRE writes the pre-activation to PRE). STORE_NORMED: the pid_n == 0 programs also
    write s = X + X2 (ADD_INPUT), h = LN(s), mean and rstd. ALIGNED: as in mlp._linear_kernel."""
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
    _epilogue_store(acc, rows, cols, M, N, BIAS, C, C, PRE, C,
                    EPILOGUE, HAS_BIAS, STORE_PRE, ALIGNED, BLOCK_N)


#################################################################################
#                                  Launcher                                     #
#################################################################################

def _ptrs_aligned(*tensors) -> bool:
    return all(t.data_ptr() % (16 * t.element_size()) == 0 for t in tensors if t is not None)


def ln_linear_launch(x2d: torch.Tensor, x2_2d: torch.Tensor | None, norm_weight: torch.Tensor,
                     norm_bias: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     eps: float, *, epilogue: str, train: bool):
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
        x2d, x2_2d if x2_2d is not None else x2d, norm_weight, norm_bias, weight,
        bias if bias is not None else y, pre if pre is not None else y, y,
        s if s is not None else y, h if h is not None else y,
        mean if mean is not None else y, rstd if rstd is not None else y, M, N, K, eps,
        ADD_INPUT=x2_2d is not None, EPILOGUE=epilogue, HAS_BIAS=bias is not None,
        STORE_PRE=pre is not None, STORE_NORMED=train,
        UPCAST=interpreter_enabled() and dtype == torch.bfloat16,
        DOT_PRECISION=_dot_precision(dtype),
        ALIGNED=(shapes_aligned(K, cfg["BLOCK_K"], N, cfg["BLOCK_N"])
                 and _ptrs_aligned(x2d, x2_2d, norm_weight, norm_bias, weight, bias, pre, y, s, h)),
        **cfg)
    return y, s, h, mean, rstd, pre


#################################################################################
#                         Custom ops (Triton path)                              #
#################################################################################

def _forward(x, norm_weight, norm_bias, weight, bias, eps, train: bool):
    K = x.shape[-1]
    y, _, h, mean, rstd, _ = ln_linear_launch(x.reshape(-1, K), None, norm_weight, norm_bias,
                                              weight, bias, eps, epilogue="none", train=train)
    return y.reshape(*x.shape[:-1], weight.shape[0]), h, mean, rstd


@torch.library.custom_op("getkern::layer_norm_linear", mutates_args=())
def _layer_norm_linear_op(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                          weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return _forward(x, norm_weight, norm_bias, weight, bias, eps, train=False)[0]


@torch.library.custom_op("getkern::layer_norm_linear_train", mutates_args=())
def _layer_norm_linear_train_op(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                                weight: torch.Tensor, bias: torch.Tensor, eps: float
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (y, h, mean, rstd): h = LN(x) as (M, K), fp32 mean and rstd (M,), kept for the backward."""
    return _forward(x, norm_weight, norm_bias, weight, bias, eps, train=True)


@_layer_norm_linear_op.register_fake
def _(x, norm_weight, norm_bias, weight, bias, eps):
    return x.new_empty(*x.shape[:-1], weight.shape[0])


@_layer_norm_linear_train_op.register_fake
def _(x, norm_weight, norm_bias, weight, bias, eps):
    M = x.numel() // x.shape[-1]
    stats = x.new_empty(M, dtype=torch.float32)
    return (x.new_empty(*x.shape[:-1], weight.shape[0]), x.new_empty(M, x.shape[-1]), stats,
            torch.empty_like(stats))


def _setup_layer_norm_linear(ctx, inputs, output):
    x, norm_weight, _, weight, _, _ = inputs
    _, h, mean, rstd = output
    ctx.mark_non_differentiable(h, mean, rstd)
    ctx.save_for_backward(x, norm_weight, weight, h, mean, rstd)


def _backward_layer_norm_linear(ctx, dy, _dh, _dmean, _drstd):
    """dW = dy^T h, db = sum dy, dh = dy W (cuBLAS); dx, dgamma, dbeta from the LN backward kernel."""
    x, norm_weight, weight, h, mean, rstd = ctx.saved_tensors
    dy2d = dy.reshape(-1, weight.shape[0]).contiguous()
    dh = (dy2d @ weight).reshape(x.shape)
    dx, dnorm_weight, dnorm_bias = _layer_norm_backward_op(dh, None, x, norm_weight, mean, rstd)
    return dx, dnorm_weight, dnorm_bias, dy2d.t() @ h, dy2d.sum(0), None


_layer_norm_linear_train_op.register_autograd(_backward_layer_norm_linear,
                                              setup_context=_setup_layer_norm_linear)


#################################################################################
#                               Public function                                 #
#################################################################################

def check_inputs(op: str, ref_name: str, ref: torch.Tensor, expected: dict) -> None:
    """Clear errors naming the argument: ``expected`` maps name -> (tensor, shape); every tensor
    must have the shape, ref's dtype (fp32/fp16/bf16) and device (callers make them contiguous)."""
    if ref.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {ref_name} has dtype {ref.dtype}; supported: {SUPPORTED_DTYPES}")
    for name, (t, shape) in expected.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}, {ref_name} has {ref.dtype}")
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device}, {ref_name} is on {ref.device}")


def layer_norm_linear(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                      weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6, *,
                      backend: str = "auto") -> torch.Tensor:
    """F.linear(LayerNorm(x), weight, bias) with the LayerNorm in the matmul's prologue.

    x: (..., K); norm_weight, norm_bias: (K,); weight: (N, K); bias: (N,) -> (..., N). One dtype
    (fp32, fp16, bf16) and device for all; fp32 statistics and accumulation. Under autocast every
    input is cast to the autocast dtype first (the LayerNorm then sees x in that dtype).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError("layer_norm_linear: x must be a tensor of shape (..., K) with K > 0")
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    path = resolve_backend(backend, x.device, op="layer_norm_linear", unsupported=unsupported,
                           slower=ieee_fp32_on_cuda(x))
    if path == "torch":
        return F.linear(F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps), weight, bias)
    if torch.is_autocast_enabled(x.device.type):  # autocast does not touch custom ops
        dtype = torch.get_autocast_dtype(x.device.type)
        x, norm_weight, norm_bias, weight, bias = (
            t.to(dtype) for t in (x, norm_weight, norm_bias, weight, bias))
    x, norm_weight, norm_bias, weight, bias = dense(x, norm_weight, norm_bias, weight, bias)
    K = x.shape[-1]
    N = weight.shape[0] if isinstance(weight, torch.Tensor) and weight.dim() == 2 else -1
    check_inputs("layer_norm_linear", "x", x, {
        "x": (x, x.shape), "norm_weight": (norm_weight, (K,)), "norm_bias": (norm_bias, (K,)),
        "weight": (weight, (N, K)), "bias": (bias, (N,))})
    args = (x, norm_weight, norm_bias, weight, bias, eps)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:5]):
        return torch.ops.getkern.layer_norm_linear_train(*args)[0]
    return torch.ops.getkern.layer_norm_linear(*args)


#################################################################################
#                       Ahead-of-time compile specifications                    #
#################################################################################

_ARGS = {"X": "*", "X2": "*", "LN_W": "*", "LN_B": "*", "W": "*", "BIAS": "*", "PRE": "*",
         "C": "*", "S": "*", "H": "*", "MEAN": "*fp32", "RSTD": "*fp32",
         "M": "i32", "N": "i32", "K": "i32", "eps": "fp32"}

# (name, ADD_INPUT, EPILOGUE, (K, N) from (D, hidden)): the launches the block makes. qkv: LN1 of x
# before the (3D, D) projection; fc1: LN2 of x + a before the (H, D) fc1 with the GELU epilogue.
_LAUNCHES = (
    ("qkv", False, "none", lambda D, H: (D, 3 * D)),
    ("fc1_gelu", True, "gelu", lambda D, H: (D, H)),
)


def aot_specs():
    """Every config the dispatcher picks at GET sizes (mlp.launch_sizes: mlp.GET_DIMS x
    mlp.GET_MLP_RATIOS), fp16, bf16 and fp32 (TF32 and IEEE, mlp.AOT_DTYPES), inference and training
    (STORE_NORMED, and STORE_PRE for fc1; 64-row tiles), with every (tile, ALIGNED, JIT
    specialisation) some GET size takes; values: the M, N, K that ln_linear_launch passes."""
    specs = []
    for torch_dtype, dtype, precision in AOT_DTYPES:
        dtype_tag = f"{dtype},{precision}" if torch_dtype == torch.float32 else dtype
        for name, add_input, epilogue, k_n in _LAUNCHES:
            for train in (False, True):
                for cfg, aligned, M, K, N in launch_sizes(torch_dtype, epilogue, k_n, train, precision):
                    constexprs = {"ADD_INPUT": add_input, "EPILOGUE": epilogue, "HAS_BIAS": True,
                                  "STORE_PRE": train and epilogue == "gelu", "STORE_NORMED": train,
                                  "UPCAST": False, "DOT_PRECISION": precision, "ALIGNED": aligned}
                    tag = spec_tag(dtype_tag, cfg, aligned) + (",train" if train else "")
                    specs.append(linear_spec(f"ln_linear_{name}[{tag}]", _ln_linear_kernel, _ARGS, dtype,
                                             cfg, constexprs, {"M": M, "N": N, "K": K},
                                             uses_dot=precision != "ieee" or torch_dtype != torch.float32))
    yield from distinct_specializations(specs)


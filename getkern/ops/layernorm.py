"""LayerNorm of the GET block, optionally fused with the residual add that precedes it.

``layer_norm(x, w, b)`` -> LN(x); ``layer_norm(x, w, b, residual=r)`` -> (s, LN(s)) with s = x + r,
both written by one pass over the rows. Statistics are fp32 whatever the input dtype.

Triton path: two ``torch.library`` custom ops (``getkern::layer_norm``, ``getkern::add_layer_norm``)
with fake and autograd implementations, so torch.compile traces them without graph breaks; their
backward is a third op (``getkern::layer_norm_backward``, :func:`layer_norm_backward_op`, also the
LayerNorm backward of the prologue ops getkern.ops.ln_linear and getkern.ops.ln_mlp). Kernels and
block-size rule are described in docs/layernorm_mlp.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import dense, resolve_backend
from getkern.ops import cpu_layernorm
from getkern.ops._aot import GET_BATCH, GET_TOKENS, AotSpec, distinct_specializations
from getkern.ops._triton import jit, tl, triton

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


#################################################################################
#                                   Kernels                                     #
#################################################################################


@jit
def _ln_fwd_kernel(
    X, R, W, B, S, Y, MEAN, RSTD, M, D, eps, HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr
):
    """Rows [pid*BLOCK_M, +BLOCK_M) of the (M, D) row-major inputs: s = x (+ r), y = LN(s)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < M
    col_ok = cols < D
    mask = row_ok[:, None] & col_ok[None, :]
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    # Every load is upcast to fp32 before any arithmetic (bf16 is wrong in the interpreter otherwise).
    s = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        s += tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(S + offs, s.to(S.dtype.element_ty), mask=mask)
    mean = tl.sum(s, axis=1) / D
    centred = tl.where(mask, s - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / D + eps)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = centred * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + rows, mean, mask=row_ok)
    tl.store(RSTD + rows, rstd, mask=row_ok)


@jit
def _ln_bwd_kernel(
    DY,
    DS,
    S,
    W,
    MEAN,
    RSTD,
    DX,
    DW_PART,
    DB_PART,
    M,
    D,
    HAS_DS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """dx = LN'(s)^T dy (+ ds, the gradient reaching s directly); program p also sums dy*xhat and
    dy over the row blocks p, p+G, p+2G, ... into row p of the (G, D) fp32 partials."""
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < D
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    db_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for row_start in range(pid * BLOCK_M, M, num_programs * BLOCK_M):
        rows = row_start + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        mask = row_ok[:, None] & col_ok[None, :]
        offs = rows[:, None].to(tl.int64) * D + cols[None, :]
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.load(S + offs, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + rows, mask=row_ok, other=0.0)
        rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
        xhat = tl.where(mask, (s - mean[:, None]) * rstd[:, None], 0.0)
        wdy = dy * w[None, :]
        c1 = tl.sum(xhat * wdy, axis=1) / D
        c2 = tl.sum(wdy, axis=1) / D
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        if HAS_DS:
            dx += tl.load(DS + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += tl.sum(dy * xhat, axis=0)
        db_acc += tl.sum(dy, axis=0)
    tl.store(DW_PART + pid * D + cols, dw_acc, mask=col_ok)
    tl.store(DB_PART + pid * D + cols, db_acc, mask=col_ok)


#################################################################################
#                     Launch configuration (one rule, documented)               #
#################################################################################


def _fwd_config(D: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_D, num_warps): whole rows, about 2048 elements (16 per thread) per tile."""
    block_d = triton.next_power_of_2(D)
    block_m = max(1, min(16, 2048 // block_d))
    num_warps = 8 if block_d >= 4096 else 4
    return block_m, block_d, num_warps


def _bwd_config(D: int) -> tuple[int, int, int]:
    """Backward holds more (BLOCK_M, BLOCK_D) fp32 tiles live: half the forward's elements per
    tile, and 8 warps from BLOCK_D = 1024 (4 warps spill there on sm_90)."""
    block_d = triton.next_power_of_2(D)
    block_m = max(1, min(8, 1024 // block_d))
    num_warps = 8 if block_d >= 1024 else 4
    return block_m, block_d, num_warps


def _bwd_programs(M: int, block_m: int, device: torch.device) -> int:
    """Persistent grid: two programs per SM on a GPU (fewer partial rows to sum); two under the
    interpreter (it runs programs one after another anyway)."""
    blocks = triton.cdiv(M, block_m)
    if device.type == "cuda":
        return min(blocks, 2 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(blocks, 2)


#################################################################################
#                         Custom ops (Triton path)                              #
#################################################################################


def _launch_forward(x, residual, weight, bias, eps):
    D = x.shape[-1]
    M = x.numel() // D
    y = torch.empty_like(x)
    s = torch.empty_like(x) if residual is not None else y  # S is untouched without a residual
    mean = torch.empty(x.shape[:-1], device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    block_m, block_d, num_warps = _fwd_config(D)
    _ln_fwd_kernel[(triton.cdiv(M, block_m),)](
        x,
        residual if residual is not None else x,
        weight,
        bias,
        s,
        y,
        mean,
        rstd,
        M,
        D,
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK_M=block_m,
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
    return s, y, mean, rstd


@torch.library.custom_op("getkern::layer_norm", mutates_args=())
def _layer_norm_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, y, mean, rstd = _launch_forward(x, None, weight, bias, eps)
    return y, mean, rstd


@torch.library.custom_op("getkern::add_layer_norm", mutates_args=())
def _add_layer_norm_op(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _launch_forward(x, residual, weight, bias, eps)


@torch.library.custom_op("getkern::layer_norm_backward", mutates_args=())
def layer_norm_backward_op(
    dy: torch.Tensor,
    ds: torch.Tensor | None,
    s: torch.Tensor,
    weight: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dy = dy.contiguous()
    ds = ds.contiguous() if ds is not None else None
    D = s.shape[-1]
    M = s.numel() // D
    dx = torch.empty_like(s)
    block_m, block_d, num_warps = _bwd_config(D)
    programs = _bwd_programs(M, block_m, s.device)
    dw_part = torch.empty(programs, D, device=s.device, dtype=torch.float32)
    db_part = torch.empty_like(dw_part)
    _ln_bwd_kernel[(programs,)](
        dy,
        ds if ds is not None else dy,
        s,
        weight,
        mean,
        rstd,
        dx,
        dw_part,
        db_part,
        M,
        D,
        HAS_DS=ds is not None,
        BLOCK_M=block_m,
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
    return dx, dw_part.sum(0).to(weight.dtype), db_part.sum(0).to(weight.dtype)


@_layer_norm_op.register_fake
def _(x, weight, bias, eps):
    stats = x.new_empty(x.shape[:-1], dtype=torch.float32)
    return torch.empty_like(x), stats, torch.empty_like(stats)


@_add_layer_norm_op.register_fake
def _(x, residual, weight, bias, eps):
    stats = x.new_empty(x.shape[:-1], dtype=torch.float32)
    return torch.empty_like(x), torch.empty_like(x), stats, torch.empty_like(stats)


@layer_norm_backward_op.register_fake
def _(dy, ds, s, weight, mean, rstd):
    return torch.empty_like(s), torch.empty_like(weight), torch.empty_like(weight)


def _setup_layer_norm(ctx, inputs, output):
    x, weight, _, _ = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.save_for_backward(x, weight, mean, rstd)


def _backward_layer_norm(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_backward_op(dy, None, x, weight, mean, rstd)
    return dx, dw, db, None


def _setup_add_layer_norm(ctx, inputs, output):
    _, _, weight, _, _ = inputs
    s, _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.save_for_backward(s, weight, mean, rstd)


def _backward_add_layer_norm(ctx, ds, dy, _dmean, _drstd):
    s, weight, mean, rstd = ctx.saved_tensors
    if dy is None:  # only s was used downstream
        dy = torch.zeros_like(s)
    dx, dw, db = layer_norm_backward_op(dy, ds, s, weight, mean, rstd)
    return dx, dx, dw, db, None  # d/dx and d/dresidual of s = x + residual are the same


_layer_norm_op.register_autograd(_backward_layer_norm, setup_context=_setup_layer_norm)
_add_layer_norm_op.register_autograd(_backward_add_layer_norm, setup_context=_setup_add_layer_norm)


#################################################################################
#                               Public function                                 #
#################################################################################


def _check_inputs(x, weight, bias, residual) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(
            f"layer_norm: x must be a tensor of shape (..., D) with D > 0, got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"layer_norm: x has dtype {x.dtype}; supported: {SUPPORTED_DTYPES}")
    D = x.shape[-1]
    named = {"weight": weight, "bias": bias}
    for name, t in named.items():
        if t.shape != (D,):
            raise ValueError(f"layer_norm: {name} must have shape ({D},) to match x's last dim, got {tuple(t.shape)}")
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"layer_norm: residual has shape {tuple(residual.shape)}, x has {tuple(x.shape)}")
        named["residual"] = residual
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise TypeError(f"layer_norm: {name} has dtype {t.dtype}, x has {x.dtype}")
        if t.device != x.device:
            raise ValueError(f"layer_norm: {name} is on {t.device}, x is on {x.device}")


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = 1e-6,
    *,
    residual: torch.Tensor | None = None,
    backend: str = "auto",
):
    """LN over the last dim of x (..., D) with affine weight, bias (D,); fp32 statistics.

    With ``residual`` (same shape as x): s = x + residual and returns (s, LN(s)), one pass.
    All tensors share one dtype (fp32, fp16 or bf16) and device; outputs have that dtype. Under
    autocast, weight and bias are cast to the activations' dtype (x and residual promoted).
    """
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    path = resolve_backend(backend, x.device, op="layer_norm", unsupported=unsupported)
    if path == "torch":
        if residual is None:
            if cpu_layernorm.applies(backend, x, weight, bias):  # CPU inference: no statistics kept
                return cpu_layernorm.cpu_layer_norm(x, weight, bias, eps)
            return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
        s = x + residual
        return s, F.layer_norm(s, s.shape[-1:], weight, bias, eps)
    if torch.is_autocast_enabled(x.device.type):
        # Autocast does not touch custom ops: run in the activations' (promoted) dtype, fp32 stats.
        dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        residual = residual.to(dtype) if residual is not None else None
    x, weight, bias, residual = dense(x, weight, bias, residual)
    _check_inputs(x, weight, bias, residual)
    if residual is None:
        return torch.ops.getkern.layer_norm(x, weight, bias, eps)[0]
    s, y, _, _ = torch.ops.getkern.add_layer_norm(x, residual, weight, bias, eps)
    return s, y


#################################################################################
#                       Ahead-of-time compile specifications                    #
#################################################################################

GET_DIMS = (256, 384, 512, 768)


def aot_specs():
    """Every LayerNorm kernel config the dispatcher picks at GET widths, for fp16, bf16 and fp32
    (GET.from_config(...).cuda() runs fp32). Widths that share a config (384 and 512 both tile as
    BLOCK_D = 512) and specialise alike (values: M = GET_BATCH x tokens rows, D) share one spec."""
    specs = []
    for dtype in ("fp16", "bf16", "fp32"):
        p = f"*{dtype}"
        kernels = (  # (name, kernel, config rule, flag's name in the spec, flag argument, args)
            (
                "layer_norm_fwd",
                _ln_fwd_kernel,
                _fwd_config,
                "residual",
                "HAS_RESIDUAL",
                {
                    "X": p,
                    "R": p,
                    "W": p,
                    "B": p,
                    "S": p,
                    "Y": p,
                    "MEAN": "*fp32",
                    "RSTD": "*fp32",
                    "M": "i32",
                    "D": "i32",
                    "eps": "fp32",
                },
            ),
            (
                "layer_norm_bwd",
                _ln_bwd_kernel,
                _bwd_config,
                "ds",
                "HAS_DS",
                {
                    "DY": p,
                    "DS": p,
                    "S": p,
                    "W": p,
                    "MEAN": "*fp32",
                    "RSTD": "*fp32",
                    "DX": p,
                    "DW_PART": "*fp32",
                    "DB_PART": "*fp32",
                    "M": "i32",
                    "D": "i32",
                },
            ),
        )
        for name, kernel, config_of, flag_name, flag_arg, args in kernels:
            widths_of: dict[tuple[int, int, int], list[int]] = {}
            for D in GET_DIMS:
                widths_of.setdefault(config_of(D), []).append(D)
            for (block_m, block_d, num_warps), dims in widths_of.items():
                for flag in (False, True):
                    constexprs = {flag_arg: flag, "BLOCK_M": block_m, "BLOCK_D": block_d}
                    specs += [
                        AotSpec(
                            name=f"{name}[D={'/'.join(map(str, dims))},{dtype},{flag_name}={flag}]",
                            kernel=kernel,
                            signature={**args, **{k: "constexpr" for k in constexprs}},
                            constexprs=constexprs,
                            num_warps=num_warps,
                            values={"M": GET_BATCH * tokens, "D": D},
                        )
                        for D in dims
                        for tokens in GET_TOKENS
                    ]
    yield from distinct_specializations(specs)

"""The GET block's second half as one op: out = s + fc2(GELU(fc1(LN(s)))), s = x + a.

x is the block input (the residual stream), a the attention output. Triton path, two launches:

1. getkern.ops.matmul's LayerNorm-prologue kernel (``ln_linear_launch``): s = x + a and LN(s) in
   fc1's prologue (statistics in fp32, from a first pass over the row block), fc1 + bias + exact GELU
   in the epilogue -> act (M, H);
2. getkern.ops.matmul's plain kernel (``linear_launch``): fc2 + bias, with x and a added in the
   epilogue -> out (M, D).

s and LN(s) are never written at inference. For autograd (``getkern::add_layer_norm_mlp_train``)
the first launch also writes s, LN(s), mean, rstd and the pre-activation, and the backward reuses
the MLP backward op (getkern.ops.mlp.mlp_backward_op: dpre = (dout W2) * GELU'(pre) in Triton, the
plain matmuls on cuBLAS) and the LayerNorm backward kernel (which adds dout, the gradient reaching s
directly): see docs/layernorm_mlp.md. The PyTorch path is the plain sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import dense, resolve_backend
from getkern.ops.layernorm import layer_norm_backward_op
from getkern.ops.matmul import (
    check_activation,
    check_inputs,
    ieee_fp32_on_cuda,
    linear_launch,
    ln_linear_launch,
    out_features,
)
from getkern.ops.mlp import mlp_backward_op


def _forward(x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps, train: bool):
    D = x.shape[-1]
    x2d, a2d = x.reshape(-1, D), a.reshape(-1, D)
    act, s, h, mean, rstd, pre = ln_linear_launch(
        x2d, a2d, norm_weight, norm_bias, w1, b1, eps, epilogue="gelu", train=train
    )
    out = linear_launch(act, w2, b2, epilogue="residual2", res=x2d, res2=a2d).reshape(x.shape)
    return out, s, h, mean, rstd, act, pre


@torch.library.custom_op("getkern::add_layer_norm_mlp", mutates_args=())
def _add_layer_norm_mlp_op(
    x: torch.Tensor,
    a: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    return _forward(x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps, train=False)[0]


@torch.library.custom_op("getkern::add_layer_norm_mlp_train", mutates_args=())
def _add_layer_norm_mlp_train_op(
    x: torch.Tensor,
    a: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out, s, h, mean, rstd, act, pre): s = x + a and h = LN(s) (M, D); fp32 mean, rstd (M,);
    pre = fc1(h) and act = GELU(pre) (M, H); all but out are kept for the backward."""
    return _forward(x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps, train=True)


@_add_layer_norm_mlp_op.register_fake
def _(x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps):
    return torch.empty_like(x)


@_add_layer_norm_mlp_train_op.register_fake
def _(x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps):
    M, D = x.numel() // x.shape[-1], x.shape[-1]
    stats = x.new_empty(M, dtype=torch.float32)
    hidden = x.new_empty(M, w1.shape[0])
    return (
        torch.empty_like(x),
        x.new_empty(M, D),
        x.new_empty(M, D),
        stats,
        torch.empty_like(stats),
        hidden,
        torch.empty_like(hidden),
    )


def _setup(ctx, inputs, output):
    _, _, norm_weight, _, w1, _, w2, _, _ = inputs
    _, s, h, mean, rstd, act, pre = output
    ctx.mark_non_differentiable(s, h, mean, rstd, act, pre)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.save_for_backward(norm_weight, w1, w2, s, h, mean, rstd, act, pre)


def _backward(ctx, dout, *_unused):
    norm_weight, w1, w2, s, h, mean, rstd, act, pre = ctx.saved_tensors
    dh, dw1, db1, dw2, db2 = mlp_backward_op(dout, h, w1, w2, act, pre)
    # out = s + mlp(LN(s)): dout reaches s directly too; the LN backward kernel adds it (ds).
    ds, dnorm_weight, dnorm_bias = layer_norm_backward_op(dh, dout.reshape(s.shape), s, norm_weight, mean, rstd)
    ds = ds.reshape(dout.shape)
    return ds, ds, dnorm_weight, dnorm_bias, dw1, db1, dw2, db2, None


_add_layer_norm_mlp_train_op.register_autograd(_backward, setup_context=_setup)


def add_layer_norm_mlp(
    x: torch.Tensor,
    a: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    eps: float = 1e-6,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """s + fc2(GELU_exact(fc1(LayerNorm(s)))) with s = x + a: the block after attention.

    x, a: (..., D); norm_weight, norm_bias: (D,); w1: (H, D); b1: (H,); w2: (D, H); b2: (D,).
    One dtype (fp32, fp16, bf16) and device for all; fp32 statistics and accumulation. Under
    autocast the activations must already have the autocast dtype (the parameters are cast to it):
    a wider residual stream needs the per-op path (getkern.ops.layer_norm + getkern.ops.mlp).
    """
    check_activation("add_layer_norm_mlp", "x", x, "D")  # resolve_backend reads x's device and dtype
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    path = resolve_backend(
        backend, x.device, op="add_layer_norm_mlp", unsupported=unsupported, slower=ieee_fp32_on_cuda(x)
    )
    if path == "torch":
        s = x + a
        h = F.layer_norm(s, s.shape[-1:], norm_weight, norm_bias, eps)
        return s + F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)
    if torch.is_autocast_enabled(x.device.type):  # autocast does not touch custom ops
        dtype = torch.get_autocast_dtype(x.device.type)
        if x.dtype != dtype or a.dtype != dtype:
            raise TypeError(
                f"add_layer_norm_mlp: under autocast x and a must have the autocast "
                f"dtype {dtype} (got {x.dtype}, {a.dtype}); use layer_norm + mlp"
            )
        norm_weight, norm_bias, w1, b1, w2, b2 = (t.to(dtype) for t in (norm_weight, norm_bias, w1, b1, w2, b2))
    x, a, norm_weight, norm_bias, w1, b1, w2, b2 = dense(x, a, norm_weight, norm_bias, w1, b1, w2, b2)
    D, H = x.shape[-1], out_features(w1, "H")
    check_inputs(
        "add_layer_norm_mlp",
        "x",
        x,
        {
            "x": (x, x.shape),
            "a": (a, x.shape),
            "norm_weight": (norm_weight, (D,)),
            "norm_bias": (norm_bias, (D,)),
            "w1": (w1, (H, D)),
            "b1": (b1, (H,)),
            "w2": (w2, (D, H)),
            "b2": (b2, (D,)),
        },
    )
    args = (x, a, norm_weight, norm_bias, w1, b1, w2, b2, eps)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:8]):
        return torch.ops.getkern.add_layer_norm_mlp_train(*args)[0]
    return torch.ops.getkern.add_layer_norm_mlp(*args)

"""A matmul with a LayerNorm prologue: y = LN(x) @ W^T + bias, one launch (LN1 + qkv of the GET block).

The GET block normalises right before a matmul twice: LN1 before the qkv projection, LN2 (of the
residual sum s = x + a) before fc1. Here the normalisation happens inside the matmul kernel
(getkern.ops.matmul's LayerNorm-prologue kernel, ``ln_linear_launch``), so LN(x) never goes through
device memory at inference; docs/layernorm_mlp.md discusses what recomputing the row statistics per
column tile costs on a GPU.

Custom ops: ``getkern::layer_norm_linear`` (inference) and ``getkern::layer_norm_linear_train``
(also returns LN(x), mean, rstd; autograd backward: cuBLAS matmuls + the LayerNorm backward kernel).
The block-level LN2 + MLP op built on the same kernel is getkern/ops/ln_mlp.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import dense, resolve_backend
from getkern.ops.layernorm import layer_norm_backward_op
from getkern.ops.matmul import check_activation, check_inputs, ieee_fp32_on_cuda, ln_linear_launch, out_features

#################################################################################
#                         Custom ops (Triton path)                              #
#################################################################################


def _forward(x, norm_weight, norm_bias, weight, bias, eps, train: bool):
    K = x.shape[-1]
    y, _, h, mean, rstd, _ = ln_linear_launch(
        x.reshape(-1, K), None, norm_weight, norm_bias, weight, bias, eps, epilogue="none", train=train
    )
    return y.reshape(*x.shape[:-1], weight.shape[0]), h, mean, rstd


@torch.library.custom_op("getkern::layer_norm_linear", mutates_args=())
def _layer_norm_linear_op(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    return _forward(x, norm_weight, norm_bias, weight, bias, eps, train=False)[0]


@torch.library.custom_op("getkern::layer_norm_linear_train", mutates_args=())
def _layer_norm_linear_train_op(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
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
    return (x.new_empty(*x.shape[:-1], weight.shape[0]), x.new_empty(M, x.shape[-1]), stats, torch.empty_like(stats))


def _setup_layer_norm_linear(ctx, inputs, output):
    x, norm_weight, _, weight, _, _ = inputs
    _, h, mean, rstd = output
    ctx.mark_non_differentiable(h, mean, rstd)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.save_for_backward(x, norm_weight, weight, h, mean, rstd)


def _backward_layer_norm_linear(ctx, dy, _dh, _dmean, _drstd):
    """dW = dy^T h, db = sum dy, dh = dy W (cuBLAS); dx, dgamma, dbeta from the LN backward kernel."""
    x, norm_weight, weight, h, mean, rstd = ctx.saved_tensors
    dy2d = dy.reshape(-1, weight.shape[0]).contiguous()
    dh = (dy2d @ weight).reshape(x.shape)
    dx, dnorm_weight, dnorm_bias = layer_norm_backward_op(dh, None, x, norm_weight, mean, rstd)
    return dx, dnorm_weight, dnorm_bias, dy2d.t() @ h, dy2d.sum(0), None


_layer_norm_linear_train_op.register_autograd(_backward_layer_norm_linear, setup_context=_setup_layer_norm_linear)


#################################################################################
#                               Public function                                 #
#################################################################################


def layer_norm_linear(
    x: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = 1e-6,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """F.linear(LayerNorm(x), weight, bias) with the LayerNorm in the matmul's prologue.

    x: (..., K); norm_weight, norm_bias: (K,); weight: (N, K); bias: (N,) -> (..., N). One dtype
    (fp32, fp16, bf16) and device for all; fp32 statistics and accumulation. Under autocast every
    input is cast to the autocast dtype first (the LayerNorm then sees x in that dtype).
    """
    check_activation("layer_norm_linear", "x", x, "K")  # resolve_backend reads x's device and dtype
    unsupported = "float64 (PyTorch path only)" if x.dtype == torch.float64 else None
    path = resolve_backend(
        backend, x.device, op="layer_norm_linear", unsupported=unsupported, slower=ieee_fp32_on_cuda(x)
    )
    if path == "torch":
        return F.linear(F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps), weight, bias)
    if torch.is_autocast_enabled(x.device.type):  # autocast does not touch custom ops
        dtype = torch.get_autocast_dtype(x.device.type)
        x, norm_weight, norm_bias, weight, bias = (t.to(dtype) for t in (x, norm_weight, norm_bias, weight, bias))
    x, norm_weight, norm_bias, weight, bias = dense(x, norm_weight, norm_bias, weight, bias)
    K, N = x.shape[-1], out_features(weight, "N")
    check_inputs(
        "layer_norm_linear",
        "x",
        x,
        {
            "x": (x, x.shape),
            "norm_weight": (norm_weight, (K,)),
            "norm_bias": (norm_bias, (K,)),
            "weight": (weight, (N, K)),
            "bias": (bias, (N,)),
        },
    )
    args = (x, norm_weight, norm_bias, weight, bias, eps)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:5]):
        return torch.ops.getkern.layer_norm_linear_train(*args)[0]
    return torch.ops.getkern.layer_norm_linear(*args)

"""The GET block's MLP: fc1 + bias + exact GELU, then fc2 + bias (+ residual).

Triton path: two launches of the matmul kernel of getkern.ops.matmul (``linear_launch``) with the
elementwise work fused into its epilogue: fc1 with bias + erf-GELU, fc2 with bias + residual.
Backward fuses the GELU derivative into the epilogue of dout @ W2 and leaves the three plain matmuls
(dW2, dW1, dh) and the bias sums to cuBLAS; docs/layernorm_mlp.md gives the reasoning.

Custom ops: ``getkern::mlp`` (inference: the pre-activation is never written),
``getkern::mlp_train`` (also returns the fc1 pre-activation and activation for the backward) and
``getkern::mlp_backward`` (:func:`mlp_backward_op`, also the backward of getkern.ops.ln_mlp); all have
fake implementations, so torch.compile does not break graphs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from getkern._backend import dense, resolve_backend
from getkern.ops import cpu_epilogues, cpu_gelu, cpu_linear
from getkern.ops.matmul import check_activation, check_inputs, ieee_fp32_on_cuda, linear_launch, out_features

#################################################################################
#                         Custom ops (Triton path)                              #
#################################################################################


def _forward(h, w1, b1, w2, b2, residual, keep_pre: bool):
    D = h.shape[-1]
    h2d = h.reshape(-1, D)
    pre = torch.empty(h2d.shape[0], w1.shape[0], device=h.device, dtype=h.dtype) if keep_pre else None
    act = linear_launch(h2d, w1, b1, epilogue="gelu", pre=pre, store_pre=keep_pre)
    if residual is None:
        out = linear_launch(act, w2, b2, epilogue="none")
    else:
        out = linear_launch(act, w2, b2, epilogue="residual", res=residual.reshape(-1, D))
    return out.reshape(h.shape), act, pre


@torch.library.custom_op("getkern::mlp", mutates_args=())
def _mlp_op(
    h: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    return _forward(h, w1, b1, w2, b2, residual, keep_pre=False)[0]


@torch.library.custom_op("getkern::mlp_train", mutates_args=())
def _mlp_train_op(
    h: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    residual: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out, act, pre): pre = h @ w1^T + b1 and act = GELU(pre), both (M, H), kept for backward."""
    return _forward(h, w1, b1, w2, b2, residual, keep_pre=True)


@torch.library.custom_op("getkern::mlp_backward", mutates_args=())
def mlp_backward_op(
    dout: torch.Tensor, h: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, act: torch.Tensor, pre: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dh, dw1, db1, dw2, db2). Only dpre = (dout @ w2) * GELU'(pre) is a Triton kernel: it
    saves a full (M, H) write and re-read; the rest are plain matmuls and sums (cuBLAS)."""
    D = h.shape[-1]
    dout2d = dout.reshape(-1, D).contiguous()
    h2d = h.reshape(-1, D)
    dpre = linear_launch(dout2d, w2.t(), None, epilogue="gelu_grad", pre=pre)  # w2.t(): (H, D) view
    dh = (dpre @ w1).reshape(h.shape)
    return dh, dpre.t() @ h2d, dpre.sum(0), dout2d.t() @ act, dout2d.sum(0)


@_mlp_op.register_fake
def _(h, w1, b1, w2, b2, residual):
    return torch.empty_like(h)


@_mlp_train_op.register_fake
def _(h, w1, b1, w2, b2, residual):
    hidden = h.new_empty(h.numel() // h.shape[-1], w1.shape[0])
    return torch.empty_like(h), hidden, torch.empty_like(hidden)


@mlp_backward_op.register_fake
def _(dout, h, w1, w2, act, pre):
    return (
        torch.empty_like(h),
        torch.empty_like(w1),
        w1.new_empty(w1.shape[0]),
        torch.empty_like(w2),
        w2.new_empty(w2.shape[0]),
    )


def _setup_mlp_train(ctx, inputs, output):
    h, w1, _, w2, _, residual = inputs
    _, act, pre = output
    ctx.mark_non_differentiable(act, pre)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs without gradients
    ctx.has_residual = residual is not None
    ctx.save_for_backward(h, w1, w2, act, pre)


def _backward_mlp_train(ctx, dout, _dact, _dpre):
    h, w1, w2, act, pre = ctx.saved_tensors
    dh, dw1, db1, dw2, db2 = mlp_backward_op(dout, h, w1, w2, act, pre)
    return dh, dw1, db1, dw2, db2, (dout if ctx.has_residual else None)


_mlp_train_op.register_autograd(_backward_mlp_train, setup_context=_setup_mlp_train)


#################################################################################
#                               Public function                                 #
#################################################################################


def mlp(
    h: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    *,
    residual: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """fc2(GELU_exact(fc1(h))) (+ residual). h, residual: (..., D); w1: (H, D); b1: (H,);
    w2: (D, H); b2: (D,). One dtype (fp32, fp16 or bf16) and device for all; fp32 accumulation.
    Under autocast, h and the parameters are cast to the autocast dtype first (as for F.linear)."""
    unsupported = "float64 (PyTorch path only)" if h.dtype == torch.float64 else None
    path = resolve_backend(backend, h.device, op="mlp", unsupported=unsupported, slower=ieee_fp32_on_cuda(h))
    if path == "torch":
        if cpu_epilogues.applies(backend, h, w1, b1, w2, b2, residual):  # CPU inference: 2 oneDNN calls
            return cpu_epilogues.mlp(h, w1, b1, w2, b2, residual)
        pre = cpu_linear.linear(h, w1, b1, backend)  # oneDNN where faster, in training (else F.linear)
        act = cpu_gelu.cpu_gelu(pre) if backend == "auto" and cpu_gelu.applies(pre) else F.gelu(pre)
        out = cpu_linear.linear(act, w2, b2, backend)
        return out if residual is None else residual + out
    if torch.is_autocast_enabled(h.device.type):
        # Autocast does not touch custom ops: cast as it would for F.linear; a wider residual stream
        # keeps its dtype, as in ``residual + out``, at the cost of one separate add.
        dtype = torch.get_autocast_dtype(h.device.type)
        h, w1, b1, w2, b2 = (t.to(dtype) for t in (h, w1, b1, w2, b2))
        if residual is not None and residual.dtype != dtype:
            return residual + mlp(h, w1, b1, w2, b2, backend=backend)
    h, w1, b1, w2, b2, residual = dense(h, w1, b1, w2, b2, residual)
    check_activation("mlp", "h", h, "D")
    D, H = h.shape[-1], out_features(w1, "H")
    expected = {"h": (h, h.shape), "w1": (w1, (H, D)), "b1": (b1, (H,)), "w2": (w2, (D, H)), "b2": (b2, (D,))}
    if residual is not None:
        expected["residual"] = (residual, h.shape)
    check_inputs("mlp", "h", h, expected)
    tensors = (h, w1, b1, w2, b2, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return torch.ops.getkern.mlp_train(*tensors)[0]
    return torch.ops.getkern.mlp(*tensors)

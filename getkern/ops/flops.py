"""FLOP formulas of getkern's custom ops for ``torch.utils.flop_counter.FlopCounterMode``.

A dispatch mode sees a custom op as one call and none of the matmuls inside it, so without these the
fused path counts almost nothing (262,144 of a GET-B block's 3,145,728 forward FLOPs). Conventions are
torch's own: a (M, K) x (K, N) matmul is 2 M K N; LayerNorm, GELU, bias and residual adds count 0;
attention counts its two matmuls forward and five backward (dv, dp, dq, dk and the recomputed q k^T,
as torch counts its flash-attention backward). So a block counts the same on every backend.
"""

from __future__ import annotations

import math

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import register_flop_formula

import getkern.ops.attention  # noqa: F401  (each import defines its torch.ops.getkern ops)
import getkern.ops.ln_linear  # noqa: F401
import getkern.ops.ln_mlp  # noqa: F401
import getkern.ops.mlp  # noqa: F401
from getkern.ops import cpu_library

ops = torch.ops.getkern


def _rows(shape) -> int:
    return math.prod(shape[:-1])


@register_flop_formula([ops.layer_norm_linear, ops.layer_norm_linear_train])
def _layer_norm_linear_flops(x, norm_weight, norm_bias, weight, *args, out_shape=None, **kwargs) -> int:
    n, k = weight
    return 2 * _rows(x) * k * n


@register_flop_formula([ops.mlp, ops.mlp_train])
def _mlp_flops(h, w1, *args, out_shape=None, **kwargs) -> int:
    hidden, d = w1
    return 4 * _rows(h) * d * hidden  # fc1 and fc2


@register_flop_formula([ops.add_layer_norm_mlp, ops.add_layer_norm_mlp_train])
def _add_layer_norm_mlp_flops(x, a, norm_weight, norm_bias, w1, *args, out_shape=None, **kwargs) -> int:
    hidden, d = w1
    return 4 * _rows(x) * d * hidden


@register_flop_formula(ops.mlp_backward)
def _mlp_backward_flops(dout, h, w1, *args, out_shape=None, **kwargs) -> int:
    hidden, d = w1
    return 8 * _rows(h) * d * hidden  # d(act), dw2, dh, dw1


def _attention_matmul_flops(qkv) -> int:
    """2 B N^2 D: one (N x N x head dim) matmul per head and batch element (all heads: D = H * dh)."""
    b, n, three_d = qkv
    return 2 * b * n * n * (three_d // 3)


@register_flop_formula(ops.attention_forward)
def _attention_forward_flops(qkv, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_matmul_flops(qkv)  # q k^T and p v


@register_flop_formula(ops.attention_backward)
def _attention_backward_flops(dout, qkv, *args, out_shape=None, **kwargs) -> int:
    return 5 * _attention_matmul_flops(qkv)  # q k^T again, dv, dp, dq, dk


def _register_cpu_operators() -> None:
    """The C++ CPU attention (getkern.ops.cpu_attention) does the same matmuls on the same qkv layout.
    Its ops exist once getkern's CPU operators are loaded, so the formulas are registered then."""
    cpu = torch.ops.getkern_cpu

    @register_flop_formula(cpu.attention_forward)
    def _cpu_attention_flops(qkv, *args, out_shape=None, **kwargs) -> int:
        return 2 * _attention_matmul_flops(qkv)

    @register_flop_formula(cpu.attention_backward)
    def _cpu_attention_backward_flops(qkv, *args, out_shape=None, **kwargs) -> int:
        return 5 * _attention_matmul_flops(qkv)


cpu_library.when_loaded(_register_cpu_operators)


# torch < 2.15 has no formula for SDPA's CPU kernel, so the torch path counted no attention there.
_sdpa_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _sdpa_cpu not in flop_counter.flop_registry and _sdpa_cpu.default not in flop_counter.flop_registry:

    @register_flop_formula(_sdpa_cpu)
    def _sdpa_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _sdpa_cpu_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


# oneDNN linears with fused epilogues (getkern.ops.cpu_epilogues, the CPU inference path):
# (x, weight, bias, attr, ...).
@register_flop_formula(torch.ops.mkldnn._linear_pointwise)
def _onednn_linear_flops(x, weight, *args, out_shape=None, **kwargs) -> int:
    n, k = weight
    return 2 * _rows(x) * k * n

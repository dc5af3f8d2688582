"""Fused ops of the GET block, each with a Triton kernel and a PyTorch reference path.

Every op takes ``backend="auto"|"triton"|"torch"`` (see :mod:`getkern._backend`). Importing this package
also registers the custom ops' FLOP formulas (:mod:`getkern.ops.flops`).
"""
from getkern.ops import flops  # noqa: F401
from getkern.ops.attention import fused_attention
from getkern.ops.layernorm import layer_norm
from getkern.ops.mlp import mlp

__all__ = ["fused_attention", "layer_norm", "mlp"]

"""Fused ops of the GET block, each with a Triton kernel and a PyTorch reference path.

Every op takes ``backend="auto"|"triton"|"torch"`` (see :mod:`getkern._backend`).
"""
from getkern.ops.attention import fused_attention
from getkern.ops.layernorm import layer_norm
from getkern.ops.mlp import mlp

__all__ = ["fused_attention", "layer_norm", "mlp"]

"""Drop-in modules for the GET/ViT block, backed by :mod:`getkern.ops`.

Parameter names match ``torch.nn`` / timm (``qkv``, ``proj``, ``fc1``, ``fc2``, ``weight``, ``bias``)
so the reference's state dicts load unchanged. Each module has a ``backend`` attribute
("auto" | "triton" | "torch"); ``set_backend(model, "torch")`` forces the reference path everywhere
and puts back the plain blocks, ``set_backend(model, "auto")`` swaps in :class:`FusedBlock`.
"""

from getkern.nn.attention import Attention
from getkern.nn.backend import set_backend
from getkern.nn.fused_block import FusedBlock
from getkern.nn.layernorm import LayerNorm
from getkern.nn.mlp import MLP

__all__ = ["Attention", "LayerNorm", "MLP", "FusedBlock", "set_backend"]

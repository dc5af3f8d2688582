"""Count device-memory bytes and kernel launches of a PyTorch sequence.

A TorchDispatchMode sees every ATen op: each is counted as one launch that reads its tensor inputs
and writes its tensor outputs once (views and metadata-only ops are free). This is the model used for
the "unfused" side of every fused-op traffic table.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Ops that only reinterpret metadata: no kernel, no traffic.
_FREE_OPS = {
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze",
    "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "as_strided", "alias", "detach",
    "empty", "empty_like", "empty_strided", "lift_fresh", "_reshape_alias", "unflatten", "flatten",
}


@dataclass
class Traffic:
    bytes_read: int = 0
    bytes_written: int = 0
    launches: int = 0
    ops: Counter = field(default_factory=Counter)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


def _tensor_bytes(tree) -> int:
    leaves, _ = tree_flatten(tree)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


class TrafficCounter(TorchDispatchMode):
    """``with TrafficCounter() as tc: fn()`` then ``tc.traffic``."""

    def __init__(self):
        super().__init__()
        self.traffic = Traffic()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in _FREE_OPS:
            self.traffic.bytes_read += _tensor_bytes((args, kwargs))
            self.traffic.bytes_written += _tensor_bytes(out)
            self.traffic.launches += 1
            self.traffic.ops[name] += 1
        return out


def count_torch_traffic(fn, *args, **kwargs) -> tuple[object, Traffic]:
    """Run ``fn(*args, **kwargs)`` and return (result, Traffic) of its ATen ops."""
    with TrafficCounter() as counter:
        result = fn(*args, **kwargs)
    return result, counter.traffic

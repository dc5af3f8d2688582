"""Memory measures that work without a GPU.

- :func:`saved_activation_bytes`: bytes autograd keeps for backward (saved_tensors_hooks), counting
  each storage once and leaving out parameters and buffers: the activation memory of a training step.
- :func:`training_step_memory`: those saved bytes, the bytes of every tensor the forward created that
  is still alive when it returns (what a step keeps between forward and backward, including what
  activation checkpointing holds outside autograd's saved tensors: its inputs, closures' tensors) and
  the step's peak, from one forward + backward.
- :func:`peak_step_memory`: peak memory of one step beyond what existed before it: the CUDA
  allocator's peak on CUDA; on CPU :class:`LiveTensorPeak`, the largest total size of tensor storages
  created during the step and alive at once (weights and inputs that existed before are not counted;
  allocator slack and non-tensor memory are not seen).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def saved_activation_bytes(
    fn: Callable[[], torch.Tensor], exclude: torch.nn.Module | None = None
) -> tuple[int, object]:
    """Run ``fn`` (which builds a graph) and return (bytes saved for backward, fn's result).

    Storages of ``exclude``'s parameters and buffers (weights saved by linear layers) are not counted.
    """
    skip = set()
    if exclude is not None:
        skip = {t.untyped_storage().data_ptr() for t in list(exclude.parameters()) + list(exclude.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and t.device.type != "meta":
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return sum(seen.values()), result


def training_step_memory(
    forward: Callable[[], torch.Tensor], device: torch.device, exclude: torch.nn.Module | None = None
) -> dict[str, int]:
    """One training step, ``forward()`` (returns the loss with its graph) then backward, measured three
    ways at once: {"saved": bytes saved for backward (:func:`saved_activation_bytes`), "retained":
    bytes created by the forward and alive when it returns, "peak": peak bytes of the whole step},
    all beyond what existed before the step. On CUDA from the caching allocator's counters, on CPU
    from :class:`LiveTensorPeak`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        saved, loss = saved_activation_bytes(forward, exclude)
        torch.cuda.synchronize(device)
        retained = torch.cuda.memory_allocated(device) - base
        loss.backward()
        del loss
        torch.cuda.synchronize(device)
        return {"saved": saved, "retained": retained, "peak": torch.cuda.max_memory_allocated(device) - base}
    with LiveTensorPeak() as meter:
        saved, loss = saved_activation_bytes(forward, exclude)
        retained = meter.live_bytes
        loss.backward()
        del loss
    return {"saved": saved, "retained": retained, "peak": meter.peak_bytes}


class LiveTensorPeak(TorchDispatchMode):
    """``with LiveTensorPeak() as m: run()`` then ``m.peak_bytes``: the largest total size of tensor
    storages created inside the block and alive at once (views share their base's storage)."""

    def __init__(self):
        super().__init__()
        self.live_bytes = self.peak_bytes = 0
        self._alive: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self.live_bytes -= nbytes
        self._alive.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # views and in-place results share an input's storage: not new memory (a weight's transpose
        # is not an allocation of the step)
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._alive or key in inputs:
                continue
            self._alive.add(key)
            self.live_bytes += nbytes
            weakref.finalize(storage, self._release, key, nbytes)  # fires when the storage is freed
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return out


def peak_step_memory(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of one ``step()`` beyond what was allocated before it (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveTensorPeak() as meter:
        step()
    return meter.peak_bytes

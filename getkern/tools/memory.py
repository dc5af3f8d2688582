"""Memory measures that work without a GPU.

- :func:`saved_activation_bytes`: bytes autograd keeps for backward (saved_tensors_hooks), counting
  each storage once and leaving out parameters and buffers: the activation memory of a training step.
- :func:`peak_step_memory`: device peak on CUDA (max_memory_allocated); on CPU the growth of the
  process's peak resident set (ru_maxrss), which is only meaningful in a fresh process (the peak never
  goes down), so callers run it in a subprocess.
"""
from __future__ import annotations

import resource
from typing import Callable

import torch


def saved_activation_bytes(fn: Callable[[], torch.Tensor], exclude: torch.nn.Module | None = None) -> tuple[int, object]:
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


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_step_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory growth while running ``step``: CUDA allocator peak, or ru_maxrss growth on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before = peak_rss_bytes()
    step()
    return peak_rss_bytes() - before

"""Count device-memory bytes and kernel launches: of a PyTorch sequence, and of Triton kernel launches.

PyTorch (:class:`TrafficCounter`, :func:`count_torch_traffic`): a TorchDispatchMode sees every ATen op;
each is counted as one launch that reads its tensor inputs and writes its tensor outputs once (views
and metadata-only ops are free). This is the model used for the "unfused" side of every traffic table.

Triton (:class:`TritonTrafficCounter`, :func:`count_triton_traffic`): under the Triton interpreter
(TRITON_INTERPRET=1, CPU tensors) every load, store and atomic of every program is seen, with its
addresses and mask, at the interpreter's memory layer (tensor-descriptor loads and stores go through it
too). Per launch it reports

- ``bytes_read`` / ``bytes_written``: the distinct bytes touched, i.e. device-memory traffic if every
  re-read of a byte within one launch hits in cache (L2 is 40-50 MB on A100/H100: the right model for
  the GET sizes, where re-read tiles are small);
- ``requested_bytes_read`` / ``requested_bytes_written``: every active lane of every program counted,
  the traffic with no cache at all (re-reads of K/V tiles by several query blocks show up here);
- ``by_arg``: distinct bytes read/written per tensor argument of the kernel.
Atomics count as a read and a write. Masked-off lanes count nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from getkern._traffic import Traffic

__all__ = [
    "Traffic",
    "TrafficCounter",
    "TritonLaunch",
    "TritonTraffic",
    "TritonTrafficCounter",
    "count_torch_traffic",
    "count_triton_traffic",
]

# Ops that only reinterpret metadata: no kernel, no traffic.
_FREE_OPS = {
    "view",
    "_unsafe_view",
    "reshape",
    "expand",
    "permute",
    "transpose",
    "t",
    "unsqueeze",
    "squeeze",
    "slice",
    "select",
    "split",
    "split_with_sizes",
    "chunk",
    "unbind",
    "as_strided",
    "alias",
    "detach",
    "empty",
    "empty_like",
    "empty_strided",
    "lift_fresh",
    "_reshape_alias",
    "unflatten",
    "flatten",
}


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


# --------------------------------------------------------------------------- Triton launches


@dataclass
class TritonLaunch:
    """Memory traffic of one Triton kernel launch (see the module docstring for the definitions)."""

    kernel: str
    grid: tuple[int, int, int]
    bytes_read: int
    bytes_written: int
    requested_bytes_read: int
    requested_bytes_written: int
    by_arg: dict[str, tuple[int, int]]  # argument name -> (distinct bytes read, distinct bytes written)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass
class TritonTraffic(Traffic):
    """Totals over launches (``ops`` counts launches per kernel name) plus the launches themselves."""

    requested_bytes_read: int = 0
    requested_bytes_written: int = 0
    kernel_launches: list[TritonLaunch] = field(default_factory=list)

    def add(self, launch: TritonLaunch) -> None:
        self.bytes_read += launch.bytes_read
        self.bytes_written += launch.bytes_written
        self.requested_bytes_read += launch.requested_bytes_read
        self.requested_bytes_written += launch.requested_bytes_written
        self.launches += 1
        self.ops[launch.kernel] += 1
        self.kernel_launches.append(launch)


class _LaunchRecorder:
    """Addresses (and element sizes) of the active lanes of every access of one launch."""

    def __init__(self, tensor_args: dict[str, torch.Tensor]):
        self.reads: list[tuple[np.ndarray, int]] = []
        self.writes: list[tuple[np.ndarray, int]] = []
        # Storage ranges of the tensor arguments, sorted by start, to attribute addresses to arguments.
        ranges = sorted(
            (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes(), name) for name, t in tensor_args.items()
        )
        self.starts = np.array([r[0] for r in ranges], dtype=np.uint64)
        self.ends = np.array([r[0] + r[1] for r in ranges], dtype=np.uint64)
        self.names = [r[2] for r in ranges]

    def record(self, into: list, ptrs, mask) -> None:
        addresses = np.asarray(ptrs.data, dtype=np.uint64)
        if mask is not None:
            addresses = addresses[np.broadcast_to(np.asarray(mask.data, dtype=bool), addresses.shape)]
        into.append((addresses.reshape(-1), ptrs.get_element_ty().primitive_bitwidth // 8))

    def _totals(self, accesses) -> tuple[int, int, dict[str, int]]:
        requested = sum(a.size * size for a, size in accesses)
        by_arg = dict.fromkeys(self.names, 0)
        distinct = 0
        for size in {size for _, size in accesses}:
            addresses = np.unique(np.concatenate([a for a, s in accesses if s == size]))
            distinct += addresses.size * size
            slot = np.searchsorted(self.starts, addresses, side="right") - 1
            inside = (slot >= 0) & (addresses < self.ends[np.maximum(slot, 0)])
            for index, count in zip(*np.unique(slot[inside], return_counts=True)):
                by_arg[self.names[index]] += int(count) * size
        return distinct, requested, by_arg

    def finish(self, kernel: str, grid) -> TritonLaunch:
        read, requested_read, read_by_arg = self._totals(self.reads)
        written, requested_written, written_by_arg = self._totals(self.writes)
        by_arg = {
            name: (read_by_arg[name], written_by_arg[name])
            for name in self.names
            if read_by_arg[name] or written_by_arg[name]
        }
        return TritonLaunch(kernel, tuple(grid), read, written, requested_read, requested_written, by_arg)


class TritonTrafficCounter:
    """``with TritonTrafficCounter() as tc: launch kernels under the interpreter`` then ``tc.traffic``.

    Only interpreted launches are seen (TRITON_INTERPRET=1 set before the kernels were defined, CPU
    tensors); :func:`count_triton_traffic` raises when it saw none.
    """

    def __init__(self):
        self.traffic = TritonTraffic()
        self._recorder: _LaunchRecorder | None = None
        self._restore: list = []

    def __enter__(self) -> TritonTrafficCounter:
        from triton.runtime import interpreter

        counter = self
        builder = interpreter.InterpreterBuilder
        originals = {
            name: getattr(builder, name)
            for name in ("create_masked_load", "create_masked_store", "create_atomic_rmw", "create_atomic_cas")
        }
        grid_call = interpreter.GridExecutor.__call__

        def masked_load(self, ptrs, mask, other, *args):
            recorder = counter._active()
            recorder.record(recorder.reads, ptrs, mask)
            return originals["create_masked_load"](self, ptrs, mask, other, *args)

        def masked_store(self, ptrs, value, mask, *args):
            recorder = counter._active()
            recorder.record(recorder.writes, ptrs, mask)
            return originals["create_masked_store"](self, ptrs, value, mask, *args)

        def atomic_rmw(self, op, ptr, val, mask, *args):
            recorder = counter._active()
            recorder.record(recorder.reads, ptr, mask)
            recorder.record(recorder.writes, ptr, mask)
            return originals["create_atomic_rmw"](self, op, ptr, val, mask, *args)

        def atomic_cas(self, ptr, cmp, val, *args):
            recorder = counter._active()
            recorder.record(recorder.reads, ptr, None)
            recorder.record(recorder.writes, ptr, None)
            return originals["create_atomic_cas"](self, ptr, cmp, val, *args)

        def launch(executor, *args, **kwargs):
            named = dict(zip(executor.arg_names, args)) | kwargs
            tensors = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
            counter._recorder = _LaunchRecorder(tensors)
            try:
                result = grid_call(executor, *args, **kwargs)
                counter.traffic.add(
                    counter._recorder.finish(executor.fn.__name__, interpreter.interpreter_builder.grid_dim)
                )
            finally:
                counter._recorder = None
            return result

        patches = [
            (builder, "create_masked_load", masked_load),
            (builder, "create_masked_store", masked_store),
            (builder, "create_atomic_rmw", atomic_rmw),
            (builder, "create_atomic_cas", atomic_cas),
            (interpreter.GridExecutor, "__call__", launch),
        ]
        for owner, name, replacement in patches:
            self._restore.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()

    def _active(self) -> _LaunchRecorder:
        if self._recorder is None:
            raise RuntimeError("TritonTrafficCounter: a memory access outside a kernel launch")
        return self._recorder


def count_triton_traffic(fn, *args, **kwargs) -> tuple[object, TritonTraffic]:
    """Run ``fn(*args, **kwargs)`` (which launches Triton kernels under the interpreter) and return
    (result, TritonTraffic). Raises if no interpreted launch was seen: a kernel compiled for a GPU, or
    a torch fallback, would otherwise read as zero traffic."""
    with TritonTrafficCounter() as counter:
        result = fn(*args, **kwargs)
    if counter.traffic.launches == 0:
        raise RuntimeError(
            "count_triton_traffic: no interpreted Triton launch was seen; set "
            "TRITON_INTERPRET=1 before importing the kernels and pass CPU tensors"
        )
    return result, counter.traffic

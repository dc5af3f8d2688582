"""CUDA-graph capture of a map f at fixed shapes (docs/cpp.md), for CUDA tensors only (nothing here runs
on this project's GPU-less machines; the logic is checked on CPU where it can be, see
tests/test_cpp_cuda_graph.py).

:class:`CapturedMap`: f captured once as a CUDA graph; calling it copies z into the graph's static input
and replays it. Pass it as ``f`` to ``getkern.deq.solve(..., backend="cpp")``: the C++ loop then replays
the graph each iteration and runs the mixing and convergence steps on the device (no host
synchronisation when ``tol=None``). GET's captured samplers (its equilibrium map, its whole sampling
step) are in getkern/sampling.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def require_cuda(t: Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_cuda:
        where = t.device if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a CUDA tensor for CUDA-graph capture, got {where}")


def warm_up(fn: Callable[[], object], steps: int) -> None:
    """Run fn on a side stream first, as torch.cuda.graph requires (lazy init, cuBLAS workspaces)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(steps):
            fn()
    torch.cuda.current_stream().wait_stream(side)


class CapturedMap:
    """f captured as a CUDA graph for inputs shaped like ``example`` (B, ...).

    ``self(z)`` copies z into the static input, replays, and returns a copy of the static output (the
    solver loops keep f(z) as their next input, which the next replay would otherwise overwrite).
    f must be free of host synchronisation and of data-dependent shapes (GET's equilibrium map is).
    """

    def __init__(self, f: Callable[[Tensor], Tensor], example: Tensor, *, warmup: int = 2, pool: tuple | None = None):
        require_cuda(example, "example")
        self.static_input = example.detach().clone()
        with torch.no_grad():
            warm_up(lambda: f(self.static_input), warmup)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool):
                self.static_output = f(self.static_input)
        if self.static_output.shape != self.static_input.shape:
            raise ValueError(
                f"f must map {tuple(example.shape)} to the same shape, got {tuple(self.static_output.shape)}"
            )

    def __call__(self, z: Tensor) -> Tensor:
        if z.shape != self.static_input.shape or z.device != self.static_input.device:
            raise ValueError(
                f"z must be {tuple(self.static_input.shape)} on {self.static_input.device} "
                f"(the captured shape), got {tuple(z.shape)} on {z.device}"
            )
        self.static_input.copy_(z)
        self.graph.replay()
        return self.static_output.clone()

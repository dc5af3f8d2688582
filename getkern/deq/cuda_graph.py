"""CUDA-graph capture for GET sampling at fixed shapes (docs/cpp.md).

Two levels, both for CUDA tensors only (nothing here runs on this project's GPU-less machines; the
logic is checked on CPU where it can be, see tests/test_cpp_cuda_graph.py):

- :class:`CapturedMap`: the equilibrium map f captured once as a CUDA graph; calling it copies z into
  the graph's static input and replays it. Pass it as ``f`` to ``getkern.deq.solve(..., backend="cpp")``:
  the C++ loop then replays the graph each iteration and runs the mixing and convergence steps on the
  device (no host synchronisation when ``tol=None``).
- :class:`CapturedSampler`: GET's whole sampling step (injection, a fixed number of solver iterations
  with the C++ loop, decoding) captured as one graph. Possible because with ``tol=None`` neither the
  Python nor the C++ loop reads device memory on the host.
"""
from __future__ import annotations

from typing import Callable

import torch

from getkern.deq import cpp_backend

Tensor = torch.Tensor


def _require_cuda(t: Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_cuda:
        where = t.device if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a CUDA tensor for CUDA-graph capture, got {where}")


def _warm_up(fn: Callable[[], object], steps: int) -> None:
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

    def __init__(self, f: Callable[[Tensor], Tensor], example: Tensor, *, warmup: int = 2,
                 pool: tuple | None = None):
        _require_cuda(example, "example")
        self.static_input = example.detach().clone()
        with torch.no_grad():
            _warm_up(lambda: f(self.static_input), warmup)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool):
                self.static_output = f(self.static_input)
        if self.static_output.shape != self.static_input.shape:
            raise ValueError(f"f must map {tuple(example.shape)} to the same shape, "
                             f"got {tuple(self.static_output.shape)}")

    def __call__(self, z: Tensor) -> Tensor:
        if z.shape != self.static_input.shape or z.device != self.static_input.device:
            raise ValueError(f"z must be {tuple(self.static_input.shape)} on {self.static_input.device} "
                             f"(the captured shape), got {tuple(z.shape)} on {z.device}")
        self.static_input.copy_(z)
        self.graph.replay()
        return self.static_output.clone()


def capture_equilibrium(model: torch.nn.Module, noise: Tensor, y: Tensor | None = None) -> tuple[CapturedMap, dict]:
    """GET's equilibrium map for this batch shape, captured. Returns (f, buffers): ``buffers`` holds
    the static injection tensors ("c", "u") the graph reads; for new noise of the same shape refresh
    them with :func:`refresh_injection` before solving with f."""
    _require_cuda(noise, "noise")
    with torch.no_grad():
        c, u = model.inject(noise, y)
    buffers = {"c": None if c is None else c.clone(), "u": [t.clone() for t in u]}
    z_example = model.initial_state(noise)
    f = CapturedMap(model.equilibrium_fn(buffers["c"], buffers["u"]), z_example)
    return f, buffers


def refresh_injection(model: torch.nn.Module, buffers: dict, noise: Tensor, y: Tensor | None = None) -> None:
    """Recompute the injection for new noise (same shape) into the captured map's static buffers."""
    with torch.no_grad():
        c, u = model.inject(noise, y)
        if buffers["c"] is not None:
            buffers["c"].copy_(c)
        for dst, src in zip(buffers["u"], u):
            dst.copy_(src)


class CapturedSampler:
    """One CUDA graph for GET sampling at a fixed batch shape: noise (and z0) -> images.

    Captures injection, ``iters`` solver iterations in the C++ loop with ``tol=None`` (no host
    synchronisation anywhere, so the loop, mixing included, is capturable) and decoding. Every call
    copies its inputs into the static buffers and replays. ``solver_kwargs`` (solver, stop, m, lam,
    tau) are fixed at capture time. The model's input checks (which read device memory) run once,
    at construction.
    """

    def __init__(self, model: torch.nn.Module, noise: Tensor, y: Tensor | None = None, *, iters: int = 6,
                 warmup: int = 2, **solver_kwargs):
        from getkern.deq.core import solve
        from getkern.models.inputs import check_inputs

        _require_cuda(noise, "noise")
        if not cpp_backend.cpp_available(noise.device, build=True):
            raise RuntimeError("CapturedSampler needs the C++ extension with its CUDA part (docs/cpp.md)")
        check_inputs(model, noise, y, iters=iters)
        self.model = model
        self.noise = noise.detach().clone()
        self.y = None if y is None else y.detach().clone()
        self.z0 = model.initial_state(noise)

        def sample() -> Tensor:
            c, u = model.inject(self.noise, self.y)
            z, _ = solve(model.equilibrium_fn(c, u), self.z0, max_iter=iters, tol=None, backend="cpp",
                         **solver_kwargs)
            return model.decode(z)

        with torch.no_grad():
            _warm_up(sample, warmup)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.images = sample()

    def __call__(self, noise: Tensor, y: Tensor | None = None, z0: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Images (B, C, H, W) for this noise (the captured shape); z0 defaults to fresh standard-normal
        noise. Returns the static output buffer: clone it to keep it past the next call."""
        if noise.shape != self.noise.shape:
            raise ValueError(f"noise must have the captured shape {tuple(self.noise.shape)}, got {tuple(noise.shape)}")
        self.noise.copy_(noise)
        if self.y is not None:
            self.y.copy_(y)
        self.z0.copy_(self.model.initial_state(noise, generator) if z0 is None else z0)
        self.graph.replay()
        return self.images

"""CUDA-graph capture (getkern.deq.cuda_graph.CapturedMap; GET's captured map in getkern.sampling) on
CPU: there is no GPU here, so torch.cuda's graph API is replaced by an emulation with the same contract
(capture records the ATen calls on fixed tensors; replay re-runs them in place, so the outputs live at
fixed addresses and are overwritten by every replay). That checks the helpers' buffer handling (static
input/output, injection refresh, aliasing across solver iterations) with the C++ loop; the CUDA kernels
themselves cannot run here (docs/cpp.md).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import tiny_get
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from getkern import deq
from getkern.deq import cuda_graph
from getkern.sampling import capture_equilibrium, refresh_injection

pytestmark = pytest.mark.cpp  # needs the C++ extension (conftest.py)


class EmulatedGraph:
    """Records (op, args, result) during capture; replay recomputes each op and writes the result
    into the tensor recorded at capture, as a replayed CUDA graph writes to the captured addresses."""

    def __init__(self):
        self.ops = []

    def replay(self):
        for func, args, kwargs, result in self.ops:
            fresh = func(*args, **kwargs)
            for old, new in zip(tree_flatten(result)[0], tree_flatten(fresh)[0]):
                if isinstance(old, torch.Tensor) and old is not new:
                    old.copy_(new)


class _Record(TorchDispatchMode):
    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.graph.ops.append((func, args, kwargs, result))
        return result


@pytest.fixture
def emulated_cuda(monkeypatch):
    @contextlib.contextmanager
    def graph(g, pool=None):
        with _Record(g):
            yield

    monkeypatch.setattr(torch.cuda, "CUDAGraph", EmulatedGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)

    class Stream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    monkeypatch.setattr(cuda_graph, "require_cuda", lambda t, name: None)


def test_requires_cuda_tensors():
    with pytest.raises(ValueError, match="example must be a CUDA tensor"):
        cuda_graph.CapturedMap(lambda z: z, torch.zeros(2, 3))


def test_captured_get_map_solves_like_eager(emulated_cuda):
    model = tiny_get().eval()
    g = torch.Generator().manual_seed(3)
    noise_a, noise_b = torch.randn(2, 2, 3, 8, 8, generator=g)
    z0 = torch.randn(2, 16, 32, generator=g)
    f_graph, buffers = capture_equilibrium(model, noise_a)
    # The second solve runs on new noise: only correct if the injection buffers were refreshed.
    for noise, solver in ((noise_a, "fixed_point"), (noise_b, "anderson")):
        refresh_injection(model, buffers, noise)
        with torch.no_grad():
            f_eager = model.equilibrium_fn(*model.inject(noise))
        z_graph, info_graph = deq.solve(f_graph, z0, solver=solver, max_iter=4, backend="cpp")
        z_eager, info_eager = deq.solve(f_eager, z0, solver=solver, max_iter=4, backend="cpp")
        torch.testing.assert_close(z_graph, z_eager, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(info_graph["abs_trace"], info_eager["abs_trace"], rtol=1e-5, atol=1e-6)
        assert info_graph["abs_trace"].min() > 0  # successive iterates differ: no aliasing


def test_captured_map_checks_shape(emulated_cuda):
    f = cuda_graph.CapturedMap(lambda z: 2 * z, torch.zeros(2, 3))
    torch.testing.assert_close(f(torch.ones(2, 3)), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="captured shape"):
        f(torch.ones(3, 3))

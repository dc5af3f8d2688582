"""The C++ solver loop against the Python loop (docs/cpp.md).

1. Per-iteration overhead: a tiny f (B=4, n=64, one multiply-add) where the loop's own bookkeeping
   dominates; time per iteration of a 64-iteration solve (tol=None), fixed point and Anderson.
2. End to end: GET-T/2 sampling (batch 16, 6 iterations, fp32) with each loop.
3. The issue's CPU target: the plain-PyTorch reference path vs the fastest CPU path found (the
   equilibrium map and the injection compiled by inductor with freezing, the C++ loop); only with
   --benchmark-only (inductor takes minutes to compile on 2 cores).
Run: `OMP_NUM_THREADS=2 .venv/bin/pytest benchmarks/test_cpp_loop_bench.py --benchmark-only`.
All on CPU (wall clock), also on a GPU machine; the run's summary gives each question's speed-up.
"""

from __future__ import annotations

import harness
import pytest
import torch

from getkern import GET, deq
from getkern.sampling import CompiledSampler

pytestmark = pytest.mark.cpp  # needs the C++ extension (conftest.py)

ITERS = 64


def tiny_problem():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(4, 64, generator=g)
    c = torch.randn(64, generator=g)
    return (lambda z: torch.add(c, z, alpha=0.5)), z0


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_per_iteration_overhead(benchmark, solver, backend):
    f, z0 = tiny_problem()
    subject = f"solver loop overhead, {solver}, {ITERS} iterations of a tiny f"
    benchmark.group = f"{subject}: C++ loop vs Python loop"
    benchmark.extra_info.update(solver=solver, backend=backend, iterations=ITERS)
    z, info = benchmark(deq.solve, f, z0, solver=solver, max_iter=ITERS, tol=None, backend=backend)
    harness.SUMMARY.put_timed(benchmark, subject, backend, "wall clock", order=("cpp", "torch"), baseline="torch")
    assert info["backend"] == backend and info["nfev"] == ITERS


@pytest.fixture(scope="module")
def get_t():
    torch.manual_seed(0)
    model = GET.from_config("GET-T/2", backend="torch").eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(16, 3, 32, 32, generator=g)
    z0 = torch.randn(16, 256, 256, generator=g)
    return model, noise, z0


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_get_t_sampling(benchmark, get_t, solver, backend):
    model, noise, z0 = get_t
    model.solver_backend = backend
    subject = f"GET-T/2 sampling, batch 16, 6 iterations, {solver}, CPU"
    benchmark.group = f"{subject}: C++ loop vs Python loop"
    benchmark.extra_info.update(solver=solver, backend=backend, batch=16, iterations=6)

    def sample():
        with torch.no_grad():
            return model(noise, z0=z0, iters=6, solver=solver, tol=None, return_info=True)

    images, info = benchmark.pedantic(sample, rounds=3, iterations=1, warmup_rounds=1)
    harness.SUMMARY.put_timed(benchmark, subject, backend, "wall clock", order=("cpp", "torch"), baseline="torch")
    assert info["backend"] == backend and images.shape == noise.shape


@pytest.mark.parametrize("path", ["reference", "fastest"])
def test_get_t_cpu_target(benchmark, get_t, path):
    if benchmark.disabled:
        pytest.skip("inductor compilation takes minutes on 2 cores: run with --benchmark-only")
    model, noise, z0 = get_t
    subject = "GET-T/2 end to end, batch 16, 6 iterations, fp32, CPU"
    benchmark.group = f"{subject}: fastest CPU path vs plain PyTorch (issue target)"
    with torch.no_grad():
        model.solver_backend = "torch"
        reference = model(noise, z0=z0, iters=6)
        if path == "reference":
            run = lambda: model(noise, z0=z0, iters=6)  # noqa: E731
        else:
            sample = CompiledSampler(model, solver_backend="cpp")
            run = lambda: sample(noise, z0=z0, iters=6)  # noqa: E731
        out = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    harness.SUMMARY.put_timed(
        benchmark, subject, path, "wall clock", order=("fastest", "reference"), baseline="reference"
    )
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())

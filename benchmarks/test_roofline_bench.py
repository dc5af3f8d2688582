"""Measured time of every roofline row, next to the modelled H100 floor (docs/gpu.md). GPU only.

    pytest benchmarks/test_roofline_bench.py --benchmark-only

The cases are the rows of getkern.tools.roofline's GET-B/2 step model (B=128, bf16), not a second
list: each fused-op row is timed with backend="triton" and backend="torch" on fresh CUDA tensors of the
row's shapes, and the whole sampling step of both paths. extra_info carries the modelled bytes and
floor, and measured / floor (the inverse of the fraction of the roofline reached). Without CUDA the
timed cases are skipped: the model stays a model until a GPU measures it.
"""
from __future__ import annotations

import pytest
import torch

from getkern import ops
from getkern.tools import roofline

BATCH = 128
ROWS = roofline.model_sampling_step("GET-B/2", batch=BATCH, iters=1).rows   # meta device: no GPU needed
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="roofline measurements need a CUDA GPU")


def _on_gpu(value, generator):
    """A fresh random CUDA tensor for every (meta) tensor of a recorded call; other values as they are."""
    if isinstance(value, torch.Tensor):
        return torch.randn(value.shape, generator=generator, device="cuda", dtype=value.dtype)
    return value


def _timed(benchmark, fn) -> float:
    def run():
        fn()
        torch.cuda.synchronize()
    run()  # compile and warm up outside the timing
    benchmark.pedantic(run, rounds=20, warmup_rounds=3)
    return benchmark.stats.stats.median


@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("row", ROWS, ids=[r.label for r in ROWS])
def test_fused_op_vs_floor(benchmark, row, backend):
    g = torch.Generator(device="cuda").manual_seed(0)
    args = [_on_gpu(a, g) for a in row.args]
    kwargs = {k: _on_gpu(v, g) for k, v in row.kwargs.items()}
    cost = row.fused if backend == "triton" else row.unfused
    benchmark.group = f"roofline: {row.label}"
    benchmark.extra_info.update(model_bytes=cost.bytes, model_launches=cost.launches, model_floor_s=cost.floor_s)
    op = getattr(ops, row.op)
    with torch.no_grad():
        median = _timed(benchmark, lambda: op(*args, **kwargs, backend=backend))
    benchmark.extra_info["measured_over_floor"] = median / cost.floor_s


@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_sampling_step_vs_floor(benchmark, backend):
    from getkern.models import GET

    step = roofline.model_sampling_step("GET-B/2", batch=BATCH, iters=6)
    cost = step.fused if backend == "triton" else step.unfused
    model = GET.from_config("GET-B/2", backend=backend).to(device="cuda", dtype=torch.bfloat16).eval()
    noise = torch.randn(BATCH, 3, 32, 32, device="cuda", dtype=torch.bfloat16)
    benchmark.group = "roofline: GET-B/2 sampling step"
    benchmark.extra_info.update(model_bytes=cost.bytes, model_launches=cost.launches, model_floor_s=cost.floor_s)
    with torch.no_grad():
        median = _timed(benchmark, lambda: model(noise, iters=6, tol=None))
    benchmark.extra_info["measured_over_floor"] = median / cost.floor_s


def test_every_row_names_a_public_op():
    """Runs without a GPU: the rows the GPU cases will time exist and are callable ops."""
    assert {row.op for row in ROWS} == {"fused_attention", "layer_norm", "mlp"}
    assert all(callable(getattr(ops, row.op)) and row.calls >= 1 for row in ROWS)

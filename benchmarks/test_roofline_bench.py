"""Measured time of every roofline row, next to the modelled H100 floor (docs/gpu.md). GPU only.

    pytest benchmarks/test_roofline_bench.py --benchmark-only

The cases are the rows of getkern.tools.roofline's GET-B/2 step model (B=128, bf16), not a second
list: each fused-op row is timed with backend="triton" and backend="torch" on fresh CUDA tensors of the
row's shapes, and the whole sampling step of both paths. Each Triton case first checks its numerics
(against the PyTorch path, both against float64: harness.check_numerics); timing is on the GPU's clock
(the gpu_timed fixture of conftest.py: CUDA events, L2 flushed per round). extra_info carries the
modelled bytes and floor, and measured / floor (the inverse of the fraction of the roofline reached).
bf16 only: the model's floor is the bf16 tensor-core peak, which does not apply to fp32 (the fp32
kernels are timed by the attention, LN+MLP and Anderson benchmarks). Without CUDA the timed cases are
skipped: the model stays a model until a GPU measures it.
"""

from __future__ import annotations

import harness
import pytest
import torch

from getkern import ops
from getkern.tools import roofline

BATCH = 128
ROWS = roofline.model_sampling_step("GET-B/2", batch=BATCH, iters=1).rows  # meta device: no GPU needed
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="roofline measurements need a CUDA GPU")


def _on_gpu(value, generator):
    """A fresh random CUDA tensor for every (meta) tensor of a recorded call; other values as they are."""
    if isinstance(value, torch.Tensor):
        return torch.randn(value.shape, generator=generator, device="cuda", dtype=value.dtype)
    return value


def _line(subject):
    """Summary line: measured / modelled floor of each backend."""
    rows = harness.ordered(subject)
    parts = [
        f"{lb} {r['seconds'] / r['floor_s']:.2f}x floor ({harness.fmt_seconds(r['seconds'])})"
        for lb, r in rows
        if r.get("seconds")
    ]
    if not parts:
        return f"{subject.name}: not timed (--benchmark-disable)"
    return f"{subject.name}: " + " vs ".join(parts) + " (CUDA events, median; floor: the H100 roofline model)"


def _record(benchmark, summary, subject, backend, cost, median):
    if median is not None:
        benchmark.extra_info["measured_over_floor"] = median / cost.floor_s
    summary.put_timed(
        benchmark, subject, backend, "CUDA events", order=("triton", "torch"), render=_line, floor_s=cost.floor_s
    )


@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("row", ROWS, ids=[r.label for r in ROWS])
def test_fused_op_vs_floor(benchmark, gpu_timed, summary, row, backend):
    g = torch.Generator(device="cuda").manual_seed(0)
    args = [_on_gpu(a, g) for a in row.args]
    kwargs = {k: _on_gpu(v, g) for k, v in row.kwargs.items()}
    cost = row.fused if backend == "triton" else row.unfused
    subject = f"roofline GET-B/2 bf16 B={BATCH}: {row.label}"
    benchmark.group = f"{subject}: measured vs modelled floor"
    benchmark.extra_info.update(
        harness.precision_info(torch.bfloat16),
        model_bytes=cost.bytes,
        model_launches=cost.launches,
        model_floor_s=cost.floor_s,
    )
    op = getattr(ops, row.op)
    with torch.no_grad():
        if backend == "triton":
            double = lambda v: v.double() if isinstance(v, torch.Tensor) else v  # noqa: E731
            outs = [
                op(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()}, backend=be)
                for cast, be in ((lambda v: v, "triton"), (lambda v: v, "torch"), (double, "torch"))
            ]
            harness.check_numerics(benchmark, {"out": tuple(outs)})
        median = gpu_timed(lambda: op(*args, **kwargs, backend=backend))
    _record(benchmark, summary, subject, backend, cost, median)


@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_sampling_step_vs_floor(benchmark, gpu_timed, summary, backend):
    from getkern.models import GET

    step = roofline.model_sampling_step("GET-B/2", batch=BATCH, iters=6)
    cost = step.fused if backend == "triton" else step.unfused
    model = GET.from_config("GET-B/2", backend=backend).to(device="cuda", dtype=torch.bfloat16).eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    noise = torch.randn(BATCH, 3, 32, 32, device="cuda", generator=g).to(torch.bfloat16)
    z0 = torch.randn(BATCH, 256, model.hidden_size, device="cuda", generator=g).to(torch.bfloat16)
    subject = f"roofline GET-B/2 bf16 B={BATCH}: whole sampling step (6 iterations)"
    benchmark.group = f"{subject}: measured vs modelled floor"
    benchmark.extra_info.update(
        harness.precision_info(torch.bfloat16),
        model_bytes=cost.bytes,
        model_launches=cost.launches,
        model_floor_s=cost.floor_s,
    )
    call = lambda m, x, z: m(x, z0=z, iters=6, tol=None)  # noqa: E731
    if backend == "triton":
        harness.check_numerics(benchmark, harness.model_numerics(model, call, (noise, z0)))
    with torch.no_grad():
        median = gpu_timed(lambda: call(model, noise, z0), rounds=10)
    _record(benchmark, summary, subject, backend, cost, median)


def test_every_row_names_a_public_op():
    """Runs without a GPU: the rows the GPU cases will time exist and are callable ops."""
    assert {row.op for row in ROWS} == {"fused_attention", "layer_norm", "mlp"}
    assert all(callable(getattr(ops, row.op)) and row.calls >= 1 for row in ROWS)

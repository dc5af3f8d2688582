"""Inference speed: GET-T/M/S/B at 1..8 solver iterations (fixed point, Anderson) vs ViT-S/B/L/XL.

Every row carries the model's matmul FLOPs per image (torch.utils.flop_counter, counted on one image)
so time per FLOP can be compared; benchmarks/report.py turns the saved JSON into the table and plot
of docs/benchmarks.md, and the run's summary gives GET-B/2 at 6 iterations vs ViT-L/2 from the rows
of the same run. The iteration count is exact (tol=None): no early exit, so rows are comparable.

On CPU: fp32, batch 1, pytest-benchmark's wall clock. On a GPU: bf16 and fp32 (fp32 as torch's
matmul precision gives it), batch 8 (128 with --full); each case first checks the Triton path's
output against the PyTorch path, both against float64 (harness.model_numerics, 4 images), then is
timed on the GPU's clock (the gpu_timed fixture of conftest.py).

With --benchmark-disable (CI runs them once so they cannot rot) images are 8x8 instead of 32x32 and
only a cross-section of the grid runs (every code path, not every size).
"""

from __future__ import annotations

import functools
import statistics

import harness
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from getkern import GET, ViT

GET_SIZES = ["GET-T/2", "GET-M/2", "GET-S/2", "GET-B/2"]
VIT_SIZES = ["ViT-S/2", "ViT-B/2", "ViT-L/2", "ViT-XL/2"]
ITERS = [1, 2, 4, 6, 8]
SOLVERS = ["fixed_point", "anderson"]
DTYPES = harness.MODEL_DTYPES


def batch_size(device: torch.device, full: bool) -> int:
    if full:
        return 128
    return 8 if device.type == "cuda" else 1


def image_size(benchmark) -> int:
    return 8 if benchmark.disabled else 32


def skip_in_smoke_run(benchmark, keep: bool) -> None:
    if benchmark.disabled and not keep:
        pytest.skip("smoke run (--benchmark-disable) keeps a cross-section of the grid")


@functools.lru_cache(maxsize=2)
def build(name: str, device_type: str, size: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = GET if name.startswith("GET") else ViT
    model = cls.from_config(name, input_size=size).eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    return model.to(device=device_type, dtype=dtype)


def flops_of(fn) -> tuple[int, torch.Tensor]:
    """fn's matmul FLOPs, and its output."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return counter.get_total_flops(), out


def run_get(model, noise, z0, iters, solver):
    return model(noise, z0=z0, iters=iters, solver=solver, tol=None)


def clock(device) -> str:
    return "CUDA events" if device.type == "cuda" else "wall clock"


def rounds(device):
    return 10 if device.type == "cuda" else 2


def subject_of(dtype) -> str:
    return f"inference per image {harness.dtype_name(dtype)}"


def _summary_lines(subject) -> list[str]:
    """GET-B/2 at 6 fixed-point iterations vs ViT-L/2, and GET-B/2's time at each iteration count."""
    rows = subject.rows
    vit = rows.get("ViT-L/2")
    get6 = rows.get("GET-B/2 fixed_point 6")
    if not vit or not vit.get("seconds"):
        return [f"{subject.name}: ViT-L/2 not timed in this run"]
    t_v = vit["seconds"] / vit["batch"]
    where = f"{vit['clock']}, median, batch {vit['batch']}, {vit['image_size']}x{vit['image_size']}"
    lines = []
    if get6 and get6.get("seconds"):
        t_g = get6["seconds"] / get6["batch"]
        lines.append(
            f"{subject.name}: GET-B/2 6 iters (fixed point) vs ViT-L/2: {t_g / t_v:.2f}x time "
            f"({harness.fmt_seconds(t_g)} vs {harness.fmt_seconds(t_v)} per image; {where}), "
            f"{get6['flops_per_image'] / vit['flops_per_image']:.2f}x matmul FLOPs"
        )
    for solver in SOLVERS:
        pts = [
            (i, rows[f"GET-B/2 {solver} {i}"]) for i in ITERS if rows.get(f"GET-B/2 {solver} {i}", {}).get("seconds")
        ]
        if len(pts) > 1:
            lines.append(
                f"{subject.name}: GET-B/2 {solver} at {'/'.join(str(i) for i, _ in pts)} iterations = "
                + "/".join(f"{r['seconds'] / r['batch'] / t_v:.2f}" for _, r in pts)
                + "x ViT-L/2's time"
            )
    return lines


def time_step(benchmark, gpu_timed, step, device) -> None:
    if device.type == "cuda":
        gpu_timed(step, rounds=rounds(device))
    else:
        benchmark.pedantic(step, rounds=rounds(device), warmup_rounds=1)


def record(benchmark, summary, label, B, flops_per_image, device, dtype, **info):
    info.update(batch=B, flops_per_image=flops_per_image, clock=clock(device), **harness.precision_info(dtype))
    benchmark.extra_info.update(info)
    summary.put_timed(
        benchmark,
        subject_of(dtype),
        label,
        clock(device),
        render=_summary_lines,
        **{k: v for k, v in info.items() if k != "clock"},
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=harness.dtype_name)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("iters", ITERS)
@pytest.mark.parametrize("name", GET_SIZES)
def test_get_inference(benchmark, gpu_timed, summary, name, iters, solver, dtype, device, full):
    benchmark.group = f"{subject_of(dtype)}: GETs vs ViTs"
    skip_in_smoke_run(benchmark, name == "GET-T/2" or iters == 1)
    B = batch_size(device, full)
    S = image_size(benchmark)
    model = build(name, device.type, S, dtype)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B, 3, S, S, generator=g).to(device, dtype)
    z0 = torch.randn(B, (S // 2) ** 2, model.hidden_size, generator=g).to(device, dtype)
    call = lambda m, x, z: run_get(m, x, z, iters, solver)  # noqa: E731
    with torch.inference_mode():
        flops, out = flops_of(lambda: call(model, noise[:1], z0[:1]))
        if device.type == "cuda":
            harness.check_numerics(benchmark, harness.model_numerics(model, call, (noise, z0)))
        time_step(benchmark, gpu_timed, lambda: call(model, noise, z0), device)
    record(
        benchmark,
        summary,
        f"{name} {solver} {iters}",
        B,
        flops,
        device,
        dtype,
        model=name,
        iters=iters,
        solver=solver,
        image_size=S,
    )
    assert out.shape == (1, 3, S, S)


@pytest.mark.parametrize("dtype", DTYPES, ids=harness.dtype_name)
@pytest.mark.parametrize("name", VIT_SIZES)
def test_vit_inference(benchmark, gpu_timed, summary, name, dtype, device, full):
    benchmark.group = f"{subject_of(dtype)}: GETs vs ViTs"
    skip_in_smoke_run(benchmark, name == "ViT-S/2")
    B = batch_size(device, full)
    S = image_size(benchmark)
    model = build(name, device.type, S, dtype)
    noise = torch.randn(B, 3, S, S, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    call = lambda m, x: m(x)  # noqa: E731
    with torch.inference_mode():
        flops, out = flops_of(lambda: call(model, noise[:1]))
        if device.type == "cuda":
            harness.check_numerics(benchmark, harness.model_numerics(model, call, (noise,)))
        time_step(benchmark, gpu_timed, lambda: call(model, noise), device)
    record(benchmark, summary, name, B, flops, device, dtype, model=name, iters=None, solver=None, image_size=S)
    assert out.shape == (1, 3, S, S)


@pytest.mark.parametrize("dtype", DTYPES, ids=harness.dtype_name)
def test_get_b_vs_vit_l_head_to_head(benchmark, gpu_timed, summary, dtype, device, full):
    """GET-B/2 at its default 6 iterations vs ViT-L/2, the ViT it matches in quality: the time ratio
    and the FLOP ratio side by side, timed interleaved in one run (robust to a noisy machine): median
    of 3 pairs, each call on the device's clock (CUDA events, L2 flushed, on a GPU; wall clock on CPU).
    The answer is the summary line and extra_info; the table row is one more GET-B/2 call's time.
    Numerics: checked by the two models' inference cases."""
    subject = f"GET-B/2 (6 iterations) vs ViT-L/2 {harness.dtype_name(dtype)}, timed interleaved"
    benchmark.group = subject
    B = batch_size(device, full)
    S = image_size(benchmark)
    get, vit = build("GET-B/2", device.type, S, dtype), build("ViT-L/2", device.type, S, dtype)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B, 3, S, S, generator=g).to(device, dtype)
    z0 = torch.randn(B, (S // 2) ** 2, 768, generator=g).to(device, dtype)
    run_g = lambda: run_get(get, noise, z0, 6, "fixed_point")  # noqa: E731
    run_v = lambda: vit(noise)  # noqa: E731
    with torch.inference_mode():
        flops_g = flops_of(lambda: run_get(get, noise[:1], z0[:1], 6, "fixed_point"))[0]
        flops_v = flops_of(lambda: vit(noise[:1]))[0]
        if device.type == "cuda":
            run_g(), run_v()  # Triton compiles and autotunes outside the timing
        times_g, times_v = [], []
        for _ in range(3 if not benchmark.disabled else 1):
            for fn, times in ((run_g, times_g), (run_v, times_v)):
                times.append(harness.device_seconds(fn, device))
        t_g, t_v = statistics.median(times_g), statistics.median(times_v)
        benchmark.extra_info.update(
            batch=B,
            clock=clock(device),
            **harness.precision_info(dtype),
            get_s_per_image=t_g / B,
            vit_l_s_per_image=t_v / B,
            time_ratio_get_over_vit_l=t_g / t_v,
            get_flops_per_image=flops_g,
            vit_l_flops_per_image=flops_v,
            flop_ratio_get_over_vit_l=flops_g / flops_v,
        )
        if device.type == "cuda":
            gpu_timed(run_g, rounds=1, min_rounds=1, warmup_rounds=0, cross_check=False)
        else:
            benchmark.pedantic(run_g, rounds=1, warmup_rounds=0)
    smoke = f" [smoke run, {S}x{S} images: --benchmark-disable]" if benchmark.disabled else ""
    summary.put(
        subject,
        "pair",
        line=(
            f"{subject}{smoke}: {t_g / t_v:.2f}x time ({harness.fmt_seconds(t_g / B)} vs {harness.fmt_seconds(t_v / B)} "
            f"per image, {clock(device)}, median of {len(times_g)} pair{'s' if len(times_g) > 1 else ''}, batch {B}), "
            f"{flops_g / flops_v:.2f}x matmul FLOPs"
        ),
        render=lambda s: s.rows["pair"]["line"],
    )
    assert flops_g > 0 and flops_v > 0

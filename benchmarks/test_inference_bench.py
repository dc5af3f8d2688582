"""Inference speed: GET-T/M/S/B at 1..8 solver iterations (fixed point, Anderson) vs ViT-S/B/L/XL.

Every row carries the model's matmul FLOPs per image (torch.utils.flop_counter) so time per FLOP can
be compared; benchmarks/report.py turns the saved JSON into the table and plot of docs/benchmarks.md.
The iteration count is exact (tol=None): no early exit, so rows are comparable.

With --benchmark-disable (CI runs them once so they cannot rot) images are 8x8 instead of 32x32 and
only a cross-section of the grid runs (every code path, not every size).
"""
from __future__ import annotations

import functools
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from getkern import GET, ViT

GET_SIZES = ["GET-T/2", "GET-M/2", "GET-S/2", "GET-B/2"]
VIT_SIZES = ["ViT-S/2", "ViT-B/2", "ViT-L/2", "ViT-XL/2"]
ITERS = [1, 2, 4, 6, 8]
SOLVERS = ["fixed_point", "anderson"]


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
def build(name: str, device_type: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = GET if name.startswith("GET") else ViT
    model = cls.from_config(name, input_size=size).to(device_type).eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    return model


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run_get(model, noise, z0, iters, solver):
    return model(noise, z0=z0, iters=iters, solver=solver, tol=None)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def record(benchmark, batch, flops, **info):
    benchmark.extra_info.update(info, batch=batch, flops_per_image=flops / batch)


def rounds(device):
    return 5 if device.type == "cuda" else 2


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("iters", ITERS)
@pytest.mark.parametrize("name", GET_SIZES)
def test_get_inference(benchmark, name, iters, solver, device, full):
    benchmark.group = "inference"
    skip_in_smoke_run(benchmark, name == "GET-T/2" or iters == 1)
    B = batch_size(device, full)
    S = image_size(benchmark)
    model = build(name, device.type, S)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B, 3, S, S, generator=g).to(device)
    z0 = torch.randn(B, (S // 2) ** 2, model.hidden_size, generator=g).to(device)

    def step():
        out = run_get(model, noise, z0, iters, solver)
        sync(device)
        return out

    with torch.inference_mode():
        flops = flops_of(step)
        record(benchmark, B, flops, model=name, iters=iters, solver=solver, image_size=S)
        out = benchmark.pedantic(step, rounds=rounds(device), warmup_rounds=1)
    assert out.shape == (B, 3, S, S)


@pytest.mark.parametrize("name", VIT_SIZES)
def test_vit_inference(benchmark, name, device, full):
    benchmark.group = "inference"
    skip_in_smoke_run(benchmark, name == "ViT-S/2")
    B = batch_size(device, full)
    S = image_size(benchmark)
    model = build(name, device.type, S)
    noise = torch.randn(B, 3, S, S, generator=torch.Generator().manual_seed(0)).to(device)

    def step():
        out = model(noise)
        sync(device)
        return out

    with torch.inference_mode():
        flops = flops_of(step)
        record(benchmark, B, flops, model=name, iters=None, solver=None, image_size=S)
        out = benchmark.pedantic(step, rounds=rounds(device), warmup_rounds=1)
    assert out.shape == (B, 3, S, S)


def test_get_b_vs_vit_l_head_to_head(benchmark, device, full):
    """GET-B/2 at its default 6 iterations vs ViT-L/2, the ViT it matches in quality: the time ratio
    and the FLOP ratio side by side, timed interleaved in one run (robust to a noisy machine)."""
    benchmark.group = "head-to-head"
    B = batch_size(device, full)
    S = image_size(benchmark)
    get, vit = build("GET-B/2", device.type, S), build("ViT-L/2", device.type, S)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(B, 3, S, S, generator=g).to(device)
    z0 = torch.randn(B, (S // 2) ** 2, 768, generator=g).to(device)
    run_g = lambda: (run_get(get, noise, z0, 6, "fixed_point"), sync(device))  # noqa: E731
    run_v = lambda: (vit(noise), sync(device))  # noqa: E731
    with torch.inference_mode():
        flops_g, flops_v = flops_of(run_g), flops_of(run_v)
        times_g, times_v = [], []
        for _ in range(3 if not benchmark.disabled else 1):
            for fn, times in ((run_g, times_g), (run_v, times_v)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        t_g, t_v = sorted(times_g)[len(times_g) // 2], sorted(times_v)[len(times_v) // 2]
        benchmark.extra_info.update(
            batch=B, get_s_per_image=t_g / B, vit_l_s_per_image=t_v / B, time_ratio_get_over_vit_l=t_g / t_v,
            get_flops_per_image=flops_g / B, vit_l_flops_per_image=flops_v / B,
            flop_ratio_get_over_vit_l=flops_g / flops_v)
        benchmark.pedantic(run_g, rounds=1, warmup_rounds=0)
    assert flops_g > 0 and flops_v > 0

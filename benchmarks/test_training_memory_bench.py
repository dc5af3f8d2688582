"""Training memory per image: activation bytes saved for backward (saved_tensors_hooks, parameters
excluded) and peak memory of one step (CUDA max_memory_allocated; on CPU the peak-RSS growth of a
fresh process), for GET-B/2 with each gradient mode at 2, 6 and 12 forward iterations, vs ViT-B/2 and
ViT-L/2. Ratios against the reference recipe (unrolled, 6 iterations) are computed in the same run.

With --benchmark-disable (CI) the images are 8x8 instead of 32x32 and only one peak is measured.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training_step import build, inputs, saved_bytes, training_step

GET_CASES = [(grad, iters) for grad in ("unrolled", "phantom", "implicit") for iters in (2, 6, 12)]
VIT_CASES = ["ViT-B/2", "ViT-L/2"]
RESULTS: dict[tuple, float] = {}  # (model, grad, iters) -> saved bytes per image, this run


def image_size(benchmark) -> int:
    return 8 if benchmark.disabled else 32


def measure_peak(spec: dict) -> int:
    if spec["device"] == "cuda":
        from training_step import peak_bytes
        return peak_bytes(spec)
    here = Path(__file__).parent
    out = subprocess.run([sys.executable, str(here / "training_step.py"), json.dumps(spec),
                          str(torch.get_num_threads())], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(here)})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def run_case(benchmark, name, grad, iters, device):
    benchmark.group = "training-memory"
    size, batch = image_size(benchmark), 1 if device.type == "cpu" else 16
    model = build(name, size, device.type)
    per_image = saved_bytes(model, batch, grad, iters, device.type) / batch
    RESULTS[(name, grad, iters)] = per_image
    info = dict(model=name, grad=grad, iters=iters, batch=batch, image_size=size,
                saved_bytes_per_image=per_image)
    first_case = (name, grad, iters) == ("GET-B/2", "unrolled", 2)
    if not benchmark.disabled or first_case:
        spec = dict(model=name, grad=grad, iters=iters, batch=batch, image_size=size, device=device.type)
        info["peak_bytes_per_image"] = measure_peak(spec) / batch
    benchmark.extra_info.update(info)
    noise, target = inputs(model, batch, device.type)
    benchmark.pedantic(lambda: training_step(model, noise, target, grad, iters).backward(), rounds=1)
    assert per_image > 0


@pytest.mark.parametrize("grad, iters", GET_CASES)
def test_get_b_training_memory(benchmark, grad, iters, device):
    run_case(benchmark, "GET-B/2", grad, iters, device)


@pytest.mark.parametrize("name", VIT_CASES)
def test_vit_training_memory(benchmark, name, device):
    run_case(benchmark, name, None, None, device)


def test_training_memory_ratios(benchmark):
    """Ratios of saved activation bytes per image, all from this run (needs the cases above)."""
    benchmark.group = "training-memory-ratios"
    base = RESULTS.get(("GET-B/2", "unrolled", 6))
    vit_l = RESULTS.get(("ViT-L/2", None, None))
    if base is None or vit_l is None:
        pytest.skip("run the whole file: the ratios need the unrolled-6 and ViT-L/2 cases of this run")
    ratios = {}
    for grad in ("phantom", "implicit"):
        per_iters = [RESULTS[("GET-B/2", grad, i)] for i in (2, 6, 12)]
        ratios[grad] = dict(vs_unrolled6=per_iters[1] / base, vs_vit_l=per_iters[1] / vit_l,
                            flatness_12_over_2=per_iters[2] / per_iters[0])
    benchmark.extra_info.update(ratios)
    benchmark.pedantic(lambda: None, rounds=1)
    for grad, r in ratios.items():
        assert r["flatness_12_over_2"] < 1.05, f"{grad}: saved bytes grow with forward iterations: {r}"

"""Shared options, fixtures and the end-of-run summary for ``pytest benchmarks/ --benchmark-only``.

No TRITON_INTERPRET here: benchmarks measure real paths (PyTorch/C++ on CPU; Triton on CUDA), never
the interpreter.

**Tables and summary.** Every benchmark's ``benchmark.group`` is the question it answers ("attention
GET-B fwd bf16: fused vs unfused", "inference per image fp32: GETs vs ViTs", ...), so pytest-benchmark
prints one table per question. Each benchmark also puts its answer into ``harness.SUMMARY``; after the
tables, ``pytest_terminal_summary`` below prints one line per question (a GPU case: "fused 0.41 ms vs
unfused 1.20 ms (CUDA events, median); speed-up vs unfused: fused 2.93x"; without a GPU the kernel
benchmarks give their counted traffic: "counted bytes, fused 1.00x floor vs unfused 2.72x floor (not
timed: no GPU)"). ``--benchmark-json`` files carry the same lines under ``"getkern_summary"``.

**Nothing a counter does is shown as a timing.** Without a GPU the attention, LN+MLP and Anderson
benchmarks count bytes and launches (cheap, exact) into the summary and then skip ("no GPU: counted
traffic reported in the summary, nothing timed"): no table row. The training-memory ratios are
likewise a summary line, not a zero-time row.

**GPU timing** (the ``gpu_timed`` fixture, :func:`harness.time_on_gpu`): the table's numbers are
device time on the GPU's clock. Before ``benchmark.pedantic`` the fixture replaces the benchmark's
timer (``benchmark._timer``, which pytest-benchmark 4.x and 5.x read when they build each round's
runner) with :class:`harness.CudaEventTimer`: a reading records a CUDA event on the current stream,
waits for it and returns the device seconds since the first reading, so a round measures the work
launched between its two readings (host launch gaps included). ``pedantic``'s untimed ``setup`` writes
a 256 MiB buffer before every round (larger than any L2, as triton.testing.do_bench does) and clears
gradients, so no round finds its inputs in L2 and no backward adds an accumulation kernel; warm-up
rounds are excluded, and one call before everything compiles and autotunes the Triton kernels.
Rounds: up to 20, cut so that the timed rounds of a case take about 1 s (at least 3).
triton.testing.do_bench's median (``return_mode="median"``) goes to ``extra_info["do_bench_median_s"]``
as a cross-check where triton imports. A pytest-benchmark without ``_timer`` would fall back to a
synchronized wall clock, and ``extra_info["clock"]`` says so.

**Numerics on a GPU**, once per case, before timing: the fused output (and gradients) against the
PyTorch path in the same dtype, both against a float64 computation of the same inputs; the fused error
must be at most 2x the PyTorch path's own error plus a floor of 8 rounding units (64 for gradients) of
the largest float64 magnitude (:func:`harness.check_numerics`; the rule of tests/test_models_fused.py).
A violation fails the test. GPU kernel and model benchmarks run in bf16 and in fp32; fp32 is whatever
torch's current matmul precision gives (IEEE by default; ``extra_info["fp32_matmul"]`` says "tf32" when
``torch.backends.cuda.matmul.fp32_precision`` or the legacy flags select TF32). On CPU the timed model
benchmarks run fp32 only.

**Sizes and budgets** (docs/benchmarks.md, "--full and its budget"). The default is sized for a 2-core
CPU: the whole default run is meant to stay under 10 minutes there (5 min 6 s measured on an idle
machine before test_cpu_speed_bench.py was added; about 7 minutes expected now). ``--full`` runs the
paper's sizes (batch 128). Its budget on one H100/H200-class GPU: under 15 minutes for the whole
directory, an estimate (no GPU has run it yet): about 125 cases go through ``gpu_timed``, each with at
most ~1 s of timed rounds (the cut above), 4 calls outside the cut and ~0.2 s of do_bench and numerics,
i.e. about 4 minutes of measurement (the inference grid's matmuls at batch 128 are ~300 TFLOP a pass
per dtype); the rest is Triton compilation (once per kernel, shape class and dtype), the CPU-side
solver and C++-loop benchmarks, the inductor compile of the CPU-target case and the training-memory
file. The one-time build of the C++/CUDA extension (minutes) is outside it. On a CPU, ``--full`` is
slow: the inference grid and the head-to-head at batch 128 are about 128x the default's compute,
roughly 2-3 hours on 2 cores (7-10 ns per kFLOP measured, ~300 TFLOP of matmuls per pass over the
grid, 3 passes a case).
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `import harness` under any import mode
import harness  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="benchmark at the paper's sizes (batch 128; hours on a CPU, see benchmarks/conftest.py)",
    )


@pytest.fixture(scope="session")
def full(request) -> bool:
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def gpu_timed(benchmark):
    """``gpu_timed(fn, rounds=20, grads=(...))``: time fn on the GPU's clock through this test's
    benchmark fixture (harness.time_on_gpu); returns the median seconds."""

    def timed(fn, **kwargs):
        return harness.time_on_gpu(benchmark, fn, **kwargs)

    return timed


@pytest.fixture
def summary():
    """The session's summary store (harness.SUMMARY)."""
    return harness.SUMMARY


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    machine_info["triton_interpret"] = os.environ.get("TRITON_INTERPRET")
    if torch.cuda.is_available():
        machine_info["fp32_matmul"] = harness.fp32_matmul()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["getkern_summary"] = harness.SUMMARY.as_json()


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = harness.SUMMARY.lines()
    if not lines:
        return
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU, no GPU"
    terminalreporter.write_sep("=", f"getkern benchmark summary ({where}): one line per question")
    for line in lines:
        terminalreporter.write_line(line)

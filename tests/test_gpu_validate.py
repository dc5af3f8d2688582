"""``getkern gpu-validate --dry``: every phase runs on CPU under the Triton interpreter at tiny shapes, so
the command the GPU machine will run cannot rot (docs/gpu-validate.md). About 2 min on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from getkern.tools.gpu_validate import PHASES, summarize

# Parts that need a GPU, recorded as skipped by name under --dry (a prefix of each name).
GPU_ONLY = (
    "ceiling: device copy bandwidth",
    "ceiling: bf16 matmul",
    "ceiling: TF32 matmul",
    "no host sync with tol=None",
    "CUDA graph: CapturedSampler",
    "CUDA graph: CapturedMap",
    "registers/spills",
    "time attention fwd",
    "time mlp",
    "time block",
    "time training step",
)


def _env(interpret: bool) -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # conftest.py sets it; the command must set it itself
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    return env


def _records(path):
    text = path.read_text()
    assert text.endswith("\n"), "the last JSONL line is incomplete"
    records = [json.loads(line) for line in text.splitlines()]
    for r in records:
        assert {"phase", "name", "status", "numbers", "seconds"} <= set(r), r
        assert r["status"] in ("pass", "fail", "skip"), r
    return records


def test_dry_run_covers_every_phase_and_passes(tmp_path):
    out = tmp_path / "dry"
    # Without TRITON_INTERPRET in the environment: the command re-executes itself with it set.
    proc = subprocess.run(
        [sys.executable, "-m", "getkern.tools.gpu_validate", "--dry", "--out", str(out)],
        env=_env(False),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = _records(out / "results.jsonl")
    assert {r["phase"] for r in records} == set(PHASES)
    failed = [(r["name"], r["reason"]) for r in records if r["status"] == "fail"]
    assert not failed, failed
    assert not [r for r in records if r["reason"] == "skipped: deadline"], "the dry run ran out of time"
    for prefix in GPU_ONLY:
        hits = [r for r in records if r["name"].startswith(prefix)]
        assert hits and all(r["status"] == "skip" and "needs a GPU" in r["reason"] for r in hits), prefix
    passed = {r["phase"] for r in records if r["status"] == "pass"}
    assert {"environment", "correctness", "models"} <= passed
    names = " ".join(r["name"] for r in records if r["status"] == "pass")
    for what in (
        "attention fwd+bwd",
        "layer_norm fwd",
        "mlp fwd",
        "layer_norm_linear",
        "add_layer_norm_mlp",
        "anderson passes lock-step",
        "fp32 ieee",
        "fp32 tf32",
        "B*H > 65535",
        "> 2^31",
        "training step grad=implicit",
        "C++ loop vs Python loop",
        "per_op vs torch",
        "prologue vs torch",
    ):
        assert what in names, what
    summary = (out / "summary.md").read_text()
    assert summary.index("## Failing checks") < summary.index("## 1. environment") < summary.index("## 5. verdicts")
    assert "## Failing checks\n\nNone." in summary
    assert summary.strip() in proc.stdout  # printed at the end


def test_tiny_deadline_records_skips_instead_of_crashing(tmp_path):
    out = tmp_path / "tiny"
    proc = subprocess.run(
        [sys.executable, "-m", "getkern", "gpu-validate", "--dry", "--deadline", "2", "--no-build", "--out", str(out)],
        env=_env(False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = _records(out / "results.jsonl")
    skipped = [r for r in records if r["reason"] == "skipped: deadline"]
    assert len(skipped) > 20
    assert {r["phase"] for r in skipped} >= {"correctness", "models", "timings"}
    assert (out / "summary.md").exists() and "skipped: deadline" in (out / "summary.md").read_text()


def test_a_killed_run_leaves_valid_jsonl(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "getkern.tools.gpu_validate", "--dry", "--no-build", "--out", str(out)],
        env=_env(True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = out / "results.jsonl"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (path.exists() and path.read_text().count("\n") >= 9):
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    records = _records(path)
    assert len(records) >= 9 and records[0]["name"] == "versions and device"


def test_summary_lists_failures_first():
    records = [
        {
            "phase": "correctness",
            "name": "ok case",
            "status": "pass",
            "seconds": 0.1,
            "numbers": {"out": {"err": 1e-7, "own": 1e-7, "floor": 1e-8}},
            "reason": None,
        },
        {
            "phase": "models",
            "name": "bad case",
            "status": "fail",
            "seconds": 0.2,
            "numbers": {},
            "reason": "out: error 1 > 2 x 0.1 + 0.01",
        },
        {
            "phase": "verdicts",
            "name": "block path",
            "status": "skip",
            "seconds": 0,
            "numbers": {"default": "per_op"},
            "reason": "no timing data",
        },
    ]
    text = summarize(records, {"device": "test", "date": "today"})
    assert text.index("bad case") < text.index("## 2. correctness")
    assert "| ok case | pass | 0.1 | out 0.476x |" in text
    assert "| block path | per_op | - | skip | no timing data |" in text


def test_a_compile_warmer_runs_its_share_of_the_cases(tmp_path):
    """GPU runs start workers (``--warm i/k``) that run every k-th correctness and model case, so that
    Triton compiles in parallel into its disk cache; here one of 8 shares, under the interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "getkern.tools.gpu_validate", "--warm", "3/8", "--dry", "--out", str(tmp_path)],
        env=_env(False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = _records(tmp_path / "warm" / "results-3.jsonl")
    assert {r["phase"] for r in records} == {"correctness", "models"}
    assert 4 <= len([r for r in records if r["status"] == "pass"]) <= 12
    assert not [r for r in records if r["status"] == "fail"]
    assert not (tmp_path / "results.jsonl").exists()

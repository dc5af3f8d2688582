"""The shared benchmark machinery (harness.py), checked without a GPU: plain tests, so `make test`
(--benchmark-disable) runs them and --benchmark-only skips them (they time nothing)."""

from __future__ import annotations

import inspect

import harness
import torch


class FakeEvent:
    """Stands in for torch.cuda.Event: a settable clock in ms."""

    now_ms = 0.0

    def record(self):
        self.t = FakeEvent.now_ms

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return other.t - self.t


def test_cuda_event_timer_sums_intervals_in_seconds():
    timer = harness.CudaEventTimer(event=FakeEvent)
    readings = []
    for ms in (0.0, 2.5, 2.5, 10.0):
        FakeEvent.now_ms = ms
        readings.append(timer())
    assert readings == [0.0, 2.5e-3, 2.5e-3, 10e-3]
    assert timer.__name__ == "cuda_event_timer"


def test_pytest_benchmark_takes_its_timer_when_it_builds_a_runner():
    """time_on_gpu swaps benchmark._timer before pedantic: the runner must read it then."""
    from pytest_benchmark.fixture import BenchmarkFixture

    assert "self._timer" in inspect.getsource(BenchmarkFixture._make_runner)
    assert "setup" in inspect.signature(BenchmarkFixture.pedantic).parameters


def test_rule_is_twice_the_torch_paths_error_plus_a_floor():
    exact = torch.tensor([1.0, -2.0], dtype=torch.float64)
    same = exact + torch.tensor([1e-3, 0.0], dtype=torch.float64)
    ok = harness.rule((exact + 1.9e-3).float(), same.float(), exact)
    bad = harness.rule((exact + 3e-3).float(), same.float(), exact)
    nan = harness.rule(torch.tensor([float("nan"), -2.0]), same.float(), exact)
    assert ok["ok"] and not bad["ok"] and not nan["ok"]
    floor = 8 * torch.finfo(torch.float32).eps * 2.0
    assert abs(ok["bound"] - (2 * ok["own"] + floor)) < 1e-12


def test_summary_lines_timed_and_counted():
    s = harness.Summary()
    s.put(
        "attn fwd bf16", "unfused", order=("fused", "unfused"), baseline="unfused", seconds=1.2e-3, clock="CUDA events"
    )
    s.put("attn fwd bf16", "fused", seconds=0.4e-3, clock="CUDA events")
    s.put("attn cpu", "fused", counted="1.00x floor")
    s.put("attn cpu", "unfused", counted="2.72x floor")
    s.put("odd", "x", render=lambda subject: ["a", "b"])
    lines = s.lines()
    assert lines[0] == (
        "attn fwd bf16: fused 400 us vs unfused 1.2 ms (CUDA events, median); speed-up vs unfused: fused 3.00x"
    )
    assert lines[1] == "attn cpu: counted bytes, fused 1.00x floor vs unfused 2.72x floor (not timed: no GPU)"
    assert lines[2:] == ["a", "b"]
    assert s.as_json()["lines"] == lines

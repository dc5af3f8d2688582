"""The ctest fixture (csrc/tests/anderson_fixture.txt) must still be what the Python Anderson solver
computes: otherwise the C++ test `anderson_matches_python` would check against stale numbers."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[1] / "csrc" / "tests" / "make_fixture.py"


def parse(text: str) -> dict[str, torch.Tensor]:
    out = {}
    for line in text.strip().splitlines():
        name, _dtype, numel, *values = line.split()
        assert len(values) == int(numel), name
        out[name] = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return out


def test_fixture_is_current():
    spec = importlib.util.spec_from_file_location("make_fixture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stored, fresh = parse(module.PATH.read_text()), parse(module.render())
    assert stored.keys() == fresh.keys()
    for name in fresh:
        torch.testing.assert_close(stored[name], fresh[name], rtol=1e-6, atol=1e-9, msg=name)
    assert fresh["fallback_float32"].sum() == 0 and fresh["abs_trace_float32"][-3:].max() < 1e-4

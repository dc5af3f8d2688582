"""getkern where its users are: without triton (a CPU-only torch brings none), and the extension cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from getkern import _extension

NO_TRITON = textwrap.dedent("""
    import sys
    sys.modules["triton"] = None            # as if triton were not installed: import raises ImportError
    import torch, getkern
    from getkern._backend import BackendUnavailable
    from getkern.ops.attention import fused_attention
    assert sys.modules["triton"] is None
    model = getkern.GET.from_config("GET-T/2", input_size=8, in_channels=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 1, 8, 8) and bool(torch.isfinite(out).all())
    try:
        fused_attention(torch.randn(1, 5, 3 * 64), 1, backend="triton")
    except BackendUnavailable as error:
        assert "triton" in str(error) and "not importable" in str(error), error
    else:
        raise AssertionError("backend='triton' without triton did not raise")
    print("ok")
""")


def test_imports_and_samples_without_triton():
    env = {**os.environ, "TRITON_INTERPRET": "1"}  # even with the interpreter asked for
    run = subprocess.run([sys.executable, "-c", NO_TRITON], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_extension_cache_key_names_python_torch_and_sources(monkeypatch, tmp_path):
    """Another torch, CUDA part or source is another cache folder: a build is never loaded into a torch
    it was not built for."""
    monkeypatch.setenv("GETKERN_EXTENSION_CACHE", str(tmp_path))
    p = _extension.plan()
    key = p.key
    assert p.directory.parent == tmp_path
    assert f"torch{torch.__version__.replace('+', '_')}" in p.key and f"py{sys.version_info.major}" in p.key
    other = _extension.BuildPlan(p.sources, not p.with_cuda, p.cuda_home, "" if p.with_cuda else "9.0", None)
    assert other.key != key
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert _extension.plan.__wrapped__().key != key


def test_loaded_extension_for_another_torch_is_refused():
    class Stale:
        torch_version = "2.0.0"
        with_cuda = False
        solve = None

    with pytest.raises(_extension.ExtensionError, match="built for torch 2.0.0"):
        _extension._check_loaded(Stale, _extension.plan())


def test_cuda_part_needs_a_matching_toolkit(monkeypatch):
    monkeypatch.setenv("GETKERN_CUDA", "1")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(_extension.ExtensionError, match="CPU-only"):
        _extension.plan.__wrapped__()
    monkeypatch.setenv("GETKERN_CUDA", "0")
    assert _extension.plan.__wrapped__().why_no_cuda == "GETKERN_CUDA=0"

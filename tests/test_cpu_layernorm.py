"""The CPU inference LayerNorm (getkern/csrc/cpu_ops/layernorm.cpp, getkern.ops.cpu_layernorm): against
float64 on odd widths on every instruction set's copy, every output element written, rows far from
zero, the op's schema, clear errors, and when "auto" takes it (getkern.ops.layernorm)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_to_f64

from getkern.ops import cpu_layernorm, cpu_library
from getkern.ops.layernorm import layer_norm

pytestmark = pytest.mark.skipif(not cpu_library.available(), reason="the CPU operators cannot be built here")

# (leading shape, width): the digits GET's (600 images x 16 tokens, 64) and GET-T/2's (256 tokens, 256),
# widths under one vector, between one and four vectors' multiples, and one element.
SHAPES = [((37, 16), 64), ((3, 256), 256), ((41,), 7), ((2, 9), 53), ((5,), 67), ((3, 4), 1), ((13,), 129)]


@pytest.fixture(params=cpu_library.instruction_sets() if cpu_library.available() else ["none"])
def isa(request):
    before = cpu_library.use_instruction_set(request.param)
    yield request.param
    cpu_library.use_instruction_set(before)


def _inputs(lead, d, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, d, generator=g) * 3 + offset
    return x, torch.randn(d, generator=g), torch.randn(d, generator=g)


@pytest.mark.parametrize("lead,d", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset"])
def test_matches_float64(lead, d, offset, isa):
    x, w, b = _inputs(lead, d, offset=offset)
    out = torch.full_like(x, float("nan"))  # every element must be written
    torch.ops.getkern_cpu.layer_norm_forward(x, w, b, 1e-6, out)
    ref = F.layer_norm(x.double(), (d,), w.double(), b.double(), 1e-6)
    # Summation order differs from ATen's: within twice its float32 error plus one ulp.
    assert_close_to_f64(f"{lead} {d} {isa}", out, ref, F.layer_norm(x, (d,), w, b, 1e-6), factor=2)


def test_schema_and_clear_errors():
    x, w, b = _inputs((4,), 8)
    torch.library.opcheck(
        torch.ops.getkern_cpu.layer_norm_forward.default, (x, w, b, 1e-6, torch.empty_like(x)), test_utils="test_schema"
    )
    with pytest.raises(RuntimeError, match="float32"):
        cpu_layernorm.cpu_layer_norm(x.double(), w, b, 1e-6)
    with pytest.raises(RuntimeError, match="last size 8"):
        cpu_layernorm.cpu_layer_norm(x, w[:5], b, 1e-6)
    assert cpu_layernorm.cpu_layer_norm(torch.empty(0, 8), w, b, 1e-6).shape == (0, 8)


def test_applies_only_where_it_can_run(monkeypatch):
    x, w, b = _inputs((2, 3), 8)
    p = torch.nn.Parameter(w.clone())
    with torch.no_grad():
        assert cpu_layernorm.applies("auto", x, p, b)
        assert not cpu_layernorm.applies("torch", x, p, b)  # the reference stays the reference
        assert not cpu_layernorm.applies("auto", x, None, b)  # no affine: F.layer_norm
        assert not cpu_layernorm.applies("auto", x.double(), p.double(), b.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not cpu_layernorm.applies("auto", x, p, b)
    assert not cpu_layernorm.applies("auto", x, p, b)  # a gradient is needed: no backward here
    assert cpu_layernorm.applies("auto", x, w, b)  # grad mode on, nothing requires it
    monkeypatch.setattr("getkern.ops.cpu_library._isa", "baseline")
    assert not cpu_layernorm.applies("auto", x, w, b)  # not measured faster there


def test_layer_norm_auto_takes_it_without_gradients(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # backend="auto" as a user's CPU process resolves it
    calls = []
    kernel = cpu_layernorm.cpu_layer_norm
    monkeypatch.setattr(cpu_layernorm, "cpu_layer_norm", lambda *a: calls.append(1) or kernel(*a))
    x, w, b = _inputs((3, 5), 24)
    p = torch.nn.Parameter(w.clone())
    with torch.no_grad():
        got = layer_norm(x, p, b, 1e-6)
    assert calls == [1]
    assert_close_to_f64(
        "auto",
        got,
        F.layer_norm(x.double(), (24,), w.double(), b.double(), 1e-6),
        F.layer_norm(x, (24,), w, b, 1e-6),
        2,
    )
    layer_norm(x, p, b, 1e-6).sum().backward()  # training: F.layer_norm, differentiable
    assert calls == [1] and p.grad is not None

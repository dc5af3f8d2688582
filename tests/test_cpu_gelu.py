"""The CPU GELU for training (getkern/csrc/cpu_ops/gelu.cpp, getkern.ops.cpu_gelu): GELU and its
derivative against float64 on every copy this CPU runs (random and edge inputs, odd lengths, outputs
poisoned), the custom op's registrations, when "auto" takes it, and the MLP's training gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import ZeroFills

from getkern.ops import cpu_gelu, cpu_library
from getkern.ops.mlp import mlp

pytestmark = pytest.mark.skipif(not cpu_library.available(), reason="the CPU operators cannot be built here")

EPS = torch.finfo(torch.float32).eps


@pytest.fixture(params=cpu_library.instruction_sets() if cpu_library.available() else ["none"])
def isa(request):
    before = cpu_library.use_instruction_set(request.param)
    yield request.param
    cpu_library.use_instruction_set(before)


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    edges = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 2**0.5, -(2**0.5), 2 * 2**0.5, -2 * 2**0.5, 7.7, -7.7, 9.9, -9.9]
    edges += [50.0, -50.0, 3e38, -3e38]
    return torch.cat([torch.randn(n, generator=g) * 3, torch.linspace(-12, 12, 2001), torch.tensor(edges)])


@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])  # under one vector, a partial one, several threads' worth
def test_gelu_and_slope_match_float64(n, isa):
    """act within 4 ulp of |x| of the float64 GELU (Phi's absolute error ~1e-7 times |x|, one rounding
    of the product), slope within 4 ulp absolute (Phi plus x phi(x), both O(1))."""
    x = _inputs(n, seed=n)
    act, slope = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    torch.ops.getkern_cpu.gelu_forward(x, act, slope)
    x64 = x.double().requires_grad_(True)
    ref = F.gelu(x64)
    (ref_slope,) = torch.autograd.grad(ref.sum(), x64)
    act_err = (act.double() - ref.detach()).abs() / x.double().abs().clamp_min(torch.finfo(torch.float32).tiny)
    assert act_err.max() <= 4 * EPS, f"{isa}: GELU error {act_err.max() / EPS:.2f} ulp of |x|"
    slope_err = (slope.double() - ref_slope).abs().max()
    assert slope_err <= 4 * EPS, f"{isa}: GELU' error {slope_err / EPS:.2f} ulp"


def test_in_place_equals_out_of_place(isa):
    """gelu_ (inference, after fc1) writes what gelu_forward's act is, into its input."""
    x = _inputs(1003, seed=5)
    act = torch.full_like(x, float("nan"))
    torch.ops.getkern_cpu.gelu_forward(x, act, None)
    y = x.clone()
    assert cpu_gelu.gelu_(y) is y
    assert torch.equal(y, act)


def test_without_slope_and_clear_errors():
    x = torch.randn(37)
    act = torch.full_like(x, float("nan"))
    torch.ops.getkern_cpu.gelu_forward(x, act, None)
    torch.testing.assert_close(act, F.gelu(x), rtol=4 * EPS, atol=4 * EPS)
    with pytest.raises(RuntimeError, match="x must be a contiguous float32"):
        torch.ops.getkern_cpu.gelu_forward(x.double(), act, None)
    with pytest.raises(RuntimeError, match="act and slope must be"):
        torch.ops.getkern_cpu.gelu_forward(x, torch.empty(36), None)


def test_schema_declares_what_the_op_writes():
    x = torch.randn(3, 5)
    args = (x, torch.empty_like(x), torch.empty_like(x))
    torch.library.opcheck(torch.ops.getkern_cpu.gelu_forward.default, args, test_utils="test_schema")


def test_backward_writes_no_zero_gradient_for_the_slope():
    """GELU' is an output without a gradient: the backward must not be handed a zero tensor for it (one
    (M, H) fill a call, 2 % of the digits GET's training step before)."""
    x = torch.randn(64, 256, requires_grad=True)
    act = cpu_gelu.cpu_gelu(x)
    dact = torch.randn_like(act)
    with ZeroFills() as fills:
        act.backward(dact)
    assert fills.count == 0
    slope = torch.empty_like(x)
    torch.ops.getkern_cpu.gelu_forward(x.detach(), torch.empty_like(x), slope)
    torch.testing.assert_close(x.grad, dact * slope, rtol=0, atol=0)


def test_applies_only_where_it_can_run():
    x = torch.randn(4, 8, requires_grad=True)
    if cpu_library.isa() not in cpu_gelu.FASTER_THAN_ATEN:
        assert not cpu_gelu.applies(x)
        return
    assert cpu_gelu.applies(x)
    assert not cpu_gelu.applies(x.detach())  # no gradient: the oneDNN path's GELU post-op instead
    assert not cpu_gelu.applies(x.double())
    with torch.no_grad():
        assert not cpu_gelu.applies(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cpu_gelu.applies(x)


def test_mlp_training_gradients_on_auto(monkeypatch):
    """The MLP as training runs it ("auto" as a user's CPU process resolves it, no Triton interpreter:
    this kernel) against float64: output and every gradient."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    calls = []
    apply = cpu_gelu._Gelu.apply
    monkeypatch.setattr(cpu_gelu._Gelu, "apply", lambda *a: calls.append(1) or apply(*a))
    g = torch.Generator().manual_seed(3)
    D, H = 24, 40
    tensors = [torch.randn(3, 11, D, generator=g), torch.randn(H, D, generator=g) / D**0.5, torch.randn(H, generator=g)]
    tensors += [
        torch.randn(D, H, generator=g) / H**0.5,
        torch.randn(D, generator=g),
        torch.randn(3, 11, D, generator=g),
    ]
    dout = torch.randn(3, 11, D, generator=g)
    results = {}
    for name, dtype, backend in (
        ("auto", torch.float32, "auto"),
        ("torch", torch.float32, "torch"),
        ("f64", torch.float64, "torch"),
    ):
        ts = [t.detach().to(dtype, copy=True).requires_grad_(True) for t in tensors]
        out = mlp(*ts[:5], residual=ts[5], backend=backend)
        out.backward(dout.to(dtype))
        results[name] = [out.detach()] + [t.grad for t in ts]
    if cpu_library.isa() in cpu_gelu.FASTER_THAN_ATEN:
        assert calls == [1]
    for i, (a, b, r) in enumerate(zip(results["auto"], results["torch"], results["f64"])):
        err, base = (a.double() - r).abs().max(), (b.double() - r).abs().max()
        assert err <= 2 * base + EPS * r.abs().max(), f"tensor {i}: error {err:.3g} vs torch's {base:.3g}"

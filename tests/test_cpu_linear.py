"""The oneDNN linear for CPU training (getkern.ops.cpu_linear): forward and the three gradients against
float64 on odd shapes (both dW layouts, with and without bias, 2-D and 3-D inputs), when "auto" takes
it, the one-time probe's decision, and a whole GET's unrolled training step on the user's dispatch.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_to_f64
from test_models_fused import build, inputs

from getkern.ops import cpu_epilogues, cpu_linear

pytestmark = pytest.mark.skipif(not cpu_epilogues._AVAILABLE, reason="this torch has no oneDNN linear")


def _grads(fn, x, w, b, dy):
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    out = fn(x, w, b)
    return [out, *torch.autograd.grad(out, leaves, dy)]


# (input shape, N): N < K and N >= K (the two dW layouts), 3-D inputs, odd sizes, one row.
SHAPES = [((7, 13), 5), ((9, 5), 31), ((2, 9, 13), 13), ((3, 5, 24), 70), ((1, 40), 3)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,N", SHAPES)
def test_forward_and_gradients_match_float64(shape, N, bias):
    g = torch.Generator().manual_seed(sum(shape) + N)
    K = shape[-1]
    x, w = torch.randn(*shape, generator=g), torch.randn(N, K, generator=g) / K**0.5
    b = torch.randn(N, generator=g) if bias else None
    dy = torch.randn(*shape[:-1], N, generator=g)
    leaves = [t.requires_grad_(True) for t in (x, w, b) if t is not None]
    got = _grads(cpu_linear._Linear.apply, x, w, b, dy)
    plain = _grads(F.linear, x, w, b, dy)
    x64, w64 = (t.detach().double().requires_grad_(True) for t in (x, w))
    b64 = None if b is None else b.detach().double().requires_grad_(True)
    ref = _grads(F.linear, x64, w64, b64, dy.double())
    names = ["out", "dx", "dw", "db"][: len(leaves) + 1]
    for name, a, p, r in zip(names, got, plain, ref):
        assert a.shape == r.shape, name
        assert_close_to_f64(f"{name} {shape} N={N}", a, r, p, factor=2)


def test_only_the_gradients_asked_for():
    x, w, b = torch.randn(6, 8), torch.randn(9, 8, requires_grad=True), torch.randn(9)
    out = cpu_linear._Linear.apply(x, w, b)
    (dw,) = torch.autograd.grad(out.sum(), [w])
    torch.testing.assert_close(dw, torch.ones(6, 9).t() @ x, rtol=1e-6, atol=1e-6)


def test_double_backward_equals_F_linear():
    """With create_graph=True the backward runs differentiable products: second derivatives hold."""
    g = torch.Generator().manual_seed(3)
    x0, w0, b0 = torch.randn(6, 8, generator=g), torch.randn(9, 8, generator=g), torch.randn(9, generator=g)
    second = []
    for fn in (cpu_linear._Linear.apply, F.linear):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        dx, dw = torch.autograd.grad(fn(x, w, b).square().sum(), [x, w], create_graph=True)
        second.append(torch.autograd.grad(dx.square().sum() + dw.square().sum(), [x, w, b]))
    for a, b in zip(*second):  # sums of a few dozen float32 products each: tens of ulp of the largest
        torch.testing.assert_close(a, b, rtol=0, atol=32 * torch.finfo(torch.float32).eps * b.abs().max().item())


def test_applies_only_where_it_can_run_and_pays(monkeypatch):
    monkeypatch.setattr(cpu_linear, "faster_here", lambda: True)
    big = cpu_linear.MIN_MACS // (64 * 64) + 1
    x, w, b = torch.randn(big, 64), torch.randn(64, 64, requires_grad=True), torch.randn(64)
    assert cpu_linear.applies("auto", x, w, b)
    assert cpu_linear.applies("auto", x.requires_grad_(True), w.detach(), b)  # any input needing a gradient
    assert not cpu_linear.applies("torch", x, w, b)  # the reference stays the reference
    assert not cpu_linear.applies("auto", x[: big // 2], w, b)  # too small for oneDNN's per-call cost
    assert not cpu_linear.applies("auto", x.double(), w.double(), None)  # float32 only
    assert not cpu_linear.applies("auto", x.detach(), w.detach(), b)  # no gradient: the inference path
    with torch.no_grad():
        assert not cpu_linear.applies("auto", x, w, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cpu_linear.applies("auto", x, w, b)
    monkeypatch.setattr(cpu_linear, "faster_here", lambda: False)
    assert not cpu_linear.applies("auto", x, w, b)  # where oneDNN is not faster, F.linear
    y = cpu_linear.linear(x, w, b)
    assert y.grad_fn.name() != "_LinearBackward"


def test_the_probe_decides_once_with_a_boolean():
    assert isinstance(cpu_linear.faster_here(), bool)


def test_whole_get_training_step_on_the_user_dispatch(monkeypatch):
    """An unrolled training step of the conditional GET with every block matmul in oneDNN: loss and all
    parameter gradients against float64, as accurate as the torch backend's float32."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # "auto" as a user's CPU process resolves it
    monkeypatch.setattr(cpu_linear, "faster_here", lambda: True)
    monkeypatch.setattr(cpu_linear, "MIN_MACS", 0)
    calls = []
    apply = cpu_linear._Linear.apply
    monkeypatch.setattr(cpu_linear._Linear, "apply", lambda *a: calls.append(1) or apply(*a))
    model = build("cond").train()
    fast, exact = copy.deepcopy(model).set_backend("auto"), copy.deepcopy(model).double()
    noise, y, _, z0 = inputs("cond")
    losses, grads = {}, {}
    for name, m in (("auto", fast), ("torch", model), ("f64", exact)):
        calls.clear()
        dtype = next(m.parameters()).dtype
        states = m(noise.to(dtype), y, z0=z0.to(dtype), iters=2, return_iterates=True, grad="unrolled")
        loss = sum(F.l1_loss(s, torch.zeros_like(s)) for s in states)
        loss.backward()
        losses[name] = loss.detach()
        grads[name] = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
        if name == "auto":
            # 4 linears a block application, and qkv_inj once
            assert len(calls) == 4 * (len(model.blocks) + 2 * len(model.deq_blocks)) + 1
        else:
            assert not calls
    assert_close_to_f64("loss", losses["auto"], losses["f64"], losses["torch"], factor=2)
    assert_close_to_f64("grads", grads["auto"], grads["f64"], grads["torch"], factor=2)

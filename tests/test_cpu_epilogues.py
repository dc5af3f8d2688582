"""The CPU inference path (getkern/ops/cpu_epilogues.py): bias, exact GELU and residual adds as oneDNN
post-ops of the matmuls. Each linear against float64 on odd shapes; when "auto" takes it and when it
must not; whole GET (unconditional, conditional, guided) and ViT against the PyTorch path and float64.

"auto" on CPU resolves to the Triton interpreter under this suite (tests/conftest.py), so the tests
that need the user's dispatch switch the interpreter off for themselves.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_models_fused import KINDS, assert_as_accurate, build, inputs, run

from getkern.ops import cpu_epilogues

pytestmark = pytest.mark.skipif(not cpu_epilogues._AVAILABLE, reason="torch built without oneDNN")


@pytest.fixture
def user_dispatch(monkeypatch):
    """backend="auto" as a user's CPU process resolves it: no Triton interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def _linear_f64(x, w, b, gelu, residual):
    out = F.linear(x.double(), w.double(), None if b is None else b.double())
    out = F.gelu(out) if gelu else out
    return out if residual is None else out + residual.double()


@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual", "residual_broadcast", "no_bias"])
def test_linear_matches_float64(epilogue):
    g = torch.Generator().manual_seed(0)
    K, N = 53, 91  # odd sizes, leading (2, 37) batch
    x = torch.randn(2, 37, K, generator=g)
    w, b = torch.randn(N, K, generator=g) / K**0.5, torch.randn(N, generator=g)
    residual = {
        "residual": torch.randn(2, 37, N, generator=g),
        "residual_broadcast": torch.randn(2, 1, N, generator=g),
    }.get(epilogue)
    b = None if epilogue == "no_bias" else b
    gelu = epilogue == "gelu"
    got = cpu_epilogues.linear(x, w, b, gelu=gelu, residual=residual)
    plain = F.linear(x, w, b)
    plain = F.gelu(plain) if gelu else (plain if residual is None else residual + plain)
    exact = _linear_f64(x, w, b, gelu, residual)
    assert got.shape == (2, 37, N) and got.dtype == torch.float32
    # K products summed in float32: |error| <= K eps sum|x w| (bounded here by the plain path's own
    # error, which the rule allows twice, plus a floor of a few units of the magnitudes).
    assert_as_accurate(got, plain, exact, floor_ulps=4 * K**0.5, what=epilogue)


def test_gelu_and_residual_are_exclusive():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="exclusive"):
        cpu_epilogues.linear(x, w, None, gelu=True, residual=torch.randn(3, 5))


def test_applies_only_where_it_can_run():
    x = torch.randn(2, 3, 8)
    p = torch.nn.Parameter(torch.randn(8, 8))
    with torch.no_grad():
        assert cpu_epilogues.applies("auto", x, p)
        assert not cpu_epilogues.applies("torch", x, p)  # the reference stays the reference
        assert not cpu_epilogues.applies("auto", x.double(), p)  # float32 only
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not cpu_epilogues.applies("auto", x, p)
    assert cpu_epilogues.applies("auto", x, p)  # training too (getkern::cpu_linear's backward)


@pytest.mark.parametrize("epilogue", ["none", "residual", "residual_broadcast", "no_bias", "input_only"])
def test_linear_gradients_match_float64(epilogue):
    """getkern::cpu_linear (the oneDNN linear with gradients): output and every gradient against
    float64, odd sizes, a broadcast residual's gradient summed back to its shape."""
    g = torch.Generator().manual_seed(4)
    K, N = 37, 83
    x = torch.randn(3, 19, K, generator=g)
    w, b = torch.randn(N, K, generator=g) / K**0.5, torch.randn(N, generator=g)
    residual = {"residual": torch.randn(3, 19, N, generator=g), "residual_broadcast": torch.randn(3, 1, N, generator=g)}
    residual = residual.get(epilogue)
    b = None if epilogue == "no_bias" else b
    dy = torch.randn(3, 19, N, generator=g)
    results = {}
    for name, dtype in (("onednn", torch.float32), ("plain", torch.float32), ("f64", torch.float64)):
        ts = [
            None if t is None else t.detach().to(dtype, copy=True).requires_grad_(epilogue != "input_only" or i == 0)
            for i, t in enumerate((x, w, b, residual))
        ]
        if name == "onednn":
            out = cpu_epilogues.linear(*ts[:3], residual=ts[3])
        else:
            out = F.linear(*ts[:3])
            out = out if ts[3] is None else ts[3] + out
        out.backward(dy.to(dtype))
        results[name] = [out.detach()] + [None if t is None else t.grad for t in ts]
    for i, (got, plain, exact) in enumerate(zip(*results.values())):
        assert (got is None) == (exact is None), f"tensor {i}"
        if got is not None:
            assert got.shape == exact.shape, f"tensor {i}"
            assert_as_accurate(got, plain, exact, floor_ulps=4 * 57**0.5, what=f"{epilogue} tensor {i}")


def test_linear_gelu_has_no_backward():
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="gelu has no backward"):
        cpu_epilogues.linear(x, torch.randn(5, 4), None, gelu=True)


@pytest.mark.parametrize("arch", ["GET", "ViT"])
@pytest.mark.parametrize("kind", KINDS)
def test_whole_model_on_the_cpu_inference_path(user_dispatch, monkeypatch, kind, arch):
    calls = []
    linear = cpu_epilogues.linear
    monkeypatch.setattr(cpu_epilogues, "linear", lambda *a, **k: calls.append(1) or linear(*a, **k))
    model = build(kind, arch).eval()
    fast = copy.deepcopy(model).set_backend("auto")
    exact = copy.deepcopy(model).double()
    noise, y, w, z0 = inputs(kind)
    kw = dict(iters=4) if arch == "GET" else {}
    with torch.no_grad():
        assert fast.blocks[0].attn.residual_in_matmul(torch.zeros(1, 16, 64))
        got = run(fast, kind, noise, y, w, z0, **kw)
        assert torch.equal(got, run(fast, kind, noise, y, w, z0, **kw))  # deterministic on one machine
        plain = run(model, kind, noise, y, w, z0, **kw)
        ref = run(exact, kind, noise, y, w, z0, **kw)
    assert_as_accurate(got, plain, ref, what=f"{arch} {kind}")
    blocks = len(model.blocks) + (4 * len(model.deq_blocks) if arch == "GET" else 0)
    assert len(calls) == 2 * 4 * blocks  # 4 oneDNN calls a block application, in both runs of `fast`


@pytest.mark.parametrize("grad", ["unrolled", "phantom"])
@pytest.mark.parametrize("arch", ["GET", "ViT"])
def test_whole_model_training_on_the_cpu_path(user_dispatch, monkeypatch, arch, grad):
    """A training step's loss and every parameter's gradient with "auto" (every linear a oneDNN call with
    getkern::cpu_linear's backward) against the torch backend and float64."""
    if arch == "ViT" and grad == "phantom":
        pytest.skip("a ViT has no solver")
    calls = []
    op = torch.ops.getkern.cpu_linear
    monkeypatch.setattr(torch.ops.getkern, "cpu_linear", lambda *a: calls.append(1) or op(*a), raising=False)
    model = build("cond", arch).train()
    fast, exact = copy.deepcopy(model).set_backend("auto"), copy.deepcopy(model).double()
    noise, y, w, z0 = inputs("cond")
    target = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    losses, grads = [], []
    for m in (fast, model, exact):
        dtype = next(m.parameters()).dtype
        if arch == "GET":
            outs = run(m, "cond", noise, y, w, z0, iters=3, return_iterates=True, grad=grad)
        else:
            outs = [run(m, "cond", noise, y, w, z0)]
        loss = sum(((o - target.to(dtype)) ** 2).mean() for o in outs)
        loss.backward()
        losses.append(loss.detach().reshape(1))
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    assert calls, "auto did not take the oneDNN linears in training"
    assert_as_accurate(*losses, what="loss")
    for name in grads[2]:
        assert grads[0][name] is not None, f"{name}: no gradient on the CPU path"
        assert_as_accurate(grads[0][name], grads[1][name], grads[2][name], floor_ulps=64, what=f"d{name}")


def test_the_torch_backend_keeps_the_plain_linears(user_dispatch, monkeypatch):
    """backend="torch" in training: the plain sequence, bitwise (the reference stays the reference)."""
    monkeypatch.setattr(torch.ops.getkern, "cpu_linear", None, raising=False)  # would raise if called
    model = build("cond").train()
    noise, y, _, z0 = inputs("cond")
    states = model(noise, y, z0=z0, iters=2, return_iterates=True, grad="unrolled")
    states[-1].square().mean().backward()
    assert model.deq_blocks[0].mlp.fc1.weight.grad is not None

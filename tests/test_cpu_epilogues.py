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

from getkern.ops import cpu_epilogues, cpu_gelu

pytestmark = pytest.mark.skipif(not cpu_epilogues._AVAILABLE, reason="torch built without oneDNN")


@pytest.fixture
def user_dispatch(monkeypatch):
    """backend="auto" as a user's CPU process resolves it: no Triton interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def _linear_f64(x, w, b, gelu, residual):
    out = F.linear(x.double(), w.double(), None if b is None else b.double())
    out = F.gelu(out) if gelu else out
    return out if residual is None else out + residual.double()


@pytest.fixture(params=["post_op", "in_place"])
def gelu_path(request, monkeypatch):
    """Both ways fc1's GELU can run (getkern.ops.cpu_epilogues.gelu_post_op_faster decides per CPU)."""
    if request.param == "in_place" and not cpu_gelu.faster_here():
        pytest.skip("getkern's CPU operators are not built here")
    monkeypatch.setattr(cpu_epilogues, "gelu_post_op_faster", lambda: request.param == "post_op")
    return request.param


@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual", "residual_broadcast", "no_bias"])
def test_linear_matches_float64(epilogue, gelu_path):
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


@pytest.mark.parametrize("residual", ["full", "broadcast", "none"])
def test_mlp_in_row_blocks_matches_float64(monkeypatch, gelu_path, residual):
    """The MLP with its hidden activations in blocks of rows (as GET-T/2's are at batch 16): 74 rows of
    H = 75 floats, 22200 bytes, in blocks of at most 2400: 10 blocks of 8 rows, the last one of 2."""
    monkeypatch.setattr(cpu_epilogues, "BLOCKED_ABOVE_BYTES", 4096)
    monkeypatch.setattr(cpu_epilogues, "HIDDEN_BLOCK_BYTES", 2400)
    calls = []
    onednn = cpu_epilogues.onednn_linear
    monkeypatch.setattr(cpu_epilogues, "onednn_linear", lambda *a, **k: calls.append(a[0].shape[0]) or onednn(*a, **k))
    g = torch.Generator().manual_seed(3)
    D, H = 29, 75
    h = torch.randn(2, 37, D, generator=g)
    w1, b1 = torch.randn(H, D, generator=g) / D**0.5, torch.randn(H, generator=g)
    w2, b2 = torch.randn(D, H, generator=g) / H**0.5, torch.randn(D, generator=g)
    r = {"full": torch.randn(2, 37, D, generator=g), "broadcast": torch.randn(2, 1, D, generator=g)}.get(residual)
    got = cpu_epilogues.mlp(h, w1, b1, w2, b2, r)
    assert (
        calls[-2:] == [2, 2] and len(calls) == 2 * 10 and sum(calls) == 2 * 74
    )  # fc1 and fc2 per block; every row once

    def reference(*t):
        h, w1, b1, w2, b2 = t[:5]
        out = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)
        return out if r is None else out + t[5]

    tensors = (h, w1, b1, w2, b2) + (() if r is None else (r,))
    assert got.shape == (2, 37, D) and got.is_contiguous()
    assert_as_accurate(got, reference(*tensors), reference(*(t.double() for t in tensors)), what=residual)


def test_gelu_probe_decides_once():
    cpu_epilogues.gelu_post_op_faster.cache_clear()
    first = cpu_epilogues.gelu_post_op_faster()
    assert isinstance(first, bool) and cpu_epilogues.gelu_post_op_faster() is first
    assert cpu_epilogues.gelu_post_op_faster.cache_info().misses == 1


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
    assert not cpu_epilogues.applies("auto", x, p)  # a gradient is needed: no backward here
    assert cpu_epilogues.applies("auto", x, p.detach())  # grad mode on, nothing requires it


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
    injection = len(model.deq_blocks) if arch == "GET" else 0  # qkv_inj: one oneDNN call per DEQ block
    assert len(calls) == 2 * (4 * blocks + injection)  # 4 a block application, in both runs of `fast`


def test_whole_get_with_its_mlps_in_row_blocks(user_dispatch, monkeypatch):
    """A whole GET as users call it, with every MLP's hidden activations in row blocks (as GET-T/2's and
    the digits GET's are at their batch sizes): as accurate as the torch backend against float64."""
    monkeypatch.setattr(cpu_epilogues, "BLOCKED_ABOVE_BYTES", 1024)
    monkeypatch.setattr(cpu_epilogues, "HIDDEN_BLOCK_BYTES", 4096)
    rows = []
    onednn = cpu_epilogues.onednn_linear
    monkeypatch.setattr(cpu_epilogues, "onednn_linear", lambda *a, **k: rows.append(a[0].shape[0]) or onednn(*a, **k))
    model = build("cond").eval()
    fast = copy.deepcopy(model).set_backend("auto")
    noise, y, w, z0 = inputs("cond")
    with torch.no_grad():
        got = run(fast, "cond", noise, y, w, z0, iters=3)
        assert min(rows) < noise.shape[0] * 16  # some matmuls ran on fewer rows than the batch's tokens
        ref = run(copy.deepcopy(model).double(), "cond", noise, y, w, z0, iters=3)
        assert_as_accurate(got, run(model, "cond", noise, y, w, z0, iters=3), ref, what="blocked MLPs")


def test_training_keeps_the_plain_path(user_dispatch, monkeypatch):
    """Unrolled training iterates need gradients: the plain linears, bitwise the torch backend's once
    the CPU operators and the oneDNN training linear (tests/test_cpu_attention.py, test_cpu_gelu.py and
    test_cpu_linear.py cover training with them) are off."""
    monkeypatch.setattr("getkern.ops.cpu_library._ready", False)
    monkeypatch.setattr("getkern.ops.cpu_linear.faster_here", lambda: False)
    model = build("cond").train()
    fast = copy.deepcopy(model).set_backend("auto")
    noise, y, _, z0 = inputs("cond")
    assert not fast.blocks[0].attn.residual_in_matmul(noise)
    kw = dict(z0=z0, iters=2, return_iterates=True, grad="unrolled")
    states = fast(noise, y, **kw)
    assert all(torch.equal(a, b) for a, b in zip(states, model(noise, y, **kw)))
    states[-1].square().mean().backward()
    assert fast.deq_blocks[0].mlp.fc1.weight.grad is not None

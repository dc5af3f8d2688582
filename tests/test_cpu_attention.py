"""The CPU short-sequence attention (getkern/csrc/cpu_ops/attention.cpp, getkern.ops.cpu_attention):
forward and backward against float64 on odd shapes, every output element written, the custom op's
schemas (opcheck), clear errors, when "auto" takes it, and whole GET inference and training on
the user's CPU dispatch against float64.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_to_f64
from test_models_fused import assert_as_accurate, build, inputs, run

from getkern.ops import cpu_attention, cpu_library
from getkern.ops.attention import attention_reference, fused_attention

pytestmark = pytest.mark.skipif(not cpu_library.available(), reason="the CPU operators cannot be built here")

# (B, N, heads, head_dim): the demo GET (16 tokens, 16 wide), head dims of 1, 2, 4 and 8 vectors on
# some vector width (8, 16, 32, 64, 128), generic ones (24, 40), more queries than one vector's lanes
# (9, 13, 17, 33, 64), the probed long sequences (GET-T/2's 256 tokens; 131, not a multiple of the
# keys a score block takes), one token.
SHAPES = [
    (5, 16, 4, 16),
    (3, 16, 2, 32),
    (2, 64, 2, 64),
    (3, 13, 5, 8),
    (2, 17, 3, 24),
    (2, 33, 1, 40),
    (2, 9, 1, 128),
    (2, 256, 2, 64),
    (1, 131, 1, 40),
    (4, 1, 2, 16),
]


@pytest.fixture(params=cpu_library.instruction_sets() if cpu_library.available() else ["none"])
def isa(request):
    """Each of the kernel's copies this CPU can run (AVX-512, AVX2, baseline), in turn."""
    before = cpu_library.use_instruction_set(request.param)
    yield request.param
    cpu_library.use_instruction_set(before)


def _qkv(B, N, H, dh, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, 3 * H * dh, generator=g) * scale


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_float64(shape, isa):
    B, N, H, dh = shape
    qkv = _qkv(*shape, scale=2.0)  # scores of a few units: softmax neither flat nor one-hot
    dout = torch.randn(B, N, H * dh, generator=torch.Generator().manual_seed(1))
    grads = {}
    for name, x, fn in (
        ("kernel", qkv.clone(), lambda x: cpu_attention.cpu_attention(x, H)),
        ("torch", qkv.clone(), lambda x: attention_reference(x, H)),
        ("f64", qkv.double(), lambda x: attention_reference(x, H)),
    ):
        x.requires_grad_(True)
        out = fn(x)
        out.backward(dout.to(x.dtype))
        grads[name] = (out.detach(), x.grad)
    for i, what in enumerate(("out", "dqkv")):
        assert_close_to_f64(f"{shape} {what}", grads["kernel"][i], grads["f64"][i], grads["torch"][i], factor=2)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_inference_forward_without_autograd(shape, isa):
    """Without a gradient the op runs with no autograd node and no log-sum-exp: the same output as the
    training forward, bitwise (one kernel, one summation order), and within float rounding of float64."""
    B, N, H, dh = shape
    qkv = _qkv(*shape, scale=2.0)
    with torch.no_grad():
        got = cpu_attention.cpu_attention(qkv, H)
    assert got.grad_fn is None and not got.requires_grad
    trained = cpu_attention.cpu_attention(qkv.clone().requires_grad_(True), H)
    assert trained.grad_fn is not None and torch.equal(got, trained.detach())
    assert_close_to_f64(f"{shape} out", got, attention_reference(qkv.double(), H), attention_reference(qkv, H), 2)


def test_every_output_element_is_written(isa):
    B, N, H, dh = 3, 21, 2, 16
    qkv, dout = _qkv(B, N, H, dh), torch.randn(B, N, H * dh)
    nan = float("nan")
    out, lse = torch.full((B, N, H * dh), nan), torch.full((B, H, N), nan)
    torch.ops.getkern_cpu.attention_forward(qkv, H, dh**-0.5, out, lse)
    dqkv = torch.full_like(qkv, nan)
    torch.ops.getkern_cpu.attention_backward(qkv, out, lse, dout, H, dh**-0.5, dqkv)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all() and torch.isfinite(dqkv).all()
    q, k, _ = qkv.reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4).double()
    lse64 = torch.logsumexp(q @ k.transpose(-1, -2) * dh**-0.5, dim=-1)
    torch.testing.assert_close(lse.double(), lse64, rtol=0, atol=8 * torch.finfo(torch.float32).eps * 8)


def test_far_below_the_maximum_is_zero_and_stays_fast(isa):
    """Scores 100s of units apart: exp underflows to exactly 0 (never a denormal), the row's largest
    term dominates, as in float64."""
    B, N, H, dh = 2, 16, 1, 16
    qkv = _qkv(B, N, H, dh, scale=30.0)
    out = cpu_attention.cpu_attention(qkv, H)
    # Scores of 100s of units carry most of the error. The baseline copy (SSE2) has no FMA: each product
    # rounds once more than in SDPA's fused multiply-adds, which doubles the scores' error bound.
    factor = 4 if isa == "baseline" else 2
    assert_close_to_f64("peaked", out, attention_reference(qkv.double(), H), attention_reference(qkv, H), factor)


def test_schemas_declare_what_the_ops_write():
    qkv = _qkv(2, 16, 2, 16)
    out, lse = torch.empty(2, 16, 32), torch.empty(2, 2, 16)
    torch.library.opcheck(
        torch.ops.getkern_cpu.attention_forward.default, (qkv, 2, 0.25, out, lse), test_utils="test_schema"
    )
    dqkv = torch.empty_like(qkv)
    args = (qkv, out, lse, torch.randn_like(out), 2, 0.25, dqkv)
    torch.library.opcheck(torch.ops.getkern_cpu.attention_backward.default, args, test_utils="test_schema")


def test_clear_errors():
    with pytest.raises(ValueError, match="3 \\* heads \\* head_dim"):
        cpu_attention.cpu_attention(torch.randn(2, 16, 50), 4)
    with pytest.raises(RuntimeError, match="float32"):
        cpu_attention.cpu_attention(torch.randn(2, 16, 48, dtype=torch.float64), 1)
    out = torch.empty(2, 16, 8)  # wrong width
    with pytest.raises(RuntimeError, match="out must be"):
        torch.ops.getkern_cpu.attention_forward(torch.randn(2, 16, 48), 2, 0.25, out, None)


def test_instruction_sets():
    sets = cpu_library.instruction_sets()
    assert sets[0] == "baseline" and list(sets) == list(cpu_library.INSTRUCTION_SETS[: len(sets)])
    assert torch.ops.getkern_cpu.isa() == sets[-1]  # the widest runs unless a test picks another
    with pytest.raises(ValueError, match="name must be one of"):
        cpu_library.use_instruction_set("avx1024")
    with pytest.raises(RuntimeError, match="unknown instruction set"):
        torch.ops.getkern_cpu.set_isa("avx1024")
    if len(sets) < len(cpu_library.INSTRUCTION_SETS):
        with pytest.raises(RuntimeError, match="this CPU cannot run"):
            torch.ops.getkern_cpu.set_isa(cpu_library.INSTRUCTION_SETS[len(sets)])


def test_applies_only_where_it_can_run():
    qkv = torch.randn(2, 16, 48)
    if cpu_library.isa() not in cpu_attention.FASTER_THAN_SDPA:
        assert not cpu_attention.applies(qkv)  # measured no faster than SDPA there
        return
    assert cpu_attention.applies(qkv)
    assert cpu_attention.applies(qkv, torch.randn(2, 1, 48), None)
    assert not cpu_attention.applies(qkv.double())
    assert not cpu_attention.applies(qkv, torch.randn(2, 1, 48, dtype=torch.float64))
    assert not cpu_attention.applies(torch.randn(1, cpu_attention.MAX_PROBED_TOKENS + 1, 48))
    assert not cpu_attention.applies(torch.randn(0, 16, 48))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not cpu_attention.applies(qkv)


def test_long_sequences_follow_the_probe(monkeypatch):
    if cpu_library.isa() not in cpu_attention.FASTER_THAN_SDPA:
        pytest.skip("the kernel is not taken on this CPU at any length")
    longest, too_long = (
        torch.randn(1, n, 48) for n in (cpu_attention.MAX_PROBED_TOKENS, cpu_attention.MAX_PROBED_TOKENS + 1)
    )
    assert isinstance(cpu_attention.faster_at_long_sequences(), bool)  # the real probe runs
    monkeypatch.setattr(cpu_attention, "faster_at_long_sequences", lambda: False)
    assert cpu_attention.applies(torch.randn(1, cpu_attention.MAX_TOKENS, 48))  # short ones need no probe
    assert not cpu_attention.applies(torch.randn(1, cpu_attention.MAX_TOKENS + 1, 48))
    assert not cpu_attention.applies(longest)
    monkeypatch.setattr(cpu_attention, "faster_at_long_sequences", lambda: True)
    assert cpu_attention.applies(longest)
    assert not cpu_attention.applies(too_long)


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("GETKERN_CPU_OPS", "0")
    monkeypatch.setattr(cpu_library, "_ready", None)
    assert not cpu_library.available()
    assert not cpu_attention.applies(torch.randn(2, 16, 48))
    monkeypatch.setattr(cpu_library, "_ready", None)  # the next test finds it again


def test_a_failed_build_warns_once_and_pytorch_runs(monkeypatch):
    from getkern import _extension

    def fail(**_):
        raise _extension.ExtensionError("no C++ compiler (test)")

    monkeypatch.setattr(_extension, "build_cpu_ops", fail)
    monkeypatch.setattr(cpu_library, "_ready", None)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert not cpu_library.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second build
        assert not cpu_attention.applies(torch.randn(2, 16, 48))
    with pytest.raises(_extension.ExtensionError, match="could not be built"):
        cpu_attention.cpu_attention(torch.randn(2, 16, 48), 1)
    monkeypatch.setattr(cpu_library, "_ready", None)


@pytest.fixture
def user_dispatch(monkeypatch):
    """backend="auto" as a user's CPU process resolves it: no Triton interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def test_fused_attention_auto_takes_it_with_c_and_u(user_dispatch, monkeypatch):
    calls = []
    kernel = cpu_attention.cpu_attention
    monkeypatch.setattr(cpu_attention, "cpu_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    B, N, H, dh = 3, 16, 2, 16
    qkv, c, u = _qkv(B, N, H, dh), torch.randn(B, 1, 3 * H * dh), torch.randn(B, N, 3 * H * dh)
    got = fused_attention(qkv, H, c=c, u=u)
    assert calls == [1]
    ref = attention_reference(qkv.double(), H, c.double(), u.double())
    assert_close_to_f64("auto", got, ref, attention_reference(qkv, H, c, u), factor=2)
    fused_attention(qkv, H, c=c, u=u, backend="torch")
    assert calls == [1]  # the reference stays the reference


def test_whole_get_inference_and_training_on_the_user_dispatch(user_dispatch, monkeypatch):
    """The digits-sized GET's forward (no grad: the oneDNN path) and an unrolled training step's loss
    and gradients with "auto" (this kernel in every block) against float64 and the torch backend."""
    calls = []
    kernel = cpu_attention.cpu_attention
    monkeypatch.setattr(cpu_attention, "cpu_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    model = build("cond").train()
    fast, exact = copy.deepcopy(model).set_backend("auto"), copy.deepcopy(model).double()
    noise, y, w, z0 = inputs("cond")
    with torch.no_grad():
        got = run(fast.eval(), "cond", noise, y, w, z0, iters=3)
        assert_as_accurate(
            got,
            run(model.eval(), "cond", noise, y, w, z0, iters=3),
            run(exact.eval(), "cond", noise, y, w, z0, iters=3),
            what="inference",
        )
    blocks = len(model.blocks) + 3 * len(model.deq_blocks)
    assert len(calls) == blocks
    losses, params = {}, {}
    for name, m in (("auto", fast), ("torch", model), ("f64", exact)):
        m.train().zero_grad()
        kw = dict(z0=z0.to(next(m.parameters()).dtype), iters=2, return_iterates=True, grad="unrolled")
        states = m(noise.to(kw["z0"].dtype), y, **kw)
        loss = sum(F.l1_loss(s, torch.zeros_like(s)) for s in states)
        loss.backward()
        losses[name] = loss.detach()
        params[name] = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    assert len(calls) == blocks + len(model.blocks) + 2 * len(model.deq_blocks)  # training took it too
    assert_close_to_f64("loss", losses["auto"], losses["f64"], losses["torch"], factor=2)
    assert_close_to_f64("grads", params["auto"], params["f64"], params["torch"], factor=2)


def test_whole_get_at_a_probed_length_on_the_user_dispatch(user_dispatch, monkeypatch):
    """A GET of 144 tokens (24x24, patch 2: past MAX_TOKENS) where the probe found the kernel faster:
    every block's attention takes it, and the samples are as accurate as the torch backend's."""
    from getkern import GET

    calls = []
    kernel = cpu_attention.cpu_attention
    monkeypatch.setattr(cpu_attention, "cpu_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    monkeypatch.setattr(cpu_attention, "faster_at_long_sequences", lambda: True)
    torch.manual_seed(0)
    model = GET(
        input_size=24,
        patch_size=2,
        in_channels=1,
        hidden_size=64,
        num_heads=2,
        depth=1,
        deq_depth=2,
        mlp_ratio=2,
        deq_mlp_ratio=2,
        backend="torch",
        solver_backend="torch",
    ).eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.05)
    g = torch.Generator().manual_seed(1)
    noise, z0 = torch.randn(2, 1, 24, 24, generator=g), torch.randn(2, 144, 64, generator=g)
    fast, exact = copy.deepcopy(model).set_backend("auto"), copy.deepcopy(model).double()
    with torch.no_grad():
        got = fast(noise, z0=z0, iters=3, tol=None)
        assert len(calls) == 1 + 3 * 2
        assert_as_accurate(
            got,
            model(noise, z0=z0, iters=3, tol=None),
            exact(noise.double(), z0=z0.double(), iters=3, tol=None),
            what="144 tokens",
        )

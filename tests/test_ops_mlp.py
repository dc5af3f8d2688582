"""Triton MLP (fc1 + bias + erf GELU; fc2 + bias + residual) vs a float64 reference.

Tolerance (docs/layernorm_mlp.md): the kernel's max error vs float64 must be at most FACTOR times
the error of PyTorch's own same-dtype path vs float64, plus one ulp of the output's magnitude.
"""

import importlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import ZeroFills, assert_close_to_f64

from getkern._backend import BackendUnavailable
from getkern.nn import MLP
from getkern.ops.mlp import mlp

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FWD_FACTOR, BWD_FACTOR = 2.0, 3.0
NAMES = ("h", "w1", "b1", "w2", "b2", "residual")


def make_inputs(lead, D, H, dtype, residual=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    tensors = (
        rand(*lead, D),
        rand(H, D) / D**0.5,
        0.5 * rand(H),
        rand(D, H) / H**0.5,
        0.5 * rand(D),
        rand(*lead, D) if residual else None,
    )
    return tuple(t.to(dtype) if t is not None else None for t in tensors)


def run(tensors, backend, grad=None):
    leaves = [t.detach().clone().requires_grad_(grad is not None) if t is not None else None for t in tensors]
    out = mlp(*leaves[:5], residual=leaves[5], backend=backend)
    if grad is None:
        return out, ()
    out.backward(grad.to(out.dtype))
    return out, tuple(t.grad if t is not None else None for t in leaves)


def f64(tensors):
    return tuple(t.double() if t is not None else None for t in tensors)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "lead, D, H, residual",
    [
        ((2, 9), 40, 72, True),  # ragged tiles in M, N and K
        ((5,), 200, 2 * 200, False),
    ],
)
def test_forward_matches_float64(poisoned, dtype, lead, D, H, residual):
    tensors = make_inputs(lead, D, H, dtype, residual)
    with torch.no_grad():
        out, _ = run(tensors, "triton")
        same, _ = run(tensors, "torch")
        ref, _ = run(f64(tensors), "torch")
    assert out.dtype == dtype and out.shape == tensors[0].shape
    assert_close_to_f64("out", out, ref, same, FWD_FACTOR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", [False, True])
def test_backward_matches_float64(poisoned, dtype, residual):
    tensors = make_inputs((3, 7), 40, 72, dtype, residual, seed=1)
    grad = torch.randn(3, 7, 40, generator=torch.Generator().manual_seed(2))
    out, got = run(tensors, "triton", grad)
    same_out, same = run(tensors, "torch", grad)
    ref_out, ref = run(f64(tensors), "torch", grad.double())
    assert_close_to_f64("out", out, ref_out, same_out, FWD_FACTOR)
    for name, gt, sm, rf in zip(NAMES, got, same, ref):
        if rf is not None:
            assert_close_to_f64(f"d{name}", gt, rf, sm, BWD_FACTOR)


def test_inference_does_not_keep_the_pre_activation(monkeypatch):
    """Without autograd the (M, H) pre-activation is never written: the inference op is used."""
    ops_mlp = importlib.import_module("getkern.ops.mlp")  # the package re-exports a function `mlp`
    calls = []
    original = ops_mlp._forward
    monkeypatch.setattr(
        ops_mlp, "_forward", lambda *a, keep_pre: calls.append(keep_pre) or original(*a, keep_pre=keep_pre)
    )
    tensors = make_inputs((3,), 16, 32, torch.float32)
    with torch.no_grad():
        mlp(*tensors[:5], residual=tensors[5], backend="triton")
    assert calls == [False]


def test_backward_writes_no_zero_gradients_for_the_saved_activations():
    """act and pre are outputs without gradients: no (M, H) zero tensors for them in the backward."""
    tensors = make_inputs((2, 9), 40, 72, torch.float32)
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = mlp(*leaves[:5], residual=leaves[5], backend="triton")
    with ZeroFills() as fills:
        out.backward(torch.randn_like(out))
    assert fills.count == 0
    assert all(t.grad is not None for t in leaves)


def test_opcheck():
    tensors = make_inputs((3,), 16, 32, torch.float32)
    torch.library.opcheck(torch.ops.getkern.mlp.default, tensors)
    torch.library.opcheck(torch.ops.getkern.mlp_train.default, tensors)
    h, w1, _, w2, _, _ = tensors
    _, act, pre = torch.ops.getkern.mlp_train(*tensors)
    torch.library.opcheck(torch.ops.getkern.mlp_backward.default, (torch.randn_like(h), h, w1, w2, act, pre))


def test_compile_fullgraph_no_graph_break():
    module = MLP(16, 32, backend="triton")
    h, *_, r = make_inputs((2, 3), 16, 32, torch.float32)
    compiled = torch.compile(lambda x, res: module(x, residual=res).square().sum(), fullgraph=True, backend="aot_eager")
    loss = compiled(h, r)
    loss.backward()
    grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    module(h, residual=r).square().sum().backward()
    for got, want in zip(grads, [p.grad for p in module.parameters()]):
        torch.testing.assert_close(got, want)


def test_module_loads_reference_state_dict_and_matches():
    ref = nn.Sequential()
    ref.fc1, ref.act, ref.fc2 = nn.Linear(24, 48), nn.GELU(), nn.Linear(48, 24)
    module = MLP(24, 48, backend="triton")
    module.load_state_dict({k: v for k, v in ref.state_dict().items()})
    h = torch.randn(5, 24)
    torch.testing.assert_close(module(h), ref.fc2(F.gelu(ref.fc1(h))), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("w1_shape", ValueError, "w1 must have shape"),
        ("w2_shape", ValueError, "w2 must have shape"),
        ("residual_shape", ValueError, "residual must have shape"),
        ("int_dtype", TypeError, "h has dtype"),
        ("mixed_dtype", TypeError, "b2 has dtype"),
        ("device", ValueError, "residual is on"),
    ],
)
def test_bad_inputs_raise_clear_errors(case, error, match):
    h, w1, b1, w2, b2, r = make_inputs((4,), 8, 16, torch.float32)
    if case == "w1_shape":
        w1 = w1[:, :7]
    elif case == "w2_shape":
        w2 = w2[:7]
    elif case == "residual_shape":
        r = r[:3]
    elif case == "int_dtype":
        h = h.to(torch.int32)
    elif case == "mixed_dtype":
        b2 = b2.double()
    elif case == "device":
        r = r.to("meta")
    with pytest.raises(error, match=match):
        mlp(h, w1, b1, w2, b2, residual=r, backend="triton")


def test_strided_inputs_match_contiguous(poisoned):
    """Transposed views of h, w1 and the residual give the result of their dense copies."""
    h, w1, b1, w2, b2, r = make_inputs((5,), 8, 16, torch.float32)
    views = [t.t().contiguous().t() for t in (h, w1, r)]  # same values, transposed strides
    assert not any(v.is_contiguous() for v in views)
    want = mlp(h, w1, b1, w2, b2, residual=r, backend="triton")
    assert torch.equal(mlp(views[0], views[1], b1, w2, b2, residual=views[2], backend="triton"), want)


def test_triton_on_cpu_without_interpreter_is_unavailable(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    tensors = make_inputs((2,), 8, 16, torch.float32)
    with pytest.raises(BackendUnavailable, match="mlp"):
        mlp(*tensors[:5], residual=tensors[5], backend="triton")
    ref = tensors[5] + F.linear(F.gelu(F.linear(tensors[0], *tensors[1:3])), *tensors[3:5])
    torch.testing.assert_close(mlp(*tensors[:5], residual=tensors[5], backend="auto"), ref)


def test_autocast_with_fp32_parameters_matches_torch():
    """Under autocast (the trainer's amp) the MLP runs in bf16; an fp32 residual stream stays fp32."""
    h, w1, b1, w2, b2, r = make_inputs((3,), 16, 32, torch.float32)
    w1.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(h, w1, b1, w2, b2, residual=r, backend="triton")
        ref = mlp(h, w1, b1, w2, b2, residual=r, backend="torch")
    assert out.dtype == ref.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    out.sum().backward()
    assert w1.grad is not None and w1.grad.dtype == torch.float32


def test_block_ln_mlp_path_is_four_kernel_launches(monkeypatch):
    """The traffic table's launch count: LN1, add+LN2, fc1+GELU, fc2+residual and nothing else."""
    from getkern.ops.layernorm import layer_norm
    from getkern.profiling.traffic import count_torch_traffic

    launched = []
    for module, kernel in (("getkern.ops.layernorm", "_ln_fwd_kernel"), ("getkern.ops.matmul", "_linear_kernel")):
        jit = getattr(importlib.import_module(module), kernel)
        monkeypatch.setattr(jit, "run", lambda *a, _run=jit.run, _k=kernel, **kw: launched.append(_k) or _run(*a, **kw))
    x, a = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    ln_w, ln_b = torch.ones(16), torch.zeros(16)
    _, w1, b1, w2, b2, _ = make_inputs((2, 3), 16, 32, torch.float32)

    def step():
        h1 = layer_norm(x, ln_w, ln_b, backend="triton")
        s, h = layer_norm(a, ln_w, ln_b, residual=x, backend="triton")
        return h1, mlp(h, w1, b1, w2, b2, residual=s, backend="triton")

    with torch.no_grad():
        _, traffic = count_torch_traffic(step)
    assert launched == ["_ln_fwd_kernel"] * 2 + ["_linear_kernel"] * 2
    assert dict(traffic.ops) == {"layer_norm": 1, "add_layer_norm": 1, "mlp": 1}  # no torch compute


def test_get_block_with_fused_norms_and_mlp_matches_torch():
    """Drop-in check in the real block: LN1, add+LN2 and the MLP on Triton, attention on torch."""
    import copy

    from getkern.models.layers import Block
    from getkern.nn import FusedBlock

    torch.manual_seed(0)
    ref = Block(24, num_heads=2, mlp_ratio=2.0, backend="torch")
    with torch.no_grad():
        for ln in (ref.norm1, ref.norm2):
            ln.weight.normal_()
            ln.bias.normal_()
    fused = FusedBlock(copy.deepcopy(ref))
    for module in (fused.norm1, fused.norm2, fused.mlp):
        module.backend = "triton"
    x = torch.randn(2, 5, 24)
    out_ref, out = ref(x), fused(x)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_aligned_path_matches_float64(poisoned, monkeypatch, dtype):
    """Widths that are multiples of 16 and of BLOCK_K take the kernel's ALIGNED path (no K mask,
    vectorisation hints): every launch, forward and backward, must take it and stay exact."""
    ops_matmul = importlib.import_module("getkern.ops.matmul")
    taken = []
    original = ops_matmul._aligned
    monkeypatch.setattr(ops_matmul, "_aligned", lambda *a: taken.append(original(*a)) or taken[-1])
    tensors = make_inputs((3, 7), 64, 128, dtype, seed=3)
    grad = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(4))
    out, got = run(tensors, "triton", grad)
    same_out, same = run(tensors, "torch", grad)
    ref_out, ref = run(f64(tensors), "torch", grad.double())
    assert taken == [True, True, True]  # fc1 (keeping pre), fc2 + residual, backward dpre
    assert_close_to_f64("out", out, ref_out, same_out, FWD_FACTOR)
    for name, gt, sm, rf in zip(NAMES, got, same, ref):
        assert_close_to_f64(f"d{name}", gt, rf, sm, BWD_FACTOR)

"""Triton LayerNorm (+ fused residual add) vs a float64 reference, forward and backward.

Tolerance (docs/layernorm_mlp.md): the kernel's max error vs float64 must be at most FACTOR times
the error of PyTorch's own same-dtype path vs float64, plus one ulp of the output's magnitude.
"""

import pytest
import torch
import torch.nn as nn
from helpers import assert_close_to_f64

from getkern._backend import BackendUnavailable
from getkern.nn import LayerNorm
from getkern.ops.layernorm import layer_norm

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FWD_FACTOR, BWD_FACTOR = 2.0, 3.0


def make_inputs(shape, dtype, residual, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = shape[-1]
    x = (torch.randn(shape, generator=g) * 2 + 0.5).to(dtype)  # a non-zero mean, as in the block
    w = (1 + 0.5 * torch.randn(D, generator=g)).to(dtype)
    b = (0.5 * torch.randn(D, generator=g)).to(dtype)
    r = torch.randn(shape, generator=g).to(dtype) if residual else None
    return x, w, b, r


def run(x, w, b, r, backend, grads=None):
    """Forward (and backward with ``grads``) -> (outputs, input grads)."""
    leaves = [t.detach().clone().requires_grad_(grads is not None) if t is not None else None for t in (x, w, b, r)]
    out = layer_norm(leaves[0], leaves[1], leaves[2], 1e-6, residual=leaves[3], backend=backend)
    outs = out if isinstance(out, tuple) else (out,)
    if grads is None:
        return outs, ()
    torch.autograd.backward(outs, [g.to(o.dtype) for o, g in zip(outs, grads)])
    return outs, tuple(t.grad for t in leaves if t is not None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 200), (7, 384), (768,)])
@pytest.mark.parametrize("residual", [False, True])
def test_forward_matches_float64(poisoned, dtype, shape, residual):
    x, w, b, r = make_inputs(shape, dtype, residual)
    with torch.no_grad():
        outs, _ = run(x, w, b, r, "triton")
        same, _ = run(x, w, b, r, "torch")
        ref, _ = run(*(t.double() if t is not None else None for t in (x, w, b, r)), "torch")
    assert len(outs) == (2 if residual else 1)
    for name, o, s, r64 in zip(("s", "y") if residual else ("y",), outs, same, ref):
        assert o.dtype == dtype and o.shape == x.shape
        assert_close_to_f64(name, o, r64, s, FWD_FACTOR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("residual", [False, True])
def test_backward_matches_float64(poisoned, dtype, residual):
    # 13 rows: several row blocks per backward program, and a ragged last block.
    x, w, b, r = make_inputs((13, 200), dtype, residual, seed=1)
    g = torch.Generator().manual_seed(2)
    grads = [torch.randn(x.shape, generator=g) for _ in range(2 if residual else 1)]
    _, got = run(x, w, b, r, "triton", grads)
    _, same = run(x, w, b, r, "torch", grads)
    _, ref = run(*(t.double() if t is not None else None for t in (x, w, b, r)), "torch", [gr.double() for gr in grads])
    names = ("dx", "dweight", "dbias", "dresidual")
    for name, gt, sm, rf in zip(names, got, same, ref):
        assert_close_to_f64(name, gt, rf, sm, BWD_FACTOR)


def test_only_sum_output_used_backward():
    x, w, b, r = make_inputs((4, 40), torch.float32, True)
    x.requires_grad_()
    s, _ = layer_norm(x, w, b, residual=r, backend="triton")
    s.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_opcheck():
    x, w, b, r = make_inputs((3, 24), torch.float32, True)
    torch.library.opcheck(torch.ops.getkern.layer_norm.default, (x, w, b, 1e-6))
    torch.library.opcheck(torch.ops.getkern.add_layer_norm.default, (x, r, w, b, 1e-6))
    s, _, mean, rstd = torch.ops.getkern.add_layer_norm(x, r, w, b, 1e-6)
    dy = torch.randn_like(x)
    torch.library.opcheck(torch.ops.getkern.layer_norm_backward.default, (dy, dy, s, w, mean, rstd))


def test_compile_fullgraph_no_graph_break():
    x, w, b, r = make_inputs((2, 3, 40), torch.float32, True)
    ln = LayerNorm(40, backend="triton")

    def block_step(a, res):
        s, h = ln(a, residual=res)
        return (s * ln(h)).sum()

    compiled = torch.compile(block_step, fullgraph=True, backend="aot_eager")
    a = x.clone().requires_grad_()
    loss = compiled(a, r)
    loss.backward()
    a_ref = x.clone().requires_grad_()
    loss_ref = block_step(a_ref, r)
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(a.grad, a_ref.grad)


def test_module_loads_torch_state_dict_and_matches():
    ref = nn.LayerNorm(200, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ln = LayerNorm(200, backend="triton")
    ln.load_state_dict(ref.state_dict())
    x = torch.randn(5, 200)
    torch.testing.assert_close(ln(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("weight_shape", ValueError, "weight must have shape"),
        ("residual_shape", ValueError, "residual has shape"),
        ("int_dtype", TypeError, "x has dtype"),
        ("mixed_dtype", TypeError, "bias has dtype"),
        ("device", ValueError, "residual is on"),
    ],
)
def test_bad_inputs_raise_clear_errors(case, error, match):
    x, w, b, r = make_inputs((4, 8), torch.float32, True)
    if case == "weight_shape":
        w = w[:7]
    elif case == "residual_shape":
        r = r[:3]
    elif case == "int_dtype":
        x = x.to(torch.int32)
    elif case == "mixed_dtype":
        b = b.double()
    elif case == "device":
        r = r.to("meta")
    with pytest.raises(error, match=match):
        layer_norm(x, w, b, residual=r, backend="triton")


def test_strided_inputs_match_contiguous(poisoned):
    """A transposed view (as PatchEmbed makes) and a channels-last tensor: the same result as dense input."""
    x, w, b, r = make_inputs((6, 8), torch.float32, True)
    x_t = x.t().contiguous().t()  # same values, strides (1, 6)
    dense = layer_norm(x, w, b, residual=r, backend="triton")
    strided = layer_norm(x_t, w, b, residual=r, backend="triton")
    assert not x_t.is_contiguous() and all(torch.equal(p, q) for p, q in zip(dense, strided))
    img = torch.randn(2, 8, 3, 3).permute(0, 2, 3, 1)  # (B, H, W, C) view of an NCHW tensor
    assert not img.is_contiguous()
    torch.testing.assert_close(
        layer_norm(img, w, b, backend="triton"), layer_norm(img, w, b, backend="torch"), rtol=1e-5, atol=1e-5
    )


def test_triton_on_cpu_without_interpreter_is_unavailable(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, w, b, _ = make_inputs((2, 8), torch.float32, False)
    with pytest.raises(BackendUnavailable, match="layer_norm"):
        layer_norm(x, w, b, backend="triton")
    torch.testing.assert_close(layer_norm(x, w, b, backend="auto"), torch.nn.functional.layer_norm(x, (8,), w, b, 1e-6))


def test_autocast_with_fp32_parameters_matches_torch():
    """Under autocast (the trainer's amp) bf16 activations meet fp32 parameters."""
    x, w, b, r = make_inputs((3, 24), torch.float32, True)
    w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s, y = layer_norm(x.bfloat16(), w, b, residual=r, backend="triton")
        s_ref, y_ref = layer_norm(x.bfloat16(), w, b, residual=r, backend="torch")
    assert s.dtype == torch.float32  # x + residual promotes, as in torch
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(y, y_ref.to(y.dtype), atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32

"""LayerNorm-prologue matmuls vs float64: layer_norm_linear (LN1 + qkv), add_layer_norm_mlp (the
block after attention in two launches), and the Block's fused-prologue path.

Tolerance as in tests/test_ops_mlp.py (docs/layernorm_mlp.md): the kernel's max error vs float64 is
at most FACTOR times PyTorch's own same-dtype error vs float64, plus one ulp of the output's size.
"""

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_to_f64

from getkern._backend import BackendUnavailable
from getkern.models.layers import Block
from getkern.nn import FusedBlock
from getkern.ops.ln_linear import layer_norm_linear
from getkern.ops.ln_mlp import add_layer_norm_mlp
from getkern.profiling.traffic import count_torch_traffic, count_triton_traffic

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FWD_FACTOR, BWD_FACTOR = 2.0, 3.0
LIN_NAMES = ("x", "norm_weight", "norm_bias", "weight", "bias")
MLP_NAMES = ("x", "a", "norm_weight", "norm_bias", "w1", "b1", "w2", "b2")


def rand_factory(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda *s: torch.randn(*s, generator=g)


def lin_inputs(lead, K, N, dtype, seed=0, offset=0.0):
    """x (lead, K) with mean ``offset``, LN affine around (1, 0), an nn.Linear-sized weight."""
    r = rand_factory(seed)
    tensors = (offset + r(*lead, K), 1 + 0.5 * r(K), 0.5 * r(K), r(N, K) / K**0.5, 0.5 * r(N))
    return tuple(t.to(dtype) for t in tensors)


@pytest.fixture(autouse=True)
def prologue_block_path(monkeypatch):
    """Blocks here take the prologue path (getkern.nn.fused_block.BLOCK_PATH; the default is per_op)."""
    monkeypatch.setattr("getkern.nn.fused_block.BLOCK_PATH", "prologue")


def mlp_inputs(lead, D, H, dtype, seed=0):
    r = rand_factory(seed)
    tensors = (
        r(*lead, D),
        r(*lead, D),
        1 + 0.5 * r(D),
        0.5 * r(D),
        r(H, D) / D**0.5,
        0.5 * r(H),
        r(D, H) / H**0.5,
        0.5 * r(D),
    )
    return tuple(t.to(dtype) for t in tensors)


def run(fn, tensors, backend, grad=None):
    leaves = [t.detach().clone().requires_grad_(grad is not None) for t in tensors]
    out = fn(*leaves, backend=backend)
    if grad is None:
        return out, ()
    out.backward(grad.to(out.dtype))
    return out, tuple(t.grad for t in leaves)


def check_against_f64(fn, tensors, names, grad=None):
    out, got = run(fn, tensors, "triton", grad)
    same_out, same = run(fn, tensors, "torch", grad)
    f64 = tuple(t.double() for t in tensors)
    ref_out, ref = run(fn, f64, "torch", grad.double() if grad is not None else None)
    assert out.dtype == tensors[0].dtype and out.shape == ref_out.shape
    assert_close_to_f64("out", out, ref_out, same_out, FWD_FACTOR)
    for name, gt, sm, rf in zip(names, got, same, ref):
        assert_close_to_f64(f"d{name}", gt, rf, sm, BWD_FACTOR)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "lead, K, N, offset",
    [
        ((2, 7), 200, 72, 0.0),  # ragged tiles in M, N and K (K = 200: 7 chunks of 32, the last one short)
        ((13,), 40, 33, 300.0),  # rows far from zero mean: the chunked statistics must not cancel
    ],
)
def test_layer_norm_linear_forward_matches_float64(poisoned, dtype, lead, K, N, offset):
    tensors = lin_inputs(lead, K, N, dtype, offset=offset)
    with torch.no_grad():
        check_against_f64(layer_norm_linear, tensors, LIN_NAMES)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_linear_backward_matches_float64(poisoned, dtype):
    tensors = lin_inputs((3, 5), 40, 72, dtype, seed=1)
    check_against_f64(layer_norm_linear, tensors, LIN_NAMES, grad=rand_factory(2)(3, 5, 72))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, D, H", [((2, 9), 40, 72), ((5,), 200, 400)])
def test_add_layer_norm_mlp_forward_matches_float64(poisoned, dtype, lead, D, H):
    tensors = mlp_inputs(lead, D, H, dtype)
    with torch.no_grad():
        check_against_f64(add_layer_norm_mlp, tensors, MLP_NAMES)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_layer_norm_mlp_backward_matches_float64(poisoned, dtype):
    tensors = mlp_inputs((3, 7), 40, 72, dtype, seed=3)
    check_against_f64(add_layer_norm_mlp, tensors, MLP_NAMES, grad=rand_factory(4)(3, 7, 40))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_aligned_path_matches_float64(poisoned, monkeypatch, dtype):
    """D = 64, H = 128 take the kernels' ALIGNED branch (no K masks, vector hints): every forward
    launch must take it, and forward and backward must stay exact."""
    ops_matmul = importlib.import_module("getkern.ops.matmul")  # both kernels' launchers ask _aligned
    taken = []
    original = ops_matmul._aligned
    monkeypatch.setattr(ops_matmul, "_aligned", lambda *a: taken.append(original(*a)) or taken[-1])
    check_against_f64(
        add_layer_norm_mlp, mlp_inputs((3, 7), 64, 128, dtype, seed=5), MLP_NAMES, grad=rand_factory(6)(3, 7, 64)
    )
    check_against_f64(
        layer_norm_linear, lin_inputs((3, 7), 64, 128, dtype, seed=7), LIN_NAMES, grad=rand_factory(8)(3, 7, 128)
    )
    # triton forward + backward of each op: fc1 prologue, fc2 epilogue, dpre; qkv prologue.
    assert taken == [True, True, True, True]


def test_block_op_is_two_triton_launches_and_nothing_else():
    """The launch target: LN2 + MLP (with both residual adds) is two launches; at inference the
    first writes only GELU(fc1) (no s, LN(s) or statistics), the second only out."""
    x, a, *params = mlp_inputs((2, 5), 16, 32, torch.float32)
    with torch.no_grad():
        ((_, torch_side),) = [
            count_torch_traffic(lambda: count_triton_traffic(add_layer_norm_mlp, x, a, *params, backend="triton"))
        ]
        _, triton_side = count_triton_traffic(add_layer_norm_mlp, x, a, *params, backend="triton")
    assert [launch.kernel for launch in triton_side.kernel_launches] == ["_ln_linear_kernel", "_linear_kernel"]
    assert dict(torch_side.ops) == {"add_layer_norm_mlp": 1}  # no torch compute around the op
    fc1, fc2 = triton_side.kernel_launches
    e, M, D, H = 4, 10, 16, 32
    assert fc1.bytes_written == M * H * e and fc2.bytes_written == M * D * e
    # Each input read once (distinct bytes): the byte model of docs/layernorm_mlp.md.
    assert fc1.bytes_read == (2 * M * D + 2 * D + H * D + H) * e
    assert fc2.bytes_read == (M * H + D * H + D + 2 * M * D) * e
    # LN1 + qkv: one launch reading x, gamma, beta, W, b once; writing only qkv.
    with torch.no_grad():
        _, qkv_side = count_triton_traffic(layer_norm_linear, x, *params[:4], backend="triton")
    (qkv,) = qkv_side.kernel_launches
    assert (qkv.bytes_read, qkv.bytes_written) == ((M * D + 2 * D + H * D + H) * e, M * H * e)


def _random_block(dim=24, heads=2, ratio=2.0):
    torch.manual_seed(0)
    ref = Block(dim, num_heads=heads, mlp_ratio=ratio, backend="torch")
    with torch.no_grad():
        for ln in (ref.norm1, ref.norm2):
            ln.weight.normal_()
            ln.bias.normal_()
    return ref


def test_block_fused_prologue_path_matches_torch_block():
    """The real Block on Triton (LN1 in the qkv prologue, attention on torch to save time, LN2 + MLP
    in two launches) matches the all-torch block in output and every parameter gradient, and has
    the same parameters (state dicts load both ways)."""
    ref = _random_block()
    fused = FusedBlock(copy.deepcopy(ref))
    for module in (fused.norm1, fused.norm2, fused.mlp):
        module.backend = "triton"
    assert list(fused.state_dict()) == list(ref.state_dict())
    x, c, u = torch.randn(2, 5, 24), torch.randn(2, 1, 72), torch.randn(2, 5, 72)
    out_ref, out = ref(x, c, u), fused(x, c, u)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_block_launches_per_iteration():
    """Whole Triton block at inference: qkv with LN1 in its prologue, attention, proj (cuBLAS),
    then the two LN2 + MLP launches; the only torch compute is the proj matmul."""
    block = FusedBlock(_random_block(dim=64, heads=2))  # head dim 32: the attention kernel's smallest
    for module in (block.norm1, block.attn, block.norm2, block.mlp):
        module.backend = "triton"
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        ((_, torch_side),) = [count_torch_traffic(lambda: count_triton_traffic(block, x))]
        _, triton_side = count_triton_traffic(block, x)
    assert [launch.kernel for launch in triton_side.kernel_launches] == [
        "_ln_linear_kernel",
        "_attn_fwd_kernel",
        "_ln_linear_kernel",
        "_linear_kernel",
    ]
    ops = dict(torch_side.ops)
    assert ops.pop("addmm") == 1  # attn.proj
    assert ops == {"layer_norm_linear": 1, "attention_forward": 1, "add_layer_norm_mlp": 1}


def test_torch_backend_block_is_the_plain_sequence():
    block = _random_block()
    x = torch.randn(2, 3, 24)
    with torch.no_grad():
        _, traffic = count_torch_traffic(block, x)
    assert traffic.ops["native_layer_norm"] == 2 and traffic.ops["gelu"] == 1
    assert not any(op.startswith(("layer_norm_linear", "add_layer_norm")) for op in traffic.ops)


def test_opcheck():
    lin = lin_inputs((3,), 16, 24, torch.float32)
    torch.library.opcheck(torch.ops.getkern.layer_norm_linear.default, (*lin, 1e-6))
    torch.library.opcheck(torch.ops.getkern.layer_norm_linear_train.default, (*lin, 1e-6))
    block = mlp_inputs((3,), 16, 32, torch.float32)
    torch.library.opcheck(torch.ops.getkern.add_layer_norm_mlp.default, (*block, 1e-6))
    torch.library.opcheck(torch.ops.getkern.add_layer_norm_mlp_train.default, (*block, 1e-6))


def test_compile_fullgraph_block_no_graph_break():
    block = FusedBlock(_random_block(dim=16, heads=2))
    for module in (block.norm1, block.norm2, block.mlp):
        module.backend = "triton"
    x = torch.randn(2, 3, 16)
    compiled = torch.compile(lambda t: block(t).square().sum(), fullgraph=True, backend="aot_eager")
    compiled(x).backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    block(x).square().sum().backward()
    for got, (name, p) in zip(grads, block.named_parameters()):
        torch.testing.assert_close(got, p.grad, msg=name)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("norm_shape", ValueError, "norm_weight must have shape"),
        ("w2_shape", ValueError, "w2 must have shape"),
        ("a_shape", ValueError, "a must have shape"),
        ("int_dtype", TypeError, "x has dtype"),
        ("mixed_dtype", TypeError, "b1 has dtype"),
        ("device", ValueError, "a is on"),
    ],
)
def test_bad_inputs_raise_clear_errors(case, error, match):
    x, a, nw, nb, w1, b1, w2, b2 = mlp_inputs((4,), 8, 16, torch.float32)
    if case == "norm_shape":
        nw = nw[:7]
    elif case == "w2_shape":
        w2 = w2[:7]
    elif case == "a_shape":
        a = a[:3]
    elif case == "int_dtype":
        x = x.to(torch.int32)
    elif case == "mixed_dtype":
        b1 = b1.double()
    elif case == "device":
        a = a.to("meta")
    with pytest.raises(error, match=match):
        add_layer_norm_mlp(x, a, nw, nb, w1, b1, w2, b2, backend="triton")


def test_strided_inputs_match_contiguous(poisoned):
    """Transposed views of x, a and w1 give the result of their dense copies, on both fused ops."""
    x, a, nw, nb, w1, b1, w2, b2 = mlp_inputs((5,), 8, 16, torch.float32)
    xt, at, w1t = (t.t().contiguous().t() for t in (x, a, w1))
    assert not any(t.is_contiguous() for t in (xt, at, w1t))
    assert torch.equal(
        add_layer_norm_mlp(xt, at, nw, nb, w1t, b1, w2, b2, backend="triton"),
        add_layer_norm_mlp(x, a, nw, nb, w1, b1, w2, b2, backend="triton"),
    )
    assert torch.equal(
        layer_norm_linear(xt, nw, nb, w1t, b1, backend="triton"), layer_norm_linear(x, nw, nb, w1, b1, backend="triton")
    )


def test_layer_norm_linear_bad_weight_shape():
    x, nw, nb, w, b = lin_inputs((4,), 8, 16, torch.float32)
    with pytest.raises(ValueError, match="weight must have shape"):
        layer_norm_linear(x, nw, nb, w[:, :7], b, backend="triton")


def test_triton_on_cpu_without_interpreter_is_unavailable(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    lin = lin_inputs((2,), 8, 16, torch.float32)
    with pytest.raises(BackendUnavailable, match="layer_norm_linear"):
        layer_norm_linear(*lin, backend="triton")
    ref = F.linear(F.layer_norm(lin[0], (8,), lin[1], lin[2], 1e-6), lin[3], lin[4])
    torch.testing.assert_close(layer_norm_linear(*lin, backend="auto"), ref)
    block = mlp_inputs((2,), 8, 16, torch.float32)
    with pytest.raises(BackendUnavailable, match="add_layer_norm_mlp"):
        add_layer_norm_mlp(*block, backend="triton")


def test_autocast():
    """layer_norm_linear casts to the autocast dtype (as F.linear); the Block keeps its per-module
    path under autocast (an fp32 residual stream with 16-bit matmuls)."""
    from getkern.nn.fused_block import fused_prologues_apply

    lin = lin_inputs((3,), 16, 24, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer_norm_linear(*lin, backend="triton")
        ref = layer_norm_linear(*lin, backend="torch")
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, atol=5e-2, rtol=5e-2)
    block = _random_block()
    for module in (block.norm1, block.norm2, block.mlp):
        module.backend = "triton"
    x = torch.randn(1, 3, 24)
    assert fused_prologues_apply(block, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_prologues_apply(block, x)
        x_mlp = mlp_inputs((3,), 16, 32, torch.float32)
        with pytest.raises(TypeError, match="autocast dtype"):
            add_layer_norm_mlp(*x_mlp, backend="triton")
